//! The public room directory: `GET/POST /publicRooms` (with search and paging; `server` asks
//! another server's directory over federation) and
//! `GET/PUT /directory/list/room/{roomId}`.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::directory::{get_public_rooms, get_public_rooms_filtered, get_room_visibility, set_room_visibility};
use ruma::api::client::room::Visibility;
use ruma::directory::RoomNetwork;
use ruma::{ServerName, UInt, UserId};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::config::DirectoryPublishers;
use crate::error::{Error, Result};
use crate::service::Services;
use crate::service::rooms::directory::DirectoryPage;

/// A page of the directory of this server, or of another asked over federation.
async fn directory_page(
    services: &Services,
    server: Option<&ServerName>,
    network: &RoomNetwork,
    search: Option<&str>,
    limit: Option<UInt>,
    since: Option<&str>,
) -> Result<DirectoryPage> {
    match server {
        Some(server) if server != services.config.server_name => {
            services.federation.remote_public_rooms(server, search, limit, since).await
        }
        _ => services.rooms.directory_page(network, search, limit, since),
    }
}

/// `GET /_matrix/client/v3/publicRooms`
pub async fn get_public_rooms(
    State(services): State<Arc<Services>>,
    req: Ruma<get_public_rooms::v3::Request>,
) -> HandlerResult<get_public_rooms::v3::Response> {
    let request = &req.body;
    let page = directory_page(
        &services,
        request.server.as_deref(),
        &RoomNetwork::Matrix,
        None,
        request.limit,
        request.since.as_deref(),
    )
    .await?;
    let mut response = get_public_rooms::v3::Response::new(page.chunk);
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.total_room_count_estimate = UInt::new(page.total as u64);
    Ok(RumaResponse(response))
}

/// `POST /_matrix/client/v3/publicRooms`
pub async fn get_public_rooms_filtered(
    State(services): State<Arc<Services>>,
    req: Ruma<get_public_rooms_filtered::v3::Request>,
) -> HandlerResult<get_public_rooms_filtered::v3::Response> {
    let request = &req.body;
    let search = request.filter.generic_search_term.as_deref();
    let page = directory_page(
        &services,
        request.server.as_deref(),
        &request.room_network,
        search,
        request.limit,
        request.since.as_deref(),
    )
    .await?;
    let mut response = get_public_rooms_filtered::v3::Response::new();
    response.chunk = page.chunk;
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.total_room_count_estimate = UInt::new(page.total as u64);
    Ok(RumaResponse(response))
}

/// `GET /_matrix/client/v3/directory/list/room/{roomId}`
pub async fn get_room_visibility(
    State(services): State<Arc<Services>>,
    req: Ruma<get_room_visibility::v3::Request>,
) -> HandlerResult<get_room_visibility::v3::Response> {
    services.rooms.room(&req.body.room_id)?;
    let visibility = if services.rooms.is_published(&req.body.room_id)? {
        Visibility::Public
    } else {
        Visibility::Private
    };
    Ok(RumaResponse(get_room_visibility::v3::Response::new(visibility)))
}

/// Whether `user` may list or unlist the room, per `directory.publish`.
pub fn check_may_publish(services: &Services, room_id: &ruma::RoomId, user: &UserId) -> Result<()> {
    let allowed = match services.config.directory.publish {
        DirectoryPublishers::ServerAdmins => services.accounts.get_active(user)?.admin,
        DirectoryPublishers::RoomAdmins => services.rooms.may_manage_listing(room_id, user)? || services.accounts.get_active(user)?.admin,
    };
    if !allowed {
        return Err(Error::forbidden("You may not change this room's directory listing"));
    }
    Ok(())
}

/// `PUT /_matrix/client/v3/directory/list/room/{roomId}`
pub async fn set_room_visibility(
    State(services): State<Arc<Services>>,
    req: Ruma<set_room_visibility::v3::Request>,
) -> HandlerResult<set_room_visibility::v3::Response> {
    let room_id = &req.body.room_id;
    services.rooms.room(room_id)?;
    check_may_publish(&services, room_id, req.user_id()?)?;
    services.rooms.set_published(room_id, req.body.visibility == Visibility::Public)?;
    Ok(RumaResponse(set_room_visibility::v3::Response::new()))
}
