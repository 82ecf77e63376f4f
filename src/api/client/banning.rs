//! `POST /rooms/{roomId}/ban` and `POST /rooms/{roomId}/unban`.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::membership::{ban_user, unban_user};
use ruma::events::room::member::MembershipState;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Error;
use crate::service::Services;
use crate::service::rooms::membership::MembershipChange;

/// `POST /_matrix/client/v3/rooms/{roomId}/ban`
pub async fn ban_user(State(services): State<Arc<Services>>, req: Ruma<ban_user::v3::Request>) -> HandlerResult<ban_user::v3::Response> {
    let change = MembershipChange::new(req.user_id()?, &req.body.user_id, MembershipState::Ban, req.body.reason.as_deref());
    services.rooms.change_membership(&req.body.room_id, change).await?;
    Ok(RumaResponse(ban_user::v3::Response::new()))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/unban`
pub async fn unban_user(
    State(services): State<Arc<Services>>,
    req: Ruma<unban_user::v3::Request>,
) -> HandlerResult<unban_user::v3::Response> {
    let state = services.rooms.current_state(&req.body.room_id)?;
    if services.rooms.membership_in(&state, &req.body.user_id)? != MembershipState::Ban {
        return Err(Error::forbidden("The user is not banned"));
    }
    let change = MembershipChange::new(
        req.user_id()?,
        &req.body.user_id,
        MembershipState::Leave,
        req.body.reason.as_deref(),
    );
    services.rooms.change_membership(&req.body.room_id, change).await?;
    Ok(RumaResponse(unban_user::v3::Response::new()))
}
