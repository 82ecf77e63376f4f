//! The embedded backend: one RocksDB database under `<data_dir>/db`. Each table written as the
//! rooms are used (events, timelines, receipts, notifications, …) has a column family of its
//! own, named after it; the tables written only now and then (accounts, devices, profiles,
//! media, directories, keys, identity and appservice registrations, …) share one,
//! `rarely_written`, where each key starts with its table's tag, one byte ([`Table`]'s
//! discriminant), so a table's rows are one range. A column family costs RocksDB ~70 KiB of
//! memory even when empty (its memtable, statistics, table cache and version set), so those 38
//! tables in families of their own held ~2.6 MiB of an idle server's 23. The busy tables keep
//! their own: a family's compaction rewrites its files, and with them sharing one every
//! compaction rewrote all of them and emptied the block cache of every table's blocks (in the
//! community workload the server then spent two thirds of its time reading and decompressing
//! blocks, and sent 12 messages/s of 20). A store written by an earlier Hearth, one column
//! family per table, has its rarely written tables moved into the shared family at open.
//!
//! A batch is a RocksDB `WriteBatch`; the WAL is always on, and with `storage.sync_writes` a
//! write is fsynced before it is acknowledged, concurrent writers sharing one fsync
//! ([`super::group_commit`]).

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, DB, DBRecoveryMode, Direction, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions};

use super::group_commit::GroupCommit;
use super::{FamilyStatistics, RocksDbStatistics, Row, StoreError, Table};

/// The column family the rarely written tables share.
const RARELY_WRITTEN: &str = "rarely_written";

/// Whether `table` is written only now and then: by account, device, profile, media and key
/// changes, directory edits and administration, not by what the rooms carry.
fn rarely_written(table: Table) -> bool {
    matches!(
        table,
        Table::Users
            | Table::Devices
            | Table::AccessTokens
            | Table::Profiles
            | Table::Filters
            | Table::RegistrationTokens
            | Table::Media
            | Table::MediaByUser
            | Table::MediaByBlob
            | Table::MediaPending
            | Table::MediaThumbnails
            | Table::Aliases
            | Table::RoomAliases
            | Table::PublicRooms
            | Table::Pushers
            | Table::DeviceKeys
            | Table::FallbackKeys
            | Table::CrossSigningKeys
            | Table::KeySignatures
            | Table::BackupVersions
            | Table::ServerKeys
            | Table::InviteStates
            | Table::OpenIdTokens
            | Table::DeviceListStreams
            | Table::RemoteDeviceLists
            | Table::ThreepidSessions
            | Table::Threepids
            | Table::UserThreepids
            | Table::IdentityTokens
            | Table::IdentityBindings
            | Table::IdentityHashes
            | Table::EmailInvites
            | Table::EmailDigests
            | Table::Reports
            | Table::RefreshTokens
            | Table::LoginTokens
            | Table::Appservices
            | Table::AppserviceDirectory
    )
}

/// The column family holding `table`'s rows.
fn family_name(table: Table) -> &'static str {
    if rarely_written(table) { RARELY_WRITTEN } else { table.name() }
}

/// The tables with a column family of their own.
fn busy_tables() -> impl Iterator<Item = Table> {
    Table::ALL.into_iter().filter(|table| !rarely_written(*table))
}

/// Every column family, each once.
fn family_names() -> impl Iterator<Item = &'static str> {
    busy_tables().map(Table::name).chain([RARELY_WRITTEN])
}

/// The byte a table's keys start with in the shared column family ([`Table`]'s discriminant);
/// `None` for a table with a family of its own, whose keys are stored as they are.
fn tag(table: Table) -> Option<u8> {
    rarely_written(table).then_some(table as u8)
}

/// A table's key as stored: its tag, if any, then the key.
fn stored_key(table: Table, key: &[u8]) -> Cow<'_, [u8]> {
    match tag(table) {
        None => Cow::Borrowed(key),
        Some(tag) => Cow::Owned([&[tag], key].concat()),
    }
}

/// A stored key as the table knows it: without its tag (moved, not copied, when untagged).
fn table_key(table: Table, stored: Box<[u8]>) -> Vec<u8> {
    match tag(table) {
        None => stored.into_vec(),
        Some(_) => stored[1..].to_vec(),
    }
}

