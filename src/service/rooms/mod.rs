//! Rooms: their events, state and memberships.
//!
//! Every event enters through [`Rooms::append`]: under the room's lock it is built as a signed
//! PDU on the room's forward extremities, checked against the room version's authorization
//! rules with ruma's `state-res` (403 `M_FORBIDDEN` with the failed rule as the reason), and
//! written in one batch with its timeline entry, its state snapshot, and the membership
//! indexes. Rooms are appended to in parallel; events of one room in order. Every event gets
//! a position in the server-wide stream, which orders timelines and, later, sync.

pub mod build;
pub mod create;
pub mod directory;
pub mod events;
pub mod invites;
pub mod membership;
pub mod outbox;
pub mod pdu;
pub mod peeking;
pub mod purge;
pub mod receipts;
pub mod relations;
pub mod remote;
pub mod search;
pub mod spaces;
pub mod state;
pub mod timeline;
pub mod upgrade;
pub mod visibility;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ruma::canonical_json::CanonicalJsonObject;
use ruma::events::room::member::MembershipState;
use ruma::events::room::power_levels::{RoomPowerLevels, RoomPowerLevelsEventContent};
use ruma::events::{StateEventType, TimelineEventType};
use ruma::room_version_rules::RoomVersionRules;
use ruma::{
    EventId, MilliSecondsSinceUnixEpoch, OwnedDeviceId, OwnedEventId, OwnedRoomId, OwnedServerName, OwnedUserId, RoomId, RoomVersionId,
    UserId,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use self::pdu::{Pdu, StoredPdu, UnsignedPdu};
use self::state::{RoomStates, StateHash, StateMap};
use super::appservices::Appservices;
use super::keyed_locks::{KeyGuard, KeyedLocks};
use super::metrics::Metrics;
use super::now_ms;
use super::profiles::Profiles;
use super::server_key::ServerKey;
use super::stream::Stream;
use crate::error::{Error, Result};
use crate::store::{Batch, Counter, Store, StoreLock, Table, key, prefix};

/// A room this server takes part in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoomRecord {
    pub version: RoomVersionId,
    /// Short ID used in the room's timeline keys.
    pub short_id: u64,
    /// The current state.
    pub state: StateHash,
    /// The forward extremities: the events no other event follows yet.
    pub extremities: Vec<OwnedEventId>,
    /// The greatest depth of the room's events.
    pub depth: u64,
    pub created_ts: u64,
    /// The other servers with members joined to the room: where its events are sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<OwnedServerName>,
    /// The stream position of the room's latest message-like event ([`BUMP_TYPES`]), what
    /// sliding sync orders rooms by; 0 for a record written before it was kept.
    #[serde(default)]
    pub bump_stamp: u64,
}

/// A room's members a write wakes, with the forward extremities they were read at.
type MemberList = (Vec<OwnedEventId>, Arc<[OwnedUserId]>);

/// Rooms whose member lists [`Rooms::users_to_wake`] keeps before it starts over.
const CACHED_MEMBER_LISTS: usize = 1_024;

/// Event types that move a room up a sliding-sync room list (as Synapse counts them).
pub const BUMP_TYPES: [&str; 7] = [
    "m.room.create",
    "m.room.message",
    "m.room.encrypted",
    "m.sticker",
    "m.call.invite",
    "m.poll.start",
    "m.beacon",
];

/// The transaction a client sent an event in, so a retry finds it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Transaction {
    pub device_id: OwnedDeviceId,
    pub txn_id: String,
}

/// One stored event: the PDU and what this server knows about it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEvent {
    pub room_id: OwnedRoomId,
    /// The signed PDU (redacted once a redaction applies to it); stored after the other
    /// fields' JSON, not in it (see [`StoredEvent::encode`]).
    #[serde(skip)]
    pub pdu: StoredPdu,
    /// Position in the server-wide stream.
    pub stream: u64,
    /// The state before the event (`None` for the create event).
    pub state_before: Option<StateHash>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<Transaction>,
    /// The redaction that redacted this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redacted_by: Option<OwnedEventId>,
    /// Whether events relate to it (edits, replies in a thread, references, reactions), so
    /// serving it reads the relations index; most events have none and skip the read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub related: bool,
    /// For a state event: what it replaced in the room's state (its `prev_content`). Absent
    /// when not recorded (events stored before it was, or without a state): then the state
    /// before the event is read for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<Replaced>,
}

