//! Who may see what: history visibility and membership, applied to every event a user reads,
//! and the client format events are shown in.

use std::collections::HashMap;
use std::sync::Arc;

use ruma::events::StateEventType;
use ruma::events::room::member::MembershipState;

use ruma::{DeviceId, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, RoomId, UserId};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

use super::pdu::Pdu;
use super::state::{StateHash, StateRef};
use super::{EventMeta, Replaced, Rooms, ServedEvent, StoredEvent};
use crate::error::{Error, Result};
use crate::service::now_ms;

/// Who an event is served to: thread participation is the user's, and an event's transaction
/// ID is shown only to the device that sent it.
#[derive(Debug, Clone, Copy)]
pub struct Viewer<'a> {
    pub user: &'a UserId,
    pub device: Option<&'a DeviceId>,
}

/// What deciding visibility read, kept while one user reads many events (the messages of a
/// page share the state before them, and the user's membership now is the same for all).
#[derive(Default)]
pub struct VisibilityMemo {
    /// Per state: its history visibility and the user's membership in it.
    states: HashMap<StateHash, (String, MembershipState)>,
    /// Per room: whether the user is joined to it now.
    joined_now: HashMap<OwnedRoomId, bool>,
}

impl<'a> Viewer<'a> {
    /// A user on one of their devices.
    pub fn device(user: &'a UserId, device: &'a DeviceId) -> Self {
        Viewer {
            user,
            device: Some(device),
        }
    }

    /// A user, on no device in particular.
    pub fn user(user: &'a UserId) -> Self {
        Viewer { user, device: None }
    }
}

impl Rooms {
    /// Refuses with 403 unless `user` is in the room now or was in it once (a user who left
    /// still reads what they could see while they were in it); world-readable rooms are open
    /// to all.
    pub fn check_can_read_room(&self, room_id: &RoomId, user: &UserId) -> Result<()> {
        let state = self.current_state(room_id)?;
        let world_readable = self
            .state_content(&state, &StateEventType::RoomHistoryVisibility, "")?
            .is_some_and(|content| content.get("history_visibility").and_then(Value::as_str) == Some("world_readable"));
        if world_readable
            || self
                .membership(user, room_id)?
                .is_some_and(|record| record.membership != MembershipState::Invite)
        {
            return Ok(());
        }
        Err(Error::forbidden("You are not a member of this room"))
    }

    /// Whether `user` may see an event, by the history visibility and their membership at it.
    pub fn can_see_event(&self, user: &UserId, stored: &StoredEvent) -> Result<bool> {
        let membership_change = stored.pdu.membership_change()?;
        let membership_change = membership_change
            .as_ref()
            .map(|(member, membership)| (member.as_str(), membership.clone()));
        self.can_see(user, &stored.meta, membership_change, &mut VisibilityMemo::default())
    }

    /// [`Rooms::can_see_event`] for one of many events `user` reads, keeping in `seen` what it
    /// read of their states and of the user's membership now.
    pub fn can_see_event_remembering(&self, user: &UserId, event: &ServedEvent, seen: &mut VisibilityMemo) -> Result<bool> {
        self.can_see(user, &event.meta, event.pdu.membership_change(), seen)
    }