/// The first stored key after every key of `table` (`None` in a family of its own). Tags stay
/// below [`Table::ALL`]'s length, so the next byte never overflows.
fn table_end(table: Table) -> Option<Vec<u8>> {
    tag(table).map(|tag| vec![tag + 1])
}

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
        let path = data_dir.join("db");
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // A torn last WAL record after a power cut is dropped instead of refusing to start.
        options.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        options.set_keep_log_file_num(4);
        options.increase_parallelism(2);
        // Memory for a small server: the memtables of all tables together stay under 12 MiB
        // (a column family's fills to 4 MiB before it is flushed), and one 8 MiB block cache,
        // which also holds the index and filter blocks, serves every table. (16 MiB of each
        // sent and served no faster in the load tool's workloads, and held 10 MiB more at a
        // busy community's peak.)
        options.set_db_write_buffer_size(12 << 20);
        options.set_write_buffer_size(4 << 20);
        let mut table_options = rocksdb::BlockBasedOptions::default();
        table_options.set_block_cache(&rocksdb::Cache::new_lru_cache(8 << 20));
        table_options.set_cache_index_and_filter_blocks(true);
        table_options.set_pin_l0_filter_and_index_blocks_in_cache(true);
        // Point reads (an event by its ID, a short ID) skip the files without the key by their
        // Bloom filter, and find it inside a block by a hash instead of a binary search.
        table_options.set_bloom_filter(10.0, false);
        table_options.set_optimize_filters_for_memory(true);
        table_options.set_data_block_index_type(rocksdb::DataBlockIndexType::BinaryAndHash);
        table_options.set_data_block_hash_ratio(0.75);
        options.set_block_based_table_factory(&table_options);
        // The rarely written tables in their own column families, as an earlier Hearth kept them.
        let earlier: Vec<Table> = match DB::list_cf(&options, &path) {
            Ok(names) => Table::ALL
                .into_iter()
                .filter(|table| rarely_written(*table) && names.iter().any(|name| name == table.name()))
                .collect(),
            Err(_) => Vec::new(),
        };
        let families = busy_tables()
            .map(|table| {
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
            })
            .chain([ColumnFamilyDescriptor::new(RARELY_WRITTEN, options.clone())])
            .chain(
                earlier
                    .iter()
                    .map(|table| ColumnFamilyDescriptor::new(table.name(), options.clone())),
            );
        let mut db = DB::open_cf_descriptors(&options, &path, families)?;
        for table in earlier {
            move_earlier_table(&mut db, table)?;
        }
        let db = Arc::new(db);
        Ok(RocksDb {
            group_commit: sync_writes.then(|| GroupCommit::new(db.clone())),
            db,
        })
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        // Every family is created in `open`.
        self.db.cf_handle(name).expect("column family created at open")
    }

    fn table_cf(&self, table: Table) -> &rocksdb::ColumnFamily {
        self.cf(family_name(table))
    }

    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.table_cf(table), stored_key(table, key))?)
    }

    /// Every row whose key starts with `prefix`, in key order (values too when `with_values`).
    pub fn scan(&self, table: Table, prefix: &[u8], with_values: bool) -> Result<Vec<Row>, StoreError> {
        let prefix = stored_key(table, prefix);
        let mut options = ReadOptions::default();
        // Bounded, so the end of a scan never walks the next table's deleted rows.
        if let Some(end) = super::prefix_end(&prefix) {
            options.set_iterate_upper_bound(end);
        }
        let mut rows = Vec::new();
        for item in self
            .db
            .iterator_cf_opt(self.table_cf(table), options, IteratorMode::From(&prefix, Direction::Forward))
        {
            let (key, value) = item?;
            if !key.starts_with(&prefix) {
                break;
            }
            rows.push((table_key(table, key), if with_values { value.into_vec() } else { Vec::new() }));
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
        if !lower.is_empty() || tag(table).is_some() {
            options.set_iterate_lower_bound(stored_key(table, lower).into_owned());
        }
        if let Some(upper) = upper
            .map(|upper| stored_key(table, upper).into_owned())
            .or_else(|| table_end(table))
        {
            options.set_iterate_upper_bound(upper);
        }
        let mut rows = Vec::new();
        for item in self.db.iterator_cf_opt(
            self.table_cf(table),
            options,
            IteratorMode::From(&stored_key(table, start), direction),
        ) {
            if rows.len() >= limit {
                break;
            }
            let (key, value) = item?;
            rows.push((table_key(table, key), value.into_vec()));
        }
        Ok(rows)
    }

    pub fn count_keys_backward(&self, table: Table, prefix: &[u8], start: &[u8], cap: usize) -> Result<usize, StoreError> {
        let prefix = stored_key(table, prefix);
        let mut options = ReadOptions::default();
        options.set_iterate_lower_bound(prefix.to_vec());
        let mut iterator = self.db.raw_iterator_cf_opt(self.table_cf(table), options);
        iterator.seek_for_prev(stored_key(table, start));
        let mut count = 0;
        while count < cap && iterator.key().is_some_and(|key| key.starts_with(&prefix)) {
            count += 1;
            iterator.prev();
        }
        iterator.status()?;
        Ok(count)
    }

    pub fn multi_get(&self, table: Table, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let keys: Vec<Cow<[u8]>> = keys.iter().map(|key| stored_key(table, key)).collect();
        self.db
            .batched_multi_get_cf(self.table_cf(table), &keys, false)
            .into_iter()
            .map(|value| Ok(value?.map(|slice| slice.to_vec())))
            .collect()
    }

    pub fn is_empty(&self, table: Table) -> Result<bool, StoreError> {
        Ok(self.range_within(table, (&[], None), &[], true, 1)?.is_empty())
    }

    /// Adds a put to a batch that [`RocksDb::write`] will apply.
    pub fn put(&self, batch: &mut WriteBatch, table: Table, key: &[u8], value: &[u8]) {
        batch.put_cf(self.table_cf(table), stored_key(table, key), value);
    }

    pub fn delete(&self, batch: &mut WriteBatch, table: Table, key: &[u8]) {
        batch.delete_cf(self.table_cf(table), stored_key(table, key));
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
        self.db.put_cf_opt(self.table_cf(table), stored_key(table, key), value, &options)?;
        Ok(())
    }

    pub fn checkpoint(&self, path: &Path) -> Result<(), StoreError> {
        rocksdb::checkpoint::Checkpoint::new(&self.db)?.create_checkpoint(path)?;
        Ok(())
    }

    /// RocksDB's figures, per column family and for the whole database.
    pub fn statistics(&self) -> RocksDbStatistics {
        use rocksdb::properties::{self as p, PropName};
        let figure =
            |family: &str, property: &PropName| self.db.property_int_value_cf(self.cf(family), property).ok().flatten().unwrap_or(0);
        let whole = |property: &PropName| self.db.property_int_value(property).ok().flatten().unwrap_or(0);
        RocksDbStatistics {
            families: family_names()
                .map(|name| FamilyStatistics {
                    name,
                    sst_files_bytes: figure(name, p::TOTAL_SST_FILES_SIZE),
                    live_data_bytes: figure(name, p::ESTIMATE_LIVE_DATA_SIZE),
                    memtable_bytes: figure(name, p::CUR_SIZE_ALL_MEM_TABLES),
                    pending_compaction_bytes: figure(name, p::ESTIMATE_PENDING_COMPACTION_BYTES),
                })
                .collect(),
            running_compactions: whole(p::NUM_RUNNING_COMPACTIONS),
            running_flushes: whole(p::NUM_RUNNING_FLUSHES),
            compaction_pending: family_names().map(|name| figure(name, p::COMPACTION_PENDING)).max().unwrap_or(0),
        }
    }

    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_wal(true)?;
        for name in family_names() {
            self.db.flush_cf(self.cf(name))?;
        }
        Ok(())
    }
}

