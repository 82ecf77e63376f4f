//! `GET /rooms/{roomId}/context/{eventId}`: an event with the events around it and the state.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::context::get_context;

use super::message_pagination::{PageRequest, page, token};
use super::rooms::raw;
use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::{Error, Result};
use crate::service::Services;
use crate::service::rooms::visibility::Viewer;

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
    if stored.room_id != request.room_id || !services.rooms.can_see_event(user, &request.event_id, &stored)? {
        return Err(not_found());
    }
    let limit = u64::from(request.limit).min(100) as usize;
    let around = |forward: bool, count: usize| {
        page(
            &services,
            PageRequest {
                room_id: &request.room_id,
                user,
                device: Some(&session.device_id),
                from: Some(if forward { stored.stream + 1 } else { stored.stream }),
                to: None,
                forward,
                limit: count,
                filter: &request.filter,
            },
        )
    };
    let before = around(false, limit / 2)?;
    let after = around(true, limit - limit / 2)?;

    let mut response = get_context::v3::Response::new();
    response.start = Some(token(before.events.last().map_or(stored.stream, |(position, _)| *position)));
    response.end = Some(token(after.events.last().map_or(stored.stream + 1, |(position, _)| position + 1)));
    response.event = Some(raw(&services.rooms.client_event(
        &request.event_id,
        &stored,
        Some(Viewer::device(user, &session.device_id)),
    )?)?);
    response.events_before = before.events.iter().map(|(_, event)| raw(event)).collect::<Result<_>>()?;
    response.events_after = after.events.iter().map(|(_, event)| raw(event)).collect::<Result<_>>()?;
    let last = after
        .events
        .last()
        .and_then(|(_, event)| event["event_id"].as_str())
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
