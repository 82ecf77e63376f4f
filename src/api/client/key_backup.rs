//! Server-side key backups (`/room_keys/version` and `/room_keys/keys`): versions of a user's
//! encrypted room-key backup, and the keys in them, by room and session.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::backup::{
    RoomKeyBackup, add_backup_keys, add_backup_keys_for_room, add_backup_keys_for_session, create_backup_version, delete_backup_keys,
    delete_backup_keys_for_room, delete_backup_keys_for_session, delete_backup_version, get_backup_info, get_backup_keys,
    get_backup_keys_for_room, get_backup_keys_for_session, get_latest_backup_info, update_backup_version,
};
use ruma::serde::Raw;
use ruma::{OwnedRoomId, UInt};
use serde_json::Value;

use super::rooms::{json, raw};
use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::{Error, Result};
use crate::service::Services;
use crate::service::key_backup::{BackedUpKeys, KeySelection};

fn count(count: u64) -> UInt {
    UInt::new(count).unwrap_or(UInt::MAX)
}

fn sessions(keys: &BTreeMap<String, Value>) -> Result<BTreeMap<String, Raw<ruma::api::client::backup::KeyBackupData>>> {
    keys.iter().map(|(session, key)| Ok((session.clone(), raw(key)?))).collect()
}

fn rooms(keys: &BackedUpKeys) -> Result<BTreeMap<OwnedRoomId, RoomKeyBackup>> {
    keys.iter()
        .map(|(room_id, keys)| Ok((room_id.clone(), RoomKeyBackup::new(sessions(keys)?))))
        .collect()
}

/// `POST /_matrix/client/v3/room_keys/version`
pub async fn create_backup_version(
    State(services): State<Arc<Services>>,
    req: Ruma<create_backup_version::v3::Request>,
) -> HandlerResult<create_backup_version::v3::Response> {
    let version = services.key_backup.create_version(req.user_id()?, json(&req.body.algorithm)?)?;
    Ok(RumaResponse(create_backup_version::v3::Response::new(version)))
}

/// `GET /_matrix/client/v3/room_keys/version`
pub async fn get_latest_backup_info(
    State(services): State<Arc<Services>>,
    req: Ruma<get_latest_backup_info::v3::Request>,
) -> HandlerResult<get_latest_backup_info::v3::Response> {
    let (version, info) = services
        .key_backup
        .latest(req.user_id()?)?
        .ok_or_else(|| Error::not_found("No backup exists"))?;
    Ok(RumaResponse(get_latest_backup_info::v3::Response::new(
        raw(&info.algorithm)?,
        count(info.count),
        info.etag.to_string(),
        version,
    )))
}

/// `GET /_matrix/client/v3/room_keys/version/{version}`
pub async fn get_backup_info(
    State(services): State<Arc<Services>>,
    req: Ruma<get_backup_info::v3::Request>,
) -> HandlerResult<get_backup_info::v3::Response> {
    let info = services.key_backup.version(req.user_id()?, &req.body.version)?;
    Ok(RumaResponse(get_backup_info::v3::Response::new(
        raw(&info.algorithm)?,
        count(info.count),
        info.etag.to_string(),
        req.body.version.clone(),
    )))
}

/// `PUT /_matrix/client/v3/room_keys/version/{version}`
pub async fn update_backup_version(
    State(services): State<Arc<Services>>,
    req: Ruma<update_backup_version::v3::Request>,
) -> HandlerResult<update_backup_version::v3::Response> {
    services
        .key_backup
        .update_version(req.user_id()?, &req.body.version, json(&req.body.algorithm)?)?;
    Ok(RumaResponse(update_backup_version::v3::Response::new()))
}

/// `DELETE /_matrix/client/v3/room_keys/version/{version}`
pub async fn delete_backup_version(
    State(services): State<Arc<Services>>,
    req: Ruma<delete_backup_version::v3::Request>,
) -> HandlerResult<delete_backup_version::v3::Response> {
    services.key_backup.delete_version(req.user_id()?, &req.body.version)?;
    Ok(RumaResponse(delete_backup_version::v3::Response::new()))
}

/// `PUT /_matrix/client/v3/room_keys/keys`
pub async fn add_backup_keys(
    State(services): State<Arc<Services>>,
    req: Ruma<add_backup_keys::v3::Request>,
) -> HandlerResult<add_backup_keys::v3::Response> {
    let mut keys = Vec::new();
    for (room_id, backup) in &req.body.rooms {
        for (session_id, key) in &backup.sessions {
            keys.push((room_id.clone(), session_id.clone(), json(key)?));
        }
    }
    let (etag, total) = services.key_backup.put_keys(req.user_id()?, &req.body.version, keys)?;
    Ok(RumaResponse(add_backup_keys::v3::Response::new(etag, count(total))))
}

