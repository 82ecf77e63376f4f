//! `hearth admin migrate --to postgres URL` (server stopped): copies this configuration's
//! RocksDB store, table by table, into an empty PostgreSQL database, then checks the copy —
//! every table's row count, and every 100th event byte for byte. The media files stay where
//! they are (`<data_dir>/media`); the configuration then names the new backend.

use crate::config::{Config, Storage, StorageBackend};
use crate::store::{Store, StoreError, Table};

/// Rows copied per PostgreSQL transaction.
const CHUNK: usize = 1_000;

/// Every how many events one is compared byte for byte after the copy.
const SAMPLE_EVERY: usize = 100;

/// Calls `each` with the rows of `table` in key order, `CHUNK` at a time.
fn for_each_chunk(
    store: &Store,
    table: Table,
    mut each: impl FnMut(&[(Vec<u8>, Vec<u8>)]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut start = Vec::new();
    loop {
        let rows = store.range_within(table, (&[], None), &start, true, CHUNK)?;
        each(&rows)?;
        match rows.last() {
            Some((last, _)) if rows.len() == CHUNK => {
                start = last.clone();
                start.push(0);
            }
            _ => return Ok(()),
        }
    }
}

/// Copies the RocksDB store of `config` into the PostgreSQL database at `url` and checks it.
pub fn migrate(config: &Config, url: &str) -> Result<String, String> {
    if !config.data_dir.join("db").is_dir() {
        return Err(format!("{} holds no RocksDB store to migrate", config.data_dir.display()));
    }
    let storage = |backend, postgres_url| Storage {
        backend,
        postgres_url,
        ..config.storage.clone()
    };
    let source = Store::open(&config.data_dir, &storage(StorageBackend::Rocksdb, None))
        .map_err(|e| format!("cannot open the RocksDB store (is the server still running?): {e}"))?;
    let target = Store::open(&config.data_dir, &storage(StorageBackend::Postgres, Some(url.to_owned())))
        .map_err(|e| format!("cannot open the PostgreSQL database: {e}"))?;
    let failed = |e: StoreError| e.to_string();
    // The target's own schema version is all it may hold: the copy brings the source's.
    for table in Table::ALL.into_iter().filter(|&table| table != Table::Meta) {
        if !target.is_empty(table).map_err(failed)? {
            return Err(format!("the PostgreSQL database is not empty (table {} has rows)", table.name()));
        }
    }
    let (mut copied, mut events) = (0usize, 0usize);
    for table in Table::ALL {
        let mut rows_here = 0;
        for_each_chunk(&source, table, |rows| {
            let mut batch = target.batch();
            for (key, value) in rows {
                batch.put(table, key, value);
            }
            rows_here += rows.len();
            batch.commit()
        })
        .map_err(failed)?;
        let mut rows_there = 0;
        for_each_chunk(&target, table, |rows| {
            rows_there += rows.len();
            Ok(())
        })
        .map_err(failed)?;
        if rows_here != rows_there {
            return Err(format!(
                "table {}: {rows_here} rows copied but {rows_there} found in PostgreSQL",
                table.name()
            ));
        }
        copied += rows_here;
        if table == Table::Events {
            events = rows_here;
        }
    }
    let mut sampled = 0;
    let mut position = 0;
    for_each_chunk(&source, Table::Events, |rows| {
        for (key, value) in rows {
            if position % SAMPLE_EVERY == 0 {
                if target.get(Table::Events, key)?.as_deref() != Some(value.as_slice()) {
                    return Err(StoreError::Postgres(format!(
                        "event {} differs after the copy",
                        String::from_utf8_lossy(key)
                    )));
                }
                sampled += 1;
            }
            position += 1;
        }
        Ok(())
    })
    .map_err(failed)?;
    Ok(format!(
        "copied {copied} rows of {} tables ({events} events) into PostgreSQL; row counts match, {sampled} sampled events \
         match byte for byte. Set storage.backend = \"postgres\" and storage.postgres_url; the media stay in {}",
        Table::ALL.len(),
        config.data_dir.join("media").display()
    ))
}
