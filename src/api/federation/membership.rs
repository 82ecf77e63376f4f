//! Joins from other servers: `GET /_matrix/federation/v1/make_join/{roomId}/{userId}` and
//! `PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}`.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::federation::membership::{create_join_event, prepare_join_event};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::service::Services;

/// `GET /_matrix/federation/v1/make_join/{roomId}/{userId}`
pub async fn prepare_join_event(
    State(services): State<Arc<Services>>,
    req: Ruma<prepare_join_event::v1::Request>,
) -> HandlerResult<prepare_join_event::v1::Response> {
    let request = &req.body;
    let (version, template) =
        services
            .federation
            .make_join(&services.rooms, req.origin()?, &request.room_id, &request.user_id, &request.ver)?;
    let mut response = prepare_join_event::v1::Response::new(serde_json::value::to_raw_value(&template)?);
    response.room_version = Some(version);
    Ok(RumaResponse(response))
}

/// `PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}`
pub async fn create_join_event(
    State(services): State<Arc<Services>>,
    req: Ruma<create_join_event::v2::Request>,
) -> HandlerResult<create_join_event::v2::Response> {
    let request = &req.body;
    let state = services
        .federation
        .send_join(&services.rooms, req.origin()?, &request.room_id, &request.event_id, &request.pdu)
        .await?;
    Ok(RumaResponse(create_join_event::v2::Response::new(state)))
}
