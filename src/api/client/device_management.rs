//! `/devices`: list, show, rename and delete a user's devices (deletion behind UIA).

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::device::{self as spec, delete_device, delete_devices, get_device, get_devices, update_device};
use ruma::api::client::uiaa::{AuthFlow, AuthType};
use ruma::{MilliSecondsSinceUnixEpoch, UInt};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Error;
use crate::service::Services;
use crate::service::devices::Device;

/// The UIA flows of endpoints that re-check the user's password.
pub fn password_flows() -> Vec<AuthFlow> {
    vec![AuthFlow::new(vec![AuthType::Password])]
}

fn to_spec(device: Device) -> spec::Device {
    let mut out = spec::Device::new(device.device_id);
    out.display_name = device.display_name;
    out.last_seen_ip = device.last_seen_ip;
    out.last_seen_ts = device.last_seen_ts.and_then(UInt::new).map(MilliSecondsSinceUnixEpoch);
    out
}

/// `GET /_matrix/client/v3/devices`
pub async fn get_devices(
    State(services): State<Arc<Services>>,
    req: Ruma<get_devices::v3::Request>,
) -> HandlerResult<get_devices::v3::Response> {
    let devices = services.devices.list(req.user_id()?)?.into_iter().map(to_spec).collect();
    Ok(RumaResponse(get_devices::v3::Response::new(devices)))
}

/// `GET /_matrix/client/v3/devices/{deviceId}`
pub async fn get_device(
    State(services): State<Arc<Services>>,
    req: Ruma<get_device::v3::Request>,
) -> HandlerResult<get_device::v3::Response> {
    let device = services
        .devices
        .get(req.user_id()?, &req.body.device_id)?
        .ok_or_else(|| Error::not_found("No such device"))?;
    Ok(RumaResponse(get_device::v3::Response::new(to_spec(device))))
}

/// `PUT /_matrix/client/v3/devices/{deviceId}`
pub async fn update_device(
    State(services): State<Arc<Services>>,
    req: Ruma<update_device::v3::Request>,
) -> HandlerResult<update_device::v3::Response> {
    services
        .devices
        .set_display_name(req.user_id()?, &req.body.device_id, req.body.display_name.clone())?;
    Ok(RumaResponse(update_device::v3::Response::new()))
}

/// `DELETE /_matrix/client/v3/devices/{deviceId}`
pub async fn delete_device(
    State(services): State<Arc<Services>>,
    req: Ruma<delete_device::v3::Request>,
) -> HandlerResult<delete_device::v3::Response> {
    let user_id = req.user_id()?.to_owned();
    if services.devices.get(&user_id, &req.body.device_id)?.is_none() {
        return Err(Error::not_found("No such device"));
    }
    services
        .authenticate_uia(&password_flows(), req.body.auth.as_ref(), Some(&user_id), req.ip)
        .await?;
    services.delete_devices(&user_id, Some(std::slice::from_ref(&req.body.device_id)), None)?;
    Ok(RumaResponse(delete_device::v3::Response::new()))
}

/// `POST /_matrix/client/v3/delete_devices`
pub async fn delete_devices(
    State(services): State<Arc<Services>>,
    req: Ruma<delete_devices::v3::Request>,
) -> HandlerResult<delete_devices::v3::Response> {
    let user_id = req.user_id()?.to_owned();
    services
        .authenticate_uia(&password_flows(), req.body.auth.as_ref(), Some(&user_id), req.ip)
        .await?;
    services.delete_devices(&user_id, Some(&req.body.devices), None)?;
    Ok(RumaResponse(delete_devices::v3::Response::new()))
}
