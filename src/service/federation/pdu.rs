//! The checks of a PDU from another server that come before any room rule, in the spec's
//! order: format and size, the event ID (reference hash, or the `event_id` field of room
//! versions 1 and 2), the signatures of every server the spec requires (the sender's, and for
//! old versions the event ID's), and the content hash: an event whose content does not match its
//! hash is kept in its redacted form.

use std::collections::BTreeMap;

use ruma::canonical_json::{CanonicalJsonObject, CanonicalJsonValue};
use ruma::room_version_rules::EventIdFormatVersion;
use ruma::room_version_rules::RoomVersionRules;
use ruma::serde::Base64;
use ruma::signatures::{PublicKeyMap, Verified};
use ruma::{EventId, OwnedEventId, OwnedRoomId, RoomId, RoomVersionId, ServerName};

use super::Federation;
use crate::error::{Error, Result};
use crate::service::rooms::pdu::Pdu;
use crate::service::rooms::rules;

/// A PDU's event ID (its reference hash, or the `event_id` field of room versions 1 and 2)
/// and room ID (from version 12, a create event's is its own reference hash).
fn identify(rules: &RoomVersionRules, object: &CanonicalJsonObject) -> Result<(OwnedEventId, OwnedRoomId)> {
    let event_id = match (&rules.event_id_format, object.get("event_id")) {
        (EventIdFormatVersion::V1, Some(CanonicalJsonValue::String(id))) => {
            EventId::parse(id).map_err(|e| Error::bad_json(format!("Malformed event ID: {e}")))?
        }
        _ => {
            let hash =
                ruma::signatures::reference_hash(object, rules).map_err(|e| Error::bad_json(format!("The PDU cannot be hashed: {e}")))?;
            OwnedEventId::try_from(format!("${hash}")).map_err(|e| Error::Internal(e.to_string()))?
        }
    };
    let room_id = match object.get("room_id") {
        Some(CanonicalJsonValue::String(id)) => RoomId::parse(id).map_err(|e| Error::bad_json(format!("Malformed room ID: {e}")))?,
        _ => RoomId::parse(format!("!{}", event_id.localpart())).map_err(|e| Error::bad_json(e.to_string()))?,
    };
    Ok((event_id, room_id))
}

/// An event this server has just hashed and signed, parsed (another server may still have to
/// co-sign it, so it is not checked as a PDU from elsewhere would be).
pub fn parse_signed_here(version: &RoomVersionId, object: CanonicalJsonObject) -> Result<(Pdu, CanonicalJsonObject)> {
    let rules = rules(version)?;
    let (event_id, room_id) = identify(&rules, &object)?;
    let pdu =
        Pdu::from_object(&event_id, &room_id, &object).map_err(|_| Error::bad_json(format!("The event {event_id} does not parse")))?;
    Ok((pdu, object))
}

impl Federation {
    /// The public keys of a server by key ID: this server's own, or another's as fetched.
    async fn public_keys(&self, server: &ServerName) -> Result<BTreeMap<String, Base64>> {
        if server == self.server_name {
            let key = Base64::parse(self.key.public_key_base64()).map_err(|e| Error::Internal(e.to_string()))?;
            return Ok(BTreeMap::from([(self.key.key_id(), key)]));
        }
        let keys = self.server_keys(server, None, 0).await?;
        Ok(keys
            .keys
            .iter()
            .filter_map(|(id, key)| Some((id.clone(), Base64::parse(&key.key).ok()?)))
            .collect())
    }

    /// Checks a PDU of room version `version` (see the module doc); returns it parsed, with the
    /// object to store (redacted when its content hash does not match).
    pub async fn check_pdu(&self, version: &RoomVersionId, mut object: CanonicalJsonObject) -> Result<(Pdu, CanonicalJsonObject)> {
        let rules = rules(version)?;
        ruma::state_res::check_pdu_format(&object, &rules.event_format).map_err(|e| Error::bad_json(format!("Malformed PDU: {e}")))?;
        let (event_id, room_id) = identify(&rules, &object)?;
        // Only room versions 1 and 2 check the event ID's server, and their PDUs carry the ID.
        let servers = ruma::signatures::required_server_signatures_to_verify_event(&object, &rules.signatures)
            .map_err(|e| Error::forbidden(format!("The PDU {event_id} cannot be verified: {e}")))?;
        let mut keys = PublicKeyMap::new();
        for server in servers {
            let server_keys = self
                .public_keys(&server)
                .await
                .map_err(|e| Error::forbidden(format!("The keys of {server} cannot be had to verify {event_id}: {e}")))?;
            keys.insert(server.to_string(), server_keys);
        }
        match ruma::signatures::verify_event(&keys, &object, &rules) {
            Ok(Verified::All) => {}
            Ok(Verified::Signatures) => {
                tracing::info!(%event_id, "content hash mismatch: keeping the redacted event");
                object = ruma::canonical_json::redact(object, &rules.redaction, None)
                    .map_err(|e| Error::bad_json(format!("The PDU {event_id} cannot be redacted: {e}")))?;
            }
            Err(e) => return Err(Error::forbidden(format!("The PDU {event_id} has a bad signature: {e}"))),
        }
        object.remove("unsigned");
        let pdu =
            Pdu::from_object(&event_id, &room_id, &object).map_err(|_| Error::bad_json(format!("The PDU {event_id} does not parse")))?;
        Ok((pdu, object))
    }
}
