//! `GET /rooms/{roomId}/context/{eventId}`: an event with the events around it and the state.

use std::sync::Arc;

use axum::extract::State;
use ruma::RoomId;
use ruma::api::client::context::get_context;
use ruma::api::client::filter::RoomEventFilter;

use super::message_pagination::{PageRequest, page, token};
use super::rooms::raw;
use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::{Error, Result};
use crate::service::Services;
use crate::service::rooms::visibility::{ClientEvent, Viewer};

/// `GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}`
pub async fn get_context(
    State(services): State<Arc<Services>>,
    req: Ruma<get_context::v3::Request>,
) -> HandlerResult<get_context::v3::Response> {
    let session = req.session()?;
    let request = &req.body;
    let user = &session.user_id;
    services.rooms.check_can_read_room(&request.room_id, user)?;
    let not_found = || Error::not_found("Event not found");
    let stored = services.rooms.stored_event(&request.event_id)?.ok_or_else(not_found)?;
    if stored.meta.room_id != request.room_id || !services.rooms.can_see_event(user, &stored)? {
        return Err(not_found());
    }
    let limit = u64::from(request.limit).min(100) as usize;
    let context = around(
        &services,
        Viewer::device(user, &session.device_id),
        &request.room_id,
        stored.meta.stream,
        (limit / 2, limit - limit / 2),
        &request.filter,
    )?;
    let mut response = get_context::v3::Response::new();
    response.start = Some(context.start);
    response.end = Some(context.end);
    response.event = Some(raw(&services.rooms.client_event(
        &request.event_id,
        &stored,
        Some(Viewer::device(user, &session.device_id)),
    )?)?);
    response.events_before = context.before.iter().map(|(_, event)| raw(event)).collect::<Result<_>>()?;
    response.events_after = context.after.iter().map(|(_, event)| raw(event)).collect::<Result<_>>()?;
    let last = context
        .after
        .last()
        .map(|(_, event)| event.pdu().event_id.as_str())
        .unwrap_or(request.event_id.as_str());
    let state = services
        .rooms
        .state_after(&ruma::EventId::parse(last).map_err(|e| Error::Internal(e.to_string()))?)?;
    for short_event in state.values() {
        let event_id = services.rooms.states.event_id(*short_event)?;
        if let Some(stored) = services.rooms.stored_event(&event_id)? {
            response.state.push(raw(&services.rooms.client_event(&event_id, &stored, None)?)?);
        }
    }
    Ok(RumaResponse(response))
}

/// The events around one, as its reader sees them.
pub struct Around {
    /// (stream position, event), nearest first.
    pub before: Vec<(u64, ClientEvent)>,
    pub after: Vec<(u64, ClientEvent)>,
    /// Tokens to page on backward from the first and forward from the last.
    pub start: String,
    pub end: String,
}

/// Up to `limits.0` visible events before the event at stream position `stream` and
/// `limits.1` after it.
pub fn around(
    services: &Services,
    viewer: Viewer<'_>,
    room_id: &RoomId,
    stream: u64,
    limits: (usize, usize),
    filter: &RoomEventFilter,
) -> Result<Around> {
    let side = |forward: bool, limit: usize| {
        page(
            services,
            PageRequest {
                room_id,
                user: viewer.user,
                device: viewer.device,
                from: Some(if forward { stream + 1 } else { stream }),
                to: None,
                forward,
                limit,
                filter,
            },
        )
    };
    let before = side(false, limits.0)?.events;
    let after = side(true, limits.1)?.events;
    Ok(Around {
        start: token(before.last().map_or(stream, |(position, _)| *position)),
        end: token(after.last().map_or(stream + 1, |(position, _)| position + 1)),
        before,
        after,
    })
}
