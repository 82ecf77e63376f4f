//! Reading a room: `GET /rooms/{roomId}/event/{eventId}`, `/state`, `/state/{type}/{key}`,
//! `/members` and `/joined_members`. Every read checks the reader's membership and the room's
//! history visibility.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::membership::{get_member_events, joined_members};
use ruma::api::client::room::get_room_event;
use ruma::api::client::state::{get_state_event_for_key, get_state_events};
use ruma::events::TimelineEventType;
use ruma::events::room::member::MembershipState;
use ruma::serde::Raw;
use ruma::{OwnedMxcUri, RoomId, UserId};
use serde::Serialize;
use serde_json::Value;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::{Error, Result};
use crate::service::Services;
use crate::service::rooms::state::StateMap;
use crate::service::rooms::visibility::{ClientEvent, Viewer};

/// Any value as a ruma `Raw`.
pub fn raw<T>(value: &impl Serialize) -> Result<Raw<T>> {
    Ok(Raw::from_json(serde_json::value::to_raw_value(value)?))
}

/// The other way: a ruma raw value as plain JSON.
pub fn json<T>(raw: &Raw<T>) -> Result<Value> {
    Ok(serde_json::from_str(raw.json().get())?)
}

/// The state `user` may read: the current state while they are in the room, else the state
/// when they left it (403 if they never were in it).
pub fn readable_state(services: &Services, room_id: &RoomId, user: &UserId) -> Result<Arc<StateMap>> {
    services.rooms.check_can_read_room(room_id, user)?;
    match services.rooms.membership(user, room_id)? {
        Some(record) if record.membership != MembershipState::Join => services.rooms.state_after(&record.event_id),
        _ => services.rooms.current_state(room_id),
    }
}

/// The client-format events of a state.
pub fn state_events(services: &Services, state: &StateMap) -> Result<Vec<ClientEvent>> {
    let mut events = Vec::with_capacity(state.len());
    for short_event in state.values() {
        let event_id = services.rooms.states.event_id(*short_event)?;
        if let Some(stored) = services.rooms.stored_event(&event_id)? {
            events.push(services.rooms.client_event(&event_id, &stored, None)?);
        }
    }
    Ok(events)
}

/// `GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}`
pub async fn get_room_event(
    State(services): State<Arc<Services>>,
    req: Ruma<get_room_event::v3::Request>,
) -> HandlerResult<get_room_event::v3::Response> {
    let session = req.session()?;
    let request = &req.body;
    services.rooms.check_can_read_room(&request.room_id, &session.user_id)?;
    let not_found = || Error::not_found("Event not found");
    let stored = services.rooms.stored_event(&request.event_id)?.ok_or_else(not_found)?;
    if stored.meta.room_id != request.room_id || !services.rooms.can_see_event(&session.user_id, &stored)? {
        return Err(not_found());
    }
    let event = services.rooms.client_event(
        &request.event_id,
        &stored,
        Some(Viewer::device(&session.user_id, &session.device_id)),
    )?;
    Ok(RumaResponse(get_room_event::v3::Response::new(raw(&event)?)))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/state`
pub async fn get_state_events(
    State(services): State<Arc<Services>>,
    req: Ruma<get_state_events::v3::Request>,
) -> HandlerResult<get_state_events::v3::Response> {
    let state = readable_state(&services, &req.body.room_id, req.user_id()?)?;
    let events = state_events(&services, &state)?.iter().map(raw).collect::<Result<_>>()?;
    Ok(RumaResponse(get_state_events::v3::Response::new(events)))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}`
pub async fn get_state_event_for_key(
    State(services): State<Arc<Services>>,
    req: Ruma<get_state_event_for_key::v3::Request>,
) -> HandlerResult<get_state_event_for_key::v3::Response> {
    let request = &req.body;
    let state = readable_state(&services, &request.room_id, req.user_id()?)?;
    let pdu = services
        .rooms
        .state_pdu(&state, &request.event_type, &request.state_key)?
        .ok_or_else(|| Error::not_found("The room has no such state"))?;
    let value = match request.format {
        get_state_event_for_key::v3::StateEventFormat::Event => {
            let stored = services
                .rooms
                .stored_event(&pdu.event_id)?
                .ok_or_else(|| Error::not_found("Event not found"))?;
            serde_json::value::to_raw_value(&services.rooms.client_event(&pdu.event_id, &stored, None)?)?
        }
        _ => pdu.content,
    };
    Ok(RumaResponse(get_state_event_for_key::v3::Response::new(value)))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/members`
pub async fn get_member_events(
    State(services): State<Arc<Services>>,
    req: Ruma<get_member_events::v3::Request>,
) -> HandlerResult<get_member_events::v3::Response> {
    let request = &req.body;
    let user_id = req.user_id()?;
    let state = match &request.at {
        Some(token) => {
            services.rooms.check_can_read_room(&request.room_id, user_id)?;
            let position = crate::api::client::message_pagination::parse_token(token)?;
            services.rooms.state_at_position(&request.room_id, position)?
        }
        None => readable_state(&services, &request.room_id, user_id)?,
    };
    let mut chunk = Vec::new();
    for event in state_events(&services, &state)? {
        if event.pdu().kind != TimelineEventType::RoomMember {
            continue;
        }
        let membership = serde_json::from_str::<Value>(event.pdu().content.get())?
            .get("membership")
            .and_then(Value::as_str)
            .map_or(MembershipState::Leave, MembershipState::from);
        let wanted = request.membership.as_ref().is_none_or(|m| *m == membership) && request.not_membership.as_ref() != Some(&membership);
        if wanted {
            chunk.push(raw(&event)?);
        }
    }
    Ok(RumaResponse(get_member_events::v3::Response::new(chunk)))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/joined_members`
pub async fn joined_members(
    State(services): State<Arc<Services>>,
    req: Ruma<joined_members::v3::Request>,
) -> HandlerResult<joined_members::v3::Response> {
    let room_id = &req.body.room_id;
    readable_state(&services, room_id, req.user_id()?)?;
    let mut joined = BTreeMap::new();
    for (user, content) in services.rooms.member_events(room_id)? {
        if content.get("membership").and_then(Value::as_str) != Some("join") {
            continue;
        }
        let Ok(user_id) = UserId::parse(user.as_str()) else { continue };
        let mut member = joined_members::v3::RoomMember::new();
        member.display_name = content.get("displayname").and_then(Value::as_str).map(str::to_owned);
        member.avatar_url = content.get("avatar_url").and_then(Value::as_str).map(OwnedMxcUri::from);
        joined.insert(user_id, member);
    }
    Ok(RumaResponse(joined_members::v3::Response::new(joined)))
}
