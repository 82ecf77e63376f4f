//! Push rules and notifications.
//!
//! Each user's rules are the spec's default rule set (ruma's `Ruleset::server_default`) plus
//! their changes, kept as the global account data `m.push_rules` (where clients read them in
//! sync). Every new room event is evaluated against the rules of each local member but its
//! sender; an event whose actions notify is recorded (`notifications`, and for the unread
//! counts of [`super::unread`], `room_notifications`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ruma::events::StateEventType;
use ruma::push::{Action, FlattenedJson, PushConditionPowerLevelsCtx, PushConditionRoomCtx, Ruleset};
use ruma::serde::Raw;
use ruma::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UInt, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::account_data::AccountData;
use super::appservices::{Appservice, Appservices};
use super::now_ms;
use super::pushers::PushMessage;
use super::rooms::Rooms;
use super::rooms::state::StateHash;
use super::rooms::visibility::ClientEvent;
use super::unread::stage_notification;
use crate::error::Result;
use crate::store::{Store, Table, key, prefix};

/// The account data type the rules live in.
pub const PUSH_RULES: &str = "m.push_rules";

/// The spec's default rules whose conditions name no member (the member count and the
/// sender's power are the room's): an enabled one applies to an event for every member alike,
/// so it is evaluated once per event, not once per member (~16 rules for each of hundreds).
const MEMBER_INDEPENDENT_RULES: [&str; 19] = [
    ".m.rule.master",
    ".m.rule.suppress_notices",
    ".m.rule.member_event",
    ".m.rule.is_room_mention",
    ".m.rule.roomnotif",
    ".m.rule.tombstone",
    ".m.rule.reaction",
    ".m.rule.room.server_acl",
    ".m.rule.suppress_edits",
    ".org.matrix.msc3930.rule.poll_response",
    ".m.rule.call",
    ".m.rule.encrypted_room_one_to_one",
    ".m.rule.room_one_to_one",
    ".m.rule.message",
    ".m.rule.encrypted",
    ".org.matrix.msc3930.rule.poll_start_one_to_one",
    ".org.matrix.msc3930.rule.poll_start",
    ".org.matrix.msc3930.rule.poll_end_one_to_one",
    ".org.matrix.msc3930.rule.poll_end",
];

/// A notification as kept for `/notifications`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotificationRecord {
    pub room_id: OwnedRoomId,
    pub event_id: OwnedEventId,
    pub actions: Vec<Action>,
    pub highlight: bool,
    pub ts: u64,
}

/// What evaluating a room's events needs of its state, for one state of the room.
struct RoomContext {
    state: StateHash,
    /// The appservice registrations it was read with.
    registered: Arc<Vec<Arc<Appservice>>>,
    /// Joined members, of any server.
    member_count: UInt,
    /// This server's joined members, with the display names of their member events; not the
    /// users of an appservice's exclusive namespace (a bridge's puppets get no notifications,
    /// as with Synapse).
    members: Vec<(OwnedUserId, String)>,
    power_levels: PushConditionPowerLevelsCtx,
}

/// Push rules and the notifications they make.
pub struct Push {
    pub(super) store: Store,
    account_data: Arc<AccountData>,
    appservices: Arc<Appservices>,
    /// Parsed rules by user, with the stored JSON they came from (empty for the defaults):
    /// every message is evaluated against every member's rules.
    parsed: Mutex<HashMap<OwnedUserId, (String, Arc<Ruleset>)>>,
    /// By room, for its current state.
    room_contexts: Mutex<HashMap<OwnedRoomId, Arc<RoomContext>>>,
}

impl Push {
    pub fn new(store: Store, account_data: Arc<AccountData>, appservices: Arc<Appservices>) -> Push {
        Push {
            store,
            account_data,
            appservices,
            parsed: Mutex::new(HashMap::new()),
            room_contexts: Mutex::new(HashMap::new()),
        }
    }

    /// A user's rules: the defaults with their changes.
    pub fn rules(&self, user: &UserId) -> Result<Arc<Ruleset>> {
        let stored = self.account_data.get(user, None, PUSH_RULES)?;
        let source = stored.as_ref().map_or("", |content| content.get());
        if let Some((cached_source, rules)) = self.parsed.lock().unwrap_or_else(|e| e.into_inner()).get(user)
            && cached_source == source
        {
            return Ok(rules.clone());
        }
        let parsed = serde_json::from_str::<Value>(source)
            .ok()
            .and_then(|content| serde_json::from_value::<Ruleset>(content["global"].clone()).ok());
        let rules = Arc::new(parsed.unwrap_or_else(|| Ruleset::server_default(user)));
        let mut cache = self.parsed.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(user.to_owned(), (source.to_owned(), rules.clone()));
        Ok(rules)
    }

    /// Stores a user's rules.
    pub fn save_rules(&self, user: &UserId, rules: &Ruleset) -> Result<()> {
        let content = serde_json::value::to_raw_value(&json!({ "global": rules }))?;
        self.account_data.set(user, None, PUSH_RULES, &content)
    }

