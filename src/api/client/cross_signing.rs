//! Cross-signing (`/keys/device_signing/upload`, `/keys/signatures/upload`): a user's master,
//! self-signing and user-signing keys, and the signatures with which users vouch for their
//! own devices and for each other.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::keys::{upload_signatures, upload_signing_keys};
use serde_json::{Value, json};

use super::device_management::password_flows;
use super::rooms::json;
use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Result;
use crate::service::Services;
use crate::service::keys::CrossSigningUsage;

/// `POST /_matrix/client/v3/keys/device_signing/upload`: the first keys need no password
/// (as MSC3967 allows, so a client can bootstrap right after login); replacing keys does.
pub async fn upload_signing_keys(
    State(services): State<Arc<Services>>,
    req: Ruma<upload_signing_keys::v3::Request>,
) -> HandlerResult<upload_signing_keys::v3::Response> {
    let user_id = req.user_id()?.to_owned();
    let request = &req.body;
    let mut uploads: Vec<(CrossSigningUsage, Value)> = Vec::new();
    for (usage, key) in [
        (CrossSigningUsage::Master, &request.master_key),
        (CrossSigningUsage::SelfSigning, &request.self_signing_key),
        (CrossSigningUsage::UserSigning, &request.user_signing_key),
    ] {
        if let Some(key) = key {
            uploads.push((usage, json(key)?));
        }
    }
    let uploads: Vec<(CrossSigningUsage, &Value)> = uploads.iter().map(|(usage, key)| (*usage, key)).collect();
    if uploads.is_empty() {
        return Ok(RumaResponse(upload_signing_keys::v3::Response::new()));
    }
    // Bad keys are refused before the password is asked for.
    services.keys.check_cross_signing_keys(&user_id, &uploads)?;
    if services.keys.replaces_cross_signing_keys(&user_id, &uploads)? {
        services
            .authenticate_uia(&password_flows(), request.auth.as_ref(), Some(&user_id), req.ip)
            .await?;
    }
    services.keys.upload_cross_signing_keys(&services.rooms, &user_id, &uploads)?;
    Ok(RumaResponse(upload_signing_keys::v3::Response::new()))
}

/// `POST /_matrix/client/v3/keys/signatures/upload`
pub async fn upload_signatures(
    State(services): State<Arc<Services>>,
    req: Ruma<upload_signatures::v3::Request>,
) -> HandlerResult<upload_signatures::v3::Response> {
    let signer = req.user_id()?;
    let mut signed = Vec::new();
    for (user, keys) in &req.body.signed_keys {
        for (key_id, object) in keys.iter() {
            signed.push((user.clone(), key_id.to_owned(), serde_json::from_str::<Value>(object.get())?));
        }
    }
    let failures = services.keys.upload_signatures(&services.rooms, signer, signed)?;
    let mut response = upload_signatures::v3::Response::new();
    for (user, keys) in failures {
        let failures = keys
            .into_iter()
            .map(|(key_id, (errcode, error))| Ok((key_id, serde_json::from_value(json!({ "errcode": errcode, "error": error }))?)))
            .collect::<Result<_>>()?;
        response.failures.insert(user, failures);
    }
    Ok(RumaResponse(response))
}
