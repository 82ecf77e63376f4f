//! Persistent, monotonic u64 counters (stream positions, short IDs) that cost no write per value.
//!
//! Values are handed out from memory; the counter's row in `meta` records a ceiling that is
//! raised, in blocks, before any value beneath it is used. After a crash the counter resumes at
//! the recorded ceiling: values may be skipped, never repeated, whatever order concurrent
//! writers commit their batches in. Processes sharing a PostgreSQL database each reserve
//! blocks of their own, so values are unique but not in order across processes (the stream's
//! positions, which must be, are taken in the database itself: [`crate::store::Shared`]).

use std::sync::Mutex;

use super::{Store, StoreError, Table};

/// How many values one ceiling write reserves.
const BLOCK: u64 = 10_000;

/// One named counter.
pub struct Counter {
    store: Store,
    key: Vec<u8>,
    /// (next value to hand out, recorded ceiling)
    state: Mutex<(u64, u64)>,
}

impl Counter {
    /// Opens the counter `name`; its first value is 1.
    pub fn open(store: &Store, name: &str) -> Result<Counter, StoreError> {
        let key = format!("counter.{name}").into_bytes();
        let ceiling = match store.get(Table::Meta, &key)? {
            Some(bytes) => u64::from_be_bytes(bytes.as_slice().try_into().map_err(|_| StoreError::BadCounter)?),
            None => 1,
        };
        Ok(Counter {
            store: store.clone(),
            key,
            state: Mutex::new((ceiling, ceiling)),
        })
    }

    /// The ceiling recorded when the counter was opened: no value at or above it was handed
    /// out before.
    pub fn recorded_ceiling(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    /// The next value after skipping `gap` values, which are never handed out.
    pub fn next_after_gap(&self, gap: u64) -> Result<u64, StoreError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0 = state.0.saturating_add(gap);
        if state.0 >= state.1 {
            let start = self.store.reserve_counter(&self.key, state.0, BLOCK)?;
            *state = (start, start + BLOCK);
        }
        let value = state.0;
        state.0 += 1;
        Ok(value)
    }

    /// The next value, never handed out before.
    pub fn next(&self) -> Result<u64, StoreError> {
        self.next_after_gap(0)
    }
}
