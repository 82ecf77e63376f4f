//! Presence: online, unavailable (idle after inactivity) or offline, with a status message.
//! Kept in the store so a status survives restarts; each change takes a stream position and
//! wakes everyone who shares a room with the user, so sync delivers it. This server's users'
//! changes go to the other servers that share a room with them (`m.presence`); those servers'
//! users' presence is kept here as it comes.
//!
//! Every sync sets its user's presence, mostly to what it already is, and asks whose changed:
//! while this process is the store's only user (other processes sharing a PostgreSQL store
//! change presence too), it keeps the records it read (until they are written) and the stream
//! position of the newest change, so neither reads the store for nothing.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ruma::events::room::member::MembershipState;
use ruma::{OwnedRoomId, OwnedUserId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::kept::KeptPer;
use super::rooms::Rooms;
use super::stream::{Audience, Stream};
use super::{Services, now_ms};
use crate::error::Result;
use crate::store::{Store, Table};

/// Inactivity after which an online user shows as unavailable.
const IDLE_AFTER_MS: u64 = 5 * 60 * 1000;
/// Presence records kept at most; beyond it they are all forgotten and read again.
const KEPT_RECORDS: usize = 100_000;
/// How stale the stored last activity may get before activity alone is written again.
const ACTIVITY_WRITE_INTERVAL_MS: u64 = 60 * 1000;

/// A user's presence as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PresenceRecord {
    /// `online`, `unavailable` or `offline`.
    pub presence: String,
    pub status_msg: Option<String>,
    pub last_active_ts: u64,
    pub stream: u64,
}

impl PresenceRecord {
    /// The presence as others see it now: online users idle for long enough are unavailable.
    pub fn effective(&self) -> &str {
        if self.presence == "online" && now_ms().saturating_sub(self.last_active_ts) > IDLE_AFTER_MS {
            "unavailable"
        } else {
            &self.presence
        }
    }

    /// The `m.presence` event content.
    pub fn content(&self) -> Value {
        let last_active_ago = now_ms().saturating_sub(self.last_active_ts);
        let mut content = json!({
            "presence": self.effective(),
            "last_active_ago": last_active_ago,
            "currently_active": self.effective() == "online" && last_active_ago < IDLE_AFTER_MS,
        });
        if let Some(status) = &self.status_msg {
            content["status_msg"] = json!(status);
        }
        content
    }
}

/// The presence of this server's users.
pub struct Presence {
    store: Store,
    stream: Arc<Stream>,
    /// What this process keeps of presence; `None` with a shared store.
    kept: Option<KeptPresence>,
}

/// The presence records read (dropped by each write), and the stream position of the newest
/// change.
struct KeptPresence {
    records: KeptPer<OwnedUserId, Option<PresenceRecord>>,
    newest_change: AtomicU64,
}

impl Presence {
    pub fn new(store: Store, stream: Arc<Stream>) -> Result<Presence> {
        let kept = match store.shared() {
            Some(_) => None,
            None => {
                let newest = store.range(Table::PresenceChanges, &[], &[u8::MAX; 8], false, 1)?;
                let newest_change = newest.first().and_then(|(position, _)| position.as_slice().try_into().ok());
                Some(KeptPresence {
                    records: KeptPer::new(KEPT_RECORDS, |_| 1),
                    newest_change: AtomicU64::new(newest_change.map(u64::from_be_bytes).unwrap_or(0)),
                })
            }
        };
        Ok(Presence { store, stream, kept })
    }

    /// A user's presence, if they ever had one.
    pub fn get(&self, user: &UserId) -> Result<Option<PresenceRecord>> {
        let read = || Ok(self.store.get_json(Table::Presence, user.as_bytes())?);
        match &self.kept {
            Some(kept) => kept.records.get_or_read(user, &[], read),
            None => read(),
        }
    }

    /// Writes a user's presence record; the one kept is dropped once it is written.
    fn write(&self, user: &UserId, record: &PresenceRecord, change: bool) -> Result<()> {
        let mut batch = self.store.batch();
        batch.put_json(Table::Presence, user.as_bytes(), record);
        if change {
            batch.put(Table::PresenceChanges, &record.stream.to_be_bytes(), user.as_bytes());
        }
        batch.commit()?;
        if let Some(kept) = &self.kept {
            kept.records.forget(user);
            if change {
                kept.newest_change.fetch_max(record.stream, Ordering::SeqCst);
            }
        }
        Ok(())
    }

