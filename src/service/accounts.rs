//! Accounts: user records, usernames and passwords (argon2id).

use std::collections::HashMap;
use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use ruma::{OwnedServerName, OwnedUserId, UserId};
use serde::{Deserialize, Serialize};

use super::stream::Stream;
use crate::error::{Error, Result};
use crate::store::{Batch, Store, Table};

/// One local account, as stored in `users`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRecord {
    /// The argon2id PHC string; `None` for an account that cannot log in with a password.
    pub password_hash: Option<String>,
    pub admin: bool,
    pub deactivated: bool,
    pub created_ts: u64,
    /// Suspended by a server admin: may read, leave and log out, not send or join.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspended: bool,
    /// Locked by a server admin: every request but logging out is refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub locked: bool,
}

/// What a server admin restricts of an account: (suspended, locked).
type Restriction = (bool, bool);

/// The accounts of this server.
pub struct Accounts {
    store: Store,
    server_name: OwnedServerName,
    /// Held while an account is created, so two requests cannot take the same name.
    pub create_lock: std::sync::Mutex<()>,
    /// The suspended or locked accounts, read at start and kept by [`Accounts::restrict`]:
    /// every request checks them, so they are not read from the store each time.
    restricted: Arc<std::sync::RwLock<HashMap<OwnedUserId, Restriction>>>,
    /// Tells the other processes on a shared database of restrictions set here.
    stream: Arc<Stream>,
}

/// Records a user's restriction (suspended, locked).
fn record_restriction(restricted: &std::sync::RwLock<HashMap<OwnedUserId, Restriction>>, user: OwnedUserId, restriction: Restriction) {
    let mut restricted = restricted.write().unwrap_or_else(|e| e.into_inner());
    if restriction.0 || restriction.1 {
        restricted.insert(user, restriction);
    } else {
        restricted.remove(&user);
    }
}

impl Accounts {
    pub fn new(store: Store, server_name: OwnedServerName, stream: Arc<Stream>) -> Result<Accounts> {
        let restricted: HashMap<OwnedUserId, Restriction> = store
            .scan_json::<UserRecord>(Table::Users, b"")?
            .into_iter()
            .filter(|(_, record)| record.suspended || record.locked)
            .filter_map(|(key, record)| Some((UserId::parse(String::from_utf8(key).ok()?).ok()?, (record.suspended, record.locked))))
            .collect();
        let restricted = Arc::new(std::sync::RwLock::new(restricted));
        let heard = restricted.clone();
        // `<user> <suspended> <locked>`, each 0 or 1, from another process.
        stream.on_announcement('u', move |text| {
            let parts: Vec<&str> = text.split(' ').collect();
            if let [user, suspended, locked] = parts[..]
                && let Ok(user) = UserId::parse(user)
            {
                record_restriction(&heard, user, (suspended == "1", locked == "1"));
            }
        });
        Ok(Accounts {
            store,
            server_name,
            create_lock: Default::default(),
            restricted,
            stream,
        })
    }

    fn restriction(&self, user_id: &UserId) -> Restriction {
        let restricted = self.restricted.read().unwrap_or_else(|e| e.into_inner());
        restricted.get(user_id).copied().unwrap_or_default()
    }

    /// Whether a server admin locked the account.
    pub fn is_locked(&self, user_id: &UserId) -> bool {
        self.restriction(user_id).1
    }

    /// The user ID for a name that may be a localpart or a full user ID (as logins accept),
    /// with the localpart lower-cased as Synapse does.
    pub fn parse_login_name(&self, name: &str) -> Result<OwnedUserId> {
        let localpart = match name.strip_prefix('@') {
            Some(rest) => {
                let (localpart, server) = rest.split_once(':').ok_or_else(|| Error::invalid_param("Invalid user ID"))?;
                if server != self.server_name.as_str() {
                    return Err(Error::forbidden("That user is not on this server"));
                }
                localpart
            }
            None => name,
        };
        UserId::parse_with_server_name(localpart.to_lowercase(), &self.server_name).map_err(|_| Error::invalid_param("Invalid user ID"))
    }

