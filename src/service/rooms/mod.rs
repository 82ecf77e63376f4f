//! Rooms: their events, state and memberships.
//!
//! Every event enters through [`Rooms::append`] (`append.rs`): under the room's lock it is
//! built as a signed PDU on the room's forward extremities, checked against the room version's
//! authorization rules with ruma's `state-res` (403 `M_FORBIDDEN` with the failed rule as the
//! reason), and written in one batch with its timeline entry, its state snapshot, and the
//! membership indexes. Rooms are appended to in parallel; events of one room in order. Every event gets
//! a position in the server-wide stream, which orders timelines and, later, sync.

pub mod append;
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
pub mod room_changes;
pub mod search;
pub mod spaces;
pub mod state;
pub mod timeline;
pub mod upgrade;
pub mod visibility;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

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

use self::events::EventCache;
pub use self::events::ServedEvent;
use self::pdu::{Pdu, StoredPdu};
use self::state::{RoomStates, StateHash, StateLookup, StateMap, StateRef};
use super::appservices::Appservices;
use super::kept::{KeptPer, KeptPerRoom};
use super::keyed_locks::{KeyGuard, KeyedLocks};
use super::metrics::Metrics;
use super::profiles::Profiles;
use super::server_key::ServerKey;
use super::stream::{Audience, Stream};
use super::unread::RunningUnread;
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

/// A room's members of every membership, as the membership index holds them.
pub type Members = Arc<[(OwnedUserId, MembershipState)]>;

/// A room's members as kept in memory: all of them, and those its events wake (this server's
/// joined, invited and knocking) with their wakers, shared by every write's wake-up.
struct KeptMembers {
    all: Members,
    wakeable: Audience,
}

/// A user's memberships of every room, forgotten ones too, sorted by room ID.
type UserMemberships = Arc<[(OwnedRoomId, MembershipRecord)]>;

/// Members [`Rooms::members`] keeps, in all rooms together, before it starts over (and
/// memberships [`Rooms::membership`] keeps, in all users together).
const CACHED_MEMBERS: usize = 200_000;

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
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub meta: EventMeta,
    /// The signed PDU (redacted once a redaction applies to it); stored after the other
    /// fields' JSON, not in it (see [`StoredEvent::encode`]).
    pub pdu: StoredPdu,
}

