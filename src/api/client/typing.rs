//! `PUT /rooms/{roomId}/typing/{userId}`: typing notifications, which lapse after their timeout
//! (30 s when a client leaves it out, as Synapse does).

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::typing::create_typing_event::{self, v3::Typing};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::service::Services;

/// The timeout of a typing notification that names none.
const DEFAULT_TIMEOUT_MS: u64 = 30_000;

/// Gives `{"typing": true}` without a `timeout` the default one, since the spec makes it
/// optional and ruma's request type wants it; anything else passes unchanged.
pub async fn default_timeout(request: axum::extract::Request) -> axum::extract::Request {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return axum::extract::Request::from_parts(parts, axum::body::Body::empty());
    };
    let filled = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(mut value) if value.get("typing") == Some(&serde_json::Value::Bool(true)) && value.get("timeout").is_none() => {
            value["timeout"] = DEFAULT_TIMEOUT_MS.into();
            axum::body::Body::from(value.to_string())
        }
        _ => axum::body::Body::from(bytes),
    };
    axum::extract::Request::from_parts(parts, filled)
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}`
pub async fn create_typing_event(
    State(services): State<Arc<Services>>,
    req: Ruma<create_typing_event::v3::Request>,
) -> HandlerResult<create_typing_event::v3::Response> {
    let request = &req.body;
    req.require_owner(&request.user_id, "You can only say whether you are typing")?;
    services.rooms.check_joined(&request.room_id, &request.user_id)?;
    let timeout = match &request.state {
        Typing::Yes(info) => Some(info.timeout),
        _ => None,
    };
    services.set_typing(&request.room_id, &request.user_id, timeout)?;
    Ok(RumaResponse(create_typing_event::v3::Response::new()))
}
