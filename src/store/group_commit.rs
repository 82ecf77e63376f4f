//! Group commit for `storage.sync_writes`: writes go to the WAL without an fsync of their own,
//! and a request that wrote waits, before it is acknowledged, for one fsync that covers its
//! writes. While one fsync runs, the requests that wrote meanwhile queue behind it, and the
//! first of them fsyncs once for all of them: concurrent writers share fsyncs instead of taking
//! one each (a RocksDB write with `sync` set holds a runtime thread for its whole fsync).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rocksdb::DB;

use super::StoreError;

/// Counts finished writes and how many of them an fsync already covers.
pub struct GroupCommit {
    db: Arc<DB>,
    /// Writes finished (counted after RocksDB returned).
    written: AtomicU64,
    /// Writes covered by a finished fsync of the WAL.
    synced: AtomicU64,
    /// Held by the one request fsyncing; the others wait on it in order.
    syncing: tokio::sync::Mutex<()>,
}

impl GroupCommit {
    pub fn new(db: Arc<DB>) -> GroupCommit {
        GroupCommit {
            db,
            written: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            syncing: tokio::sync::Mutex::new(()),
        }
    }

    /// Records that a write reached the WAL.
    pub fn wrote(&self) {
        self.written.fetch_add(1, Ordering::SeqCst);
    }

    /// Returns once every write finished before this call is fsynced.
    pub async fn durable(&self) -> Result<(), StoreError> {
        let target = self.written.load(Ordering::SeqCst);
        if self.synced.load(Ordering::SeqCst) >= target {
            return Ok(());
        }
        let _syncing = self.syncing.lock().await;
        // The fsync before ours may have covered our writes while we waited.
        if self.synced.load(Ordering::SeqCst) >= target {
            return Ok(());
        }
        let covered = self.written.load(Ordering::SeqCst);
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush_wal(true))
            .await
            .map_err(|e| StoreError::SyncAborted(e.to_string()))??;
        self.synced.fetch_max(covered, Ordering::SeqCst);
        Ok(())
    }
}
