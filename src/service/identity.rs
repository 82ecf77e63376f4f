//! The built-in identity service: what Element needs of an identity server, served by the
//! homeserver itself so that no Sydent has to run beside it. Accounts are opened with an
//! OpenID token of this server's users; a user publishes a confirmed address (a binding) so
//! that others find them by it, through a lookup of peppered SHA-256 hashes; and the
//! invitations to addresses nobody has published yet wait in `email_invites` (see
//! [`super::email_invites`]). The service's signing key is the server's own.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ruma::{OwnedUserId, UserId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::threepids::{EMAIL, Purpose};
use super::{Services, now_ms, random_string};
use crate::error::{Error, Result};
use crate::store::{Batch, Store, Table, key};

/// An account of the identity service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdentityAccount {
    pub user_id: OwnedUserId,
    pub created_ts: u64,
}

/// The identity service's accounts, bindings and lookup.
pub struct Identity {
    store: Store,
    pepper: String,
}

const PEPPER_KEY: &[u8] = b"identity_pepper";

fn binding_key(address: &str) -> Vec<u8> {
    key(&[EMAIL.as_bytes(), address.as_bytes()])
}

impl Identity {
    /// Opens the service; the lookup's pepper is made on first start and kept.
    pub fn new(store: Store) -> Result<Identity> {
        let pepper = match store.get(Table::Meta, PEPPER_KEY)? {
            Some(pepper) => String::from_utf8_lossy(&pepper).into_owned(),
            None => {
                let pepper = random_string(16);
                store.put_synced(Table::Meta, PEPPER_KEY, pepper.as_bytes())?;
                pepper
            }
        };
        Ok(Identity { store, pepper })
    }

    /// The pepper lookups hash with.
    pub fn pepper(&self) -> &str {
        &self.pepper
    }

    /// Opens an account for a user (whose OpenID token the caller checked); its token.
    pub fn register(&self, user_id: &UserId) -> Result<String> {
        let token = random_string(32);
        let account = IdentityAccount {
            user_id: user_id.to_owned(),
            created_ts: now_ms(),
        };
        let mut batch = self.store.batch();
        batch.put_json(Table::IdentityTokens, token.as_bytes(), &account);
        batch.commit()?;
        Ok(token)
    }

    /// The user an identity service token belongs to.
    pub fn authenticate(&self, token: &str) -> Result<Option<OwnedUserId>> {
        Ok(self
            .store
            .get_json::<IdentityAccount>(Table::IdentityTokens, token.as_bytes())?
            .map(|account| account.user_id))
    }

    /// Ends an account's token.
    pub fn logout(&self, token: &str) -> Result<()> {
        let mut batch = self.store.batch();
        batch.delete(Table::IdentityTokens, token.as_bytes());
        Ok(batch.commit()?)
    }

    /// The `sha256` lookup hash of an address.
    pub fn lookup_hash(&self, address: &str, medium: &str) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(format!("{address} {medium} {}", self.pepper)))
    }

    /// The user who published an address.
    pub fn bound(&self, address: &str) -> Result<Option<OwnedUserId>> {
        Ok(self.store.get_json(Table::IdentityBindings, &binding_key(address))?)
    }

    /// Publishes an address as `user_id`'s.
    pub fn stage_bind(&self, batch: &mut Batch<'_>, user_id: &UserId, address: &str) {
        batch.put_json(Table::IdentityBindings, &binding_key(address), user_id);
        let hash = self.lookup_hash(address, EMAIL);
        batch.put_json(Table::IdentityHashes, hash.as_bytes(), &[EMAIL, address]);
    }

    /// Withdraws an address `user_id` published; whether it was published by them.
    pub fn stage_unbind(&self, batch: &mut Batch<'_>, user_id: &UserId, address: &str) -> Result<bool> {
        if self.bound(address)?.as_deref() != Some(user_id) {
            return Ok(false);
        }
        batch.delete(Table::IdentityBindings, &binding_key(address));
        batch.delete(Table::IdentityHashes, self.lookup_hash(address, EMAIL).as_bytes());
        Ok(true)
    }

    /// Looks up published addresses: `sha256` hashes, or `none` ("address medium" in the clear).
    pub fn lookup(&self, algorithm: &str, addresses: &[String]) -> Result<BTreeMap<String, OwnedUserId>> {
        let mut found = BTreeMap::new();
        for entry in addresses {
            let address = match algorithm {
                "sha256" => match self.store.get_json::<[String; 2]>(Table::IdentityHashes, entry.as_bytes())? {
                    Some([_, address]) => address,
                    None => continue,
                },
                _ => match entry.rsplit_once(' ') {
                    Some((address, medium)) if medium == EMAIL => address.to_lowercase(),
                    _ => continue,
                },
            };
            if let Some(user_id) = self.bound(&address)? {
                found.insert(entry.clone(), user_id);
            }
        }
        Ok(found)
    }
}

impl Services {
    /// Checks that `id_server` is this server's identity service and `token` an identity
    /// service token of `user_id`.
    pub fn check_identity_access(&self, id_server: &str, token: &str, user_id: &UserId) -> Result<()> {
        if !self.is_own_identity_server(id_server) {
            return Err(Error::server_not_trusted("Only this server's own identity service is supported"));
        }
        match self.identity.authenticate(token)? {
            Some(owner) if owner == user_id => Ok(()),
            _ => Err(Error::forbidden("The identity server access token is not valid for this user")),
        }
    }

    /// Publishes the address of a confirmed session as `user_id`'s, and turns the invitations
    /// waiting for it into invites.
    pub async fn bind_email(&self, user_id: &UserId, sid: &str, client_secret: &str) -> Result<()> {
        let session = self
            .threepids
            .confirmed(sid, client_secret, Purpose::Discovery)
            .or_else(|_| self.threepids.confirmed(sid, client_secret, Purpose::AddToAccount))?;
        match self.identity.bound(&session.address)? {
            Some(owner) if owner != user_id => return Err(Error::threepid_in_use("Another user published this email address")),
            _ => {}
        }
        let mut batch = self.store.batch();
        self.identity.stage_bind(&mut batch, user_id, &session.address);
        self.threepids.stage_end(&mut batch, sid);
        batch.commit()?;
        self.deliver_email_invites(user_id, &session.address).await?;
        Ok(())
    }
}
