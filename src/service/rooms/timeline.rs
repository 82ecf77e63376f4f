//! Reads in stream order: a room's timeline between two stream positions, the rooms and
//! memberships that changed between two positions (what an incremental sync starts from), and
//! the state at a position. The end of each room's timeline is kept in memory while no event
//! is added to the room, so the syncs a message wakes read it once.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use ruma::events::room::member::MembershipState;
use ruma::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId};

use super::state::StateMap;
use super::{RoomRecord, Rooms};
use crate::error::Result;
use crate::store::{Table, key, prefix, prefix_end};

/// Rows of a room's timeline end kept: a sync's page (up to 20 events and one past them).
const RECENT_ROWS: usize = 32;

/// Rooms whose timeline ends are kept before starting over.
const RECENT_ROOMS: usize = 2_048;

/// The end of each room's timeline as last read (see [`Rooms::timeline_until`]), and how many
/// times rows kept were dropped: a read that began before a drop keeps nothing.
#[derive(Default)]
pub(super) struct RecentTimelines {
    rooms: HashMap<OwnedRoomId, RecentTimeline>,
    drops: u64,
}

/// A room's latest timeline rows, oldest first, with the forward extremities read before
/// them: every event written to the timeline changes those (backfill, which does not, drops
/// the room's rows), so while they match no row is missing after the oldest kept.
struct RecentTimeline {
    extremities: Vec<OwnedEventId>,
    rows: Arc<[(u64, OwnedEventId)]>,
    /// The rows are the room's whole timeline.
    whole: bool,
}

impl Rooms {
    /// Up to `limit` events of a room's timeline from stream position `from` (inclusive),
    /// backward or forward: (stream position, event ID) pairs.
    pub fn timeline(&self, room_id: &RoomId, from: Option<u64>, forward: bool, limit: usize) -> Result<Vec<(u64, OwnedEventId)>> {
        self.timeline_until(room_id, from, None, forward, limit)
    }

    /// [`Rooms::timeline`], stopping short of stream position `to` (backward: the events at
    /// or after it; forward: the events before it).
    pub fn timeline_until(
        &self,
        room_id: &RoomId,
        from: Option<u64>,
        to: Option<u64>,
        forward: bool,
        limit: usize,
    ) -> Result<Vec<(u64, OwnedEventId)>> {
        let room = self.room(room_id)?;
        // Kept rows answer backward reads of the timeline's end; not kept when processes share
        // the database (another may write to the room without this one knowing).
        if !forward
            && self.store.shared().is_none()
            && let Some(rows) = self.recent_rows(room_id, &room, from, to, limit)?
        {
            return Ok(rows);
        }
        self.read_timeline(&room, from, to, forward, limit)
    }

    /// [`Rooms::timeline_until`] from the store.
    fn read_timeline(
        &self,
        room: &RoomRecord,
        from: Option<u64>,
        to: Option<u64>,
        forward: bool,
        limit: usize,
    ) -> Result<Vec<(u64, OwnedEventId)>> {
        let room_short = room.short_id.to_be_bytes();
        let (room_prefix, start) = stream_range(&[&room_short], from, forward);
        let room_end = prefix_end(&room_prefix);
        let to_key = to.map(|to| key(&[&room_short, &to.to_be_bytes()]));
        let bounds = match (&to_key, forward) {
            (Some(to_key), false) => (to_key.as_slice(), room_end.as_deref()),
            (Some(to_key), true) => (room_prefix.as_slice(), Some(to_key.as_slice())),
            (None, _) => (room_prefix.as_slice(), room_end.as_deref()),
        };
        let rows = self.store.range_within(Table::Timeline, bounds, &start, forward, limit)?;
        Ok(rows
            .into_iter()
            .filter_map(|(key, value)| {
                let position = u64::from_be_bytes(key[room_prefix.len()..].try_into().ok()?);
                let event_id = EventId::parse(String::from_utf8_lossy(&value).as_ref()).ok()?;
                Some((position, event_id))
            })
            .collect())
    }

