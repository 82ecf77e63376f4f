//! `POST /rooms/{roomId}/invite`: users of this server, and of others over federation.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::membership::invite_user::{self, v3::InvitationRecipient};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Error;
use crate::service::Services;

/// `POST /_matrix/client/v3/rooms/{roomId}/invite`
pub async fn invite_user(
    State(services): State<Arc<Services>>,
    req: Ruma<invite_user::v3::Request>,
) -> HandlerResult<invite_user::v3::Response> {
    let sender = req.user_id()?;
    let InvitationRecipient::UserId(recipient) = &req.body.recipient else {
        return Err(Error::bad_request("Invites by email or phone are not available on this server"));
    };
    let target = &recipient.user_id;
    if target.server_name() == services.config.server_name {
        services.accounts.get_active(target).map_err(|_| Error::not_found("No such user"))?;
    }
    services
        .federation
        .invite(
            &services.rooms,
            &req.body.room_id,
            sender,
            target,
            recipient.reason.as_deref(),
            false,
        )
        .await?;
    Ok(RumaResponse(invite_user::v3::Response::new()))
}