/// What a state event replaced in the room's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Replaced {
    /// It was the first of its type and state key.
    Nothing,
    Event(OwnedEventId),
}

/// A user's membership of a room, as indexed for lookups by user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MembershipRecord {
    pub membership: MembershipState,
    pub event_id: OwnedEventId,
    pub stream: u64,
    /// Set by `/forget`: the room no longer appears for this user.
    #[serde(default)]
    pub forgotten: bool,
}

/// What is written with an event besides the PDU.
struct Written {
    state_before: Option<StateHash>,
    transaction: Option<Transaction>,
    stream: u64,
    /// For an event that forks the room (it does not follow every forward extremity): the
    /// room's current state resolved with the state after the event.
    resolved: Option<StateMap>,
    /// The servers to send the event to, when not the rule's: events of this server's users
    /// go to every server in the room (before and after a membership change), others nowhere.
    forward_to: Option<Vec<OwnedServerName>>,
}

/// An event to append, as a client or the server asks for it.
pub struct NewEvent {
    pub kind: TimelineEventType,
    pub content: Value,
    pub state_key: Option<String>,
    pub redacts: Option<OwnedEventId>,
    pub transaction: Option<Transaction>,
    /// The event's `origin_server_ts` when not now: an appservice importing history sets it.
    pub timestamp: Option<MilliSecondsSinceUnixEpoch>,
}

impl NewEvent {
    /// A state event.
    pub fn state(kind: StateEventType, state_key: &str, content: Value) -> NewEvent {
        NewEvent {
            kind: kind.to_string().into(),
            content,
            state_key: Some(state_key.to_owned()),
            redacts: None,
            transaction: None,
            timestamp: None,
        }
    }
}

/// The rooms of this server.
pub struct Rooms {
    store: Store,
    server_name: OwnedServerName,
    key: Arc<ServerKey>,
    pub states: RoomStates,
    stream: Arc<Stream>,
    room_ids: Counter,
    /// Numbers the EDUs queued for other servers, in order.
    edu_ids: Counter,
    locks: KeyedLocks<OwnedRoomId>,
    /// Serializes alias creation, so one alias never points at two rooms.
    aliases_lock: std::sync::Mutex<()>,
    /// Room records as last written; filled and updated only under the room's lock, so a
    /// reader never puts an older record back. Not kept when processes share the database
    /// (another may have written since).
    records: Mutex<HashMap<OwnedRoomId, RoomRecord>>,
    /// The members each write in a room wakes (see [`Rooms::users_to_wake`]), with the room's
    /// forward extremities they were read at: every event written changes those, so a list is
    /// used only while no event was added since (a burst of receipts reads the members once).
    wakeable: Mutex<HashMap<OwnedRoomId, MemberList>>,
    /// Parsed PDUs of recent events: every auth check reads the same few (create, power
    /// levels, the sender's membership). A redaction drops its target here and, announced,
    /// in the other processes sharing the database.
    pdus: Arc<Mutex<HashMap<OwnedEventId, Arc<Pdu>>>>,
    /// The profiles joins and invites carry.
    profiles: Arc<Profiles>,
    metrics: Arc<Metrics>,
    /// Woken when events are queued for other servers.
    outbox: tokio::sync::Notify,
    /// Destinations events were queued for since the sender last looked.
    outbox_destinations: Arc<Mutex<std::collections::BTreeSet<OwnedServerName>>>,
    /// Users long-polling `/events` on rooms they may read without being in them.
    peekers: peeking::Peekers,
    /// The bridges and bots events are pushed to.
    appservices: Arc<Appservices>,
}

