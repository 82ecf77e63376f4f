//! Typing notifications: who is typing in which room, in memory only, each until their
//! timeout. A change takes a stream position (indexed in `stream_rooms`) so sync delivers the
//! room's `m.typing` event, and wakes the room's members. This server's users' typing goes to
//! the other servers in the room as `m.typing` EDUs; theirs comes back the same way. Processes
//! sharing a database announce each change to the others with the change's stream position.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde_json::json;
use tokio::time::Instant;

use super::rooms::room_changes::RoomChanges;
use super::stream::{Audience, Stream};
use super::{Services, now_ms};
use crate::error::Result;
use crate::store::Store;

/// The longest anyone is shown typing without saying so again.
const MAX_TIMEOUT: Duration = Duration::from_secs(120);

/// Who types where.
#[derive(Default)]
struct RoomTyping {
    /// Typing users and when they stop.
    users: BTreeMap<OwnedUserId, Instant>,
    /// The stream position of the last change.
    changed_at: u64,
}

type TypingRooms = Arc<Mutex<HashMap<OwnedRoomId, RoomTyping>>>;

/// The typing notifications of every room.
pub struct Typing {
    store: Store,
    stream: Arc<Stream>,
    rooms: TypingRooms,
    room_changes: Arc<RoomChanges>,
}

/// Records a change: `user` types in a room until `until` (`None`: stopped), as of `position`.
fn record(rooms: &TypingRooms, room_id: &RoomId, user: &UserId, until: Option<Instant>, position: u64) {
    let mut rooms = rooms.lock().unwrap_or_else(|e| e.into_inner());
    let room = rooms.entry(room_id.to_owned()).or_default();
    match until {
        Some(until) => room.users.insert(user.to_owned(), until),
        None => room.users.remove(user),
    };
    room.changed_at = room.changed_at.max(position);
}

/// Applies another process's announcement `<room> <user> <until, ms since the epoch, or 0>
/// <position>`.
fn apply_announcement(rooms: &TypingRooms, text: &str) {
    let parts: Vec<&str> = text.split(' ').collect();
    let [room_id, user, until_ms, position] = parts[..] else { return };
    let (Ok(room_id), Ok(user), Ok(until_ms), Ok(position)) = (
        RoomId::parse(room_id),
        UserId::parse(user),
        until_ms.parse::<u64>(),
        position.parse::<u64>(),
    ) else {
        return;
    };
    let until = (until_ms != 0).then(|| Instant::now() + Duration::from_millis(until_ms.saturating_sub(now_ms())));
    record(rooms, &room_id, &user, until, position);
}

impl Typing {
    pub fn new(store: Store, stream: Arc<Stream>, room_changes: Arc<RoomChanges>) -> Typing {
        let rooms = TypingRooms::default();
        let heard = rooms.clone();
        stream.on_announcement('t', move |text| apply_announcement(&heard, text));
        Typing {
            store,
            stream,
            rooms,
            room_changes,
        }
    }

    /// Sets whether `user` is typing in a room, for `timeout`; `members` are woken. Returns
    /// the time the typing lapses, for the caller to check [`Typing::lapsed`] then.
    pub fn set(&self, room_id: &RoomId, user: &UserId, typing: Option<Duration>, members: Audience) -> Result<Option<Instant>> {
        let mut ticket = self.stream.begin()?;
        let mut batch = self.store.batch();
        self.room_changes.stage(&mut batch, ticket.position(), room_id);
        batch.commit()?;
        let timeout = typing.map(|timeout| timeout.min(MAX_TIMEOUT));
        let until = timeout.map(|timeout| Instant::now() + timeout);
        record(&self.rooms, room_id, user, until, ticket.position());
        let until_ms = timeout.map_or(0, |timeout| now_ms() + timeout.as_millis() as u64);
        ticket.announce('t', format!("{room_id} {user} {until_ms} {}", ticket.position()));
        ticket.complete(members);
        Ok(until)
    }

    /// Whether `user`'s typing in a room has run out (and was not renewed).
    pub fn lapsed(&self, room_id: &RoomId, user: &UserId) -> bool {
        let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        rooms
            .get(room_id)
            .and_then(|room| room.users.get(user))
            .is_some_and(|until| *until <= Instant::now())
    }

    /// The users typing in a room if that changed after `since` (always on a first sync).
    pub fn typing_since(&self, room_id: &RoomId, since: Option<u64>, until: u64) -> Option<Vec<OwnedUserId>> {
        let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        let room = rooms.get(room_id)?;
        if since.is_some_and(|since| room.changed_at <= since) || room.changed_at > until {
            return None;
        }
        let now = Instant::now();
        Some(
            room.users
                .iter()
                .filter(|(_, stops)| **stops > now)
                .map(|(user, _)| user.clone())
                .collect(),
        )
    }
}

impl Services {
    /// Sets whether `user` is typing in a room, for `timeout` (`None`: stopped), wakes its
    /// members and, for this server's users, tells the other servers in the room. The typing
    /// ends by itself when the timeout runs out without being renewed.
    pub fn set_typing(self: &Arc<Self>, room_id: &RoomId, user: &UserId, timeout: Option<Duration>) -> Result<()> {
        let members = self.rooms.users_to_wake(room_id)?;
        let until = self.typing.set(room_id, user, timeout, members)?;
        self.push_typing_to_appservices(room_id)?;
        if user.server_name() == self.config.server_name {
            let content = json!({ "room_id": room_id, "user_id": user, "typing": timeout.is_some() });
            self.rooms.send_edu(
                self.rooms.room_destinations(room_id)?,
                &json!({ "edu_type": "m.typing", "content": content }),
            )?;
        }
        if let Some(until) = until {
            let (services, room_id, user) = (self.clone(), room_id.to_owned(), user.to_owned());
            tokio::spawn(async move {
                tokio::time::sleep_until(until).await;
                if services.typing.lapsed(&room_id, &user)
                    && let Err(error) = services.set_typing(&room_id, &user, None)
                {
                    tracing::warn!(%error, "could not end a typing notification");
                }
            });
        }
        Ok(())
    }
}
