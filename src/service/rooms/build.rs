//! Building local events: a PDU on the room's forward extremities with the auth events the
//! spec selects, hashed and signed by this server, and authorized against the room's current
//! state before anything is written.

use ruma::canonical_json::CanonicalJsonObject;
use ruma::events::StateEventType;
use ruma::room_version_rules::RoomVersionRules;
use ruma::{EventId, MilliSecondsSinceUnixEpoch, RoomId, UserId};

use super::pdu::{self, Pdu, UnsignedPdu};
use super::{NewEvent, RoomRecord, Rooms, rules};
use crate::error::{Error, Result};

impl Rooms {
    /// Builds and signs a PDU as this server, and parses it for the auth checks.
    pub(super) fn sign(&self, fields: UnsignedPdu<'_>, rules: &RoomVersionRules) -> Result<(pdu::SignedPdu, Pdu)> {
        let signed = pdu::build_and_sign(fields, rules, self.server_name.as_str(), self.key.pair())?;
        let pdu = Pdu::from_object(&signed.event_id, &signed.room_id, &signed.object)?;
        Ok((signed, pdu))
    }

    /// Builds, signs and authorizes an event of `sender` on the room's forward extremities and
    /// current state (the caller holds the room's lock).
    pub(super) fn build(
        &self,
        room: &RoomRecord,
        rules: &RoomVersionRules,
        room_id: &RoomId,
        sender: &UserId,
        event: &NewEvent,
    ) -> Result<(pdu::SignedPdu, Pdu)> {
        let state = self.states.load(room.state)?;
        let content_raw = serde_json::value::to_raw_value(&event.content)?;
        let auth_types =
            ruma::state_res::auth_types_for_event(&event.kind, sender, event.state_key.as_deref(), &content_raw, &rules.authorization)
                .map_err(|e| Error::bad_json(format!("Invalid event content: {e}")))?;
        let mut auth_events = Vec::new();
        for (kind, state_key) in &auth_types {
            if let Some(pdu) = self.state_pdu(&state, kind, state_key)? {
                auth_events.push(pdu.event_id);
            }
        }
        // The create event is an auth event until room version 12, where the room ID names it.
        let (signed, pdu) = self.sign(
            UnsignedPdu {
                room_id: Some(room_id),
                sender,
                kind: &event.kind,
                content: &event.content,
                state_key: event.state_key.as_deref(),
                redacts: event.redacts.as_deref(),
                prev_events: &room.extremities,
                auth_events: &auth_events,
                depth: room.depth + 1,
                origin_server_ts: event.timestamp.unwrap_or_else(MilliSecondsSinceUnixEpoch::now),
            },
            rules,
        )?;
        let fetch_event = |id: &EventId| self.pdu(id).ok().flatten();
        ruma::state_res::check_state_independent_auth_rules(&rules.authorization, &pdu, fetch_event).map_err(Error::forbidden)?;
        let fetch_state = |kind: &StateEventType, state_key: &str| self.state_pdu(&state, kind, state_key).ok().flatten();
        ruma::state_res::check_state_dependent_auth_rules(&rules.authorization, &pdu, fetch_state).map_err(Error::forbidden)?;
        Ok((signed, pdu))
    }

    /// An event of `sender` built, signed and authorized but not stored: an invite to another
    /// server's user, which that server signs too before it is appended.
    pub async fn draft(&self, room_id: &RoomId, sender: &UserId, event: NewEvent) -> Result<(Pdu, CanonicalJsonObject)> {
        let _lock = self.lock_room(room_id).await?;
        let room = self.room_locked(room_id)?;
        let rules = rules(&room.version)?;
        let (signed, pdu) = self.build(&room, &rules, room_id, sender, &event)?;
        Ok((pdu, signed.object))
    }
}
