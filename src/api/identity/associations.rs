//! `/_matrix/identity/v2/validate/email/*`: confirming an address with the identity service
//! before publishing it (Element's "Discovery" settings), by a mailed link or by submitting
//! its token. Publishing itself is the homeserver's `/account/3pid/bind`.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::identity_service::association::email::{create_email_validation_session, validate_email, validate_email_by_end_user};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::service::Services;
use crate::service::threepids::Purpose;

email_token_handler!(
    /// `POST /_matrix/identity/v2/validate/email/requestToken`
    request_token,
    create_email_validation_session::v2,
    Purpose::Discovery,
    |req| req.identity_user()?
);

/// `POST /_matrix/identity/v2/validate/email/submitToken`
pub async fn submit_token(
    State(services): State<Arc<Services>>,
    req: Ruma<validate_email::v2::Request>,
) -> HandlerResult<validate_email::v2::Response> {
    req.identity_user()?;
    let body = &req.body;
    let confirmed = services
        .threepids
        .confirm(body.sid.as_str(), body.client_secret.as_str(), &body.token);
    Ok(RumaResponse(validate_email::v2::Response::new(confirmed.is_ok())))
}

/// `GET /_matrix/identity/v2/validate/email/submitToken`
pub async fn submit_token_by_link(
    State(services): State<Arc<Services>>,
    req: Ruma<validate_email_by_end_user::v2::Request>,
) -> HandlerResult<validate_email_by_end_user::v2::Response> {
    let body = &req.body;
    services
        .threepids
        .confirm(body.sid.as_str(), body.client_secret.as_str(), &body.token)?;
    Ok(RumaResponse(validate_email_by_end_user::v2::Response::new()))
}
