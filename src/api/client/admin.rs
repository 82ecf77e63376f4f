//! The spec's admin endpoints: `GET /admin/whois/{userId}` (a user's devices with where and
//! when each was last seen, for server admins and for users asking about themselves, as
//! Synapse allows), and `GET`/`PUT /admin/suspend/{userId}` and `/admin/lock/{userId}` (server
//! admins restricting a local account).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::admin::get_user_info::v3::{ConnectionInfo, DeviceInfo, Request, Response, SessionInfo};
use ruma::api::client::admin::{is_user_locked, is_user_suspended, lock_user, suspend_user};
use ruma::{MilliSecondsSinceUnixEpoch, UInt, UserId};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::{Error, Result};
use crate::service::Services;
use crate::service::accounts::UserRecord;

/// Refuses unless `asker` is a server admin.
fn check_admin(services: &Services, asker: &UserId) -> Result<()> {
    if services.accounts.get_active(asker)?.admin {
        Ok(())
    } else {
        Err(Error::forbidden("Only server admins may do this"))
    }
}

/// The record of a local account, for a server admin; 404 for others.
fn local_account(services: &Services, asker: &UserId, target: &UserId) -> Result<UserRecord> {
    check_admin(services, asker)?;
    if target.server_name() != services.config.server_name {
        return Err(Error::not_found("Only accounts of this server can be restricted here"));
    }
    services
        .accounts
        .get(target)?
        .ok_or_else(|| Error::not_found("No such user on this server"))
}

/// `GET /_matrix/client/v1/admin/suspend/{userId}`
pub async fn is_suspended(
    State(services): State<Arc<Services>>,
    req: Ruma<is_user_suspended::v1::Request>,
) -> HandlerResult<is_user_suspended::v1::Response> {
    let record = local_account(&services, req.user_id()?, &req.body.user_id)?;
    Ok(RumaResponse(is_user_suspended::v1::Response::new(record.suspended)))
}

/// `PUT /_matrix/client/v1/admin/suspend/{userId}`
pub async fn suspend(
    State(services): State<Arc<Services>>,
    req: Ruma<suspend_user::v1::Request>,
) -> HandlerResult<suspend_user::v1::Response> {
    local_account(&services, req.user_id()?, &req.body.user_id)?;
    let suspended = req.body.suspended;
    let record = services
        .accounts
        .restrict(&req.body.user_id, |record| record.suspended = suspended)?;
    Ok(RumaResponse(suspend_user::v1::Response::new(record.suspended)))
}

/// `GET /_matrix/client/v1/admin/lock/{userId}`
pub async fn is_locked(
    State(services): State<Arc<Services>>,
    req: Ruma<is_user_locked::v1::Request>,
) -> HandlerResult<is_user_locked::v1::Response> {
    let record = local_account(&services, req.user_id()?, &req.body.user_id)?;
    Ok(RumaResponse(is_user_locked::v1::Response::new(record.locked)))
}

/// `PUT /_matrix/client/v1/admin/lock/{userId}`
pub async fn lock(State(services): State<Arc<Services>>, req: Ruma<lock_user::v1::Request>) -> HandlerResult<lock_user::v1::Response> {
    let asker = req.user_id()?;
    local_account(&services, asker, &req.body.user_id)?;
    if asker == req.body.user_id {
        return Err(Error::invalid_param("Admins cannot lock themselves out"));
    }
    let locked = req.body.locked;
    let record = services.accounts.restrict(&req.body.user_id, |record| record.locked = locked)?;
    Ok(RumaResponse(lock_user::v1::Response::new(record.locked)))
}

/// `GET /_matrix/client/v3/admin/whois/{userId}`
pub async fn whois(State(services): State<Arc<Services>>, req: Ruma<Request>) -> HandlerResult<Response> {
    let asker = req.user_id()?;
    let target = &req.body.user_id;
    if asker != target {
        check_admin(&services, asker)?;
    }
    if target.server_name() != services.config.server_name || services.accounts.get(target)?.is_none() {
        return Err(Error::not_found("No such user on this server"));
    }
    let mut devices = BTreeMap::new();
    for device in services.devices.list(target)? {
        let mut connection = ConnectionInfo::new();
        connection.ip = device.last_seen_ip;
        connection.last_seen = device.last_seen_ts.map(|ts| MilliSecondsSinceUnixEpoch(UInt::new_saturating(ts)));
        let mut session = SessionInfo::new();
        session.connections = vec![connection];
        let mut info = DeviceInfo::new();
        info.sessions = vec![session];
        devices.insert(device.device_id.to_string(), info);
    }
    let mut response = Response::new();
    response.user_id = Some(target.clone());
    response.devices = devices;
    Ok(RumaResponse(response))
}
