//! `POST /_matrix/client/v3/createRoom`.

use std::sync::Arc;

use axum::extract::State;
use ruma::RoomAliasId;
use ruma::api::client::room::Visibility;
use ruma::api::client::room::create_room;
use serde_json::{Map, Value};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::config::DirectoryPublishers;
use crate::error::{Error, Result};
use crate::service::Services;
use crate::service::rooms::create::{DEFAULT_ROOM_VERSION, RoomSettings};

/// A JSON object from a raw request field; 400 `M_BAD_JSON` if it is not one.
fn object<T>(raw: &ruma::serde::Raw<T>, field: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str(raw.json().get()) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Error::bad_json(format!("`{field}` must be a JSON object"))),
    }
}

/// `POST /_matrix/client/v3/createRoom`
pub async fn create_room(
    State(services): State<Arc<Services>>,
    req: Ruma<create_room::v3::Request>,
) -> HandlerResult<create_room::v3::Response> {
    let user_id = req.user_id()?.to_owned();
    services.accounts.check_not_suspended(&user_id)?;
    let request = req.body;
    let alias = match &request.room_alias_name {
        Some(name) => Some(
            RoomAliasId::parse(format!("#{name}:{}", services.config.server_name))
                .map_err(|e| Error::invalid_param(format!("Invalid room alias name: {e}")))?,
        ),
        None => None,
    };
    let publish = request.visibility == Visibility::Public;
    if publish && services.config.directory.publish == DirectoryPublishers::ServerAdmins && !services.accounts.get_active(&user_id)?.admin {
        return Err(Error::forbidden("Only server admins may list rooms in the directory here"));
    }
    if !request.invite_3pid.is_empty() {
        return Err(Error::bad_request("Invites by email or phone are not available on this server"));
    }
    let preset = match (&request.preset, &request.visibility) {
        (Some(preset), _) => preset.as_str().to_owned(),
        (None, Visibility::Public) => "public_chat".to_owned(),
        (None, _) => "private_chat".to_owned(),
    };
    let mut initial_state = Vec::new();
    for raw in &request.initial_state {
        let event = object(raw, "initial_state")?;
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::bad_json("An initial state event has no `type`"))?;
        let state_key = event.get("state_key").and_then(Value::as_str).unwrap_or_default();
        let content = event.get("content").cloned().unwrap_or_else(|| Value::Object(Map::new()));
        initial_state.push((kind.to_owned(), state_key.to_owned(), content));
    }
    let settings = RoomSettings {
        version: request.room_version.unwrap_or(DEFAULT_ROOM_VERSION),
        preset,
        creation_content: match &request.creation_content {
            Some(raw) => object(raw, "creation_content")?,
            None => Map::new(),
        },
        power_level_override: request
            .power_level_content_override
            .as_ref()
            .map(|raw| object(raw, "power_level_content_override"))
            .transpose()?,
        initial_state,
        name: request.name,
        topic: request.topic,
        invite: request.invite.clone(),
        is_direct: request.is_direct,
        alias,
        publish,
    };
    let room_id = services.rooms.create_room(&user_id, settings).await?;
    for invitee in request
        .invite
        .iter()
        .filter(|invitee| invitee.server_name() != services.config.server_name)
    {
        services
            .federation
            .invite(&services.rooms, &room_id, &user_id, invitee, None, request.is_direct)
            .await?;
    }
    Ok(RumaResponse(create_room::v3::Response::new(room_id)))
}
