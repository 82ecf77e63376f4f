//! Spaces: a space is a room of type `m.space` whose `m.space.child` state events name its
//! rooms — in Discord's words, a server and its channels. This walks that tree for
//! `/hierarchy` and builds a community (a space with its channels) for the admin CLI.

use std::collections::{HashSet, VecDeque};

use ruma::events::StateEventType;
use ruma::events::room::member::MembershipState;
use ruma::{OwnedRoomId, OwnedServerName, RoomId, ServerName, UserId};
use serde_json::{Map, Value, json};

use super::create::RoomSettings;
use super::{NewEvent, Rooms};
use crate::error::{Error, Result};

/// One room of a space hierarchy: its directory summary and its `m.space.child` events.
pub struct HierarchyRoom {
    pub summary: Value,
    pub children_state: Vec<Value>,
}

/// A hierarchy room with the children its `m.space.child` events name, each with the servers
/// its `via` names.
struct HierarchyEntry {
    room: HierarchyRoom,
    children: Vec<(OwnedRoomId, Vec<OwnedServerName>)>,
}

/// A space's rooms this server has, and the children it does not have with the servers that
/// may (their `via`).
pub struct Hierarchy {
    pub rooms: Vec<HierarchyRoom>,
    pub elsewhere: Vec<(OwnedRoomId, Vec<OwnedServerName>)>,
}

/// A space as another server is shown it: the space, its direct children anyone could join or
/// read, and those they could not.
pub struct ServerSpaceView {
    pub root: HierarchyRoom,
    pub children: Vec<Value>,
    pub inaccessible: Vec<OwnedRoomId>,
}

impl Rooms {
    /// Whether a room could be joined or read by some user of another server: public, knock,
    /// restricted (members of an allowed room may) or world-readable.
    fn open_to_servers(&self, room_id: &RoomId) -> Result<bool> {
        let state = self.current_state(room_id)?;
        let join_rule = self
            .state_content(&state, &StateEventType::RoomJoinRules, "")?
            .and_then(|content| content.get("join_rule").and_then(Value::as_str).map(str::to_owned));
        let visibility = self
            .state_content(&state, &StateEventType::RoomHistoryVisibility, "")?
            .and_then(|content| content.get("history_visibility").and_then(Value::as_str).map(str::to_owned));
        Ok(
            matches!(join_rule.as_deref(), Some("public" | "knock" | "restricted" | "knock_restricted"))
                || visibility.as_deref() == Some("world_readable"),
        )
    }

    /// A space of this server for another server (`/hierarchy` over federation): 404 unless it
    /// is open to other servers' users.
    pub fn space_for_server(&self, root: &RoomId, suggested_only: bool) -> Result<ServerSpaceView> {
        self.room(root)?;
        if !self.open_to_servers(root)? {
            return Err(Error::not_found("No such space open to other servers"));
        }
        let root_room = self.hierarchy_room(root, suggested_only)?;
        let mut children = Vec::new();
        let mut inaccessible = Vec::new();
        for (child, _) in &root_room.children {
            if self.room(child).is_err() {
                continue;
            }
            if self.open_to_servers(child)? {
                children.push(self.summary(child)?);
            } else {
                inaccessible.push(child.clone());
            }
        }
        Ok(ServerSpaceView {
            root: root_room.room,
            children,
            inaccessible,
        })
    }