/// What this server knows about a stored event besides its PDU: the JSON part of the stored
/// form, and what serving the event reads with the parsed PDU (see [`ServedEvent`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventMeta {
    pub room_id: OwnedRoomId,
    /// Position in the server-wide stream (0 for an outlier, outside the timeline).
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
    /// Each room's members, and those its events wake, until the next event in it (see
    /// [`Rooms::members`]): a burst of receipts, the summaries of many syncs read them once.
    member_lists: KeptPerRoom<Arc<KeptMembers>>,
    /// The end of each room's timeline (see [`Rooms::timeline_until`]).
    timeline_ends: KeptPerRoom<Arc<timeline::TimelineEnd>>,
    /// Each user's memberships until one of them is written (see [`Rooms::membership`]):
    /// every sync reads the user's memberships of the rooms that changed, every sliding sync
    /// all of them. Not used when processes share the database.
    user_memberships: Arc<KeptPer<OwnedUserId, UserMemberships>>,
    /// Each room's latest change (see [`room_changes::RoomChanges`]).
    room_changes: Arc<room_changes::RoomChanges>,
    /// The receipt changes of the rooms synced (see [`receipts::KeptReceipts`]).
    receipt_changes: RwLock<receipts::KeptReceipts>,
    /// The unread counts held, with the notifications and receipts noted for them.
    running_unread: RunningUnread,
    /// Recent events, parsed (see [`EventCache`]). A redaction drops its target here and,
    /// announced, in the other processes sharing the database.
    events: Arc<Mutex<EventCache>>,
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
        let room_changes = room_changes::RoomChanges::new(&store, stream.visible());
        let events: Arc<Mutex<EventCache>> = Arc::default();
        let redacted = events.clone();
        stream.on_announcement('r', move |event_id| {
            if let Ok(event_id) = EventId::parse(event_id) {
                redacted.lock().unwrap_or_else(|e| e.into_inner()).drop_events([&*event_id]);
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
            member_lists: KeptPerRoom::new(CACHED_MEMBERS, |members| members.all.len()),
            timeline_ends: KeptPerRoom::new(timeline::KEPT_ROWS, |end| end.rows.len()),
            user_memberships: Arc::new(KeptPer::new(CACHED_MEMBERS, |memberships| memberships.len())),
            profiles,
            metrics,
            outbox: tokio::sync::Notify::new(),
            outbox_destinations: Arc::default(),
            events,
            receipt_changes: RwLock::default(),
            running_unread: RunningUnread::default(),
            room_changes,
            peekers: Default::default(),
            appservices,
            store,
            server_name,
            key,
        })
    }

    /// Each room's latest change, shared with the writers of `stream_rooms` rows outside this
    /// service (typing).
    pub fn room_changes(&self) -> Arc<room_changes::RoomChanges> {
        self.room_changes.clone()
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
        self.timeline_ends.forget(room_id);
        self.member_lists.forget(room_id);
        self.kept_receipts_to_change().forget(room_id);
        self.cached_events().clear();
    }

    /// The event holding a state key in a state.
    pub fn state_pdu(&self, state: &StateMap, kind: &StateEventType, state_key: &str) -> Result<Option<Pdu>> {
        match self.state_event_id(state, kind, state_key)? {
            Some(event_id) => self.pdu(&event_id),
            None => Ok(None),
        }
    }

    /// The content of a state event in a state, if set.
    pub fn state_content(&self, state: &impl StateLookup, kind: &StateEventType, state_key: &str) -> Result<Option<Value>> {
        match self.state_event_id(state, kind, state_key)? {
            Some(event_id) => Ok(self.shared_pdu(&event_id)?.map(|pdu| pdu.content_value())),
            None => Ok(None),
        }
    }

    /// The ID of the event holding a state key in a state.
    fn state_event_id(&self, state: &impl StateLookup, kind: &StateEventType, state_key: &str) -> Result<Option<OwnedEventId>> {
        let Some(short_key) = self.states.short_state_key(kind, state_key, false)? else {
            return Ok(None);
        };
        state
            .event_at(&self.states, short_key)?
            .map(|short_event| self.states.event_id(short_event))
            .transpose()
    }

    /// A room's current state.
    pub fn current_state(&self, room_id: &RoomId) -> Result<Arc<StateMap>> {
        self.states.load(self.room(room_id)?.state)
    }

    /// The state after an event: before it, plus the event itself if it is a state event.
    pub fn state_after(&self, event_id: &EventId) -> Result<Arc<StateMap>> {
        self.states.load_ref(self.state_ref_after(event_id)?)
    }

    /// [`Rooms::state_after`] to read key by key. The event comes from the cache of served
    /// events when it is there (a sync's timeline asks for the state after the event it just
    /// read before the timeline).
    pub fn state_ref_after(&self, event_id: &EventId) -> Result<StateRef> {
        let ServedEvent { pdu, meta } = self
            .served_events(&[event_id.to_owned()])?
            .pop()
            .flatten()
            .ok_or_else(|| Error::not_found("Event not found"))?;
        let mut state = StateRef {
            base: meta.state_before,
            over: None,
        };
        if let Some(state_key) = &pdu.state_key {
            let kind = StateEventType::from(pdu.kind.to_string().as_str());
            if let Some(short_key) = self.states.short_state_key(&kind, state_key, false)? {
                state.over = Some((short_key, self.states.short_event_id(event_id)?));
            }
        }
        Ok(state)
    }

    /// A user's membership in a state (`leave` when absent).
    pub fn membership_in(&self, state: &impl StateLookup, user_id: &UserId) -> Result<MembershipState> {
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
        if self.store.shared().is_some() {
            return Ok(self
                .store
                .get_json(Table::Memberships, &key(&[user_id.as_bytes(), room_id.as_bytes()]))?);
        }
        let memberships = self.kept_memberships(user_id)?;
        Ok(memberships
            .binary_search_by(|(room, _)| room.as_str().cmp(room_id.as_str()))
            .ok()
            .map(|found| memberships[found].1.clone()))
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
        let memberships = self.kept_memberships(user_id)?;
        Ok(memberships.iter().filter(|(_, record)| !record.forgotten).cloned().collect())
    }

    /// A user's memberships, forgotten ones too, by room ID: kept until one of them is written
    /// (see [`Rooms::forget_memberships_on_commit`]), read each time when processes share the
    /// database.
    fn kept_memberships(&self, user_id: &UserId) -> Result<UserMemberships> {
        match self.store.shared() {
            Some(_) => self.read_memberships(user_id),
            None => self.user_memberships.get_or_read(user_id, &[], || self.read_memberships(user_id)),
        }
    }

    /// A user's memberships, forgotten ones too, as the index holds them (by room ID).
    fn read_memberships(&self, user_id: &UserId) -> Result<UserMemberships> {
        let user_prefix = prefix(&[user_id.as_bytes()]);
        let rows = self.store.scan_json::<MembershipRecord>(Table::Memberships, &user_prefix)?;
        Ok(rows
            .into_iter()
            .filter_map(|(key, record)| {
                let room_id = RoomId::parse(String::from_utf8_lossy(&key[user_prefix.len()..]).as_ref()).ok()?;
                Some((room_id, record))
            })
            .collect())
    }

    /// Drops `user`'s kept memberships once `batch`, which writes one of them, is committed
    /// (before the write's stream position is visible).
    pub(super) fn forget_memberships_on_commit(&self, batch: &mut Batch<'_>, user: &UserId) {
        let (kept, user) = (self.user_memberships.clone(), user.to_owned());
        batch.on_commit(move || kept.forget(&*user));
    }

    /// A room's members of every membership, from the membership index (no events read), kept
    /// until the next event in the room.
    pub fn members(&self, room_id: &RoomId) -> Result<Members> {
        Ok(self.kept_members(room_id)?.all.clone())
    }

    /// A room's members and the users among them its events wake, kept until the next event in
    /// the room.
    fn kept_members(&self, room_id: &RoomId) -> Result<Arc<KeptMembers>> {
        let read = || {
            let room_prefix = prefix(&[room_id.as_bytes()]);
            let rows = self.store.scan_json::<MembershipState>(Table::RoomMembers, &room_prefix)?;
            let all: Members = rows
                .into_iter()
                .filter_map(|(key, membership)| {
                    let user = UserId::parse(String::from_utf8_lossy(&key[room_prefix.len()..]).as_ref()).ok()?;
                    Some((user, membership))
                })
                .collect();
            // Only this server's users poll here: other servers' members get no waker.
            let wakeable = all
                .iter()
                .filter(|(user, membership)| {
                    user.server_name() == self.server_name
                        && matches!(membership, MembershipState::Join | MembershipState::Invite | MembershipState::Knock)
                })
                .map(|(user, _)| user.clone())
                .collect();
            Ok(Arc::new(KeptMembers {
                all,
                wakeable: self.stream.resolved(wakeable),
            }))
        };
        // A room this server has no record of (only members of it, through invites) is read
        // each time.
        match self.room(room_id) {
            Ok(room) => self.member_lists.get_or_read(room_id, &room.extremities, read),
            Err(_) => read(),
        }
    }

    /// The users joined to a room (of every server).
    pub fn joined_members(&self, room_id: &RoomId) -> Result<Vec<OwnedUserId>> {
        Ok(self
            .members(room_id)?
            .iter()
            .filter(|(_, membership)| *membership == MembershipState::Join)
            .map(|(user, _)| user.clone())
            .collect())
    }

    /// The users an event in the room wakes: this server's members, invitees and knockers, and
    /// who peeks into it.
    pub fn users_to_wake(&self, room_id: &RoomId) -> Result<Audience> {
        let members = self.kept_members(room_id)?.wakeable.clone();
        let peekers = self.peekers.of(room_id);
        if peekers.is_empty() {
            return Ok(members);
        }
        Ok(members.users().iter().cloned().chain(peekers).collect())
    }

    /// The server-wide stream.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// The unread counts held in memory, with what changes them noted; none when processes
    /// share the database.
    pub fn running_unread(&self) -> Option<&RunningUnread> {
        self.store.shared().is_none().then_some(&self.running_unread)
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
        self.forget_memberships_on_commit(&mut batch, user_id);
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
