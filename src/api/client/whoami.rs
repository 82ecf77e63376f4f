//! `GET /account/whoami`: who the access token belongs to.

use ruma::api::client::account::whoami;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};

/// `GET /_matrix/client/v3/account/whoami`
pub async fn whoami(req: Ruma<whoami::v3::Request>) -> HandlerResult<whoami::v3::Response> {
    let session = req.session()?;
    let mut response = whoami::v3::Response::new(session.user_id.clone(), false);
    response.device_id = Some(session.device_id.clone());
    Ok(RumaResponse(response))
}
