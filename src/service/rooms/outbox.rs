//! The federation outbox as rooms fill it: which servers an event goes to (those with members
//! in the room, before and after a membership change, less those the room's server ACL denies),
//! written as `federation_outbox` rows in the event's own batch; EDUs (typing, receipts,
//! presence, device lists, to-device messages) as `federation_edus` rows, numbered in order;
//! and the wake-up of the sender that drains them. Events that concern an appservice go to
//! its outbox in the same batch.

use std::collections::BTreeSet;
use std::sync::Arc;

use ruma::events::StateEventType;
use ruma::events::TimelineEventType;
use ruma::events::room::member::MembershipState;
use ruma::events::room::server_acl::RoomServerAclEventContent;
use ruma::{OwnedServerName, RoomId, ServerName, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::pdu::Pdu;
use super::state::StateHash;
use super::{RoomRecord, Rooms};
use crate::error::Result;
use crate::service::appservices::{Appservice, EventScope, Queued};
use crate::service::now_ms;
use crate::store::{Batch, Table, key};

/// An EDU waiting in the outbox, with when it was queued.
#[derive(Debug, Serialize, Deserialize)]
pub struct QueuedEdu {
    pub queued_ts: u64,
    pub edu: Value,
}

impl QueuedEdu {
    /// How long typing and presence are worth sending: later, a server that was down gets
    /// only what still matters (to-device messages, receipts, device lists).
    const EPHEMERAL_LIFETIME_MS: u64 = 5 * 60 * 1000;

    /// Whether it is typing or presence queued too long ago to mean anything now.
    pub fn is_stale(&self) -> bool {
        matches!(self.edu["edu_type"].as_str(), Some("m.typing" | "m.presence"))
            && now_ms().saturating_sub(self.queued_ts) > Self::EPHEMERAL_LIFETIME_MS
    }
}

impl Rooms {
    /// Woken when events are queued for other servers.
    pub fn outbox(&self) -> &tokio::sync::Notify {
        &self.outbox
    }

    /// The destinations events were queued for since the last call (a destination may have
    /// nothing left by then: its batch failed, or its sender took the rows already).
    pub fn take_outbox_destinations(&self) -> BTreeSet<OwnedServerName> {
        std::mem::take(&mut *self.outbox_destinations.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Marks a destination as having rows to send, and wakes the sender.
    pub fn requeue_outbox(&self, destination: OwnedServerName) {
        self.outbox_destinations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(destination);
        self.outbox.notify_one();
    }

    /// Queues an EDU (`{"edu_type", "content"}`) for each of `destinations` in `batch`; the
    /// sender is woken by [`Rooms::wake_outbox`] once the batch is committed.
    pub fn queue_edu(&self, batch: &mut Batch<'_>, destinations: &BTreeSet<OwnedServerName>, edu: &Value) -> Result<()> {
        if destinations.is_empty() {
            return Ok(());
        }
        let number = self.edu_ids.next()?;
        let row = QueuedEdu {
            queued_ts: now_ms(),
            edu: edu.clone(),
        };
        for destination in destinations {
            batch.put_json(Table::FederationEdus, &key(&[destination.as_bytes(), &number.to_be_bytes()]), &row);
        }
        Ok(())
    }

    /// Wakes the sender for `destinations` (after their rows were committed).
    pub fn wake_outbox(&self, destinations: BTreeSet<OwnedServerName>) {
        if destinations.is_empty() {
            return;
        }
        self.outbox_destinations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(destinations);
        self.outbox.notify_one();
    }

    /// Queues an EDU for `destinations` in a batch of its own, and wakes the sender.
    pub fn send_edu(&self, destinations: BTreeSet<OwnedServerName>, edu: &Value) -> Result<()> {
        let mut batch = self.store.batch();
        self.queue_edu(&mut batch, &destinations, edu)?;
        batch.commit()?;
        self.wake_outbox(destinations);
        Ok(())
    }

    /// The other servers with members joined to a room (those its server ACL denies left out).
    pub fn room_destinations(&self, room_id: &RoomId) -> Result<BTreeSet<OwnedServerName>> {
        let mut servers: BTreeSet<OwnedServerName> = self.room(room_id)?.servers.into_iter().collect();
        if let Some(acl) = self.server_acl(room_id)? {
            servers.retain(|server| acl.is_allowed(server));
        }
        Ok(servers)
    }

    /// The other servers that share a joined room with `user`.
    pub fn servers_sharing_with(&self, user: &UserId) -> Result<BTreeSet<OwnedServerName>> {
        let mut servers = BTreeSet::new();
        for room_id in self.rooms_of_user(user, &MembershipState::Join)? {
            servers.extend(self.room_destinations(&room_id)?);
        }
        Ok(servers)
    }

    /// The other servers with joined members once `target`'s member event with `content` is in.
    fn remote_servers_with(&self, room_id: &RoomId, target: &UserId, content: &Value) -> Result<Vec<OwnedServerName>> {
        let target_joins = content.get("membership").and_then(Value::as_str) == Some("join");
        let mut servers: Vec<OwnedServerName> = self
            .members(room_id)?
            .iter()
            .filter(|(user, membership)| user != target && *membership == MembershipState::Join)
            .map(|(user, _)| user.server_name().to_owned())
            .chain(target_joins.then(|| target.server_name().to_owned()))
            .filter(|server| *server != self.server_name)
            .collect();
        servers.sort();
        servers.dedup();
        Ok(servers)
    }

    /// The room's server ACL, if it has one.
    fn server_acl(&self, room_id: &RoomId) -> Result<Option<RoomServerAclEventContent>> {
        let state = self.current_state(room_id)?;
        Ok(self
            .state_content(&state, &StateEventType::RoomServerAcl, "")?
            .and_then(|content| serde_json::from_value(content).ok()))
    }

    /// Whether the room's server ACL (`m.room.server_acl`) lets `server` take part.
    pub fn server_allowed(&self, room_id: &RoomId, server: &ServerName) -> Result<bool> {
        Ok(self.server_acl(room_id)?.is_none_or(|acl| acl.is_allowed(server)))
    }

    /// Queues an event in `batch` for the servers it goes to: `forward_to` when given, else,
    /// for an event of this server's users, every other server in the room before and after it
    /// (`room.servers` is brought up to date for a member event of another server's user).
    pub(super) fn queue_outgoing(
        &self,
        batch: &mut Batch<'_>,
        room: &mut RoomRecord,
        pdu: &Pdu,
        forward_to: Option<Vec<OwnedServerName>>,
        stream: u64,
    ) -> Result<()> {
        let local = pdu.sender.server_name() == self.server_name;
        let mut destinations: BTreeSet<OwnedServerName> = match &forward_to {
            Some(servers) => servers.iter().cloned().collect(),
            None if local => room.servers.iter().cloned().collect(),
            None => BTreeSet::new(),
        };
        if pdu.kind == TimelineEventType::RoomMember
            && let Some(target) = pdu.state_key.as_deref().and_then(|key| UserId::parse(key).ok())
            && target.server_name() != self.server_name
        {
            room.servers = self.remote_servers_with(&pdu.room_id, &target, &pdu.content_value())?;
            if local && forward_to.is_none() {
                destinations.extend(room.servers.iter().cloned());
            }
        }
        if destinations.is_empty() {
            return Ok(());
        }
        // Servers the room's server ACL denies get nothing.
        if let Some(acl) = self.server_acl(&pdu.room_id)? {
            destinations.retain(|destination| acl.is_allowed(destination));
        }
        for destination in &destinations {
            batch.put(
                Table::FederationOutbox,
                &key(&[destination.as_bytes(), &stream.to_be_bytes()]),
                pdu.event_id.as_bytes(),
            );
        }
        // Handed to the sender only once the rows are committed: a sender looking earlier
        // would find nothing, and the destination would wait for the next event to it.
        let queued = self.outbox_destinations.clone();
        batch.on_commit(move || queued.lock().unwrap_or_else(|e| e.into_inner()).extend(destinations));
        Ok(())
    }

    /// Queues an event in `batch` for the appservices it concerns.
    /// `state_before` is the room's state before the event (`None` for the create event).
    pub(super) fn queue_for_appservices(&self, batch: &mut Batch<'_>, pdu: &Pdu, state_before: Option<StateHash>) -> Result<()> {
        if self.appservices.is_empty() {
            return Ok(());
        }
        let target = match pdu.kind {
            TimelineEventType::RoomMember => pdu.state_key.as_deref().and_then(|key| UserId::parse(key).ok()),
            _ => None,
        };
        let scope = EventScope {
            room_id: &pdu.room_id,
            sender: &pdu.sender,
            target: target.as_deref(),
        };
        let interested = self.appservices.interested_in_event(
            &scope,
            state_before,
            || self.joined_members(&pdu.room_id),
            || self.room_aliases(&pdu.room_id),
        )?;
        if let Some(target) = &target {
            self.queue_device_list_membership(batch, pdu, target, &interested)?;
        }
        self.appservices.queue(batch, interested, &Queued::Event(pdu.event_id.clone()))
    }

    /// MSC3202: a user who joins a room with an appservice's users newly shares a room with
    /// them (their devices are of interest); one who leaves the last such room no longer does.
    fn queue_device_list_membership(
        &self,
        batch: &mut Batch<'_>,
        pdu: &Pdu,
        target: &UserId,
        interested: &[Arc<Appservice>],
    ) -> Result<()> {
        let concerned: Vec<Arc<Appservice>> = interested
            .iter()
            .filter(|appservice| appservice.device_data && !appservice.claims_user(target))
            .cloned()
            .collect();
        if concerned.is_empty() {
            return Ok(());
        }
        let membership = pdu
            .content_value()
            .get("membership")
            .and_then(Value::as_str)
            .map(MembershipState::from);
        match membership {
            Some(MembershipState::Join) => self
                .appservices
                .queue(batch, concerned, &Queued::DeviceListChanged(target.to_owned())),
            Some(MembershipState::Leave | MembershipState::Ban) => {
                let mut still_sharing = Vec::new();
                for room_id in self.rooms_of_user(target, &MembershipState::Join)? {
                    if room_id != pdu.room_id {
                        still_sharing.extend(self.joined_members(&room_id)?);
                    }
                }
                let gone: Vec<Arc<Appservice>> = concerned
                    .into_iter()
                    .filter(|appservice| !still_sharing.iter().any(|user| appservice.claims_user(user)))
                    .collect();
                self.appservices.queue(batch, gone, &Queued::DeviceListLeft(target.to_owned()))
            }
            _ => Ok(()),
        }
    }
}
