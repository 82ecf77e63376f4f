//! Writing events: a room's create event, appending a local event under the room's lock, and
//! what every event written (local or from another server) goes through — its row, its
//! timeline entry, the room's new state and extremities, the membership and transaction
//! indexes, a redaction's target, the relation and search indexes — then the wake-ups once the
//! batch is committed.

use ruma::canonical_json::CanonicalJsonObject;
use ruma::events::room::member::MembershipState;
use ruma::events::{StateEventType, TimelineEventType};
use ruma::room_version_rules::RoomVersionRules;
use ruma::{EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedServerName, RoomId, RoomVersionId, UserId};
use serde_json::Value;

use super::pdu::{Pdu, StoredPdu, UnsignedPdu};
use super::state::{StateHash, StateMap};
use super::{BUMP_TYPES, EventMeta, MembershipRecord, NewEvent, Replaced, RoomRecord, Rooms, StoredEvent, Transaction, relation, rules};
use crate::error::{Error, Result};
use crate::service::now_ms;
use crate::service::stream::{Audience, Ticket};
use crate::store::{Batch, Table, key};

/// What is written with an event besides the PDU.
pub(super) struct Written {
    pub(super) state_before: Option<StateHash>,
    pub(super) transaction: Option<Transaction>,
    pub(super) stream: u64,
    /// For an event that forks the room (it does not follow every forward extremity): the
    /// room's current state resolved with the state after the event.
    pub(super) resolved: Option<StateMap>,
    /// The servers to send the event to, when not the rule's: events of this server's users
    /// go to every server in the room (before and after a membership change), others nowhere.
    pub(super) forward_to: Option<Vec<OwnedServerName>>,
}

impl Rooms {
    /// The transaction's event, if this device already sent it to this room.
    pub fn transaction_event(&self, user_id: &UserId, room_id: &RoomId, transaction: &Transaction) -> Result<Option<OwnedEventId>> {
        let row = self
            .store
            .get(Table::Transactions, &transaction_key(user_id, room_id, transaction))?;
        Ok(row.and_then(|bytes| EventId::parse(String::from_utf8_lossy(&bytes).as_ref()).ok()))
    }

    /// Creates a room with its `m.room.create` event; returns its ID. The rest of the room's
    /// initial events are appended by the caller, which holds nothing: the room is not
    /// reachable before its ID is returned.
    pub async fn create(&self, version: &RoomVersionId, creator: &UserId, content: Value) -> Result<OwnedRoomId> {
        let rules = rules(version)?;
        let room_id = if rules.authorization.room_create_event_id_as_room_id {
            None
        } else {
            let local = crate::service::random_string(18);
            Some(RoomId::parse(format!("!{local}:{}", self.server_name)).map_err(|e| Error::Internal(e.to_string()))?)
        };
        let kind = TimelineEventType::RoomCreate;
        // In room version 12 the room ID is the create event's hash: the same creator making
        // two rooms alike within one millisecond would make one ID, so a taken ID moves the
        // timestamp on.
        let now = MilliSecondsSinceUnixEpoch::now();
        let mut attempt = 0u32;
        let (signed, pdu, _lock) = loop {
            let origin_server_ts = MilliSecondsSinceUnixEpoch(now.0.saturating_add(ruma::UInt::from(attempt)));
            let (signed, pdu) = self.sign(
                UnsignedPdu {
                    room_id: room_id.as_deref(),
                    sender: creator,
                    kind: &kind,
                    content: &content,
                    state_key: Some(""),
                    redacts: None,
                    prev_events: &[],
                    auth_events: &[],
                    depth: 1,
                    origin_server_ts,
                },
                &rules,
            )?;
            ruma::state_res::check_state_independent_auth_rules(&rules.authorization, &pdu, |_: &EventId| None::<Pdu>)
                .map_err(|reason| Error::bad_request(format!("The room cannot be created: {reason}")))?;
            let lock = self.lock_room(&signed.room_id).await?;
            if self.store.get(Table::Rooms, signed.room_id.as_bytes())?.is_none() {
                break (signed, pdu, lock);
            }
            attempt += 1;
            if attempt > 1000 {
                return Err(Error::Internal("no free room ID".into()));
            }
        };
        let mut room = RoomRecord {
            version: version.clone(),
            short_id: self.room_ids.next()?,
            state: 0,
            extremities: vec![],
            depth: 0,
            created_ts: now_ms(),
            servers: Vec::new(),

            bump_stamp: 0,
        };
        let ticket = self.stream.begin()?;
        let mut batch = self.store.batch();
        let written = Written {
            state_before: None,
            transaction: None,
            stream: ticket.position(),
            resolved: None,
            forward_to: None,
        };
        self.persist(&mut batch, &mut room, &pdu, signed.object, written)?;
        batch.commit()?;
        self.metrics.event_persisted();
        self.remember_room(&signed.room_id, &room);
        ticket.complete(vec![creator.to_owned()]);
        Ok(signed.room_id)
    }