    /// Validates a username chosen for a new account and returns its user ID.
    pub fn new_user_id(&self, localpart: &str) -> Result<OwnedUserId> {
        let valid_chars = localpart
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/' | b'+'));
        if localpart.is_empty() || !valid_chars {
            return Err(Error::invalid_username(
                "User names may only contain lower-case letters, digits and . _ = - / +",
            ));
        }
        let user_id =
            UserId::parse_with_server_name(localpart, &self.server_name).map_err(|_| Error::invalid_username("User name is too long"))?;
        if user_id.as_str().len() > 255 {
            return Err(Error::invalid_username("User name is too long"));
        }
        Ok(user_id)
    }

    /// A fresh random username for clients that register without one.
    pub fn generate_user_id(&self) -> Result<OwnedUserId> {
        loop {
            let user_id = self.new_user_id(&super::random_string(12).to_lowercase())?;
            if self.get(&user_id)?.is_none() {
                return Ok(user_id);
            }
        }
    }

    /// One account, if it exists.
    pub fn get(&self, user_id: &UserId) -> Result<Option<UserRecord>> {
        Ok(self.store.get_json(Table::Users, user_id.as_bytes())?)
    }

    /// One account that exists and is active, for operations on it.
    pub fn get_active(&self, user_id: &UserId) -> Result<UserRecord> {
        match self.get(user_id)? {
            Some(record) if !record.deactivated => Ok(record),
            Some(_) => Err(Error::user_deactivated("This account has been deactivated")),
            None => Err(Error::not_found("No such user")),
        }
    }

    /// Refuses with 403 `M_USER_SUSPENDED` when the account is suspended (for what a suspended
    /// user may not do: send, join, invite, create rooms, change their profile, upload).
    pub fn check_not_suspended(&self, user_id: &UserId) -> Result<()> {
        if self.restriction(user_id).0 {
            return Err(Error::user_suspended("This account is suspended: it can read, not send"));
        }
        Ok(())
    }

    /// Sets what a server admin restricts of a local account; 404 when there is none.
    pub fn restrict(&self, user_id: &UserId, change: impl FnOnce(&mut UserRecord)) -> Result<UserRecord> {
        let _lock = self.create_lock.lock().unwrap_or_else(|e| e.into_inner());
        let _lock_elsewhere = self.store.lock_blocking(b"accounts")?;
        let mut record = self.get(user_id)?.ok_or_else(|| Error::not_found("No such user on this server"))?;
        change(&mut record);
        let mut batch = self.store.batch();
        self.put(&mut batch, user_id, &record);
        batch.commit()?;
        record_restriction(&self.restricted, user_id.to_owned(), (record.suspended, record.locked));
        let flag = |set: bool| if set { "1" } else { "0" };
        self.stream
            .announce('u', &format!("{user_id} {} {}", flag(record.suspended), flag(record.locked)))?;
        Ok(record)
    }

    /// Whether the server has no account yet.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.store.is_empty(Table::Users)?)
    }

    /// Every account, ordered by user ID.
    pub fn list(&self) -> Result<Vec<(OwnedUserId, UserRecord)>> {
        let rows = self.store.scan_json::<UserRecord>(Table::Users, b"")?;
        Ok(rows
            .into_iter()
            .filter_map(|(key, record)| Some((UserId::parse(String::from_utf8(key).ok()?).ok()?, record)))
            .collect())
    }

    /// Adds the write of an account to a batch.
    pub fn put(&self, batch: &mut Batch<'_>, user_id: &UserId, record: &UserRecord) {
        batch.put_json(Table::Users, user_id.as_bytes(), record);
    }
}

/// Password hashes computed at once, at most: each holds argon2id's 19 MiB while it runs, so
/// a burst of registrations or logins must not multiply that (on a 1 GB machine, 50 at once
/// is most of its memory). Two keep both cores of a small machine busy.
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Runs argon2 work on a blocking thread, at most [`HASHING`] at once.
async fn argon2_bounded<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    let _permit = HASHING.acquire().await.map_err(|e| Error::Internal(e.to_string()))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
}

/// Hashes a password with argon2id (it takes tens of milliseconds).
pub async fn hash_password(password: String) -> Result<String> {
    argon2_bounded(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| Error::Internal(format!("password hashing failed: {e}")))
    })
    .await
}

/// Checks a password against an account's hash; false for accounts without a password.
pub async fn verify_password(record: &UserRecord, password: String) -> Result<bool> {
    let Some(hash) = record.password_hash.clone() else {
        return Ok(false);
    };
    argon2_bounded(move || {
        let parsed = PasswordHash::new(&hash).map_err(|e| Error::Internal(format!("stored password hash: {e}")))?;
        Ok(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await
}