    /// Evaluates a new event for every local member of its room but the sender, recording
    /// the notifications it makes; returns who was notified, with the actions.
    pub async fn evaluate(
        &self,
        rooms: &Rooms,
        room_id: &RoomId,
        event_id: &EventId,
        event: &ClientEvent,
        stream: u64,
    ) -> Result<Vec<(OwnedUserId, Vec<Action>)>> {
        let mut notified = Vec::new();
        // One batch for every member's notification of this event.
        let mut batch = self.store.batch();
        let room = self.room_context(rooms, room_id)?;
        let sender = &event.pdu().sender;
        // Flattened once for every member's rules (ruma's `get_actions` would flatten it each time).
        let flattened = FlattenedJson::from_raw(&Raw::<Value>::from_json(serde_json::value::to_raw_value(event)?));
        // One context, its member fields set for each member in turn.
        let mut context = PushConditionRoomCtx::new(room_id.to_owned(), room.member_count, sender.clone(), String::new());
        context.power_levels = Some(room.power_levels.clone());
        let thread_root = super::rooms::relation(&event.pdu().content_value())
            .filter(|(rel_type, _)| rel_type == "m.thread")
            .map(|(_, root)| root);
        // The outcomes of the rules that are the same for every member, once known.
        let mut outcomes = [None; MEMBER_INDEPENDENT_RULES.len()];
        for (user, display_name) in room.members.iter() {
            if user == sender {
                continue;
            }
            context.user_display_name.clone_from(display_name);
            context.user_id.clone_from(user);
            let rules = self.rules(user)?;
            let mut actions = Vec::new();
            for rule in rules.iter() {
                let applies = match MEMBER_INDEPENDENT_RULES.iter().position(|id| *id == rule.rule_id()) {
                    Some(shared) if rule.enabled() => match outcomes[shared] {
                        Some(outcome) => outcome,
                        None => *outcomes[shared].insert(rule.applies(&flattened, &context).await),
                    },
                    _ => rule.applies(&flattened, &context).await,
                };
                if applies {
                    actions = rule.actions().to_vec();
                    break;
                }
            }
            if !actions.iter().any(Action::should_notify) {
                continue;
            }
            let highlight = actions.iter().any(Action::is_highlight);
            let record = NotificationRecord {
                room_id: room_id.to_owned(),
                event_id: event_id.to_owned(),
                actions: actions.clone(),
                highlight,
                ts: now_ms(),
            };
            batch.put_json(Table::Notifications, &key(&[user.as_bytes(), &stream.to_be_bytes()]), &record);
            notified.push((user.clone(), actions));
        }
        if notified.is_empty() {
            return Ok(notified);
        }
        // The unread counts' rows at a stream position of their own (see `super::unread`),
        // taken only now so the evaluation above holds nobody's reads back.
        let recorded = rooms.stream().begin()?;
        let highlighted: Vec<(&UserId, bool)> = notified
            .iter()
            .map(|(user, actions)| (&**user, actions.iter().any(Action::is_highlight)))
            .collect();
        for &(user, highlight) in &highlighted {
            stage_notification(
                &mut batch,
                user,
                room_id,
                recorded.position(),
                stream,
                highlight,
                thread_root.as_deref(),
            );
        }
        batch.commit()?;
        if let Some(running) = rooms.running_unread() {
            running.notified(&highlighted, room_id, recorded.position(), stream, thread_root.as_deref());
        }
        // The event itself woke the members.
        recorded.complete(Vec::new());
        Ok(notified)
    }

    /// What evaluating an event of the room needs of its current state, read again only when
    /// the state changed (messages share the state of the event before them).
    fn room_context(&self, rooms: &Rooms, room_id: &RoomId) -> Result<Arc<RoomContext>> {
        let record = rooms.room(room_id)?;
        let registered = self.appservices.list();
        if let Some(cached) = self.room_contexts.lock().unwrap_or_else(|e| e.into_inner()).get(room_id)
            && cached.state == record.state
            && Arc::ptr_eq(&cached.registered, &registered)
        {
            return Ok(cached.clone());
        }
        let state = rooms.states.load(record.state)?;
        let power_levels = PushConditionPowerLevelsCtx::from(rooms.power_levels(&record.version, &state)?);
        let (mut joined, mut members) = (0u64, Vec::new());
        for (member, content) in rooms.member_events_in(&state)? {
            if content.get("membership").and_then(Value::as_str) != Some("join") {
                continue;
            }
            joined += 1;
            let Ok(user) = UserId::parse(member) else { continue };
            if user.server_name() != rooms.server_name() || registered.iter().any(|appservice| appservice.claims_user_exclusively(&user)) {
                continue;
            }
            let display_name = content
                .get("displayname")
                .and_then(Value::as_str)
                .unwrap_or(user.localpart())
                .to_owned();
            members.push((user, display_name));
        }
        let context = Arc::new(RoomContext {
            state: record.state,
            registered,
            member_count: UInt::new(joined).unwrap_or_default(),
            members,
            power_levels,
        });
        let mut cache = self.room_contexts.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 1_000 {
            cache.clear();
        }
        cache.insert(room_id.to_owned(), context.clone());
        Ok(context)
    }

