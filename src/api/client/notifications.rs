//! `GET /notifications`: the events that notified the user, newest first.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::push::get_notifications;
use ruma::{MilliSecondsSinceUnixEpoch, UInt};

use super::rooms::raw;
use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Error;
use crate::service::Services;
use crate::service::rooms::visibility::Viewer;

/// `GET /_matrix/client/v3/notifications`
pub async fn get_notifications(
    State(services): State<Arc<Services>>,
    req: Ruma<get_notifications::v3::Request>,
) -> HandlerResult<get_notifications::v3::Response> {
    let user = req.user_id()?;
    let request = &req.body;
    let before = match request.from.as_deref() {
        Some(token) => Some(token.parse::<u64>().map_err(|_| Error::invalid_param("Invalid `from` token"))?),
        None => None,
    };
    let limit = request.limit.map_or(20, |l| u64::from(l) as usize).clamp(1, 100);
    let only_highlights = request.only.as_deref() == Some("highlight");
    let mut notifications = Vec::new();
    let mut next_token = None;
    let mut cursor = before;
    'pages: loop {
        let page = services.push.notifications(user, cursor, limit + 1)?;
        let exhausted = page.len() <= limit;
        for (position, record) in page {
            cursor = Some(position);
            if only_highlights && !record.highlight {
                continue;
            }
            if notifications.len() == limit {
                next_token = Some((position + 1).to_string());
                break 'pages;
            }
            let Some(stored) = services.rooms.stored_event(&record.event_id)? else {
                continue;
            };
            let event = services.rooms.client_event(&record.event_id, &stored, Some(Viewer::user(user)))?;
            let read = services.rooms.read_position(&record.room_id, user)? >= stored.meta.stream;
            let mut notification = get_notifications::v3::Notification::new(
                record.actions,
                raw(&event)?,
                read,
                record.room_id,
                MilliSecondsSinceUnixEpoch(UInt::new(record.ts).unwrap_or_default()),
            );
            notification.profile_tag = None;
            notifications.push(notification);
        }
        if exhausted {
            break;
        }
    }
    let mut response = get_notifications::v3::Response::new(notifications);
    response.next_token = next_token;
    Ok(RumaResponse(response))
}
