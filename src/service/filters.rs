//! Stored sync filters (`/user/{userId}/filter`).

use ruma::UserId;
use ruma::api::client::filter::FilterDefinition;

use crate::error::Result;
use crate::store::{Store, Table, key, prefix};

/// The stored filters of this server's users.
pub struct Filters {
    store: Store,
    create_lock: std::sync::Mutex<()>,
}

impl Filters {
    pub fn new(store: Store) -> Filters {
        Filters {
            store,
            create_lock: Default::default(),
        }
    }

    /// Stores a filter and returns its ID (a per-user counter, as Synapse hands out).
    pub fn create(&self, user_id: &UserId, filter: &FilterDefinition) -> Result<String> {
        let _guard = self.create_lock.lock().unwrap_or_else(|p| p.into_inner());
        let _guard_elsewhere = self.store.lock_blocking(&[b"filters:", user_id.as_bytes()].concat())?;
        let user_prefix = prefix(&[user_id.as_bytes()]);
        let existing = self.store.scan_json::<serde_json::Value>(Table::Filters, &user_prefix)?;
        let next_id = existing
            .last()
            .and_then(|(k, _)| k.get(user_prefix.len()..)?.try_into().ok().map(u64::from_be_bytes))
            .map_or(0, |id| id + 1);
        let mut batch = self.store.batch();
        batch.put_json(Table::Filters, &key(&[user_id.as_bytes(), &next_id.to_be_bytes()]), filter);
        batch.commit()?;
        Ok(next_id.to_string())
    }

    /// One stored filter.
    pub fn get(&self, user_id: &UserId, filter_id: &str) -> Result<Option<FilterDefinition>> {
        let Ok(id) = filter_id.parse::<u64>() else { return Ok(None) };
        Ok(self
            .store
            .get_json(Table::Filters, &key(&[user_id.as_bytes(), &id.to_be_bytes()]))?)
    }
}
