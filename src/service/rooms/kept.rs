//! What is kept of each room in memory until the next event in it (its member list, the end of
//! its timeline): a value is kept with the room's forward extremities, read before the value,
//! and used only while they still match — every event written to the timeline changes them.
//! A write that does not (backfill, a purge) drops the room's value; a value read before a drop
//! is not kept.

use std::collections::HashMap;
use std::sync::Mutex;

use ruma::{OwnedEventId, OwnedRoomId, RoomId};

use crate::error::Result;

/// Values of one kind kept per room, up to a total weight (then it starts over).
pub(super) struct KeptPerRoom<T> {
    kept: Mutex<Kept<T>>,
    capacity: usize,
    weigh: fn(&T) -> usize,
}

struct Kept<T> {
    /// Each room's value with the extremities it was read at.
    rooms: HashMap<OwnedRoomId, (Vec<OwnedEventId>, T)>,
    /// The values' weight together.
    weight: usize,
    /// How many values were dropped.
    drops: u64,
}

impl<T: Clone> KeptPerRoom<T> {
    /// Keeps values weighing `capacity` in all (each weighed by `weigh`).
    pub fn new(capacity: usize, weigh: fn(&T) -> usize) -> KeptPerRoom<T> {
        let kept = Kept {
            rooms: HashMap::new(),
            weight: 0,
            drops: 0,
        };
        KeptPerRoom {
            kept: Mutex::new(kept),
            capacity,
            weigh,
        }
    }

    /// The room's value at `extremities` (read before calling): the one kept, or `read`'s,
    /// then kept.
    pub fn get_or_read(&self, room_id: &RoomId, extremities: &[OwnedEventId], read: impl FnOnce() -> Result<T>) -> Result<T> {
        let drops = {
            let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, value)) = kept.rooms.get(room_id)
                && at == extremities
            {
                return Ok(value.clone());
            }
            kept.drops
        };
        let value = read()?;
        let weight = (self.weigh)(&value);
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.drops == drops {
            if kept.weight + weight > self.capacity {
                kept.rooms.clear();
                kept.weight = 0;
            }
            kept.weight += weight;
            if let Some((_, replaced)) = kept.rooms.insert(room_id.to_owned(), (extremities.to_vec(), value.clone())) {
                kept.weight -= (self.weigh)(&replaced);
            }
        }
        Ok(value)
    }

    /// Drops the room's value.
    pub fn forget(&self, room_id: &RoomId) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, value)) = kept.rooms.remove(room_id) {
            kept.weight -= (self.weigh)(&value);
        }
        kept.drops += 1;
    }
}