impl Rooms {
    pub fn new(
        store: Store,
        server_name: OwnedServerName,
        key: Arc<ServerKey>,
        stream: Arc<Stream>,
        profiles: Arc<Profiles>,
        metrics: Arc<Metrics>,
        appservices: Arc<Appservices>,
    ) -> Result<Rooms> {
        let pdus: Arc<Mutex<HashMap<OwnedEventId, Arc<Pdu>>>> = Arc::default();
        let redacted = pdus.clone();
        stream.on_announcement('r', move |event_id| {
            if let Ok(event_id) = EventId::parse(event_id) {
                redacted.lock().unwrap_or_else(|e| e.into_inner()).remove(&event_id);
            }
        });
        Ok(Rooms {
            states: RoomStates::new(store.clone())?,
            stream,
            room_ids: Counter::open(&store, "room_short_id")?,
            edu_ids: Counter::open(&store, "federation_edu")?,
            locks: KeyedLocks::default(),
            aliases_lock: std::sync::Mutex::new(()),
            records: Mutex::new(HashMap::new()),
            wakeable: Mutex::new(HashMap::new()),
            profiles,
            metrics,
            outbox: tokio::sync::Notify::new(),
            outbox_destinations: Arc::default(),
            pdus,
            peekers: Default::default(),
            appservices,
            store,
            server_name,
            key,
        })
    }

    /// The server this is.
    pub fn server_name(&self) -> &OwnedServerName {
        &self.server_name
    }

    /// Serializes the writers of a room: in this process, and with the other processes on a
    /// shared database.
    async fn lock_room(&self, room_id: &RoomId) -> Result<(KeyGuard<'_, OwnedRoomId>, StoreLock)> {
        let local = self.locks.lock(room_id.to_owned()).await;
        let shared = self.store.lock(&[b"room:", room_id.as_bytes()].concat()).await?;
        Ok((local, shared))
    }

    /// A room's record; 404 `M_NOT_FOUND` if this server does not know it.
    pub fn room(&self, room_id: &RoomId) -> Result<RoomRecord> {
        if let Some(record) = self.records.lock().unwrap_or_else(|e| e.into_inner()).get(room_id) {
            return Ok(record.clone());
        }
        self.store
            .get_json(Table::Rooms, room_id.as_bytes())?
            .ok_or_else(|| Error::not_found("This server knows no such room"))
    }

    /// A room's record, for a caller holding the room's lock: cached from here on.
    fn room_locked(&self, room_id: &RoomId) -> Result<RoomRecord> {
        let record = self.room(room_id)?;
        self.remember_room(room_id, &record);
        Ok(record)
    }

    /// Caches a room record written under the room's lock.
    fn remember_room(&self, room_id: &RoomId, record: &RoomRecord) {
        if self.store.shared().is_some() {
            return;
        }
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(room_id.to_owned(), record.clone());
    }

    /// Drops cached data of a room being deleted.
    fn forget_room_caches(&self, room_id: &RoomId) {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).remove(room_id);
        self.wakeable.lock().unwrap_or_else(|e| e.into_inner()).remove(room_id);
        self.pdus.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The event holding a state key in a state.
    pub fn state_pdu(&self, state: &StateMap, kind: &StateEventType, state_key: &str) -> Result<Option<Pdu>> {
        match self.state_event_id(state, kind, state_key)? {
            Some(event_id) => self.pdu(&event_id),
            None => Ok(None),
        }
    }

    /// The content of a state event in a state, if set.
    pub fn state_content(&self, state: &StateMap, kind: &StateEventType, state_key: &str) -> Result<Option<Value>> {
        match self.state_event_id(state, kind, state_key)? {
            Some(event_id) => Ok(self.shared_pdu(&event_id)?.map(|pdu| pdu.content_value())),
            None => Ok(None),
        }
    }

    /// The ID of the event holding a state key in a state.
    fn state_event_id(&self, state: &StateMap, kind: &StateEventType, state_key: &str) -> Result<Option<OwnedEventId>> {
        let Some(short_key) = self.states.short_state_key(kind, state_key, false)? else {
            return Ok(None);
        };
        state
            .get(&short_key)
            .map(|short_event| self.states.event_id(*short_event))
            .transpose()
    }

