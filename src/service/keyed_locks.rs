//! Locks by key: one async mutex per key in use (a room being appended to, a thumbnail being
//! generated), created on demand and dropped once nobody holds or waits for it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

/// A set of async mutexes, one per key.
pub struct KeyedLocks<K> {
    locks: Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>,
}

impl<K> Default for KeyedLocks<K> {
    fn default() -> Self {
        KeyedLocks {
            locks: Mutex::new(HashMap::new()),
        }
    }
}

/// Holds the lock of one key; released on drop.
pub struct KeyGuard<'a, K: Hash + Eq + Clone> {
    guard: Option<OwnedMutexGuard<()>>,
    key: K,
    locks: &'a KeyedLocks<K>,
}

impl<K: Hash + Eq + Clone> KeyedLocks<K> {
    /// Waits for and takes the lock of `key`.
    pub async fn lock(&self, key: K) -> KeyGuard<'_, K> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(key.clone()).or_default().clone()
        };
        KeyGuard {
            guard: Some(lock.lock_owned().await),
            key,
            locks: self,
        }
    }
}

impl<K: Hash + Eq + Clone> Drop for KeyGuard<'_, K> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.locks.locks.lock().unwrap_or_else(|e| e.into_inner());
        // The map's own reference is the last one: nobody holds or waits for this key.
        if locks.get(&self.key).is_some_and(|lock| Arc::strong_count(lock) == 1) {
            locks.remove(&self.key);
        }
    }
}
