//! `/.well-known/matrix/client` and `/.well-known/matrix/server`: delegation, as configured.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::service::Services;

/// `GET /.well-known/matrix/client`
pub async fn client(State(services): State<Arc<Services>>) -> Result<Json<Value>> {
    let base_url = services
        .config
        .client_base_url()
        .ok_or_else(|| Error::not_found("No client discovery is configured"))?;
    Ok(Json(json!({ "m.homeserver": { "base_url": base_url } })))
}

/// `GET /.well-known/matrix/server`
pub async fn server(State(services): State<Arc<Services>>) -> Result<Json<Value>> {
    let server = services
        .config
        .well_known
        .server
        .as_deref()
        .ok_or_else(|| Error::not_found("No server delegation is configured"))?;
    Ok(Json(json!({ "m.server": server })))
}
