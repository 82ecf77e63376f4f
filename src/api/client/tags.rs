//! Room tags (`/user/{userId}/rooms/{roomId}/tags`): favourites, low priority and the user's
//! own, kept in the room's `m.tag` account data so sync delivers them.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::tag::{create_tag, delete_tag, get_tags};
use ruma::events::tag::Tags;
use ruma::{RoomId, UserId};
use serde_json::json;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Result;
use crate::service::Services;

const TAG_TYPE: &str = "m.tag";

fn tags(services: &Services, user: &UserId, room: &RoomId) -> Result<Tags> {
    Ok(services
        .account_data
        .get(user, Some(room), TAG_TYPE)?
        .and_then(|content| serde_json::from_str::<serde_json::Value>(content.get()).ok())
        .and_then(|content| serde_json::from_value(content["tags"].clone()).ok())
        .unwrap_or_default())
}

fn save(services: &Services, user: &UserId, room: &RoomId, tags: &Tags) -> Result<()> {
    let content = serde_json::value::to_raw_value(&json!({ "tags": tags }))?;
    services.account_data.set(user, Some(room), TAG_TYPE, &content)
}

/// `GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags`
pub async fn get_tags(State(services): State<Arc<Services>>, req: Ruma<get_tags::v3::Request>) -> HandlerResult<get_tags::v3::Response> {
    req.require_owner(&req.body.user_id, "You can only read your own tags")?;
    Ok(RumaResponse(get_tags::v3::Response::new(tags(
        &services,
        &req.body.user_id,
        &req.body.room_id,
    )?)))
}

/// `PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}`
pub async fn create_tag(
    State(services): State<Arc<Services>>,
    req: Ruma<create_tag::v3::Request>,
) -> HandlerResult<create_tag::v3::Response> {
    let request = &req.body;
    req.require_owner(&request.user_id, "You can only tag rooms for yourself")?;
    let mut current = tags(&services, &request.user_id, &request.room_id)?;
    current.insert(request.tag.as_str().into(), request.tag_info.clone());
    save(&services, &request.user_id, &request.room_id, &current)?;
    Ok(RumaResponse(create_tag::v3::Response::new()))
}

/// `DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}`
pub async fn delete_tag(
    State(services): State<Arc<Services>>,
    req: Ruma<delete_tag::v3::Request>,
) -> HandlerResult<delete_tag::v3::Response> {
    let request = &req.body;
    req.require_owner(&request.user_id, "You can only untag rooms for yourself")?;
    let mut current = tags(&services, &request.user_id, &request.room_id)?;
    current.remove(&request.tag.as_str().into());
    save(&services, &request.user_id, &request.room_id, &current)?;
    Ok(RumaResponse(delete_tag::v3::Response::new()))
}
