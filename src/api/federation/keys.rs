//! `GET /_matrix/key/v2/server`: the server's signing key, self-signed.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::federation::discovery::get_server_keys;
use ruma::serde::Raw;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Error;
use crate::service::Services;

/// `GET /_matrix/key/v2/server`
pub async fn get_server_keys(
    State(services): State<Arc<Services>>,
    _: Ruma<get_server_keys::v2::Request>,
) -> HandlerResult<get_server_keys::v2::Response> {
    let document = services.server_key.signed_key_document(&services.config.server_name)?;
    let raw = serde_json::value::to_raw_value(&document).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(RumaResponse(get_server_keys::v2::Response::new(Raw::from_json(raw))))
}
