//! Events from other servers, through the same persistence as local ones.
//!
//! [`Rooms::append_remote`] takes a PDU whose format, signatures and hashes federation has
//! checked, and applies the checks that concern the room: its auth events must exist and
//! authorize it, the state before it (the state after its `prev_events`, resolved when there are
//! several) must authorize it, and the room's current state must too, or it is soft-failed and
//! never shown. An event that forks the room adds a forward extremity, and the room's state
//! becomes the resolution of both sides (ruma's state resolution, v2 or v2.1 by room version).
//! [`Rooms::store_joined_room`] writes a room this server joined through another: the state
//! and auth chain it was given, then the join.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use ruma::canonical_json::CanonicalJsonObject;
use ruma::events::StateEventType;
use ruma::events::room::member::MembershipState;
use ruma::state_res::utils::event_id_set::EventIdSet;
use ruma::{EventId, OwnedEventId, OwnedServerName, OwnedUserId, RoomVersionId, UserId};
use serde_json::Value;

use super::append::Written;
use super::pdu::{Pdu, StoredPdu};
use super::state::{ShortEventId, ShortStateKey, StateHash, StateMap};
use super::{EventMeta, MembershipRecord, RoomRecord, Rooms, StoredEvent, rules};
use crate::error::{Error, Result};
use crate::service::now_ms;
use crate::store::{Batch, Table, key};

/// What became of an event from another server.
#[derive(Debug)]
pub enum Intake {
    /// Stored and in the timeline.
    Accepted,
    /// Already stored.
    Known,
    /// Not authorized by its auth events or the state before it: never stored.
    Rejected(String),
    /// Authorized by the state before it but not by the room's current state: kept out.
    SoftFailed(String),
    /// Some `prev_events` are unknown: they must be fetched first. The event comes back, to be
    /// appended again once they are in.
    MissingPrev(Vec<OwnedEventId>, Box<(Pdu, CanonicalJsonObject)>),
}

/// Stream positions left free below a room joined through another server, for the history
/// backfilled into its timeline later (which must sort before the join, and never reach sync).
pub const BACKFILL_POSITIONS: u64 = 1_000_000;

/// The most auth-chain events walked for one state resolution.
const MAX_AUTH_CHAIN: usize = 100_000;

impl Rooms {
    /// Whether an event is stored.
    pub fn has_event(&self, event_id: &EventId) -> Result<bool> {
        // Recent auth events (create, power levels, members) are checked for on every remote
        // event: the parsed-PDU cache answers those without a read.
        if self.cached_events().contains(event_id) {
            return Ok(true);
        }
        Ok(self.store.get(Table::Events, event_id.as_bytes())?.is_some())
    }

    /// Appends an event received from another server (see the module doc); `forward_to` are
    /// servers to send it on to (a join this server accepted for another).
    pub async fn append_remote(&self, pdu: Pdu, object: CanonicalJsonObject, forward_to: Option<Vec<OwnedServerName>>) -> Result<Intake> {
        let _lock = self.lock_room(&pdu.room_id).await?;
        if self.has_event(&pdu.event_id)? {
            return Ok(Intake::Known);
        }
        let mut room = self.room_locked(&pdu.room_id)?;
        let rules = rules(&room.version)?;
        let mut missing = Vec::new();
        for prev in &pdu.prev_events {
            if !self.has_event(prev)? {
                missing.push(prev.clone());
            }
        }
        if !missing.is_empty() {
            return Ok(Intake::MissingPrev(missing, Box::new((pdu, object))));
        }
        for auth in &pdu.auth_events {
            if !self.has_event(auth)? {
                return Ok(Intake::Rejected(format!("unknown auth event {auth}")));
            }
        }
        let fetch_event = |id: &EventId| self.pdu(id).ok().flatten();
        if let Err(reason) = ruma::state_res::check_state_independent_auth_rules(&rules.authorization, &pdu, fetch_event) {
            return Ok(Intake::Rejected(reason));
        }
        let mut batch = self.store.batch();
        let state_before_hash = self.state_before(&mut batch, &room, &pdu)?;
        let state_before = self.states.load(state_before_hash)?;
        let fetch_state = |kind: &StateEventType, state_key: &str| self.state_pdu(&state_before, kind, state_key).ok().flatten();
        if let Err(reason) = ruma::state_res::check_state_dependent_auth_rules(&rules.authorization, &pdu, fetch_state) {
            return Ok(Intake::Rejected(reason));
        }
        // The soft-fail check against the current state, unless that is the state before it
        // (the usual case), which authorized it already.
        let current = self.states.load(room.state)?;
        if state_before_hash != room.state {
            let fetch_current = |kind: &StateEventType, state_key: &str| self.state_pdu(&current, kind, state_key).ok().flatten();
            if let Err(reason) = ruma::state_res::check_state_dependent_auth_rules(&rules.authorization, &pdu, fetch_current) {
                tracing::info!(event_id = %pdu.event_id, %reason, "soft-failed an event from another server");
                return Ok(Intake::SoftFailed(reason));
            }
        }
        let forks = !room.extremities.iter().all(|extremity| pdu.prev_events.contains(extremity));
        let resolved = if forks {
            let mut after = StateMap::clone(&state_before);
            after.extend(self.state_entry(&pdu)?);
            Some(self.resolve(&room.version, &[current.clone(), Arc::new(after)])?)
        } else {
            None
        };
        let ticket = self.stream.begin()?;
        let redacted = pdu.redacted_event();
        if let Some(target) = &redacted {
            self.redact_target(&mut batch, &rules, &pdu.room_id, target, &pdu.event_id)?;
        }
        let written = Written {
            state_before: Some(state_before_hash),
            transaction: None,
            stream: ticket.position(),
            resolved,
            forward_to,
        };
        self.persist(&mut batch, &mut room, &pdu, object, written)?;
        batch.commit()?;
        let room_id = pdu.room_id.clone();
        self.after_commit(&room, &room_id, &pdu, ticket, redacted);
        Ok(Intake::Accepted)
    }

