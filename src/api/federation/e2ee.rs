//! Encryption keys for other servers: `GET /_matrix/federation/v1/user/devices/{userId}` (a
//! local user's devices with their keys, and cross-signing keys), `POST /user/keys/query` and
//! `POST /user/keys/claim` (what a remote client's `keys/query` and `keys/claim` ask of this
//! server). Only this server's users are answered for.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use ruma::api::federation::device::get_devices;
use ruma::api::federation::keys::{claim_keys, get_keys};
use ruma::{UInt, UserId};

use crate::api::client::rooms::raw;
use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::{Error, Result};
use crate::service::Services;

/// Refuses (404) a user who is not an active user of this server.
fn check_local(services: &Services, user: &UserId) -> Result<()> {
    if user.server_name() != services.config.server_name || services.accounts.get_active(user).is_err() {
        return Err(Error::not_found(format!("{user} is not a user of this server")));
    }
    Ok(())
}

/// `GET /_matrix/federation/v1/user/devices/{userId}`
pub async fn get_devices(
    State(services): State<Arc<Services>>,
    req: Ruma<get_devices::v1::Request>,
) -> HandlerResult<get_devices::v1::Response> {
    let user = &req.body.user_id;
    check_local(&services, user)?;
    let keys = services.local_keys(user, &[], user)?;
    let names: BTreeMap<_, _> = services
        .devices
        .list(user)?
        .into_iter()
        .map(|device| (device.device_id, device.display_name))
        .collect();
    let mut devices = Vec::new();
    for (device_id, device_keys) in &keys.devices {
        let mut device = get_devices::v1::UserDevice::new(device_id.clone(), raw(device_keys)?);
        device.device_display_name = names.get(device_id).cloned().flatten();
        devices.push(device);
    }
    // The stream ID of the last update other servers were sent, which later ones follow.
    let stream_id = UInt::try_from(services.keys.device_list_stream_id(user)?.unwrap_or_default()).unwrap_or_default();
    let mut response = get_devices::v1::Response::new(user.clone(), stream_id);
    response.devices = devices;
    response.master_key = keys.master.as_ref().map(raw).transpose()?;
    response.self_signing_key = keys.self_signing.as_ref().map(raw).transpose()?;
    Ok(RumaResponse(response))
}

/// `POST /_matrix/federation/v1/user/keys/query`
pub async fn get_keys(State(services): State<Arc<Services>>, req: Ruma<get_keys::v1::Request>) -> HandlerResult<get_keys::v1::Response> {
    let mut response = get_keys::v1::Response::new(BTreeMap::new());
    for (user, devices) in &req.body.device_keys {
        if check_local(&services, user).is_err() {
            continue;
        }
        let keys = services.local_keys(user, devices, user)?;
        let devices = keys
            .devices
            .iter()
            .map(|(device, keys)| Ok((device.clone(), raw(keys)?)))
            .collect::<Result<_>>()?;
        response.device_keys.insert(user.clone(), devices);
        if let Some(master) = &keys.master {
            response.master_keys.insert(user.clone(), raw(master)?);
        }
        if let Some(self_signing) = &keys.self_signing {
            response.self_signing_keys.insert(user.clone(), raw(self_signing)?);
        }
    }
    Ok(RumaResponse(response))
}

/// `POST /_matrix/federation/v1/user/keys/claim`
pub async fn claim_keys(
    State(services): State<Arc<Services>>,
    req: Ruma<claim_keys::v1::Request>,
) -> HandlerResult<claim_keys::v1::Response> {
    let local = req
        .body
        .one_time_keys
        .iter()
        .filter(|(user, _)| check_local(&services, user).is_ok())
        .map(|(user, devices)| (user.clone(), devices.clone()))
        .collect();
    Ok(RumaResponse(claim_keys::v1::Response::new(services.keys.claim(&local)?)))
}
