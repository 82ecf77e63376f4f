//! The embedded backend: one RocksDB database under `<data_dir>/db`, one column family per
//! table. A batch is a RocksDB `WriteBatch`; the WAL is always on, and with
//! `storage.sync_writes` a write is fsynced before it is acknowledged, concurrent writers
//! sharing one fsync ([`super::group_commit`]).

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, DB, DBRecoveryMode, Direction, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions};

use super::group_commit::GroupCommit;
use super::{RocksDbStatistics, Row, StoreError, Table, TableStatistics};

/// The opened RocksDB database.
pub struct RocksDb {
    db: Arc<DB>,
    /// With `storage.sync_writes`: the fsyncs that make writes durable before they are
    /// acknowledged.
    group_commit: Option<GroupCommit>,
}

impl RocksDb {
    /// Opens (or creates) the database under `data_dir/db`.
    pub fn open(data_dir: &Path, sync_writes: bool) -> Result<RocksDb, StoreError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // A torn last WAL record after a power cut is dropped instead of refusing to start.
        options.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        options.set_keep_log_file_num(4);
        options.increase_parallelism(2);
        // Memory for a small server: the memtables of all tables together stay under 16 MiB
        // (a table's fills to 4 MiB before it is flushed), and one 16 MiB block cache, which
        // also holds the index and filter blocks, serves every table.
        options.set_db_write_buffer_size(16 << 20);
        options.set_write_buffer_size(4 << 20);
        let mut table_options = rocksdb::BlockBasedOptions::default();
        table_options.set_block_cache(&rocksdb::Cache::new_lru_cache(16 << 20));
        table_options.set_cache_index_and_filter_blocks(true);
        table_options.set_pin_l0_filter_and_index_blocks_in_cache(true);
        // Point reads (an event by its ID, a short ID) skip the files without the key by their
        // Bloom filter, and find it inside a block by a hash instead of a binary search.
        table_options.set_bloom_filter(10.0, false);
        table_options.set_optimize_filters_for_memory(true);
        table_options.set_data_block_index_type(rocksdb::DataBlockIndexType::BinaryAndHash);
        table_options.set_data_block_hash_ratio(0.75);
        options.set_block_based_table_factory(&table_options);
        let families = Table::ALL.iter().map(|&table| {
            let mut options = options.clone();
            if matches!(
                table,
                Table::Events | Table::ShortIds | Table::ShortIdLookup | Table::StateSnapshots
            ) {
                // Read by key far more than by range: a Bloom filter in front of each memtable
                // (5 % of its size) spares the skip-list search of a key it does not hold.
                options.set_memtable_prefix_bloom_ratio(0.05);
                options.set_memtable_whole_key_filtering(true);
            }
            ColumnFamilyDescriptor::new(table.name(), options)
        });
        let db = Arc::new(DB::open_cf_descriptors(&options, data_dir.join("db"), families)?);
        Ok(RocksDb {
            group_commit: sync_writes.then(|| GroupCommit::new(db.clone())),
            db,
        })
    }

    fn cf(&self, table: Table) -> &rocksdb::ColumnFamily {
        // Every table's column family is created in `open`.
        self.db.cf_handle(table.name()).expect("column family created at open")
    }

    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(table), key)?)
    }

    /// Every row whose key starts with `prefix`, in key order (values too when `with_values`).
    pub fn scan(&self, table: Table, prefix: &[u8], with_values: bool) -> Result<Vec<Row>, StoreError> {
        let mut rows = Vec::new();
        for item in self.db.iterator_cf(self.cf(table), IteratorMode::From(prefix, Direction::Forward)) {
            let (key, value) = item?;
            if !key.starts_with(prefix) {
                break;
            }
            rows.push((key.into_vec(), if with_values { value.into_vec() } else { Vec::new() }));
        }
        Ok(rows)
    }

    pub fn range_within(
        &self,
        table: Table,
        (lower, upper): (&[u8], Option<&[u8]>),
        start: &[u8],
        forward: bool,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let direction = if forward { Direction::Forward } else { Direction::Reverse };
        let mut options = ReadOptions::default();
        if !lower.is_empty() {
            options.set_iterate_lower_bound(lower.to_vec());
        }
        if let Some(upper) = upper {
            options.set_iterate_upper_bound(upper.to_vec());
        }
        let mut rows = Vec::new();
        for item in self
            .db
            .iterator_cf_opt(self.cf(table), options, IteratorMode::From(start, direction))
        {
            if rows.len() >= limit {
                break;
            }
            let (key, value) = item?;
            rows.push((key.into_vec(), value.into_vec()));
        }
        Ok(rows)
    }

    pub fn count_keys_backward(&self, table: Table, prefix: &[u8], start: &[u8], cap: usize) -> Result<usize, StoreError> {
        let mut iterator = self.db.raw_iterator_cf(self.cf(table));
        iterator.seek_for_prev(start);
        let mut count = 0;
        while count < cap && iterator.key().is_some_and(|key| key.starts_with(prefix)) {
            count += 1;
            iterator.prev();
        }
        iterator.status()?;
        Ok(count)
    }

    pub fn multi_get(&self, table: Table, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.db
            .batched_multi_get_cf(self.cf(table), keys, false)
            .into_iter()
            .map(|value| Ok(value?.map(|slice| slice.to_vec())))
            .collect()
    }

    pub fn is_empty(&self, table: Table) -> Result<bool, StoreError> {
        match self.db.iterator_cf(self.cf(table), IteratorMode::Start).next() {
            None => Ok(true),
            Some(item) => item.map(|_| false).map_err(StoreError::from),
        }
    }

    /// Adds a put to a batch that [`RocksDb::write`] will apply.
    pub fn put(&self, batch: &mut WriteBatch, table: Table, key: &[u8], value: &[u8]) {
        batch.put_cf(self.cf(table), key, value);
    }

    pub fn delete(&self, batch: &mut WriteBatch, table: Table, key: &[u8]) {
        batch.delete_cf(self.cf(table), key);
    }

    pub fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.db.write(batch)?;
        if let Some(group_commit) = &self.group_commit {
            group_commit.wrote();
        }
        Ok(())
    }

    pub async fn durable(&self) -> Result<(), StoreError> {
        match &self.group_commit {
            Some(group_commit) => group_commit.durable().await,
            None => Ok(()),
        }
    }

    pub fn put_synced(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db.put_cf_opt(self.cf(table), key, value, &options)?;
        Ok(())
    }

    pub fn checkpoint(&self, path: &Path) -> Result<(), StoreError> {
        rocksdb::checkpoint::Checkpoint::new(&self.db)?.create_checkpoint(path)?;
        Ok(())
    }

    pub fn statistics(&self) -> RocksDbStatistics {
        use rocksdb::properties::{self as p, PropName};
        let figure =
            |table: Table, property: &PropName| self.db.property_int_value_cf(self.cf(table), property).ok().flatten().unwrap_or(0);
        let whole = |property: &PropName| self.db.property_int_value(property).ok().flatten().unwrap_or(0);
        RocksDbStatistics {
            tables: Table::ALL
                .iter()
                .map(|&table| TableStatistics {
                    name: table.name(),
                    sst_files_bytes: figure(table, p::TOTAL_SST_FILES_SIZE),
                    live_data_bytes: figure(table, p::ESTIMATE_LIVE_DATA_SIZE),
                    memtable_bytes: figure(table, p::CUR_SIZE_ALL_MEM_TABLES),
                    pending_compaction_bytes: figure(table, p::ESTIMATE_PENDING_COMPACTION_BYTES),
                })
                .collect(),
            running_compactions: whole(p::NUM_RUNNING_COMPACTIONS),
            running_flushes: whole(p::NUM_RUNNING_FLUSHES),
            compaction_pending: Table::ALL
                .iter()
                .map(|&table| figure(table, p::COMPACTION_PENDING))
                .max()
                .unwrap_or(0),
        }
    }

    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_wal(true)?;
        for table in Table::ALL {
            self.db.flush_cf(self.cf(table))?;
        }
        Ok(())
    }
}
