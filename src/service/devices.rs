//! Devices and their access and refresh tokens.
//!
//! An access token is `hth_<id>_<secret>`, a refresh token `hthr_<id>_<secret>`. Only the id
//! is a database key; the row holds the SHA-256 of the secret, compared in constant time, so
//! neither a timing difference nor a copy of the database gives a usable token away.
//!
//! A client that asks for a refresh token at login gets one, and when `access_token_lifetime`
//! is set its access tokens expire after it (answering 401 `M_UNKNOWN_TOKEN` with
//! `soft_logout`); `POST /refresh` swaps the refresh token for a new pair, and the old pair
//! stops working at once. Clients that do not ask keep access tokens that do not expire, as
//! with Synapse.
//!
//! Every request authenticates, so the access tokens read are kept in memory while this process
//! is the store's only user (with a shared PostgreSQL store another process may revoke one):
//! a revocation drops its token once committed, and a read that began before a revocation
//! keeps nothing, as it may have read the token before it was revoked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::kept::KeptPer;
use super::{now_ms, random_string};
use crate::error::{Error, Result};
use crate::store::{Batch, Store, Table, key, prefix};

/// Access tokens kept at most; beyond it they are all forgotten and read again.
const KEPT_TOKENS: usize = 100_000;
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
    /// The id of its refresh token, if the client asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_id: Option<String>,
    /// For a dehydrated device (MSC3814: one that receives keys while none of the user's
    /// clients run, never logged in): the client's encrypted pickle of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dehydrated_data: Option<serde_json::Value>,
}

/// An access token's row in `access_tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    pub secret_sha256: String,
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    /// When it stops working (ms since the epoch); `None`: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ts: Option<u64>,
}

/// A refresh token's row in `refresh_tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshRecord {
    pub secret_sha256: String,
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
}

/// The tokens of a login or a refresh, and the device they belong to.
pub struct LoginGrant {
    pub access_token: String,
    pub device_id: OwnedDeviceId,
    pub refresh_token: Option<String>,
    /// How long the access token works, when it expires.
    pub expires_in: Option<Duration>,
}

/// A one-time login token's row in `login_tokens` (keyed by the token's SHA-256).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginTokenRecord {
    pub user_id: OwnedUserId,
    pub expires_ts: u64,
}

/// How long a login token from `/login/get_token` works.
pub const LOGIN_TOKEN_LIFETIME: Duration = Duration::from_secs(120);

/// Who an access token belongs to.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    /// The appservice whose `as_token` the request carried (acting as its own user or, with
    /// `?user_id=`, as one of its namespace).
    pub appservice: Option<std::sync::Arc<crate::service::appservices::Appservice>>,
}

impl Session {
    /// Whether the server's rate limits apply: to users, and to an appservice's users only when
    /// its registration asks (`rate_limited: true`).
    pub fn rate_limited(&self) -> bool {
        self.appservice
            .as_ref()
            .is_none_or(|appservice| appservice.rate_limits(&self.user_id))
    }
}

/// The devices of this server's users.
pub struct Devices {
    store: Store,
    /// The access tokens read (or found missing), by token ID; `None` with a shared store.
    kept_tokens: Option<Arc<KeptPer<String, Option<TokenRecord>>>>,
    last_seen_written: Mutex<HashMap<String, Instant>>,
    /// How long refreshable access tokens work.
    access_token_lifetime: Option<Duration>,
}

fn secret_hash(secret: &str) -> String {
    STANDARD_NO_PAD.encode(Sha256::digest(secret.as_bytes()))
}

/// A token `<kind><id>_<secret>`'s id and secret.
fn token_parts<'a>(kind: &str, token: &'a str) -> Option<(&'a str, &'a str)> {
    token.strip_prefix(kind)?.split_once('_')
}

/// Whether `secret` hashes to `secret_sha256`, compared in constant time.
fn secret_matches(secret: &str, secret_sha256: &str) -> bool {
    secret_hash(secret).as_bytes().ct_eq(secret_sha256.as_bytes()).into()
}

