//! The email addresses of an account (`/account/3pid/*`): confirming one by a mailed link,
//! adding it behind user-interactive authentication, listing and removing them, and
//! publishing them to (or withdrawing them from) the identity service, which is this server.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::account::{
    ThirdPartyIdRemovalStatus, add_3pid, bind_3pid, delete_3pid, get_3pids, request_3pid_management_token_via_email, unbind_3pid,
};
use ruma::thirdparty::{Medium, ThirdPartyIdentifier, ThirdPartyIdentifierInit};
use ruma::{MilliSecondsSinceUnixEpoch, UInt};

use super::device_management::password_flows;
use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::{Error, Result};
use crate::service::Services;
use crate::service::threepids::{Purpose, normalize_email};

email_token_handler!(
    /// `POST /_matrix/client/v3/account/3pid/email/requestToken`
    request_token,
    request_3pid_management_token_via_email::v3,
    Purpose::AddToAccount
);

/// `POST /_matrix/client/v3/account/3pid/add`
pub async fn add_3pid(State(services): State<Arc<Services>>, req: Ruma<add_3pid::v3::Request>) -> HandlerResult<add_3pid::v3::Response> {
    let session = req.session()?;
    services
        .authenticate_uia(&password_flows(), req.body.auth.as_ref(), Some(&session.user_id), req.ip)
        .await?;
    services.add_email_to_account(&session.user_id, req.body.sid.as_str(), req.body.client_secret.as_str())?;
    Ok(RumaResponse(add_3pid::v3::Response::new()))
}

/// `GET /_matrix/client/v3/account/3pid`
pub async fn get_3pids(State(services): State<Arc<Services>>, req: Ruma<get_3pids::v3::Request>) -> HandlerResult<get_3pids::v3::Response> {
    let threepids = services
        .threepids
        .of_user(req.user_id()?)?
        .into_iter()
        .map(|(address, record)| {
            let at = |ts: u64| MilliSecondsSinceUnixEpoch(UInt::new_saturating(ts));
            ThirdPartyIdentifier::from(ThirdPartyIdentifierInit {
                address,
                medium: Medium::Email,
                validated_at: at(record.validated_ts),
                added_at: at(record.added_ts),
            })
        })
        .collect();
    Ok(RumaResponse(get_3pids::v3::Response::new(threepids)))
}

/// `POST /_matrix/client/v3/account/3pid/delete`: removes the address from the account and
/// from the identity service.
pub async fn delete_3pid(
    State(services): State<Arc<Services>>,
    req: Ruma<delete_3pid::v3::Request>,
) -> HandlerResult<delete_3pid::v3::Response> {
    require_email(&req.body.medium)?;
    services.remove_email_from_account(req.user_id()?, &req.body.address)?;
    Ok(RumaResponse(delete_3pid::v3::Response::new(ThirdPartyIdRemovalStatus::Success)))
}

/// `POST /_matrix/client/v3/account/3pid/bind`: publishes an address confirmed with the
/// identity service (its `validate/email` session), so that others find the user by it; the
/// invitations waiting for it become invites.
pub async fn bind_3pid(State(services): State<Arc<Services>>, req: Ruma<bind_3pid::v3::Request>) -> HandlerResult<bind_3pid::v3::Response> {
    let user_id = req.user_id()?;
    let info = &req.body.identity_server_info;
    services.check_identity_access(&info.id_server, &info.id_access_token, user_id)?;
    services
        .bind_email(user_id, req.body.sid.as_str(), req.body.client_secret.as_str())
        .await?;
    Ok(RumaResponse(bind_3pid::v3::Response::new()))
}

/// `POST /_matrix/client/v3/account/3pid/unbind`: withdraws an address from the identity
/// service; it stays on the account.
pub async fn unbind_3pid(
    State(services): State<Arc<Services>>,
    req: Ruma<unbind_3pid::v3::Request>,
) -> HandlerResult<unbind_3pid::v3::Response> {
    require_email(&req.body.medium)?;
    if let Some(id_server) = &req.body.id_server
        && !services.is_own_identity_server(id_server)
    {
        return Ok(RumaResponse(unbind_3pid::v3::Response::new(ThirdPartyIdRemovalStatus::NoSupport)));
    }
    let address = normalize_email(&req.body.address)?;
    let mut batch = services.store.batch();
    services.identity.stage_unbind(&mut batch, req.user_id()?, &address)?;
    batch.commit()?;
    Ok(RumaResponse(unbind_3pid::v3::Response::new(ThirdPartyIdRemovalStatus::Success)))
}

/// Refuses media other than email.
pub fn require_email(medium: &Medium) -> Result<()> {
    match medium {
        Medium::Email => Ok(()),
        _ => Err(Error::threepid_medium_not_supported("Only email addresses are supported")),
    }
}
