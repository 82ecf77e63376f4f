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
//!
//! Once a sync has counted a room, its counts run in memory ([`RunningUnread`]): each
//! notification and receipt is applied to them as it is committed, and syncs read nothing.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::{Mutex, MutexGuard};

use ruma::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
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

/// Positions noted at most (~40 bytes each) before they are forgotten.
const NOTED_PAIRS: usize = 50_000;

/// Counts held at most (a few hundred bytes each) before they are all dropped.
const HELD_COUNTS: usize = 20_000;

/// Unread counts kept running in memory, by user and room: once a sync has counted a room
/// they are held, and each notification and read receipt of the user's in the room is applied
/// to them once committed and before its position is visible — a receipt at or past every
/// event counted reads them all; one the counts cannot follow (it reads some but not all, or
/// moves a read position back) drops them, and the next sync counts again from the store.
/// Counts are only held when nothing of the user's in the room was committed between the
/// count and the holding (the latest notification and receipt of each user's room are noted,
/// looked up by a hash of the two: two sharing one only count more often). Not used with
/// processes sharing a database (their writes are not seen here).
#[derive(Default)]
pub struct RunningUnread {
    inner: Mutex<Running>,
}

#[derive(Default)]
struct Running {
    /// By hash of user and room: the latest notification's recording position and the latest
    /// receipt's position.
    noted: HashMap<u64, (u64, u64)>,
    /// The highest position noted before `noted` was last emptied.
    floor: u64,
    /// The highest position noted.
    highest: u64,
    held: HashMap<OwnedUserId, HashMap<OwnedRoomId, HeldCounts>>,
    held_total: usize,
}

/// A user's running counts in a room, with the read positions they assume.
struct HeldCounts {
    /// By receipt thread (`""` unthreaded, `main`, or a thread root); `""` and `main` always.
    reads: BTreeMap<String, u64>,
    counts: UnreadCounts,
    /// At or past the position of every event counted.
    newest: u64,
}

fn pair_hash(user: &UserId, room_id: &RoomId) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one((user, room_id))
}

impl RunningUnread {
    fn lock(&self) -> MutexGuard<'_, Running> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies the committed notifications of an event at position `event` in `room_id`, each
    /// user's (highlighting them or not) recorded at `recorded`.
    pub fn notified(&self, users: &[(&UserId, bool)], room_id: &RoomId, recorded: u64, event: u64, thread_root: Option<&EventId>) {
        let mut running = self.lock();
        for &(user, highlight) in users {
            running.note(pair_hash(user, room_id), |noted| noted.0 = noted.0.max(recorded), recorded);
            running.apply(user, room_id, |held| held.count(event, highlight, thread_root));
        }
    }

    /// Applies a committed read receipt of `user` in `room_id` at stream position `position`,
    /// in `thread`, read up to the event at position `read`.
    pub fn receipt_written(&self, user: &UserId, room_id: &RoomId, position: u64, thread: &str, read: u64) {
        let mut running = self.lock();
        running.note(pair_hash(user, room_id), |noted| noted.1 = noted.1.max(position), position);
        running.apply(user, room_id, |held| held.read(thread, read));
    }

    /// The counts held for a user's room.
    fn counts(&self, user: &UserId, room_id: &RoomId) -> Option<UnreadCounts> {
        Some(self.lock().held.get(user)?.get(room_id)?.counts.clone())
    }

    /// Holds a user's counts in a room, counted from the store up to position `counted` with
    /// read positions read after it, unless a notification or receipt of theirs in the room
    /// past it was committed meanwhile.
    fn hold(&self, user: &UserId, room_id: &RoomId, counted: u64, held: HeldCounts) {
        let mut running = self.lock();
        let (notified, receipted) = running.noted(pair_hash(user, room_id));
        if notified > counted || receipted > counted {
            return;
        }
        if running.held_total >= HELD_COUNTS {
            running.held.clear();
            running.held_total = 0;
        }
        let added = running
            .held
            .entry(user.to_owned())
            .or_default()
            .insert(room_id.to_owned(), held)
            .is_none();
        running.held_total += usize::from(added);
    }
}

impl Running {
    fn note(&mut self, pair: u64, update: impl FnOnce(&mut (u64, u64)), position: u64) {
        if self.noted.len() >= NOTED_PAIRS && !self.noted.contains_key(&pair) {
            self.noted.clear();
            self.floor = self.highest;
        }
        update(self.noted.entry(pair).or_default());
        self.highest = self.highest.max(position);
    }

    /// The latest notification and receipt positions noted for a pair, or later.
    fn noted(&self, pair: u64) -> (u64, u64) {
        let (notified, receipted) = self.noted.get(&pair).copied().unwrap_or_default();
        (notified.max(self.floor), receipted.max(self.floor))
    }

    /// Applies a change to a user's held counts in a room, dropping them when it cannot.
    fn apply(&mut self, user: &UserId, room_id: &RoomId, change: impl FnOnce(&mut HeldCounts) -> bool) {
        let Some(rooms) = self.held.get_mut(user) else {
            return;
        };
        if let Some(held) = rooms.get_mut(room_id)
            && !change(held)
        {
            rooms.remove(room_id);
            self.held_total -= 1;
        }
    }
}

