//! What is kept in memory of each room until the next event in it (its member list, the end of
//! its timeline), and of other keys until a write drops them (a user's memberships, an access
//! token, a user's presence).
//!
//! A room's value is kept with the room's forward extremities, read before the value, and used
//! only while they still match — every event written to the timeline changes them. A write
//! that does not (backfill, a purge, a user's membership, a revoked token) drops the value; a
//! value read before a drop is not kept.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use ruma::{OwnedEventId, OwnedRoomId};

use crate::error::Result;

/// Values of one kind kept per room, up to a total weight (then it starts over).
pub(crate) type KeptPerRoom<T> = KeptPer<OwnedRoomId, T>;

/// Values of one kind kept per key (a room, a user), up to a total weight (then it starts
/// over).
pub(crate) struct KeptPer<K, T> {
    kept: Mutex<Kept<K, T>>,
    capacity: usize,
    weigh: fn(&T) -> usize,
}

struct Kept<K, T> {
    /// Each key's value with the extremities it was read at (none for a key other than a room).
    values: HashMap<K, (Vec<OwnedEventId>, T)>,
    /// The values' weight together.
    weight: usize,
    /// How many values were dropped.
    drops: u64,
}

impl<K: Hash + Eq, T: Clone> KeptPer<K, T> {
    /// Keeps values weighing `capacity` in all (each weighed by `weigh`).
    pub fn new(capacity: usize, weigh: fn(&T) -> usize) -> KeptPer<K, T> {
        let kept = Kept {
            values: HashMap::new(),
            weight: 0,
            drops: 0,
        };
        KeptPer {
            kept: Mutex::new(kept),
            capacity,
            weigh,
        }
    }

    /// The value of `key` at `extremities` (read before calling; none for a key other than a
    /// room): the one kept, or `read`'s, then kept.
    pub fn get_or_read<Q>(&self, key: &Q, extremities: &[OwnedEventId], read: impl FnOnce() -> Result<T>) -> Result<T>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let drops = {
            let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, value)) = kept.values.get(key)
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
                kept.values.clear();
                kept.weight = 0;
            }
            kept.weight += weight;
            if let Some((_, replaced)) = kept.values.insert(key.to_owned(), (extremities.to_vec(), value.clone())) {
                kept.weight -= (self.weigh)(&replaced);
            }
        }
        Ok(value)
    }

    /// Drops the value of `key`.
    pub fn forget<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, value)) = kept.values.remove(key) {
            kept.weight -= (self.weigh)(&value);
        }
        kept.drops += 1;
    }

    /// Drops every value.
    pub fn forget_all(&self) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.values.clear();
        kept.weight = 0;
        kept.drops += 1;
    }
}
