//! Unread notification and highlight counts, per room and per thread, that cost the same with
//! 10 or 10,000 unread notifications.
//!
//! Each notification is a row of `room_notifications`, keyed by the stream position taken when
//! it was recorded (its own write, after its event's), holding the event's position: every row
//! at or below the visible stream position is therefore committed, whichever path recorded it
//! (a local send or a transaction from another server). A room's counts are those rows past
//! the member's read receipts; rather than count them all on every sync, a snapshot
//! (`unread_snapshots`) keeps the counts up to a position together with the read positions
//! they assumed. A later count starts from the snapshot and reads only the rows after it; a
//! receipt that moved any of those read positions makes the snapshot stale, and it is counted
//! afresh from the receipt. Receipts never write snapshots, so nothing races: a snapshot is
//! only used when it still describes the receipts.

use std::collections::{BTreeMap, HashMap};

use ruma::{EventId, OwnedEventId, RoomId, UserId};
use serde::{Deserialize, Serialize};

use super::push::Push;
use super::rooms::Rooms;
use crate::error::Result;
use crate::store::{Batch, Table, key, prefix};

/// Rows read past a snapshot before a new one is written.
const SNAPSHOT_EVERY: usize = 32;

/// Unread counts of one room.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Unread {
    pub notifications: u64,
    pub highlights: u64,
}

/// Unread counts of one room, split by thread.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UnreadCounts {
    /// The main timeline's (events in no thread).
    pub main: Unread,
    /// Each thread's, by thread root.
    pub threads: BTreeMap<OwnedEventId, Unread>,
}

impl UnreadCounts {
    /// The whole room's: the main timeline's and every thread's.
    pub fn total(&self) -> Unread {
        self.threads.values().fold(self.main, |total, thread| Unread {
            notifications: total.notifications + thread.notifications,
            highlights: total.highlights + thread.highlights,
        })
    }
}

/// A room's counts up to a recording position, with the read positions they assumed (by
/// receipt thread: `""` unthreaded, `main`, or a thread root).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct UnreadSnapshot {
    upto: u64,
    reads: BTreeMap<String, u64>,
    counts: UnreadCounts,
}

/// Adds to `batch` the row of one notification of `user` in `room_id`, recorded at stream
/// position `recorded` for the event at position `event`.
pub fn stage_notification(
    batch: &mut Batch<'_>,
    user: &UserId,
    room_id: &RoomId,
    recorded: u64,
    event: u64,
    highlight: bool,
    thread_root: Option<&EventId>,
) {
    let mut value = vec![u8::from(highlight)];
    value.extend_from_slice(&event.to_be_bytes());
    value.extend_from_slice(thread_root.map_or(&b""[..], |root| root.as_bytes()));
    batch.put(
        Table::RoomNotifications,
        &key(&[user.as_bytes(), room_id.as_bytes(), &recorded.to_be_bytes()]),
        &value,
    );
}

/// One notification row: the event's position, highlight, and thread root (empty: none).
fn parse_row(recorded: u64, value: &[u8]) -> (u64, bool, &[u8]) {
    let Some((flag, rest)) = value.split_first() else {
        return (recorded, false, &[]);
    };
    // Older rows hold no event position (their key is it); a root starts with `$`.
    match rest.first() {
        None | Some(b'$') => (recorded, *flag == 1, rest),
        Some(_) if rest.len() >= 8 => {
            let (position, root) = rest.split_at(8);
            let position = u64::from_be_bytes(position.try_into().unwrap_or_default());
            (position, *flag == 1, root)
        }
        Some(_) => (recorded, *flag == 1, &[]),
    }
}

impl Push {
    /// A room's unread counts for a user, for the main timeline and each thread: a
    /// notification is read once an unthreaded receipt, or a receipt of its own thread (`main`
    /// for the main timeline), is at or past its event. Counted from the snapshot when it still
    /// holds, reading only the notifications recorded since.
    pub fn unread(&self, rooms: &Rooms, user: &UserId, room_id: &RoomId) -> Result<UnreadCounts> {
        let visible = rooms.stream().visible();
        let snapshot_key = key(&[user.as_bytes(), room_id.as_bytes()]);
        let unthreaded = rooms.read_position_in(room_id, user, "")?;
        let mut snapshot = self
            .store
            .get_json::<UnreadSnapshot>(Table::UnreadSnapshots, &snapshot_key)?
            .filter(|snapshot| snapshot.upto <= visible);
        if let Some(held) = &snapshot {
            for (thread, read) in &held.reads {
                let current = if thread.is_empty() {
                    unthreaded
                } else {
                    rooms.read_position_in(room_id, user, thread)?
                };
                if current != *read {
                    snapshot = None;
                    break;
                }
            }
        }
        let mut snapshot = snapshot.unwrap_or_else(|| UnreadSnapshot {
            upto: unthreaded,
            reads: BTreeMap::from([(String::new(), unthreaded)]),
            counts: UnreadCounts::default(),
        });

        // Per thread root as stored (empty: the main timeline): its read position and root.
        let mut threads: HashMap<Vec<u8>, (u64, Option<OwnedEventId>)> = HashMap::new();
        let room_prefix = prefix(&[user.as_bytes(), room_id.as_bytes()]);
        let start = key(&[user.as_bytes(), room_id.as_bytes(), &(snapshot.upto + 1).to_be_bytes()]);
        let rows = self.store.range(Table::RoomNotifications, &room_prefix, &start, true, usize::MAX)?;
        let mut read_rows = 0;
        for (row, value) in &rows {
            let Some(recorded) = row
                .get(room_prefix.len()..)
                .and_then(|bytes| bytes.try_into().ok())
                .map(u64::from_be_bytes)
            else {
                continue;
            };
            if recorded > visible {
                break;
            }
            read_rows += 1;
            snapshot.upto = recorded;
            let (event, highlight, root) = parse_row(recorded, value);
            if !threads.contains_key(root) {
                let parsed = EventId::parse(String::from_utf8_lossy(root).as_ref()).ok();
                let thread = parsed.as_ref().map_or("main", |root| root.as_str());
                // Validated above when the snapshot held it; read once otherwise.
                let own = match snapshot.reads.get(thread) {
                    Some(read) => *read,
                    None => {
                        let read = rooms.read_position_in(room_id, user, thread)?;
                        snapshot.reads.insert(thread.to_owned(), read);
                        read
                    }
                };
                threads.insert(root.to_vec(), (own.max(unthreaded), parsed));
            }
            let (read, parsed) = &threads[root];
            if event <= *read {
                continue;
            }
            let unread = match parsed {
                Some(root) => snapshot.counts.threads.entry(root.clone()).or_default(),
                None => &mut snapshot.counts.main,
            };
            unread.notifications += 1;
            unread.highlights += u64::from(highlight);
        }
        if read_rows >= SNAPSHOT_EVERY {
            let mut batch = self.store.batch();
            batch.put_json(Table::UnreadSnapshots, &snapshot_key, &snapshot);
            batch.commit()?;
        }
        Ok(snapshot.counts)
    }
}
