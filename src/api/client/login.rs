//! Logging in: `GET/POST /login` with a password (`m.login.password` with `m.id.user`, the
//! bare deprecated `user` field, or `m.id.thirdparty` with an email address of the account)
//! or a one-time token (`m.login.token`, from `POST /login/get_token` on a logged-in device,
//! behind user-interactive authentication), and `POST /refresh` for clients that asked for a
//! refresh token (see [`crate::service::devices`]).

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::session::{get_login_token, get_login_types, login, refresh_token};
use ruma::api::client::uiaa::UserIdentifier;

use super::device_management::password_flows;
use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Error;
use crate::service::Services;
use crate::service::devices::LOGIN_TOKEN_LIFETIME;
use crate::service::registration::LoginRequest;
use crate::service::threepids::normalize_email;

/// `GET /_matrix/client/v3/login`
pub async fn get_login_types(_: Ruma<get_login_types::v3::Request>) -> HandlerResult<get_login_types::v3::Response> {
    let password = get_login_types::v3::LoginType::Password(Default::default());
    let mut token = get_login_types::v3::TokenLoginType::new();
    token.get_login_token = true;
    let token = get_login_types::v3::LoginType::Token(token);
    let appservice = get_login_types::v3::LoginType::ApplicationService(Default::default());
    Ok(RumaResponse(get_login_types::v3::Response::new(vec![password, token, appservice])))
}

/// `POST /_matrix/client/v3/login`
pub async fn login(State(services): State<Arc<Services>>, req: Ruma<login::v3::Request>) -> HandlerResult<login::v3::Response> {
    let ip = req.ip.to_string();
    let request = LoginRequest {
        device_id: req.body.device_id.clone(),
        display_name: req.body.initial_device_display_name.clone(),
        ip: Some(&ip),
        refreshable: req.body.refresh_token,
    };
    let (user_id, grant) = match &req.body.login_info {
        login::v3::LoginInfo::Password(info) => {
            #[allow(deprecated)]
            let name = match (&info.identifier, &info.user) {
                (Some(UserIdentifier::Matrix(id)), _) => id.user.clone(),
                (None, Some(user)) => user.clone(),
                (Some(UserIdentifier::Email(email)), _) => {
                    let address = normalize_email(&email.address).map_err(|_| Error::forbidden("Invalid username or password"))?;
                    match services.threepids.owner(&address)? {
                        Some(owner) => owner.user_id.to_string(),
                        None => return Err(Error::forbidden("Invalid username or password")),
                    }
                }
                (Some(_), _) => return Err(Error::forbidden("Only m.id.user and email identifiers are supported")),
                (None, None) => return Err(Error::bad_json("Missing identifier")),
            };
            services.login_with_password(&name, info.password.clone(), request, req.ip).await?
        }
        login::v3::LoginInfo::Token(token) => services.login_with_token(&token.token, request, req.ip)?,
        login::v3::LoginInfo::ApplicationService(info) => {
            let appservice = req
                .session
                .as_ref()
                .and_then(|session| session.appservice.as_ref())
                .ok_or_else(|| Error::missing_token("m.login.application_service needs an appservice's as_token"))?;
            #[allow(deprecated)]
            let name = match (&info.identifier, &info.user) {
                (Some(UserIdentifier::Matrix(id)), _) => id.user.clone(),
                (None, Some(user)) => user.clone(),
                _ => return Err(Error::bad_json("m.login.application_service needs an m.id.user identifier")),
            };
            let user_id = services.accounts.parse_login_name(&name)?;
            if !appservice.claims_user(&user_id) {
                return Err(Error::exclusive("That user is not in the appservice's namespace"));
            }
            services.login_appservice_user(&user_id, request)?
        }
        _ => {
            return Err(Error::bad_request(
                "Only m.login.password, m.login.token and m.login.application_service are supported",
            ));
        }
    };
    let mut response = login::v3::Response::new(user_id, grant.access_token, grant.device_id);
    response.refresh_token = grant.refresh_token;
    response.expires_in = grant.expires_in;
    Ok(RumaResponse(response))
}

/// `POST /_matrix/client/v3/refresh`
pub async fn refresh(
    State(services): State<Arc<Services>>,
    req: Ruma<refresh_token::v3::Request>,
) -> HandlerResult<refresh_token::v3::Response> {
    let grant = services.devices.refresh(&req.body.refresh_token)?;
    let mut response = refresh_token::v3::Response::new(grant.access_token);
    response.refresh_token = grant.refresh_token;
    response.expires_in_ms = grant.expires_in;
    Ok(RumaResponse(response))
}

/// `POST /_matrix/client/v1/login/get_token`: after the user's password, a one-time token that
/// signs in a new device.
pub async fn get_token(
    State(services): State<Arc<Services>>,
    req: Ruma<get_login_token::v1::Request>,
) -> HandlerResult<get_login_token::v1::Response> {
    let user_id = req.user_id()?.to_owned();
    services
        .authenticate_uia(&password_flows(), req.body.auth.as_ref(), Some(&user_id), req.ip)
        .await?;
    let token = services.devices.issue_login_token(&user_id)?;
    Ok(RumaResponse(get_login_token::v1::Response::new(LOGIN_TOKEN_LIFETIME, token)))
}
