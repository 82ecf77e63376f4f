//! OpenID tokens: a client asks for one (`/user/{userId}/openid/request_token`) and hands it to
//! a third party (a widget, an identity server), which asks this server who it belongs to
//! (`/_matrix/federation/v1/openid/userinfo`). Each lasts an hour, and proves nothing else.

use std::time::Duration;

use ruma::{OwnedUserId, UserId};
use serde::{Deserialize, Serialize};

use super::{now_ms, random_string};
use crate::error::{Error, Result};
use crate::store::{Store, Table};

/// How long an OpenID token is valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// A token's row in `openid_tokens`.
#[derive(Debug, Serialize, Deserialize)]
struct OpenIdToken {
    user_id: OwnedUserId,
    expires_ts: u64,
}

/// The OpenID tokens of this server's users.
pub struct OpenId {
    store: Store,
}

impl OpenId {
    pub fn new(store: Store) -> OpenId {
        OpenId { store }
    }

    /// A new token for `user`, valid for [`TOKEN_LIFETIME`].
    pub fn issue(&self, user: &UserId) -> Result<String> {
        let token = random_string(32);
        let record = OpenIdToken {
            user_id: user.to_owned(),
            expires_ts: now_ms() + TOKEN_LIFETIME.as_millis() as u64,
        };
        let mut batch = self.store.batch();
        batch.put_json(Table::OpenIdTokens, token.as_bytes(), &record);
        batch.commit()?;
        Ok(token)
    }

    /// The user a token was issued to, while it is valid (401 `M_UNKNOWN_TOKEN` otherwise).
    pub fn user_of(&self, token: &str) -> Result<OwnedUserId> {
        match self.store.get_json::<OpenIdToken>(Table::OpenIdTokens, token.as_bytes())? {
            Some(record) if record.expires_ts > now_ms() => Ok(record.user_id),
            _ => Err(Error::unknown_token("The OpenID token is unknown or expired")),
        }
    }
}
