//! `GET /joined_rooms`.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::membership::joined_rooms;
use ruma::events::room::member::MembershipState;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::service::Services;

/// `GET /_matrix/client/v3/joined_rooms`
pub async fn joined_rooms(
    State(services): State<Arc<Services>>,
    req: Ruma<joined_rooms::v3::Request>,
) -> HandlerResult<joined_rooms::v3::Response> {
    let rooms = services.rooms.rooms_of_user(req.user_id()?, &MembershipState::Join)?;
    Ok(RumaResponse(joined_rooms::v3::Response::new(rooms)))
}
