//! `POST /rooms/{roomId}/leave` (an invite to a room of other servers is rejected through the
//! inviting server) and `POST /rooms/{roomId}/forget`.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::membership::{forget_room, leave_room};
use ruma::events::room::member::MembershipState;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::service::Services;
use crate::service::rooms::membership::MembershipChange;

/// `POST /_matrix/client/v3/rooms/{roomId}/leave`
pub async fn leave_room(
    State(services): State<Arc<Services>>,
    req: Ruma<leave_room::v3::Request>,
) -> HandlerResult<leave_room::v3::Response> {
    let user_id = req.user_id()?;
    let room_id = &req.body.room_id;
    // An invite to a room of other servers is rejected through the inviting server.
    if services.rooms.outside_invite(user_id, room_id)?.is_some() {
        services
            .federation
            .reject_remote_invite(&services.rooms, room_id, user_id, req.body.reason.as_deref())
            .await?;
        return Ok(RumaResponse(leave_room::v3::Response::new()));
    }
    let change = MembershipChange::new(user_id, user_id, MembershipState::Leave, req.body.reason.as_deref());
    services.rooms.change_membership(room_id, change).await?;
    Ok(RumaResponse(leave_room::v3::Response::new()))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/forget`
pub async fn forget_room(
    State(services): State<Arc<Services>>,
    req: Ruma<forget_room::v3::Request>,
) -> HandlerResult<forget_room::v3::Response> {
    services.rooms.forget(req.user_id()?, &req.body.room_id)?;
    Ok(RumaResponse(forget_room::v3::Response::new()))
}
