//! Queries from other servers: `GET /_matrix/federation/v1/query/profile` (a local user's
//! profile) and `/query/directory` (the room a local alias names, and its resident servers).

use std::sync::Arc;

use axum::extract::State;
use ruma::api::federation::query::{get_profile_information, get_room_information};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Error;
use crate::service::Services;

/// `GET /_matrix/federation/v1/query/profile`
pub async fn get_profile_information(
    State(services): State<Arc<Services>>,
    req: Ruma<get_profile_information::v1::Request>,
) -> HandlerResult<get_profile_information::v1::Response> {
    let user_id = &req.body.user_id;
    tracing::debug!(origin = %req.origin()?, %user_id, "profile query");
    if user_id.server_name() != services.config.server_name || services.accounts.get_active(user_id).is_err() {
        return Err(Error::not_found("No such user on this server"));
    }
    let profile = services.profiles.get(user_id)?;
    let response = match &req.body.field {
        Some(field) => profile
            .iter()
            .filter(|(name, _)| name.as_str() == field.as_str())
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect(),
        None => get_profile_information::v1::Response::from(profile),
    };
    Ok(RumaResponse(response))
}

/// `GET /_matrix/federation/v1/query/directory`
pub async fn get_room_information(
    State(services): State<Arc<Services>>,
    req: Ruma<get_room_information::v1::Request>,
) -> HandlerResult<get_room_information::v1::Response> {
    tracing::debug!(origin = %req.origin()?, alias = %req.body.room_alias, "directory query");
    if req.body.room_alias.server_name() != services.config.server_name {
        return Err(Error::not_found("The alias is not of this server"));
    }
    let room_id = services.resolve_local_alias(&req.body.room_alias).await?;
    let servers = services.rooms.resident_servers(&room_id)?;
    Ok(RumaResponse(get_room_information::v1::Response::new(room_id, servers)))
}
