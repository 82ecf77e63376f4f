//! `GET /voip/turnServer`: credentials for the TURN server calls relay through, computed
//! from the secret shared with it (coturn's `use-auth-secret` REST scheme: the user name is
//! the expiry time and the user, the password its HMAC-SHA1 under the secret), valid for
//! `turn.ttl`. Without `[turn]` configured, an empty object, as Synapse answers.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use ruma::api::client::voip::get_turn_server_info;
use serde_json::{Value, json};

use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::service::Services;

/// `GET /_matrix/client/v3/voip/turnServer`
pub async fn get_turn_server(State(services): State<Arc<Services>>, req: Ruma<get_turn_server_info::v3::Request>) -> Result<Json<Value>> {
    let user_id = req.user_id()?;
    let turn = &services.config.turn;
    let Some(secret) = turn.shared_secret.as_deref().filter(|_| !turn.uris.is_empty()) else {
        return Ok(Json(json!({})));
    };
    let expiry = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO) + turn.ttl;
    let username = format!("{}:{user_id}", expiry.as_secs());
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).map_err(|e| Error::Internal(format!("TURN secret: {e}")))?;
    mac.update(username.as_bytes());
    let password = STANDARD.encode(mac.finalize().into_bytes());
    Ok(Json(json!({
        "username": username,
        "password": password,
        "uris": turn.uris,
        "ttl": turn.ttl.as_secs(),
    })))
}
