//! `POST /account/password`: change the password, behind user-interactive authentication.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::account::change_password;

use super::device_management::password_flows;
use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::service::Services;

/// `POST /_matrix/client/v3/account/password`
pub async fn change_password(
    State(services): State<Arc<Services>>,
    req: Ruma<change_password::v3::Request>,
) -> HandlerResult<change_password::v3::Response> {
    let session = req.session()?;
    services
        .authenticate_uia(&password_flows(), req.body.auth.as_ref(), Some(&session.user_id), req.ip)
        .await?;
    let body = &req.body;
    services
        .change_password(
            &session.user_id,
            body.new_password.clone(),
            body.logout_devices,
            Some(&session.device_id),
        )
        .await?;
    Ok(RumaResponse(change_password::v3::Response::new()))
}
