//! Read receipts (`m.read`, `m.read.private`): where each user has read up to in a room, per
//! thread. Each update takes a stream position (indexed in `stream_rooms` like events), so sync
//! delivers it as the room's `m.receipt` ephemeral event; it wakes its owner's long polls and
//! nudges the other members' (see `stream`), so a burst of receipts is one answer each. Public
//! receipts of this server's users go to the other servers in the room as `m.receipt` EDUs, in
//! the receipt's own batch.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::{RwLockReadGuard, RwLockWriteGuard};

use ruma::{EventId, OwnedRoomId, RoomId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Rooms;
use crate::error::{Error, Result};
use crate::service::appservices::Queued;
use crate::service::now_ms;
use crate::service::stream::Audience;
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
        self.kept_receipts_to_change().apply(room_id, change)?;
        // Read receipts of this server's users move their unread counts.
        if let Some(running) = self.running_unread()
            && user.server_name() == self.server_name
            && matches!(receipt_type, "m.read" | PRIVATE_READ)
        {
            running.receipt_written(user, room_id, receipt.stream, thread, stored.meta.stream);
        }
        self.wake_outbox(destinations);
        // Its owner's unread counts change now; the other members are no hurry (a private
        // receipt does not concern them). The owner is among the members nudged: a nudge after
        // a wake-up changes nothing.
        let others = if receipt_type == PRIVATE_READ {
            Audience::default()
        } else {
            self.users_to_wake(room_id)?
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
    /// Written from the receipts kept, each one's pieces serialized when it was kept (a busy
    /// room's sync carries hundreds).
    pub fn receipt_event(&self, room_id: &RoomId, viewer: &UserId, since: Option<u64>, until: u64) -> Result<Option<ReceiptEvent>> {
        let Some(since) = since else {
            return receipt_event(self.all_receipts(room_id)?.iter(), viewer);
        };
        if self.store.shared().is_some() {
            // Other processes' receipts are not applied to what this one keeps.
            let changes = self.stored_receipt_changes(room_id, since, until)?;
            return receipt_event(RoomReceipts::from_changes(changes)?.changes.values(), viewer);
        }
        let changed = |room: &RoomReceipts| receipt_event(room.changes.range(since + 1..=until).map(|(_, kept)| kept), viewer);
        // Read under the lock, so a receipt committed meanwhile is applied after the read.
        if let Some(room) = self.kept_receipts().rooms.get(room_id) {
            return changed(room);
        }
        let mut kept = self.kept_receipts_to_change();
        if !kept.rooms.contains_key(room_id) {
            let changes = self.stored_receipt_changes(room_id, 0, u64::MAX)?;
            kept.load(room_id, changes)?;
        }
        changed(&kept.rooms[room_id])
    }

    /// Every receipt of a room, one per user, type and thread.
    fn all_receipts(&self, room_id: &RoomId) -> Result<Vec<KeptReceipt>> {
        let room_prefix = prefix(&[room_id.as_bytes()]);
        let mut receipts = Vec::new();
        for (row, receipt) in self.store.scan_json::<Receipt>(Table::Receipts, &room_prefix)? {
            let mut parts = row[room_prefix.len()..].splitn(3, |b| *b == SEP);
            let (Some(user), Some(receipt_type), Some(thread)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            receipts.push(KeptReceipt::new(ReceiptChange {
                user: String::from_utf8_lossy(user).into_owned(),
                receipt_type: String::from_utf8_lossy(receipt_type).into_owned(),
                thread: String::from_utf8_lossy(thread).into_owned(),
                receipt,
            })?);
        }
        Ok(receipts)
    }

    /// A room's receipt changes after `since` up to `until`, read from the index of changes.
    fn stored_receipt_changes(&self, room_id: &RoomId, since: u64, until: u64) -> Result<Vec<ReceiptChange>> {
        let room_prefix = prefix(&[room_id.as_bytes()]);
        let start = key(&[room_id.as_bytes(), &(since + 1).to_be_bytes()]);
        let mut receipts = Vec::new();
        for (position, change) in self.store.range(Table::ReceiptChanges, &room_prefix, &start, true, usize::MAX)? {
            let position = position[room_prefix.len()..].try_into().map(u64::from_be_bytes).unwrap_or(u64::MAX);
            if position > until {
                break;
            }
            receipts.push(serde_json::from_slice(&change)?);
        }
        Ok(receipts)
    }

    /// The receipt changes kept in memory, to read.
    fn kept_receipts(&self) -> RwLockReadGuard<'_, KeptReceipts> {
        self.receipt_changes.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The receipt changes kept in memory, to change.
    pub(super) fn kept_receipts_to_change(&self) -> RwLockWriteGuard<'_, KeptReceipts> {
        self.receipt_changes.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// An `m.receipt` event's JSON, written by hand from the receipts' pieces serialized when they
/// were kept: a busy room's receipts reach each of its members, so each is copied into
/// hundreds of answers rather than serialized for each.
#[derive(Debug)]
pub struct ReceiptEvent(Vec<u8>);

impl ReceiptEvent {
    /// The event's JSON text.
    pub fn json(&self) -> &[u8] {
        &self.0
    }
}

/// The `m.receipt` event of `receipts` (one per user, type and thread, in stream order) as
/// `viewer` sees it: by event, then receipt type, then user.
fn receipt_event<'a>(receipts: impl Iterator<Item = &'a KeptReceipt>, viewer: &UserId) -> Result<Option<ReceiptEvent>> {
    let mut wanted: Vec<&KeptReceipt> = receipts
        .filter(|kept| kept.kind != ReceiptKind::ReadPrivate || kept.change.user == viewer.as_str())
        .collect();
    if wanted.is_empty() {
        return Ok(None);
    }
    // Stable: each group keeps stream order, so the later of a user's two receipts in one group
    // (two threads) wins.
    wanted.sort_by(|a, b| a.event_order(b).then_with(|| a.type_order(b)));
    let size: usize = wanted.iter().map(|kept| kept.event_key.len() + kept.entry.len() + 24).sum();
    let mut out = Vec::with_capacity(size + 32);
    out.extend_from_slice(br#"{"type":"m.receipt","content":{"#);
    for (index, same_event) in wanted.chunk_by(|a, b| a.event_order(b).is_eq()).enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(same_event[0].event_key.as_bytes());
        out.extend_from_slice(b":{");
        for (index, same_type) in same_event.chunk_by(|a, b| a.type_order(b).is_eq()).enumerate() {
            if index > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, &same_type[0].change.receipt_type)?;
            out.extend_from_slice(b":{");
            if same_type.iter().all(|kept| kept.change.thread.is_empty()) {
                write_entries(&mut out, same_type.iter().copied());
            } else {
                // A user with receipts in two threads appears once, with the later.
                let by_user: BTreeMap<&str, &KeptReceipt> = same_type.iter().map(|kept| (&*kept.change.user, *kept)).collect();
                write_entries(&mut out, by_user.into_values());
            }
            out.push(b'}');
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"}}");
    Ok(Some(ReceiptEvent(out)))
}

/// Receipts' `"user":{"ts":…}` members, comma-separated.
fn write_entries<'a>(out: &mut Vec<u8>, receipts: impl Iterator<Item = &'a KeptReceipt>) {
    for (index, kept) in receipts.enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(kept.entry.as_bytes());
    }
}

