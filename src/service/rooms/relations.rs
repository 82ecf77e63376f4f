//! The relations index: events relating to a parent (edits, reactions, threads, references),
//! in stream order; the threads of a room by latest reply; and the aggregations bundled into
//! `unsigned.m.relations` of every event served to a client.

use ruma::{EventId, OwnedEventId, RoomId, UserId};
use serde_json::{Map, Value, json};

use super::pdu::Pdu;
use super::timeline::stream_range;
use super::{EventMeta, Rooms};
use crate::error::Result;
use crate::store::{Batch, Table, key};

/// An event relating to another, as indexed: (stream position, rel_type, event ID, type).
pub type RelationRow = (u64, String, OwnedEventId, String);

/// The `rel_type` of a reply in a thread.
const THREAD: &str = "m.thread";
/// The `rel_type` of an edit.
const REPLACE: &str = "m.replace";
/// The `rel_type` of a reference.
const REFERENCE: &str = "m.reference";

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

    /// Indexes the relation of `pdu`, stored at stream position `stream`, in `batch`: the
    /// relations table and, for a reply in a thread, the thread's latest activity.
    pub(super) fn index_relation(&self, batch: &mut Batch<'_>, pdu: &Pdu, stream: u64) -> Result<()> {
        let Some((rel_type, parent)) = super::relation(&pdu.content_value()) else {
            return Ok(());
        };
        let room_id = pdu.room_id.as_bytes();
        if let Some(mut stored_parent) = self.stored_event(&parent)?
            && !stored_parent.meta.related
        {
            stored_parent.meta.related = true;
            batch.put(Table::Events, parent.as_bytes(), &stored_parent.encode());
            self.drop_cached_on_commit(batch, &parent);
        }
        batch.put(
            Table::Relations,
            &key(&[room_id, parent.as_bytes(), &stream.to_be_bytes()]),
            &serde_json::to_vec(&(&rel_type, &pdu.event_id, &pdu.kind))?,
        );
        if rel_type != THREAD {
            return Ok(());
        }
        let thread_key = key(&[room_id, parent.as_bytes()]);
        let latest = self
            .store
            .get(Table::Threads, &thread_key)?
            .and_then(|bytes| bytes.try_into().ok())
            .map(u64::from_be_bytes);
        if latest.is_some_and(|latest| latest >= stream) {
            // A backfilled reply older than the thread's latest one.
            return Ok(());
        }
        if let Some(latest) = latest {
            batch.delete(Table::ThreadActivity, &key(&[room_id, &latest.to_be_bytes()]));
        }
        batch.put(Table::Threads, &thread_key, &stream.to_be_bytes());
        batch.put(Table::ThreadActivity, &key(&[room_id, &stream.to_be_bytes()]), parent.as_bytes());
        Ok(())
    }

    /// Up to `limit` thread roots of a room, most recently replied to first, from the reply at
    /// stream position `from` (inclusive) backward: (position of the latest reply, root).
    pub fn threads(&self, room_id: &RoomId, from: Option<u64>, limit: usize) -> Result<Vec<(u64, OwnedEventId)>> {
        let mut threads = Vec::new();
        let mut cursor = from;
        loop {
            let (room_prefix, start) = stream_range(&[room_id.as_bytes()], cursor, false);
            let rows = self.store.range(Table::ThreadActivity, &room_prefix, &start, false, limit + 1)?;
            let exhausted = rows.len() <= limit;
            for (row_key, value) in rows {
                let Some(position) = row_key[room_prefix.len()..].try_into().ok().map(u64::from_be_bytes) else {
                    continue;
                };
                let Ok(root) = EventId::parse(String::from_utf8_lossy(&value).as_ref()) else {
                    continue;
                };
                // Two replies indexed in one batch leave a row behind for the older one.
                let latest = self.store.get(Table::Threads, &key(&[room_id.as_bytes(), root.as_bytes()]))?;
                if latest.as_deref() == Some(&position.to_be_bytes()[..]) {
                    threads.push((position, root));
                    if threads.len() > limit {
                        return Ok(threads);
                    }
                }
                match position.checked_sub(1) {
                    Some(next) => cursor = Some(next),
                    None => return Ok(threads),
                }
            }
            if exhausted {
                return Ok(threads);
            }
        }
    }

    /// The aggregations of the events relating to `event` that are bundled with it
    /// (`unsigned.m.relations`): its thread's summary, its latest edit and its references;
    /// `None` when it has none. `viewer` is who `current_user_participated` is about.
    pub(super) fn bundled_relations(&self, event: &Pdu, meta: &EventMeta, viewer: Option<&UserId>) -> Result<Option<Value>> {
        if !meta.related || meta.redacted_by.is_some() {
            return Ok(None);
        }
        let rows = self.relations(&event.room_id, &event.event_id, None, true, usize::MAX)?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut relations = Map::new();
        let mut replies = rows.iter().filter(|(_, rel_type, ..)| rel_type == THREAD).peekable();
        if replies.peek().is_some() {
            let (mut count, mut participated, mut latest) = (0u64, viewer.is_some_and(|viewer| event.sender == viewer), None);
            for (_, _, event_id, _) in replies {
                let Some(reply) = self.pdu(event_id)? else { continue };
                count += 1;
                participated |= viewer.is_some_and(|viewer| reply.sender == viewer);
                latest = Some(reply);
            }
            if let Some(latest) = latest
                && let Some(latest_stored) = self.stored_event(&latest.event_id)?
            {
                // The latest reply comes with its own edit, as clients show it edited.
                let mut latest_event = self.bare_client_event(&latest.event_id, &latest_stored, None)?;
                let latest_rows = match latest_stored.meta.related {
                    true => self.relations(&latest.room_id, &latest.event_id, None, true, usize::MAX)?,
                    false => Vec::new(),
                };
                if let Some(edit) = self.latest_edit(&latest, &latest_rows)? {
                    latest_event.unsigned.relations = Some(json!({ REPLACE: edit }));
                }
                relations.insert(
                    THREAD.into(),
                    json!({ "latest_event": latest_event, "count": count, "current_user_participated": participated }),
                );
            }
        }
        if let Some(edit) = self.latest_edit(event, &rows)? {
            relations.insert(REPLACE.into(), edit);
        }
        let references: Vec<Value> = rows
            .iter()
            .filter(|(_, rel_type, ..)| rel_type == REFERENCE)
            .map(|(_, _, event_id, _)| json!({ "event_id": event_id }))
            .collect();
        if !references.is_empty() {
            relations.insert(REFERENCE.into(), json!({ "chunk": references }));
        }
        Ok((!relations.is_empty()).then_some(Value::Object(relations)))
    }

    /// The newest edit of `original` among its relations `rows`, in the client format: only the
    /// original sender's edits of the same type count, newest by timestamp, then event ID.
    fn latest_edit(&self, original: &Pdu, rows: &[RelationRow]) -> Result<Option<Value>> {
        let mut latest: Option<Pdu> = None;
        for (_, rel_type, event_id, _) in rows {
            if rel_type != REPLACE {
                continue;
            }
            let Some(edit) = self.pdu(event_id)? else { continue };
            let newer = latest
                .as_ref()
                .is_none_or(|latest| (edit.origin_server_ts, &edit.event_id) > (latest.origin_server_ts, &latest.event_id));
            if edit.sender == original.sender && edit.kind == original.kind && newer {
                latest = Some(edit);
            }
        }
        let Some(latest) = latest else { return Ok(None) };
        match self.stored_event(&latest.event_id)? {
            Some(stored) if stored.meta.redacted_by.is_none() => {
                Ok(Some(self.bare_client_event(&latest.event_id, &stored, None)?.to_value()?))
            }
            _ => Ok(None),
        }
    }
}
