//! `GET /pushers` and `POST /pushers/set`: where a user's notifications are pushed (push
//! gateways, or mail: see `service::email_notifications`).

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::push::{PusherKind, get_pushers, set_pusher};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Error;
use crate::service::Services;
use crate::service::threepids::normalize_email;

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
        set_pusher::v3::PusherAction::Post(post) => {
            if let PusherKind::Email(_) = &post.pusher.kind {
                // Email notifications go to a confirmed address of the account only.
                services.mail.require()?;
                let address = normalize_email(&post.pusher.ids.pushkey)?;
                if services.threepids.owner(&address)?.is_none_or(|owner| owner.user_id != user) {
                    return Err(Error::threepid_not_found(
                        "The pushkey is not a confirmed email address of your account",
                    ));
                }
            }
            services.pushers.set(user, &post.pusher, post.append)?
        }
        set_pusher::v3::PusherAction::Delete(ids) => services.pushers.delete(user, ids)?,
        _ => return Err(Error::invalid_param("Unknown pusher action")),
    }
    Ok(RumaResponse(set_pusher::v3::Response::new()))
}
