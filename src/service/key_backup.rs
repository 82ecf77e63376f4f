//! Server-side key backups (`/room_keys`): each user keeps versions of an encrypted backup of
//! their room keys, of which only the newest takes new keys. The server stores the encrypted
//! session data it is given and keeps, per session, the better of two copies (verified over
//! unverified, then the one that decrypts from an earlier message, then the less forwarded).
//!
//! A version's `etag` changes with every change of its keys and `count` is their number; both
//! live in the version's row, updated in the same batch as the keys under one lock.

use std::collections::BTreeMap;
use std::sync::Mutex;

use ruma::{OwnedRoomId, RoomId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::store::{SEP, Store, Table, key, prefix};

/// One backup version, as stored in `backup_versions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupVersion {
    /// `{algorithm, auth_data}` as the client gave it.
    pub algorithm: Value,
    /// Bumped by every change of the version's keys.
    pub etag: u64,
    /// How many session keys the version holds.
    pub count: u64,
    /// Deleted versions keep their row, so their number is never given out again.
    pub deleted: bool,
}

/// Which keys of a version a request reads or deletes.
#[derive(Debug, Clone, Copy)]
pub enum KeySelection<'a> {
    All,
    Room(&'a RoomId),
    Session(&'a RoomId, &'a str),
}

/// The backed-up keys of a version, by room and session.
pub type BackedUpKeys = BTreeMap<OwnedRoomId, BTreeMap<String, Value>>;

/// The key backups of this server's users.
pub struct KeyBackup {
    store: Store,
    /// Serializes changes of backups (count and etag are read, then written).
    writing: Mutex<()>,
}

fn version_number(version: &str) -> Result<u64> {
    version
        .parse()
        .map_err(|_| Error::not_found(format!("Unknown backup version {version}")))
}

/// Whether `new` should replace `old` as the backup of a session.
fn is_better(new: &Value, old: &Value) -> bool {
    let verified = |key: &Value| key["is_verified"].as_bool().unwrap_or(false);
    let number = |key: &Value, field: &str| key[field].as_u64().unwrap_or(u64::MAX);
    if verified(new) != verified(old) {
        return verified(new);
    }
    let index = (number(new, "first_message_index"), number(old, "first_message_index"));
    if index.0 != index.1 {
        return index.0 < index.1;
    }
    number(new, "forwarded_count") < number(old, "forwarded_count")
}

impl KeyBackup {
    pub fn new(store: Store) -> KeyBackup {
        KeyBackup {
            store,
            writing: Mutex::new(()),
        }
    }

    fn versions(&self, user: &UserId) -> Result<Vec<(u64, BackupVersion)>> {
        let user_prefix = prefix(&[user.as_bytes()]);
        let rows = self.store.scan_json::<BackupVersion>(Table::BackupVersions, &user_prefix)?;
        Ok(rows
            .into_iter()
            .filter_map(|(row, version)| {
                let number = u64::from_be_bytes(row.get(user_prefix.len()..)?.try_into().ok()?);
                Some((number, version))
            })
            .collect())
    }

    /// Starts a new backup version, which becomes the current one.
    pub fn create_version(&self, user: &UserId, algorithm: Value) -> Result<String> {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let number = self.versions(user)?.last().map_or(1, |(number, _)| number + 1);
        let version = BackupVersion {
            algorithm,
            etag: 0,
            count: 0,
            deleted: false,
        };
        let mut batch = self.store.batch();
        batch.put_json(Table::BackupVersions, &key(&[user.as_bytes(), &number.to_be_bytes()]), &version);
        batch.commit()?;
        Ok(number.to_string())
    }

    /// The current (newest, not deleted) version.
    pub fn latest(&self, user: &UserId) -> Result<Option<(String, BackupVersion)>> {
        Ok(self
            .versions(user)?
            .into_iter()
            .rev()
            .find(|(_, version)| !version.deleted)
            .map(|(number, version)| (number.to_string(), version)))
    }

    /// One version, unless it does not exist or was deleted (404).
    pub fn version(&self, user: &UserId, version: &str) -> Result<BackupVersion> {
        let number = version_number(version)?;
        self.store
            .get_json::<BackupVersion>(Table::BackupVersions, &key(&[user.as_bytes(), &number.to_be_bytes()]))?
            .filter(|stored| !stored.deleted)
            .ok_or_else(|| Error::not_found(format!("Unknown backup version {version}")))
    }

