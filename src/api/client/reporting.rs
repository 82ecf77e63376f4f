//! Reporting to the server's admins: `POST /rooms/{roomId}/report/{eventId}`,
//! `POST /rooms/{roomId}/report` and `POST /users/{userId}/report`. Reports are kept for
//! `hearth admin report list`.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::reporting::report_user;
use ruma::api::client::room::{report_content, report_room};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Error;
use crate::service::Services;
use crate::service::reports::ReportTarget;

/// The most characters of a reason kept.
const MAX_REASON: usize = 1_000;

/// A reason as kept: trimmed, at most [`MAX_REASON`] characters, `None` when blank.
fn kept_reason(reason: Option<&str>) -> Option<String> {
    let reason = reason?.trim();
    (!reason.is_empty()).then(|| reason.chars().take(MAX_REASON).collect())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/report/{eventId}`: 404 unless the reporter is in
/// the room and may see the event.
pub async fn report_event(
    State(services): State<Arc<Services>>,
    req: Ruma<report_content::v3::Request>,
) -> HandlerResult<report_content::v3::Response> {
    let reporter = req.user_id()?;
    let request = &req.body;
    let not_found = || Error::not_found("The event was not found or you are not joined to the room");
    services.rooms.check_joined(&request.room_id, reporter).map_err(|_| not_found())?;
    let stored = services
        .rooms
        .stored_event(&request.event_id)?
        .filter(|stored| stored.meta.room_id == request.room_id && stored.meta.redacted_by.is_none())
        .ok_or_else(not_found)?;
    if !services.rooms.can_see_event(reporter, &stored)? {
        return Err(not_found());
    }
    let sender = services.rooms.pdu(&request.event_id)?.ok_or_else(not_found)?.sender;
    let target = ReportTarget::Event {
        room_id: request.room_id.clone(),
        event_id: request.event_id.clone(),
        sender,
    };
    services
        .reports
        .file(reporter.to_owned(), target, kept_reason(request.reason.as_deref()))?;
    Ok(RumaResponse(report_content::v3::Response::new()))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/report`: 404 for a room this server does not know.
pub async fn report_a_room(
    State(services): State<Arc<Services>>,
    req: Ruma<report_room::v3::Request>,
) -> HandlerResult<report_room::v3::Response> {
    let reporter = req.user_id()?;
    let room_id = &req.body.room_id;
    if services.rooms.room(room_id).is_err() {
        return Err(Error::not_found("The room was not found"));
    }
    let target = ReportTarget::Room { room_id: room_id.clone() };
    services
        .reports
        .file(reporter.to_owned(), target, kept_reason(Some(&req.body.reason)))?;
    Ok(RumaResponse(report_room::v3::Response::new()))
}

/// `POST /_matrix/client/v3/users/{userId}/report`: 404 for a user of this server that does
/// not exist; users of other servers are taken on trust.
pub async fn report_a_user(
    State(services): State<Arc<Services>>,
    req: Ruma<report_user::v3::Request>,
) -> HandlerResult<report_user::v3::Response> {
    let reporter = req.user_id()?;
    let user_id = &req.body.user_id;
    if user_id.server_name() == services.config.server_name && services.accounts.get(user_id)?.is_none() {
        return Err(Error::not_found("The user was not found"));
    }
    let target = ReportTarget::User { user_id: user_id.clone() };
    services
        .reports
        .file(reporter.to_owned(), target, kept_reason(Some(&req.body.reason)))?;
    Ok(RumaResponse(report_user::v3::Response::new()))
}
