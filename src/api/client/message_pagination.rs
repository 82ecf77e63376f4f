//! `GET /rooms/{roomId}/messages`: a room's history, paged backward or forward.
//!
//! Tokens name a point in the server-wide stream: `t<N>` is the point just before the event at
//! stream position N (a sync token `s<N>` is accepted as `t<N+1>`). Going backward from `t<N>` returns events below N; going forward, events
//! from N on. Events the reader may not see are left out, never counted against the limit.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::Direction;
use ruma::api::client::filter::RoomEventFilter;
use ruma::api::client::message::get_message_events;
use ruma::events::StateEventType;
use ruma::{OwnedEventId, RoomId, UserId};

use super::rooms::raw;
use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::{Error, Result};
use crate::service::Services;
use crate::service::rooms::ServedEvent;
use crate::service::rooms::visibility::{ClientEvent, Viewer, VisibilityMemo};

/// The most events one page returns.
const MAX_LIMIT: u64 = 1000;

/// Reads a pagination token, or a sync token (`s<N>`: everything up to and including position
/// N, so the point just before N + 1), which the spec lets clients pass wherever a pagination
/// token goes; 400 `M_INVALID_PARAM` if it is neither.
pub fn parse_token(token: &str) -> Result<u64> {
    let position = |digits: &str| digits.parse::<u64>().ok();
    token
        .strip_prefix('t')
        .and_then(position)
        .or_else(|| token.strip_prefix('s').and_then(position).map(|n| n.saturating_add(1)))
        .ok_or_else(|| Error::invalid_param(format!("Invalid pagination token: {token}")))
}

/// The token just before stream position `position`.
pub fn token(position: u64) -> String {
    format!("t{position}")
}

