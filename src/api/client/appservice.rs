//! What only appservices call: `POST /_matrix/client/v1/appservice/{appserviceId}/ping` (the
//! server pings the appservice back and says how long it took) and
//! `PUT /_matrix/client/v3/directory/list/appservice/{networkId}/{roomId}` (a bridge's room
//! directory, listed by `/publicRooms` under the network's instance).

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::appservice::{request_ping, set_room_visibility};
use ruma::api::client::room::Visibility;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::{Error, Result};
use crate::service::Services;
use crate::service::appservices::Appservice;

/// The appservice whose `as_token` the request carried; 403 for anyone else.
fn appservice<T>(req: &Ruma<T>) -> Result<&Arc<Appservice>> {
    req.session()?
        .appservice
        .as_ref()
        .ok_or_else(|| Error::forbidden("Only an appservice may call this"))
}

/// `POST /_matrix/client/v1/appservice/{appserviceId}/ping`
pub async fn request_ping(
    State(services): State<Arc<Services>>,
    req: Ruma<request_ping::v1::Request>,
) -> HandlerResult<request_ping::v1::Response> {
    let appservice = appservice(&req)?;
    if appservice.id() != req.body.appservice_id {
        return Err(Error::forbidden("The as_token is not this appservice's"));
    }
    let duration_ms = services.appservices.ping(appservice, req.body.transaction_id.clone()).await?;
    Ok(RumaResponse(request_ping::v1::Response::new(std::time::Duration::from_millis(
        duration_ms,
    ))))
}

/// `PUT /_matrix/client/v3/directory/list/appservice/{networkId}/{roomId}`
pub async fn set_room_visibility(
    State(services): State<Arc<Services>>,
    req: Ruma<set_room_visibility::v3::Request>,
) -> HandlerResult<set_room_visibility::v3::Response> {
    let appservice = appservice(&req)?;
    let request = &req.body;
    let listed = match &request.visibility {
        Visibility::Public => true,
        Visibility::Private => false,
        other => return Err(Error::invalid_param(format!("Unknown visibility {other}"))),
    };
    services
        .rooms
        .set_appservice_listing(&request.room_id, appservice.id(), &request.network_id, listed)?;
    Ok(RumaResponse(set_room_visibility::v3::Response::new()))
}
