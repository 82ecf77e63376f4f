//! Read receipts (`m.read`, `m.read.private`): where each user has read up to in a room, per
//! thread. Each update takes a stream position (indexed in `stream_rooms` like events), so sync
//! delivers it as the room's `m.receipt` ephemeral event; it wakes its owner's long polls and
//! nudges the other members' (see `stream`), so a burst of receipts is one answer each. Public
//! receipts of this server's users go to the other servers in the room as `m.receipt` EDUs, in
//! the receipt's own batch.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, MutexGuard};

use ruma::{EventId, OwnedRoomId, RoomId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;

use super::Rooms;
use crate::error::{Error, Result};
use crate::service::appservices::Queued;
use crate::service::now_ms;
use crate::store::{SEP, Table, key, prefix};

/// One user's receipt of one type in one room and thread.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receipt {
    pub event_id: ruma::OwnedEventId,
    pub ts: u64,
    pub stream: u64,
    /// The stream position of the event read up to (absent from receipts written before it
    /// was kept: then the event is read for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_stream: Option<u64>,
}

/// A row of `receipt_changes` (keyed by room and stream position): whose receipt it is and the
/// receipt itself, so a sync reads a room's new receipts in one scan.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ReceiptChange {
    user: String,
    receipt_type: String,
    thread: String,
    receipt: Receipt,
}

impl Rooms {
    /// Records that `user` has read up to `event_id` (which must be in the room) with a
    /// receipt of `receipt_type`, in `thread` (`"main"`, a thread root, or `""` for none).
    pub fn set_receipt(&self, room_id: &RoomId, user: &UserId, receipt_type: &str, event_id: &EventId, thread: &str) -> Result<()> {
        let stored = self
            .stored_event(event_id)?
            .filter(|stored| stored.meta.room_id == room_id)
            .ok_or_else(|| Error::not_found("The event is not in this room"))?;
        if !self.can_see_event(user, &stored)? {
            return Err(Error::not_found("The event is not in this room"));
        }
        let ticket = self.stream.begin()?;
        let receipt = Receipt {
            event_id: event_id.to_owned(),
            ts: now_ms(),
            stream: ticket.position(),
            event_stream: Some(stored.meta.stream),
        };
        let mut batch = self.store.batch();
        let receipt_key = key(&[room_id.as_bytes(), user.as_bytes(), receipt_type.as_bytes(), thread.as_bytes()]);
        let previous_stream = self
            .store
            .get_json::<Receipt>(Table::Receipts, &receipt_key)?
            .map(|previous| previous.stream);
        if let Some(previous) = previous_stream {
            batch.delete(Table::ReceiptChanges, &key(&[room_id.as_bytes(), &previous.to_be_bytes()]));
        }
        batch.put_json(Table::Receipts, &receipt_key, &receipt);
        let change = ReceiptChange {
            user: user.to_string(),
            receipt_type: receipt_type.to_owned(),
            thread: thread.to_owned(),
            receipt: receipt.clone(),
        };
        batch.put_json(
            Table::ReceiptChanges,
            &key(&[room_id.as_bytes(), &receipt.stream.to_be_bytes()]),
            &change,
        );
        self.room_changes.stage(&mut batch, ticket.position(), room_id);
        // Other servers in the room hear of this server's users' public receipts.
        let destinations = if receipt_type != PRIVATE_READ && user.server_name() == self.server_name {
            self.room_destinations(room_id)?
        } else {
            Default::default()
        };
        let mut data = json!({ "ts": receipt.ts });
        if !thread.is_empty() {
            data["thread_id"] = json!(thread);
        }
        if !destinations.is_empty() {
            let content = json!({ room_id.as_str(): { receipt_type: { user.as_str(): { "event_ids": [event_id], "data": data } } } });
            self.queue_edu(&mut batch, &destinations, &json!({ "edu_type": "m.receipt", "content": content }))?;
        }
        if receipt_type != PRIVATE_READ && self.appservices.any_ephemeral() {
            let state = self.room(room_id)?.state;
            let interested = self
                .appservices
                .ephemeral_for_room(room_id, state, || self.joined_members(room_id))?;
            let content = json!({ event_id.as_str(): { receipt_type: { user.as_str(): data } } });
            let event = json!({ "type": "m.receipt", "room_id": room_id, "content": content });
            self.appservices.queue(&mut batch, interested, &Queued::Ephemeral(event))?;
        }
        batch.commit()?;
        self.kept_receipts().apply(room_id, previous_stream, Arc::new(change));
        // Read receipts of this server's users move their unread counts.
        if let Some(running) = self.running_unread()
            && user.server_name() == self.server_name
            && matches!(receipt_type, "m.read" | PRIVATE_READ)
        {
            running.receipt_written(user, room_id, receipt.stream, thread, stored.meta.stream);
        }
        self.wake_outbox(destinations);
        // Its owner's unread counts change now; the other members are no hurry (a private
        // receipt does not concern them).
        let others = if receipt_type == PRIVATE_READ {
            Vec::new()
        } else {
            let mut members = self.users_to_wake(room_id)?;
            members.retain(|member| member != user);
            members
        };
        ticket.complete_nudging(vec![user.to_owned()], others);
        Ok(())
    }

