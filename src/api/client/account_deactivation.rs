//! `POST /account/deactivate`: close an account for good, behind user-interactive
//! authentication.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::account::{ThirdPartyIdRemovalStatus, deactivate};

use super::device_management::password_flows;
use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::service::Services;

/// `POST /_matrix/client/v3/account/deactivate`
pub async fn deactivate(
    State(services): State<Arc<Services>>,
    req: Ruma<deactivate::v3::Request>,
) -> HandlerResult<deactivate::v3::Response> {
    let user_id = req.user_id()?.to_owned();
    services
        .authenticate_uia(&password_flows(), req.body.auth.as_ref(), Some(&user_id), req.ip)
        .await?;
    services.deactivate(&user_id)?;
    Ok(RumaResponse(deactivate::v3::Response::new(ThirdPartyIdRemovalStatus::NoSupport)))
}
