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
//! The counts a sync read are held in memory ([`RunningUnread`]) with the latest notification
//! and receipt committed for each user's room, so the sync of a room in which nothing of the
//! user's changed reads nothing, and one after new notifications reads only those rows.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::{Arc, Mutex, MutexGuard};

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
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UnreadSnapshot {
    upto: u64,
    reads: BTreeMap<String, u64>,
    counts: UnreadCounts,
}

/// Positions noted at most (~40 bytes each) before they are forgotten.
const NOTED_PAIRS: usize = 50_000;

/// Counts held at most (a few hundred bytes each) before they are all dropped.
const HELD_COUNTS: usize = 20_000;

/// The unread counts this process holds, by user and room, and the latest notification and
/// receipt committed for each user's room: a sync of a room in which nothing of the user's
/// changed answers its held counts without reading the store, one after new notifications
/// reads only those. Both kinds of write are noted once committed and before their position
/// is visible, so counts held at a visible position know of every write up to it; a noted
/// position is looked up by a hash of the user and room (two sharing one only recount more).
/// Not used with processes sharing a database (their writes are not noted here).
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
    held: HashMap<OwnedUserId, HashMap<OwnedRoomId, Arc<HeldCounts>>>,
    held_total: usize,
}

/// A user's counts in a room, as of `snapshot.upto`, with the read positions it assumed read
/// after position `reads_at`.
struct HeldCounts {
    snapshot: UnreadSnapshot,
    reads_at: u64,
}

/// Held counts, and what changed since they were.
struct Held {
    counts: Arc<HeldCounts>,
    /// No receipt of the user's in the room was written since the reads were read.
    reads_hold: bool,
    /// A notification may have been recorded since the counts.
    notified_since: bool,
}

fn pair_hash(user: &UserId, room_id: &RoomId) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one((user, room_id))
}

impl RunningUnread {
    fn lock(&self) -> MutexGuard<'_, Running> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes a committed notification of `user` in `room_id`, recorded at `recorded`.
    pub fn notified(&self, user: &UserId, room_id: &RoomId, recorded: u64) {
        self.lock().note(pair_hash(user, room_id), |noted| noted.0 = noted.0.max(recorded), recorded);
    }

    /// Notes a committed receipt of `user` in `room_id` at stream position `position`.
    pub fn receipt_written(&self, user: &UserId, room_id: &RoomId, position: u64) {
        self.lock().note(pair_hash(user, room_id), |noted| noted.1 = noted.1.max(position), position);
    }

    /// The counts held for a user's room as of `visible` or before.
    fn held(&self, user: &UserId, room_id: &RoomId, visible: u64) -> Option<Held> {
        let running = self.lock();
        let counts = running.held.get(user)?.get(room_id)?.clone();
        if counts.snapshot.upto > visible {
            return None;
        }
        let (notified, receipted) = running
            .noted
            .get(&pair_hash(user, room_id))
            .map_or((running.floor, running.floor), |&(notified, receipted)| {
                (notified.max(running.floor), receipted.max(running.floor))
            });
        Some(Held {
            reads_hold: receipted <= counts.reads_at,
            notified_since: notified > counts.snapshot.upto,
            counts,
        })
    }

    /// Holds a user's counts in a room, unless newer ones are held.
    fn hold(&self, user: &UserId, room_id: &RoomId, counts: HeldCounts) {
        let mut running = self.lock();
        if running.held_total >= HELD_COUNTS {
            running.held.clear();
            running.held_total = 0;
        }
        let rooms = running.held.entry(user.to_owned()).or_default();
        let added = match rooms.get(room_id) {
            Some(known) if known.snapshot.upto > counts.snapshot.upto => return,
            Some(_) => false,
            None => true,
        };
        rooms.insert(room_id.to_owned(), Arc::new(counts));
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
        let visible = rooms.stream().visible();
        let running = rooms.running_unread();
        let held = running.and_then(|running| running.held(user, room_id, visible));
        if let Some(held) = &held
            && held.reads_hold
            && !held.notified_since
        {
            return Ok(held.counts.snapshot.counts.clone());
        }
        let (mut snapshot, reads_checked) = match held {
            Some(held) if held.reads_hold => (held.counts.snapshot.clone(), true),
            Some(held) => (held.counts.snapshot.clone(), false),
            None => {
                let stored = self
                    .store
                    .get_json::<UnreadSnapshot>(Table::UnreadSnapshots, &key(&[user.as_bytes(), room_id.as_bytes()]))?;
                (stored.unwrap_or_default(), false)
            }
        };
        let unthreaded = match snapshot.reads.get("") {
            Some(read) if reads_checked => *read,
            _ => rooms.read_position_in(room_id, user, "")?,
        };
        if !reads_checked && !self.reads_hold(rooms, user, room_id, &snapshot, unthreaded)? {
            snapshot = UnreadSnapshot {
                upto: unthreaded,
                reads: BTreeMap::from([(String::new(), unthreaded)]),
                counts: UnreadCounts::default(),
            };
        }
        let read_rows = self.count_since(rooms, user, room_id, &mut snapshot, unthreaded, visible)?;
        if read_rows >= SNAPSHOT_EVERY {
            let mut batch = self.store.batch();
            batch.put_json(Table::UnreadSnapshots, &key(&[user.as_bytes(), room_id.as_bytes()]), &snapshot);
            batch.commit()?;
        }
        let counts = snapshot.counts.clone();
        if let Some(running) = running {
            // Every notification up to the visible position was read (all are committed), and
            // the reads were read after it.
            snapshot.upto = snapshot.upto.max(visible);
            running.hold(user, room_id, HeldCounts { snapshot, reads_at: visible });
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
    /// returns how many rows were read.
    fn count_since(
        &self,
        rooms: &Rooms,
        user: &UserId,
        room_id: &RoomId,
        snapshot: &mut UnreadSnapshot,
        unthreaded: u64,
        visible: u64,
    ) -> Result<usize> {
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
        }
        Ok(read_rows)
    }
}