/// One user's receipt in an `m.receipt` event.
#[derive(Serialize)]
struct ReceiptData<'a> {
    ts: u64,
    #[serde(skip_serializing_if = "str::is_empty")]
    thread_id: &'a str,
}

/// The receipt types, as a sync groups them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ReceiptKind {
    Read,
    ReadPrivate,
    Other,
}

/// A receipt change as a sync serves it: the change, and its pieces of the event's JSON
/// serialized once: the event ID read up to as a key, and the user's member
/// (`"@user:server":{"ts":…}`).
struct KeptReceipt {
    change: ReceiptChange,
    kind: ReceiptKind,
    event_key: Box<str>,
    entry: Box<str>,
}

impl KeptReceipt {
    fn new(change: ReceiptChange) -> Result<KeptReceipt> {
        let data = ReceiptData {
            ts: change.receipt.ts,
            thread_id: &change.thread,
        };
        let mut entry = serde_json::to_string(&change.user)?;
        entry.push(':');
        entry.push_str(&serde_json::to_string(&data)?);
        let event_key = serde_json::to_string(&change.receipt.event_id)?.into_boxed_str();
        let kind = match change.receipt_type.as_str() {
            "m.read" => ReceiptKind::Read,
            PRIVATE_READ => ReceiptKind::ReadPrivate,
            _ => ReceiptKind::Other,
        };
        Ok(KeptReceipt {
            change,
            kind,
            event_key,
            entry: entry.into_boxed_str(),
        })
    }

    /// Orders receipts by the event read up to (by its stream position, known for all but
    /// receipts written before it was kept).
    fn event_order(&self, other: &KeptReceipt) -> std::cmp::Ordering {
        let (mine, theirs) = (&self.change.receipt, &other.change.receipt);
        mine.event_stream.cmp(&theirs.event_stream).then_with(|| match mine.event_stream {
            Some(_) => std::cmp::Ordering::Equal,
            None => mine.event_id.cmp(&theirs.event_id),
        })
    }

    /// Orders receipts by type.
    fn type_order(&self, other: &KeptReceipt) -> std::cmp::Ordering {
        self.kind.cmp(&other.kind).then_with(|| match self.kind {
            ReceiptKind::Other => self.change.receipt_type.cmp(&other.change.receipt_type),
            _ => std::cmp::Ordering::Equal,
        })
    }

    /// Whose receipt of which type in which thread this is, as the `receipts` table keys it
    /// after the room.
    fn owner(&self) -> Vec<u8> {
        key(&[
            self.change.user.as_bytes(),
            self.change.receipt_type.as_bytes(),
            self.change.thread.as_bytes(),
        ])
    }
}

/// Receipt changes kept in memory at most (~500 bytes each, with the owner's index entry and
/// the pieces of JSON).
const KEPT_RECEIPT_CHANGES: usize = 50_000;

