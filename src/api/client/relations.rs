//! `GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]`: the edits, reactions,
//! replies in thread, … of an event, newest first by default, paged by stream tokens.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::Direction;
use ruma::api::client::relations::{
    get_relating_events, get_relating_events_with_rel_type, get_relating_events_with_rel_type_and_event_type,
};
use ruma::{EventId, RoomId, UInt};

use super::message_pagination::{parse_token, token};
use super::rooms::raw;
use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::{Error, Result};
use crate::service::Services;
use crate::service::devices::Session;
use crate::service::rooms::visibility::{ClientEvent, Viewer};

/// The most events one page returns.
const MAX_LIMIT: usize = 100;

/// What to list.
struct RelationsQuery<'a> {
    room_id: &'a RoomId,
    event_id: &'a EventId,
    rel_type: Option<&'a str>,
    event_type: Option<&'a str>,
    from: Option<&'a str>,
    to: Option<&'a str>,
    dir: &'a Direction,
    limit: Option<UInt>,
}

/// A page of relating events the user may see: (events, next_batch).
fn relating_events(services: &Services, session: &Session, query: RelationsQuery<'_>) -> Result<(Vec<ClientEvent>, Option<String>)> {
    let user = &session.user_id;
    services.rooms.check_can_read_room(query.room_id, user)?;
    let parent = services
        .rooms
        .stored_event(query.event_id)?
        .filter(|stored| stored.meta.room_id == query.room_id)
        .ok_or_else(|| Error::not_found("Event not found"))?;
    if !services.rooms.can_see_event(user, &parent)? {
        return Err(Error::not_found("Event not found"));
    }
    let forward = *query.dir == Direction::Forward;
    let limit = query.limit.map_or(50, |l| u64::from(l) as usize).clamp(1, MAX_LIMIT);
    let to = query.to.map(parse_token).transpose()?;
    let mut cursor = match query.from.map(parse_token).transpose()? {
        Some(position) if !forward => Some(position.saturating_sub(1)),
        from => from,
    };
    let mut events = Vec::new();
    loop {
        let rows = services
            .rooms
            .relations(query.room_id, query.event_id, cursor, forward, limit + 1)?;
        let exhausted = rows.len() <= limit;
        for (position, rel_type, event_id, kind) in rows {
            if to.is_some_and(|to| if forward { position >= to } else { position < to }) {
                return Ok((events, None));
            }
            if events.len() == limit {
                let next = if forward { position } else { position + 1 };
                return Ok((events, Some(token(next))));
            }
            cursor = Some(if forward { position + 1 } else { position.saturating_sub(1) });
            if query.rel_type.is_some_and(|wanted| wanted != rel_type) || query.event_type.is_some_and(|wanted| wanted != kind) {
                continue;
            }
            if let Some(stored) = services.rooms.stored_event(&event_id)?
                && services.rooms.can_see_event(user, &stored)?
            {
                events.push(
                    services
                        .rooms
                        .client_event(&event_id, &stored, Some(Viewer::device(user, &session.device_id)))?,
                );
            }
        }
        if exhausted {
            return Ok((events, None));
        }
    }
}

/// The three relations endpoints differ only in how far they narrow the relation: one handler
/// each, written once.
macro_rules! relations_handler {
    ($(#[$doc:meta])* $name:ident, $endpoint:ident, |$request:ident| ($rel_type:expr, $event_type:expr)) => {
        $(#[$doc])*
        pub async fn $name(State(services): State<Arc<Services>>, req: Ruma<$endpoint::v1::Request>) -> HandlerResult<$endpoint::v1::Response> {
            let $request = &req.body;
            let event_type: Option<String> = $event_type;
            let query = RelationsQuery {
                room_id: &$request.room_id,
                event_id: &$request.event_id,
                rel_type: $rel_type,
                event_type: event_type.as_deref(),
                from: $request.from.as_deref(),
                to: $request.to.as_deref(),
                dir: &$request.dir,
                limit: $request.limit,
            };
            let (events, next_batch) = relating_events(&services, req.session()?, query)?;
            let mut response = $endpoint::v1::Response::new(events.iter().map(raw).collect::<Result<_>>()?);
            response.next_batch = next_batch;
            Ok(RumaResponse(response))
        }
    };
}

relations_handler!(
    /// `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}`
    get_relating_events,
    get_relating_events,
    |request| (None, None)
);

relations_handler!(
    /// `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}`
    get_relating_events_with_rel_type,
    get_relating_events_with_rel_type,
    |request| (Some(request.rel_type.as_str()), None)
);

relations_handler!(
    /// `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}`
    get_relating_events_with_rel_type_and_event_type,
    get_relating_events_with_rel_type_and_event_type,
    |request| (Some(request.rel_type.as_str()), Some(request.event_type.to_string()))
);
