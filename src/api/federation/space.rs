//! `GET /_matrix/federation/v1/hierarchy/{roomId}`: a space of this server and its direct
//! children, for another server's user browsing it.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::federation::space::{SpaceHierarchyParentSummary, get_hierarchy};
use ruma::room::RoomSummary;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::{Error, Result};
use crate::service::Services;

fn summary(value: serde_json::Value) -> Result<RoomSummary> {
    serde_json::from_value(value).map_err(Error::from)
}

/// `GET /_matrix/federation/v1/hierarchy/{roomId}`
pub async fn get_hierarchy(
    State(services): State<Arc<Services>>,
    req: Ruma<get_hierarchy::v1::Request>,
) -> HandlerResult<get_hierarchy::v1::Response> {
    let request = &req.body;
    services.federation.check_acl(&services.rooms, req.origin()?, &request.room_id)?;
    let space = services.rooms.space_for_server(&request.room_id, request.suggested_only)?;
    let children_state = space
        .root
        .children_state
        .iter()
        .map(|event| serde_json::value::to_raw_value(event).map(ruma::serde::Raw::from_json))
        .collect::<Result<Vec<_>, _>>()?;
    let room = SpaceHierarchyParentSummary::new(summary(space.root.summary)?, children_state);
    let mut response = get_hierarchy::v1::Response::new(room);
    response.children = space.children.into_iter().map(summary).collect::<Result<_>>()?;
    response.inaccessible_children = space.inaccessible;
    Ok(RumaResponse(response))
}
