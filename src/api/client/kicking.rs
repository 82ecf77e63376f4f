//! `POST /rooms/{roomId}/kick`.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::membership::kick_user;
use ruma::events::room::member::MembershipState;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::service::Services;
use crate::service::rooms::membership::MembershipChange;

/// `POST /_matrix/client/v3/rooms/{roomId}/kick`
pub async fn kick_user(State(services): State<Arc<Services>>, req: Ruma<kick_user::v3::Request>) -> HandlerResult<kick_user::v3::Response> {
    let change = MembershipChange::new(
        req.user_id()?,
        &req.body.user_id,
        MembershipState::Leave,
        req.body.reason.as_deref(),
    );
    services.rooms.change_membership(&req.body.room_id, change).await?;
    Ok(RumaResponse(kick_user::v3::Response::new()))
}
