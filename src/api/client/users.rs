//! `POST /user_directory/search`: people who share a room with the searcher or are in a room
//! listed in the public directory, matched on user ID or display name.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::user_directory::search_users;
use ruma::events::room::member::MembershipState;
use ruma::{OwnedMxcUri, OwnedUserId, UserId};
use serde_json::Value;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Result;
use crate::service::Services;

/// Everyone the searcher may find: members of their rooms and of public rooms.
fn visible_users(services: &Services, searcher: &UserId) -> Result<BTreeSet<OwnedUserId>> {
    let mut rooms = services.rooms.rooms_of_user(searcher, &MembershipState::Join)?;
    rooms.extend(services.rooms.published_rooms()?);
    let mut users = BTreeSet::new();
    for room in rooms {
        for (user, membership) in services.rooms.members(&room)? {
            if membership == MembershipState::Join {
                users.insert(user);
            }
        }
    }
    Ok(users)
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
    for user_id in visible_users(&services, req.user_id()?)? {
        let profile = services.profiles.get(&user_id)?;
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