    /// Whether `user` may see the event `meta` describes, which sets `membership_change` if it
    /// is a member event.
    fn can_see(
        &self,
        user: &UserId,
        meta: &EventMeta,
        membership_change: Option<(&str, MembershipState)>,
        seen: &mut VisibilityMemo,
    ) -> Result<bool> {
        let Some(hash) = meta.state_before else {
            // The create event: visible to anyone who may read the room at all.
            return Ok(true);
        };
        let (visibility, membership_in_state) = match seen.states.get(&hash) {
            Some(known) => known.clone(),
            None => {
                let state = StateRef::at(hash);
                let visibility = self
                    .state_content(&state, &StateEventType::RoomHistoryVisibility, "")?
                    .and_then(|content| content.get("history_visibility").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or_else(|| "shared".to_owned());
                let known = (visibility, self.membership_in(&state, user)?);
                seen.states.insert(hash, known.clone());
                known
            }
        };
        // A user's own membership event counts as the membership it sets.
        let membership_at_event = match membership_change {
            Some((member, membership)) if member == user.as_str() => membership,
            _ => membership_in_state,
        };
        Ok(match visibility.as_str() {
            "world_readable" => true,
            _ if membership_at_event == MembershipState::Join => true,
            "shared" => match seen.joined_now.get(&meta.room_id) {
                Some(joined) => *joined,
                None => {
                    let joined = self
                        .membership(user, &meta.room_id)?
                        .is_some_and(|record| record.membership == MembershipState::Join);
                    seen.joined_now.insert(meta.room_id.clone(), joined);
                    joined
                }
            },
            "invited" => membership_at_event == MembershipState::Invite,
            _ => false,
        })
    }

    /// An event in the client format as `viewer` sees it, with `unsigned` (age, the sender
    /// device's transaction ID, the replaced state's content, the redaction that redacted it)
    /// and the aggregations of the events relating to it (`m.relations`).
    pub fn client_event(&self, event_id: &EventId, stored: &StoredEvent, viewer: Option<Viewer<'_>>) -> Result<ClientEvent> {
        self.served_client_event(self.parsed_pdu(event_id, stored)?, &stored.meta, viewer)
    }

    /// [`Rooms::client_event`] of an event as it is served.
    pub fn served_client_event(&self, pdu: Arc<Pdu>, meta: &EventMeta, viewer: Option<Viewer<'_>>) -> Result<ClientEvent> {
        let mut event = self.format_event(pdu, meta, viewer)?;
        event.unsigned.relations = self.bundled_relations(&event.pdu, meta, viewer.map(|viewer| viewer.user))?;
        Ok(event)
    }

    /// An event in the client format without the aggregations of the events relating to it.
    pub(super) fn bare_client_event(&self, event_id: &EventId, stored: &StoredEvent, viewer: Option<Viewer<'_>>) -> Result<ClientEvent> {
        self.format_event(Arc::new(stored.pdu.parse(event_id, &stored.meta.room_id)?), &stored.meta, viewer)
    }

    /// The client format of a parsed event.
    fn format_event(&self, pdu: Arc<Pdu>, meta: &EventMeta, viewer: Option<Viewer<'_>>) -> Result<ClientEvent> {
        let mut unsigned = Unsigned {
            age: now_ms().saturating_sub(u64::from(pdu.origin_server_ts.0)),
            ..Unsigned::default()
        };
        if let (
            Some(transaction),
            Some(Viewer {
                user,
                device: Some(device),
            }),
        ) = (&meta.transaction, viewer)
            && pdu.sender == user
            && transaction.device_id == device
        {
            unsigned.transaction_id = Some(transaction.txn_id.clone());
        }
        if let Some(state_key) = &pdu.state_key {
            let previous = match (&meta.replaced, meta.state_before) {
                (Some(Replaced::Event(previous)), _) => self.shared_pdu(previous)?,
                (None, Some(hash)) => {
                    let kind = StateEventType::from(pdu.kind.to_string().as_str());
                    match self.state_event_id(&StateRef::at(hash), &kind, state_key)? {
                        Some(previous) => self.shared_pdu(&previous)?,
                        None => None,
                    }
                }
                _ => None,
            };
            if let Some(previous) = previous {
                unsigned.prev_content = Some(previous.content.clone());
                unsigned.replaces_state = Some(previous.event_id.clone());
            }
        }
        if let Some(redaction_id) = &meta.redacted_by
            && let Some(redaction) = self.stored_event(redaction_id)?
        {
            unsigned.redacted_because = Some(Box::new(self.bare_client_event(redaction_id, &redaction, None)?));
        }
        Ok(ClientEvent { pdu, unsigned })
    }
}

/// An event in the client format: the parsed event and its `unsigned`, serialized straight from
/// them (the content passes through as the stored JSON text, never parsed).
#[derive(Debug, Clone)]
pub struct ClientEvent {
    pdu: Arc<Pdu>,
    pub unsigned: Unsigned,
}

/// An event's `unsigned` as the server serves it, its members in the order of their names.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Unsigned {
    /// Milliseconds since the event was sent.
    pub age: u64,
    /// The aggregations of the events relating to it.
    #[serde(rename = "m.relations", skip_serializing_if = "Option::is_none")]
    pub relations: Option<Value>,
    /// The content of the state event it replaced (the stored JSON text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_content: Option<Box<RawValue>>,
    /// The redaction that redacted it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redacted_because: Option<Box<ClientEvent>>,
    /// The ID of the state event it replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaces_state: Option<OwnedEventId>,
    /// The transaction ID, for the device that sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
}

