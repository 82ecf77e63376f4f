//! `GET /admin/whois/{userId}`: a user's devices with where and when each was last seen, for
//! server admins (and for users asking about themselves, as Synapse allows).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::admin::get_user_info::v3::{ConnectionInfo, DeviceInfo, Request, Response, SessionInfo};
use ruma::{MilliSecondsSinceUnixEpoch, UInt};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Error;
use crate::service::Services;

/// `GET /_matrix/client/v3/admin/whois/{userId}`
pub async fn whois(State(services): State<Arc<Services>>, req: Ruma<Request>) -> HandlerResult<Response> {
    let asker = req.user_id()?;
    let target = &req.body.user_id;
    if asker != target && !services.accounts.get_active(asker)?.admin {
        return Err(Error::forbidden("Only server admins may look up other users"));
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
