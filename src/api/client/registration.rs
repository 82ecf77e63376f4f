//! `/register` (with user-interactive authentication, optionally with an email address
//! confirmed through `/register/email/requestToken`'s mail), `/register/available`, and the
//! registration token validity check.

use std::sync::Arc;

use axum::extract::State;
use ruma::OwnedUserId;
use ruma::api::client::account::{
    check_registration_token_validity, get_username_availability, register, request_registration_token_via_email,
};
use ruma::api::client::uiaa::AuthType;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::config::RegistrationMode;
use crate::error::{Error, Result};
use crate::service::Services;
use crate::service::appservices::Appservice;
use crate::service::devices::LoginGrant;
use crate::service::rate_limit::Limit;
use crate::service::registration::{LoginRequest, NewAccount};
use crate::service::threepids::Purpose;

/// `POST /_matrix/client/v3/register`
pub async fn register(State(services): State<Arc<Services>>, req: Ruma<register::v3::Request>) -> HandlerResult<register::v3::Response> {
    if req.session.as_ref().is_none_or(|session| session.rate_limited()) {
        services.rate_limits.check(Limit::Registration, req.ip)?;
    }
    let body = &req.body;
    if body.kind == register::RegistrationKind::Guest {
        return Err(Error::guest_access_forbidden("Guest accounts are not supported"));
    }
    if let Some(appservice) = req.session.as_ref().and_then(|session| session.appservice.clone()) {
        return register_for_appservice(&services, &req, &appservice).await;
    }
    if body.login_type == Some(register::LoginType::ApplicationService) {
        return Err(Error::missing_token("m.login.application_service needs an appservice's as_token"));
    }
    let flows = services.registration_flows()?;
    // A taken or invalid name is reported before authentication, so clients can say so early.
    let user_id = match body.username.as_deref() {
        Some(name) => available_user_id(&services, name)?,
        None => services.accounts.generate_user_id()?,
    };
    let session = services.authenticate_uia(&flows, body.auth.as_ref(), None, req.ip).await?;
    if session.completed.contains(&AuthType::EmailIdentity) && session.registration_email.is_none() {
        return Err(Error::forbidden("That email confirmation was not one to register with"));
    }
    let ip = req.ip.to_string();
    let login = login_request(body, &ip);
    let account = NewAccount {
        user_id: user_id.clone(),
        password: body.password.clone(),
        admin: false,
        registration_token: session.registration_token,
        login,
        email: session.registration_email,
    };
    let grant = services.create_account(account).await?;
    Ok(RumaResponse(registered(user_id, grant)))
}

/// The login a registration asks for, unless `inhibit_login`.
fn login_request<'a>(body: &register::v3::Request, ip: &'a str) -> Option<LoginRequest<'a>> {
    (!body.inhibit_login).then(|| LoginRequest {
        device_id: body.device_id.clone(),
        display_name: body.initial_device_display_name.clone(),
        ip: Some(ip),
        refreshable: body.refresh_token,
    })
}

/// The answer to a registration: the user, and the new device's tokens unless inhibited.
fn registered(user_id: OwnedUserId, grant: Option<LoginGrant>) -> register::v3::Response {
    let mut response = register::v3::Response::new(user_id);
    if let Some(grant) = grant {
        response.access_token = Some(grant.access_token);
        response.device_id = Some(grant.device_id);
        response.refresh_token = grant.refresh_token;
        response.expires_in = grant.expires_in;
    }
    response
}

/// The user ID of user name `name` if it can be registered by a user: valid, free, and in no
/// appservice's exclusive namespace.
fn available_user_id(services: &Services, name: &str) -> Result<OwnedUserId> {
    let user_id = services.accounts.new_user_id(name)?;
    if services.accounts.get(&user_id)?.is_some() {
        return Err(Error::user_in_use("That user name is taken"));
    }
    if services.appservices.exclusive_owner_of_user(&user_id).is_some() {
        return Err(Error::exclusive("That user name is reserved by a bridge"));
    }
    Ok(user_id)
}

/// `/register` with an appservice's `as_token` (`m.login.application_service`): a user of its
/// namespace, without password or user-interactive authentication.
async fn register_for_appservice(
    services: &Services,
    req: &Ruma<register::v3::Request>,
    appservice: &Appservice,
) -> HandlerResult<register::v3::Response> {
    let body = &req.body;
    let name = body
        .username
        .as_deref()
        .ok_or_else(|| Error::bad_json("An appservice registers a user by its username"))?;
    let user_id = services.accounts.new_user_id(name)?;
    if !appservice.claims_user(&user_id) {
        return Err(Error::exclusive("That user is not in the appservice's namespace"));
    }
    let ip = req.ip.to_string();
    let login = login_request(body, &ip);
    let account = NewAccount {
        user_id: user_id.clone(),
        password: None,
        admin: false,
        registration_token: None,
        login,
        email: None,
    };
    let grant = services.create_account(account).await?;
    Ok(RumaResponse(registered(user_id, grant)))
}

/// `GET /_matrix/client/v3/register/available`
pub async fn get_username_availability(
    State(services): State<Arc<Services>>,
    req: Ruma<get_username_availability::v3::Request>,
) -> HandlerResult<get_username_availability::v3::Response> {
    services.rate_limits.check(Limit::Registration, req.ip)?;
    available_user_id(&services, &req.body.username)?;
    Ok(RumaResponse(get_username_availability::v3::Response::new(true)))
}

/// `GET /_matrix/client/v1/register/m.login.registration_token/validity`
pub async fn check_registration_token_validity(
    State(services): State<Arc<Services>>,
    req: Ruma<check_registration_token_validity::v1::Request>,
) -> HandlerResult<check_registration_token_validity::v1::Response> {
    services.rate_limits.check(Limit::Registration, req.ip)?;
    let mode = services.config.registration;
    if mode == RegistrationMode::Closed && !services.registration_tokens.any_usable(mode)? {
        return Err(Error::forbidden("Registration is closed on this server"));
    }
    let valid = services.registration_tokens.usable(&req.body.token, mode)?.is_some();
    Ok(RumaResponse(check_registration_token_validity::v1::Response::new(valid)))
}

email_token_handler!(
    /// `POST /_matrix/client/v3/register/email/requestToken`: mails a link that confirms an
    /// address to register with; 400 `M_THREEPID_IN_USE` when an account has it already.
    request_registration_token,
    request_registration_token_via_email::v3,
    Purpose::Register
);
