//! Account data: per-user JSON objects, global or per room, keyed by event type.

use ruma::{RoomId, UserId};
use serde_json::value::RawValue;

use crate::error::Result;
use crate::store::{Store, Table, key};

/// The account data of this server's users.
pub struct AccountData {
    store: Store,
}

fn row_key(user_id: &UserId, room_id: Option<&RoomId>, event_type: &str) -> Vec<u8> {
    key(&[
        user_id.as_bytes(),
        room_id.map_or(&b""[..], |r| r.as_bytes()),
        event_type.as_bytes(),
    ])
}

impl AccountData {
    pub fn new(store: Store) -> AccountData {
        AccountData { store }
    }

    /// One entry's content, if set.
    pub fn get(&self, user_id: &UserId, room_id: Option<&RoomId>, event_type: &str) -> Result<Option<Box<RawValue>>> {
        Ok(self.store.get_json(Table::AccountData, &row_key(user_id, room_id, event_type))?)
    }

    /// Sets one entry's content.
    pub fn set(&self, user_id: &UserId, room_id: Option<&RoomId>, event_type: &str, content: &RawValue) -> Result<()> {
        let mut batch = self.store.batch();
        batch.put_json(Table::AccountData, &row_key(user_id, room_id, event_type), content);
        Ok(batch.commit()?)
    }
}