impl Devices {
    pub fn new(store: Store, access_token_lifetime: Option<Duration>) -> Devices {
        Devices {
            kept_tokens: store.shared().is_none().then(|| Arc::new(KeptPer::new(KEPT_TOKENS, |_| 1))),
            store,
            last_seen_written: Mutex::default(),
            access_token_lifetime,
        }
    }

    /// The user whose access token this is, if it is valid; 401 with `soft_logout` when it
    /// expired.
    pub fn authenticate(&self, token: &str) -> Result<Option<Session>> {
        let Some(record) = self.access_token(token)? else {
            return Ok(None);
        };
        if record.expires_ts.is_some_and(|expires| expires <= now_ms()) {
            return Err(Error::ExpiredToken);
        }
        Ok(Some(Session {
            user_id: record.user_id,
            device_id: record.device_id,
            appservice: None,
        }))
    }

    /// The row of an access token, if its secret matches: kept, or read and kept.
    fn access_token(&self, token: &str) -> Result<Option<TokenRecord>> {
        let Some((id, secret)) = token_parts("hth_", token) else {
            return Ok(None);
        };
        let read = || Ok(self.store.get_json::<TokenRecord>(Table::AccessTokens, id.as_bytes())?);
        let record = match &self.kept_tokens {
            Some(kept) => kept.get_or_read(id, &[], read)?,
            None => read()?,
        };
        Ok(record.filter(|record| secret_matches(secret, &record.secret_sha256)))
    }

    /// The row of a refresh token, if its secret matches.
    fn refresh_token(&self, token: &str) -> Result<Option<RefreshRecord>> {
        let Some((id, secret)) = token_parts("hthr_", token) else {
            return Ok(None);
        };
        let record = self.store.get_json::<RefreshRecord>(Table::RefreshTokens, id.as_bytes())?;
        Ok(record.filter(|record| secret_matches(secret, &record.secret_sha256)))
    }

    /// Adds to `batch` the removal of an access token, and forgets it once that is committed.
    fn stage_revoke(&self, batch: &mut Batch<'_>, token_id: &str) {
        batch.delete(Table::AccessTokens, token_id.as_bytes());
        if let Some(kept) = &self.kept_tokens {
            let (kept, token_id) = (kept.clone(), token_id.to_owned());
            batch.on_commit(move || kept.forget(&token_id));
        }
    }

    /// Swaps a refresh token for a new access token and refresh token; the old ones stop
    /// working. 401 `M_UNKNOWN_TOKEN` for a refresh token that is not (or no longer) valid.
    pub fn refresh(&self, refresh_token: &str) -> Result<LoginGrant> {
        let unknown = || Error::unknown_token("Unknown refresh token");
        let record = self.refresh_token(refresh_token)?.ok_or_else(unknown)?;
        let mut device = self.get(&record.user_id, &record.device_id)?.ok_or_else(unknown)?;
        let mut batch = self.store.batch();
        let grant = self.stage_tokens(&mut batch, &record.user_id, &mut device, true);
        self.put(&mut batch, &record.user_id, &device);
        batch.commit()?;
        Ok(grant)
    }

    /// A one-time token that logs `user_id` in on another device (`m.login.token`).
    pub fn issue_login_token(&self, user_id: &UserId) -> Result<String> {
        let token = random_string(32);
        let record = LoginTokenRecord {
            user_id: user_id.to_owned(),
            expires_ts: now_ms() + LOGIN_TOKEN_LIFETIME.as_millis() as u64,
        };
        let mut batch = self.store.batch();
        batch.put_json(Table::LoginTokens, secret_hash(&token).as_bytes(), &record);
        batch.commit()?;
        Ok(token)
    }

    /// The user a login token was issued to, if it is valid; it is used up either way.
    pub fn redeem_login_token(&self, token: &str) -> Result<Option<OwnedUserId>> {
        let key = secret_hash(token);
        let Some(record) = self.store.get_json::<LoginTokenRecord>(Table::LoginTokens, key.as_bytes())? else {
            return Ok(None);
        };
        let mut batch = self.store.batch();
        batch.delete(Table::LoginTokens, key.as_bytes());
        batch.commit()?;
        Ok((record.expires_ts > now_ms()).then_some(record.user_id))
    }

