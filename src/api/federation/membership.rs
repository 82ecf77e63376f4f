//! Joins and leaves from other servers: `make_join`, `send_join` (v2), `make_leave`,
//! `send_leave` (v2); and invites of this server's users: `invite` (v2).

use std::sync::Arc;

use axum::extract::State;
use ruma::api::federation::membership::{
    create_invite, create_join_event, create_knock_event, create_leave_event, prepare_join_event, prepare_knock_event, prepare_leave_event,
};
use ruma::events::room::member::MembershipState;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::service::Services;

/// `GET /_matrix/federation/v1/make_join/{roomId}/{userId}`
pub async fn prepare_join_event(
    State(services): State<Arc<Services>>,
    req: Ruma<prepare_join_event::v1::Request>,
) -> HandlerResult<prepare_join_event::v1::Response> {
    let request = &req.body;
    let (version, template) = services.federation.make_membership(
        &services.rooms,
        req.origin()?,
        &request.room_id,
        &request.user_id,
        &MembershipState::Join,
        &request.ver,
    )?;
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

/// `GET /_matrix/federation/v1/make_leave/{roomId}/{userId}`
pub async fn prepare_leave_event(
    State(services): State<Arc<Services>>,
    req: Ruma<prepare_leave_event::v1::Request>,
) -> HandlerResult<prepare_leave_event::v1::Response> {
    let request = &req.body;
    let (version, template) = services.federation.make_membership(
        &services.rooms,
        req.origin()?,
        &request.room_id,
        &request.user_id,
        &MembershipState::Leave,
        &[],
    )?;
    Ok(RumaResponse(prepare_leave_event::v1::Response::new(
        Some(version),
        serde_json::value::to_raw_value(&template)?,
    )))
}

/// `PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}`
pub async fn create_leave_event(
    State(services): State<Arc<Services>>,
    req: Ruma<create_leave_event::v2::Request>,
) -> HandlerResult<create_leave_event::v2::Response> {
    let request = &req.body;
    services
        .federation
        .send_leave(&services.rooms, req.origin()?, &request.room_id, &request.event_id, &request.pdu)
        .await?;
    Ok(RumaResponse(create_leave_event::v2::Response::new()))
}

/// `PUT /_matrix/federation/v2/invite/{roomId}/{eventId}`
pub async fn create_invite(
    State(services): State<Arc<Services>>,
    req: Ruma<create_invite::v2::Request>,
) -> HandlerResult<create_invite::v2::Response> {
    let event = services
        .federation
        .receive_invite(&services.rooms, &services.accounts, req.origin()?, &req.body)
        .await?;
    Ok(RumaResponse(create_invite::v2::Response::new(event)))
}

/// `GET /_matrix/federation/v1/make_knock/{roomId}/{userId}`
pub async fn prepare_knock_event(
    State(services): State<Arc<Services>>,
    req: Ruma<prepare_knock_event::v1::Request>,
) -> HandlerResult<prepare_knock_event::v1::Response> {
    let request = &req.body;
    let (version, template) = services.federation.make_membership(
        &services.rooms,
        req.origin()?,
        &request.room_id,
        &request.user_id,
        &MembershipState::Knock,
        &request.ver,
    )?;
    Ok(RumaResponse(prepare_knock_event::v1::Response::new(
        version,
        serde_json::value::to_raw_value(&template)?,
    )))
}

/// `PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}`
pub async fn create_knock_event(
    State(services): State<Arc<Services>>,
    req: Ruma<create_knock_event::v1::Request>,
) -> HandlerResult<create_knock_event::v1::Response> {
    let request = &req.body;
    let state = services
        .federation
        .send_knock(&services.rooms, req.origin()?, &request.room_id, &request.event_id, &request.pdu)
        .await?;
    Ok(RumaResponse(create_knock_event::v1::Response::new(state)))
}
