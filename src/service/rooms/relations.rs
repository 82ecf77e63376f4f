//! The relations index: events relating to a parent (edits, reactions, threads, references),
//! in stream order.

use ruma::{EventId, OwnedEventId, RoomId};

use super::{Rooms, stream_range};
use crate::error::Result;
use crate::store::Table;

/// An event relating to another, as indexed: (stream position, rel_type, event ID, type).
pub type RelationRow = (u64, String, OwnedEventId, String);

impl Rooms {
    /// Up to `limit` events relating to `parent`, from stream position `from` (inclusive)
    /// backward or forward.
    pub fn relations(
        &self,
        room_id: &RoomId,
        parent: &EventId,
        from: Option<u64>,
        forward: bool,
        limit: usize,
    ) -> Result<Vec<RelationRow>> {
        let (parent_prefix, start) = stream_range(&[room_id.as_bytes(), parent.as_bytes()], from, forward);
        let rows = self.store.range(Table::Relations, &parent_prefix, &start, forward, limit)?;
        Ok(rows
            .into_iter()
            .filter_map(|(key, value)| {
                let position = u64::from_be_bytes(key[parent_prefix.len()..].try_into().ok()?);
                let (rel_type, event_id, kind): (String, OwnedEventId, String) = serde_json::from_slice(&value).ok()?;
                Some((position, rel_type, event_id, kind))
            })
            .collect())
    }
}