impl HeldCounts {
    /// Counts a notification of the event at position `event`; false when its thread's read
    /// position is not known.
    fn count(&mut self, event: u64, highlight: bool, thread_root: Option<&EventId>) -> bool {
        let thread = thread_root.map_or("main", |root| root.as_str());
        let (Some(own), Some(unthreaded)) = (self.reads.get(thread), self.reads.get("")) else {
            return false;
        };
        if event <= *own.max(unthreaded) {
            return true;
        }
        let unread = match thread_root {
            Some(root) => self.counts.threads.entry(root.to_owned()).or_default(),
            None => &mut self.counts.main,
        };
        unread.notifications += 1;
        unread.highlights += u64::from(highlight);
        self.newest = self.newest.max(event);
        true
    }

    /// Follows a read receipt in `thread` up to the event at position `read`; false when the
    /// counts cannot tell what it read.
    fn read(&mut self, thread: &str, read: u64) -> bool {
        let Some(known) = self.reads.get_mut(thread) else {
            // A thread nothing was counted in (its notifications drop the counts).
            return true;
        };
        if read < *known {
            // The read position is the later of two receipt types: this one may have held it.
            return false;
        }
        *known = read;
        let counts = &mut self.counts;
        let affected = match thread {
            "" => counts.total().notifications > 0,
            "main" => counts.main.notifications > 0,
            root => counts
                .threads
                .iter()
                .any(|(id, unread)| id.as_str() == root && unread.notifications > 0),
        };
        if !affected {
            return true;
        }
        if read < self.newest {
            return false;
        }
        match thread {
            "" => *counts = UnreadCounts::default(),
            "main" => counts.main = Unread::default(),
            root => counts.threads.retain(|id, _| id.as_str() != root),
        }
        true
    }
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
    /// for the main timeline), is at or past its event. Counted from the counts this process
    /// holds, or else the stored snapshot, when they still hold, reading only the notifications
    /// recorded since; held counts that nothing changed since are answered as they are.
    pub fn unread(&self, rooms: &Rooms, user: &UserId, room_id: &RoomId) -> Result<UnreadCounts> {
        let running = rooms.running_unread();
        if let Some(counts) = running.and_then(|running| running.counts(user, room_id)) {
            return Ok(counts);
        }
        let visible = rooms.stream().visible();
        let snapshot_key = key(&[user.as_bytes(), room_id.as_bytes()]);
        let mut snapshot = self
            .store
            .get_json::<UnreadSnapshot>(Table::UnreadSnapshots, &snapshot_key)?
            .filter(|snapshot| snapshot.upto <= visible)
            .unwrap_or_default();
        let unthreaded = rooms.read_position_in(room_id, user, "")?;
        if !self.reads_hold(rooms, user, room_id, &snapshot, unthreaded)? {
            snapshot = UnreadSnapshot {
                upto: unthreaded,
                reads: BTreeMap::from([(String::new(), unthreaded)]),
                counts: UnreadCounts::default(),
            };
        }
        // Recording positions come after their events'.
        let snapshot_newest = if snapshot.counts.total().notifications > 0 {
            snapshot.upto
        } else {
            0
        };
        let (read_rows, newest) = self.count_since(rooms, user, room_id, &mut snapshot, unthreaded, visible)?;
        if read_rows >= SNAPSHOT_EVERY {
            let mut batch = self.store.batch();
            batch.put_json(Table::UnreadSnapshots, &snapshot_key, &snapshot);
            batch.commit()?;
        }
        let counts = snapshot.counts.clone();
        if let Some(running) = running {
            let mut reads = snapshot.reads;
            if !reads.contains_key("main") {
                reads.insert("main".to_owned(), rooms.read_position_in(room_id, user, "main")?);
            }
            let held = HeldCounts {
                reads,
                counts: snapshot.counts,
                newest: snapshot_newest.max(newest),
            };
            running.hold(user, room_id, visible, held);
        }
        Ok(counts)
    }

    /// Whether the read positions a snapshot assumed are still the user's.
    fn reads_hold(&self, rooms: &Rooms, user: &UserId, room_id: &RoomId, snapshot: &UnreadSnapshot, unthreaded: u64) -> Result<bool> {
        if snapshot.reads.is_empty() {
            return Ok(false);
        }
        for (thread, read) in &snapshot.reads {
            let current = if thread.is_empty() {
                unthreaded
            } else {
                rooms.read_position_in(room_id, user, thread)?
            };
            if current != *read {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Adds to a snapshot's counts the notifications recorded after it up to `visible`;
    /// returns how many rows were read and the position of the newest event counted.
    fn count_since(
        &self,
        rooms: &Rooms,
        user: &UserId,
        room_id: &RoomId,
        snapshot: &mut UnreadSnapshot,
        unthreaded: u64,
        visible: u64,
    ) -> Result<(usize, u64)> {
        // Per thread root as stored (empty: the main timeline): its read position and root.
        let mut threads: HashMap<Vec<u8>, (u64, Option<OwnedEventId>)> = HashMap::new();
        let room_prefix = prefix(&[user.as_bytes(), room_id.as_bytes()]);
        let start = key(&[user.as_bytes(), room_id.as_bytes(), &(snapshot.upto + 1).to_be_bytes()]);
        let rows = self.store.range(Table::RoomNotifications, &room_prefix, &start, true, usize::MAX)?;
        let (mut read_rows, mut newest) = (0, 0);
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
                // Validated when the snapshot held it; read once otherwise.
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
            newest = newest.max(event);
        }
        Ok((read_rows, newest))
    }
}
