//! `/_matrix/identity/v2/store-invite` and `sign-ed25519`: invitations to addresses nobody
//! published yet. Storing one mails the landing page's link (see
//! [`crate::service::email_invites`]); the caller sends the room's `m.room.third_party_invite`.

use std::sync::Arc;

use axum::extract::State;
use ruma::CanonicalJsonObject;
use ruma::api::identity_service::invitation::{sign_invitation_ed25519, store_invitation};
use serde_json::json;

use crate::api::client::administrative_contact::require_email;
use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Error;
use crate::service::Services;
use crate::service::email_invites::{new_ephemeral_key, redacted_address};
use crate::service::random_string;
use crate::service::server_key::key_pair;
use crate::service::threepids::normalize_email;

/// `POST /_matrix/identity/v2/store-invite`: only for the token holder's own invitations.
pub async fn store_invite(
    State(services): State<Arc<Services>>,
    req: Ruma<store_invitation::v2::Request>,
) -> HandlerResult<store_invitation::v2::Response> {
    let body = &req.body;
    if req.identity_user()? != body.sender {
        return Err(Error::forbidden("Invitations are stored for the token's own user only"));
    }
    require_email(&body.medium)?;
    let address = normalize_email(&body.address)?;
    if services.identity.bound(&address)?.is_some() {
        return Err(Error::threepid_in_use("A user published this address: invite them directly"));
    }
    services.rooms.check_joined(&body.room_id, &body.sender)?;
    let ephemeral_public_key = new_ephemeral_key();
    let invite = services.store_email_invite(
        &body.room_id,
        &body.sender,
        &address,
        random_string(32),
        ephemeral_public_key.clone(),
    )?;
    let keys = services.invite_public_keys(&ephemeral_public_key);
    let public_keys = serde_json::from_value(json!(keys))?;
    Ok(RumaResponse(store_invitation::v2::Response::new(
        invite.token,
        public_keys,
        redacted_address(&address),
    )))
}

/// `POST /_matrix/identity/v2/sign-ed25519`: signs `{mxid, sender, token}` of a stored
/// invitation with the ephemeral private key the caller holds.
pub async fn sign_ed25519(
    State(services): State<Arc<Services>>,
    req: Ruma<sign_invitation_ed25519::v2::Request>,
) -> HandlerResult<sign_invitation_ed25519::v2::Response> {
    req.identity_user()?;
    let body = &req.body;
    let invite = services
        .find_email_invite(&body.token)?
        .filter(|invite| invite.token == body.token)
        .ok_or_else(|| Error::not_found("No invitation has this token"))?;
    let seed: [u8; 32] = body
        .private_key
        .as_bytes()
        .try_into()
        .map_err(|_| Error::invalid_param("private_key is not an ed25519 key"))?;
    let pair = key_pair(&seed, "0".to_owned())?;
    let mut signed: CanonicalJsonObject = serde_json::from_value(json!({
        "mxid": body.mxid, "sender": invite.sender, "token": invite.token,
    }))?;
    ruma::signatures::sign_json(&services.identity_server_name(), &pair, &mut signed)
        .map_err(|e| Error::Internal(format!("signing an invitation: {e}")))?;
    let signatures = serde_json::from_value(serde_json::to_value(&signed["signatures"])?)?;
    Ok(RumaResponse(sign_invitation_ed25519::v2::Response::new(
        body.mxid.clone(),
        invite.sender,
        signatures,
        invite.token,
    )))
}
