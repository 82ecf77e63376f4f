//! `PUT /sendToDevice/{eventType}/{txnId}`: messages to devices of local users (one device, or
//! `*` for all of them); idempotent per transaction.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::to_device::send_event_to_device;
use ruma::to_device::DeviceIdOrAllDevices;
use serde_json::Value;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Error;
use crate::service::Services;

/// `PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}`
pub async fn send_event_to_device(
    State(services): State<Arc<Services>>,
    req: Ruma<send_event_to_device::v3::Request>,
) -> HandlerResult<send_event_to_device::v3::Response> {
    let session = req.session()?;
    let request = &req.body;
    let mut deliveries = Vec::new();
    for (user, devices) in &request.messages {
        if user.server_name() != services.config.server_name {
            return Err(Error::forbidden(
                "Users of other servers cannot be reached: federation is not available yet",
            ));
        }
        for (target, content) in devices {
            let content: Value = serde_json::from_str(content.json().get())?;
            match target {
                DeviceIdOrAllDevices::DeviceId(device) => deliveries.push((&**user, device.clone(), content)),
                DeviceIdOrAllDevices::AllDevices => {
                    for device in services.devices.list(user)? {
                        deliveries.push((&**user, device.device_id, content.clone()));
                    }
                }
            }
        }
    }
    services.to_device.send(
        &session.user_id,
        &session.device_id,
        request.txn_id.as_str(),
        &request.event_type.to_string(),
        deliveries,
    )?;
    Ok(RumaResponse(send_event_to_device::v3::Response::new()))
}
