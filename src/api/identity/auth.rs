//! `/_matrix/identity/v2/account*`: an account of the identity service, opened with an OpenID
//! token that this server issued to one of its users (checked here, not over federation).

use std::sync::Arc;

use axum::extract::State;
use ruma::api::identity_service::authentication::{get_account_information, logout, register};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Error;
use crate::service::Services;

/// `POST /_matrix/identity/v2/account/register`
pub async fn register(State(services): State<Arc<Services>>, req: Ruma<register::v2::Request>) -> HandlerResult<register::v2::Response> {
    if req.body.matrix_server_name != services.config.server_name {
        return Err(Error::forbidden(
            "This identity service serves the users of its own homeserver only",
        ));
    }
    let user_id = services
        .openid
        .user_of(&req.body.access_token)
        .map_err(|_| Error::unknown_token("The OpenID token is unknown or expired"))?;
    let token = services.identity.register(&user_id)?;
    Ok(RumaResponse(register::v2::Response::new(token)))
}

/// `GET /_matrix/identity/v2/account`
pub async fn account(req: Ruma<get_account_information::v2::Request>) -> HandlerResult<get_account_information::v2::Response> {
    Ok(RumaResponse(get_account_information::v2::Response::new(
        req.identity_user()?.to_owned(),
    )))
}

/// `POST /_matrix/identity/v2/account/logout`
pub async fn logout(State(services): State<Arc<Services>>, req: Ruma<logout::v2::Request>) -> HandlerResult<logout::v2::Response> {
    let identity = req
        .identity
        .as_ref()
        .ok_or_else(|| Error::missing_token("Missing identity server access token"))?;
    services.identity.logout(&identity.token)?;
    Ok(RumaResponse(logout::v2::Response::new()))
}
