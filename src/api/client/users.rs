//! `POST /user_directory/search`: people who share a room with the searcher or are in a room
//! listed in the public directory, matched on user ID or display name (this server's users'
//! from their profile, other servers' from their member event in a room they are in).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::user_directory::search_users;
use ruma::events::StateEventType;
use ruma::events::room::member::MembershipState;
use ruma::{OwnedMxcUri, OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde_json::{Map, Value};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Result;
use crate::service::Services;

/// Everyone the searcher may find (members of their rooms and of public rooms), each with a
/// room they are joined to.
fn visible_users(services: &Services, searcher: &UserId) -> Result<BTreeMap<OwnedUserId, OwnedRoomId>> {
    let mut rooms = services.rooms.rooms_of_user(searcher, &MembershipState::Join)?;
    rooms.extend(services.rooms.published_rooms()?);
    let mut users = BTreeMap::new();
    for room in rooms {
        for (user, membership) in services.rooms.members(&room)?.iter() {
            if *membership == MembershipState::Join {
                users.entry(user.clone()).or_insert_with(|| room.clone());
            }
        }
    }
    Ok(users)
}

/// A user's profile as the directory shows it: a local user's own, another server's user's
/// from their member event in `room`.
fn profile_of(services: &Services, user: &UserId, room: &RoomId) -> Result<Map<String, Value>> {
    if user.server_name() == services.config.server_name {
        let profile = serde_json::to_value(services.profiles.get(user)?)?;
        return Ok(profile.as_object().cloned().unwrap_or_default());
    }
    let state = services.rooms.current_state(room)?;
    Ok(services
        .rooms
        .state_content(&state, &StateEventType::RoomMember, user.as_str())?
        .and_then(|content| content.as_object().cloned())
        .unwrap_or_default())
}

/// `POST /_matrix/client/v3/user_directory/search`
pub async fn search_users(
    State(services): State<Arc<Services>>,
    req: Ruma<search_users::v3::Request>,
) -> HandlerResult<search_users::v3::Response> {
    let term = req.body.search_term.to_lowercase();
    let limit = u64::from(req.body.limit).clamp(1, 100) as usize;
    let mut results = Vec::new();
    let mut limited = false;
    for (user_id, room) in visible_users(&services, req.user_id()?)? {
        let profile = profile_of(&services, &user_id, &room)?;
        let display_name = profile.get("displayname").and_then(Value::as_str).map(str::to_owned);
        let matches = user_id.as_str().to_lowercase().contains(&term)
            || display_name.as_deref().is_some_and(|name| name.to_lowercase().contains(&term));
        if !matches {
            continue;
        }
        if results.len() == limit {
            limited = true;
            break;
        }
        let mut user = search_users::v3::User::new(user_id);
        user.display_name = display_name;
        user.avatar_url = profile.get("avatar_url").and_then(Value::as_str).map(OwnedMxcUri::from);
        results.push(user);
    }
    Ok(RumaResponse(search_users::v3::Response::new(results, limited)))
}