/// The receipt changes of the rooms synced since the server started, by room: every sync of a
/// busy room reads those since its token, hundreds when each member's receipt follows each
/// message. A room's are read from the index of changes on first use, under the lock a
/// committed receipt is applied under (before its position is visible), so none is missed or
/// kept twice; all are dropped when too many.
#[derive(Default)]
pub struct KeptReceipts {
    rooms: HashMap<OwnedRoomId, RoomReceipts>,
    total: usize,
}

/// A room's receipt changes: the latest of each user's receipts of each type in each thread,
/// by stream position.
#[derive(Default)]
struct RoomReceipts {
    changes: BTreeMap<u64, KeptReceipt>,
    /// The position of each owner's (see [`KeptReceipt::owner`]).
    positions: HashMap<Vec<u8>, u64>,
}

impl RoomReceipts {
    /// The changes, in stream order; a later change of an owner replaces the earlier (two
    /// receipts written at once may both be in the index).
    fn from_changes(changes: Vec<ReceiptChange>) -> Result<RoomReceipts> {
        let mut room = RoomReceipts::default();
        for change in changes {
            room.apply(change)?;
        }
        Ok(room)
    }

    /// Adds a change in place of its owner's earlier one (a later one stays); whether the
    /// room has one change more.
    fn apply(&mut self, change: ReceiptChange) -> Result<bool> {
        let kept = KeptReceipt::new(change)?;
        let position = kept.change.receipt.stream;
        match self.positions.entry(kept.owner()) {
            Entry::Occupied(mut latest) => {
                if *latest.get() < position {
                    self.changes.remove(&latest.insert(position));
                    self.changes.insert(position, kept);
                }
                Ok(false)
            }
            Entry::Vacant(owner) => {
                owner.insert(position);
                self.changes.insert(position, kept);
                Ok(true)
            }
        }
    }
}

impl KeptReceipts {
    fn load(&mut self, room_id: &RoomId, changes: Vec<ReceiptChange>) -> Result<()> {
        if self.total + changes.len() > KEPT_RECEIPT_CHANGES {
            self.rooms.clear();
            self.total = 0;
        }
        let room = RoomReceipts::from_changes(changes)?;
        self.total += room.changes.len();
        self.rooms.insert(room_id.to_owned(), room);
        Ok(())
    }

    /// A committed receipt, in place of its owner's earlier one, when the room's are kept.
    fn apply(&mut self, room_id: &RoomId, change: ReceiptChange) -> Result<()> {
        if let Some(room) = self.rooms.get_mut(room_id)
            && room.apply(change)?
        {
            self.total += 1;
        }
        Ok(())
    }

    /// Drops a room's (it was deleted).
    pub(super) fn forget(&mut self, room_id: &RoomId) {
        if let Some(room) = self.rooms.remove(room_id) {
            self.total -= room.changes.len();
        }
    }
}

/// The receipt type only its owner sees.
const PRIVATE_READ: &str = "m.read.private";

#[cfg(test)]
mod tests {
    use ruma::user_id;
    use serde_json::{Value, json};

    use super::{KeptReceipt, Receipt, ReceiptChange, receipt_event};

    fn kept(user: &str, receipt_type: &str, thread: &str, event_id: &str, stream: u64) -> KeptReceipt {
        KeptReceipt::new(ReceiptChange {
            user: user.to_owned(),
            receipt_type: receipt_type.to_owned(),
            thread: thread.to_owned(),
            receipt: Receipt {
                event_id: event_id.try_into().unwrap(),
                ts: stream * 10,
                stream,
                event_stream: Some(if event_id == "$a" { 1 } else { 2 }),
            },
        })
        .unwrap()
    }

    #[test]
    fn written_by_hand_as_the_spec_shapes_it() {
        let receipts = [
            kept("@b:x", "m.read", "", "$b", 3),
            kept("@a:x", "m.read", "", "$a", 4),
            kept("@we\"ird:x", "m.read", "", "$b", 5),
            kept("@me:x", "m.read.private", "", "$b", 6),
            kept("@other:x", "m.read.private", "", "$b", 7),
            kept("@t:x", "m.read", "$root", "$a", 8),
            kept("@t:x", "m.read", "main", "$a", 9),
            kept("@c:x", "m.fully_read", "", "$b", 10),
        ];
        let event = receipt_event(receipts.iter(), user_id!("@me:x")).unwrap().unwrap();
        let written: Value = serde_json::from_slice(event.json()).unwrap();
        assert_eq!(
            written,
            json!({ "type": "m.receipt", "content": {
                "$a": { "m.read": { "@a:x": { "ts": 40 }, "@t:x": { "ts": 90, "thread_id": "main" } } },
                "$b": {
                    "m.read": { "@b:x": { "ts": 30 }, "@we\"ird:x": { "ts": 50 } },
                    "m.read.private": { "@me:x": { "ts": 60 } },
                    "m.fully_read": { "@c:x": { "ts": 100 } },
                },
            }})
        );
        let only_hidden = [kept("@other:x", "m.read.private", "", "$b", 7)];
        assert!(receipt_event(only_hidden.iter(), user_id!("@me:x")).unwrap().is_none());
    }
}