    /// Appends an event to a room as `sender`; returns its event ID.
    pub async fn append(&self, room_id: &RoomId, sender: &UserId, event: NewEvent) -> Result<OwnedEventId> {
        let _lock = self.lock_room(room_id).await?;
        if let Some(transaction) = &event.transaction
            && let Some(existing) = self.transaction_event(sender, room_id, transaction)?
        {
            return Ok(existing);
        }
        let mut room = self.room_locked(room_id)?;
        let rules = rules(&room.version)?;
        let (signed, pdu) = self.build(&room, &rules, room_id, sender, &event)?;

        let ticket = self.stream.begin()?;
        let mut batch = self.store.batch();
        let redacted = pdu.redacted_event();
        if let Some(target) = &redacted {
            self.redact_target(&mut batch, &rules, room_id, target, &pdu.event_id)?;
        }
        let written = Written {
            state_before: Some(room.state),
            transaction: event.transaction,
            stream: ticket.position(),
            resolved: None,
            forward_to: None,
        };
        self.persist(&mut batch, &mut room, &pdu, signed.object, written)?;
        batch.commit()?;
        self.after_commit(&room, room_id, &pdu, ticket, redacted);
        Ok(pdu.event_id)
    }

    /// What follows a committed event: metrics, the cached room record, the outbox's sender
    /// and the wake-ups of the users it concerns.
    pub(super) fn after_commit(
        &self,
        room: &RoomRecord,
        room_id: &RoomId,
        pdu: &Pdu,
        mut ticket: Ticket<'_>,
        redacted: Option<OwnedEventId>,
    ) {
        if let Some(target) = &redacted {
            ticket.announce('r', target.to_string());
        }
        self.metrics.event_persisted();
        self.remember_room(room_id, room);
        if !room.servers.is_empty() {
            self.outbox.notify_one();
        }
        let members = self.users_to_wake(room_id).unwrap_or_default();
        if pdu.kind == TimelineEventType::RoomMember
            && let Some(target) = pdu.state_key.as_deref().and_then(|key| UserId::parse(key).ok())
        {
            ticket.complete(members.users().iter().cloned().chain([target]).collect::<Audience>());
        } else {
            ticket.complete(members);
        }
    }

    /// Redacts `target` (when it is in this room) in `batch`, recording `redaction_id`.
    pub(super) fn redact_target(
        &self,
        batch: &mut Batch<'_>,
        rules: &RoomVersionRules,
        room_id: &RoomId,
        target: &EventId,
        redaction_id: &EventId,
    ) -> Result<()> {
        let Some(mut stored) = self.stored_event(target)? else {
            return Ok(());
        };
        if stored.meta.room_id != room_id || stored.meta.redacted_by.is_some() {
            return Ok(());
        }
        let original = stored.pdu.parse(target, room_id)?;
        self.unindex_event(batch, &original, stored.meta.stream)?;
        let redacted = ruma::canonical_json::redact(stored.pdu.object()?, &rules.redaction, None)
            .map_err(|e| Error::Internal(format!("redaction of {target}: {e}")))?;
        stored.pdu = StoredPdu::new(&redacted)?;
        stored.meta.redacted_by = Some(redaction_id.to_owned());
        batch.put(Table::Events, target.as_bytes(), &stored.encode());
        self.drop_cached_on_commit(batch, target);
        Ok(())
    }

