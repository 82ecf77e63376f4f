//! `POST /rooms/{roomId}/invite`.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::membership::invite_user::{self, v3::InvitationRecipient};
use ruma::events::room::member::MembershipState;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Error;
use crate::service::Services;
use crate::service::rooms::membership::MembershipChange;

/// `POST /_matrix/client/v3/rooms/{roomId}/invite`
pub async fn invite_user(
    State(services): State<Arc<Services>>,
    req: Ruma<invite_user::v3::Request>,
) -> HandlerResult<invite_user::v3::Response> {
    let sender = req.user_id()?;
    let InvitationRecipient::UserId(recipient) = &req.body.recipient else {
        return Err(Error::bad_request("Invites by email or phone are not available on this server"));
    };
    services
        .accounts
        .get_active(&recipient.user_id)
        .map_err(|_| Error::not_found("No such user"))?;
    let change = MembershipChange::new(sender, &recipient.user_id, MembershipState::Invite, recipient.reason.as_deref());
    services.rooms.change_membership(&req.body.room_id, change).await?;
    Ok(RumaResponse(invite_user::v3::Response::new()))
}
