//! PDUs: room events in the form federation exchanges them, built, hashed and signed here.
//!
//! Every event a local user sends is built as a full PDU of its room's version: `prev_events`
//! (the room's forward extremities), `auth_events` (chosen by the spec's selection rules),
//! `depth`, the content hash, the ed25519 signature of this server, and the reference-hash
//! event ID (for room version 12's create event, the room ID too). ruma's canonical JSON and
//! signatures do the hashing and signing; [`Pdu`] is the parsed view ruma's `state-res` checks
//! the authorization rules on.

use std::borrow::Cow;

use ruma::canonical_json::{CanonicalJsonObject, CanonicalJsonValue};
use ruma::events::TimelineEventType;
use ruma::events::room::member::MembershipState;
use ruma::room_version_rules::{EventIdFormatVersion, EventsReferenceFormatVersion, RoomVersionRules};
use ruma::{EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UInt, UserId};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue as RawJsonValue;
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// A parsed PDU with its event ID (which the wire format of room versions 3 and later leaves out).
#[derive(Debug, Clone)]
pub struct Pdu {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    pub kind: TimelineEventType,
    pub content: Box<RawJsonValue>,
    pub state_key: Option<String>,
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    pub depth: UInt,
    pub redacts: Option<OwnedEventId>,
    /// Whether the event failed the authorization rules (kept for the DAG, never shown).
    pub rejected: bool,
    /// Whether the room ID is derived from the event rather than one of its fields (room
    /// version 12's create event).
    pub room_id_derived: bool,
}

/// The fields of a PDU's JSON that [`Pdu`] keeps.
#[derive(Deserialize)]
struct PduFields {
    #[serde(default)]
    room_id: Option<IgnoredAny>,
    sender: OwnedUserId,
    origin_server_ts: MilliSecondsSinceUnixEpoch,
    #[serde(rename = "type")]
    kind: TimelineEventType,
    content: Box<RawJsonValue>,
    #[serde(default)]
    state_key: Option<String>,
    #[serde(default, deserialize_with = "event_references")]
    prev_events: Vec<OwnedEventId>,
    #[serde(default, deserialize_with = "event_references")]
    auth_events: Vec<OwnedEventId>,
    depth: UInt,
    #[serde(default)]
    redacts: Option<OwnedEventId>,
}

/// An event reference: an event ID (room versions 3 and later) or an `[event ID, hashes]` pair
/// (versions 1 and 2).
#[derive(Deserialize)]
#[serde(untagged)]
enum EventReference {
    Id(OwnedEventId),
    WithHashes(OwnedEventId, IgnoredAny),
}

/// Reads `prev_events` / `auth_events` in the format of any room version.
fn event_references<'de, D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Vec<OwnedEventId>, D::Error> {
    let references: Vec<EventReference> = Deserialize::deserialize(deserializer)?;
    Ok(references
        .into_iter()
        .map(|reference| match reference {
            EventReference::Id(id) | EventReference::WithHashes(id, _) => id,
        })
        .collect())
}

/// A stored signed PDU, kept as its canonical JSON text: serving an event reads a few of its
/// fields, so the whole object is parsed only where it is needed (federation, redaction).
#[derive(Debug, Clone, Default)]
pub struct StoredPdu(Box<str>);

/// The fields of a PDU that say whether it is a membership event, and which.
#[derive(Deserialize)]
struct MembershipFields<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    state_key: Option<Cow<'a, str>>,
    content: &'a RawJsonValue,
}

/// The `membership` of a member event's content.
#[derive(Deserialize)]
struct MembershipContent {
    #[serde(default)]
    membership: Option<MembershipState>,
}

impl StoredPdu {
    /// The stored form of a signed PDU.
    pub fn new(object: &CanonicalJsonObject) -> Result<Self> {
        Ok(StoredPdu(serde_json::to_string(object)?.into()))
    }

    /// The PDU's JSON text as read from the store, not checked.
    pub(super) fn from_text(text: String) -> Self {
        StoredPdu(text.into())
    }

    /// The PDU's JSON text.
    pub fn text(&self) -> &str {
        &self.0
    }

    /// The PDU as raw JSON, as federation sends it.
    pub fn to_raw(&self) -> Result<Box<RawJsonValue>> {
        RawJsonValue::from_string(self.0.to_string()).map_err(|e| Error::Internal(format!("a stored PDU does not parse: {e}")))
    }

    /// The PDU as a canonical JSON object.
    pub fn object(&self) -> Result<CanonicalJsonObject> {
        serde_json::from_str(&self.0).map_err(|e| Error::Internal(format!("a stored PDU does not parse: {e}")))
    }