    /// A room's current state.
    pub fn current_state(&self, room_id: &RoomId) -> Result<Arc<StateMap>> {
        self.states.load(self.room(room_id)?.state)
    }

    /// The state after an event: before it, plus the event itself if it is a state event.
    pub fn state_after(&self, event_id: &EventId) -> Result<Arc<StateMap>> {
        let stored = self.stored_event(event_id)?.ok_or_else(|| Error::not_found("Event not found"))?;
        let pdu = self.parsed_pdu(event_id, &stored)?;
        let before = match stored.state_before {
            Some(hash) => self.states.load(hash)?,
            None => Arc::new(StateMap::new()),
        };
        // A message leaves the state as it was: the loaded state is shared, not copied.
        let Some(state_key) = &pdu.state_key else {
            return Ok(before);
        };
        let mut state = StateMap::clone(&before);
        let kind = StateEventType::from(pdu.kind.to_string().as_str());
        if let Some(short_key) = self.states.short_state_key(&kind, state_key, false)? {
            state.insert(short_key, self.states.short_event_id(event_id)?);
        }
        Ok(Arc::new(state))
    }

    /// A user's membership in a state (`leave` when absent).
    pub fn membership_in(&self, state: &StateMap, user_id: &UserId) -> Result<MembershipState> {
        Ok(self
            .state_content(state, &StateEventType::RoomMember, user_id.as_str())?
            .and_then(|content| content.get("membership").and_then(Value::as_str).map(MembershipState::from))
            .unwrap_or(MembershipState::Leave))
    }

    /// Refuses with 403 unless `user` is joined to the room now.
    pub fn check_joined(&self, room_id: &RoomId, user: &UserId) -> Result<()> {
        if self.membership_in(&*self.current_state(room_id)?, user)? != MembershipState::Join {
            return Err(Error::forbidden("You are not in this room"));
        }
        Ok(())
    }

    /// A user's membership record for a room, if they ever had one.
    pub fn membership(&self, user_id: &UserId, room_id: &RoomId) -> Result<Option<MembershipRecord>> {
        Ok(self
            .store
            .get_json(Table::Memberships, &key(&[user_id.as_bytes(), room_id.as_bytes()]))?)
    }

    /// The rooms a user is in with the given membership.
    pub fn rooms_of_user(&self, user_id: &UserId, membership: &MembershipState) -> Result<Vec<OwnedRoomId>> {
        Ok(self
            .memberships_of(user_id)?
            .into_iter()
            .filter(|(_, record)| &record.membership == membership)
            .map(|(room_id, _)| room_id)
            .collect())
    }

    /// Every room a user has a membership in (forgotten ones left out), with the record.
    pub fn memberships_of(&self, user_id: &UserId) -> Result<Vec<(OwnedRoomId, MembershipRecord)>> {
        let user_prefix = prefix(&[user_id.as_bytes()]);
        let rows = self.store.scan_json::<MembershipRecord>(Table::Memberships, &user_prefix)?;
        Ok(rows
            .into_iter()
            .filter(|(_, record)| !record.forgotten)
            .filter_map(|(key, record)| {
                let room_id = RoomId::parse(String::from_utf8_lossy(&key[user_prefix.len()..]).as_ref()).ok()?;
                Some((room_id, record))
            })
            .collect())
    }

    /// A room's members of every membership, from the membership index (no events read).
    pub fn members(&self, room_id: &RoomId) -> Result<Vec<(OwnedUserId, MembershipState)>> {
        let room_prefix = prefix(&[room_id.as_bytes()]);
        let rows = self.store.scan_json::<MembershipState>(Table::RoomMembers, &room_prefix)?;
        Ok(rows
            .into_iter()
            .filter_map(|(key, membership)| {
                let user = UserId::parse(String::from_utf8_lossy(&key[room_prefix.len()..]).as_ref()).ok()?;
                Some((user, membership))
            })
            .collect())
    }

