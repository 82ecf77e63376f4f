//! `/.well-known/matrix/client` and `/.well-known/matrix/server`: delegation, as configured (the
//! client's names this server's built-in identity service too);
//! `/.well-known/matrix/support`: whom to contact about the server, as configured.

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
    let mut answer = json!({ "m.homeserver": { "base_url": base_url } });
    // The identity service is built in, where links in mails can point (public_baseurl).
    if let Some(public_baseurl) = &services.config.public_baseurl {
        answer["m.identity_server"] = json!({ "base_url": public_baseurl });
    }
    Ok(Json(answer))
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

/// `GET /.well-known/matrix/support`: 404 while neither a support page nor contacts are set.
pub async fn support(State(services): State<Arc<Services>>) -> Result<Json<Value>> {
    let well_known = &services.config.well_known;
    if well_known.support_page.is_none() && well_known.support_contacts.is_empty() {
        return Err(Error::not_found("No support information is configured"));
    }
    let mut answer = json!({ "contacts": well_known.support_contacts });
    if let Some(page) = &well_known.support_page {
        answer["support_page"] = json!(page);
    }
    Ok(Json(answer))
}