/// Moves the rows of a rarely written table's column family, as an earlier Hearth kept them,
/// into the shared one, then drops the old column family. Each chunk is one batch, and a row
/// copied twice (after a crash before the drop) is the same row, so an interrupted move is
/// taken up again at the next start.
fn move_earlier_table(db: &mut DB, table: Table) -> Result<(), StoreError> {
    const CHUNK_BYTES: usize = 8 << 20;
    tracing::info!(table = table.name(), "moving the table into the shared column family");
    {
        let old = db.cf_handle(table.name()).expect("opened with the earlier layout");
        let new = db.cf_handle(RARELY_WRITTEN).expect("column family created at open");
        let mut batch = WriteBatch::default();
        for item in db.iterator_cf(old, IteratorMode::Start) {
            let (key, value) = item?;
            batch.put_cf(new, stored_key(table, &key), value);
            if batch.size_in_bytes() >= CHUNK_BYTES {
                db.write(std::mem::take(&mut batch))?;
            }
        }
        db.write(batch)?;
    }
    db.drop_cf(table.name())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store an earlier Hearth wrote, one column family per table, opens with every row in
    /// its table: the rarely written tables moved into their shared family (their own gone),
    /// each table's rows apart from the others', the busy tables where they were.
    #[test]
    fn a_store_of_one_column_family_per_table_has_its_rarely_written_tables_moved() {
        let data_dir = tempfile::tempdir().unwrap();
        let position = |room: &[u8], position: u64| [room, b"\xff", &position.to_be_bytes()].concat();
        {
            let mut options = Options::default();
            options.create_if_missing(true);
            options.create_missing_column_families(true);
            let names = Table::ALL.iter().map(|table| table.name());
            let db = DB::open_cf(&options, data_dir.path().join("db"), names).unwrap();
            let put = |table: Table, key: &[u8], value: &[u8]| db.put_cf(db.cf_handle(table.name()).unwrap(), key, value).unwrap();
            put(Table::Meta, b"schema_version", &4u32.to_be_bytes());
            put(Table::Users, b"@a:hearth", b"{}");
            put(Table::Users, b"@b:hearth", b"{}");
            put(Table::Devices, b"@a:hearth\xffONE", b"{}");
            put(Table::Devices, b"@a:hearth\xffTWO", b"{}");
            put(Table::Devices, b"@b:hearth\xffONE", b"{}");
            put(Table::Events, b"$event", b"{\"pdu\":1}");
            for at in 0..3 {
                put(Table::Timeline, &position(b"!room", at), b"$event");
            }
        }
        let store = RocksDb::open(data_dir.path(), false).unwrap();
        assert_eq!(
            store.get(Table::Meta, b"schema_version").unwrap(),
            Some(4u32.to_be_bytes().to_vec())
        );
        assert_eq!(store.get(Table::Events, b"$event").unwrap(), Some(b"{\"pdu\":1}".to_vec()));
        let keys = |rows: Vec<Row>| rows.into_iter().map(|(key, _)| key).collect::<Vec<_>>();
        assert_eq!(
            keys(store.scan(Table::Users, b"", false).unwrap()),
            [b"@a:hearth".to_vec(), b"@b:hearth".to_vec()]
        );
        assert_eq!(store.scan(Table::Devices, b"@a:hearth\xff", true).unwrap().len(), 2);
        let newest_devices = store.range_within(Table::Devices, (b"", None), b"\xff", false, 10).unwrap();
        assert_eq!(keys(newest_devices)[0], b"@b:hearth\xffONE");
        assert_eq!(
            store
                .count_keys_backward(Table::Devices, b"@a:hearth\xff", b"@a:hearth\xff\xff", 10)
                .unwrap(),
            2
        );
        assert_eq!(
            store
                .multi_get(Table::Users, &[b"@b:hearth".to_vec(), b"@c:hearth".to_vec()])
                .unwrap(),
            [Some(b"{}".to_vec()), None]
        );
        let newest = store
            .range_within(Table::Timeline, (b"!room\xff", None), b"!room\xff\xff", false, 2)
            .unwrap();
        assert_eq!(keys(newest), [position(b"!room", 2), position(b"!room", 1)]);
        assert!(store.is_empty(Table::Profiles).unwrap());
        assert!(!store.is_empty(Table::Devices).unwrap());
        drop(store);
        let families = DB::list_cf(&Options::default(), data_dir.path().join("db")).unwrap();
        assert!(families.iter().any(|name| name == RARELY_WRITTEN));
        assert!(families.iter().any(|name| name == "events"));
        assert!(!families.iter().any(|name| name == "users" || name == "devices"));
        assert_eq!(families.len(), 1 + family_names().count(), "{families:?}");
    }
}
