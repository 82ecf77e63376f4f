//! End-to-end encryption keys (`/keys/upload`, `/keys/query`, `/keys/claim`, `/keys/changes`):
//! devices publish their identity, one-time and fallback keys, and clients fetch each other's
//! to start encrypted sessions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::keys::{claim_keys, get_key_changes, get_keys, upload_keys};
use ruma::{OwnedUserId, UserId};
use serde_json::{Value, json};

use super::rooms::{json, raw};
use super::sync::parse_since;
use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Result;
use crate::service::Services;
use crate::service::keys::CrossSigningUsage;

/// What `failures` says for users of another server (federation is not there yet).
fn unreachable_server() -> Value {
    json!({ "status": 503, "message": "Users of other servers cannot be reached: federation is not available yet" })
}

/// `POST /_matrix/client/v3/keys/upload`
pub async fn upload_keys(
    State(services): State<Arc<Services>>,
    req: Ruma<upload_keys::v3::Request>,
) -> HandlerResult<upload_keys::v3::Response> {
    let session = req.session()?;
    let request = &req.body;
    let device_keys = request.device_keys.as_ref().map(json).transpose()?;
    let one_time_keys = request
        .one_time_keys
        .iter()
        .map(|(id, key)| Ok((id.clone(), json(key)?)))
        .collect::<Result<BTreeMap<_, _>>>()?;
    let fallback_keys = request
        .fallback_keys
        .iter()
        .map(|(id, key)| Ok((id.clone(), json(key)?)))
        .collect::<Result<BTreeMap<_, _>>>()?;
    services.keys.upload(
        &services.rooms,
        &session.user_id,
        &session.device_id,
        device_keys,
        one_time_keys,
        fallback_keys,
    )?;
    let counts = services.keys.one_time_key_counts(&session.user_id, &session.device_id)?;
    Ok(RumaResponse(upload_keys::v3::Response::new(counts)))
}

/// `POST /_matrix/client/v3/keys/query`
pub async fn get_keys(State(services): State<Arc<Services>>, req: Ruma<get_keys::v3::Request>) -> HandlerResult<get_keys::v3::Response> {
    let viewer = req.user_id()?;
    let mut response = get_keys::v3::Response::new();
    for (user, devices) in &req.body.device_keys {
        if user.server_name() != services.config.server_name {
            response.failures.insert(user.server_name().to_string(), unreachable_server());
            continue;
        }
        let names: HashMap<_, _> = services
            .devices
            .list(user)?
            .into_iter()
            .map(|device| (device.device_id, device.display_name))
            .collect();
        let keys = services.keys.device_keys(user, viewer, devices, &names)?;
        let keys = keys
            .iter()
            .map(|(device, keys)| Ok((device.clone(), raw(keys)?)))
            .collect::<Result<_>>()?;
        response.device_keys.insert(user.clone(), keys);
        if let Some(master) = services.keys.cross_signing_key(user, CrossSigningUsage::Master, viewer)? {
            response.master_keys.insert(user.clone(), raw(&master)?);
        }
        if let Some(self_signing) = services.keys.cross_signing_key(user, CrossSigningUsage::SelfSigning, viewer)? {
            response.self_signing_keys.insert(user.clone(), raw(&self_signing)?);
        }
        // A user-signing key is only ever shown to its owner.
        if user == viewer
            && let Some(user_signing) = services.keys.cross_signing_key(user, CrossSigningUsage::UserSigning, viewer)?
        {
            response.user_signing_keys.insert(user.clone(), raw(&user_signing)?);
        }
    }
    Ok(RumaResponse(response))
}

/// `POST /_matrix/client/v3/keys/claim`
pub async fn claim_keys(
    State(services): State<Arc<Services>>,
    req: Ruma<claim_keys::v3::Request>,
) -> HandlerResult<claim_keys::v3::Response> {
    let mut failures = BTreeMap::new();
    let mut local = BTreeMap::new();
    for (user, devices) in &req.body.one_time_keys {
        if user.server_name() == services.config.server_name {
            local.insert(user.clone(), devices.clone());
        } else {
            failures.insert(user.server_name().to_string(), unreachable_server());
        }
    }
    let mut response = claim_keys::v3::Response::new(services.keys.claim(&local)?);
    response.failures = failures;
    Ok(RumaResponse(response))
}

/// `GET /_matrix/client/v3/keys/changes`
pub async fn get_key_changes(
    State(services): State<Arc<Services>>,
    req: Ruma<get_key_changes::v3::Request>,
) -> HandlerResult<get_key_changes::v3::Response> {
    let viewer: &UserId = req.user_id()?;
    let visible = services.rooms.stream().visible();
    let from = parse_since(&req.body.from, visible)?;
    let to = parse_since(&req.body.to, visible)?;
    let updates = services.keys.device_list_updates(&services.rooms, viewer, from, to.max(from))?;
    let changed: Vec<OwnedUserId> = updates.changed.into_iter().collect();
    let left: Vec<OwnedUserId> = updates.left.into_iter().collect();
    Ok(RumaResponse(get_key_changes::v3::Response::new(changed, left)))
}
