//! `POST /rooms/{roomId}/read_markers`: the fully-read marker (room account data
//! `m.fully_read`) and the read receipts, in one request.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::read_marker::set_read_marker;
use serde_json::json;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Error;
use crate::service::Services;

/// `POST /_matrix/client/v3/rooms/{roomId}/read_markers`
pub async fn set_read_marker(
    State(services): State<Arc<Services>>,
    req: Ruma<set_read_marker::v3::Request>,
) -> HandlerResult<set_read_marker::v3::Response> {
    let user = req.user_id()?;
    let request = &req.body;
    services.rooms.check_joined(&request.room_id, user)?;
    if let Some(event_id) = &request.fully_read {
        if services
            .rooms
            .stored_event(event_id)?
            .is_none_or(|stored| stored.meta.room_id != request.room_id)
        {
            return Err(Error::not_found("The event is not in this room"));
        }
        let content = serde_json::value::to_raw_value(&json!({ "event_id": event_id }))?;
        services.account_data.set(user, Some(&request.room_id), "m.fully_read", &content)?;
    }
    for (receipt_type, event_id) in [("m.read", &request.read_receipt), ("m.read.private", &request.private_read_receipt)] {
        if let Some(event_id) = event_id {
            services.rooms.set_receipt(&request.room_id, user, receipt_type, event_id, "")?;
        }
    }
    Ok(RumaResponse(set_read_marker::v3::Response::new()))
}
