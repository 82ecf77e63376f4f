//! To-device messages: events sent straight to a user's devices (key sharing, verification).
//! Each message waits in the store for its device's next sync, and is deleted once the device
//! syncs with a token past it: delivered at least once, and gone after it was acknowledged.

use std::collections::BTreeMap;
use std::sync::Arc;

use ruma::events::AnyToDeviceEventContent;
use ruma::serde::Raw;
use ruma::to_device::DeviceIdOrAllDevices;
use ruma::{DeviceId, OwnedDeviceId, UserId};
use serde_json::{Value, json};

use super::Services;
use super::appservices::Appservices;
use super::stream::Stream;
use crate::error::Result;
use crate::store::{Batch, Store, Table, key, prefix};

/// The to-device inboxes.
pub struct ToDevice {
    store: Store,
    stream: Arc<Stream>,
    /// Bridges get their users' messages too (MSC2409).
    appservices: Arc<Appservices>,
}

impl ToDevice {
    pub fn new(store: Store, stream: Arc<Stream>, appservices: Arc<Appservices>) -> ToDevice {
        ToDevice {
            store,
            stream,
            appservices,
        }
    }

    /// Whether a sender's device sent the transaction `txn_id` already.
    pub fn was_sent(&self, sender: &UserId, sender_device: &DeviceId, txn_id: &str) -> Result<bool> {
        let txn_key = key(&[sender.as_bytes(), sender_device.as_bytes(), txn_id.as_bytes()]);
        Ok(self.store.get(Table::ToDeviceTransactions, &txn_key)?.is_some())
    }

    /// Queues one message (`{type, sender, content}`) for each device, in one batch; the
    /// transaction makes a retry a no-op.
    pub fn send(
        &self,
        sender: &UserId,
        sender_device: &DeviceId,
        txn_id: &str,
        event_type: &str,
        deliveries: Vec<(&UserId, OwnedDeviceId, Value)>,
    ) -> Result<()> {
        if self.was_sent(sender, sender_device, txn_id)? {
            return Ok(());
        }
        let txn_key = key(&[sender.as_bytes(), sender_device.as_bytes(), txn_id.as_bytes()]);
        let ticket = self.stream.begin()?;
        let mut batch = self.store.batch();
        let mut woken = Vec::new();
        for (index, (user, device, content)) in deliveries.into_iter().enumerate() {
            let message = json!({ "type": event_type, "sender": sender, "content": content });
            // One transaction may hold several messages for one device: numbered in order.
            let mut position = ticket.position().to_be_bytes().to_vec();
            position.extend_from_slice(&(index as u32).to_be_bytes());
            batch.put_json(Table::ToDevice, &key(&[user.as_bytes(), device.as_bytes(), &position]), &message);
            self.appservices.queue_to_device(&mut batch, user, &device, &message)?;
            woken.push(user.to_owned());
        }
        batch.put(Table::ToDeviceTransactions, &txn_key, &[]);
        batch.commit()?;
        ticket.complete(woken);
        Ok(())
    }

    /// Adds to `batch` the removal of a device's waiting messages (the device is deleted).
    pub fn stage_delete_inbox(&self, batch: &mut Batch<'_>, user: &UserId, device: &DeviceId) -> Result<()> {
        for row in self
            .store
            .scan_keys(Table::ToDevice, &prefix(&[user.as_bytes(), device.as_bytes()]))?
        {
            batch.delete(Table::ToDevice, &row);
        }
        Ok(())
    }

    /// The messages waiting for a device up to stream position `until`, after deleting those
    /// the device acknowledged by syncing from `acknowledged`.
    pub fn take(&self, user: &UserId, device: &DeviceId, acknowledged: Option<u64>, until: u64) -> Result<Vec<Value>> {
        let messages = self.take_positioned(user, device, acknowledged, until, usize::MAX)?;
        Ok(messages.into_iter().map(|(_, message)| message).collect())
    }

    /// Like [`ToDevice::take`], up to `limit` messages, each with its stream position.
    pub fn take_positioned(
        &self,
        user: &UserId,
        device: &DeviceId,
        acknowledged: Option<u64>,
        until: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Value)>> {
        let device_prefix = prefix(&[user.as_bytes(), device.as_bytes()]);
        let rows = self
            .store
            .range(Table::ToDevice, &device_prefix, &device_prefix, true, usize::MAX)?;
        let mut batch = self.store.batch();
        let mut messages = Vec::new();
        for (row, value) in rows {
            let Some(position) = row
                .get(device_prefix.len()..device_prefix.len() + 8)
                .and_then(|bytes| bytes.try_into().ok())
                .map(u64::from_be_bytes)
            else {
                continue;
            };
            if acknowledged.is_some_and(|acknowledged| position <= acknowledged) {
                batch.delete(Table::ToDevice, &row);
            } else if position <= until && messages.len() < limit {
                messages.push((position, serde_json::from_slice(&value)?));
            }
        }
        batch.commit()?;
        Ok(messages)
    }
}

impl Services {
    /// One delivery per device of a local user that a message addresses (a device, or `*`
    /// for all of them).
    pub fn to_device_deliveries<'a>(
        &self,
        user: &'a UserId,
        messages: &BTreeMap<DeviceIdOrAllDevices, Raw<AnyToDeviceEventContent>>,
    ) -> Result<Vec<(&'a UserId, OwnedDeviceId, Value)>> {
        let mut deliveries = Vec::new();
        for (target, content) in messages {
            let content: Value = serde_json::from_str(content.json().get())?;
            match target {
                DeviceIdOrAllDevices::DeviceId(device) => deliveries.push((user, device.clone(), content)),
                DeviceIdOrAllDevices::AllDevices => {
                    for device in self.devices.list(user)? {
                        deliveries.push((user, device.device_id, content.clone()));
                    }
                }
            }
        }
        Ok(deliveries)
    }
}