    /// A user's receipt of a type in a room and thread, if any.
    pub fn receipt(&self, room_id: &RoomId, user: &UserId, receipt_type: &str, thread: &str) -> Result<Option<Receipt>> {
        Ok(self.store.get_json(
            Table::Receipts,
            &key(&[room_id.as_bytes(), user.as_bytes(), receipt_type.as_bytes(), thread.as_bytes()]),
        )?)
    }

    /// The `m.receipt` ephemeral event of a room for `viewer`: receipts written after stream
    /// position `since` (all when `None`) up to `until`; private receipts only their owner's.
    /// Serialized straight from the receipts kept (a busy room's has hundreds).
    pub fn receipt_event(&self, room_id: &RoomId, viewer: &UserId, since: Option<u64>, until: u64) -> Result<Option<Box<RawValue>>> {
        let changes = self.receipts_between(room_id, since, until)?;
        let mut wanted: Vec<&ReceiptChange> = changes
            .iter()
            .map(|change| &**change)
            .filter(|change| since.is_none_or(|since| change.receipt.stream > since) && change.receipt.stream <= until)
            .filter(|change| change.receipt_type != PRIVATE_READ || change.user == viewer.as_str())
            .collect();
        if wanted.is_empty() {
            return Ok(None);
        }
        // The latest of each user's receipts (two written at once may both be in the index).
        wanted.sort_unstable_by(|a, b| (a.owner(), a.receipt.stream).cmp(&(b.owner(), b.receipt.stream)));
        wanted.dedup_by(|later, earlier| {
            if later.owner() == earlier.owner() {
                *earlier = *later;
                true
            } else {
                false
            }
        });
        let mut content: BTreeMap<&str, BTreeMap<&str, BTreeMap<&str, ReceiptData<'_>>>> = BTreeMap::new();
        for change in wanted {
            let data = ReceiptData {
                ts: change.receipt.ts,
                thread_id: &change.thread,
            };
            content
                .entry(change.receipt.event_id.as_str())
                .or_default()
                .entry(&change.receipt_type)
                .or_default()
                .insert(&change.user, data);
        }
        let event = ReceiptEvent {
            kind: "m.receipt",
            content,
        };
        Ok(Some(serde_json::value::to_raw_value(&event)?))
    }
}

/// An `m.receipt` event's content: by event, receipt type and user.
#[derive(Serialize)]
struct ReceiptEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    content: BTreeMap<&'a str, BTreeMap<&'a str, BTreeMap<&'a str, ReceiptData<'a>>>>,
}

/// One user's receipt in an `m.receipt` event.
#[derive(Serialize)]
struct ReceiptData<'a> {
    ts: u64,
    #[serde(skip_serializing_if = "str::is_empty")]
    thread_id: &'a str,
}

impl ReceiptChange {
    /// Whose receipt of which type in which thread this is.
    fn owner(&self) -> (&str, &str, &str) {
        (&self.user, &self.receipt_type, &self.thread)
    }
}

