//! A room's events and state for other servers in it: `/event/{eventId}`,
//! `/get_missing_events/{roomId}`, `/state/{roomId}`, `/state_ids/{roomId}`,
//! `/event_auth/{roomId}/{eventId}`, `/backfill/{roomId}` and `/timestamp_to_event/{roomId}`.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::federation::authorization::get_event_authorization;
use ruma::api::federation::backfill::get_backfill;
use ruma::api::federation::event::{get_event, get_event_by_timestamp, get_missing_events, get_room_state, get_room_state_ids};
use ruma::{EventId, MilliSecondsSinceUnixEpoch};
use serde_json::value::RawValue as RawJsonValue;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::{Error, Result};
use crate::service::Services;

/// Stored events as raw PDUs.
fn pdus(services: &Services, ids: &[ruma::OwnedEventId]) -> Result<Vec<Box<RawJsonValue>>> {
    let mut pdus = Vec::new();
    for id in ids {
        if let Some(stored) = services.rooms.stored_event(id)? {
            pdus.push(stored.pdu.to_raw()?);
        }
    }
    Ok(pdus)
}

fn pdu(services: &Services, origin: &ruma::ServerName, event_id: &EventId) -> Result<Box<RawJsonValue>> {
    let object = services.federation.event_for(&services.rooms, origin, event_id)?;
    serde_json::value::to_raw_value(&object).map_err(|e| Error::Internal(e.to_string()))
}

/// `GET /_matrix/federation/v1/event/{eventId}`
pub async fn get_event(State(services): State<Arc<Services>>, req: Ruma<get_event::v1::Request>) -> HandlerResult<get_event::v1::Response> {
    let pdu = pdu(&services, req.origin()?, &req.body.event_id)?;
    Ok(RumaResponse(get_event::v1::Response::new(
        services.config.server_name.clone(),
        MilliSecondsSinceUnixEpoch::now(),
        pdu,
    )))
}

/// `POST /_matrix/federation/v1/get_missing_events/{roomId}`
pub async fn get_missing_events(
    State(services): State<Arc<Services>>,
    req: Ruma<get_missing_events::v1::Request>,
) -> HandlerResult<get_missing_events::v1::Response> {
    let request = &req.body;
    let events = services.federation.walk_back(
        &services.rooms,
        req.origin()?,
        &request.room_id,
        (&request.latest_events, false),
        &request.earliest_events,
        (u64::from(request.limit) as usize, u64::from(request.min_depth)),
    )?;
    Ok(RumaResponse(get_missing_events::v1::Response::new(events)))
}

/// `GET /_matrix/federation/v1/backfill/{roomId}`
pub async fn get_backfill(
    State(services): State<Arc<Services>>,
    req: Ruma<get_backfill::v1::Request>,
) -> HandlerResult<get_backfill::v1::Response> {
    let request = &req.body;
    let events = services.federation.walk_back(
        &services.rooms,
        req.origin()?,
        &request.room_id,
        (&request.v, true),
        &[],
        (u64::from(request.limit) as usize, 0),
    )?;
    Ok(RumaResponse(get_backfill::v1::Response::new(
        services.config.server_name.clone(),
        MilliSecondsSinceUnixEpoch::now(),
        events,
    )))
}

/// `GET /_matrix/federation/v1/state_ids/{roomId}`
pub async fn get_room_state_ids(
    State(services): State<Arc<Services>>,
    req: Ruma<get_room_state_ids::v1::Request>,
) -> HandlerResult<get_room_state_ids::v1::Response> {
    let state = services
        .federation
        .state_at(&services.rooms, req.origin()?, &req.body.room_id, &req.body.event_id)?;
    Ok(RumaResponse(get_room_state_ids::v1::Response::new(state.auth_chain, state.state)))
}

/// `GET /_matrix/federation/v1/state/{roomId}`
pub async fn get_room_state(
    State(services): State<Arc<Services>>,
    req: Ruma<get_room_state::v1::Request>,
) -> HandlerResult<get_room_state::v1::Response> {
    let state = services
        .federation
        .state_at(&services.rooms, req.origin()?, &req.body.room_id, &req.body.event_id)?;
    Ok(RumaResponse(get_room_state::v1::Response::new(
        pdus(&services, &state.auth_chain)?,
        pdus(&services, &state.state)?,
    )))
}

/// `GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}`
pub async fn get_event_authorization(
    State(services): State<Arc<Services>>,
    req: Ruma<get_event_authorization::v1::Request>,
) -> HandlerResult<get_event_authorization::v1::Response> {
    let chain = services
        .federation
        .event_auth(&services.rooms, req.origin()?, &req.body.room_id, &req.body.event_id)?;
    Ok(RumaResponse(get_event_authorization::v1::Response::new(pdus(&services, &chain)?)))
}

/// `GET /_matrix/federation/v1/timestamp_to_event/{roomId}`
pub async fn get_event_by_timestamp(
    State(services): State<Arc<Services>>,
    req: Ruma<get_event_by_timestamp::v1::Request>,
) -> HandlerResult<get_event_by_timestamp::v1::Response> {
    let request = &req.body;
    services
        .federation
        .check_server_in_room(&services.rooms, req.origin()?, &request.room_id)?;
    let forward = request.dir == ruma::api::Direction::Forward;
    let (event_id, ts) = services
        .rooms
        .event_by_timestamp(&request.room_id, request.ts, forward, |_| Ok(true))?;
    Ok(RumaResponse(get_event_by_timestamp::v1::Response::new(event_id, ts)))
}
