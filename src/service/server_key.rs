//! The server's ed25519 signing key: generated on first start, kept in `meta`, used to sign
//! the key document other servers fetch (and, with rooms, every event).

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use rand::RngCore;
use ruma::signatures::Ed25519KeyPair;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::{Store, Table};

const KEY: &[u8] = b"signing_key";

/// The signing key as stored in `meta`.
#[derive(Serialize, Deserialize)]
struct StoredKey {
    /// The key's version, the part after `ed25519:` in its key ID.
    version: String,
    /// The 32-byte ed25519 seed, unpadded base64.
    seed: String,
}

/// The ruma key pair of an ed25519 seed, with its key version (the part after `ed25519:`).
pub fn key_pair(seed: &[u8; 32], version: String) -> Result<Ed25519KeyPair> {
    let der = SigningKey::from_bytes(seed)
        .to_pkcs8_der()
        .map_err(|e| Error::Internal(format!("signing key: {e}")))?;
    Ed25519KeyPair::from_der(der.as_bytes(), version).map_err(|e| Error::Internal(format!("signing key: {e}")))
}

/// The server's signing key.
pub struct ServerKey {
    signing_key: SigningKey,
    version: String,
    pair: Ed25519KeyPair,
}

impl ServerKey {
    /// The key pair ruma signs with.
    pub fn pair(&self) -> &Ed25519KeyPair {
        &self.pair
    }

    /// Loads the key, generating and storing it on first start.
    pub fn load_or_generate(store: &Store) -> Result<ServerKey> {
        // Two processes starting on a new shared database make one key, not two.
        let _generating = store.lock_blocking(b"signing_key")?;
        let stored = match store.get_json::<StoredKey>(Table::Meta, KEY)? {
            Some(stored) => stored,
            None => {
                let mut seed = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut seed);
                let stored = StoredKey {
                    version: super::random_string(6),
                    seed: STANDARD_NO_PAD.encode(seed),
                };
                let mut batch = store.batch();
                batch.put_json(Table::Meta, KEY, &stored);
                batch.commit()?;
                tracing::info!(key_id = %format!("ed25519:{}", stored.version), "generated the server signing key");
                stored
            }
        };
        let seed: [u8; 32] = STANDARD_NO_PAD
            .decode(&stored.seed)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| Error::Internal("stored signing key is not 32 bytes of base64".into()))?;
        let signing_key = SigningKey::from_bytes(&seed);
        let pair = key_pair(&seed, stored.version.clone())?;
        Ok(ServerKey {
            signing_key,
            version: stored.version,
            pair,
        })
    }

    /// The key ID, `ed25519:<version>`.
    pub fn key_id(&self) -> String {
        format!("ed25519:{}", self.version)
    }

    /// The public key, unpadded base64 as the spec publishes it.
    pub fn public_key_base64(&self) -> String {
        STANDARD_NO_PAD.encode(self.signing_key.verifying_key().as_bytes())
    }
}

impl ServerKey {
    /// The signed key document other servers fetch from `/_matrix/key/v2/server`, valid for a
    /// week.
    pub fn signed_key_document(&self, server_name: &ruma::ServerName) -> Result<ruma::CanonicalJsonObject> {
        let valid_until = super::now_ms() + 7 * 24 * 3600 * 1000;
        let document = serde_json::json!({
            "server_name": server_name,
            "valid_until_ts": valid_until,
            "verify_keys": { self.key_id(): { "key": self.public_key_base64() } },
            "old_verify_keys": {},
        });
        let mut object: ruma::CanonicalJsonObject = serde_json::from_value(document)?;
        ruma::signatures::sign_json(server_name.as_str(), &self.pair, &mut object)
            .map_err(|e| Error::Internal(format!("signing the key document: {e}")))?;
        Ok(object)
    }
}
