//! `GET /rooms/{roomId}/timestamp_to_event`: the event closest to a time, in one direction.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::Direction;
use ruma::api::client::room::get_event_by_timestamp;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Error;
use crate::service::Services;
use crate::service::rooms::pdu::Pdu;

/// Events read per step of the scan.
const BATCH: usize = 200;

/// `GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event`
pub async fn get_event_by_timestamp(
    State(services): State<Arc<Services>>,
    req: Ruma<get_event_by_timestamp::v1::Request>,
) -> HandlerResult<get_event_by_timestamp::v1::Response> {
    let request = &req.body;
    let user = req.user_id()?;
    services.rooms.check_can_read_room(&request.room_id, user)?;
    let forward = request.dir == Direction::Forward;
    // Timestamps follow the stream order closely: scan from the end the direction starts at,
    // forward for the first event at or after `ts`, backward for the last one at or before it.
    let mut cursor = None;
    loop {
        let batch = services.rooms.timeline(&request.room_id, cursor, forward, BATCH)?;
        let exhausted = batch.len() < BATCH;
        for (position, event_id) in batch {
            cursor = Some(if forward { position + 1 } else { position.saturating_sub(1) });
            let Some(stored) = services.rooms.stored_event(&event_id)? else {
                continue;
            };
            let pdu = Pdu::from_object(&event_id, &stored.room_id, &stored.pdu)?;
            let hit = if forward {
                pdu.origin_server_ts >= request.ts
            } else {
                pdu.origin_server_ts <= request.ts
            };
            if hit && services.rooms.can_see_event(user, &event_id, &stored)? {
                return Ok(RumaResponse(get_event_by_timestamp::v1::Response::new(
                    event_id,
                    pdu.origin_server_ts,
                )));
            }
        }
        if exhausted {
            return Err(Error::not_found("No event found in that direction"));
        }
    }
}
