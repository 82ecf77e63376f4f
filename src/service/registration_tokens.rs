//! Registration tokens (`m.login.registration_token`): created by admins, each with an optional
//! number of uses and an expiry. A *bootstrap* token is made at first start so the first
//! account (an admin) can be registered whatever the registration mode.

use serde::{Deserialize, Serialize};

use super::{now_ms, random_string};
use crate::config::RegistrationMode;
use crate::error::{Error, Result};
use crate::store::{Batch, Store, Table};

/// A token's row in `registration_tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistrationToken {
    pub token: String,
    /// How many registrations it allows; `None` for unlimited.
    pub uses_allowed: Option<u32>,
    /// How many registrations completed with it.
    pub completed: u32,
    /// When it stops being valid, in ms since the epoch.
    pub expiry_ts: Option<u64>,
    /// Made at first start for the first (admin) account; valid in every registration mode.
    pub bootstrap: bool,
}

impl RegistrationToken {
    /// Whether it can still be used now.
    pub fn is_usable(&self) -> bool {
        self.uses_allowed.is_none_or(|allowed| self.completed < allowed) && self.expiry_ts.is_none_or(|ts| now_ms() < ts)
    }
}

/// The registration tokens of this server.
pub struct RegistrationTokens {
    store: Store,
}

impl RegistrationTokens {
    pub fn new(store: Store) -> RegistrationTokens {
        RegistrationTokens { store }
    }

    /// Creates a token (random unless given) and returns it.
    pub fn create(
        &self,
        token: Option<String>,
        uses_allowed: Option<u32>,
        expiry_ts: Option<u64>,
        bootstrap: bool,
    ) -> Result<RegistrationToken> {
        let token = token.unwrap_or_else(|| random_string(20));
        let valid = !token.is_empty() && token.len() <= 64 && token.bytes().all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b));
        if !valid {
            return Err(Error::invalid_param("A token is 1 to 64 characters of A-Z a-z 0-9 . _ ~ -"));
        }
        if self.get(&token)?.is_some() {
            return Err(Error::invalid_param("That token already exists"));
        }
        let record = RegistrationToken {
            token,
            uses_allowed,
            completed: 0,
            expiry_ts,
            bootstrap,
        };
        let mut batch = self.store.batch();
        batch.put_json(Table::RegistrationTokens, record.token.as_bytes(), &record);
        batch.commit()?;
        Ok(record)
    }

    /// One token.
    pub fn get(&self, token: &str) -> Result<Option<RegistrationToken>> {
        Ok(self.store.get_json(Table::RegistrationTokens, token.as_bytes())?)
    }

    /// Every token.
    pub fn list(&self) -> Result<Vec<RegistrationToken>> {
        Ok(self
            .store
            .scan_json(Table::RegistrationTokens, b"")?
            .into_iter()
            .map(|(_, t)| t)
            .collect())
    }

    /// Deletes a token; false if there was none.
    pub fn revoke(&self, token: &str) -> Result<bool> {
        if self.get(token)?.is_none() {
            return Ok(false);
        }
        let mut batch = self.store.batch();
        batch.delete(Table::RegistrationTokens, token.as_bytes());
        batch.commit()?;
        Ok(true)
    }

    /// The token if it lets someone register now under `mode`.
    pub fn usable(&self, token: &str, mode: RegistrationMode) -> Result<Option<RegistrationToken>> {
        Ok(self
            .get(token)?
            .filter(|t| t.is_usable() && (t.bootstrap || mode != RegistrationMode::Closed)))
    }

    /// Whether any token would be accepted under `mode` (decides whether to offer the stage).
    pub fn any_usable(&self, mode: RegistrationMode) -> Result<bool> {
        Ok(self
            .list()?
            .iter()
            .any(|t| t.is_usable() && (t.bootstrap || mode != RegistrationMode::Closed)))
    }

    /// Adds one completed use of the token to `batch`.
    pub fn stage_use(&self, batch: &mut Batch<'_>, token: &RegistrationToken) {
        let mut used = token.clone();
        used.completed += 1;
        batch.put_json(Table::RegistrationTokens, used.token.as_bytes(), &used);
    }

    /// Adds to `batch` the removal of every bootstrap token.
    pub fn stage_retire_bootstrap(&self, batch: &mut Batch<'_>) -> Result<()> {
        for token in self.list()?.into_iter().filter(|t| t.bootstrap) {
            batch.delete(Table::RegistrationTokens, token.token.as_bytes());
        }
        Ok(())
    }

    /// The bootstrap token to log at start-up while no account exists (made if missing).
    pub fn ensure_bootstrap(&self) -> Result<RegistrationToken> {
        if let Some(token) = self.list()?.into_iter().find(|t| t.bootstrap && t.is_usable()) {
            return Ok(token);
        }
        self.create(None, Some(1), None, true)
    }
}
