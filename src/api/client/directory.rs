//! Room aliases: `/directory/room/{roomAlias}` (PUT, GET, DELETE; GET of another server's alias
//! asks that server) and `/rooms/{roomId}/aliases`.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::alias::{create_alias, delete_alias, get_alias};
use ruma::api::client::room::aliases;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::service::Services;
use crate::service::rooms::directory::Actor;

/// `PUT /_matrix/client/v3/directory/room/{roomAlias}`
pub async fn create_alias(
    State(services): State<Arc<Services>>,
    req: Ruma<create_alias::v3::Request>,
) -> HandlerResult<create_alias::v3::Response> {
    services
        .rooms
        .create_alias(&req.body.room_alias, &req.body.room_id, req.user_id()?)?;
    Ok(RumaResponse(create_alias::v3::Response::new()))
}

/// `GET /_matrix/client/v3/directory/room/{roomAlias}`
pub async fn get_alias(State(services): State<Arc<Services>>, req: Ruma<get_alias::v3::Request>) -> HandlerResult<get_alias::v3::Response> {
    let alias = &req.body.room_alias;
    let (room_id, servers) = if alias.server_name() == services.config.server_name {
        let room_id = services.resolve_local_alias(alias).await?;
        let servers = services.rooms.resident_servers(&room_id)?;
        (room_id, servers)
    } else {
        services.federation.remote_alias(alias).await?
    };
    Ok(RumaResponse(get_alias::v3::Response::new(room_id, servers)))
}

/// `DELETE /_matrix/client/v3/directory/room/{roomAlias}`
pub async fn delete_alias(
    State(services): State<Arc<Services>>,
    req: Ruma<delete_alias::v3::Request>,
) -> HandlerResult<delete_alias::v3::Response> {
    let user = req.user_id()?;
    let server_admin = services.accounts.get_active(user)?.admin;
    services.rooms.delete_alias(&req.body.room_alias, Actor { user, server_admin })?;
    Ok(RumaResponse(delete_alias::v3::Response::new()))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/aliases`
pub async fn room_aliases(State(services): State<Arc<Services>>, req: Ruma<aliases::v3::Request>) -> HandlerResult<aliases::v3::Response> {
    services.rooms.check_can_read_room(&req.body.room_id, req.user_id()?)?;
    Ok(RumaResponse(aliases::v3::Response::new(
        services.rooms.room_aliases(&req.body.room_id)?,
    )))
}