    /// The users joined to a room (of every server).
    pub fn joined_members(&self, room_id: &RoomId) -> Result<Vec<OwnedUserId>> {
        Ok(self
            .members(room_id)?
            .into_iter()
            .filter(|(_, membership)| *membership == MembershipState::Join)
            .map(|(user, _)| user)
            .collect())
    }

    /// The users an event in the room concerns: its members, invitees and knockers, and who
    /// peeks into it.
    pub fn users_to_wake(&self, room_id: &RoomId) -> Result<Vec<OwnedUserId>> {
        // Read before the members, so a list kept is never older than the extremities it is
        // kept with.
        let extremities = self.room(room_id).ok().map(|room| room.extremities);
        let kept = self
            .wakeable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(room_id)
            .and_then(|(at, users)| (Some(at) == extremities.as_ref()).then(|| users.clone()));
        let members = match kept {
            Some(members) => members,
            None => {
                let members: Arc<[OwnedUserId]> = self
                    .members(room_id)?
                    .into_iter()
                    .filter(|(_, membership)| {
                        matches!(membership, MembershipState::Join | MembershipState::Invite | MembershipState::Knock)
                    })
                    .map(|(user, _)| user)
                    .collect();
                if let Some(extremities) = extremities {
                    let mut wakeable = self.wakeable.lock().unwrap_or_else(|e| e.into_inner());
                    if wakeable.len() >= CACHED_MEMBER_LISTS {
                        wakeable.clear();
                    }
                    wakeable.insert(room_id.to_owned(), (extremities, members.clone()));
                }
                members
            }
        };
        let mut users = members.to_vec();
        users.extend(self.peekers.of(room_id));
        Ok(users)
    }

    /// The server-wide stream.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// Marks a room forgotten for a user who is no longer in it.
    pub fn forget(&self, user_id: &UserId, room_id: &RoomId) -> Result<()> {
        let Some(mut record) = self.membership(user_id, room_id)? else {
            return Ok(());
        };
        if matches!(
            record.membership,
            MembershipState::Join | MembershipState::Invite | MembershipState::Knock
        ) {
            return Err(Error::bad_request("You must leave the room before forgetting it"));
        }
        record.forgotten = true;
        let mut batch = self.store.batch();
        batch.put_json(Table::Memberships, &key(&[user_id.as_bytes(), room_id.as_bytes()]), &record);
        batch.commit()?;
        Ok(())
    }

    /// The power levels of a state, with the room's creators (who, from room version 12 on,
    /// hold unlimited power).
    pub fn power_levels(&self, version: &RoomVersionId, state: &StateMap) -> Result<RoomPowerLevels> {
        let rules = rules(version)?;
        let content: Option<RoomPowerLevelsEventContent> = self
            .state_content(state, &StateEventType::RoomPowerLevels, "")?
            .and_then(|content| serde_json::from_value(content).ok());
        let mut creators = Vec::new();
        if let Some(create) = self.state_pdu(state, &StateEventType::RoomCreate, "")? {
            creators.push(create.sender.clone());
            if rules.authorization.additional_room_creators
                && let Some(additional) = create.content_value().get("additional_creators").and_then(Value::as_array)
            {
                creators.extend(additional.iter().filter_map(|user| UserId::parse(user.as_str()?).ok()));
            }
        }
        Ok(RoomPowerLevels::new(content.into(), &rules.authorization, creators))
    }

    /// The transaction's event, if this device already sent it to this room.
    pub fn transaction_event(&self, user_id: &UserId, room_id: &RoomId, transaction: &Transaction) -> Result<Option<OwnedEventId>> {
        let row = self
            .store
            .get(Table::Transactions, &transaction_key(user_id, room_id, transaction))?;
        Ok(row.and_then(|bytes| EventId::parse(String::from_utf8_lossy(&bytes).as_ref()).ok()))
    }

