//! `PUT /rooms/{roomId}/state/{eventType}/{stateKey}`: state events (name, topic, power levels, …).

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::state::send_state_event;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse, appservice_timestamp};
use crate::service::Services;
use crate::service::rooms::NewEvent;

/// `PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}`
pub async fn send_state_event(
    State(services): State<Arc<Services>>,
    req: Ruma<send_state_event::v3::Request>,
) -> HandlerResult<send_state_event::v3::Response> {
    let session = req.session()?;
    services.accounts.check_not_suspended(&session.user_id)?;
    services.rate_limits.check_message(session)?;
    let request = &req.body;
    let content = serde_json::from_str(request.body.json().get())?;
    let mut event = NewEvent::state(request.event_type.clone(), &request.state_key, content);
    event.timestamp = appservice_timestamp(session, request.timestamp);
    let event_id = services.send_event(&request.room_id, req.user_id()?, event).await?;
    Ok(RumaResponse(send_state_event::v3::Response::new(event_id)))
}
