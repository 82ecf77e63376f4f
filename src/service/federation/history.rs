//! A room's history and state for other servers in it: single events, the events missing
//! between two points, the state at an event (whole or as IDs) with its auth chain, an event's
//! auth chain, and backfill (the events before given ones). Only servers with a member joined to
//! the room are answered; every answer is bounded. And the other way: history of a room joined
//! through another server, backfilled from it when a reader pages past the oldest event here.

use std::collections::{BTreeSet, HashSet, VecDeque};

use ruma::api::federation::backfill::get_backfill;
use ruma::canonical_json::CanonicalJsonObject;
use ruma::{EventId, OwnedEventId, RoomId, ServerName, UInt};
use serde_json::value::RawValue as RawJsonValue;

use super::Federation;
use crate::error::{Error, Result};
use crate::service::rooms::Rooms;

/// The most events one backfill or missing-events answer carries.
const MAX_EVENTS: usize = 100;

/// A room's state at an event: the state events and their auth chain.
pub struct StateAt {
    pub state: Vec<OwnedEventId>,
    pub auth_chain: Vec<OwnedEventId>,
}

impl Federation {
    /// Fetches up to `limit` events of a room's history from before its oldest event here,
    /// from a server in the room, into the timeline; returns how many were added (0 when the
    /// timeline already starts at the room's creation, or no server answered).
    pub async fn backfill(&self, rooms: &Rooms, room_id: &RoomId, limit: usize) -> Result<usize> {
        let Some(oldest) = rooms.backfill_point(room_id)? else {
            return Ok(0);
        };
        let record = rooms.room(room_id)?;
        let limit = UInt::try_from(limit.clamp(1, MAX_EVENTS)).unwrap_or_default();
        for server in &record.servers {
            let request = get_backfill::v1::Request::new(room_id.to_owned(), vec![oldest.clone()], limit);
            let answer = match self.send(server, request).await {
                Ok(answer) => answer,
                Err(error) => {
                    tracing::info!(%room_id, %server, %error, "backfill failed");
                    continue;
                }
            };
            let mut events = Vec::new();
            for pdu in answer.pdus.iter().take(MAX_EVENTS) {
                let Ok(object) = serde_json::from_str::<CanonicalJsonObject>(pdu.get()) else {
                    continue;
                };
                match self.check_pdu(&record.version, object).await {
                    Ok(checked) => events.push(checked),
                    Err(error) => tracing::info!(%server, %error, "a backfilled event failed its checks"),
                }
            }
            return rooms.store_backfilled(room_id, events).await;
        }
        Ok(0)
    }

    /// Refuses (403) a server with no member joined to the room.
    pub fn check_server_in_room(&self, rooms: &Rooms, origin: &ServerName, room_id: &RoomId) -> Result<()> {
        let record = rooms.room(room_id)?;
        if !record.servers.iter().any(|server| server == origin) {
            return Err(Error::forbidden(format!("{origin} is not in the room")));
        }
        self.check_acl(rooms, origin, room_id)
    }

    /// Refuses (403) a server the room's server ACL denies.
    pub fn check_acl(&self, rooms: &Rooms, origin: &ServerName, room_id: &RoomId) -> Result<()> {
        if rooms.server_allowed(room_id, origin)? {
            Ok(())
        } else {
            Err(Error::forbidden(format!("The room's server ACL denies {origin}")))
        }
    }

    /// A stored event of a room `origin` is in, as its PDU.
    pub fn event_for(&self, rooms: &Rooms, origin: &ServerName, event_id: &EventId) -> Result<CanonicalJsonObject> {
        let stored = rooms.stored_event(event_id)?.ok_or_else(|| Error::not_found("No such event"))?;
        self.check_server_in_room(rooms, origin, &stored.meta.room_id)?;
        stored.pdu.object()
    }

    /// The state before `event_id` (as `/state` and `/state_ids` give it) and its auth chain.
    pub fn state_at(&self, rooms: &Rooms, origin: &ServerName, room_id: &RoomId, event_id: &EventId) -> Result<StateAt> {
        self.check_server_in_room(rooms, origin, room_id)?;
        let stored = rooms
            .stored_event(event_id)?
            .filter(|stored| stored.meta.room_id == room_id)
            .ok_or_else(|| Error::not_found("No such event"))?;
        let hash = stored
            .meta
            .state_before
            .ok_or_else(|| Error::not_found("The state at this event is not known here"))?;
        let mut state = Vec::new();
        for short_event in rooms.states.load(hash)?.values() {
            state.push(rooms.states.event_id(*short_event)?);
        }
        let mut auth_chain: Vec<OwnedEventId> = rooms.auth_chain(state.iter().cloned())?.into_iter().collect();
        auth_chain.sort();
        Ok(StateAt { state, auth_chain })
    }

    /// The auth chain of an event.
    pub fn event_auth(&self, rooms: &Rooms, origin: &ServerName, room_id: &RoomId, event_id: &EventId) -> Result<Vec<OwnedEventId>> {
        self.check_server_in_room(rooms, origin, room_id)?;
        if rooms.stored_event(event_id)?.is_none_or(|stored| stored.meta.room_id != room_id) {
            return Err(Error::not_found("No such event"));
        }
        let mut chain: Vec<OwnedEventId> = rooms.auth_chain([event_id.to_owned()])?.into_iter().collect();
        chain.sort();
        Ok(chain)
    }

    /// Up to `limit` events reached from `from` through `prev_events` (breadth first, `from`
    /// included), stopping at `stop` and below `min_depth`: backfill and missing events.
    pub fn walk_back(
        &self,
        rooms: &Rooms,
        origin: &ServerName,
        room_id: &RoomId,
        (from, include_from): (&[OwnedEventId], bool),
        stop: &[OwnedEventId],
        (limit, min_depth): (usize, u64),
    ) -> Result<Vec<Box<RawJsonValue>>> {
        self.check_server_in_room(rooms, origin, room_id)?;
        let limit = limit.min(MAX_EVENTS);
        let stop: HashSet<&OwnedEventId> = stop.iter().collect();
        let mut seen: BTreeSet<OwnedEventId> = BTreeSet::new();
        let mut queue: VecDeque<(OwnedEventId, bool)> = from.iter().map(|id| (id.clone(), include_from)).collect();
        let mut events = Vec::new();
        while let Some((event_id, include)) = queue.pop_front() {
            if events.len() >= limit {
                break;
            }
            if stop.contains(&event_id) || !seen.insert(event_id.clone()) {
                continue;
            }
            let Some(pdu) = rooms.pdu(&event_id)? else { continue };
            if pdu.room_id != room_id || u64::from(pdu.depth) < min_depth {
                continue;
            }
            if include && let Some(stored) = rooms.stored_event(&event_id)? {
                events.push(stored.pdu.to_raw()?);
            }
            queue.extend(pdu.prev_events.iter().map(|prev| (prev.clone(), true)));
        }
        Ok(events)
    }
}