    /// The PDU parsed, given its event ID and room ID.
    pub fn parse(&self, event_id: &EventId, room_id: &RoomId) -> Result<Pdu> {
        Pdu::from_json(event_id, room_id, &self.0)
    }

    /// For a member event, the user it is about and the membership it sets (`leave` when its
    /// content has none, as redacted ones may not).
    pub fn membership_change(&self) -> Result<Option<(String, MembershipState)>> {
        // The canonical JSON of a member event has this text; most events are not, and their
        // text says so faster than a parse.
        if !self.0.contains(r#""type":"m.room.member""#) {
            return Ok(None);
        }
        let fields: MembershipFields<'_> =
            serde_json::from_str(&self.0).map_err(|e| Error::Internal(format!("a stored PDU does not parse: {e}")))?;
        let (true, Some(state_key)) = (fields.kind == "m.room.member", fields.state_key) else {
            return Ok(None);
        };
        Ok(Some((state_key.into_owned(), membership_set(fields.content))))
    }
}

/// The membership a member event's content sets (`leave` when it has none, as redacted ones
/// may not).
fn membership_set(content: &RawJsonValue) -> MembershipState {
    let content: MembershipContent = serde_json::from_str(content.get()).unwrap_or(MembershipContent { membership: None });
    content.membership.unwrap_or(MembershipState::Leave)
}

impl Pdu {
    /// For a member event, the user it is about and the membership it sets (see
    /// [`StoredPdu::membership_change`]).
    pub fn membership_change(&self) -> Option<(&str, MembershipState)> {
        if self.kind != TimelineEventType::RoomMember {
            return None;
        }
        Some((self.state_key.as_deref()?, membership_set(&self.content)))
    }

    /// Parses a stored PDU, given its event ID and room ID.
    pub fn from_object(event_id: &EventId, room_id: &RoomId, object: &CanonicalJsonObject) -> Result<Pdu> {
        Pdu::from_json(event_id, room_id, &serde_json::to_string(object)?)
    }

    /// Parses a PDU's JSON text, given its event ID and room ID.
    fn from_json(event_id: &EventId, room_id: &RoomId, json: &str) -> Result<Pdu> {
        let fields: PduFields =
            serde_json::from_str(json).map_err(|e| Error::Internal(format!("stored PDU {event_id} does not parse: {e}")))?;
        Ok(Pdu {
            event_id: event_id.to_owned(),
            room_id: room_id.to_owned(),
            sender: fields.sender,
            origin_server_ts: fields.origin_server_ts,
            kind: fields.kind,
            content: fields.content,
            state_key: fields.state_key,
            prev_events: fields.prev_events,
            auth_events: fields.auth_events,
            depth: fields.depth,
            redacts: fields.redacts,
            rejected: false,
            room_id_derived: fields.room_id.is_none(),
        })
    }

    /// The content as JSON.
    pub fn content_value(&self) -> Value {
        serde_json::from_str(self.content.get()).unwrap_or(Value::Null)
    }

    /// The event that a redaction redacts: top-level `redacts` before room version 11,
    /// `content.redacts` from 11 on (both are read, as servers send both).
    pub fn redacted_event(&self) -> Option<OwnedEventId> {
        if self.kind != TimelineEventType::RoomRedaction {
            return None;
        }
        self.redacts.clone().or_else(|| {
            self.content_value()
                .get("redacts")
                .and_then(Value::as_str)
                .and_then(|id| EventId::parse(id).ok())
        })
    }
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.event_id
    }

    fn room_id(&self) -> Option<&RoomId> {
        (!self.room_id_derived).then_some(&*self.room_id)
    }

    fn sender(&self) -> &UserId {
        &self.sender
    }

    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }

    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }

    fn content(&self) -> &RawJsonValue {
        &self.content
    }

    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }

    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.prev_events.iter())
    }

    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.auth_events.iter())
    }

    fn redacts(&self) -> Option<&Self::Id> {
        self.redacts.as_ref()
    }

    fn rejected(&self) -> bool {
        self.rejected
    }
}

/// The fields of a PDU to build.
pub struct UnsignedPdu<'a> {
    /// `None` for room version 12's create event, whose room ID is its own reference hash.
    pub room_id: Option<&'a RoomId>,
    pub sender: &'a UserId,
    pub kind: &'a TimelineEventType,
    pub content: &'a Value,
    pub state_key: Option<&'a str>,
    pub redacts: Option<&'a EventId>,
    pub prev_events: &'a [OwnedEventId],
    pub auth_events: &'a [OwnedEventId],
    pub depth: u64,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
}

/// A built PDU: its signed canonical JSON, its event ID and its room ID.
pub struct SignedPdu {
    pub object: CanonicalJsonObject,
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
}

