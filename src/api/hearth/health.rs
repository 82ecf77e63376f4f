//! Health checks for process supervisors and Kubernetes probes: `/_hearth/health/live` answers
//! while the process serves requests; `/_hearth/health/ready` only while the store answers too.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use crate::service::Services;

/// `GET /_hearth/health/live`
pub async fn live() -> Response {
    Json(json!({ "status": "live" })).into_response()
}

/// `GET /_hearth/health/ready`
pub async fn ready(State(services): State<Arc<Services>>) -> Response {
    match services.check_ready() {
        Ok(_) => Json(json!({ "status": "ready" })).into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "error": error.to_string() })),
        )
            .into_response(),
    }
}