impl Rooms {
    /// A room's receipts written after `since` up to `until`: from the changes kept in memory
    /// (read from the index of changes on first use), or every receipt of the room when
    /// `since` is `None`.
    fn receipts_between(&self, room_id: &RoomId, since: Option<u64>, until: u64) -> Result<Vec<Arc<ReceiptChange>>> {
        let Some(since) = since else {
            let room_prefix = prefix(&[room_id.as_bytes()]);
            let mut receipts = Vec::new();
            for (row, receipt) in self.store.scan_json::<Receipt>(Table::Receipts, &room_prefix)? {
                let mut parts = row[room_prefix.len()..].splitn(3, |b| *b == SEP);
                let (Some(user), Some(receipt_type), Some(thread)) = (parts.next(), parts.next(), parts.next()) else {
                    continue;
                };
                receipts.push(Arc::new(ReceiptChange {
                    user: String::from_utf8_lossy(user).into_owned(),
                    receipt_type: String::from_utf8_lossy(receipt_type).into_owned(),
                    thread: String::from_utf8_lossy(thread).into_owned(),
                    receipt,
                }));
            }
            return Ok(receipts);
        };
        if self.store.shared().is_some() {
            // Other processes' receipts are not applied to what this one keeps.
            return self.stored_receipt_changes(room_id, since, until);
        }
        // Read under the lock, so a receipt committed meanwhile is applied after the read.
        let mut kept = self.kept_receipts();
        if !kept.rooms.contains_key(room_id) {
            let changes = self.stored_receipt_changes(room_id, 0, u64::MAX)?;
            kept.load(room_id, changes);
        }
        Ok(kept.rooms[room_id]
            .range(since + 1..=until)
            .map(|(_, change)| change.clone())
            .collect())
    }

    /// A room's receipt changes after `since` up to `until`, read from the index of changes.
    fn stored_receipt_changes(&self, room_id: &RoomId, since: u64, until: u64) -> Result<Vec<Arc<ReceiptChange>>> {
        let room_prefix = prefix(&[room_id.as_bytes()]);
        let start = key(&[room_id.as_bytes(), &(since + 1).to_be_bytes()]);
        let mut receipts = Vec::new();
        for (position, change) in self.store.range(Table::ReceiptChanges, &room_prefix, &start, true, usize::MAX)? {
            let position = position[room_prefix.len()..].try_into().map(u64::from_be_bytes).unwrap_or(u64::MAX);
            if position > until {
                break;
            }
            receipts.push(Arc::new(serde_json::from_slice(&change)?));
        }
        Ok(receipts)
    }

    /// The receipt changes kept in memory, locked.
    pub(super) fn kept_receipts(&self) -> MutexGuard<'_, KeptReceipts> {
        self.receipt_changes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Receipt changes kept in memory at most (~300 bytes each).
const KEPT_RECEIPT_CHANGES: usize = 50_000;

/// The receipt changes of the rooms synced since the server started, by room and stream
/// position, as the index of changes has them: every sync of a busy room reads those since its
/// token, hundreds when each member's receipt follows each message. A room's are read from the
/// index on first use, under the lock a committed receipt is applied under (before its
/// position is visible), so none is missed or kept twice; all are dropped when too many.
#[derive(Default)]
pub struct KeptReceipts {
    rooms: HashMap<OwnedRoomId, BTreeMap<u64, Arc<ReceiptChange>>>,
    total: usize,
}

impl KeptReceipts {
    fn load(&mut self, room_id: &RoomId, changes: Vec<Arc<ReceiptChange>>) {
        if self.total + changes.len() > KEPT_RECEIPT_CHANGES {
            self.rooms.clear();
            self.total = 0;
        }
        self.total += changes.len();
        let changes = changes.into_iter().map(|change| (change.receipt.stream, change)).collect();
        self.rooms.insert(room_id.to_owned(), changes);
    }

    /// A committed receipt, replacing the change at `previous` (the same user's receipt of
    /// that type in that thread), when the room's are kept.
    fn apply(&mut self, room_id: &RoomId, previous: Option<u64>, change: Arc<ReceiptChange>) {
        let Some(changes) = self.rooms.get_mut(room_id) else {
            return;
        };
        if let Some(previous) = previous
            && changes.remove(&previous).is_some()
        {
            self.total -= 1;
        }
        if changes.insert(change.receipt.stream, change).is_none() {
            self.total += 1;
        }
    }

    /// Drops a room's (it was deleted).
    pub(super) fn forget(&mut self, room_id: &RoomId) {
        if let Some(changes) = self.rooms.remove(room_id) {
            self.total -= changes.len();
        }
    }
}

/// The receipt type only its owner sees.
const PRIVATE_READ: &str = "m.read.private";