    /// Replaces a version's `auth_data`; its algorithm cannot change.
    pub fn update_version(&self, user: &UserId, version: &str, algorithm: Value) -> Result<()> {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let mut stored = self.version(user, version)?;
        if stored.algorithm["algorithm"] != algorithm["algorithm"] {
            return Err(Error::invalid_param("A backup version's algorithm cannot change"));
        }
        if algorithm.get("version").is_some_and(|given| given.as_str() != Some(version)) {
            return Err(Error::invalid_param("The version in the body is not the one in the path"));
        }
        stored.algorithm = serde_json::json!({ "algorithm": algorithm["algorithm"], "auth_data": algorithm["auth_data"] });
        let mut batch = self.store.batch();
        batch.put_json(
            Table::BackupVersions,
            &key(&[user.as_bytes(), &version_number(version)?.to_be_bytes()]),
            &stored,
        );
        Ok(batch.commit()?)
    }

    /// Deletes a version and every key in it.
    pub fn delete_version(&self, user: &UserId, version: &str) -> Result<()> {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let mut stored = self.version(user, version)?;
        let number = version_number(version)?.to_be_bytes();
        let mut batch = self.store.batch();
        for row in self.store.scan_keys(Table::BackupKeys, &prefix(&[user.as_bytes(), &number]))? {
            batch.delete(Table::BackupKeys, &row);
        }
        stored.deleted = true;
        stored.count = 0;
        batch.put_json(Table::BackupVersions, &key(&[user.as_bytes(), &number]), &stored);
        Ok(batch.commit()?)
    }

    /// Stores session keys into the current version, keeping the better copy of each session;
    /// returns the version's new etag and count.
    pub fn put_keys(&self, user: &UserId, version: &str, keys: Vec<(OwnedRoomId, String, Value)>) -> Result<(String, u64)> {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let mut stored = self.version(user, version)?;
        let current = self.latest(user)?.map(|(current, _)| current).unwrap_or_default();
        if current != version {
            return Err(Error::WrongRoomKeysVersion { current_version: current });
        }
        let number = version_number(version)?.to_be_bytes();
        let mut batch = self.store.batch();
        let mut changed = false;
        for (room_id, session_id, session) in keys {
            let row = key(&[user.as_bytes(), &number, room_id.as_bytes(), session_id.as_bytes()]);
            match self.store.get_json::<Value>(Table::BackupKeys, &row)? {
                Some(existing) if !is_better(&session, &existing) => continue,
                Some(_) => {}
                None => stored.count += 1,
            }
            batch.put_json(Table::BackupKeys, &row, &session);
            changed = true;
        }
        if changed {
            stored.etag += 1;
            batch.put_json(Table::BackupVersions, &key(&[user.as_bytes(), &number]), &stored);
            batch.commit()?;
        }
        Ok((stored.etag.to_string(), stored.count))
    }

    /// The keys of a version: all of them, a room's, or one session's.
    pub fn keys(&self, user: &UserId, version: &str, selection: KeySelection<'_>) -> Result<BackedUpKeys> {
        self.version(user, version)?;
        let number = version_number(version)?.to_be_bytes();
        let version_prefix = prefix(&[user.as_bytes(), &number]);
        let scan_prefix = match selection {
            KeySelection::All => version_prefix.clone(),
            KeySelection::Room(room_id) => prefix(&[user.as_bytes(), &number, room_id.as_bytes()]),
            KeySelection::Session(room_id, session_id) => key(&[user.as_bytes(), &number, room_id.as_bytes(), session_id.as_bytes()]),
        };
        let mut keys = BackedUpKeys::new();
        for (row, session) in self.store.scan_json::<Value>(Table::BackupKeys, &scan_prefix)? {
            let rest = &row[version_prefix.len()..];
            let Some(split) = rest.iter().position(|byte| *byte == SEP) else {
                continue;
            };
            let (room_id, session_id) = (String::from_utf8_lossy(&rest[..split]), String::from_utf8_lossy(&rest[split + 1..]));
            if let KeySelection::Session(_, wanted) = selection
                && wanted != session_id
            {
                continue;
            }
            let Ok(room_id) = RoomId::parse(room_id.as_ref()) else { continue };
            keys.entry(room_id).or_default().insert(session_id.into_owned(), session);
        }
        Ok(keys)
    }

    /// Deletes keys of a version; returns its new etag and count.
    pub fn delete_keys(&self, user: &UserId, version: &str, selection: KeySelection<'_>) -> Result<(String, u64)> {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let found = self.keys(user, version, selection)?;
        let mut stored = self.version(user, version)?;
        let number = version_number(version)?.to_be_bytes();
        let mut batch = self.store.batch();
        let mut deleted = 0;
        for (room_id, sessions) in &found {
            for session_id in sessions.keys() {
                batch.delete(
                    Table::BackupKeys,
                    &key(&[user.as_bytes(), &number, room_id.as_bytes(), session_id.as_bytes()]),
                );
                deleted += 1;
            }
        }
        if deleted > 0 {
            stored.count = stored.count.saturating_sub(deleted);
            stored.etag += 1;
            batch.put_json(Table::BackupVersions, &key(&[user.as_bytes(), &number]), &stored);
            batch.commit()?;
        }
        Ok((stored.etag.to_string(), stored.count))
    }
}
