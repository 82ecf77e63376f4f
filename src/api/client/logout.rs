//! `/logout` and `/logout/all`: end one session, or all of a user's.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::session::{logout, logout_all};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::service::Services;

/// `POST /_matrix/client/v3/logout`
pub async fn logout(State(services): State<Arc<Services>>, req: Ruma<logout::v3::Request>) -> HandlerResult<logout::v3::Response> {
    let session = req.session()?;
    services.delete_devices(&session.user_id, Some(std::slice::from_ref(&session.device_id)), None)?;
    Ok(RumaResponse(logout::v3::Response::new()))
}

/// `POST /_matrix/client/v3/logout/all`
pub async fn logout_all(
    State(services): State<Arc<Services>>,
    req: Ruma<logout_all::v3::Request>,
) -> HandlerResult<logout_all::v3::Response> {
    services.delete_devices(req.user_id()?, None, None)?;
    Ok(RumaResponse(logout_all::v3::Response::new()))
}
