//! `POST /account/password`: change the password, behind user-interactive authentication —
//! the current password when logged in, or, to reset a forgotten one, an address of the
//! account confirmed through `/account/password/email/requestToken`'s mail.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::account::{change_password, request_password_change_token_via_email};
use ruma::api::client::uiaa::{AuthFlow, AuthType};

use super::device_management::password_flows;
use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Error;
use crate::service::Services;
use crate::service::threepids::Purpose;

/// `POST /_matrix/client/v3/account/password`
pub async fn change_password(
    State(services): State<Arc<Services>>,
    req: Ruma<change_password::v3::Request>,
) -> HandlerResult<change_password::v3::Response> {
    let body = &req.body;
    let (user_id, keep) = match &req.session {
        Some(session) => {
            services
                .authenticate_uia(&password_flows(), body.auth.as_ref(), Some(&session.user_id), req.ip)
                .await?;
            (session.user_id.clone(), Some(session.device_id.clone()))
        }
        None => {
            let flows = [AuthFlow::new(vec![AuthType::EmailIdentity])];
            let session = services.authenticate_uia(&flows, body.auth.as_ref(), None, req.ip).await?;
            let user_id = session
                .email_owner
                .ok_or_else(|| Error::forbidden("No confirmed email address of an account was given"))?;
            (user_id, None)
        }
    };
    services
        .change_password(&user_id, body.new_password.clone(), body.logout_devices, keep.as_deref())
        .await?;
    Ok(RumaResponse(change_password::v3::Response::new()))
}

email_token_handler!(
    /// `POST /_matrix/client/v3/account/password/email/requestToken`: mails a link that confirms
    /// the address; 400 `M_THREEPID_NOT_FOUND` when no account has it.
    request_password_change_token,
    request_password_change_token_via_email::v3,
    Purpose::ResetPassword
);
