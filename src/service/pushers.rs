//! Pushers: where to wake a user's phone. For every notification a user gets, each of their
//! HTTP pushers is sent the event through its push gateway (ruma's push gateway types), in the
//! background, retried with exponential backoff; pushkeys the gateway rejects are removed.

use std::time::Duration;

use bytes::BytesMut;
use ruma::api::OutgoingRequestExt;
use ruma::api::client::push::{Pusher, PusherIds, PusherKind};
use ruma::api::push_gateway::send_event_notification::v1::{
    Device, Notification, NotificationCounts, NotificationPriority, PusherData, Request,
};
use ruma::push::Action;
use ruma::{OwnedUserId, UInt, UserId};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::service::rooms::visibility::ClientEvent;
use crate::store::{Store, Table, key, prefix};

/// The path every push gateway URL ends with.
const GATEWAY_PATH: &str = "/_matrix/push/v1/notify";
/// Delivery attempts before a notification is given up.
const ATTEMPTS: u32 = 6;

/// What a notification says, for the gateways.
pub struct PushMessage {
    pub event: ClientEvent,
    pub sender_display_name: Option<String>,
    pub room_name: Option<String>,
    pub unread: u64,
    pub actions: Vec<Action>,
}

/// The pushers of this server's users.
pub struct Pushers {
    store: Store,
    http: reqwest::Client,
}

fn row_key(user: &UserId, ids: &PusherIds) -> Vec<u8> {
    key(&[user.as_bytes(), ids.app_id.as_bytes(), ids.pushkey.as_bytes()])
}

impl Pushers {
    pub fn new(store: Store) -> Result<Pushers> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_idle_timeout(super::federation::POOL_IDLE_TIMEOUT)
            .build()
            .map_err(|e| Error::Internal(format!("push client: {e}")))?;
        Ok(Pushers { store, http })
    }

    /// A user's pushers.
    pub fn list(&self, user: &UserId) -> Result<Vec<Pusher>> {
        let rows = self.store.scan_json::<Value>(Table::Pushers, &prefix(&[user.as_bytes()]))?;
        Ok(rows
            .into_iter()
            .filter_map(|(_, value)| serde_json::from_value(value).ok())
            .collect())
    }

    /// Whether a user has any pusher.
    pub fn any(&self, user: &UserId) -> Result<bool> {
        Ok(!self.store.scan_keys(Table::Pushers, &prefix(&[user.as_bytes()]))?.is_empty())
    }

    /// Adds or replaces a pusher; unless `append`, the same pushkey of other users goes.
    pub fn set(&self, user: &UserId, pusher: &Pusher, append: bool) -> Result<()> {
        if let PusherKind::Http(data) = &pusher.kind
            && !data.url.ends_with(GATEWAY_PATH)
        {
            return Err(Error::invalid_param(format!("A push gateway URL must end with {GATEWAY_PATH}")));
        }
        let mut batch = self.store.batch();
        if !append {
            for (row, value) in self.store.scan_json::<Value>(Table::Pushers, &[])? {
                if value["app_id"] == pusher.ids.app_id.as_str() && value["pushkey"] == pusher.ids.pushkey.as_str() {
                    batch.delete(Table::Pushers, &row);
                }
            }
        }
        batch.put_json(Table::Pushers, &row_key(user, &pusher.ids), pusher);
        batch.commit()?;
        Ok(())
    }

    /// Removes a pusher.
    pub fn delete(&self, user: &UserId, ids: &PusherIds) -> Result<()> {
        let mut batch = self.store.batch();
        batch.delete(Table::Pushers, &row_key(user, ids));
        batch.commit()?;
        Ok(())
    }

    /// Sends a notification to each of the user's HTTP pushers, in the background.
    pub fn deliver(&self, user: &UserId, message: PushMessage) -> Result<()> {
        for pusher in self.list(user)? {
            let PusherKind::Http(data) = &pusher.kind else { continue };
            let mut device = Device::new(pusher.ids.app_id.clone(), pusher.ids.pushkey.clone());
            let mut pusher_data = PusherData::new();
            pusher_data.format = data.format.clone();
            pusher_data.data = data.data.clone();
            device.data = pusher_data;
            device.tweaks = message
                .actions
                .iter()
                .filter_map(|action| match action {
                    Action::SetTweak(tweak) => Some(tweak.clone()),
                    _ => None,
                })
                .collect();
            let mut notification = Notification::new(vec![device]);
            let event = message.event.pdu();
            notification.event_id = Some(event.event_id.clone());
            notification.room_id = Some(event.room_id.clone());
            notification.event_type = Some(event.kind.clone());
            notification.sender = Some(event.sender.clone());
            notification.sender_display_name = message.sender_display_name.clone();
            notification.room_name = message.room_name.clone();
            notification.prio = NotificationPriority::High;
            notification.content = Some(event.content.clone());
            notification.counts = NotificationCounts::new(UInt::new(message.unread).unwrap_or_default(), UInt::MIN);
            let base = data.url.trim_end_matches(GATEWAY_PATH).to_owned();
            let request = Request::new(notification)
                .try_into_http_request::<BytesMut>(&base, (), ())
                .map_err(|e| Error::Internal(format!("push request: {e}")))?;
            tokio::spawn(send_with_retries(
                self.http.clone(),
                self.store.clone(),
                user.to_owned(),
                pusher.ids.clone(),
                request,
            ));
        }
        Ok(())
    }
}

/// Posts one notification to a gateway, retrying failures with exponential backoff.
async fn send_with_retries(http: reqwest::Client, store: Store, user: OwnedUserId, ids: PusherIds, request: http::Request<BytesMut>) {
    let url = request.uri().to_string();
    let body = request.into_body().freeze();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
        }
        let sent = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        let response = match sent {
            Ok(response) if response.status().is_success() => response,
            Ok(response) if response.status().is_client_error() => {
                tracing::warn!(%url, status = %response.status(), "the push gateway refused a notification");
                return;
            }
            Ok(_) | Err(_) => continue,
        };
        let answer = response.json::<Value>().await.unwrap_or_default();
        let rejected = answer["rejected"]
            .as_array()
            .is_some_and(|keys| keys.iter().any(|key| key == ids.pushkey.as_str()));
        if rejected {
            let mut batch = store.batch();
            batch.delete(Table::Pushers, &row_key(&user, &ids));
            if let Err(error) = batch.commit() {
                tracing::warn!(%error, "could not remove a rejected pusher");
            }
        }
        return;
    }
    tracing::warn!(%url, "a push gateway could not be reached; the notification is dropped");
}
