//! This server's public room directory for other servers: `GET` and `POST
//! /_matrix/federation/v1/publicRooms`.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::federation::directory::{get_public_rooms, get_public_rooms_filtered};
use ruma::directory::RoomNetwork;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::service::Services;

/// `GET /_matrix/federation/v1/publicRooms`
pub async fn get_public_rooms(
    State(services): State<Arc<Services>>,
    req: Ruma<get_public_rooms::v1::Request>,
) -> HandlerResult<get_public_rooms::v1::Response> {
    tracing::debug!(origin = %req.origin()?, "public rooms query");
    let page = services
        .rooms
        .directory_page(&RoomNetwork::Matrix, None, req.body.limit, req.body.since.as_deref())?;
    let mut response = get_public_rooms::v1::Response::new();
    response.chunk = page.chunk;
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.total_room_count_estimate = ruma::UInt::new(page.total as u64);
    Ok(RumaResponse(response))
}

/// `POST /_matrix/federation/v1/publicRooms`
pub async fn get_public_rooms_filtered(
    State(services): State<Arc<Services>>,
    req: Ruma<get_public_rooms_filtered::v1::Request>,
) -> HandlerResult<get_public_rooms_filtered::v1::Response> {
    tracing::debug!(origin = %req.origin()?, "public rooms query");
    let request = &req.body;
    let page = services.rooms.directory_page(
        &request.room_network,
        request.filter.generic_search_term.as_deref(),
        request.limit,
        request.since.as_deref(),
    )?;
    let mut response = get_public_rooms_filtered::v1::Response::new();
    response.chunk = page.chunk;
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.total_room_count_estimate = ruma::UInt::new(page.total as u64);
    Ok(RumaResponse(response))
}