    /// Creates a room with its `m.room.create` event; returns its ID. The rest of the room's
    /// initial events are appended by the caller, which holds nothing: the room is not
    /// reachable before its ID is returned.
    pub async fn create(&self, version: &RoomVersionId, creator: &UserId, content: Value) -> Result<OwnedRoomId> {
        let rules = rules(version)?;
        let room_id = if rules.authorization.room_create_event_id_as_room_id {
            None
        } else {
            let local = super::random_string(18);
            Some(RoomId::parse(format!("!{local}:{}", self.server_name)).map_err(|e| Error::Internal(e.to_string()))?)
        };
        let kind = TimelineEventType::RoomCreate;
        // In room version 12 the room ID is the create event's hash: the same creator making
        // two rooms alike within one millisecond would make one ID, so a taken ID moves the
        // timestamp on.
        let now = MilliSecondsSinceUnixEpoch::now();
        let mut attempt = 0u32;
        let (signed, pdu, _lock) = loop {
            let origin_server_ts = MilliSecondsSinceUnixEpoch(now.0.saturating_add(ruma::UInt::from(attempt)));
            let (signed, pdu) = self.sign(
                UnsignedPdu {
                    room_id: room_id.as_deref(),
                    sender: creator,
                    kind: &kind,
                    content: &content,
                    state_key: Some(""),
                    redacts: None,
                    prev_events: &[],
                    auth_events: &[],
                    depth: 1,
                    origin_server_ts,
                },
                &rules,
            )?;
            ruma::state_res::check_state_independent_auth_rules(&rules.authorization, &pdu, |_: &EventId| None::<Pdu>)
                .map_err(|reason| Error::bad_request(format!("The room cannot be created: {reason}")))?;
            let lock = self.lock_room(&signed.room_id).await?;
            if self.store.get(Table::Rooms, signed.room_id.as_bytes())?.is_none() {
                break (signed, pdu, lock);
            }
            attempt += 1;
            if attempt > 1000 {
                return Err(Error::Internal("no free room ID".into()));
            }
        };
        let mut room = RoomRecord {
            version: version.clone(),
            short_id: self.room_ids.next()?,
            state: 0,
            extremities: vec![],
            depth: 0,
            created_ts: now_ms(),
            servers: Vec::new(),

            bump_stamp: 0,
        };
        let ticket = self.stream.begin()?;
        let mut batch = self.store.batch();
        let written = Written {
            state_before: None,
            transaction: None,
            stream: ticket.position(),
            resolved: None,
            forward_to: None,
        };
        self.persist(&mut batch, &mut room, &pdu, signed.object, written)?;
        batch.commit()?;
        self.metrics.event_persisted();
        self.remember_room(&signed.room_id, &room);
        ticket.complete(vec![creator.to_owned()]);
        Ok(signed.room_id)
    }

    /// Appends an event to a room as `sender`; returns its event ID.
    pub async fn append(&self, room_id: &RoomId, sender: &UserId, event: NewEvent) -> Result<OwnedEventId> {
        let _lock = self.lock_room(room_id).await?;
        if let Some(transaction) = &event.transaction
            && let Some(existing) = self.transaction_event(sender, room_id, transaction)?
        {
            return Ok(existing);
        }
        let mut room = self.room_locked(room_id)?;
        let rules = rules(&room.version)?;
        let (signed, pdu) = self.build(&room, &rules, room_id, sender, &event)?;

        let ticket = self.stream.begin()?;
        let mut batch = self.store.batch();
        let redacted = pdu.redacted_event();
        if let Some(target) = &redacted {
            self.redact_target(&mut batch, &rules, room_id, target, &pdu.event_id)?;
        }
        let written = Written {
            state_before: Some(room.state),
            transaction: event.transaction,
            stream: ticket.position(),
            resolved: None,
            forward_to: None,
        };
        self.persist(&mut batch, &mut room, &pdu, signed.object, written)?;
        batch.commit()?;
        self.after_commit(&room, room_id, &pdu, ticket, redacted);
        Ok(pdu.event_id)
    }

