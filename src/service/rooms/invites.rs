//! What an invitee sees of a room before joining it (stripped state), and invites and their
//! rejections for rooms this server does not take part in: another server's user invited one
//! of ours. Such a room has no record here; the invite is kept as an outlier with the stripped
//! state its server sent, and the invitee's membership record points at it, so `/sync` and
//! sliding sync list the invite, and a rejection made through the inviting server ends it.

use ruma::canonical_json::CanonicalJsonObject;
use ruma::events::StateEventType;
use ruma::events::room::member::MembershipState;
use ruma::{EventId, OwnedUserId, RoomId, UserId};
use serde_json::{Value, json};

use super::pdu::Pdu;
use super::{MembershipRecord, Rooms};
use crate::error::Result;
use crate::store::{Table, key};

/// The state events an invitee or knocker is shown.
pub const STRIPPED_STATE: [&str; 6] = [
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
];

/// An event in stripped form: type, state key, content and sender.
pub fn stripped(pdu: &Pdu) -> Value {
    json!({ "type": pdu.kind, "state_key": pdu.state_key, "content": pdu.content_value(), "sender": pdu.sender })
}

impl Rooms {
    /// The full PDUs of the room's stripped state events, as an invite to another server
    /// carries them.
    pub fn stripped_state_pdus(&self, room_id: &RoomId) -> Result<Vec<CanonicalJsonObject>> {
        let state = self.current_state(room_id)?;
        let mut pdus = Vec::new();
        for kind in STRIPPED_STATE {
            if let Some(pdu) = self.state_pdu(&state, &StateEventType::from(kind), "")?
                && let Some(stored) = self.stored_event(&pdu.event_id)?
            {
                pdus.push(stored.pdu.object()?);
            }
        }
        Ok(pdus)
    }

    /// The stripped state an invitee or knocker sees, ending with their membership event: from
    /// the room's current state, or, for a room of other servers, as the invite brought it.
    pub fn stripped_state(&self, room_id: &RoomId, membership_event: &EventId) -> Result<Vec<Value>> {
        let mut events = match self.room(room_id) {
            Ok(_) => {
                let state = self.current_state(room_id)?;
                let mut events = Vec::new();
                for kind in STRIPPED_STATE {
                    if let Some(pdu) = self.state_pdu(&state, &StateEventType::from(kind), "")? {
                        events.push(stripped(&pdu));
                    }
                }
                events
            }
            Err(_) => self
                .store
                .get_json::<Vec<Value>>(Table::InviteStates, membership_event.as_bytes())?
                .unwrap_or_default(),
        };
        if let Some(pdu) = self.pdu(membership_event)? {
            events.push(stripped(&pdu));
        }
        Ok(events)
    }

    /// Records a membership event of a room this server does not take part in (an invite of
    /// one of its users, or the rejection of one): the event as an outlier, the stripped state
    /// shown with it, and the user's membership at a new stream position, waking them.
    pub fn record_outside_membership(&self, pdu: &Pdu, object: CanonicalJsonObject, stripped_state: &[Value]) -> Result<()> {
        let Some(target) = pdu.state_key.as_deref().and_then(|key| UserId::parse(key).ok()) else {
            return Ok(());
        };
        let membership = pdu
            .content_value()
            .get("membership")
            .and_then(Value::as_str)
            .map_or(MembershipState::Leave, MembershipState::from);
        let ticket = self.stream.begin()?;
        let mut batch = self.store.batch();
        self.store_outliers(&mut batch, &[(pdu.clone(), object)])?;
        batch.put_json(Table::InviteStates, pdu.event_id.as_bytes(), &stripped_state);
        let record = MembershipRecord {
            membership,
            event_id: pdu.event_id.clone(),
            stream: ticket.position(),
            forgotten: false,
        };
        let room_id = pdu.room_id.as_bytes();
        batch.put_json(Table::Memberships, &key(&[target.as_bytes(), room_id]), &record);
        self.forget_memberships_on_commit(&mut batch, &target);
        self.room_changes.stage(&mut batch, ticket.position(), &pdu.room_id);
        batch.commit()?;
        let woken: Vec<OwnedUserId> = vec![target.clone()];
        ticket.complete(woken);
        Ok(())
    }

    /// The invite a local user holds to a room this server does not take part in.
    pub fn outside_invite(&self, user: &UserId, room_id: &RoomId) -> Result<Option<Pdu>> {
        if self.room(room_id).is_ok() {
            return Ok(None);
        }
        match self.membership(user, room_id)? {
            Some(record) if record.membership == MembershipState::Invite => self.pdu(&record.event_id),
            _ => Ok(None),
        }
    }
}