impl ClientEvent {
    /// The event it shows.
    pub fn pdu(&self) -> &Pdu {
        &self.pdu
    }

    /// The event as a JSON value, for code that edits or inspects it as one.
    pub fn to_value(&self) -> Result<Value> {
        Ok(serde_json::to_value(self)?)
    }

    /// The event as `/sync` and sliding sync carry it, under its room: the spec's
    /// `ClientEventWithoutRoomID`, as Synapse sends it there.
    pub fn without_room_id(&self) -> WithoutRoomId<'_> {
        WithoutRoomId(self)
    }

    /// Writes the event's members, `room_id` among them when `with_room_id`.
    fn serialize_members<S: Serializer>(&self, serializer: S, with_room_id: bool) -> std::result::Result<S::Ok, S::Error> {
        let pdu = &self.pdu;
        let mut event = serializer.serialize_map(None)?;
        event.serialize_entry("event_id", &pdu.event_id)?;
        if with_room_id {
            event.serialize_entry("room_id", &pdu.room_id)?;
        }
        event.serialize_entry("sender", &pdu.sender)?;
        event.serialize_entry("origin_server_ts", &pdu.origin_server_ts)?;
        event.serialize_entry("type", &pdu.kind)?;
        event.serialize_entry("content", &pdu.content)?;
        if let Some(state_key) = &pdu.state_key {
            event.serialize_entry("state_key", state_key)?;
        }
        if let Some(redacts) = &pdu.redacts {
            event.serialize_entry("redacts", redacts)?;
        }
        event.serialize_entry("unsigned", &self.unsigned)?;
        event.end()
    }

    /// Writes the event as [`ClientEvent::without_room_id`] serializes it straight into `out`,
    /// for the answers written by hand: the member names as they are and the IDs and the type
    /// copied whole unless they hold a character JSON escapes (serde_json looks at every byte
    /// of every string, which was a tenth of a first sync's time).
    pub fn write_without_room_id(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let pdu = &self.pdu;
        out.extend_from_slice(br#"{"event_id":"#);
        write_json_str(out, pdu.event_id.as_str())?;
        out.extend_from_slice(br#","sender":"#);
        write_json_str(out, pdu.sender.as_str())?;
        out.extend_from_slice(br#","origin_server_ts":"#);
        serde_json::to_writer(&mut *out, &pdu.origin_server_ts)?;
        out.extend_from_slice(br#","type":"#);
        serde_json::to_writer(&mut *out, &pdu.kind)?;
        out.extend_from_slice(br#","content":"#);
        out.extend_from_slice(pdu.content.get().as_bytes());
        if let Some(state_key) = &pdu.state_key {
            out.extend_from_slice(br#","state_key":"#);
            write_json_str(out, state_key)?;
        }
        if let Some(redacts) = &pdu.redacts {
            out.extend_from_slice(br#","redacts":"#);
            write_json_str(out, redacts.as_str())?;
        }
        out.extend_from_slice(br#","unsigned":"#);
        serde_json::to_writer(&mut *out, &self.unsigned)?;
        out.push(b'}');
        Ok(())
    }
}

/// Writes `text` as a JSON string: copied whole when no byte of it needs escaping (checked
/// over the whole string at once, which the compiler vectorizes), through serde_json if one
/// does.
fn write_json_str(out: &mut Vec<u8>, text: &str) -> serde_json::Result<()> {
    let escaped = text
        .bytes()
        .fold(false, |escaped, byte| escaped | (byte < 0x20) | (byte == b'"') | (byte == b'\\'));
    if escaped {
        return serde_json::to_writer(out, text);
    }
    out.reserve(text.len() + 2);
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
    Ok(())
}

impl Serialize for ClientEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.serialize_members(serializer, true)
    }
}

/// [`ClientEvent::without_room_id`].
pub struct WithoutRoomId<'a>(&'a ClientEvent);

impl Serialize for WithoutRoomId<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize_members(serializer, false)
    }
}

/// Events read per step of the timestamp scan.
const TIMESTAMP_BATCH: usize = 200;

impl Rooms {
    /// The first event at or after `ts` (`forward`), or the last at or before it, that
    /// `visible` lets through: (event ID, its timestamp); 404 when there is none. Timestamps
    /// follow the stream order closely, so the timeline is scanned from the end the direction
    /// starts at.
    pub fn event_by_timestamp(
        &self,
        room_id: &RoomId,
        ts: MilliSecondsSinceUnixEpoch,
        forward: bool,
        visible: impl Fn(&StoredEvent) -> Result<bool>,
    ) -> Result<(OwnedEventId, MilliSecondsSinceUnixEpoch)> {
        let mut cursor = None;
        loop {
            let batch = self.timeline(room_id, cursor, forward, TIMESTAMP_BATCH)?;
            let exhausted = batch.len() < TIMESTAMP_BATCH;
            for (position, event_id) in batch {
                cursor = Some(if forward { position + 1 } else { position.saturating_sub(1) });
                let Some(stored) = self.stored_event(&event_id)? else {
                    continue;
                };
                let pdu = stored.pdu.parse(&event_id, &stored.meta.room_id)?;
                let hit = if forward {
                    pdu.origin_server_ts >= ts
                } else {
                    pdu.origin_server_ts <= ts
                };
                if hit && visible(&stored)? {
                    return Ok((event_id, pdu.origin_server_ts));
                }
            }
            if exhausted {
                return Err(Error::not_found("No event found in that direction"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ruma::{event_id, room_id};
    use serde_json::{Value, json};

    use super::{ClientEvent, Pdu, Unsigned};

    fn client_event(object: Value, unsigned: Unsigned) -> ClientEvent {
        let object = serde_json::from_value(object).unwrap();
        let pdu = Pdu::from_object(event_id!("$e:x"), room_id!("!r:x"), &object).unwrap();
        ClientEvent {
            pdu: Arc::new(pdu),
            unsigned,
        }
    }

    #[test]
    fn written_by_hand_as_serialized() {
        let pdu = |fields: Value| {
            let mut object = json!({
                "sender": "@a:x", "origin_server_ts": 12, "depth": 2, "prev_events": [], "auth_events": [],
                "room_id": "!r:x",
            });
            object.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
            object
        };
        let member = pdu(json!({ "type": "m.room.member", "state_key": "@a:x", "content": { "membership": "join", "n": "\"q\"\n" } }));
        let redaction = pdu(json!({ "type": "m.room.redaction", "redacts": "$r:x", "content": {} }));
        let odd = pdu(json!({ "type": "x.\"odd\"", "state_key": "a\\b\u{1}", "content": {} }));
        let unsigned = Unsigned {
            age: 5,
            relations: Some(json!({ "m.thread": { "count": 1 } })),
            prev_content: Some(serde_json::value::to_raw_value(&json!({ "membership": "invite" })).unwrap()),
            redacted_because: Some(Box::new(client_event(redaction.clone(), Unsigned::default()))),
            replaces_state: Some(event_id!("$p:x").to_owned()),
            transaction_id: Some("t\"1".into()),
        };
        for event in [
            client_event(member, unsigned),
            client_event(redaction, Unsigned::default()),
            client_event(odd, Unsigned::default()),
        ] {
            let mut written = Vec::new();
            event.write_without_room_id(&mut written).unwrap();
            let written: Value = serde_json::from_slice(&written).unwrap();
            assert_eq!(written, serde_json::to_value(event.without_room_id()).unwrap());
            assert!(written.get("room_id").is_none() && written["event_id"] == "$e:x");
        }
    }
}
