//! `/_matrix/identity/v2/pubkey/*`: the key third-party invites are signed with (the server's
//! own signing key), and whether a key is valid: the server's, or the ephemeral key of an
//! invitation still open.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::identity_service::keys::{check_public_key_validity, get_public_key, validate_ephemeral_key};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Error;
use crate::service::Services;

/// `GET /_matrix/identity/v2/pubkey/{keyId}`
pub async fn get_public_key(
    State(services): State<Arc<Services>>,
    req: Ruma<get_public_key::v2::Request>,
) -> HandlerResult<get_public_key::v2::Response> {
    if req.body.key_id.as_str() != services.server_key.key_id() {
        return Err(Error::not_found("No such key"));
    }
    let key = services.server_key.public_key_base64().into();
    Ok(RumaResponse(get_public_key::v2::Response::new(key)))
}

/// `GET /_matrix/identity/v2/pubkey/isvalid`
pub async fn is_valid(
    State(services): State<Arc<Services>>,
    req: Ruma<check_public_key_validity::v2::Request>,
) -> HandlerResult<check_public_key_validity::v2::Response> {
    // Padded or not, as clients differ.
    let valid = req.body.public_key.0.trim_end_matches('=') == services.server_key.public_key_base64();
    Ok(RumaResponse(check_public_key_validity::v2::Response::new(valid)))
}

/// `GET /_matrix/identity/v2/pubkey/ephemeral/isvalid`
pub async fn ephemeral_is_valid(
    State(services): State<Arc<Services>>,
    req: Ruma<validate_ephemeral_key::v2::Request>,
) -> HandlerResult<validate_ephemeral_key::v2::Response> {
    let key = req.body.public_key.0.trim_end_matches('=');
    let valid = services
        .email_invites()?
        .iter()
        .any(|invite| invite.is_open() && invite.ephemeral_public_key == key);
    Ok(RumaResponse(validate_ephemeral_key::v2::Response::new(valid)))
}
