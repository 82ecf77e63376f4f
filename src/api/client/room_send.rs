//! `PUT /rooms/{roomId}/send/{eventType}/{txnId}`: messages, idempotent per device and
//! transaction ID.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::message::send_message_event;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse, appservice_timestamp};
use crate::service::Services;
use crate::service::rooms::{NewEvent, Transaction};

/// `PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}`
pub async fn send_message_event(
    State(services): State<Arc<Services>>,
    req: Ruma<send_message_event::v3::Request>,
) -> HandlerResult<send_message_event::v3::Response> {
    let session = req.session()?;
    services.accounts.check_not_suspended(&session.user_id)?;
    services.rate_limits.check_message(session)?;
    let request = &req.body;
    let event = NewEvent {
        kind: request.event_type.to_string().into(),
        content: serde_json::from_str(request.body.json().get())?,
        state_key: None,
        redacts: None,
        transaction: Some(Transaction {
            device_id: session.device_id.clone(),
            txn_id: request.txn_id.to_string(),
        }),
        timestamp: appservice_timestamp(session, request.timestamp),
    };
    let event_id = services.send_event(&request.room_id, &session.user_id, event).await?;
    Ok(RumaResponse(send_message_event::v3::Response::new(event_id)))
}
