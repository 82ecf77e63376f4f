//! `/user/{userId}/account_data/{type}` and `/user/{userId}/rooms/{roomId}/account_data/{type}`.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::config::{get_global_account_data, get_room_account_data, set_global_account_data, set_room_account_data};
use ruma::serde::Raw;
use ruma::{RoomId, UserId};
use serde_json::value::RawValue;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::{Error, Result};
use crate::service::Services;

/// The refusal for another user's account data.
const OTHERS_DATA: &str = "You cannot access another user's account data";

fn get(services: &Services, user_id: &UserId, room_id: Option<&RoomId>, event_type: &str) -> Result<Box<RawValue>> {
    services
        .account_data
        .get(user_id, room_id, event_type)?
        .ok_or_else(|| Error::not_found("No account data of that type"))
}

fn set(services: &Services, user_id: &UserId, room_id: Option<&RoomId>, event_type: &str, content: &RawValue) -> Result<()> {
    // The server manages these types itself.
    let managed = if room_id.is_some() { "m.fully_read" } else { "m.push_rules" };
    if event_type == managed {
        return Err(Error::Matrix {
            status: http::StatusCode::METHOD_NOT_ALLOWED,
            errcode: "M_BAD_JSON",
            message: format!("Cannot set {managed} through the account data API"),
        });
    }
    if !content.get().trim_start().starts_with('{') {
        return Err(Error::bad_json("Account data must be a JSON object"));
    }
    services.account_data.set(user_id, room_id, event_type, content)
}

/// `GET /_matrix/client/v3/user/{userId}/account_data/{type}`
pub async fn get_global(
    State(services): State<Arc<Services>>,
    req: Ruma<get_global_account_data::v3::Request>,
) -> HandlerResult<get_global_account_data::v3::Response> {
    req.require_owner(&req.body.user_id, OTHERS_DATA)?;
    let content = get(&services, &req.body.user_id, None, &req.body.event_type.to_string())?;
    Ok(RumaResponse(get_global_account_data::v3::Response::new(Raw::from_json(content))))
}

/// `PUT /_matrix/client/v3/user/{userId}/account_data/{type}`
pub async fn set_global(
    State(services): State<Arc<Services>>,
    req: Ruma<set_global_account_data::v3::Request>,
) -> HandlerResult<set_global_account_data::v3::Response> {
    req.require_owner(&req.body.user_id, OTHERS_DATA)?;
    set(
        &services,
        &req.body.user_id,
        None,
        &req.body.event_type.to_string(),
        req.body.data.json(),
    )?;
    Ok(RumaResponse(set_global_account_data::v3::Response::new()))
}

/// `GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}`
pub async fn get_room(
    State(services): State<Arc<Services>>,
    req: Ruma<get_room_account_data::v3::Request>,
) -> HandlerResult<get_room_account_data::v3::Response> {
    req.require_owner(&req.body.user_id, OTHERS_DATA)?;
    let content = get(
        &services,
        &req.body.user_id,
        Some(&req.body.room_id),
        &req.body.event_type.to_string(),
    )?;
    Ok(RumaResponse(get_room_account_data::v3::Response::new(Raw::from_json(content))))
}

/// `PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}`
pub async fn set_room(
    State(services): State<Arc<Services>>,
    req: Ruma<set_room_account_data::v3::Request>,
) -> HandlerResult<set_room_account_data::v3::Response> {
    req.require_owner(&req.body.user_id, OTHERS_DATA)?;
    set(
        &services,
        &req.body.user_id,
        Some(&req.body.room_id),
        &req.body.event_type.to_string(),
        req.body.data.json(),
    )?;
    Ok(RumaResponse(set_room_account_data::v3::Response::new()))
}
