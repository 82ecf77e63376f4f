//! `POST /rooms/{roomId}/join` and `POST /join/{roomIdOrAlias}`: rooms of this server, and
//! rooms of others joined over federation (through `via` servers or the alias's server).

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::membership::{join_room_by_id, join_room_by_id_or_alias};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::service::Services;

/// `POST /_matrix/client/v3/rooms/{roomId}/join`
pub async fn join_room_by_id(
    State(services): State<Arc<Services>>,
    req: Ruma<join_room_by_id::v3::Request>,
) -> HandlerResult<join_room_by_id::v3::Response> {
    let user_id = req.user_id()?;
    services.accounts.check_not_suspended(user_id)?;
    let room_id = &req.body.room_id;
    services
        .federation
        .join(&services.rooms, room_id, user_id, &[], req.body.reason.as_deref())
        .await?;
    Ok(RumaResponse(join_room_by_id::v3::Response::new(room_id.clone())))
}

/// `POST /_matrix/client/v3/join/{roomIdOrAlias}`
pub async fn join_room_by_id_or_alias(
    State(services): State<Arc<Services>>,
    req: Ruma<join_room_by_id_or_alias::v3::Request>,
) -> HandlerResult<join_room_by_id_or_alias::v3::Response> {
    let user_id = req.user_id()?;
    services.accounts.check_not_suspended(user_id)?;
    let mut servers = req.body.via.clone();
    let room_id = match ruma::OwnedRoomId::try_from(req.body.room_id_or_alias.clone()) {
        Ok(room_id) => room_id,
        Err(alias) if alias.server_name() == services.config.server_name => services.resolve_local_alias(&alias).await?,
        Err(alias) => {
            let (room_id, alias_servers) = services.federation.remote_alias(&alias).await?;
            servers.extend(alias_servers);
            room_id
        }
    };
    services
        .federation
        .join(&services.rooms, &room_id, user_id, &servers, req.body.reason.as_deref())
        .await?;
    Ok(RumaResponse(join_room_by_id_or_alias::v3::Response::new(room_id)))
}