    /// A backward read of the timeline from the rows kept of its end, when they hold all it
    /// asks for; reads and keeps the end when nothing is kept for the room's extremities.
    fn recent_rows(
        &self,
        room_id: &RoomId,
        room: &RoomRecord,
        from: Option<u64>,
        to: Option<u64>,
        limit: usize,
    ) -> Result<Option<Vec<(u64, OwnedEventId)>>> {
        let (kept, drops) = {
            let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            let kept = recent
                .rooms
                .get(room_id)
                .filter(|kept| kept.extremities == room.extremities)
                .map(|kept| (kept.rows.clone(), kept.whole));
            (kept, recent.drops)
        };
        let (rows, whole) = match kept {
            Some(kept) => kept,
            None => {
                let newest_first = self.read_timeline(room, None, None, false, RECENT_ROWS)?;
                let whole = newest_first.len() < RECENT_ROWS;
                let rows: Arc<[(u64, OwnedEventId)]> = newest_first.into_iter().rev().collect();
                let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
                if recent.drops == drops {
                    if recent.rooms.len() >= RECENT_ROOMS {
                        recent.rooms.clear();
                    }
                    let extremities = room.extremities.clone();
                    recent.rooms.insert(
                        room_id.to_owned(),
                        RecentTimeline {
                            extremities,
                            rows: rows.clone(),
                            whole,
                        },
                    );
                }
                (rows, whole)
            }
        };
        let (from, to) = (from.unwrap_or(u64::MAX), to.unwrap_or(0));
        let wanted: Vec<(u64, OwnedEventId)> = rows
            .iter()
            .rev()
            .filter(|(position, _)| (to..=from).contains(position))
            .take(limit)
            .cloned()
            .collect();
        // The kept rows are every row of the room from the oldest kept on.
        let reaches_to = rows.first().is_some_and(|(oldest, _)| *oldest <= to);
        Ok((wanted.len() == limit || whole || reaches_to).then_some(wanted))
    }

    /// Drops the rows kept of a room's timeline end (rows were written below them).
    pub(super) fn forget_recent_timeline(&self, room_id: &RoomId) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.rooms.remove(room_id);
        recent.drops += 1;
    }

    /// The room state as it was at a stream position: after the room's last event before it.
    pub fn state_at_position(&self, room_id: &RoomId, position: u64) -> Result<Arc<StateMap>> {
        match self.timeline(room_id, Some(position.saturating_sub(1)), false, 1)?.first() {
            Some((_, event_id)) => self.state_after(event_id),
            None => Ok(Arc::new(StateMap::new())),
        }
    }

    /// The rooms with events after stream position `since`, up to `until`.
    pub fn rooms_changed(&self, since: u64, until: u64) -> Result<BTreeSet<OwnedRoomId>> {
        // A busy room has a row for each event and receipt: parsed once.
        let rows: BTreeSet<Vec<u8>> = self.stream_rows(Table::StreamRooms, since, until)?.into_iter().collect();
        Ok(rows
            .iter()
            .filter_map(|room_id| std::str::from_utf8(room_id).ok().and_then(|room_id| RoomId::parse(room_id).ok()))
            .collect())
    }

    /// Whose membership changed after stream position `since`, up to `until`, in which room.
    pub fn member_changes(&self, since: u64, until: u64) -> Result<Vec<(OwnedRoomId, OwnedUserId, MembershipState)>> {
        let mut changes = Vec::new();
        for change in self.stream_rows(Table::MemberChanges, since, until)? {
            changes.push(serde_json::from_slice(&change)?);
        }
        Ok(changes)
    }

    /// The values of a table keyed by stream position, after `since` up to `until`.
    fn stream_rows(&self, table: Table, since: u64, until: u64) -> Result<Vec<Vec<u8>>> {
        let (start, end) = (since.saturating_add(1).to_be_bytes(), until.saturating_add(1).to_be_bytes());
        let rows = self.store.range_within(table, (&[], Some(&end)), &start, true, usize::MAX)?;
        Ok(rows.into_iter().map(|(_, value)| value).collect())
    }
}

/// For keys `parts ‖ stream position`: the prefix of them all, and the key a scan from stream
/// position `from` (or from the first or last, when `None`) starts at.
pub(crate) fn stream_range(parts: &[&[u8]], from: Option<u64>, forward: bool) -> (Vec<u8>, Vec<u8>) {
    let position = match (from, forward) {
        (Some(position), _) => position,
        (None, true) => 0,
        (None, false) => u64::MAX,
    };
    let mut start = prefix(parts);
    start.extend_from_slice(&position.to_be_bytes());
    (prefix(parts), start)
}
