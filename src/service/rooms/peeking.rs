//! Peeking: users long-polling `GET /events` on a room they may read without being in it (a
//! world-readable room) are woken by its events like its members.

use std::collections::HashMap;
use std::sync::Mutex;

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};

use super::Rooms;

/// Who peeks into which room now, with how many polls each.
#[derive(Default)]
pub struct Peekers(Mutex<HashMap<OwnedRoomId, HashMap<OwnedUserId, usize>>>);

impl Peekers {
    /// The users peeking into a room now.
    pub fn of(&self, room_id: &RoomId) -> Vec<OwnedUserId> {
        let peekers = self.0.lock().unwrap_or_else(|e| e.into_inner());
        peekers
            .get(room_id)
            .map(|users| users.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// A user peeking into a room while it lives.
pub struct Peek<'a> {
    peekers: &'a Peekers,
    room_id: OwnedRoomId,
    user: OwnedUserId,
}

impl Rooms {
    /// Makes the room's events wake `user` until the returned guard is dropped.
    pub fn peek(&self, room_id: &RoomId, user: &UserId) -> Peek<'_> {
        let mut peekers = self.peekers.0.lock().unwrap_or_else(|e| e.into_inner());
        *peekers.entry(room_id.to_owned()).or_default().entry(user.to_owned()).or_default() += 1;
        Peek {
            peekers: &self.peekers,
            room_id: room_id.to_owned(),
            user: user.to_owned(),
        }
    }
}

impl Drop for Peek<'_> {
    fn drop(&mut self) {
        let mut peekers = self.peekers.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(users) = peekers.get_mut(&self.room_id) {
            if let Some(polls) = users.get_mut(&self.user) {
                *polls -= 1;
                if *polls == 0 {
                    users.remove(&self.user);
                }
            }
            if users.is_empty() {
                peekers.remove(&self.room_id);
            }
        }
    }
}
