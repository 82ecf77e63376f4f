//! `GET/POST /login`: password login (`m.login.password` with `m.id.user`, the bare
//! deprecated `user` field, or `m.id.thirdparty` with an email address of the account).

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::session::{get_login_types, login};
use ruma::api::client::uiaa::UserIdentifier;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Error;
use crate::service::Services;
use crate::service::registration::LoginRequest;
use crate::service::threepids::normalize_email;

/// `GET /_matrix/client/v3/login`
pub async fn get_login_types(_: Ruma<get_login_types::v3::Request>) -> HandlerResult<get_login_types::v3::Response> {
    let password = get_login_types::v3::LoginType::Password(Default::default());
    Ok(RumaResponse(get_login_types::v3::Response::new(vec![password])))
}

/// `POST /_matrix/client/v3/login`
pub async fn login(State(services): State<Arc<Services>>, req: Ruma<login::v3::Request>) -> HandlerResult<login::v3::Response> {
    let login::v3::LoginInfo::Password(info) = &req.body.login_info else {
        return Err(Error::bad_request("Only m.login.password is supported"));
    };
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
    let ip = req.ip.to_string();
    let request = LoginRequest {
        device_id: req.body.device_id.clone(),
        display_name: req.body.initial_device_display_name.clone(),
        ip: Some(&ip),
    };
    let (user_id, grant) = services.login_with_password(&name, info.password.clone(), request, req.ip).await?;
    Ok(RumaResponse(login::v3::Response::new(user_id, grant.access_token, grant.device_id)))
}
