//! `/thirdparty/*`: the networks bridges connect to, their portal rooms and users. Bridges
//! answer these through their application services; until one is registered there are no
//! protocols, and every lookup finds nothing (empty lists, as Synapse answers).

use std::collections::BTreeMap;

use ruma::api::client::thirdparty::{
    get_location_for_protocol, get_location_for_room_alias, get_protocol, get_protocols, get_user_for_protocol, get_user_for_user_id,
};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Error;

/// `GET /_matrix/client/v3/thirdparty/protocols`
pub async fn get_protocols(req: Ruma<get_protocols::v3::Request>) -> HandlerResult<get_protocols::v3::Response> {
    req.user_id()?;
    Ok(RumaResponse(get_protocols::v3::Response::new(BTreeMap::new())))
}

/// `GET /_matrix/client/v3/thirdparty/protocol/{protocol}`: no bridge serves any protocol.
pub async fn get_protocol(req: Ruma<get_protocol::v3::Request>) -> HandlerResult<get_protocol::v3::Response> {
    req.user_id()?;
    Err(Error::not_found(format!("No bridge serves the protocol {:?}", req.body.protocol)))
}

/// `GET /_matrix/client/v3/thirdparty/location/{protocol}`
pub async fn get_location_for_protocol(
    req: Ruma<get_location_for_protocol::v3::Request>,
) -> HandlerResult<get_location_for_protocol::v3::Response> {
    req.user_id()?;
    Ok(RumaResponse(get_location_for_protocol::v3::Response::new(Vec::new())))
}

/// `GET /_matrix/client/v3/thirdparty/user/{protocol}`
pub async fn get_user_for_protocol(req: Ruma<get_user_for_protocol::v3::Request>) -> HandlerResult<get_user_for_protocol::v3::Response> {
    req.user_id()?;
    Ok(RumaResponse(get_user_for_protocol::v3::Response::new(Vec::new())))
}

/// `GET /_matrix/client/v3/thirdparty/location?alias=…`
pub async fn get_location_for_room_alias(
    req: Ruma<get_location_for_room_alias::v3::Request>,
) -> HandlerResult<get_location_for_room_alias::v3::Response> {
    req.user_id()?;
    Ok(RumaResponse(get_location_for_room_alias::v3::Response::new(Vec::new())))
}

/// `GET /_matrix/client/v3/thirdparty/user?userid=…`
pub async fn get_user_for_user_id(req: Ruma<get_user_for_user_id::v3::Request>) -> HandlerResult<get_user_for_user_id::v3::Response> {
    req.user_id()?;
    Ok(RumaResponse(get_user_for_user_id::v3::Response::new(Vec::new())))
}
