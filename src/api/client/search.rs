//! `POST /search`: full-text search over the events of the rooms the user is in, ordered by
//! rank or recency, with context, groupings and the rooms' state (see
//! [`crate::service::rooms::search`] for the index).
//!
//! `next_batch` is `r<N>` for recency order (hits below stream position N) and `k<N>` for rank
//! order (hits after the first N).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::search::search_events::v3::{
    Criteria, EventContextResult, GroupingKey, OrderBy, Request, Response, ResultCategories, ResultGroup, ResultGroupMap, ResultRoomEvents,
    SearchKeys, SearchResult, UserProfile,
};
use ruma::events::StateEventType;
use ruma::events::room::member::MembershipState;
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, UInt, UserId};
use serde_json::Value;

use super::event_context::around;
use super::message_pagination::filter_allows;
use super::rooms::{raw, state_events};
use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::{Error, Result};
use crate::service::Services;
use crate::service::devices::Session;
use crate::service::rooms::search::{SearchField, SearchHit, SearchQuery, words};
use crate::service::rooms::visibility::{ClientEvent, Viewer};

/// Results per page unless the filter says otherwise, and the most a page holds.
const DEFAULT_LIMIT: usize = 10;
const MAX_LIMIT: usize = 100;
/// The most hits one search considers (the newest); `count` says how many there were, up to this.
const MAX_HITS: usize = 10_000;

/// Where a page starts.
enum Batch {
    /// Recency order: hits below this stream position.
    Below(u64),
    /// Rank order: hits after the first this many.
    Skip(usize),
}

fn parse_batch(token: &str) -> Result<Batch> {
    let invalid = || Error::invalid_param(format!("Invalid next_batch: {token}"));
    match token.split_at_checked(1) {
        Some(("r", position)) => position.parse().map(Batch::Below).map_err(|_| invalid()),
        Some(("k", skipped)) => skipped.parse().map(Batch::Skip).map_err(|_| invalid()),
        _ => Err(invalid()),
    }
}

/// `POST /_matrix/client/v3/search`
pub async fn search(State(services): State<Arc<Services>>, req: Ruma<Request>) -> HandlerResult<Response> {
    let session = req.session()?;
    let mut categories = ResultCategories::new();
    if let Some(criteria) = &req.body.search_categories.room_events {
        categories.room_events = search_room_events(&services, session, criteria, req.body.next_batch.as_deref())?;
    }
    Ok(RumaResponse(Response::new(categories)))
}

