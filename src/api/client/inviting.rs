//! `POST /rooms/{roomId}/invite`: users of this server, and of others over federation, and
//! email addresses (through the identity service, which is this server): a normal invite when
//! a user published the address, otherwise a third-party invite and a mail.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::membership::invite_user::{self, v3::InvitationRecipient};

use super::administrative_contact::require_email;
use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Error;
use crate::service::Services;

/// `POST /_matrix/client/v3/rooms/{roomId}/invite`
pub async fn invite_user(
    State(services): State<Arc<Services>>,
    req: Ruma<invite_user::v3::Request>,
) -> HandlerResult<invite_user::v3::Response> {
    let sender = req.user_id()?;
    services.accounts.check_not_suspended(sender)?;
    let recipient = match &req.body.recipient {
        InvitationRecipient::UserId(recipient) => recipient,
        InvitationRecipient::ThirdPartyId(invite) => {
            require_email(&invite.medium)?;
            services.check_identity_access(&invite.id_server, &invite.id_access_token, sender)?;
            services.invite_by_email(&req.body.room_id, sender, &invite.address).await?;
            return Ok(RumaResponse(invite_user::v3::Response::new()));
        }
        _ => return Err(Error::bad_request("Unknown kind of invitation")),
    };
    let target = &recipient.user_id;
    if target.server_name() == services.config.server_name {
        // A bridge's user that does not exist yet is asked of the bridge (it may create it).
        if !services.local_user_exists(target).await? {
            return Err(Error::not_found("No such user"));
        }
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
