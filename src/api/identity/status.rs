//! `GET /_matrix/identity/v2`: whether the identity service is up, and its versions.

use ruma::api::identity_service::discovery::{get_server_status, get_supported_versions};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};

/// `GET /_matrix/identity/v2`
pub async fn status(_: Ruma<get_server_status::v2::Request>) -> HandlerResult<get_server_status::v2::Response> {
    Ok(RumaResponse(get_server_status::v2::Response::new()))
}

/// `GET /_matrix/identity/versions`
pub async fn versions(_: Ruma<get_supported_versions::Request>) -> HandlerResult<get_supported_versions::Response> {
    Ok(RumaResponse(get_supported_versions::Response::new(vec!["v1.13".to_owned()])))
}
