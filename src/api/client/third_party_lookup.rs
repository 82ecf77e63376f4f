//! `/thirdparty/*`: the networks bridges connect to, their portal rooms and users, answered
//! from the registered appservices (their `protocols` and their own third-party endpoints).
//! With no bridge there are no protocols and every lookup finds nothing (empty lists, as
//! Synapse answers).

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::thirdparty::{
    get_location_for_protocol, get_location_for_room_alias, get_protocol, get_protocols, get_user_for_protocol, get_user_for_user_id,
};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Error;
use crate::service::Services;

/// `GET /_matrix/client/v3/thirdparty/protocols`
pub async fn get_protocols(
    State(services): State<Arc<Services>>,
    req: Ruma<get_protocols::v3::Request>,
) -> HandlerResult<get_protocols::v3::Response> {
    req.user_id()?;
    Ok(RumaResponse(get_protocols::v3::Response::new(
        services.appservices.protocols(None).await,
    )))
}

/// `GET /_matrix/client/v3/thirdparty/protocol/{protocol}`: 404 when no bridge serves it.
pub async fn get_protocol(
    State(services): State<Arc<Services>>,
    req: Ruma<get_protocol::v3::Request>,
) -> HandlerResult<get_protocol::v3::Response> {
    req.user_id()?;
    let name = &req.body.protocol;
    let protocol = services
        .appservices
        .protocols(Some(name))
        .await
        .remove(name)
        .ok_or_else(|| Error::not_found(format!("No bridge serves the protocol {name:?}")))?;
    Ok(RumaResponse(get_protocol::v3::Response::new(protocol)))
}

/// `GET /_matrix/client/v3/thirdparty/location/{protocol}`
pub async fn get_location_for_protocol(
    State(services): State<Arc<Services>>,
    req: Ruma<get_location_for_protocol::v3::Request>,
) -> HandlerResult<get_location_for_protocol::v3::Response> {
    req.user_id()?;
    let locations = services.appservices.locations(&req.body.protocol, &req.body.fields).await;
    Ok(RumaResponse(get_location_for_protocol::v3::Response::new(locations)))
}

/// `GET /_matrix/client/v3/thirdparty/user/{protocol}`
pub async fn get_user_for_protocol(
    State(services): State<Arc<Services>>,
    req: Ruma<get_user_for_protocol::v3::Request>,
) -> HandlerResult<get_user_for_protocol::v3::Response> {
    req.user_id()?;
    let users = services.appservices.users(&req.body.protocol, &req.body.fields).await;
    Ok(RumaResponse(get_user_for_protocol::v3::Response::new(users)))
}

/// `GET /_matrix/client/v3/thirdparty/location?alias=…`
pub async fn get_location_for_room_alias(
    State(services): State<Arc<Services>>,
    req: Ruma<get_location_for_room_alias::v3::Request>,
) -> HandlerResult<get_location_for_room_alias::v3::Response> {
    req.user_id()?;
    let locations = services.appservices.locations_of_alias(&req.body.alias).await;
    Ok(RumaResponse(get_location_for_room_alias::v3::Response::new(locations)))
}

/// `GET /_matrix/client/v3/thirdparty/user?userid=…`
pub async fn get_user_for_user_id(
    State(services): State<Arc<Services>>,
    req: Ruma<get_user_for_user_id::v3::Request>,
) -> HandlerResult<get_user_for_user_id::v3::Response> {
    req.user_id()?;
    let users = services.appservices.users_of_user_id(&req.body.userid).await;
    Ok(RumaResponse(get_user_for_user_id::v3::Response::new(users)))
}
