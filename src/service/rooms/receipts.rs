//! Read receipts (`m.read`, `m.read.private`): where each user has read up to in a room, per
//! thread. Each update takes a stream position, so sync can deliver it.

use ruma::{EventId, RoomId, UserId};
use serde::{Deserialize, Serialize};

use super::Rooms;
use crate::error::{Error, Result};
use crate::service::now_ms;
use crate::store::{Table, key};

/// One user's receipt of one type in one room and thread.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receipt {
    pub event_id: ruma::OwnedEventId,
    pub ts: u64,
    pub stream: u64,
}

impl Rooms {
    /// Records that `user` has read up to `event_id` (which must be in the room) with a
    /// receipt of `receipt_type`, in `thread` (`"main"`, a thread root, or `""` for none).
    pub fn set_receipt(&self, room_id: &RoomId, user: &UserId, receipt_type: &str, event_id: &EventId, thread: &str) -> Result<()> {
        let stored = self
            .stored_event(event_id)?
            .filter(|stored| stored.room_id == room_id)
            .ok_or_else(|| Error::not_found("The event is not in this room"))?;
        if !self.can_see_event(user, event_id, &stored)? {
            return Err(Error::not_found("The event is not in this room"));
        }
        let ticket = self.stream.begin()?;
        let receipt = Receipt {
            event_id: event_id.to_owned(),
            ts: now_ms(),
            stream: ticket.position(),
        };
        let mut batch = self.store.batch();
        batch.put_json(
            Table::Receipts,
            &key(&[room_id.as_bytes(), user.as_bytes(), receipt_type.as_bytes(), thread.as_bytes()]),
            &receipt,
        );
        batch.commit()?;
        ticket.complete(Vec::new());
        Ok(())
    }
}