    /// What follows a committed event: metrics, the cached room record, the outbox's sender
    /// and the wake-ups of the users it concerns.
    fn after_commit(
        &self,
        room: &RoomRecord,
        room_id: &RoomId,
        pdu: &Pdu,
        mut ticket: super::stream::Ticket<'_>,
        redacted: Option<OwnedEventId>,
    ) {
        if let Some(target) = &redacted {
            ticket.announce('r', target.to_string());
        }
        self.metrics.event_persisted();
        self.remember_room(room_id, room);
        if !room.servers.is_empty() {
            self.outbox.notify_one();
        }
        let mut woken = self.users_to_wake(room_id).unwrap_or_default();
        if pdu.kind == TimelineEventType::RoomMember
            && let Some(target) = pdu.state_key.as_deref().and_then(|key| UserId::parse(key).ok())
        {
            woken.push(target);
        }
        ticket.complete(woken);
        if let Some(target) = redacted {
            // Dropped only now: a read before the commit may have cached the unredacted event.
            self.pdus.lock().unwrap_or_else(|e| e.into_inner()).remove(&target);
        }
    }

    /// Redacts `target` (when it is in this room) in `batch`, recording `redaction_id`.
    fn redact_target(
        &self,
        batch: &mut Batch<'_>,
        rules: &RoomVersionRules,
        room_id: &RoomId,
        target: &EventId,
        redaction_id: &EventId,
    ) -> Result<()> {
        let Some(mut stored) = self.stored_event(target)? else {
            return Ok(());
        };
        if stored.room_id != room_id || stored.redacted_by.is_some() {
            return Ok(());
        }
        let original = stored.pdu.parse(target, room_id)?;
        self.unindex_event(batch, &original, stored.stream)?;
        let redacted = ruma::canonical_json::redact(stored.pdu.object()?, &rules.redaction, None)
            .map_err(|e| Error::Internal(format!("redaction of {target}: {e}")))?;
        stored.pdu = StoredPdu::new(&redacted)?;
        stored.redacted_by = Some(redaction_id.to_owned());
        batch.put(Table::Events, target.as_bytes(), &stored.encode());
        Ok(())
    }

    /// Writes an authorized event into `batch`: the event, its timeline entry, the room's new
    /// state and extremities, and the indexes it touches.
    fn persist(
        &self,
        batch: &mut Batch<'_>,
        room: &mut RoomRecord,
        pdu: &Pdu,
        object: CanonicalJsonObject,
        written: Written,
    ) -> Result<()> {
        let Written {
            state_before,
            transaction,
            stream,
            resolved,
            forward_to,
        } = written;
        let short_event = self.states.short_event_id(&pdu.event_id)?;
        let mut state_after = state_before;
        let mut replaced = None;
        if let Some(state_key) = &pdu.state_key {
            let kind = StateEventType::from(pdu.kind.to_string().as_str());
            let short_key = self
                .states
                .short_state_key(&kind, state_key, true)?
                .ok_or_else(|| Error::Internal("state key not interned".into()))?;
            let previous = match state_before {
                Some(hash) => self.states.load(hash)?.get(&short_key).copied(),
                None => None,
            };
            replaced = Some(match previous {
                Some(previous) => Replaced::Event(self.states.event_id(previous)?),
                None => Replaced::Nothing,
            });
            state_after = Some(self.states.save(batch, state_before, &[(short_key, short_event)])?.0);
        }
        let state_after = state_after.ok_or_else(|| Error::Internal("an event without a state".into()))?;
        // An event following every forward extremity moves the room on; one that forks it adds
        // an extremity, and the room's state is the resolution of both sides.
        if room.extremities.iter().all(|extremity| pdu.prev_events.contains(extremity)) {
            room.state = state_after;
            room.extremities = vec![pdu.event_id.clone()];
        } else {
            if let Some(resolved) = resolved {
                let current = self.states.load(room.state)?;
                let changes: Vec<(u64, u64)> = resolved
                    .into_iter()
                    .filter(|(key, event)| current.get(key) != Some(event))
                    .collect();
                room.state = self.states.save(batch, Some(room.state), &changes)?.0;
            }
            room.extremities.retain(|extremity| !pdu.prev_events.contains(extremity));
            room.extremities.push(pdu.event_id.clone());
        }
        room.depth = room.depth.max(u64::from(pdu.depth));
        if !pdu.rejected && BUMP_TYPES.contains(&pdu.kind.to_string().as_str()) {
            room.bump_stamp = room.bump_stamp.max(stream);
        }

        self.queue_outgoing(batch, room, pdu, forward_to, stream)?;
        self.queue_for_appservices(batch, pdu, state_before)?;

        let room_id = pdu.room_id.as_bytes();
        if pdu.kind == TimelineEventType::RoomMember
            && let Some(target) = pdu.state_key.as_deref()
        {
            let membership = pdu
                .content_value()
                .get("membership")
                .and_then(Value::as_str)
                .map(MembershipState::from)
                .unwrap_or(MembershipState::Leave);
            let record = MembershipRecord {
                membership: membership.clone(),
                event_id: pdu.event_id.clone(),
                stream,
                forgotten: false,
            };
            batch.put_json(Table::Memberships, &key(&[target.as_bytes(), room_id]), &record);
            batch.put_json(Table::RoomMembers, &key(&[room_id, target.as_bytes()]), &membership);
            batch.put_json(Table::MemberChanges, &stream.to_be_bytes(), &(&pdu.room_id, target, &membership));
        }
        if let Some(transaction) = &transaction {
            batch.put(
                Table::Transactions,
                &transaction_key(&pdu.sender, &pdu.room_id, transaction),
                pdu.event_id.as_bytes(),
            );
        }
        self.index_event(batch, pdu, stream)?;
        batch.put(
            Table::Timeline,
            &key(&[&room.short_id.to_be_bytes(), &stream.to_be_bytes()]),
            pdu.event_id.as_bytes(),
        );
        batch.put(Table::StreamRooms, &stream.to_be_bytes(), room_id);
        let stored = StoredEvent {
            room_id: pdu.room_id.clone(),
            pdu: StoredPdu::new(&object)?,
            stream,
            state_before,
            transaction,
            redacted_by: None,
            related: false,
            replaced,
        };
        batch.put(Table::Events, pdu.event_id.as_bytes(), &stored.encode());
        batch.put_json(Table::Rooms, room_id, room);
        Ok(())
    }
}