    /// Whether `user` may see a room's summary: they are in it, or anyone (or any member of
    /// a room its join rule allows) could join or read it.
    pub fn may_preview(&self, room_id: &RoomId, user: &UserId) -> Result<bool> {
        let state = self.current_state(room_id)?;
        if self.membership_in(&state, user)? == MembershipState::Join {
            return Ok(true);
        }
        let field = |kind: StateEventType, name: &str| -> Result<Option<Value>> {
            Ok(self
                .state_content(&state, &kind, "")?
                .and_then(|content| content.get(name).cloned()))
        };
        if field(StateEventType::RoomHistoryVisibility, "history_visibility")? == Some(json!("world_readable")) {
            return Ok(true);
        }
        let join_rules = self
            .state_content(&state, &StateEventType::RoomJoinRules, "")?
            .unwrap_or(Value::Null);
        match join_rules.get("join_rule").and_then(Value::as_str) {
            Some("public" | "knock") => Ok(true),
            Some("restricted" | "knock_restricted") => {
                for allowed in join_rules.get("allow").and_then(Value::as_array).into_iter().flatten() {
                    let Some(allowed_room) = allowed.get("room_id").and_then(Value::as_str).and_then(|id| RoomId::parse(id).ok()) else {
                        continue;
                    };
                    if self
                        .membership(user, &allowed_room)?
                        .is_some_and(|record| record.membership == MembershipState::Join)
                    {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// The rooms of a space, breadth first from `root`, down to `max_depth`, that `user` may
    /// preview, and its children this server does not have; 403 if they may not preview the
    /// root.
    pub fn hierarchy(&self, root: &RoomId, user: &UserId, max_depth: usize, suggested_only: bool) -> Result<Hierarchy> {
        self.room(root)?;
        if !self.may_preview(root, user)? {
            return Err(Error::forbidden("You may not see this space"));
        }
        let mut rooms = Vec::new();
        let mut elsewhere = Vec::new();
        let mut seen = HashSet::from([root.to_owned()]);
        let mut queue = VecDeque::from([(root.to_owned(), 0usize)]);
        while let Some((room_id, depth)) = queue.pop_front() {
            if !self.may_preview(&room_id, user)? {
                continue;
            }
            let entry = self.hierarchy_room(&room_id, suggested_only)?;
            if depth < max_depth {
                for (child, via) in entry.children {
                    if !seen.insert(child.clone()) {
                        continue;
                    }
                    if self.room(&child).is_ok() {
                        queue.push_back((child, depth + 1));
                    } else {
                        elsewhere.push((child, via));
                    }
                }
            }
            rooms.push(entry.room);
        }
        Ok(Hierarchy { rooms, elsewhere })
    }

    /// One room of a hierarchy: its summary and linked `m.space.child` events, and the
    /// children they name.
    fn hierarchy_room(&self, room_id: &RoomId, suggested_only: bool) -> Result<HierarchyEntry> {
        let mut children_state = Vec::new();
        let mut children = Vec::new();
        let state = self.current_state(room_id)?;
        for (short_key, short_event) in state.iter() {
            let (kind, state_key) = self.states.state_key(*short_key)?;
            if kind != StateEventType::SpaceChild {
                continue;
            }
            let Some(pdu) = self.pdu(&self.states.event_id(*short_event)?)? else {
                continue;
            };
            let content = pdu.content_value();
            let linked = content.get("via").and_then(Value::as_array).is_some_and(|via| !via.is_empty());
            let suggested = content.get("suggested").and_then(Value::as_bool).unwrap_or(false);
            if !linked || (suggested_only && !suggested) {
                continue;
            }
            children_state.push(json!({
                "type": "m.space.child",
                "state_key": state_key,
                "content": content,
                "sender": pdu.sender,
                "origin_server_ts": pdu.origin_server_ts,
            }));
            if let Ok(child) = RoomId::parse(state_key.as_str()) {
                let via = content
                    .get("via")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|server| ServerName::parse(server.as_str()?).ok())
                    .collect();
                children.push((child, via));
            }
        }
        Ok(HierarchyEntry {
            room: HierarchyRoom {
                summary: self.summary(room_id)?,
                children_state,
            },
            children,
        })
    }

    /// Creates a community: a space named `name` owned by `owner`, and one channel room per
    /// name in `channels`, linked both ways and joinable by the space's members.
    pub async fn create_community(&self, owner: &UserId, name: &str, channels: &[String]) -> Result<(OwnedRoomId, Vec<OwnedRoomId>)> {
        let space = self
            .create_room(
                owner,
                RoomSettings {
                    creation_content: Map::from_iter([("type".to_owned(), json!("m.space"))]),
                    power_level_override: Some(Map::from_iter([("events_default".to_owned(), json!(100))])),
                    ..RoomSettings::named("private_chat", name)
                },
            )
            .await?;
        let via = json!([self.server_name()]);
        let mut rooms = Vec::new();
        for (index, channel) in channels.iter().enumerate() {
            let join_rule = json!({ "join_rule": "restricted", "allow": [{ "type": "m.room_membership", "room_id": space }] });
            let room = self
                .create_room(
                    owner,
                    RoomSettings {
                        initial_state: vec![
                            ("m.room.join_rules".into(), String::new(), join_rule),
                            ("m.space.parent".into(), space.to_string(), json!({ "via": via, "canonical": true })),
                        ],
                        ..RoomSettings::named("private_chat", channel)
                    },
                )
                .await?;
            let child = json!({ "via": via, "suggested": index == 0, "order": format!("{index:04}") });
            self.append(&space, owner, NewEvent::state(StateEventType::SpaceChild, room.as_str(), child))
                .await?;
            rooms.push(room);
        }
        Ok((space, rooms))
    }
}
