//! `GET /rooms/{roomId}/timestamp_to_event`: the event closest to a time, in one direction.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::Direction;
use ruma::api::client::room::get_event_by_timestamp;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::service::Services;

/// `GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event`
pub async fn get_event_by_timestamp(
    State(services): State<Arc<Services>>,
    req: Ruma<get_event_by_timestamp::v1::Request>,
) -> HandlerResult<get_event_by_timestamp::v1::Response> {
    let request = &req.body;
    let user = req.user_id()?;
    services.rooms.check_can_read_room(&request.room_id, user)?;
    let forward = request.dir == Direction::Forward;
    let (event_id, ts) = services.rooms.event_by_timestamp(&request.room_id, request.ts, forward, |stored| {
        services.rooms.can_see_event(user, stored)
    })?;
    Ok(RumaResponse(get_event_by_timestamp::v1::Response::new(event_id, ts)))
}
