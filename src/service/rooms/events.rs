//! Stored events: their encoding, reading one or a page's at once, and the cache of parsed
//! events every auth check and served event reads through.
//!
//! An event is stored as a format byte, the length of its other fields' JSON (four bytes,
//! big-endian), that JSON, then the PDU's canonical JSON text: reading an event parses the
//! small part and copies the PDU, which only what needs its fields parses (most served events
//! come from the cache of parsed PDUs). Events written before this format are one JSON object
//! with the PDU inside, still read.

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};

use ruma::{EventId, OwnedEventId};

use super::pdu::{Pdu, StoredPdu};
use super::{EventMeta, Rooms, StoredEvent};
use crate::error::{Error, Result};
use crate::store::{Batch, Table};

/// Events kept parsed in memory.
const CACHED_EVENTS: usize = 20_000;

/// The first byte of an event in the current format (a JSON object, the earlier one, starts
/// with `{`).
const EVENT_FORMAT: u8 = 1;

impl StoredEvent {
    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing our own plain data types into a Vec cannot fail.
        let fields = serde_json::to_vec(&self.meta).expect("stored types serialize");
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
            let meta = serde_json::from_value(serde_json::Value::Object(object))?;
            return Ok(StoredEvent {
                meta,
                pdu: StoredPdu::from_text(pdu.to_string()),
            });
        }
        let (Some(&EVENT_FORMAT), Some(length)) = (bytes.first(), bytes.get(1..5)) else {
            return Err(corrupt("unknown format"));
        };
        let fields_end = 5 + u32::from_be_bytes(length.try_into().expect("four bytes")) as usize;
        let fields = bytes.get(5..fields_end).ok_or_else(|| corrupt("cut short"))?;
        let pdu = String::from_utf8(bytes[fields_end..].to_vec()).map_err(|_| corrupt("the PDU is not UTF-8"))?;
        Ok(StoredEvent {
            meta: serde_json::from_slice(fields)?,
            pdu: StoredPdu::from_text(pdu),
        })
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
        let pdu = Arc::new(stored.pdu.parse(event_id, &stored.meta.room_id)?);
        self.cached_events().keep_pdu(event_id, &pdu);
        Ok(pdu)
    }

    /// Events as they are served, in the order of `event_ids`: from the cache when it has
    /// them, the others read together and kept there.
    pub fn served_events(&self, event_ids: &[OwnedEventId]) -> Result<Vec<Option<ServedEvent>>> {
        // Those not kept whole, with their parsed PDU when that is kept.
        let mut missing: Vec<(OwnedEventId, Option<Arc<Pdu>>)> = Vec::new();
        let (mut served, drops) = {
            let cache = self.cached_events();
            let mut served = Vec::with_capacity(event_ids.len());
            for event_id in event_ids {
                let kept = cache.served(event_id);
                if kept.is_none() {
                    missing.push((event_id.clone(), cache.pdu(event_id)));
                }
                served.push(kept);
            }
            (served, cache.drops)
        };
        if missing.is_empty() {
            return Ok(served);
        }
        let ids: Vec<OwnedEventId> = missing.iter().map(|(event_id, _)| event_id.clone()).collect();
        let mut read = Vec::with_capacity(missing.len());
        for ((event_id, pdu), stored) in missing.iter().zip(self.stored_events(&ids)?) {
            read.push(match stored {
                Some(stored) => Some(ServedEvent {
                    pdu: match pdu {
                        Some(pdu) => pdu.clone(),
                        None => Arc::new(stored.pdu.parse(event_id, &stored.meta.room_id)?),
                    },
                    meta: Arc::new(stored.meta),
                }),
                None => None,
            });
        }
        // With other processes on the database, an event they change is not announced here.
        let keep_meta = self.store.shared().is_none();
        let mut cache = self.cached_events();
        for (event_id, event) in ids.iter().zip(&read) {
            if let Some(event) = event {
                cache.keep_served(event_id, event, keep_meta, drops);
            }
        }
        drop(cache);
        let mut read = read.into_iter();
        for slot in served.iter_mut().filter(|slot| slot.is_none()) {
            *slot = read.next().flatten();
        }
        Ok(served)
    }

    /// Drops an event whose stored row `batch` rewrites (a redaction, a first relation to it)
    /// from the cache once the batch is committed, before its writer's position is visible: a
    /// read before the commit may have kept the event as it was.
    pub(super) fn drop_cached_on_commit(&self, batch: &mut Batch<'_>, event_id: &EventId) {
        let (events, event_id) = (self.events.clone(), event_id.to_owned());
        batch.on_commit(move || events.lock().unwrap_or_else(|e| e.into_inner()).drop_events([&*event_id]));
    }

    fn cached_pdu(&self, event_id: &EventId) -> Option<Arc<Pdu>> {
        self.cached_events().pdu(event_id)
    }

    /// The cache of parsed events, locked.
    pub(super) fn cached_events(&self) -> MutexGuard<'_, EventCache> {
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A stored event as it is served: parsed, with what the server knows about it.
#[derive(Debug, Clone)]
pub struct ServedEvent {
    pub pdu: Arc<Pdu>,
    pub meta: Arc<EventMeta>,
}

