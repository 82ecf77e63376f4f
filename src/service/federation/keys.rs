//! Other servers' signing keys: fetched from the server itself (`/_matrix/key/v2/server`),
//! checked (its name, its own signature), kept in `server_keys` with their validity and served
//! again as a notary (`/_matrix/key/v2/query`, co-signed by this server). Incoming requests are
//! verified here: the X-Matrix header's signature against the origin's key.

use std::collections::BTreeMap;
use std::sync::Arc;

use ruma::api::federation::authentication::XMatrix;
use ruma::api::federation::discovery::get_server_keys;
use ruma::serde::Base64;
use ruma::signatures::PublicKeyMap;
use ruma::{CanonicalJsonObject, CanonicalJsonValue, OwnedServerName, ServerName};
use serde::{Deserialize, Serialize};

use super::Federation;
use crate::error::{Error, Result};
use crate::service::now_ms;
use crate::store::Table;

/// The longest a key document is believed, whatever it says (the spec's cap for room versions
/// 5 and later).
const MAX_VALIDITY_MS: u64 = 7 * 24 * 3600 * 1000;
/// How soon a server whose keys could not be fetched, or lacked a wanted key, is asked again.
const REFETCH_AFTER_MS: u64 = 60 * 1000;

/// What this server knows of another server's keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerKeys {
    /// The newest key document, as the server signed it.
    pub document: CanonicalJsonObject,
    /// Every key ever seen, by key ID: the public key and until when it may be used.
    pub keys: BTreeMap<String, KeyValidity>,
    /// When the document was fetched.
    pub fetched_ts: u64,
}

/// A public key and the time (ms since the epoch) until which signatures by it are believed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyValidity {
    pub key: String,
    pub valid_until_ts: u64,
}

impl ServerKeys {
    /// When the newest document stops being valid.
    pub fn valid_until_ts(&self) -> u64 {
        self.document
            .get("valid_until_ts")
            .and_then(|value| match value {
                CanonicalJsonValue::Integer(ts) => u64::try_from(i64::from(*ts)).ok(),
                _ => None,
            })
            .unwrap_or(0)
            .min(self.fetched_ts + MAX_VALIDITY_MS)
    }
}

