//! `GET /rooms/{roomId}/hierarchy`: a space's rooms, breadth first, paged; rooms of other
//! servers (children this server does not have, or a space it does not have) asked of them.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::space::{SpaceHierarchyRoomsChunk, get_hierarchy};
use serde_json::Value;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::{Error, Result};
use crate::service::Services;

/// How deep the walk goes unless the client asks for less.
const MAX_DEPTH: usize = 10;
/// The most rooms one page returns.
const MAX_LIMIT: usize = 100;

/// `GET /_matrix/client/v1/rooms/{roomId}/hierarchy`
pub async fn get_hierarchy(
    State(services): State<Arc<Services>>,
    req: Ruma<get_hierarchy::v1::Request>,
) -> HandlerResult<get_hierarchy::v1::Response> {
    let request = &req.body;
    let offset = match request.from.as_deref() {
        Some(token) => token
            .strip_prefix('o')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| Error::invalid_param("Invalid `from` token"))?,
        None => 0,
    };
    let max_depth = request.max_depth.map_or(MAX_DEPTH, |d| (u64::from(d) as usize).min(MAX_DEPTH));
    let limit = request.limit.map_or(50, |l| u64::from(l) as usize).clamp(1, MAX_LIMIT);
    let room_id = &request.room_id;
    let mut rooms = if services.rooms.room(room_id).is_ok() {
        let hierarchy = services
            .rooms
            .hierarchy(room_id, req.user_id()?, max_depth, request.suggested_only)?;
        let mut rooms = hierarchy.rooms;
        // Children this server does not have come from a server their `via` names.
        for (child, via) in hierarchy.elsewhere {
            if let Ok(remote) = services.federation.remote_hierarchy(&via, &child, request.suggested_only).await {
                rooms.extend(remote);
            }
        }
        rooms
    } else {
        let servers: Vec<_> = room_id.server_name().map(ToOwned::to_owned).into_iter().collect();
        services
            .federation
            .remote_hierarchy(&servers, room_id, request.suggested_only)
            .await?
    };
    // A room reached twice (a remote child also listed by another remote space) once.
    let mut seen = std::collections::HashSet::new();
    rooms.retain(|room| seen.insert(room.summary["room_id"].clone().to_string()));
    let total = rooms.len();
    let chunk = rooms
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|room| {
            let mut entry = room.summary;
            entry["children_state"] = Value::Array(room.children_state);
            serde_json::from_value::<SpaceHierarchyRoomsChunk>(entry).map_err(Error::from)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut response = get_hierarchy::v1::Response::new();
    response.next_batch = (offset + chunk.len() < total).then(|| format!("o{}", offset + chunk.len()));
    response.rooms = chunk;
    Ok(RumaResponse(response))
}
