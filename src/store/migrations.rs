//! Schema versions and the migrations between them, run once at start-up.
//!
//! A new database starts at [`CURRENT`]. An older one is brought forward by the steps in
//! [`MIGRATIONS`], each one batch; a newer one (written by a later Hearth) refuses to open.

use super::{Store, StoreError, Table};

/// The schema version this build writes.
pub const CURRENT: u32 = 1;

/// One migration step, written as one batch.
type Migration = fn(&Store) -> Result<(), StoreError>;

/// `MIGRATIONS[i]` takes a database from version `i + 1` to `i + 2`.
const MIGRATIONS: [Migration; (CURRENT - 1) as usize] = [];

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