    /// A user's notifications, newest first, from stream position `before` (exclusive).
    pub fn notifications(&self, user: &UserId, before: Option<u64>, limit: usize) -> Result<Vec<(u64, NotificationRecord)>> {
        let user_prefix = prefix(&[user.as_bytes()]);
        let start = key(&[user.as_bytes(), &before.unwrap_or(u64::MAX).saturating_sub(1).to_be_bytes()]);
        let rows = self.store.range(Table::Notifications, &user_prefix, &start, false, limit)?;
        let mut notifications = Vec::new();
        for (row, value) in rows {
            let Ok(position) = row[user_prefix.len()..].try_into().map(u64::from_be_bytes) else {
                continue;
            };
            notifications.push((position, serde_json::from_slice(&value)?));
        }
        Ok(notifications)
    }
}

impl super::Services {
    /// Appends an event a user sends (a message, state, a redaction) and records the
    /// notifications it makes for the room's other members.
    pub async fn send_event(&self, room_id: &RoomId, sender: &UserId, event: super::rooms::NewEvent) -> Result<OwnedEventId> {
        // A position held below the event's until its notifications are recorded: the members
        // it wakes read it only then, and their syncs carry the unread counts that include it.
        let hold = self.rooms.stream().begin()?;
        let event_id = self.rooms.append(room_id, sender, event).await?;
        self.notify_event(&event_id, Some(hold)).await?;
        Ok(event_id)
    }

    /// Records the notifications a new event (of a local user, or from another server) makes
    /// for the room's local members, completes `hold` (see [`Self::send_event`]), and pushes
    /// the notifications to their pushers once they are visible.
    pub async fn notify_event(&self, event_id: &EventId, hold: Option<super::stream::Ticket<'_>>) -> Result<()> {
        let Some(stored) = self.rooms.stored_event(event_id)? else {
            return Ok(());
        };
        let event_id = event_id.to_owned();
        let room_id = &stored.meta.room_id.clone();
        let client_event = self.rooms.client_event(&event_id, &stored, None)?;
        let sender = &client_event.pdu().sender;
        let notified = self
            .push
            .evaluate(&self.rooms, room_id, &event_id, &client_event, stored.meta.stream)
            .await?;
        if let Some(hold) = hold {
            hold.complete(Vec::new());
        }
        if notified.is_empty() {
            return Ok(());
        }
        // The unread counts pushed below are read at the visible position.
        self.rooms.stream().heard_back().await;
        let state = self.rooms.current_state(room_id)?;
        let room_name = self
            .rooms
            .state_content(&state, &StateEventType::RoomName, "")?
            .and_then(|content| content.get("name").and_then(Value::as_str).map(str::to_owned));
        let sender_display_name = self
            .rooms
            .state_content(&state, &StateEventType::RoomMember, sender.as_str())?
            .and_then(|content| content.get("displayname").and_then(Value::as_str).map(str::to_owned));
        for (user, actions) in notified {
            // The unread count is only worth reading for a user with somewhere to push to.
            if !self.pushers.any(&user)? {
                continue;
            }
            let unread = self.push.unread(&self.rooms, &user, room_id)?.total().notifications;
            let message = PushMessage {
                event: client_event.clone(),
                sender_display_name: sender_display_name.clone(),
                room_name: room_name.clone(),
                unread,
                actions,
            };
            self.pushers.deliver(&user, message)?;
        }
        Ok(())
    }
}

impl Rooms {
    /// The stream position up to which `user` has read a room: their latest unthreaded or
    /// main-timeline read receipt.
    pub fn read_position(&self, room_id: &RoomId, user: &UserId) -> Result<u64> {
        Ok(self
            .read_position_in(room_id, user, "")?
            .max(self.read_position_in(room_id, user, "main")?))
    }

    /// The stream position of `user`'s latest read receipt (public or private) in one thread:
    /// `""` for unthreaded receipts, `main` or a thread root.
    pub fn read_position_in(&self, room_id: &RoomId, user: &UserId, thread: &str) -> Result<u64> {
        let mut position = 0;
        for receipt_type in ["m.read", "m.read.private"] {
            let Some(receipt) = self.receipt(room_id, user, receipt_type, thread)? else {
                continue;
            };
            let event_stream = match receipt.event_stream {
                Some(stream) => Some(stream),
                None => self.stored_event(&receipt.event_id)?.map(|event| event.meta.stream),
            };
            position = position.max(event_stream.unwrap_or_default());
        }
        Ok(position)
    }
}
