//! `/profile/{userId}`: the whole profile and each field (`displayname`, `avatar_url`, …), of
//! users of other servers too (asked over federation). A change of the display name or avatar
//! reaches the user's rooms as new member events.

use std::sync::Arc;

use axum::extract::State;
use ruma::UserId;
use ruma::api::client::profile::{delete_profile_field, get_profile, get_profile_field, set_profile_field};
use ruma::profile::{ProfileFieldName, ProfileFieldValue, UserProfile};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::{Error, Result};
use crate::service::Services;

/// A user's profile (only `field` when given): a local user's if active, another server's
/// user's as their server tells.
async fn profile_of(services: &Services, user_id: &UserId, field: Option<ProfileFieldName>) -> Result<UserProfile> {
    if user_id.server_name() != services.config.server_name {
        return services.federation.remote_profile(user_id, field).await;
    }
    if !services.local_user_exists(user_id).await? {
        return Err(Error::not_found("No such user"));
    }
    services
        .accounts
        .get_active(user_id)
        .map_err(|_| Error::not_found("No such user"))?;
    services.profiles.get(user_id)
}

/// `GET /_matrix/client/v3/profile/{userId}`
pub async fn get_profile(
    State(services): State<Arc<Services>>,
    req: Ruma<get_profile::v3::Request>,
) -> HandlerResult<get_profile::v3::Response> {
    let mut response = get_profile::v3::Response::default();
    response.data = profile_of(&services, &req.body.user_id, None).await?;
    Ok(RumaResponse(response))
}

/// `GET /_matrix/client/v3/profile/{userId}/{keyName}`
pub async fn get_profile_field(
    State(services): State<Arc<Services>>,
    req: Ruma<get_profile_field::v3::Request>,
) -> HandlerResult<get_profile_field::v3::Response> {
    let profile = profile_of(&services, &req.body.user_id, Some(req.body.field.clone())).await?;
    let value = profile
        .get(req.body.field.as_str())
        .and_then(|value| ProfileFieldValue::new(req.body.field.as_str(), value.clone()).ok())
        .ok_or_else(|| Error::not_found("The profile field is not set"))?;
    Ok(RumaResponse(get_profile_field::v3::Response::new(value)))
}

/// `PUT /_matrix/client/v3/profile/{userId}/{keyName}`
pub async fn set_profile_field(
    State(services): State<Arc<Services>>,
    req: Ruma<set_profile_field::v3::Request>,
) -> HandlerResult<set_profile_field::v3::Response> {
    req.require_owner(&req.body.user_id, "You cannot change another user's profile")?;
    services.accounts.check_not_suspended(&req.body.user_id)?;
    services.profiles.set_field(&req.body.user_id, req.body.value.clone())?;
    services.rooms.refresh_member_profiles(&req.body.user_id).await?;
    Ok(RumaResponse(set_profile_field::v3::Response::new()))
}

/// `DELETE /_matrix/client/v3/profile/{userId}/{keyName}`
pub async fn delete_profile_field(
    State(services): State<Arc<Services>>,
    req: Ruma<delete_profile_field::v3::Request>,
) -> HandlerResult<delete_profile_field::v3::Response> {
    req.require_owner(&req.body.user_id, "You cannot change another user's profile")?;
    services.accounts.check_not_suspended(&req.body.user_id)?;
    services.profiles.delete_field(&req.body.user_id, &req.body.field)?;
    services.rooms.refresh_member_profiles(&req.body.user_id).await?;
    Ok(RumaResponse(delete_profile_field::v3::Response::new()))
}
