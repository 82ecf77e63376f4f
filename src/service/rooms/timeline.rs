//! Reads in stream order: a room's timeline between two stream positions, the rooms and
//! memberships that changed between two positions (what an incremental sync starts from), and
//! the state at a position. The end of each room's timeline is kept in memory until the next
//! event in the room (`kept`), so the syncs a message wakes read it once.

use std::collections::BTreeSet;
use std::sync::Arc;

use ruma::events::room::member::MembershipState;
use ruma::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId};

use super::state::{StateMap, StateRef};
use super::{RoomRecord, Rooms};
use crate::error::Result;
use crate::store::{Table, key, prefix, prefix_end};

/// Rows of a room's timeline end kept: a sync's page (up to 20 events and one past them).
const END_ROWS: usize = 32;

/// Rows of timeline ends kept in all rooms together (those of 2,048 rooms).
pub(super) const KEPT_ROWS: usize = 2_048 * END_ROWS;

/// A room's latest timeline rows, oldest first: while they are kept, no row is missing after
/// the oldest of them.
pub(super) struct TimelineEnd {
    pub rows: Vec<(u64, OwnedEventId)>,
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
            && let Some(rows) = self.rows_from_end(room_id, &room, from, to, limit)?
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
    /// asks for (the end is read and kept when nothing is kept at the room's extremities).
    fn rows_from_end(
        &self,
        room_id: &RoomId,
        room: &RoomRecord,
        from: Option<u64>,
        to: Option<u64>,
        limit: usize,
    ) -> Result<Option<Vec<(u64, OwnedEventId)>>> {
        let end = self.timeline_ends.get_or_read(room_id, &room.extremities, || {
            let mut rows = self.read_timeline(room, None, None, false, END_ROWS)?;
            rows.reverse();
            let whole = rows.len() < END_ROWS;
            Ok(Arc::new(TimelineEnd { rows, whole }))
        })?;
        let (from, to) = (from.unwrap_or(u64::MAX), to.unwrap_or(0));
        let wanted: Vec<(u64, OwnedEventId)> = end
            .rows
            .iter()
            .rev()
            .filter(|(position, _)| (to..=from).contains(position))
            .take(limit)
            .cloned()
            .collect();
        let reaches_to = end.rows.first().is_some_and(|(oldest, _)| *oldest <= to);
        Ok((wanted.len() == limit || end.whole || reaches_to).then_some(wanted))
    }

    /// The room state as it was at a stream position: after the room's last event before it.
    pub fn state_at_position(&self, room_id: &RoomId, position: u64) -> Result<Arc<StateMap>> {
        self.states.load_ref(self.state_ref_at_position(room_id, position)?)
    }

    /// [`Rooms::state_at_position`] to read key by key.
    pub fn state_ref_at_position(&self, room_id: &RoomId, position: u64) -> Result<StateRef> {
        match self.timeline(room_id, Some(position.saturating_sub(1)), false, 1)?.first() {
            Some((_, event_id)) => self.state_ref_after(event_id),
            None => Ok(StateRef::default()),
        }
    }

    /// The rooms with events after stream position `since`, up to `until`.
    pub fn rooms_changed(&self, since: u64, until: u64) -> Result<BTreeSet<OwnedRoomId>> {
        if let Some(rooms) = self.room_changes.between(since, until) {
            return Ok(rooms);
        }
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
