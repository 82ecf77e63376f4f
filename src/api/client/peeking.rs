//! Peeking and the room snapshot: `GET /rooms/{roomId}/initialSync` (a room's state, latest
//! messages and the user's membership and account data) and `GET /events?room_id=` (a long
//! poll for a room's new events), for members and for anyone when the room is world-readable.
//!
//! Tokens are `/messages` tokens (`t<N>`: just before stream position N).

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::peeking::{get_current_state, listen_to_new_events};
use ruma::api::client::room::Visibility;
use ruma::events::room::member::MembershipState;
use ruma::serde::Raw;

use super::message_pagination::{PageRequest, page, parse_token, token};
use super::rooms::{raw, state_events};
use super::sync::long_poll;
use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Result;
use crate::service::Services;

/// Messages an initial sync of a room carries, and the most a `/events` answer carries.
const INITIAL_MESSAGES: usize = 20;
const MAX_EVENTS: usize = 100;

/// `GET /_matrix/client/v3/rooms/{roomId}/initialSync`
pub async fn room_initial_sync(
    State(services): State<Arc<Services>>,
    req: Ruma<get_current_state::v3::Request>,
) -> HandlerResult<get_current_state::v3::Response> {
    let session = req.session()?;
    let (user, room_id) = (&session.user_id, &req.body.room_id);
    services.rooms.check_can_read_room(room_id, user)?;
    let membership = services.rooms.membership(user, room_id)?;
    // A user who left sees the room as it was when they left.
    let (state, until) = match &membership {
        Some(record) if matches!(record.membership, MembershipState::Leave | MembershipState::Ban) => {
            (services.rooms.state_after(&record.event_id)?, record.stream + 1)
        }
        _ => (services.rooms.current_state(room_id)?, services.rooms.stream().visible() + 1),
    };
    let mut messages = page(
        &services,
        PageRequest {
            room_id,
            user,
            device: Some(&session.device_id),
            from: Some(until),
            to: None,
            forward: false,
            limit: INITIAL_MESSAGES,
            filter: &Default::default(),
        },
    )?;
    messages.events.reverse();
    let chunk = messages.events.iter().map(|(_, event)| raw(event)).collect::<Result<_>>()?;
    let mut pagination = get_current_state::v3::PaginationChunk::new(chunk, token(until));
    pagination.start = Some(token(messages.events.first().map_or(until, |(position, _)| *position)));

    let mut response = get_current_state::v3::Response::new(room_id.clone());
    response.membership = membership.map(|record| record.membership);
    response.messages = Some(pagination);
    response.state = state_events(&services, &state)?.iter().map(raw).collect::<Result<_>>()?;
    response.visibility = Some(if services.rooms.is_published(room_id)? {
        Visibility::Public
    } else {
        Visibility::Private
    });
    for entry in services.account_data.changed(user, None, u64::MAX)? {
        if entry.room_id.as_ref() == Some(room_id) {
            let event = serde_json::json!({ "type": entry.event_type, "content": entry.content });
            response.account_data.push(Raw::from_json(serde_json::value::to_raw_value(&event)?));
        }
    }
    Ok(RumaResponse(response))
}

/// `GET /_matrix/client/v3/events?room_id=…`: waits (up to `timeout`) for events after `from`
/// (default: now) in a room the user may read, and returns them with the token to go on from.
pub async fn events(
    State(services): State<Arc<Services>>,
    req: Ruma<listen_to_new_events::v3::Request>,
) -> HandlerResult<listen_to_new_events::v3::Response> {
    let session = req.session()?;
    let (user, room_id) = (&session.user_id, &req.body.room_id);
    services.rooms.check_can_read_room(room_id, user)?;
    let from = match req.body.from.as_deref() {
        Some(from) => parse_token(from)?,
        None => services.rooms.stream().visible() + 1,
    };
    let _peek = services.rooms.peek(room_id, user);
    let response = long_poll(&services, user, req.body.timeout, false, |visible| {
        let new = page(
            &services,
            PageRequest {
                room_id,
                user,
                device: Some(&session.device_id),
                from: Some(from),
                to: Some(visible + 1),
                forward: true,
                limit: MAX_EVENTS,
                filter: &Default::default(),
            },
        )?;
        let end = new.events.last().map_or(from.max(visible + 1), |(position, _)| position + 1);
        let mut response = listen_to_new_events::v3::Response::new();
        response.chunk = new.events.iter().map(|(_, event)| raw(event)).collect::<Result<_>>()?;
        response.start = Some(token(from));
        response.end = Some(token(end));
        Ok((response, !new.events.is_empty()))
    })
    .await?;
    Ok(RumaResponse(response))
}