/// The public keys of a key document's `verify_keys` (or `old_verify_keys`), by key ID.
fn document_keys(document: &CanonicalJsonObject, field: &str) -> BTreeMap<String, String> {
    let Some(CanonicalJsonValue::Object(keys)) = document.get(field) else {
        return BTreeMap::new();
    };
    keys.iter()
        .filter_map(|(id, entry)| match entry {
            CanonicalJsonValue::Object(entry) => match entry.get("key") {
                Some(CanonicalJsonValue::String(key)) => Some((id.clone(), key.clone())),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Checks a key document fetched for `server`: its name, and its own signature by one of the
/// keys it lists. Signatures of others (notaries) are not needed and not checked.
fn check_document(server: &ServerName, mut document: CanonicalJsonObject) -> Result<CanonicalJsonObject> {
    let invalid = |why: String| Error::bad_gateway(format!("the key document of {server} {why}"));
    if document.get("server_name") != Some(&CanonicalJsonValue::String(server.to_string())) {
        return Err(invalid("names another server".into()));
    }
    let own_keys: BTreeMap<String, Base64> = document_keys(&document, "verify_keys")
        .into_iter()
        .filter_map(|(id, key)| Some((id, Base64::parse(key).ok()?)))
        .collect();
    if own_keys.is_empty() {
        return Err(invalid("lists no key".into()));
    }
    let own_signatures = match document.get("signatures") {
        Some(CanonicalJsonValue::Object(signatures)) => signatures.get(server.as_str()).cloned(),
        _ => None,
    }
    .ok_or_else(|| invalid("is not signed by the server".into()))?;
    let mut checked = document.clone();
    checked.insert(
        "signatures".into(),
        CanonicalJsonValue::Object(CanonicalJsonObject::from([(server.to_string(), own_signatures)])),
    );
    let map: PublicKeyMap = BTreeMap::from([(server.to_string(), own_keys)]);
    ruma::signatures::verify_json(&map, &checked).map_err(|e| invalid(format!("has a bad signature: {e}")))?;
    document.remove("unsigned");
    Ok(document)
}

impl Federation {
    /// The stored keys of `server`, if any.
    fn stored_keys(&self, server: &ServerName) -> Result<Option<Arc<ServerKeys>>> {
        if let Some(keys) = self.key_cache.lock().unwrap_or_else(|e| e.into_inner()).get(server) {
            return Ok(Some(keys.clone()));
        }
        let stored: Option<ServerKeys> = self.store.get_json(Table::ServerKeys, server.as_bytes())?;
        let stored = stored.map(Arc::new);
        if let Some(keys) = &stored {
            self.key_cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(server.to_owned(), keys.clone());
        }
        Ok(stored)
    }

    /// The keys of `server`, fetched from it when the stored ones lack `key_id` (when given) or
    /// are no longer valid at `valid_at` (ms). A server that failed is asked again only after a
    /// minute; until then what is stored (possibly nothing) is the answer.
    pub async fn server_keys(&self, server: &ServerName, key_id: Option<&str>, valid_at: u64) -> Result<Arc<ServerKeys>> {
        let satisfies = |keys: &ServerKeys| {
            keys.valid_until_ts() >= valid_at && key_id.is_none_or(|id| keys.keys.get(id).is_some_and(|k| k.valid_until_ts >= valid_at))
        };
        if let Some(keys) = self.stored_keys(server)?
            && satisfies(&keys)
        {
            return Ok(keys);
        }
        let _fetching = self.key_fetches.lock(server.to_owned()).await;
        let stored = self.stored_keys(server)?;
        match &stored {
            Some(keys) if satisfies(keys) => return Ok(keys.clone()),
            Some(keys) if keys.fetched_ts + REFETCH_AFTER_MS > now_ms() => return Ok(keys.clone()),
            _ => {}
        }
        match self.fetch_keys(server, stored.as_deref()).await {
            Ok(keys) => Ok(keys),
            Err(error) => stored.ok_or(error),
        }
    }

    /// Fetches, checks and stores the key document of `server`, keeping keys seen before.
    async fn fetch_keys(&self, server: &ServerName, before: Option<&ServerKeys>) -> Result<Arc<ServerKeys>> {
        let response = self.send(server, get_server_keys::v2::Request::new()).await?;
        let document: CanonicalJsonObject = serde_json::from_str(response.server_key.json().get())
            .map_err(|e| Error::bad_gateway(format!("the key document of {server} is not canonical JSON: {e}")))?;
        let document = check_document(server, document)?;
        let fetched_ts = now_ms();
        let mut keys = before.map(|b| b.keys.clone()).unwrap_or_default();
        let mut fetched = ServerKeys {
            document,
            keys: BTreeMap::new(),
            fetched_ts,
        };
        let valid_until_ts = fetched.valid_until_ts();
        for (id, key) in document_keys(&fetched.document, "verify_keys") {
            keys.insert(id, KeyValidity { key, valid_until_ts });
        }
        for (id, key) in document_keys(&fetched.document, "old_verify_keys") {
            let expired_ts = match &fetched.document["old_verify_keys"] {
                CanonicalJsonValue::Object(old) => match old.get(&id) {
                    Some(CanonicalJsonValue::Object(entry)) => match entry.get("expired_ts") {
                        Some(CanonicalJsonValue::Integer(ts)) => u64::try_from(i64::from(*ts)).unwrap_or(0),
                        _ => 0,
                    },
                    _ => 0,
                },
                _ => 0,
            };
            keys.entry(id).or_insert(KeyValidity {
                key,
                valid_until_ts: expired_ts,
            });
        }
        fetched.keys = keys;
        let mut batch = self.store.batch();
        batch.put_json(Table::ServerKeys, server.as_bytes(), &fetched);
        batch.commit()?;
        let fetched = Arc::new(fetched);
        self.key_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(server.to_owned(), fetched.clone());
        Ok(fetched)
    }

    /// The key documents a notary query asks for: this server's own, or another server's as
    /// fetched (valid at least until `minimum_valid_until_ts`), co-signed by this server. An
    /// unreachable server gives none.
    pub async fn notary_documents(&self, server: &ServerName, minimum_valid_until_ts: u64) -> Result<Vec<CanonicalJsonObject>> {
        if server == self.server_name {
            return Ok(vec![self.key.signed_key_document(&self.server_name)?]);
        }
        if self.check_server(server).is_err() {
            return Ok(Vec::new());
        }
        let Ok(keys) = self.server_keys(server, None, minimum_valid_until_ts.max(now_ms())).await else {
            return Ok(Vec::new());
        };
        let mut document = keys.document.clone();
        ruma::signatures::sign_json(self.server_name.as_str(), self.key.pair(), &mut document)
            .map_err(|e| Error::Internal(format!("co-signing a key document: {e}")))?;
        Ok(vec![document])
    }

    /// Verifies an incoming request's X-Matrix signature (the request as received, with its
    /// body); returns the origin. 401 `M_UNAUTHORIZED` for a missing, malformed or wrong
    /// signature, 403 for a server this one does not federate with.
    pub async fn verify_request(&self, request: &http::Request<&[u8]>) -> Result<OwnedServerName> {
        let unauthorized = |why: String| Error::unauthorized(format!("X-Matrix authentication failed: {why}"));
        let header = XMatrix::extract_from_http_headers(request.headers()).map_err(|e| unauthorized(e.to_string()))?;
        self.check_server(&header.origin)?;
        let keys = self
            .server_keys(&header.origin, Some(header.key.as_str()), now_ms())
            .await
            .map_err(|e| unauthorized(format!("the keys of {} cannot be had: {e}", header.origin)))?;
        let key = keys
            .keys
            .get(header.key.as_str())
            .filter(|key| key.valid_until_ts >= now_ms())
            .ok_or_else(|| unauthorized(format!("{} has no valid key {}", header.origin, header.key)))?;
        let key = Base64::parse(&key.key).map_err(|e| unauthorized(e.to_string()))?;
        let map: PublicKeyMap = BTreeMap::from([(header.origin.to_string(), BTreeMap::from([(header.key.to_string(), key)]))]);
        header
            .verify_http_request(request, &self.server_name, &map)
            .map_err(|e| unauthorized(e.to_string()))?;
        Ok(header.origin)
    }
}