/// Recent events kept parsed in memory: every auth check reads the same few (create, power
/// levels, the sender's membership), and the syncs and pages that serve a new message read it
/// again and again. Timeline events are kept with what the server knows about them, so
/// serving them reads nothing from the store; that changes when the event is redacted or
/// first related to, and those writes drop it here once committed
/// ([`Rooms::drop_cached_on_commit`]).
#[derive(Default)]
pub struct EventCache {
    /// Hashed with foldhash: a sync looks up every event it serves here.
    events: HashMap<OwnedEventId, CachedEvent, foldhash::fast::RandomState>,
    /// How many times events were dropped: a read that began before a drop keeps nothing, as
    /// it may have read an event as it was before the change.
    drops: u64,
}

struct CachedEvent {
    pdu: Arc<Pdu>,
    meta: Option<Arc<EventMeta>>,
}

impl EventCache {
    fn pdu(&self, event_id: &EventId) -> Option<Arc<Pdu>> {
        self.events.get(event_id).map(|cached| cached.pdu.clone())
    }

    /// Whether the event is kept (so it is stored).
    pub(super) fn contains(&self, event_id: &EventId) -> bool {
        self.events.contains_key(event_id)
    }

    fn served(&self, event_id: &EventId) -> Option<ServedEvent> {
        let cached = self.events.get(event_id)?;
        Some(ServedEvent {
            pdu: cached.pdu.clone(),
            meta: cached.meta.clone()?,
        })
    }

    fn make_room(&mut self) {
        if self.events.len() >= CACHED_EVENTS {
            self.events.clear();
        }
    }

    fn keep_pdu(&mut self, event_id: &EventId, pdu: &Arc<Pdu>) {
        self.make_room();
        self.events.entry(event_id.to_owned()).or_insert_with(|| CachedEvent {
            pdu: pdu.clone(),
            meta: None,
        });
    }

    /// Keeps an event read while `drops` events had been dropped: with what the server
    /// knows about it when `keep_meta` and it is in the timeline (an outlier's row is
    /// rewritten when it joins the timeline).
    fn keep_served(&mut self, event_id: &EventId, event: &ServedEvent, keep_meta: bool, drops: u64) {
        if self.drops != drops {
            return;
        }
        self.make_room();
        let meta = (keep_meta && event.meta.stream != 0).then(|| event.meta.clone());
        self.events.insert(
            event_id.to_owned(),
            CachedEvent {
                pdu: event.pdu.clone(),
                meta,
            },
        );
    }

    /// Drops events whose stored form changed, once the change is committed.
    pub(super) fn drop_events<'a>(&mut self, event_ids: impl IntoIterator<Item = &'a EventId>) {
        for event_id in event_ids {
            self.events.remove(event_id);
        }
        self.drops += 1;
    }

    /// Drops every event (a room's were deleted).
    pub(super) fn clear(&mut self) {
        self.events.clear();
        self.drops += 1;
    }
}

#[cfg(test)]
mod tests {
    use ruma::canonical_json::CanonicalJsonObject;
    use ruma::{event_id, room_id};
    use serde_json::json;

    use std::sync::Arc;

    use super::super::StoredEvent;
    use super::{EventCache, ServedEvent};

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
        assert_eq!((read.meta.stream, read.meta.related), (7, true));
        assert_eq!(read.pdu.object().unwrap(), pdu_object());

        let again = StoredEvent::decode(&read.encode()).unwrap();
        assert_eq!(
            (again.meta.room_id.as_str(), again.meta.stream, again.meta.related),
            ("!r:x", 7, true)
        );
        assert_eq!(again.pdu.text(), serde_json::to_string(&pdu_object()).unwrap());
        let pdu = again.pdu.parse(event_id!("$e:x"), room_id!("!r:x")).unwrap();
        assert_eq!(pdu.state_key.as_deref(), Some("@a:x"));
        let membership = again.pdu.membership_change().unwrap().unwrap();
        assert_eq!(membership.0, "@a:x");

        assert!(StoredEvent::decode(&[1, 0, 0, 0, 99, b'{']).is_err());
        assert!(StoredEvent::decode(&[2]).is_err());
    }

    #[test]
    fn the_cache_keeps_nothing_read_before_a_drop() {
        let legacy = json!({ "room_id": "!r:x", "pdu": pdu_object(), "stream": 7, "state_before": null });
        let stored = StoredEvent::decode(&serde_json::to_vec(&legacy).unwrap()).unwrap();
        let id = event_id!("$e:x");
        let event = ServedEvent {
            pdu: Arc::new(stored.pdu.parse(id, room_id!("!r:x")).unwrap()),
            meta: Arc::new(stored.meta),
        };
        let mut cache = EventCache::default();
        let before = cache.drops;
        cache.drop_events([event_id!("$other:x")]);
        cache.keep_served(id, &event, true, before);
        assert!(!cache.contains(id), "read before a drop, so perhaps stale");
        cache.keep_served(id, &event, true, cache.drops);
        assert_eq!(cache.served(id).map(|served| served.meta.stream), Some(7));
        cache.drop_events([id]);
        assert!(cache.served(id).is_none() && cache.pdu(id).is_none());

        let outlier = ServedEvent {
            meta: Arc::new(super::super::EventMeta {
                stream: 0,
                ..(*event.meta).clone()
            }),
            ..event
        };
        cache.keep_served(id, &outlier, true, cache.drops);
        assert!(
            cache.pdu(id).is_some() && cache.served(id).is_none(),
            "an outlier is kept without what is known of it"
        );
    }
}
