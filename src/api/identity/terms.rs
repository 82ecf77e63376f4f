//! `/_matrix/identity/v2/terms`: the built-in identity service has no terms to accept.

use ruma::api::identity_service::tos::{accept_terms_of_service, get_terms_of_service};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};

/// `GET /_matrix/identity/v2/terms`: no policies.
pub async fn get_terms(_: Ruma<get_terms_of_service::v2::Request>) -> HandlerResult<get_terms_of_service::v2::Response> {
    Ok(RumaResponse(get_terms_of_service::v2::Response::new(Default::default())))
}

/// `POST /_matrix/identity/v2/terms`: nothing to record, as there are no policies.
pub async fn accept_terms(req: Ruma<accept_terms_of_service::v2::Request>) -> HandlerResult<accept_terms_of_service::v2::Response> {
    req.identity_user()?;
    Ok(RumaResponse(accept_terms_of_service::v2::Response::new()))
}
