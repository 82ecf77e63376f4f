//! `POST /user/{userId}/openid/request_token`: a token a third party (a widget, an identity
//! server) can check with this server to learn who the user is.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::account::request_openid_token;
use ruma::authentication::TokenType;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::service::Services;
use crate::service::openid::TOKEN_LIFETIME;

/// `POST /_matrix/client/v3/user/{userId}/openid/request_token`
pub async fn request_openid_token(
    State(services): State<Arc<Services>>,
    req: Ruma<request_openid_token::v3::Request>,
) -> HandlerResult<request_openid_token::v3::Response> {
    req.require_owner(&req.body.user_id, "You can only request OpenID tokens for yourself")?;
    let token = services.openid.issue(&req.body.user_id)?;
    Ok(RumaResponse(request_openid_token::v3::Response::new(
        token,
        TokenType::Bearer,
        services.config.server_name.clone(),
        TOKEN_LIFETIME,
    )))
}
