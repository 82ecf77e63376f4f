//! `/profile/{userId}`: the whole profile and each field (`displayname`, `avatar_url`, …).

use std::sync::Arc;

use axum::extract::State;
use ruma::UserId;
use ruma::api::client::profile::{delete_profile_field, get_profile, get_profile_field, set_profile_field};
use ruma::profile::ProfileFieldValue;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::{Error, Result};
use crate::service::Services;

/// Profiles exist for active local users only.
fn check_user(services: &Services, user_id: &UserId) -> Result<()> {
    services
        .accounts
        .get_active(user_id)
        .map_err(|_| Error::not_found("No such user"))
        .map(|_| ())
}

/// `GET /_matrix/client/v3/profile/{userId}`
pub async fn get_profile(
    State(services): State<Arc<Services>>,
    req: Ruma<get_profile::v3::Request>,
) -> HandlerResult<get_profile::v3::Response> {
    check_user(&services, &req.body.user_id)?;
    let mut response = get_profile::v3::Response::default();
    response.data = services.profiles.get(&req.body.user_id)?;
    Ok(RumaResponse(response))
}

/// `GET /_matrix/client/v3/profile/{userId}/{keyName}`
pub async fn get_profile_field(
    State(services): State<Arc<Services>>,
    req: Ruma<get_profile_field::v3::Request>,
) -> HandlerResult<get_profile_field::v3::Response> {
    check_user(&services, &req.body.user_id)?;
    let profile = services.profiles.get(&req.body.user_id)?;
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
    services.profiles.set_field(&req.body.user_id, req.body.value.clone())?;
    Ok(RumaResponse(set_profile_field::v3::Response::new()))
}

/// `DELETE /_matrix/client/v3/profile/{userId}/{keyName}`
pub async fn delete_profile_field(
    State(services): State<Arc<Services>>,
    req: Ruma<delete_profile_field::v3::Request>,
) -> HandlerResult<delete_profile_field::v3::Response> {
    req.require_owner(&req.body.user_id, "You cannot change another user's profile")?;
    services.profiles.delete_field(&req.body.user_id, &req.body.field)?;
    Ok(RumaResponse(delete_profile_field::v3::Response::new()))
}
