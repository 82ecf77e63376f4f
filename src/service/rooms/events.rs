//! Reading stored events: one, or a page's at once, and the cache of parsed PDUs every auth
//! check and served event reads through.

use std::sync::Arc;

use ruma::{EventId, OwnedEventId};

use super::pdu::Pdu;
use super::{Rooms, StoredEvent};
use crate::error::Result;
use crate::store::Table;

/// PDUs kept parsed in memory.
const CACHED_PDUS: usize = 20_000;

impl Rooms {
    /// A stored event.
    pub fn stored_event(&self, event_id: &EventId) -> Result<Option<StoredEvent>> {
        Ok(self.store.get_json(Table::Events, event_id.as_bytes())?)
    }

    /// Stored events, in the order of `event_ids`, read together.
    pub fn stored_events(&self, event_ids: &[OwnedEventId]) -> Result<Vec<Option<StoredEvent>>> {
        let keys: Vec<Vec<u8>> = event_ids.iter().map(|event_id| event_id.as_bytes().to_vec()).collect();
        Ok(self.store.multi_get_json(Table::Events, &keys)?)
    }

    /// A stored event, parsed.
    pub fn pdu(&self, event_id: &EventId) -> Result<Option<Pdu>> {
        if let Some(pdu) = self.cached_pdu(event_id) {
            return Ok(Some(Pdu::clone(&pdu)));
        }
        let Some(stored) = self.stored_event(event_id)? else {
            return Ok(None);
        };
        Ok(Some(Pdu::clone(&*self.parsed_pdu(event_id, &stored)?)))
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
