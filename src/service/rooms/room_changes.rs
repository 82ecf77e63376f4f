//! Each room's latest change, kept in memory: every incremental sync asks which rooms changed
//! since its token, and in a busy community a token a second old has thousands of
//! `stream_rooms` rows after it (each message, each member's receipt, each typing change),
//! which the index would copy out row by row. Kept as each room's latest position instead, the
//! answer costs the rooms that changed, not the changes.
//!
//! Every write of a `stream_rooms` row goes through [`RoomChanges::stage`], which notes it once
//! its batch is committed, before the writer completes its position: a position a reader may
//! see is noted already. What is kept covers every position after the stream's position when
//! the process started; a token older than that is answered from the index. With processes
//! sharing a PostgreSQL database the others' rows are not noted here, so the index answers
//! every time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use ruma::{OwnedRoomId, RoomId};

use crate::store::{Batch, Store, Table};

/// Each room's latest change.
pub struct RoomChanges {
    /// Whether this process sees every write (not with a shared database).
    kept: bool,
    latest: Mutex<Latest>,
}

struct Latest {
    /// Each room once, at its latest change.
    by_position: BTreeMap<u64, OwnedRoomId>,
    position_of: HashMap<OwnedRoomId, u64>,
    /// Every room changed after this position is in `by_position`.
    covers_after: u64,
}

impl RoomChanges {
    /// Keeps the changes after `position`, the stream's visible position at start.
    pub fn new(store: &Store, position: u64) -> Arc<RoomChanges> {
        Arc::new(RoomChanges {
            kept: store.shared().is_none(),
            latest: Mutex::new(Latest {
                by_position: BTreeMap::new(),
                position_of: HashMap::new(),
                covers_after: position,
            }),
        })
    }

    /// Stages the `stream_rooms` row saying `room_id` changed at `position`, noted here once
    /// the batch is committed.
    pub fn stage(self: &Arc<Self>, batch: &mut Batch<'_>, position: u64, room_id: &RoomId) {
        batch.put(Table::StreamRooms, &position.to_be_bytes(), room_id.as_bytes());
        if self.kept {
            let changes = self.clone();
            let room_id = room_id.to_owned();
            batch.on_commit(move || changes.note(position, room_id));
        }
    }

    fn note(&self, position: u64, room_id: OwnedRoomId) {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        let latest = &mut *latest;
        match latest.position_of.get_mut(&room_id) {
            Some(known) if *known >= position => {}
            Some(known) => {
                latest.by_position.remove(known);
                *known = position;
                latest.by_position.insert(position, room_id);
            }
            None => {
                latest.position_of.insert(room_id.clone(), position);
                latest.by_position.insert(position, room_id);
            }
        }
    }

    /// The rooms changed after `since` up to `until`, when what is kept covers them — with
    /// those changed since only after `until` (answering for them finds nothing new).
    pub fn between(&self, since: u64, until: u64) -> Option<BTreeSet<OwnedRoomId>> {
        if !self.kept {
            return None;
        }
        if since >= until {
            return Some(BTreeSet::new());
        }
        let latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        if since < latest.covers_after {
            return None;
        }
        Some(latest.by_position.range(since + 1..).map(|(_, room_id)| room_id.clone()).collect())
    }
}
