//! Email notifications (Element's "Enable email notifications"): a pusher of kind `email`,
//! whose pushkey is a confirmed address of the user, gets a digest of the messages that
//! notified the user and stayed unread for `email.notification_delay`, at most one mail per
//! room per hour, with a link to each room. A background task looks every few seconds; what
//! each pusher was told is kept in `email_digests`, written in the mail's batch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ruma::api::client::push::{Pusher, PusherKind};
use ruma::{OwnedRoomId, OwnedUserId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::mail::templates::{self, DigestMessage, DigestRoom};
use super::{Services, now_ms};
use crate::error::Result;
use crate::store::{SEP, Table, key};

/// The least time between two mails about one room.
const ROOM_MAIL_INTERVAL_MS: u64 = 3600 * 1000;
/// The most messages quoted per room.
const QUOTED_PER_ROOM: usize = 5;
/// The longest quote of a message.
const QUOTE_CHARS: usize = 200;

/// What one email pusher was told about one room.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RoomDigest {
    /// The stream position of the newest notification mailed.
    pub mailed_up_to: u64,
    pub last_mail_ts: u64,
}

/// What one email pusher was told, per room.
pub type DigestState = BTreeMap<OwnedRoomId, RoomDigest>;

/// Every email pusher: its user and address.
fn email_pushers(services: &Services) -> Result<Vec<(OwnedUserId, String)>> {
    let mut found = Vec::new();
    for (row, pusher) in services.store.scan_json::<Value>(Table::Pushers, b"")? {
        let Ok(pusher) = serde_json::from_value::<Pusher>(pusher) else {
            continue;
        };
        if !matches!(pusher.kind, PusherKind::Email(_)) {
            continue;
        }
        let user = row.split(|b| *b == SEP).next().unwrap_or_default();
        if let Ok(user) = UserId::parse(String::from_utf8_lossy(user).as_ref()) {
            found.push((user, pusher.ids.pushkey));
        }
    }
    Ok(found)
}

/// Mails the digests that are due, until the server stops.
pub async fn run(services: Arc<Services>) {
    let Some(email) = &services.config.email else { return };
    let delay = email.notification_delay;
    let tick = (delay / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        tokio::time::sleep(tick).await;
        // One process mails the digests when processes share the database.
        let Ok(Some(_mailing)) = services.store.try_lock(b"email_digests") else {
            continue;
        };
        let pushers = match email_pushers(&services) {
            Ok(pushers) => pushers,
            Err(error) => {
                tracing::error!(%error, "cannot read the email pushers");
                continue;
            }
        };
        for (user, address) in pushers {
            if let Err(error) = mail_digest(&services, &user, &address, delay.as_millis() as u64) {
                tracing::warn!(%error, %user, "cannot prepare an email notification");
            }
        }
    }
}

/// Mails `user` at `address` the messages unread for longer than `delay_ms`, when any.
fn mail_digest(services: &Services, user: &UserId, address: &str, delay_ms: u64) -> Result<()> {
    let state_key = key(&[user.as_bytes(), address.as_bytes()]);
    let mut state: DigestState = services.store.get_json(Table::EmailDigests, &state_key)?.unwrap_or_default();
    let now = now_ms();
    let mut due: BTreeMap<OwnedRoomId, Vec<(u64, ruma::OwnedEventId)>> = BTreeMap::new();
    // Per room: the position below which nothing is due (mailed or read), or none when the
    // room was mailed within the hour; read once per room, not per notification.
    let mut floors: BTreeMap<OwnedRoomId, Option<u64>> = BTreeMap::new();
    for (position, notification) in services.push.notifications(user, None, 500)? {
        if notification.ts + delay_ms > now {
            continue;
        }
        let floor = match floors.get(&notification.room_id) {
            Some(floor) => *floor,
            None => {
                let room = state.get(&notification.room_id).cloned().unwrap_or_default();
                let floor = (room.last_mail_ts + ROOM_MAIL_INTERVAL_MS <= now)
                    .then(|| services.rooms.read_position(&notification.room_id, user))
                    .transpose()?
                    .map(|read| read.max(room.mailed_up_to));
                floors.insert(notification.room_id.clone(), floor);
                floor
            }
        };
        if floor.is_some_and(|floor| position > floor) {
            due.entry(notification.room_id).or_default().push((position, notification.event_id));
        }
    }
    if due.is_empty() {
        return Ok(());
    }
    let mut rooms = Vec::new();
    for (room_id, mut events) in due {
        events.sort();
        let summary = services.rooms.summary(&room_id)?;
        let name = summary["name"]
            .as_str()
            .or(summary["canonical_alias"].as_str())
            .unwrap_or("a room")
            .to_owned();
        let mut messages = Vec::new();
        for (_, event_id) in events.iter().rev().take(QUOTED_PER_ROOM).rev() {
            let Some(pdu) = services.rooms.pdu(event_id)? else { continue };
            let content: Value = serde_json::from_str(pdu.content.get()).unwrap_or_default();
            let body = match content["body"].as_str() {
                Some(body) => body.chars().take(QUOTE_CHARS).collect(),
                None => "(an encrypted message)".to_owned(),
            };
            let sender = services.profiles.get(&pdu.sender)?;
            let sender = sender
                .get("displayname")
                .and_then(Value::as_str)
                .unwrap_or(pdu.sender.as_str())
                .to_owned();
            messages.push(DigestMessage { sender, body });
        }
        let newest = events.last().map_or(0, |(position, _)| *position);
        state.insert(
            room_id.clone(),
            RoomDigest {
                mailed_up_to: newest,
                last_mail_ts: now,
            },
        );
        rooms.push(DigestRoom {
            name,
            link: format!("https://matrix.to/#/{room_id}?via={}", services.config.server_name),
            count: events.len(),
            messages,
        });
    }
    let profile = services.profiles.get(user)?;
    let display_name = profile.get("displayname").and_then(Value::as_str).unwrap_or(user.as_str());
    let mail = templates::notifications(services.config.server_name.as_str(), display_name, &rooms)?;
    let mut batch = services.store.batch();
    batch.put_json(Table::EmailDigests, &state_key, &state);
    services.mail.stage(&mut batch, address, mail)?;
    batch.commit()?;
    services.mail.wake();
    Ok(())
}
