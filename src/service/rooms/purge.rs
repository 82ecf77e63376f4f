//! Deleting a room from this server (`hearth admin room delete`): its local members leave, its
//! aliases and directory listing go, then every row of it is purged.

use std::collections::BTreeSet;

use ruma::events::room::member::MembershipState;
use ruma::{RoomId, UserId};
use serde_json::Value;

use super::membership::MembershipChange;
use super::{RoomRecord, Rooms};
use crate::error::Result;
use crate::store::{Table, key, prefix};

/// Rows deleted per batch while purging.
const PURGE_BATCH: usize = 1_000;

impl Rooms {
    /// Every room this server knows, with its record.
    pub fn all(&self) -> Result<Vec<(ruma::OwnedRoomId, RoomRecord)>> {
        let rows = self.store.scan_json::<RoomRecord>(Table::Rooms, &[])?;
        Ok(rows
            .into_iter()
            .filter_map(|(key, record)| RoomId::parse(String::from_utf8_lossy(&key).as_ref()).ok().map(|id| (id, record)))
            .collect())
    }

    /// Deletes a room; returns how many events were purged.
    pub async fn delete_room(&self, room_id: &RoomId) -> Result<usize> {
        let record = self.room(room_id)?;
        let members = self.member_events(room_id)?;
        for (user, content) in &members {
            let Ok(user) = UserId::parse(user.as_str()) else { continue };
            let membership = content.get("membership").and_then(Value::as_str).unwrap_or("leave");
            if user.server_name() != self.server_name() || !matches!(membership, "join" | "invite" | "knock") {
                continue;
            }
            let change = MembershipChange::new(
                &user,
                &user,
                MembershipState::Leave,
                Some("This room was deleted by the server's administrator"),
            );
            // A member who cannot leave (the auth rules say no) is purged all the same.
            let _ = self.change_membership(room_id, change).await;
        }
        for alias in self.room_aliases(room_id)? {
            let mut batch = self.store.batch();
            batch.delete(Table::Aliases, alias.as_bytes());
            batch.delete(Table::RoomAliases, &key(&[room_id.as_bytes(), alias.as_bytes()]));
            batch.commit()?;
        }
        self.set_published(room_id, false)?;

        let _lock = self.lock_room(room_id).await?;
        let record = self.room_locked(room_id).unwrap_or(record);
        let mut states = BTreeSet::from([record.state]);
        let room_short = record.short_id.to_be_bytes();
        let timeline_prefix = prefix(&[&room_short]);
        let mut purged = 0;
        loop {
            let rows = self
                .store
                .range(Table::Timeline, &timeline_prefix, &timeline_prefix, true, PURGE_BATCH)?;
            if rows.is_empty() {
                break;
            }
            let mut batch = self.store.batch();
            for (timeline_key, event_id) in rows {
                if let Some(stored) = self.stored_event_at(&event_id)? {
                    states.extend(stored.meta.state_before);
                }
                batch.delete(Table::Events, &event_id);
                batch.delete(Table::Timeline, &timeline_key);
                purged += 1;
            }
            batch.commit()?;
        }
        let mut batch = self.store.batch();
        let members_prefix = prefix(&[room_id.as_bytes()]);
        for member_key in self.store.scan_keys(Table::RoomMembers, &members_prefix)? {
            let user = &member_key[members_prefix.len()..];
            batch.delete(Table::Memberships, &key(&[user, room_id.as_bytes()]));
            batch.delete(Table::RoomMembers, &member_key);
        }
        let kept = self.user_memberships.clone();
        batch.on_commit(move || kept.forget_all());
        // The room's indexes keyed by room (search postings are keyed by word: a purged
        // event's postings lead nowhere and are skipped).
        for table in [
            Table::Relations,
            Table::Threads,
            Table::ThreadActivity,
            Table::Receipts,
            Table::ReceiptChanges,
        ] {
            for row in self.store.scan_keys(table, &members_prefix)? {
                batch.delete(table, &row);
            }
        }
        for state in states {
            batch.delete(Table::StateSnapshots, &state.to_be_bytes());
        }
        batch.delete(Table::Rooms, room_id.as_bytes());
        batch.commit()?;
        self.forget_room_caches(room_id);
        Ok(purged)
    }
}
