//! End-to-end encryption keys (`/keys/upload`, `/keys/query`, `/keys/claim`, `/keys/changes`):
//! devices publish their identity, one-time and fallback keys, and clients fetch each other's
//! to start encrypted sessions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use ruma::api::client::keys::{claim_keys, get_key_changes, get_keys, upload_keys};
use ruma::api::federation::keys as federation_keys;
use ruma::encryption::OneTimeKey;
use ruma::events::room::member::MembershipState;
use ruma::serde::Raw;
use ruma::{OwnedDeviceId, OwnedOneTimeKeyId, OwnedServerName, OwnedUserId, UserId};
use serde_json::{Value, json};

use super::rooms::{json, raw};
use super::sync::parse_since;
use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Result;
use crate::service::Services;
use crate::service::keys::CrossSigningUsage;

/// The longest a server may take to answer a key query or claim (a client's shorter
/// `timeout` wins); a slower one lands in `failures`.
const REMOTE_TIMEOUT: Duration = Duration::from_secs(10);

/// What `failures` says for a server that could not be asked or did not answer.
fn failure(error: &crate::error::Error) -> Value {
    json!({ "status": error.status_and_body().0.as_u16(), "message": error.to_string() })
}

/// The timeout for other servers: the client's, at most [`REMOTE_TIMEOUT`].
fn remote_timeout(requested: Option<Duration>) -> Duration {
    requested.unwrap_or(REMOTE_TIMEOUT).min(REMOTE_TIMEOUT)
}

/// Uploaded one-time or fallback keys as JSON values.
pub fn key_values(keys: &BTreeMap<OwnedOneTimeKeyId, Raw<OneTimeKey>>) -> Result<BTreeMap<OwnedOneTimeKeyId, Value>> {
    keys.iter().map(|(id, key)| Ok((id.clone(), json(key)?))).collect()
}

/// `POST /_matrix/client/v3/keys/upload`
pub async fn upload_keys(
    State(services): State<Arc<Services>>,
    req: Ruma<upload_keys::v3::Request>,
) -> HandlerResult<upload_keys::v3::Response> {
    let session = req.session()?;
    let request = &req.body;
    let device_keys = request.device_keys.as_ref().map(json).transpose()?;
    let one_time_keys = key_values(&request.one_time_keys)?;
    let fallback_keys = key_values(&request.fallback_keys)?;
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

/// `POST /_matrix/client/v3/keys/query`: this server's users from the store, other servers'
/// from the cached device lists of those who share a room with a local user, the rest asked
/// of their servers all at once (`user/keys/query`); the signatures the viewer made over other
/// servers' users' master keys are added.
pub async fn get_keys(State(services): State<Arc<Services>>, req: Ruma<get_keys::v3::Request>) -> HandlerResult<get_keys::v3::Response> {
    let viewer = req.user_id()?;
    let mut response = get_keys::v3::Response::new();
    let mut remote: BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>> = BTreeMap::new();
    for (user, devices) in &req.body.device_keys {
        if user.server_name() != services.config.server_name {
            if let Some(list) = services.cached_device_list(user)? {
                let wanted = list
                    .devices
                    .iter()
                    .filter(|(device, _)| devices.is_empty() || devices.contains(device))
                    .map(|(device, keys)| Ok((device.clone(), raw(keys)?)))
                    .collect::<Result<_>>()?;
                response.device_keys.insert(user.clone(), wanted);
                if let Some(master) = list.master_key {
                    let master = services.keys.with_signatures_of(master, user, viewer)?;
                    response.master_keys.insert(user.clone(), raw(&master)?);
                }
                if let Some(self_signing) = &list.self_signing_key {
                    response.self_signing_keys.insert(user.clone(), raw(self_signing)?);
                }
                continue;
            }
            if !services.rooms.rooms_of_user(user, &MembershipState::Join)?.is_empty() {
                // Kept current from their server's updates from now on.
                services.resync_device_list(user);
            }
            remote
                .entry(user.server_name().to_owned())
                .or_default()
                .insert(user.clone(), devices.clone());
            continue;
        }
        let local = services.local_keys(user, devices, viewer)?;
        let devices = local
            .devices
            .iter()
            .map(|(device, keys)| Ok((device.clone(), raw(keys)?)))
            .collect::<Result<_>>()?;
        response.device_keys.insert(user.clone(), devices);
        if let Some(master) = local.master {
            response.master_keys.insert(user.clone(), raw(&master)?);
        }
        if let Some(self_signing) = local.self_signing {
            response.self_signing_keys.insert(user.clone(), raw(&self_signing)?);
        }
        // A user-signing key is only ever shown to its owner.
        if user == viewer
            && let Some(user_signing) = services.keys.cross_signing_key(user, CrossSigningUsage::UserSigning, viewer)?
        {
            response.user_signing_keys.insert(user.clone(), raw(&user_signing)?);
        }
    }
    let requests = remote
        .into_iter()
        .map(|(server, users)| (server, federation_keys::get_keys::v1::Request::new(users)))
        .collect();
    for (server, answer) in services.federation.send_to_each(requests, remote_timeout(req.body.timeout)).await {
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                response.failures.insert(server.to_string(), failure(&error));
                continue;
            }
        };
        for (user, devices) in answer.device_keys.into_iter().filter(|(user, _)| user.server_name() == server) {
            response.device_keys.insert(user, devices);
        }
        for (user, master) in answer.master_keys.into_iter().filter(|(user, _)| user.server_name() == server) {
            let master = services.keys.with_signatures_of(json(&master)?, &user, viewer)?;
            response.master_keys.insert(user, raw(&master)?);
        }
        for (user, self_signing) in answer
            .self_signing_keys
            .into_iter()
            .filter(|(user, _)| user.server_name() == server)
        {
            response.self_signing_keys.insert(user, self_signing);
        }
    }
    Ok(RumaResponse(response))
}

/// `POST /_matrix/client/v3/keys/claim`: this server's users' keys from the store, other
/// servers' claimed from them all at once (`user/keys/claim`).
pub async fn claim_keys(
    State(services): State<Arc<Services>>,
    req: Ruma<claim_keys::v3::Request>,
) -> HandlerResult<claim_keys::v3::Response> {
    let mut local = BTreeMap::new();
    let mut remote: BTreeMap<OwnedServerName, BTreeMap<_, _>> = BTreeMap::new();
    for (user, devices) in &req.body.one_time_keys {
        if user.server_name() == services.config.server_name {
            local.insert(user.clone(), devices.clone());
        } else {
            remote
                .entry(user.server_name().to_owned())
                .or_default()
                .insert(user.clone(), devices.clone());
        }
    }
    let mut response = claim_keys::v3::Response::new(services.keys.claim(&local)?);
    let requests = remote
        .into_iter()
        .map(|(server, claims)| (server, federation_keys::claim_keys::v1::Request::new(claims)))
        .collect();
    for (server, answer) in services.federation.send_to_each(requests, remote_timeout(req.body.timeout)).await {
        match answer {
            Ok(answer) => response
                .one_time_keys
                .extend(answer.one_time_keys.into_iter().filter(|(user, _)| user.server_name() == server)),
            Err(error) => {
                response.failures.insert(server.to_string(), failure(&error));
            }
        }
    }
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
