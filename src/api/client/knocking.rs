//! `POST /knock/{roomIdOrAlias}`: asking to join a room whose join rule is `knock`, here or,
//! over federation, on another server.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::knock::knock_room;
use ruma::events::room::member::MembershipState;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::service::Services;
use crate::service::rooms::membership::MembershipChange;

/// `POST /_matrix/client/v3/knock/{roomIdOrAlias}`
pub async fn knock_room(
    State(services): State<Arc<Services>>,
    req: Ruma<knock_room::v3::Request>,
) -> HandlerResult<knock_room::v3::Response> {
    let user = req.user_id()?;
    services.accounts.check_not_suspended(user)?;
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
    if services.rooms.room(&room_id).is_err() {
        servers.extend(room_id.server_name().map(ToOwned::to_owned));
        services
            .federation
            .knock_remote(&services.rooms, &room_id, user, &servers, req.body.reason.as_deref())
            .await?;
        return Ok(RumaResponse(knock_room::v3::Response::new(room_id)));
    }
    let change = MembershipChange::new(user, user, MembershipState::Knock, req.body.reason.as_deref());
    services.rooms.change_membership(&room_id, change).await?;
    Ok(RumaResponse(knock_room::v3::Response::new(room_id)))
}