    /// The entry a state event makes in a state map (its type and state key, interned, and
    /// its event); `None` for an event that is not state.
    fn state_entry(&self, pdu: &Pdu) -> Result<Option<(ShortStateKey, ShortEventId)>> {
        let Some(state_key) = &pdu.state_key else { return Ok(None) };
        let kind = StateEventType::from(pdu.kind.to_string().as_str());
        let Some(short_key) = self.states.short_state_key(&kind, state_key, true)? else {
            return Ok(None);
        };
        Ok(Some((short_key, self.states.short_event_id(&pdu.event_id)?)))
    }

    /// The state before an event, stored as a snapshot: the room's state when the event follows
    /// exactly the forward extremities (the usual case), else the state after its one prev
    /// event or the resolution of the states after each.
    fn state_before(&self, batch: &mut Batch<'_>, room: &RoomRecord, pdu: &Pdu) -> Result<StateHash> {
        let prevs: BTreeSet<&OwnedEventId> = pdu.prev_events.iter().collect();
        if prevs == room.extremities.iter().collect() {
            return Ok(room.state);
        }
        let states = pdu
            .prev_events
            .iter()
            .map(|prev| self.state_after(prev))
            .collect::<Result<Vec<_>>>()?;
        let state = match states.as_slice() {
            [one] => StateMap::clone(one),
            several => self.resolve(&room.version, several)?,
        };
        let entries: Vec<(u64, u64)> = state.into_iter().collect();
        self.states.save(batch, None, &entries)
    }

    /// The resolution of several states of a room (ruma's state resolution of the version).
    pub fn resolve(&self, version: &RoomVersionId, states: &[Arc<StateMap>]) -> Result<StateMap> {
        let rules = rules(version)?;
        let state_res_rules = rules
            .state_res
            .v2_rules()
            .ok_or_else(|| Error::Internal(format!("room version {version} has no state resolution v2")))?;
        let mut maps = Vec::new();
        let mut auth_chains = Vec::new();
        for state in states {
            let mut map = ruma::state_res::StateMap::new();
            for (short_key, short_event) in state.iter() {
                map.insert(self.states.state_key(*short_key)?, self.states.event_id(*short_event)?);
            }
            auth_chains.push(
                self.auth_chain(map.values().cloned())?
                    .into_iter()
                    .collect::<EventIdSet<OwnedEventId>>(),
            );
            maps.push(map);
        }
        let fetch_event = |id: &EventId| self.pdu(id).ok().flatten();
        let subgraph = |conflicted: &ruma::state_res::StateMap<Vec<OwnedEventId>>| {
            self.conflicted_subgraph(conflicted.values().flatten())
                .ok()
                .map(|set| set.into_iter().collect::<EventIdSet<OwnedEventId>>())
        };
        let resolved = ruma::state_res::resolve(
            &rules.authorization,
            state_res_rules,
            maps.iter(),
            auth_chains,
            fetch_event,
            subgraph,
        )
        .map_err(|e| Error::Internal(format!("state resolution: {e}")))?;
        let mut state = StateMap::new();
        for ((kind, state_key), event_id) in resolved {
            if let Some(short_key) = self.states.short_state_key(&kind, &state_key, true)? {
                state.insert(short_key, self.states.short_event_id(&event_id)?);
            }
        }
        Ok(state)
    }