/// Whether an event type matches a filter pattern, where `*` matches any run of characters.
fn type_matches(pattern: &str, kind: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = kind.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (index, part) in parts.iter().enumerate() {
        if index == parts.len() - 1 {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// Whether an event passes a room event filter's type and sender conditions.
pub fn filter_allows(filter: &RoomEventFilter, event: &ClientEvent) -> bool {
    let sender = event.pdu().sender.as_str();
    let senders_ok = filter.senders.as_ref().is_none_or(|senders| senders.iter().any(|s| s == sender));
    let not_senders_ok = !filter.not_senders.iter().any(|s| s == sender);
    if !senders_ok || !not_senders_ok {
        return false;
    }
    if filter.types.is_none() && filter.not_types.is_empty() {
        return true;
    }
    let kind = &event.pdu().kind.to_string();
    let types_ok = filter
        .types
        .as_ref()
        .is_none_or(|types| types.iter().any(|t| type_matches(t, kind)));
    types_ok && !filter.not_types.iter().any(|t| type_matches(t, kind))
}

/// One page of a room's visible events.
pub struct Page {
    /// (stream position, client-format event), in the order of the paging direction.
    pub events: Vec<(u64, ClientEvent)>,
    /// The timeline's next row past the page in that direction, when it goes on: (stream
    /// position, event ID), whether the reader may see it or not.
    pub next: Option<(u64, OwnedEventId)>,
}

impl Page {
    /// Whether the timeline has more events in that direction.
    pub fn more(&self) -> bool {
        self.next.is_some()
    }
}

/// What to page through.
pub struct PageRequest<'a> {
    pub room_id: &'a RoomId,
    pub user: &'a UserId,
    pub device: Option<&'a ruma::DeviceId>,
    /// A token's stream position (see the module doc); `None` for the end the paging starts at.
    pub from: Option<u64>,
    pub to: Option<u64>,
    pub forward: bool,
    pub limit: usize,
    pub filter: &'a RoomEventFilter,
}

/// Reads up to `limit` events the user may see.
pub fn page(services: &Services, request: PageRequest<'_>) -> Result<Page> {
    let PageRequest {
        room_id,
        user,
        device,
        from,
        to,
        forward,
        limit,
        filter,
    } = request;
    let mut events = Vec::new();
    // Backward from t<N> starts at N - 1; forward from t<N> at N.
    let mut cursor = match (from, forward) {
        (Some(0), false) => return Ok(Page { events, next: None }),
        (Some(position), false) => Some(position - 1),
        (from, _) => from,
    };
    // Positions are server-wide, so a room has at most `from - to` events between the two: an
    // incremental sync reads the one or two new events, not a whole page.
    let span = from.zip(to).map_or(usize::MAX, |(from, to)| from.abs_diff(to) as usize);
    let want = (limit.max(20) + 1).min(span.saturating_add(1));
    // The events of one room read by one user share what deciding their visibility reads.
    let mut seen = VisibilityMemo::default();
    loop {
        let batch = services.rooms.timeline_until(room_id, cursor, to, forward, want)?;
        let exhausted = batch.len() < want;
        // Read together, but no more events than the page may still take (reading a stored
        // event is most of what serving it costs).
        let mut read = Vec::new().into_iter();
        for (index, (position, event_id)) in batch.iter().enumerate() {
            let position = *position;
            let past_to = to.is_some_and(|to| if forward { position >= to } else { position < to });
            if past_to {
                return Ok(Page { events, next: None });
            }
            if events.len() == limit {
                return Ok(Page {
                    events,
                    next: Some((position, event_id.clone())),
                });
            }
            if read.len() == 0 {
                let ids: Vec<_> = batch[index..]
                    .iter()
                    .take(limit - events.len())
                    .map(|(_, event_id)| event_id.clone())
                    .collect();
                read = services.rooms.served_events(&ids)?.into_iter();
            }
            let served = read.next().flatten();
            cursor = Some(if forward { position + 1 } else { position.saturating_sub(1) });
            if let Some(served) = served
                && let Some(event) = visible_event(services, Viewer { user, device }, served, &mut seen)?
                && filter_allows(filter, &event)
            {
                events.push((position, event));
            }
            if !forward && position == 0 {
                return Ok(Page { events, next: None });
            }
        }
        if exhausted {
            return Ok(Page { events, next: None });
        }
    }
}

/// A room's latest events the user may see, oldest first, up to `limit`: those after stream
/// position `since` when given (what sync shows as the timeline).
pub fn latest_events(
    services: &Services,
    room_id: &RoomId,
    (user, device): (&UserId, &ruma::DeviceId),
    visible: u64,
    since: Option<u64>,
    limit: usize,
    filter: &RoomEventFilter,
) -> Result<Page> {
    let mut page = page(
        services,
        PageRequest {
            room_id,
            user,
            device: Some(device),
            from: Some(visible + 1),
            to: since.map(|since| since + 1),
            forward: false,
            limit,
            filter,
        },
    )?;
    page.events.reverse();
    Ok(page)
}

/// An event in client format if the viewer may see it.
fn visible_event(services: &Services, viewer: Viewer<'_>, event: ServedEvent, seen: &mut VisibilityMemo) -> Result<Option<ClientEvent>> {
    if !services.rooms.can_see_event_remembering(viewer.user, &event, seen)? {
        return Ok(None);
    }
    Ok(Some(services.rooms.served_client_event(event.pdu, &event.meta, Some(viewer))?))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/messages`
pub async fn get_message_events(
    State(services): State<Arc<Services>>,
    req: Ruma<get_message_events::v3::Request>,
) -> HandlerResult<get_message_events::v3::Response> {
    let session = req.session()?;
    let request = &req.body;
    services.rooms.check_can_read_room(&request.room_id, &session.user_id)?;
    let from = request.from.as_deref().map(parse_token).transpose()?;
    let to = request.to.as_deref().map(parse_token).transpose()?;
    let forward = request.dir == Direction::Forward;
    let limit = u64::from(request.limit).clamp(1, MAX_LIMIT) as usize;
    let page_request = || PageRequest {
        room_id: &request.room_id,
        user: &session.user_id,
        device: Some(&session.device_id),
        from,
        to,
        forward,
        limit,
        filter: &request.filter,
    };
    let mut page = page(&services, page_request())?;
    // Paging back past the oldest event here, in a room joined through another server: the
    // history before it is fetched from there first.
    if !forward
        && !page.more()
        && page.events.len() < limit
        && services.federation.backfill(&services.rooms, &request.room_id, limit).await? > 0
    {
        page = self::page(&services, page_request())?;
    }

    let mut response = get_message_events::v3::Response::new();
    response.start = match from {
        Some(from) => token(from),
        None if forward => token(0),
        None => token(page.events.first().map_or(0, |(position, _)| position + 1)),
    };
    if page.more()
        && let Some((last, _)) = page.events.last()
    {
        response.end = Some(token(if forward { last + 1 } else { *last }));
    }
    if !request.filter.lazy_load_options.is_disabled() {
        let state = services.rooms.current_state(&request.room_id)?;
        let mut senders: Vec<&str> = page.events.iter().map(|(_, event)| event.pdu().sender.as_str()).collect();
        senders.sort_unstable();
        senders.dedup();
        for sender in senders {
            if let Some(member) = services.rooms.state_pdu(&state, &StateEventType::RoomMember, sender)?
                && let Some(stored) = services.rooms.stored_event(&member.event_id)?
            {
                response
                    .state
                    .push(raw(&services.rooms.client_event(&member.event_id, &stored, None)?)?);
            }
        }
    }
    response.chunk = page.events.iter().map(|(_, event)| raw(event)).collect::<Result<_>>()?;
    Ok(RumaResponse(response))
}