impl Rooms {
    /// Indexes an event stored at stream position `stream` in `batch`: its relation and its
    /// searchable text.
    pub(super) fn index_event(&self, batch: &mut Batch<'_>, pdu: &Pdu, stream: u64) -> Result<()> {
        self.index_text(batch, pdu, stream);
        self.index_relation(batch, pdu, stream)
    }

    /// Removes a redacted event from the indexes: its relation no longer counts, its text is
    /// no longer found.
    fn unindex_event(&self, batch: &mut Batch<'_>, original: &Pdu, stream: u64) -> Result<()> {
        self.unindex_text(batch, original, stream);
        if let Some((_, parent)) = relation(&original.content_value()) {
            batch.delete(
                Table::Relations,
                &key(&[original.room_id.as_bytes(), parent.as_bytes(), &stream.to_be_bytes()]),
            );
        }
        Ok(())
    }
}

/// Where a transaction's event ID is kept: transaction IDs are scoped to a device and a room.
fn transaction_key(user_id: &UserId, room_id: &RoomId, transaction: &Transaction) -> Vec<u8> {
    key(&[
        user_id.as_bytes(),
        transaction.device_id.as_bytes(),
        room_id.as_bytes(),
        transaction.txn_id.as_bytes(),
    ])
}

/// The rules of a room version this server supports.
pub fn rules(version: &RoomVersionId) -> Result<RoomVersionRules> {
    version
        .rules()
        .ok_or_else(|| Error::Internal(format!("room version {version} is not supported")))
}

/// The (`rel_type`, parent event) of an event's `m.relates_to`, if it has one.
pub fn relation(content: &Value) -> Option<(String, OwnedEventId)> {
    let relates_to = content.get("m.relates_to")?;
    let rel_type = relates_to.get("rel_type")?.as_str()?;
    let parent = EventId::parse(relates_to.get("event_id")?.as_str()?).ok()?;
    Some((rel_type.to_owned(), parent))
}
