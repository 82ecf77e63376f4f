//! The rooms changed at the latest stream positions, kept in memory as `stream_rooms` has them:
//! every incremental sync asks which rooms changed since its token, and in a busy community a
//! token a second old has thousands of positions after it (each message, each member's receipt,
//! each typing change), which the index would copy out row by row.
//!
//! Every write of a `stream_rooms` row goes through [`RoomChanges::stage`], which notes it once
//! its batch is committed, before the writer completes its position: a position a reader may
//! see is noted already. What is kept covers every position after `covers_after` (the stream's
//! position when the process started, raised as the oldest rows are let go); a token older
//! than that is answered from the index. With processes sharing a PostgreSQL database the
//! others' rows are not noted here, so the index answers every time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use ruma::{OwnedRoomId, RoomId};

use crate::store::{Batch, Store, Table};

/// Positions kept (each ~100 bytes): several seconds of a busy community's changes.
const KEPT_POSITIONS: usize = 50_000;

/// The rooms changed at the latest stream positions.
pub struct RoomChanges {
    /// Whether this process sees every write (not with a shared database).
    kept: bool,
    latest: Mutex<Latest>,
}

struct Latest {
    rooms: BTreeMap<u64, OwnedRoomId>,
    /// Every position after this one that changed a room is in `rooms`.
    covers_after: u64,
}

impl RoomChanges {
    /// Keeps the changes after `position`, the stream's visible position at start.
    pub fn new(store: &Store, position: u64) -> Arc<RoomChanges> {
        Arc::new(RoomChanges {
            kept: store.shared().is_none(),
            latest: Mutex::new(Latest {
                rooms: BTreeMap::new(),
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
        latest.rooms.insert(position, room_id);
        while latest.rooms.len() > KEPT_POSITIONS {
            if let Some((oldest, _)) = latest.rooms.pop_first() {
                latest.covers_after = latest.covers_after.max(oldest);
            }
        }
    }

    /// The rooms changed after `since` up to `until`, when what is kept covers them.
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
        let rooms: BTreeSet<&RoomId> = latest.rooms.range(since + 1..=until).map(|(_, room_id)| &**room_id).collect();
        Some(rooms.into_iter().map(ToOwned::to_owned).collect())
    }
}
