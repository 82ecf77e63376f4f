//! `POST /knock/{roomIdOrAlias}`: asking to join a room whose join rule is `knock`.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::knock::knock_room;
use ruma::events::room::member::MembershipState;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::service::Services;
use crate::service::rooms::membership::MembershipChange;

/// `POST /_matrix/client/v3/knock/{roomIdOrAlias}`
pub async fn knock_room(
    State(services): State<Arc<Services>>,
    req: Ruma<knock_room::v3::Request>,
) -> HandlerResult<knock_room::v3::Response> {
    let user = req.user_id()?;
    let room_id = match ruma::OwnedRoomId::try_from(req.body.room_id_or_alias.clone()) {
        Ok(room_id) => room_id,
        Err(alias) => services.rooms.resolve_alias(&alias)?,
    };
    services.rooms.room(&room_id)?;
    let change = MembershipChange::new(user, user, MembershipState::Knock, req.body.reason.as_deref());
    services.rooms.change_membership(&room_id, change).await?;
    Ok(RumaResponse(knock_room::v3::Response::new(room_id)))
}