/// `PUT /_matrix/client/v3/room_keys/keys/{roomId}`
pub async fn add_backup_keys_for_room(
    State(services): State<Arc<Services>>,
    req: Ruma<add_backup_keys_for_room::v3::Request>,
) -> HandlerResult<add_backup_keys_for_room::v3::Response> {
    let request = &req.body;
    let keys = request
        .sessions
        .iter()
        .map(|(session_id, key)| Ok((request.room_id.clone(), session_id.clone(), json(key)?)))
        .collect::<Result<_>>()?;
    let (etag, total) = services.key_backup.put_keys(req.user_id()?, &request.version, keys)?;
    Ok(RumaResponse(add_backup_keys_for_room::v3::Response::new(etag, count(total))))
}

/// `PUT /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`
pub async fn add_backup_keys_for_session(
    State(services): State<Arc<Services>>,
    req: Ruma<add_backup_keys_for_session::v3::Request>,
) -> HandlerResult<add_backup_keys_for_session::v3::Response> {
    let request = &req.body;
    let keys = vec![(request.room_id.clone(), request.session_id.clone(), json(&request.session_data)?)];
    let (etag, total) = services.key_backup.put_keys(req.user_id()?, &request.version, keys)?;
    Ok(RumaResponse(add_backup_keys_for_session::v3::Response::new(etag, count(total))))
}

/// `GET /_matrix/client/v3/room_keys/keys`
pub async fn get_backup_keys(
    State(services): State<Arc<Services>>,
    req: Ruma<get_backup_keys::v3::Request>,
) -> HandlerResult<get_backup_keys::v3::Response> {
    let keys = services.key_backup.keys(req.user_id()?, &req.body.version, KeySelection::All)?;
    Ok(RumaResponse(get_backup_keys::v3::Response::new(rooms(&keys)?)))
}

/// `GET /_matrix/client/v3/room_keys/keys/{roomId}`: a room without keys is an empty map.
pub async fn get_backup_keys_for_room(
    State(services): State<Arc<Services>>,
    req: Ruma<get_backup_keys_for_room::v3::Request>,
) -> HandlerResult<get_backup_keys_for_room::v3::Response> {
    let request = &req.body;
    let keys = services
        .key_backup
        .keys(req.user_id()?, &request.version, KeySelection::Room(&request.room_id))?;
    let room = keys.get(&request.room_id).cloned().unwrap_or_default();
    Ok(RumaResponse(get_backup_keys_for_room::v3::Response::new(sessions(&room)?)))
}

/// `GET /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`
pub async fn get_backup_keys_for_session(
    State(services): State<Arc<Services>>,
    req: Ruma<get_backup_keys_for_session::v3::Request>,
) -> HandlerResult<get_backup_keys_for_session::v3::Response> {
    let request = &req.body;
    let keys = services.key_backup.keys(
        req.user_id()?,
        &request.version,
        KeySelection::Session(&request.room_id, &request.session_id),
    )?;
    let key = keys
        .get(&request.room_id)
        .and_then(|sessions| sessions.get(&request.session_id))
        .ok_or_else(|| Error::not_found("No backed-up key for that session"))?;
    Ok(RumaResponse(get_backup_keys_for_session::v3::Response::new(raw(key)?)))
}

/// `DELETE /_matrix/client/v3/room_keys/keys`
pub async fn delete_backup_keys(
    State(services): State<Arc<Services>>,
    req: Ruma<delete_backup_keys::v3::Request>,
) -> HandlerResult<delete_backup_keys::v3::Response> {
    let (etag, total) = services
        .key_backup
        .delete_keys(req.user_id()?, &req.body.version, KeySelection::All)?;
    Ok(RumaResponse(delete_backup_keys::v3::Response::new(etag, count(total))))
}

/// `DELETE /_matrix/client/v3/room_keys/keys/{roomId}`
pub async fn delete_backup_keys_for_room(
    State(services): State<Arc<Services>>,
    req: Ruma<delete_backup_keys_for_room::v3::Request>,
) -> HandlerResult<delete_backup_keys_for_room::v3::Response> {
    let request = &req.body;
    let (etag, total) = services
        .key_backup
        .delete_keys(req.user_id()?, &request.version, KeySelection::Room(&request.room_id))?;
    Ok(RumaResponse(delete_backup_keys_for_room::v3::Response::new(etag, count(total))))
}

/// `DELETE /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`
pub async fn delete_backup_keys_for_session(
    State(services): State<Arc<Services>>,
    req: Ruma<delete_backup_keys_for_session::v3::Request>,
) -> HandlerResult<delete_backup_keys_for_session::v3::Response> {
    let request = &req.body;
    let (etag, total) = services.key_backup.delete_keys(
        req.user_id()?,
        &request.version,
        KeySelection::Session(&request.room_id, &request.session_id),
    )?;
    Ok(RumaResponse(delete_backup_keys_for_session::v3::Response::new(etag, count(total))))
}
