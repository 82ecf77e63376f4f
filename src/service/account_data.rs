//! Account data: per-user JSON objects, global or per room, keyed by event type. Every change
//! takes a stream position, so sync delivers what changed since a token.

use std::sync::Arc;

use ruma::{OwnedRoomId, RoomId, UserId};
use serde_json::value::RawValue;

use super::stream::Stream;
use crate::error::Result;
use crate::store::{SEP, Store, Table, key, prefix};

/// The account data of this server's users.
pub struct AccountData {
    store: Store,
    stream: Arc<Stream>,
}

/// One entry: its room (none for global data), type and content.
pub struct Entry {
    pub room_id: Option<OwnedRoomId>,
    pub event_type: String,
    pub content: Box<RawValue>,
}

fn row_key(user_id: &UserId, room_id: Option<&RoomId>, event_type: &str) -> Vec<u8> {
    key(&[
        user_id.as_bytes(),
        room_id.map_or(&b""[..], |r| r.as_bytes()),
        event_type.as_bytes(),
    ])
}

impl AccountData {
    pub fn new(store: Store, stream: Arc<Stream>) -> AccountData {
        AccountData { store, stream }
    }

    /// One entry's content, if set.
    pub fn get(&self, user_id: &UserId, room_id: Option<&RoomId>, event_type: &str) -> Result<Option<Box<RawValue>>> {
        Ok(self.store.get_json(Table::AccountData, &row_key(user_id, room_id, event_type))?)
    }

    /// Sets one entry's content.
    pub fn set(&self, user_id: &UserId, room_id: Option<&RoomId>, event_type: &str, content: &RawValue) -> Result<()> {
        let ticket = self.stream.begin()?;
        let row = row_key(user_id, room_id, event_type);
        let mut batch = self.store.batch();
        batch.put_json(Table::AccountData, &row, content);
        batch.put(
            Table::AccountDataChanges,
            &key(&[user_id.as_bytes(), &ticket.position().to_be_bytes()]),
            &row,
        );
        batch.commit()?;
        ticket.complete(vec![user_id.to_owned()]);
        Ok(())
    }

    /// The entries of a user changed after stream position `since` up to `until` (all of them
    /// when `since` is `None`).
    pub fn changed(&self, user_id: &UserId, since: Option<u64>, until: u64) -> Result<Vec<Entry>> {
        let rows: Vec<Vec<u8>> = match since {
            None => self.store.scan_keys(Table::AccountData, &prefix(&[user_id.as_bytes()]))?,
            Some(since) => {
                let user_prefix = prefix(&[user_id.as_bytes()]);
                let start = key(&[user_id.as_bytes(), &(since + 1).to_be_bytes()]);
                let mut rows: Vec<Vec<u8>> = Vec::new();
                for (change_key, row) in self
                    .store
                    .range(Table::AccountDataChanges, &user_prefix, &start, true, usize::MAX)?
                {
                    let position = change_key[user_prefix.len()..]
                        .try_into()
                        .map(u64::from_be_bytes)
                        .unwrap_or(u64::MAX);
                    if position > until {
                        break;
                    }
                    if !rows.contains(&row) {
                        rows.push(row);
                    }
                }
                rows
            }
        };
        let user_prefix_len = user_id.as_bytes().len() + 1;
        let mut entries = Vec::new();
        for row in rows {
            let Some(content) = self.store.get_json::<Box<RawValue>>(Table::AccountData, &row)? else {
                continue;
            };
            let mut parts = row[user_prefix_len..].splitn(2, |b| *b == SEP);
            let (Some(room), Some(event_type)) = (parts.next(), parts.next()) else {
                continue;
            };
            entries.push(Entry {
                room_id: (!room.is_empty())
                    .then(|| RoomId::parse(String::from_utf8_lossy(room).as_ref()).ok())
                    .flatten(),
                event_type: String::from_utf8_lossy(event_type).into_owned(),
                content,
            });
        }
        Ok(entries)
    }
}
