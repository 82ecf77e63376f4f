//! `GET /_matrix/federation/v1/openid/userinfo`: whom an OpenID token of this server belongs
//! to (asked by widgets and identity servers, without a server signature).

use std::sync::Arc;

use axum::extract::State;
use ruma::api::federation::openid::get_openid_userinfo;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::service::Services;

/// `GET /_matrix/federation/v1/openid/userinfo`
pub async fn get_openid_userinfo(
    State(services): State<Arc<Services>>,
    req: Ruma<get_openid_userinfo::v1::Request>,
) -> HandlerResult<get_openid_userinfo::v1::Response> {
    let user = services.openid.user_of(&req.body.access_token)?;
    Ok(RumaResponse(get_openid_userinfo::v1::Response::new(user)))
}
