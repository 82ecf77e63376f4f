//! Devices and their access tokens.
//!
//! An access token is `hth_<id>_<secret>`. Only the id is a database key; the row holds the
//! SHA-256 of the secret, compared in constant time, so neither a timing difference nor a copy
//! of the database gives a usable token away.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{now_ms, random_string};
use crate::error::{Error, Result};
use crate::store::{Batch, Store, Table, key, prefix};

/// How often a device's last-seen time and IP are written, at most.
const LAST_SEEN_INTERVAL: Duration = Duration::from_secs(300);

/// A device of a user, as stored in `devices`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Device {
    pub device_id: OwnedDeviceId,
    pub display_name: Option<String>,
    pub last_seen_ip: Option<String>,
    pub last_seen_ts: Option<u64>,
    /// The id of the device's current access token, if it is logged in.
    pub token_id: Option<String>,
}

/// An access token's row in `access_tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    pub secret_sha256: String,
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
}

/// Who an access token belongs to.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
}

/// The devices of this server's users.
pub struct Devices {
    store: Store,
    last_seen_written: Mutex<HashMap<String, Instant>>,
}

fn secret_hash(secret: &str) -> String {
    STANDARD_NO_PAD.encode(Sha256::digest(secret.as_bytes()))
}

impl Devices {
    pub fn new(store: Store) -> Devices {
        Devices {
            store,
            last_seen_written: Mutex::default(),
        }
    }

    /// The user whose access token this is, if it is valid.
    pub fn authenticate(&self, token: &str) -> Result<Option<Session>> {
        let Some((id, secret)) = token.strip_prefix("hth_").and_then(|rest| rest.split_once('_')) else {
            return Ok(None);
        };
        let Some(record) = self.store.get_json::<TokenRecord>(Table::AccessTokens, id.as_bytes())? else {
            return Ok(None);
        };
        let matches: bool = secret_hash(secret).as_bytes().ct_eq(record.secret_sha256.as_bytes()).into();
        Ok(matches.then_some(Session {
            user_id: record.user_id,
            device_id: record.device_id,
        }))
    }

    /// Records that a device was used from `ip`, writing at most every few minutes per token.
    pub fn touch(&self, session: &Session, ip: &str) -> Result<()> {
        let token_key = format!("{}|{}", session.user_id, session.device_id);
        {
            let mut written = self.last_seen_written.lock().unwrap_or_else(|p| p.into_inner());
            if written.get(&token_key).is_some_and(|at| at.elapsed() < LAST_SEEN_INTERVAL) {
                return Ok(());
            }
            written.insert(token_key, Instant::now());
        }
        if let Some(mut device) = self.get(&session.user_id, &session.device_id)? {
            device.last_seen_ip = Some(ip.to_owned());
            device.last_seen_ts = Some(now_ms());
            let mut batch = self.store.batch();
            self.put(&mut batch, &session.user_id, &device);
            batch.commit()?;
        }
        Ok(())
    }

    /// Adds to `batch` a login of `user_id` on a device (a new one, or `device_id` reused, whose
    /// old token is revoked) and returns the new access token and the device ID.
    pub fn stage_login(
        &self,
        batch: &mut Batch<'_>,
        user_id: &UserId,
        device_id: Option<OwnedDeviceId>,
        display_name: Option<String>,
        ip: Option<&str>,
    ) -> Result<(String, OwnedDeviceId)> {
        let device_id = device_id.unwrap_or_else(|| random_string(10).to_uppercase().into());
        let existing = self.get(user_id, &device_id)?;
        if let Some(old_token) = existing.as_ref().and_then(|d| d.token_id.as_deref()) {
            batch.delete(Table::AccessTokens, old_token.as_bytes());
        }
        let token_id = random_string(16);
        let secret = random_string(40);
        let record = TokenRecord {
            secret_sha256: secret_hash(&secret),
            user_id: user_id.to_owned(),
            device_id: device_id.clone(),
        };
        batch.put_json(Table::AccessTokens, token_id.as_bytes(), &record);
        let device = Device {
            device_id: device_id.clone(),
            display_name: display_name.or_else(|| existing.and_then(|d| d.display_name)),
            last_seen_ip: ip.map(str::to_owned),
            last_seen_ts: Some(now_ms()),
            token_id: Some(token_id.clone()),
        };
        self.put(batch, user_id, &device);
        Ok((format!("hth_{token_id}_{secret}"), device_id))
    }

    /// One device of a user.
    pub fn get(&self, user_id: &UserId, device_id: &DeviceId) -> Result<Option<Device>> {
        Ok(self
            .store
            .get_json(Table::Devices, &key(&[user_id.as_bytes(), device_id.as_bytes()]))?)
    }

    /// Every device of a user.
    pub fn list(&self, user_id: &UserId) -> Result<Vec<Device>> {
        let rows = self.store.scan_json(Table::Devices, &prefix(&[user_id.as_bytes()]))?;
        Ok(rows.into_iter().map(|(_, device)| device).collect())
    }

    /// Renames a device.
    pub fn set_display_name(&self, user_id: &UserId, device_id: &DeviceId, display_name: Option<String>) -> Result<()> {
        let mut device = self.get(user_id, device_id)?.ok_or_else(|| Error::not_found("No such device"))?;
        device.display_name = display_name;
        let mut batch = self.store.batch();
        self.put(&mut batch, user_id, &device);
        Ok(batch.commit()?)
    }

    /// Adds to `batch` the removal of a device and its access token.
    pub fn stage_delete(&self, batch: &mut Batch<'_>, user_id: &UserId, device: &Device) {
        if let Some(token_id) = &device.token_id {
            batch.delete(Table::AccessTokens, token_id.as_bytes());
        }
        batch.delete(Table::Devices, &key(&[user_id.as_bytes(), device.device_id.as_bytes()]));
    }

    /// Adds to `batch` the removal of devices of a user: those in `only`, or all of them, except
    /// `keep`; returns the devices removed.
    pub fn stage_delete_many(
        &self,
        batch: &mut Batch<'_>,
        user_id: &UserId,
        only: Option<&[OwnedDeviceId]>,
        keep: Option<&DeviceId>,
    ) -> Result<Vec<OwnedDeviceId>> {
        let mut deleted = Vec::new();
        for device in self.list(user_id)? {
            let selected = only.is_none_or(|ids| ids.contains(&device.device_id));
            if selected && keep != Some(&*device.device_id) {
                self.stage_delete(batch, user_id, &device);
                deleted.push(device.device_id);
            }
        }
        Ok(deleted)
    }

    fn put(&self, batch: &mut Batch<'_>, user_id: &UserId, device: &Device) {
        batch.put_json(Table::Devices, &key(&[user_id.as_bytes(), device.device_id.as_bytes()]), device);
    }
}