fn search_room_events(services: &Services, session: &Session, criteria: &Criteria, next_batch: Option<&str>) -> Result<ResultRoomEvents> {
    let user = &session.user_id;
    let viewer = Viewer::device(user, &session.device_id);
    let by_rank = !matches!(criteria.order_by, Some(OrderBy::Recent));
    let batch = next_batch.map(parse_batch).transpose()?;
    let fields = match &criteria.keys {
        None => vec![SearchField::Body, SearchField::Name, SearchField::Topic],
        Some(keys) => keys.iter().map(search_field).collect::<Result<_>>()?,
    };
    let filter = &criteria.filter;
    let mut rooms: HashSet<OwnedRoomId> = services.rooms.rooms_of_user(user, &MembershipState::Join)?.into_iter().collect();
    if let Some(only) = &filter.rooms {
        rooms.retain(|room| only.contains(room));
    }
    rooms.retain(|room| !filter.not_rooms.contains(room));
    let words = words(&criteria.search_term);
    let mut hits = services.rooms.search(&SearchQuery {
        words: &words,
        rooms: &rooms,
        fields: &fields,
        below: match batch {
            Some(Batch::Below(position)) if !by_rank => Some(position),
            _ => None,
        },
        cap: MAX_HITS,
    })?;
    let count = hits.len();
    if by_rank {
        hits.sort_by(|a, b| b.rank.total_cmp(&a.rank).then(b.stream.cmp(&a.stream)));
    }
    let skip = match batch {
        Some(Batch::Skip(skipped)) if by_rank => skipped,
        _ => 0,
    };
    let limit = filter.limit.map_or(DEFAULT_LIMIT, |l| u64::from(l) as usize).clamp(1, MAX_LIMIT);

    let mut page: Vec<(SearchHit, OwnedEventId, ClientEvent)> = Vec::new();
    let mut next = None;
    for (index, hit) in hits.into_iter().enumerate().skip(skip) {
        if page.len() == limit {
            next = Some(match page.last() {
                Some((last, ..)) if !by_rank => format!("r{}", last.stream),
                _ => format!("k{index}"),
            });
            break;
        }
        let Some(event_id) = services.rooms.event_at(&hit.room_id, hit.stream)? else {
            continue;
        };
        let Some(stored) = services.rooms.stored_event(&event_id)? else {
            continue;
        };
        if stored.meta.redacted_by.is_some() || !services.rooms.can_see_event(user, &stored)? {
            continue;
        }
        let event = services.rooms.client_event(&event_id, &stored, Some(viewer))?;
        if filter_allows(filter, &event) {
            page.push((hit, event_id, event));
        }
    }

    let mut response = ResultRoomEvents::new();
    response.count = UInt::new(count as u64);
    response.highlights = words;
    response.next_batch = next;
    let context_limits = (
        u64::from(criteria.event_context.before_limit).min(MAX_LIMIT as u64) as usize,
        u64::from(criteria.event_context.after_limit).min(MAX_LIMIT as u64) as usize,
    );
    for (hit, _, event) in &page {
        let mut result = SearchResult::new();
        result.rank = Some(hit.rank);
        result.result = Some(raw(event)?);
        if context_limits != (0, 0) {
            let context = around(services, viewer, &hit.room_id, hit.stream, context_limits, &Default::default())?;
            let mut found = EventContextResult::new();
            if criteria.event_context.include_profile {
                let senders = context.before.iter().chain(&context.after).map(|(_, event)| event).chain([event]);
                for sender in senders.map(|event| event.pdu().sender.clone()) {
                    if let std::collections::btree_map::Entry::Vacant(entry) = found.profile_info.entry(sender) {
                        let profile = member_profile(services, &hit.room_id, entry.key())?;
                        entry.insert(profile);
                    }
                }
            }
            found.events_before = context.before.iter().map(|(_, event)| raw(event)).collect::<Result<_>>()?;
            found.events_after = context.after.iter().map(|(_, event)| raw(event)).collect::<Result<_>>()?;
            found.start = Some(context.start);
            found.end = Some(context.end);
            result.context = found;
        }
        response.results.push(result);
    }
    for grouping in &criteria.groupings.group_by {
        match &grouping.key {
            Some(GroupingKey::RoomId) => {
                response
                    .groups
                    .insert(ResultGroupMap::RoomId(groups(&page, |(hit, ..)| Some(hit.room_id.clone()))));
            }
            Some(GroupingKey::Sender) => {
                let sender =
                    |(_, _, event): &(SearchHit, OwnedEventId, ClientEvent)| -> Option<OwnedUserId> { Some(event.pdu().sender.clone()) };
                response.groups.insert(ResultGroupMap::Sender(groups(&page, sender)));
            }
            _ => return Err(Error::invalid_param("groupings: the key is room_id or sender")),
        }
    }
    if criteria.include_state == Some(true) {
        for room_id in page.iter().map(|(hit, ..)| &hit.room_id).collect::<HashSet<_>>() {
            let state = services.rooms.current_state(room_id)?;
            let events = state_events(services, &state)?.iter().map(raw).collect::<Result<_>>()?;
            response.state.insert(room_id.clone(), events);
        }
    }
    Ok(response)
}

/// The field a search key names; 400 for others.
fn search_field(key: &SearchKeys) -> Result<SearchField> {
    match key {
        SearchKeys::ContentBody => Ok(SearchField::Body),
        SearchKeys::ContentName => Ok(SearchField::Name),
        SearchKeys::ContentTopic => Ok(SearchField::Topic),
        other => Err(Error::invalid_param(format!(
            "Search keys are content.body, content.name and content.topic, not {}",
            other.as_str()
        ))),
    }
}

/// The page's results grouped by `key`: each group's event IDs in page order, and the group's
/// order by its best result.
fn groups<K: Ord>(
    page: &[(SearchHit, OwnedEventId, ClientEvent)],
    key: impl Fn(&(SearchHit, OwnedEventId, ClientEvent)) -> Option<K>,
) -> BTreeMap<K, ResultGroup> {
    let mut groups: BTreeMap<K, ResultGroup> = BTreeMap::new();
    let mut next_order = 0u32;
    for result in page {
        let Some(key) = key(result) else { continue };
        let group = groups.entry(key).or_insert_with(|| {
            let mut group = ResultGroup::new();
            group.order = Some(UInt::from(next_order));
            next_order += 1;
            group
        });
        group.results.push(result.1.clone());
    }
    groups
}

/// A member's name and avatar in a room, from their member event.
fn member_profile(services: &Services, room_id: &ruma::RoomId, user: &UserId) -> Result<UserProfile> {
    let state = services.rooms.current_state(room_id)?;
    let member = services.rooms.state_content(&state, &StateEventType::RoomMember, user.as_str())?;
    let mut profile = UserProfile::new();
    if let Some(member) = member {
        profile.displayname = member.get("displayname").and_then(Value::as_str).map(str::to_owned);
        profile.avatar_url = member.get("avatar_url").and_then(Value::as_str).map(Into::into);
    }
    Ok(profile)
}
