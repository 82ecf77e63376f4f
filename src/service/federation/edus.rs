//! EDUs from other servers, taken in after a transaction's PDUs: typing (`m.typing`), read
//! receipts (`m.receipt`), presence (`m.presence`), to-device messages (`m.direct_to_device`,
//! once per `message_id`), and device-list and cross-signing changes (`m.device_list_update`,
//! `m.signing_key_update`), which tell this server's users sharing a room with the user to
//! query their keys again. An EDU only speaks for users of the server that sent it, and about
//! rooms that server is in; anything else is dropped (EDUs have no per-item result).

use std::sync::Arc;
use std::time::Duration;

use ruma::api::federation::transactions::edu::{DirectDeviceContent, Edu, ReceiptContent, TypingContent};
use ruma::events::receipt::ReceiptThread;
use ruma::events::room::member::MembershipState;
use ruma::serde::Raw;
use ruma::{DeviceId, RoomId, ServerName, UserId};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::service::Services;

/// How long another server's user is shown typing unless told again (as Synapse does).
const REMOTE_TYPING_TIMEOUT: Duration = Duration::from_secs(30);
/// The device ID under which to-device messages from other servers are deduplicated.
const FEDERATION_DEVICE: &str = "federation";

impl Services {
    /// Takes in a transaction's EDUs from `origin` (see the module doc).
    pub async fn receive_edus(self: &Arc<Self>, origin: &ServerName, edus: &[Raw<Edu>]) {
        for edu in edus {
            // Presence is read field by field: Synapse leaves out `last_active_ago`, which
            // ruma's type requires.
            if edu.get_field::<String>("edu_type").ok().flatten().as_deref() == Some("m.presence") {
                if let Err(error) = self.receive_presence(origin, edu) {
                    tracing::info!(%origin, %error, "a presence EDU from another server was dropped");
                }
                continue;
            }
            let outcome = match edu.deserialize() {
                Ok(Edu::Typing(typing)) => self.receive_typing(origin, typing),
                Ok(Edu::Receipt(receipts)) => self.receive_receipts(origin, receipts),
                Ok(Edu::DirectToDevice(messages)) => self.receive_to_device(origin, messages),
                Ok(Edu::DeviceListUpdate(update)) => {
                    Self::check_origin(origin, &update.user_id).and_then(|()| self.apply_device_list_update(update))
                }
                Ok(Edu::SigningKeyUpdate(update)) => {
                    Self::check_origin(origin, &update.user_id).and_then(|()| self.apply_signing_key_update(update))
                }
                Ok(_) => Ok(()),
                Err(error) => Err(Error::bad_json(error.to_string())),
            };
            if let Err(error) = outcome {
                tracing::info!(%origin, %error, "an EDU from another server was dropped");
            }
        }
    }

    /// Refuses a user who is not of `origin`.
    fn check_origin(origin: &ServerName, user: &UserId) -> Result<()> {
        if user.server_name() == origin {
            Ok(())
        } else {
            Err(Error::forbidden(format!("{origin} spoke for {user}")))
        }
    }

    /// Refuses a user of `origin` who is not joined to the room, or a server its ACL denies.
    fn check_remote_member(&self, origin: &ServerName, room_id: &RoomId, user: &UserId) -> Result<()> {
        Self::check_origin(origin, user)?;
        self.federation.check_acl(&self.rooms, origin, room_id)?;
        self.rooms.check_joined(room_id, user)
    }

    fn receive_typing(self: &Arc<Self>, origin: &ServerName, typing: TypingContent) -> Result<()> {
        self.check_remote_member(origin, &typing.room_id, &typing.user_id)?;
        let timeout = typing.typing.then_some(REMOTE_TYPING_TIMEOUT);
        self.set_typing(&typing.room_id, &typing.user_id, timeout)
    }

    fn receive_receipts(&self, origin: &ServerName, receipts: ReceiptContent) -> Result<()> {
        for (room_id, map) in receipts.receipts {
            for (user, receipt) in map.read {
                self.check_remote_member(origin, &room_id, &user)?;
                let thread = match &receipt.data.thread {
                    ReceiptThread::Unthreaded => "",
                    thread => thread.as_str().unwrap_or(""),
                };
                if let Some(event_id) = receipt.event_ids.last() {
                    self.rooms.set_receipt(&room_id, &user, "m.read", event_id, thread)?;
                }
            }
        }
        Ok(())
    }

    fn receive_presence(&self, origin: &ServerName, edu: &Raw<Edu>) -> Result<()> {
        let edu: Value = serde_json::from_str(edu.json().get())?;
        for update in edu["content"]["push"].as_array().into_iter().flatten() {
            let user = UserId::parse(update["user_id"].as_str().unwrap_or_default()).map_err(|e| Error::bad_json(e.to_string()))?;
            Self::check_origin(origin, &user)?;
            let presence = match update["presence"].as_str() {
                Some(presence @ ("online" | "unavailable" | "offline")) => presence,
                _ => return Err(Error::bad_json("A presence update without a known presence")),
            };
            // Only users who share a room with this server's are of interest here.
            if self.rooms.rooms_of_user(&user, &MembershipState::Join)?.is_empty() {
                continue;
            }
            let status_msg = update["status_msg"].as_str().map(str::to_owned);
            self.presence.set(&self.rooms, &user, presence, Some(status_msg))?;
        }
        Ok(())
    }

    fn receive_to_device(&self, origin: &ServerName, messages: DirectDeviceContent) -> Result<()> {
        Self::check_origin(origin, &messages.sender)?;
        let mut deliveries = Vec::new();
        for (user, devices) in &messages.messages {
            if user.server_name() != self.config.server_name {
                continue;
            }
            deliveries.extend(self.to_device_deliveries(user, devices)?);
        }
        // The message ID makes a repeated EDU (a retried transaction) a no-op.
        self.to_device.send(
            &messages.sender,
            <&DeviceId>::from(FEDERATION_DEVICE),
            messages.message_id.as_str(),
            &messages.ev_type.to_string(),
            deliveries,
        )
    }
}