/// Builds, hashes and signs a PDU of the room version `rules`.
pub fn build_and_sign(
    fields: UnsignedPdu<'_>,
    rules: &RoomVersionRules,
    server_name: &str,
    key: &ruma::signatures::Ed25519KeyPair,
) -> Result<SignedPdu> {
    // Room versions 1 and 2 reference events as [event ID, hashes] pairs (empty hashes, as
    // Synapse sends them) and give every event an ID of its own naming its server.
    let paired = matches!(rules.events_reference_format, EventsReferenceFormatVersion::V1);
    let references = |ids: &[OwnedEventId]| -> Value {
        if paired {
            Value::Array(ids.iter().map(|id| json!([id, {}])).collect())
        } else {
            json!(ids)
        }
    };
    let own_event_id =
        matches!(rules.event_id_format, EventIdFormatVersion::V1).then(|| format!("${}:{server_name}", crate::service::random_string(18)));
    let mut value = json!({
        "auth_events": references(fields.auth_events),
        "content": fields.content,
        "depth": fields.depth,
        "origin_server_ts": fields.origin_server_ts,
        "prev_events": references(fields.prev_events),
        "sender": fields.sender,
        "type": fields.kind,
    });
    let object_fields = value.as_object_mut().expect("built as an object");
    if let Some(event_id) = &own_event_id {
        object_fields.insert("event_id".into(), json!(event_id));
    }
    if let Some(room_id) = fields.room_id {
        object_fields.insert("room_id".into(), json!(room_id));
    }
    if let Some(state_key) = fields.state_key {
        object_fields.insert("state_key".into(), json!(state_key));
    }
    if let Some(redacts) = fields.redacts {
        object_fields.insert("redacts".into(), json!(redacts));
    }
    let mut object: CanonicalJsonObject = match ruma::canonical_json::to_canonical_value(&value) {
        Ok(CanonicalJsonValue::Object(object)) => object,
        Ok(_) => return Err(Error::Internal("a PDU serialized to a non-object".into())),
        Err(e) => return Err(Error::bad_json(format!("The event is not valid canonical JSON: {e}"))),
    };
    ruma::signatures::hash_and_sign_event(server_name, key, &mut object, &rules.redaction)
        .map_err(|e| Error::bad_json(format!("The event cannot be signed: {e}")))?;
    let hash = ruma::signatures::reference_hash(&object, rules).map_err(|e| match e {
        ruma::signatures::JsonError::PduTooLarge => Error::too_large("The event is larger than 65,536 bytes"),
        other => Error::Internal(format!("reference hash: {other}")),
    })?;
    let event_id =
        EventId::parse(own_event_id.unwrap_or_else(|| format!("${hash}"))).map_err(|e| Error::Internal(format!("event ID: {e}")))?;
    let room_id = match fields.room_id {
        Some(room_id) => room_id.to_owned(),
        None => RoomId::parse(format!("!{hash}")).map_err(|e| Error::Internal(format!("room ID: {e}")))?,
    };
    Ok(SignedPdu { object, event_id, room_id })
}

#[cfg(test)]
mod tests {
    use ruma::canonical_json::CanonicalJsonObject;
    use ruma::{event_id, room_id};
    use serde_json::json;

    use super::Pdu;

    fn object(value: serde_json::Value) -> CanonicalJsonObject {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn reads_event_references_of_every_room_version() {
        let common = json!({
            "room_id": "!r:x", "sender": "@a:x", "origin_server_ts": 1, "type": "m.room.message", "content": { "body": "hi" },
            "depth": 3, "hashes": { "sha256": "abc" }, "signatures": {},
        });
        // Room versions 1 and 2: [event ID, hashes] pairs.
        let mut old = common.clone();
        old["prev_events"] = json!([["$a:x", { "sha256": "abc" }]]);
        old["auth_events"] = json!([["$b:x", { "sha256": "def" }], ["$c:x", { "sha256": "ghi" }]]);
        let pdu = Pdu::from_object(event_id!("$e:x"), room_id!("!r:x"), &object(old)).unwrap();
        assert_eq!(pdu.prev_events, vec![event_id!("$a:x").to_owned()]);
        assert_eq!(pdu.auth_events.len(), 2);
        // Room versions 3 and later: bare event IDs.
        let mut new = common;
        new["prev_events"] = json!(["$abc"]);
        new["auth_events"] = json!(["$def", "$ghi"]);
        let pdu = Pdu::from_object(event_id!("$e"), room_id!("!r:x"), &object(new)).unwrap();
        assert_eq!(pdu.prev_events, vec![event_id!("$abc").to_owned()]);
        assert!(!pdu.room_id_derived, "the room ID is a field of the event");
    }
}
