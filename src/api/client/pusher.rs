//! `GET /pushers` and `POST /pushers/set`: where a user's notifications are pushed.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::push::{get_pushers, set_pusher};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Error;
use crate::service::Services;

/// `GET /_matrix/client/v3/pushers`
pub async fn get_pushers(
    State(services): State<Arc<Services>>,
    req: Ruma<get_pushers::v3::Request>,
) -> HandlerResult<get_pushers::v3::Response> {
    Ok(RumaResponse(get_pushers::v3::Response::new(services.pushers.list(req.user_id()?)?)))
}

/// `POST /_matrix/client/v3/pushers/set`
pub async fn set_pusher(
    State(services): State<Arc<Services>>,
    req: Ruma<set_pusher::v3::Request>,
) -> HandlerResult<set_pusher::v3::Response> {
    let user = req.user_id()?;
    match &req.body.action {
        set_pusher::v3::PusherAction::Post(post) => services.pushers.set(user, &post.pusher, post.append)?,
        set_pusher::v3::PusherAction::Delete(ids) => services.pushers.delete(user, ids)?,
        _ => return Err(Error::invalid_param("Unknown pusher action")),
    }
    Ok(RumaResponse(set_pusher::v3::Response::new()))
}
