//! The public room directory: `GET/POST /publicRooms` (with search and paging) and
//! `GET/PUT /directory/list/room/{roomId}`.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::directory::{get_public_rooms, get_public_rooms_filtered, get_room_visibility, set_room_visibility};
use ruma::api::client::room::Visibility;
use ruma::directory::PublicRoomsChunk;
use ruma::{ServerName, UInt, UserId};
use serde_json::Value;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::config::DirectoryPublishers;
use crate::error::{Error, Result};
use crate::service::Services;

/// The most rooms one page lists.
const MAX_LIMIT: usize = 500;

/// One page of the directory.
struct DirectoryPage {
    chunk: Vec<PublicRoomsChunk>,
    next_batch: Option<String>,
    prev_batch: Option<String>,
    total: usize,
}

/// The listed rooms whose name, topic or alias contains `search` (case-insensitively), most
/// members first, paged by offset tokens (`o<N>`).
fn directory_page(
    services: &Services,
    server: Option<&ServerName>,
    search: Option<&str>,
    limit: Option<UInt>,
    since: Option<&str>,
) -> Result<DirectoryPage> {
    if server.is_some_and(|server| server != services.config.server_name) {
        return Err(Error::forbidden(
            "Directories of other servers are not available: federation is not available yet",
        ));
    }
    let offset = match since {
        Some(token) => token
            .strip_prefix('o')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| Error::invalid_param("Invalid `since` token"))?,
        None => 0,
    };
    let search = search.map(str::to_lowercase).filter(|term| !term.is_empty());
    let mut rooms: Vec<Value> = services
        .rooms
        .public_rooms()?
        .into_iter()
        .filter(|room| {
            search.as_ref().is_none_or(|term| {
                ["name", "topic", "canonical_alias"]
                    .iter()
                    .any(|field| room[field].as_str().is_some_and(|text| text.to_lowercase().contains(term)))
            })
        })
        .collect();
    rooms.sort_by(|a, b| {
        b["num_joined_members"]
            .as_u64()
            .cmp(&a["num_joined_members"].as_u64())
            .then_with(|| a["room_id"].as_str().cmp(&b["room_id"].as_str()))
    });
    let total = rooms.len();
    let limit = limit.map_or(MAX_LIMIT, |l| u64::from(l) as usize).clamp(1, MAX_LIMIT);
    let chunk = rooms
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(serde_json::from_value)
        .collect::<Result<Vec<PublicRoomsChunk>, _>>()?;
    Ok(DirectoryPage {
        next_batch: (offset + chunk.len() < total).then(|| format!("o{}", offset + chunk.len())),
        prev_batch: (offset > 0).then(|| format!("o{}", offset.saturating_sub(limit))),
        chunk,
        total,
    })
}

/// `GET /_matrix/client/v3/publicRooms`
pub async fn get_public_rooms(
    State(services): State<Arc<Services>>,
    req: Ruma<get_public_rooms::v3::Request>,
) -> HandlerResult<get_public_rooms::v3::Response> {
    let request = &req.body;
    let page = directory_page(&services, request.server.as_deref(), None, request.limit, request.since.as_deref())?;
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
        search,
        request.limit,
        request.since.as_deref(),
    )?;
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
