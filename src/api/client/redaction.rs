//! `PUT /rooms/{roomId}/redact/{eventId}/{txnId}`: anyone may redact their own events; others'
//! need the room's `redact` power level.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::redact::redact_event;
use ruma::events::TimelineEventType;
use serde_json::json;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Error;
use crate::service::Services;
use crate::service::rooms::{NewEvent, Transaction, rules};

/// `PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}`
pub async fn redact_event(
    State(services): State<Arc<Services>>,
    req: Ruma<redact_event::v3::Request>,
) -> HandlerResult<redact_event::v3::Response> {
    let session = req.session()?;
    services.rate_limits.check_message(session)?;
    let request = &req.body;
    let room = services.rooms.room(&request.room_id)?;
    let target = services
        .rooms
        .pdu(&request.event_id)?
        .filter(|pdu| pdu.room_id == request.room_id)
        .ok_or_else(|| Error::not_found("Event not found"))?;
    if target.sender != session.user_id {
        let state = services.rooms.states.load(room.state)?;
        if !services
            .rooms
            .power_levels(&room.version, &state)?
            .user_can_redact_event_of_other(&session.user_id)
        {
            return Err(Error::forbidden("You may not redact other users' events in this room"));
        }
    }
    let mut content = json!({});
    if let Some(reason) = &request.reason {
        content["reason"] = json!(reason);
    }
    // Room version 11 moved `redacts` into the content; older versions keep it at the top level.
    let in_content = rules(&room.version)?.redaction.content_field_redacts;
    if in_content {
        content["redacts"] = json!(request.event_id);
    }
    let event = NewEvent {
        kind: TimelineEventType::RoomRedaction,
        content,
        state_key: None,
        redacts: (!in_content).then(|| request.event_id.clone()),
        transaction: Some(Transaction {
            device_id: session.device_id.clone(),
            txn_id: request.txn_id.to_string(),
        }),
        timestamp: None,
    };
    let event_id = services.send_event(&request.room_id, &session.user_id, event).await?;
    Ok(RumaResponse(redact_event::v3::Response::new(event_id)))
}
