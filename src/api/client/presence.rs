//! `GET/PUT /presence/{userId}/status`: a user's presence, for those who share a room with them.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use ruma::api::client::presence::{get_presence, set_presence};
use ruma::events::room::member::MembershipState;
use ruma::presence::PresenceState;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Error;
use crate::service::{Services, now_ms};

/// `PUT /_matrix/client/v3/presence/{userId}/status`
pub async fn set_presence(
    State(services): State<Arc<Services>>,
    req: Ruma<set_presence::v3::Request>,
) -> HandlerResult<set_presence::v3::Response> {
    let request = &req.body;
    req.require_owner(&request.user_id, "You can only set your own presence")?;
    services.set_presence(&request.user_id, request.presence.as_str(), Some(request.status_msg.clone()))?;
    Ok(RumaResponse(set_presence::v3::Response::new()))
}

/// `GET /_matrix/client/v3/presence/{userId}/status`
pub async fn get_presence(
    State(services): State<Arc<Services>>,
    req: Ruma<get_presence::v3::Request>,
) -> HandlerResult<get_presence::v3::Response> {
    let viewer = req.user_id()?;
    let user = &req.body.user_id;
    let viewer_rooms = services.rooms.rooms_of_user(viewer, &MembershipState::Join)?.into_iter().collect();
    if !services.presence.visible_to(&services.rooms, user, viewer, &viewer_rooms)? {
        return Err(Error::forbidden("You share no room with this user"));
    }
    let record = services
        .presence
        .get(user)?
        .ok_or_else(|| Error::not_found("This user has no presence yet"))?;
    let mut response = get_presence::v3::Response::new(PresenceState::from(record.effective()));
    response.status_msg = record.status_msg.clone();
    response.last_active_ago = Some(Duration::from_millis(now_ms().saturating_sub(record.last_active_ts)));
    response.currently_active = record.content()["currently_active"].as_bool();
    Ok(RumaResponse(response))
}
