//! Stored events: their encoding, reading one or a page's at once, and the cache of parsed
//! PDUs every auth check and served event reads through.
//!
//! An event is stored as a format byte, the length of its other fields' JSON (four bytes,
//! big-endian), that JSON, then the PDU's canonical JSON text: reading an event parses the
//! small part and copies the PDU, which only what needs its fields parses (most served events
//! come from the cache of parsed PDUs). Events written before this format are one JSON object
//! with the PDU inside, still read.

use std::sync::Arc;

use ruma::{EventId, OwnedEventId};

use super::pdu::{Pdu, StoredPdu};
use super::{Rooms, StoredEvent};
use crate::error::{Error, Result};
use crate::store::Table;

/// PDUs kept parsed in memory.
const CACHED_PDUS: usize = 20_000;

/// The first byte of an event in the current format (a JSON object, the earlier one, starts
/// with `{`).
const EVENT_FORMAT: u8 = 1;

impl StoredEvent {
    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing our own plain data types into a Vec cannot fail.
        let fields = serde_json::to_vec(self).expect("stored types serialize");
        let mut bytes = Vec::with_capacity(5 + fields.len() + self.pdu.text().len());
        bytes.push(EVENT_FORMAT);
        bytes.extend_from_slice(&(fields.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&fields);
        bytes.extend_from_slice(self.pdu.text().as_bytes());
        bytes
    }

    /// Reads the stored form, of this format or the earlier one.
    pub fn decode(bytes: &[u8]) -> Result<StoredEvent> {
        let corrupt = |what: &str| Error::Internal(format!("a stored event is corrupt: {what}"));
        if bytes.first() == Some(&b'{') {
            let mut object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(bytes)?;
            let pdu = object.remove("pdu").ok_or_else(|| corrupt("no PDU"))?;
            let mut stored: StoredEvent = serde_json::from_value(serde_json::Value::Object(object))?;
            stored.pdu = StoredPdu::from_text(pdu.to_string());
            return Ok(stored);
        }
        let (Some(&EVENT_FORMAT), Some(length)) = (bytes.first(), bytes.get(1..5)) else {
            return Err(corrupt("unknown format"));
        };
        let fields_end = 5 + u32::from_be_bytes(length.try_into().expect("four bytes")) as usize;
        let fields = bytes.get(5..fields_end).ok_or_else(|| corrupt("cut short"))?;
        let pdu = String::from_utf8(bytes[fields_end..].to_vec()).map_err(|_| corrupt("the PDU is not UTF-8"))?;
        let mut stored: StoredEvent = serde_json::from_slice(fields)?;
        stored.pdu = StoredPdu::from_text(pdu);
        Ok(stored)
    }
}

impl Rooms {
    /// A stored event.
    pub fn stored_event(&self, event_id: &EventId) -> Result<Option<StoredEvent>> {
        self.stored_event_at(event_id.as_bytes())
    }

    /// The stored event of an `events` row key (its event ID's bytes).
    pub(super) fn stored_event_at(&self, key: &[u8]) -> Result<Option<StoredEvent>> {
        self.store
            .get(Table::Events, key)?
            .map(|bytes| StoredEvent::decode(&bytes))
            .transpose()
    }

    /// Stored events, in the order of `event_ids`, read together.
    pub fn stored_events(&self, event_ids: &[OwnedEventId]) -> Result<Vec<Option<StoredEvent>>> {
        let keys: Vec<Vec<u8>> = event_ids.iter().map(|event_id| event_id.as_bytes().to_vec()).collect();
        self.store
            .multi_get(Table::Events, &keys)?
            .into_iter()
            .map(|bytes| bytes.map(|bytes| StoredEvent::decode(&bytes)).transpose())
            .collect()
    }

    /// A stored event, parsed.
    pub fn pdu(&self, event_id: &EventId) -> Result<Option<Pdu>> {
        Ok(self.shared_pdu(event_id)?.map(|pdu| Pdu::clone(&pdu)))
    }

    /// A stored event, parsed, as the cache shares it.
    pub fn shared_pdu(&self, event_id: &EventId) -> Result<Option<Arc<Pdu>>> {
        if let Some(pdu) = self.cached_pdu(event_id) {
            return Ok(Some(pdu));
        }
        let Some(stored) = self.stored_event(event_id)? else {
            return Ok(None);
        };
        Ok(Some(self.parsed_pdu(event_id, &stored)?))
    }

    /// The parsed form of a stored event, from the cache when it is there.
    pub fn parsed_pdu(&self, event_id: &EventId, stored: &StoredEvent) -> Result<Arc<Pdu>> {
        if let Some(pdu) = self.cached_pdu(event_id) {
            return Ok(pdu);
        }
        let pdu = Arc::new(stored.pdu.parse(event_id, &stored.room_id)?);
        let mut cache = self.pdus.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHED_PDUS {
            cache.clear();
        }
        cache.insert(event_id.to_owned(), pdu.clone());
        Ok(pdu)
    }

    fn cached_pdu(&self, event_id: &EventId) -> Option<Arc<Pdu>> {
        self.pdus.lock().unwrap_or_else(|e| e.into_inner()).get(event_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use ruma::canonical_json::CanonicalJsonObject;
    use ruma::{event_id, room_id};
    use serde_json::json;

    use super::super::StoredEvent;

    fn pdu_object() -> CanonicalJsonObject {
        serde_json::from_value(json!({
            "type": "m.room.member", "state_key": "@a:x", "sender": "@a:x", "content": { "membership": "join" },
            "origin_server_ts": 1, "depth": 2, "prev_events": [], "auth_events": [], "room_id": "!r:x",
        }))
        .unwrap()
    }

    #[test]
    fn reads_stored_events_of_both_formats() {
        let legacy = json!({ "room_id": "!r:x", "pdu": pdu_object(), "stream": 7, "state_before": null, "related": true });
        let read = StoredEvent::decode(&serde_json::to_vec(&legacy).unwrap()).unwrap();
        assert_eq!((read.stream, read.related), (7, true));
        assert_eq!(read.pdu.object().unwrap(), pdu_object());

        let again = StoredEvent::decode(&read.encode()).unwrap();
        assert_eq!((again.room_id.as_str(), again.stream, again.related), ("!r:x", 7, true));
        assert_eq!(again.pdu.text(), serde_json::to_string(&pdu_object()).unwrap());
        let pdu = again.pdu.parse(event_id!("$e:x"), room_id!("!r:x")).unwrap();
        assert_eq!(pdu.state_key.as_deref(), Some("@a:x"));
        let membership = again.pdu.membership_change().unwrap().unwrap();
        assert_eq!(membership.0, "@a:x");

        assert!(StoredEvent::decode(&[1, 0, 0, 0, 99, b'{']).is_err());
        assert!(StoredEvent::decode(&[2]).is_err());
    }
}
