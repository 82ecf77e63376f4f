//! Other servers' users' device lists, cached here: filled from their server's `user/devices`
//! (with its stream ID) and kept current by `m.device_list_update` EDUs whose `prev_id` follows
//! the cached stream ID; a gap, or an update without `prev_id`, drops the copy and fetches the
//! whole list again. `m.signing_key_update` replaces the cached cross-signing keys. A copy is
//! only used while the user shares a room with a user of this server (their server sends
//! updates only then); `keys/query` asks the user's server for anyone else.

use std::collections::BTreeMap;
use std::sync::Arc;

use ruma::api::federation::device::get_devices;
use ruma::api::federation::transactions::edu::{DeviceListUpdateContent, SigningKeyUpdateContent};
use ruma::events::room::member::MembershipState;
use ruma::{OwnedDeviceId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Result;
use crate::service::Services;
use crate::service::keys::{KeyChange, with_display_name};
use crate::store::Table;

/// Another server's user's devices and cross-signing keys, as cached.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RemoteDeviceList {
    /// The stream ID of the last update applied.
    pub stream_id: u64,
    /// Each device's keys (with its display name in `unsigned`).
    pub devices: BTreeMap<OwnedDeviceId, Value>,
    pub master_key: Option<Value>,
    pub self_signing_key: Option<Value>,
}

impl Services {
    /// Another server's user's cached device list, while it is kept current (they share a room
    /// with a user of this server).
    pub fn cached_device_list(&self, user: &UserId) -> Result<Option<RemoteDeviceList>> {
        if self.rooms.rooms_of_user(user, &MembershipState::Join)?.is_empty() {
            return Ok(None);
        }
        Ok(self.store.get_json(Table::RemoteDeviceLists, user.as_bytes())?)
    }

    /// Fetches a user's device list from their server in the background, to cache it.
    pub fn resync_device_list(self: &Arc<Self>, user: &UserId) {
        let (services, user) = (self.clone(), user.to_owned());
        tokio::spawn(async move {
            if let Err(error) = services.fetch_device_list(&user).await {
                tracing::info!(%user, %error, "a device list could not be fetched");
            }
        });
    }

    async fn fetch_device_list(&self, user: &UserId) -> Result<()> {
        let answer = self
            .federation
            .send(user.server_name(), get_devices::v1::Request::new(user.to_owned()))
            .await?;
        let mut list = RemoteDeviceList {
            stream_id: answer.stream_id.into(),
            ..RemoteDeviceList::default()
        };
        for device in answer.devices {
            let keys = serde_json::from_str(device.keys.json().get())?;
            list.devices
                .insert(device.device_id, with_display_name(keys, device.device_display_name));
        }
        list.master_key = answer.master_key.map(|key| serde_json::from_str(key.json().get())).transpose()?;
        list.self_signing_key = answer
            .self_signing_key
            .map(|key| serde_json::from_str(key.json().get()))
            .transpose()?;
        let mut batch = self.store.batch();
        batch.put_json(Table::RemoteDeviceLists, user.as_bytes(), &list);
        batch.commit()?;
        Ok(())
    }

    /// Applies an `m.device_list_update` to the cached list (or drops the list and fetches
    /// it again when the update does not follow it), and tells local users who share a room
    /// with the user.
    pub fn apply_device_list_update(self: &Arc<Self>, update: DeviceListUpdateContent) -> Result<()> {
        let user = &update.user_id;
        if self.rooms.rooms_of_user(user, &MembershipState::Join)?.is_empty() {
            return Ok(());
        }
        let cached: Option<RemoteDeviceList> = self.store.get_json(Table::RemoteDeviceLists, user.as_bytes())?;
        let follows =
            |list: &RemoteDeviceList| !update.prev_id.is_empty() && update.prev_id.iter().all(|id| u64::from(*id) == list.stream_id);
        let mut batch = self.store.batch();
        match cached {
            Some(mut list) if follows(&list) && (update.deleted == Some(true) || update.keys.is_some()) => {
                match &update.keys {
                    Some(keys) if update.deleted != Some(true) => {
                        let keys = serde_json::from_str(keys.json().get())?;
                        list.devices.insert(
                            update.device_id.clone(),
                            with_display_name(keys, update.device_display_name.clone()),
                        );
                    }
                    _ => {
                        list.devices.remove(&update.device_id);
                    }
                }
                list.stream_id = update.stream_id.into();
                batch.put_json(Table::RemoteDeviceLists, user.as_bytes(), &list);
            }
            _ => {
                batch.delete(Table::RemoteDeviceLists, user.as_bytes());
                self.resync_device_list(user);
            }
        }
        self.keys.commit_device_list_change(&self.rooms, batch, user, KeyChange::Remote)
    }

    /// Applies an `m.signing_key_update` to the cached list, and tells local users who share a
    /// room with the user.
    pub fn apply_signing_key_update(&self, update: SigningKeyUpdateContent) -> Result<()> {
        let user = &update.user_id;
        if self.rooms.rooms_of_user(user, &MembershipState::Join)?.is_empty() {
            return Ok(());
        }
        let mut batch = self.store.batch();
        if let Some(mut list) = self.store.get_json::<RemoteDeviceList>(Table::RemoteDeviceLists, user.as_bytes())? {
            if let Some(master) = &update.master_key {
                list.master_key = Some(serde_json::from_str(master.json().get())?);
            }
            if let Some(self_signing) = &update.self_signing_key {
                list.self_signing_key = Some(serde_json::from_str(self_signing.json().get())?);
            }
            batch.put_json(Table::RemoteDeviceLists, user.as_bytes(), &list);
        }
        self.keys.commit_device_list_change(&self.rooms, batch, user, KeyChange::Remote)
    }
}