    /// Adds to `batch` new tokens for a device (refreshable ones when `refreshable`), revoking
    /// the ones it had; updates `device` with them.
    fn stage_tokens(&self, batch: &mut Batch<'_>, user_id: &UserId, device: &mut Device, refreshable: bool) -> LoginGrant {
        if let Some(old_token) = device.token_id.take() {
            self.stage_revoke(batch, &old_token);
        }
        if let Some(old_refresh) = device.refresh_token_id.take() {
            batch.delete(Table::RefreshTokens, old_refresh.as_bytes());
        }
        let expires_in = self.access_token_lifetime.filter(|_| refreshable);
        let (token_id, secret) = (random_string(16), random_string(40));
        let record = TokenRecord {
            secret_sha256: secret_hash(&secret),
            user_id: user_id.to_owned(),
            device_id: device.device_id.clone(),
            expires_ts: expires_in.map(|lifetime| now_ms() + lifetime.as_millis() as u64),
        };
        batch.put_json(Table::AccessTokens, token_id.as_bytes(), &record);
        device.token_id = Some(token_id.clone());
        let refresh_token = refreshable.then(|| {
            let (refresh_id, refresh_secret) = (random_string(16), random_string(40));
            let refresh = RefreshRecord {
                secret_sha256: secret_hash(&refresh_secret),
                user_id: user_id.to_owned(),
                device_id: device.device_id.clone(),
            };
            batch.put_json(Table::RefreshTokens, refresh_id.as_bytes(), &refresh);
            device.refresh_token_id = Some(refresh_id.clone());
            format!("hthr_{refresh_id}_{refresh_secret}")
        });
        LoginGrant {
            access_token: format!("hth_{token_id}_{secret}"),
            device_id: device.device_id.clone(),
            refresh_token,
            expires_in,
        }
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
    /// old tokens are revoked) and returns its tokens.
    pub fn stage_login(
        &self,
        batch: &mut Batch<'_>,
        user_id: &UserId,
        device_id: Option<OwnedDeviceId>,
        display_name: Option<String>,
        ip: Option<&str>,
        refreshable: bool,
    ) -> Result<LoginGrant> {
        let device_id = device_id.unwrap_or_else(|| random_string(10).to_uppercase().into());
        let existing = self.get(user_id, &device_id)?;
        let mut device = Device {
            device_id: device_id.clone(),
            display_name: display_name.or_else(|| existing.as_ref().and_then(|d| d.display_name.clone())),
            last_seen_ip: ip.map(str::to_owned),
            last_seen_ts: Some(now_ms()),
            token_id: existing.as_ref().and_then(|d| d.token_id.clone()),
            refresh_token_id: existing.and_then(|d| d.refresh_token_id),
            dehydrated_data: None,
        };
        let grant = self.stage_tokens(batch, user_id, &mut device, refreshable);
        self.put(batch, user_id, &device);
        Ok(grant)
    }

    /// Adds to `batch` a dehydrated device of a user, without tokens (it is never logged in).
    pub fn stage_dehydrated(
        &self,
        batch: &mut Batch<'_>,
        user_id: &UserId,
        device_id: &DeviceId,
        display_name: Option<String>,
        data: serde_json::Value,
    ) {
        let device = Device {
            device_id: device_id.to_owned(),
            display_name,
            last_seen_ip: None,
            last_seen_ts: None,
            token_id: None,
            refresh_token_id: None,
            dehydrated_data: Some(data),
        };
        self.put(batch, user_id, &device);
    }

    /// A user's dehydrated device, if they have one.
    pub fn dehydrated(&self, user_id: &UserId) -> Result<Option<Device>> {
        Ok(self.list(user_id)?.into_iter().find(|device| device.dehydrated_data.is_some()))
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

    /// Adds to `batch` the removal of a device and its tokens.
    pub fn stage_delete(&self, batch: &mut Batch<'_>, user_id: &UserId, device: &Device) {
        if let Some(token_id) = &device.token_id {
            self.stage_revoke(batch, token_id);
        }
        if let Some(refresh_id) = &device.refresh_token_id {
            batch.delete(Table::RefreshTokens, refresh_id.as_bytes());
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