    /// Writes an authorized event into `batch`: the event, its timeline entry, the room's new
    /// state and extremities, and the indexes it touches.
    pub(super) fn persist(
        &self,
        batch: &mut Batch<'_>,
        room: &mut RoomRecord,
        pdu: &Pdu,
        object: CanonicalJsonObject,
        written: Written,
    ) -> Result<()> {
        let Written {
            state_before,
            transaction,
            stream,
            resolved,
            forward_to,
        } = written;
        let short_event = self.states.short_event_id(&pdu.event_id)?;
        let mut state_after = state_before;
        let mut replaced = None;
        if let Some(state_key) = &pdu.state_key {
            let kind = StateEventType::from(pdu.kind.to_string().as_str());
            let short_key = self
                .states
                .short_state_key(&kind, state_key, true)?
                .ok_or_else(|| Error::Internal("state key not interned".into()))?;
            let previous = match state_before {
                Some(hash) => self.states.event_at(hash, short_key)?,
                None => None,
            };
            replaced = Some(match previous {
                Some(previous) => Replaced::Event(self.states.event_id(previous)?),
                None => Replaced::Nothing,
            });
            state_after = Some(self.states.save(batch, state_before, &[(short_key, short_event)])?);
        }
        let state_after = state_after.ok_or_else(|| Error::Internal("an event without a state".into()))?;
        // An event following every forward extremity moves the room on; one that forks it adds
        // an extremity, and the room's state is the resolution of both sides.
        if room.extremities.iter().all(|extremity| pdu.prev_events.contains(extremity)) {
            room.state = state_after;
            room.extremities = vec![pdu.event_id.clone()];
        } else {
            if let Some(resolved) = resolved {
                let current = self.states.load(room.state)?;
                let changes: Vec<(u64, u64)> = resolved
                    .into_iter()
                    .filter(|(key, event)| current.get(key) != Some(event))
                    .collect();
                room.state = self.states.save(batch, Some(room.state), &changes)?;
            }
            room.extremities.retain(|extremity| !pdu.prev_events.contains(extremity));
            room.extremities.push(pdu.event_id.clone());
        }
        room.depth = room.depth.max(u64::from(pdu.depth));
        if !pdu.rejected && BUMP_TYPES.contains(&pdu.kind.to_string().as_str()) {
            room.bump_stamp = room.bump_stamp.max(stream);
        }

        self.queue_outgoing(batch, room, pdu, forward_to, stream)?;
        self.queue_for_appservices(batch, pdu, state_before)?;

        let room_id = pdu.room_id.as_bytes();
        if pdu.kind == TimelineEventType::RoomMember
            && let Some(target) = pdu.state_key.as_deref()
        {
            let membership = pdu
                .content_value()
                .get("membership")
                .and_then(Value::as_str)
                .map(MembershipState::from)
                .unwrap_or(MembershipState::Leave);
            let record = MembershipRecord {
                membership: membership.clone(),
                event_id: pdu.event_id.clone(),
                stream,
                forgotten: false,
            };
            batch.put_json(Table::Memberships, &key(&[target.as_bytes(), room_id]), &record);
            if let Ok(user) = UserId::parse(target) {
                self.forget_memberships_on_commit(batch, &user);
            }
            batch.put_json(Table::RoomMembers, &key(&[room_id, target.as_bytes()]), &membership);
            batch.put_json(Table::MemberChanges, &stream.to_be_bytes(), &(&pdu.room_id, target, &membership));
        }
        if let Some(transaction) = &transaction {
            batch.put(
                Table::Transactions,
                &transaction_key(&pdu.sender, &pdu.room_id, transaction),
                pdu.event_id.as_bytes(),
            );
        }
        self.index_event(batch, pdu, stream)?;
        batch.put(
            Table::Timeline,
            &key(&[&room.short_id.to_be_bytes(), &stream.to_be_bytes()]),
            pdu.event_id.as_bytes(),
        );
        self.room_changes.stage(batch, stream, &pdu.room_id);
        let stored = StoredEvent {
            meta: EventMeta {
                room_id: pdu.room_id.clone(),
                stream,
                state_before,
                transaction,
                redacted_by: None,
                related: false,
                replaced,
            },
            pdu: StoredPdu::new(&object)?,
        };
        batch.put(Table::Events, pdu.event_id.as_bytes(), &stored.encode());
        batch.put_json(Table::Rooms, room_id, room);
        Ok(())
    }

    /// Indexes an event stored at stream position `stream` in `batch`: its relation and its
    /// searchable text.
    pub(super) fn index_event(&self, batch: &mut Batch<'_>, pdu: &Pdu, stream: u64) -> Result<()> {
        self.index_text(batch, pdu, stream);
        self.index_relation(batch, pdu, stream)
    }

    /// Removes a redacted event from the indexes: its relation no longer counts, its text is
    /// no longer found.
    fn unindex_event(&self, batch: &mut Batch<'_>, original: &Pdu, stream: u64) -> Result<()> {
        self.unindex_text(batch, original, stream);
        if let Some((_, parent)) = relation(&original.content_value()) {
            batch.delete(
                Table::Relations,
                &key(&[original.room_id.as_bytes(), parent.as_bytes(), &stream.to_be_bytes()]),
            );
        }
        Ok(())
    }
}

/// Where a transaction's event ID is kept: transaction IDs are scoped to a device and a room.
fn transaction_key(user_id: &UserId, room_id: &RoomId, transaction: &Transaction) -> Vec<u8> {
    key(&[
        user_id.as_bytes(),
        transaction.device_id.as_bytes(),
        room_id.as_bytes(),
        transaction.txn_id.as_bytes(),
    ])
}
