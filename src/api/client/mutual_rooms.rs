//! `GET /_matrix/client/v1/mutual_rooms`: the rooms the requester and another user are both
//! joined to, a page of 100 at a time (the next page's token is the room ID to start after).

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::membership::get_mutual_rooms;
use ruma::events::room::member::MembershipState;
use ruma::{OwnedRoomId, UInt};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::{Error, Result};
use crate::service::Services;

/// Rooms per page.
const PAGE: usize = 100;

/// The mutual rooms of the requester and `user_id`, sorted, with the page after `from`; the
/// total count and the next page's token.
fn mutual_rooms(
    services: &Services,
    requester: &ruma::UserId,
    user_id: &ruma::UserId,
    from: Option<&str>,
) -> Result<(usize, Vec<OwnedRoomId>, Option<String>)> {
    if requester == user_id {
        return Err(Error::invalid_param("Mutual rooms are asked about another user"));
    }
    let theirs = services.rooms.rooms_of_user(user_id, &MembershipState::Join)?;
    let mut mutual: Vec<OwnedRoomId> = services
        .rooms
        .rooms_of_user(requester, &MembershipState::Join)?
        .into_iter()
        .filter(|room| theirs.contains(room))
        .collect();
    mutual.sort();
    let count = mutual.len();
    let page: Vec<OwnedRoomId> = mutual
        .into_iter()
        .filter(|room| from.is_none_or(|after| room.as_str() > after))
        .take(PAGE + 1)
        .collect();
    let next_batch = (page.len() > PAGE).then(|| page[PAGE - 1].to_string());
    Ok((count, page.into_iter().take(PAGE).collect(), next_batch))
}

/// `GET /_matrix/client/v1/mutual_rooms`
pub async fn get_mutual_rooms(
    State(services): State<Arc<Services>>,
    req: Ruma<get_mutual_rooms::v1::Request>,
) -> HandlerResult<get_mutual_rooms::v1::Response> {
    let (count, joined, next_batch) = mutual_rooms(&services, req.user_id()?, &req.body.user_id, req.body.from.as_deref())?;
    let mut response = get_mutual_rooms::v1::Response::new(UInt::try_from(count).unwrap_or_default(), joined);
    response.next_batch = next_batch;
    Ok(RumaResponse(response))
}

/// `GET /_matrix/client/unstable/uk.half-shot.msc2666/user/mutual_rooms`
pub async fn get_mutual_rooms_unstable(
    State(services): State<Arc<Services>>,
    req: Ruma<get_mutual_rooms::unstable::Request>,
) -> HandlerResult<get_mutual_rooms::unstable::Response> {
    let (_, joined, next_batch) = mutual_rooms(&services, req.user_id()?, &req.body.user_id, req.body.from.as_deref())?;
    let mut response = get_mutual_rooms::unstable::Response::new(joined);
    response.next_batch = next_batch;
    Ok(RumaResponse(response))
}