    /// Sets a user's presence (and status message, when given); wakes those who share a room
    /// with them. Activity without a change is written at most once a minute, and wakes no one
    /// while the user stays currently active (as Synapse's `should_notify`: with a thousand
    /// members online, each one's activity would otherwise wake everyone every minute). Returns
    /// the record when others are told.
    pub fn set(&self, rooms: &Rooms, user: &UserId, presence: &str, status_msg: Option<Option<String>>) -> Result<Option<PresenceRecord>> {
        let current = self.get(user)?;
        let now = now_ms();
        let same = current
            .as_ref()
            .filter(|record| record.presence == presence && status_msg.as_ref().is_none_or(|status| *status == record.status_msg));
        if let Some(record) = same {
            let since_activity = now.saturating_sub(record.last_active_ts);
            if since_activity < ACTIVITY_WRITE_INTERVAL_MS {
                return Ok(None);
            }
            if record.effective() == "online" {
                let refreshed = PresenceRecord {
                    last_active_ts: now,
                    ..record.clone()
                };
                self.write(user, &refreshed, false)?;
                return Ok(None);
            }
        }
        let ticket = self.stream.begin()?;
        let record = PresenceRecord {
            presence: presence.to_owned(),
            status_msg: status_msg.unwrap_or_else(|| current.and_then(|record| record.status_msg)),
            last_active_ts: now,
            stream: ticket.position(),
        };
        self.write(user, &record, true)?;
        // Its owner sees it now; the users sharing a room with them are no hurry.
        let mut audience = self.audience(rooms, user)?;
        audience.remove(user);
        ticket.complete_nudging(vec![user.to_owned()], audience.into_iter().collect::<Audience>());
        Ok(Some(record))
    }

    /// The users whose presence changed after stream position `since`, up to `until`.
    pub fn changed(&self, since: u64, until: u64) -> Result<BTreeSet<OwnedUserId>> {
        let mut users = BTreeSet::new();
        // A change is counted before its position is visible, so a sync up to it sees it here.
        if self
            .kept
            .as_ref()
            .is_some_and(|kept| kept.newest_change.load(Ordering::SeqCst) <= since)
        {
            return Ok(users);
        }
        for (position, user) in self
            .store
            .range(Table::PresenceChanges, &[], &(since + 1).to_be_bytes(), true, usize::MAX)?
        {
            if position.as_slice() > until.to_be_bytes().as_slice() {
                break;
            }
            if let Ok(user) = UserId::parse(String::from_utf8_lossy(&user).as_ref()) {
                users.insert(user);
            }
        }
        Ok(users)
    }

    /// Whether `viewer`, joined to `viewer_rooms`, may see `user`'s presence: it is theirs, or
    /// they share a joined room.
    pub fn visible_to(&self, rooms: &Rooms, user: &UserId, viewer: &UserId, viewer_rooms: &BTreeSet<OwnedRoomId>) -> Result<bool> {
        if user == viewer {
            return Ok(true);
        }
        Ok(rooms
            .rooms_of_user(user, &MembershipState::Join)?
            .iter()
            .any(|room| viewer_rooms.contains(room)))
    }

    /// Everyone who shares a joined room with `user`, and `user`.
    pub fn audience(&self, rooms: &Rooms, user: &UserId) -> Result<BTreeSet<OwnedUserId>> {
        let mut users = BTreeSet::from([user.to_owned()]);
        for room in rooms.rooms_of_user(user, &MembershipState::Join)? {
            for (member, membership) in rooms.members(&room)?.iter() {
                if *membership == MembershipState::Join {
                    users.insert(member.clone());
                }
            }
        }
        Ok(users)
    }
}

impl Services {
    /// Sets a local user's presence ([`Presence::set`]) and tells the other servers that share
    /// a room with them (`m.presence`); `true` when it changed (a write took a stream position).
    pub fn set_presence(&self, user: &UserId, presence: &str, status_msg: Option<Option<String>>) -> Result<bool> {
        let Some(record) = self.presence.set(&self.rooms, user, presence, status_msg)? else {
            return Ok(false);
        };
        let mut update = record.content();
        update["user_id"] = json!(user);
        let edu = json!({ "edu_type": "m.presence", "content": { "push": [update] } });
        self.rooms.send_edu(self.rooms.servers_sharing_with(user)?, &edu)?;
        self.push_presence_to_appservices(user, record.content())?;
        Ok(true)
    }
}
