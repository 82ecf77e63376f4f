//! `GET /_matrix/client/v1/room_summary/{roomIdOrAlias}` (MSC3266): a room's name, topic,
//! avatar, join rule, member count, … for a client to show before joining, to whoever may
//! preview it (members, invitees, and anyone who could join or read it; without an access
//! token, public and world-readable rooms only).

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::room::get_summary::v1::{Request, Response};
use ruma::events::room::member::MembershipState;
use ruma::{OwnedRoomId, RoomId};
use serde_json::Value;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::{Error, Result};
use crate::service::Services;

/// `GET /_matrix/client/v1/room_summary/{roomIdOrAlias}`
pub async fn get_summary(State(services): State<Arc<Services>>, req: Ruma<Request>) -> HandlerResult<Response> {
    let not_found = || Error::not_found("The room is not known here, or you may not preview it");
    let room_id = match OwnedRoomId::try_from(req.body.room_id_or_alias.clone()) {
        Ok(room_id) => room_id,
        Err(alias) => services.resolve_local_alias(&alias).await.map_err(|_| not_found())?,
    };
    if services.rooms.room(&room_id).is_err() {
        return Err(not_found());
    }
    let summary = services.rooms.summary(&room_id)?;
    let user = req.session().ok().map(|session| &session.user_id);
    let membership = match user {
        Some(user) => services.rooms.membership(user, &room_id)?.map(|record| record.membership),
        None => None,
    };
    if !may_see(&services, &room_id, user, membership.as_ref(), &summary)? {
        return Err(not_found());
    }
    let mut response = Response::new(serde_json::from_value(summary)?);
    response.membership = membership;
    Ok(RumaResponse(response))
}

/// Whether the summary may be shown: to members, invitees and knockers, to users who may
/// preview the room, and to anyone when it is public or world-readable.
fn may_see(
    services: &Services,
    room_id: &RoomId,
    user: Option<&ruma::OwnedUserId>,
    membership: Option<&MembershipState>,
    summary: &Value,
) -> Result<bool> {
    if matches!(
        membership,
        Some(MembershipState::Join | MembershipState::Invite | MembershipState::Knock)
    ) {
        return Ok(true);
    }
    match user {
        Some(user) => services.rooms.may_preview(room_id, user),
        None => Ok(summary["world_readable"] == true || summary["join_rule"] == "public"),
    }
}
