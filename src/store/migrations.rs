//! Schema versions and the migrations between them, run once at start-up.
//!
//! A new database starts at [`CURRENT`]. An older one is brought forward by the steps in
//! [`MIGRATIONS`], each one batch; a newer one (written by a later Hearth) refuses to open.

use super::{SEP, Store, StoreError, Table, key};

/// The schema version this build writes.
pub const CURRENT: u32 = 4;

/// One migration step, written as one batch.
type Migration = fn(&Store) -> Result<(), StoreError>;

/// `MIGRATIONS[i]` takes a database from version `i + 1` to `i + 2`.
const MIGRATIONS: [Migration; (CURRENT - 1) as usize] = [index_threads_and_related, index_receipt_changes, receipts_in_changes];

const VERSION_KEY: &[u8] = b"schema_version";

/// Brings the store to [`CURRENT`].
pub fn run(store: &Store) -> Result<(), StoreError> {
    let found = match store.get(Table::Meta, VERSION_KEY)? {
        Some(bytes) => match <[u8; 4]>::try_from(bytes.as_slice()) {
            Ok(be) if u32::from_be_bytes(be) >= 1 => u32::from_be_bytes(be),
            _ => return Err(StoreError::BadSchemaVersion),
        },
        None => {
            write_version(store, CURRENT)?;
            return Ok(());
        }
    };
    if found > CURRENT {
        return Err(StoreError::TooNew { found, supported: CURRENT });
    }
    for version in found..CURRENT {
        tracing::info!(from = version, to = version + 1, "migrating the store");
        MIGRATIONS[(version - 1) as usize](store)?;
        write_version(store, version + 1)?;
    }
    Ok(())
}

fn write_version(store: &Store, version: u32) -> Result<(), StoreError> {
    let mut batch = store.batch();
    batch.put(Table::Meta, VERSION_KEY, &version.to_be_bytes());
    batch.commit()
}

/// Version 2 lists a room's threads by latest reply (`threads`, `thread_activity`) and marks
/// the events others relate to (`related` in `events`): both built from the relations table.
fn index_threads_and_related(store: &Store) -> Result<(), StoreError> {
    let mut latest: std::collections::BTreeMap<(Vec<u8>, Vec<u8>), u64> = std::collections::BTreeMap::new();
    let mut parents = std::collections::BTreeSet::new();
    for (key, (rel_type, _, _)) in store.scan_json::<(String, String, String)>(Table::Relations, &[])? {
        // room ID ‖ parent ‖ stream position (8 bytes, which may hold the separator itself).
        let Some(split) = key.len().checked_sub(9) else { continue };
        let (ids, position) = (&key[..split], &key[split + 1..]);
        let (Some(at), Ok(position)) = (ids.iter().position(|&byte| byte == SEP), <[u8; 8]>::try_from(position)) else {
            continue;
        };
        parents.insert(ids[at + 1..].to_vec());
        if rel_type == "m.thread" {
            let thread = (ids[..at].to_vec(), ids[at + 1..].to_vec());
            let position = u64::from_be_bytes(position);
            let entry = latest.entry(thread).or_default();
            *entry = (*entry).max(position);
        }
    }
    let mut batch = store.batch();
    for parent in parents {
        if let Some(mut event) = store.get_json::<serde_json::Value>(Table::Events, &parent)? {
            event["related"] = serde_json::Value::Bool(true);
            batch.put_json(Table::Events, &parent, &event);
        }
    }
    for ((room, root), position) in latest {
        batch.put(Table::Threads, &key(&[&room, &root]), &position.to_be_bytes());
        batch.put(Table::ThreadActivity, &key(&[&room, &position.to_be_bytes()]), &root);
    }
    batch.commit()
}

/// Version 3 indexes receipts by room and stream position (`receipt_changes`), so a sync reads
/// a room's new receipts rather than all of them.
fn index_receipt_changes(store: &Store) -> Result<(), StoreError> {
    let mut batch = store.batch();
    for (receipt_key, receipt) in store.scan_json::<serde_json::Value>(Table::Receipts, &[])? {
        let (Some(room), Some(stream)) = (receipt_key.split(|&byte| byte == SEP).next(), receipt["stream"].as_u64()) else {
            continue;
        };
        batch.put(Table::ReceiptChanges, &key(&[room, &stream.to_be_bytes()]), &receipt_key);
    }
    batch.commit()
}

/// Version 4 keeps each receipt in its `receipt_changes` row (whose it is and the receipt), so
/// a sync no longer reads every new receipt again by its key.
fn receipts_in_changes(store: &Store) -> Result<(), StoreError> {
    let mut batch = store.batch();
    for (receipt_key, receipt) in store.scan_json::<serde_json::Value>(Table::Receipts, &[])? {
        let mut parts = receipt_key.splitn(4, |&byte| byte == SEP);
        let (Some(room), Some(user), Some(receipt_type), Some(thread), Some(stream)) =
            (parts.next(), parts.next(), parts.next(), parts.next(), receipt["stream"].as_u64())
        else {
            continue;
        };
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let change = serde_json::json!({
            "user": text(user),
            "receipt_type": text(receipt_type),
            "thread": text(thread),
            "receipt": receipt,
        });
        batch.put_json(Table::ReceiptChanges, &key(&[room, &stream.to_be_bytes()]), &change);
    }
    batch.commit()
}