    /// Every event the given events' `auth_events` lead to, recursively (the events themselves
    /// left out), as far as they are stored.
    pub fn auth_chain(&self, events: impl IntoIterator<Item = OwnedEventId>) -> Result<HashSet<OwnedEventId>> {
        let mut chain = HashSet::new();
        let mut todo: Vec<OwnedEventId> = Vec::new();
        for event in events {
            if let Some(pdu) = self.pdu(&event)? {
                todo.extend(pdu.auth_events.iter().cloned());
            }
        }
        while let Some(event) = todo.pop() {
            if chain.len() >= MAX_AUTH_CHAIN {
                return Err(Error::Internal("auth chain too long".into()));
            }
            if !chain.insert(event.clone()) {
                continue;
            }
            if let Some(pdu) = self.pdu(&event)? {
                todo.extend(pdu.auth_events.iter().filter(|id| !chain.contains(*id)).cloned());
            }
        }
        Ok(chain)
    }

    /// The conflicted state subgraph (state resolution v2.1): the events on auth-event paths
    /// from one conflicted event to another.
    fn conflicted_subgraph<'a>(&self, conflicted: impl Iterator<Item = &'a OwnedEventId>) -> Result<HashSet<OwnedEventId>> {
        let conflicted: HashSet<OwnedEventId> = conflicted.cloned().collect();
        // Whether an event reaches a conflicted event through its auth events, memoized.
        let mut reaches: HashMap<OwnedEventId, bool> = HashMap::new();
        let mut subgraph = HashSet::new();
        let chain = self.auth_chain(conflicted.iter().cloned())?;
        for event in chain.iter().chain(conflicted.iter()) {
            if self.reaches_conflicted(event, &conflicted, &mut reaches)? {
                subgraph.insert(event.clone());
            }
        }
        Ok(subgraph)
    }

    fn reaches_conflicted(
        &self,
        event: &OwnedEventId,
        conflicted: &HashSet<OwnedEventId>,
        memo: &mut HashMap<OwnedEventId, bool>,
    ) -> Result<bool> {
        if let Some(known) = memo.get(event) {
            return Ok(*known);
        }
        // Iterative depth-first walk: an event reaches a conflicted event when one of its auth
        // events is conflicted or reaches one.
        let mut stack = vec![(event.clone(), false)];
        while let Some((current, expanded)) = stack.pop() {
            if memo.contains_key(&current) {
                continue;
            }
            let auth_events = self.pdu(&current)?.map(|pdu| pdu.auth_events).unwrap_or_default();
            if expanded {
                let reaches = auth_events
                    .iter()
                    .any(|auth| conflicted.contains(auth) || memo.get(auth).copied().unwrap_or(false));
                memo.insert(current, reaches);
            } else {
                stack.push((current.clone(), true));
                stack.extend(
                    auth_events
                        .into_iter()
                        .filter(|auth| !memo.contains_key(auth))
                        .map(|auth| (auth, false)),
                );
            }
        }
        Ok(memo.get(event).copied().unwrap_or(false))
    }

    /// Stores history fetched from another server (backfill) into the room's timeline, below
    /// its oldest event, newest first; returns how many events were added. Events that are not
    /// authorized by their auth events are left out, as are those past the positions kept free
    /// when the room was joined. Their state is taken to be the state at the oldest event.
    pub async fn store_backfilled(&self, room_id: &ruma::RoomId, mut events: Vec<(Pdu, CanonicalJsonObject)>) -> Result<usize> {
        let _lock = self.lock_room(room_id).await?;
        let room = self.room_locked(room_id)?;
        let rules = rules(&room.version)?;
        let Some((mut position, oldest)) = self.timeline(room_id, None, true, 1)?.into_iter().next() else {
            return Ok(0);
        };
        let state_before = self.stored_event(&oldest)?.and_then(|stored| stored.meta.state_before);
        events.sort_by_key(|(pdu, _)| std::cmp::Reverse(pdu.depth));
        let fetched: HashMap<OwnedEventId, Pdu> = events.iter().map(|(pdu, _)| (pdu.event_id.clone(), pdu.clone())).collect();
        let fetch_event = |id: &EventId| fetched.get(id).cloned().or_else(|| self.pdu(id).ok().flatten());
        let mut batch = self.store.batch();
        let mut added = 0;
        // Newest first, so an event's relations in this batch come before it (and are not in
        // the store yet for `index_relation` to mark it).
        let mut related_here = std::collections::HashSet::new();
        for (pdu, object) in events {
            if pdu.room_id != room_id || position <= 1 {
                continue;
            }
            if self.stored_event(&pdu.event_id)?.is_some_and(|stored| stored.meta.stream != 0) {
                continue;
            }
            if let Err(reason) = ruma::state_res::check_state_independent_auth_rules(&rules.authorization, &pdu, fetch_event) {
                tracing::info!(event_id = %pdu.event_id, %reason, "a backfilled event is not authorized");
                continue;
            }
            position -= 1;
            let stored = StoredEvent {
                meta: EventMeta {
                    room_id: pdu.room_id.clone(),
                    stream: position,
                    state_before,
                    transaction: None,
                    redacted_by: None,
                    related: related_here.contains(&pdu.event_id),
                    replaced: None,
                },
                pdu: StoredPdu::new(&object)?,
            };
            batch.put(Table::Events, pdu.event_id.as_bytes(), &stored.encode());
            batch.put(
                Table::Timeline,
                &key(&[&room.short_id.to_be_bytes(), &position.to_be_bytes()]),
                pdu.event_id.as_bytes(),
            );
            if let Some((_, parent)) = super::relation(&pdu.content_value()) {
                related_here.insert(parent);
            }
            self.index_event(&mut batch, &pdu, position)?;
            added += 1;
        }
        batch.commit()?;
        // Rows written below the kept end of the timeline, which the extremities do not show.
        self.timeline_ends.forget(room_id);
        Ok(added)
    }

    /// Whether the oldest event of a room's timeline here follows events not in it (history
    /// to backfill); returns that event.
    pub fn backfill_point(&self, room_id: &ruma::RoomId) -> Result<Option<OwnedEventId>> {
        let Some((_, oldest)) = self.timeline(room_id, None, true, 1)?.into_iter().next() else {
            return Ok(None);
        };
        let Some(pdu) = self.pdu(&oldest)? else { return Ok(None) };
        for prev in &pdu.prev_events {
            if self.stored_event(prev)?.is_none_or(|stored| stored.meta.stream == 0) {
                return Ok(Some(oldest));
            }
        }
        Ok(None)
    }

    /// Stores events learned only to know a room's state or authorize others ("outliers"): no
    /// timeline position, never shown in a timeline. Already stored ones are left alone.
    pub fn store_outliers(&self, batch: &mut Batch<'_>, events: &[(Pdu, CanonicalJsonObject)]) -> Result<()> {
        for (pdu, object) in events {
            if self.has_event(&pdu.event_id)? {
                continue;
            }
            let stored = StoredEvent {
                meta: EventMeta {
                    room_id: pdu.room_id.clone(),
                    stream: 0,
                    state_before: None,
                    transaction: None,
                    redacted_by: None,
                    related: false,
                    replaced: None,
                },
                pdu: StoredPdu::new(object)?,
            };
            batch.put(Table::Events, pdu.event_id.as_bytes(), &stored.encode());
        }
        Ok(())
    }

    /// Stores an event beyond a gap in a room's history as an outlier that knows the state
    /// before it (the stored events among `state`, as another server gave it), so the events
    /// after it can be checked and resolved against it. It must be authorized by that state.
    pub async fn store_with_state(&self, event: (Pdu, CanonicalJsonObject), state: &[OwnedEventId]) -> Result<()> {
        let (pdu, object) = event;
        let _lock = self.lock_room(&pdu.room_id).await?;
        if self.has_event(&pdu.event_id)? {
            return Ok(());
        }
        let rules = rules(&self.room_locked(&pdu.room_id)?.version)?;
        let mut entries = Vec::new();
        for event_id in state {
            if let Some(state_event) = self.pdu(event_id)?.filter(|state_event| state_event.room_id == pdu.room_id) {
                entries.extend(self.state_entry(&state_event)?);
            }
        }
        let mut batch = self.store.batch();
        let state_hash = self.states.save(&mut batch, None, &entries)?;
        let state_before: StateMap = entries.into_iter().collect();
        let fetch_event = |id: &EventId| self.pdu(id).ok().flatten();
        let fetch_state = |kind: &StateEventType, state_key: &str| self.state_pdu(&state_before, kind, state_key).ok().flatten();
        ruma::state_res::check_state_independent_auth_rules(&rules.authorization, &pdu, fetch_event)
            .and_then(|()| ruma::state_res::check_state_dependent_auth_rules(&rules.authorization, &pdu, fetch_state))
            .map_err(|reason| Error::bad_gateway(format!("the event {} is not authorized by its state: {reason}", pdu.event_id)))?;
        let stored = StoredEvent {
            meta: EventMeta {
                room_id: pdu.room_id.clone(),
                stream: 0,
                state_before: Some(state_hash),
                transaction: None,
                redacted_by: None,
                related: false,
                replaced: None,
            },
            pdu: StoredPdu::new(&object)?,
        };
        batch.put(Table::Events, pdu.event_id.as_bytes(), &stored.encode());
        batch.commit()?;
        Ok(())
    }

    /// Writes a room this server joined through another: the room's state before the join and
    /// its auth chain (checked by federation) as outliers, the state as a snapshot with the
    /// members indexed, then the join itself as the room's first timeline event here.
    pub async fn store_joined_room(
        &self,
        version: &RoomVersionId,
        state: Vec<(Pdu, CanonicalJsonObject)>,
        auth_chain: Vec<(Pdu, CanonicalJsonObject)>,
        join: (Pdu, CanonicalJsonObject),
    ) -> Result<()> {
        let (join, join_object) = join;
        let room_id = join.room_id.clone();
        let _lock = self.lock_room(&room_id).await?;
        if self.has_event(&join.event_id)? {
            return Ok(());
        }
        let mut batch = self.store.batch();
        self.store_outliers(&mut batch, &auth_chain)?;
        self.store_outliers(&mut batch, &state)?;
        let mut entries = Vec::new();
        let mut members: Vec<(OwnedUserId, MembershipState, OwnedEventId)> = Vec::new();
        for (pdu, _) in &state {
            let Some(state_key) = &pdu.state_key else { continue };
            entries.extend(self.state_entry(pdu)?);
            if pdu.kind == ruma::events::TimelineEventType::RoomMember
                && let Ok(user) = UserId::parse(state_key.as_str())
            {
                let membership = pdu
                    .content_value()
                    .get("membership")
                    .and_then(Value::as_str)
                    .map(MembershipState::from);
                members.push((user, membership.unwrap_or(MembershipState::Leave), pdu.event_id.clone()));
            }
        }
        let state_hash = self.states.save(&mut batch, None, &entries)?;
        for (user, membership, event_id) in &members {
            batch.put_json(Table::RoomMembers, &key(&[room_id.as_bytes(), user.as_bytes()]), membership);
            // Local users' own records (an invite, say) stay as they are; other servers' users'
            // memberships are recorded for what they share with local users (device lists,
            // presence).
            if user.server_name() != self.server_name || self.membership(user, &room_id)?.is_none() {
                let record = MembershipRecord {
                    membership: membership.clone(),
                    event_id: event_id.clone(),
                    stream: 0,
                    forgotten: false,
                };
                batch.put_json(Table::Memberships, &key(&[user.as_bytes(), room_id.as_bytes()]), &record);
                self.forget_memberships_on_commit(&mut batch, user);
            }
        }
        let mut servers: Vec<OwnedServerName> = members
            .iter()
            .filter(|(user, membership, _)| *membership == MembershipState::Join && user.server_name() != self.server_name)
            .map(|(user, _, _)| user.server_name().to_owned())
            .collect();
        servers.sort();
        servers.dedup();
        let mut room = RoomRecord {
            version: version.clone(),
            short_id: self.room_ids.next()?,
            state: state_hash,
            extremities: join.prev_events.clone(),
            depth: u64::from(join.depth).saturating_sub(1),
            created_ts: now_ms(),
            servers,

            bump_stamp: 0,
        };
        let ticket = self.stream.begin_after_gap(BACKFILL_POSITIONS)?;
        let written = Written {
            state_before: Some(state_hash),
            transaction: None,
            stream: ticket.position(),
            resolved: None,
            // The resident server has the join and sends it on.
            forward_to: Some(Vec::new()),
        };
        self.persist(&mut batch, &mut room, &join, join_object, written)?;
        batch.commit()?;
        self.after_commit(&room, &room_id, &join, ticket, None);
        Ok(())
    }
}
