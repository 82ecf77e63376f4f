//! Dehydrated devices (MSC3814, as Element uses them): a device of the user's that no client
//! runs, kept on the server with its keys so others can send it room keys while the user is
//! offline; a new client downloads it (`device_data`, encrypted by the client), reads the
//! to-device messages it received, and replaces it. One per user: a new one replaces the old.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::dehydrated_device::{delete_dehydrated_device, get_dehydrated_device, get_events, put_dehydrated_device};
use ruma::serde::Raw;

use super::keys::key_values;
use super::rooms::json;
use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::{Error, Result};
use crate::service::Services;

/// To-device messages one `events` call returns at most.
const EVENTS_PER_CALL: usize = 100;

/// `PUT /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device`
pub async fn put(
    State(services): State<Arc<Services>>,
    req: Ruma<put_dehydrated_device::unstable::Request>,
) -> HandlerResult<put_dehydrated_device::unstable::Response> {
    let user = req.user_id()?;
    let request = &req.body;
    if services
        .devices
        .get(user, &request.device_id)?
        .is_some_and(|device| device.dehydrated_data.is_none())
    {
        return Err(Error::invalid_param("A device of yours already has that ID"));
    }
    if let Some(old) = services.devices.dehydrated(user)?
        && old.device_id != request.device_id
    {
        services.delete_devices(user, Some(&[old.device_id]), None)?;
    }
    let (one_time_keys, fallback_keys) = (key_values(&request.one_time_keys)?, key_values(&request.fallback_keys)?);
    let mut batch = services.store.batch();
    services.devices.stage_dehydrated(
        &mut batch,
        user,
        &request.device_id,
        request.initial_device_display_name.clone(),
        json(&request.device_data)?,
    );
    batch.commit()?;
    services.keys.upload(
        &services.rooms,
        user,
        &request.device_id,
        Some(json(&request.device_keys)?),
        one_time_keys,
        fallback_keys,
    )?;
    Ok(RumaResponse(put_dehydrated_device::unstable::Response::new(
        request.device_id.clone(),
    )))
}

/// `GET /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device`
pub async fn get(
    State(services): State<Arc<Services>>,
    req: Ruma<get_dehydrated_device::unstable::Request>,
) -> HandlerResult<get_dehydrated_device::unstable::Response> {
    let device = services
        .devices
        .dehydrated(req.user_id()?)?
        .ok_or_else(|| Error::not_found("No dehydrated device"))?;
    let data = Raw::from_json(serde_json::value::to_raw_value(&device.dehydrated_data)?);
    Ok(RumaResponse(get_dehydrated_device::unstable::Response::new(device.device_id, data)))
}

/// `DELETE /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device`
pub async fn delete(
    State(services): State<Arc<Services>>,
    req: Ruma<delete_dehydrated_device::unstable::Request>,
) -> HandlerResult<delete_dehydrated_device::unstable::Response> {
    let user = req.user_id()?;
    let device = services
        .devices
        .dehydrated(user)?
        .ok_or_else(|| Error::not_found("No dehydrated device"))?;
    services.delete_devices(user, Some(std::slice::from_ref(&device.device_id)), None)?;
    Ok(RumaResponse(delete_dehydrated_device::unstable::Response::new(device.device_id)))
}

/// `POST /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device/{deviceId}/events`:
/// the to-device messages the dehydrated device received, a page at a time; `next_batch`
/// acknowledges (deletes) those of the pages before.
pub async fn events(
    State(services): State<Arc<Services>>,
    req: Ruma<get_events::unstable::Request>,
) -> HandlerResult<get_events::unstable::Response> {
    let user = req.user_id()?;
    let request = &req.body;
    if services
        .devices
        .dehydrated(user)?
        .is_none_or(|device| device.device_id != request.device_id)
    {
        return Err(Error::forbidden("That is not your dehydrated device"));
    }
    let acknowledged = match request.next_batch.as_deref() {
        Some(batch) => Some(batch.parse::<u64>().map_err(|_| Error::invalid_param("Invalid next_batch"))?),
        None => None,
    };
    let visible = services.rooms.stream().visible();
    let messages = services
        .to_device
        .take_positioned(user, &request.device_id, acknowledged, visible, EVENTS_PER_CALL)?;
    let next_batch = messages.last().map(|(position, _)| *position).or(acknowledged);
    let events = messages
        .iter()
        .map(|(_, message)| Ok(Raw::from_json(serde_json::value::to_raw_value(message)?)))
        .collect::<Result<_>>()?;
    let mut response = get_events::unstable::Response::new(events);
    response.next_batch = next_batch.map(|position| position.to_string());
    Ok(RumaResponse(response))
}
