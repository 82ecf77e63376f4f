//! Room aliases (`#general:example.org` → room ID) and the public room directory.

use ruma::directory::PublicRoomsChunk;
use ruma::directory::RoomNetwork;
use ruma::events::StateEventType;
use ruma::events::room::member::MembershipState;
use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomAliasId, RoomId, UInt, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Rooms;
use crate::error::{Error, Result};
use crate::store::{Table, key, prefix};

/// Where an alias points, and who made it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AliasRecord {
    pub room_id: OwnedRoomId,
    pub creator: OwnedUserId,
}

/// Who may change an alias or a room's directory listing.
pub struct Actor<'a> {
    pub user: &'a UserId,
    pub server_admin: bool,
}

/// The most rooms one page lists.
const MAX_LIMIT: usize = 500;

/// One page of the directory.
pub struct DirectoryPage {
    pub chunk: Vec<PublicRoomsChunk>,
    pub next_batch: Option<String>,
    pub prev_batch: Option<String>,
    pub total: usize,
}

impl Rooms {
    /// The listed rooms whose name, topic or alias contains `search` (case-insensitively), most
    /// members first, paged by offset tokens (`o<N>`).
    pub fn directory_page(
        &self,
        network: &RoomNetwork,
        search: Option<&str>,
        limit: Option<UInt>,
        since: Option<&str>,
    ) -> Result<DirectoryPage> {
        let offset = match since {
            Some(token) => token
                .strip_prefix('o')
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| Error::invalid_param("Invalid `since` token"))?,
            None => 0,
        };
        let search = search.map(str::to_lowercase).filter(|term| !term.is_empty());
        let mut rooms: Vec<Value> = self
            .listed_rooms(network)?
            .iter()
            .map(|room_id| self.summary(room_id))
            .collect::<Result<Vec<Value>>>()?
            .into_iter()
            .filter(|room| {
                search.as_ref().is_none_or(|term| {
                    ["name", "topic", "canonical_alias"]
                        .iter()
                        .any(|field| room[field].as_str().is_some_and(|text| text.to_lowercase().contains(term)))
                })
            })
            .collect();
        rooms.sort_by(|a, b| {
            b["num_joined_members"]
                .as_u64()
                .cmp(&a["num_joined_members"].as_u64())
                .then_with(|| a["room_id"].as_str().cmp(&b["room_id"].as_str()))
        });
        let total = rooms.len();
        let limit = limit.map_or(MAX_LIMIT, |l| u64::from(l) as usize).clamp(1, MAX_LIMIT);
        let chunk = rooms
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(serde_json::from_value)
            .collect::<Result<Vec<PublicRoomsChunk>, _>>()?;
        Ok(DirectoryPage {
            next_batch: (offset + chunk.len() < total).then(|| format!("o{}", offset + chunk.len())),
            prev_batch: (offset > 0).then(|| format!("o{}", offset.saturating_sub(limit))),
            chunk,
            total,
        })
    }

    /// Creates an alias for a room the creator is in; 409 if it exists.
    pub fn create_alias(&self, alias: &RoomAliasId, room_id: &RoomId, creator: &UserId) -> Result<()> {
        if alias.server_name() != self.server_name() {
            return Err(Error::invalid_param("Aliases can only be created on this server's name"));
        }
        self.check_alias_claim(alias, creator)?;
        self.room(room_id)?;
        let state = self.current_state(room_id)?;
        if self.membership_in(&state, creator)? != MembershipState::Join {
            return Err(Error::forbidden("You are not in this room"));
        }
        let _aliases = self.aliases_lock.lock().unwrap_or_else(|e| e.into_inner());
        let _aliases_elsewhere = self.store.lock_blocking(b"aliases")?;
        if self.store.get(Table::Aliases, alias.as_bytes())?.is_some() {
            return Err(Error::alias_exists(format!("The alias {alias} already exists")));
        }
        let record = AliasRecord {
            room_id: room_id.to_owned(),
            creator: creator.to_owned(),
        };
        let mut batch = self.store.batch();
        batch.put_json(Table::Aliases, alias.as_bytes(), &record);
        batch.put(Table::RoomAliases, &key(&[room_id.as_bytes(), alias.as_bytes()]), &[]);
        batch.commit()?;
        Ok(())
    }

    /// Refuses with 400 `M_EXCLUSIVE` an alias of an appservice's exclusive namespace to anyone
    /// but the appservice's users.
    pub(super) fn check_alias_claim(&self, alias: &RoomAliasId, creator: &UserId) -> Result<()> {
        match self.appservices.exclusive_owner_of_alias(alias) {
            Some(owner) if !owner.claims_user(creator) => Err(Error::exclusive("That alias is reserved by a bridge")),
            _ => Ok(()),
        }
    }

    /// The room an alias points to; 404 `M_NOT_FOUND` if none.
    pub fn resolve_alias(&self, alias: &RoomAliasId) -> Result<OwnedRoomId> {
        self.store
            .get_json::<AliasRecord>(Table::Aliases, alias.as_bytes())?
            .map(|record| record.room_id)
            .ok_or_else(|| Error::not_found(format!("The alias {alias} does not exist")))
    }

    /// The servers with members joined to a room, this one first: where others may join it.
    pub fn resident_servers(&self, room_id: &RoomId) -> Result<Vec<ruma::OwnedServerName>> {
        let mut servers = vec![self.server_name().clone()];
        for (user, membership) in self.members(room_id)?.iter() {
            if *membership == ruma::events::room::member::MembershipState::Join && !servers.iter().any(|s| s == user.server_name()) {
                servers.push(user.server_name().to_owned());
            }
        }
        Ok(servers)
    }

    /// Deletes an alias: its creator, a server admin, or a room member allowed to set the
    /// canonical alias may.
    pub fn delete_alias(&self, alias: &RoomAliasId, actor: Actor<'_>) -> Result<()> {
        let record: AliasRecord = self
            .store
            .get_json(Table::Aliases, alias.as_bytes())?
            .ok_or_else(|| Error::not_found(format!("The alias {alias} does not exist")))?;
        if record.creator != actor.user && !actor.server_admin && !self.may_manage_listing(&record.room_id, actor.user)? {
            return Err(Error::forbidden("You may not delete this alias"));
        }
        let mut batch = self.store.batch();
        batch.delete(Table::Aliases, alias.as_bytes());
        batch.delete(Table::RoomAliases, &key(&[record.room_id.as_bytes(), alias.as_bytes()]));
        batch.commit()?;
        Ok(())
    }

    /// The local aliases of a room.
    pub fn room_aliases(&self, room_id: &RoomId) -> Result<Vec<OwnedRoomAliasId>> {
        let room_prefix = prefix(&[room_id.as_bytes()]);
        Ok(self
            .store
            .scan_keys(Table::RoomAliases, &room_prefix)?
            .into_iter()
            .filter_map(|row| RoomAliasId::parse(String::from_utf8_lossy(&row[room_prefix.len()..]).as_ref()).ok())
            .collect())
    }

    /// Whether a user may change the room's aliases and listing: they can set its canonical alias.
    pub fn may_manage_listing(&self, room_id: &RoomId, user: &UserId) -> Result<bool> {
        let room = self.room(room_id)?;
        let state = self.states.load(room.state)?;
        if self.membership_in(&state, user)? != MembershipState::Join {
            return Ok(false);
        }
        Ok(self
            .power_levels(&room.version, &state)?
            .user_can_send_state(user, StateEventType::RoomCanonicalAlias))
    }

    /// Lists or unlists a room in the public directory.
    pub fn set_published(&self, room_id: &RoomId, published: bool) -> Result<()> {
        self.room(room_id)?;
        let mut batch = self.store.batch();
        if published {
            batch.put(Table::PublicRooms, room_id.as_bytes(), &[]);
        } else {
            batch.delete(Table::PublicRooms, room_id.as_bytes());
        }
        batch.commit()?;
        Ok(())
    }

    /// Whether a room is in the public directory.
    pub fn is_published(&self, room_id: &RoomId) -> Result<bool> {
        Ok(self.store.get(Table::PublicRooms, room_id.as_bytes())?.is_some())
    }

    /// The rooms of a network's directory: the Matrix one (the public directory), a bridge's
    /// (`<appservice ID>|<network ID>`, as `/thirdparty/protocols` names its instances), or all.
    fn listed_rooms(&self, network: &RoomNetwork) -> Result<Vec<OwnedRoomId>> {
        let mut rooms = match network {
            RoomNetwork::ThirdParty(_) => Vec::new(),
            _ => self.published_rooms()?,
        };
        if *network != RoomNetwork::Matrix {
            for (room, (appservice, network_id)) in self.store.scan_json::<(String, String)>(Table::AppserviceDirectory, &[])? {
                let listed = match network {
                    RoomNetwork::ThirdParty(instance) => *instance == format!("{appservice}|{network_id}"),
                    _ => true,
                };
                if let Ok(room_id) = RoomId::parse(String::from_utf8_lossy(&room).as_ref())
                    && listed
                    && !rooms.contains(&room_id)
                {
                    rooms.push(room_id);
                }
            }
        }
        Ok(rooms)
    }

    /// Lists or unlists a room in an appservice's directory of one of its networks
    /// (`PUT /directory/list/appservice/{networkId}/{roomId}`).
    pub fn set_appservice_listing(&self, room_id: &RoomId, appservice: &str, network_id: &str, listed: bool) -> Result<()> {
        self.room(room_id)?;
        let mut batch = self.store.batch();
        if listed {
            batch.put_json(Table::AppserviceDirectory, room_id.as_bytes(), &(appservice, network_id));
        } else {
            batch.delete(Table::AppserviceDirectory, room_id.as_bytes());
        }
        batch.commit()?;
        Ok(())
    }

    /// The IDs of the rooms in the public directory.
    pub fn published_rooms(&self) -> Result<Vec<OwnedRoomId>> {
        Ok(self
            .store
            .scan_keys(Table::PublicRooms, &[])?
            .iter()
            .filter_map(|row| RoomId::parse(String::from_utf8_lossy(row).as_ref()).ok())
            .collect())
    }

    /// A room's directory entry: name, topic, alias, avatar, members, join rule, type.
    pub fn summary(&self, room_id: &RoomId) -> Result<Value> {
        let state = self.current_state(room_id)?;
        let field = |kind: StateEventType, name: &str| -> Result<Option<Value>> {
            Ok(self
                .state_content(&state, &kind, "")?
                .and_then(|content| content.get(name).cloned()))
        };
        let joined = self.joined_members(room_id)?.len();
        let mut summary = json!({
            "room_id": room_id,
            "num_joined_members": joined,
            "world_readable": field(StateEventType::RoomHistoryVisibility, "history_visibility")? == Some(json!("world_readable")),
            "guest_can_join": field(StateEventType::RoomGuestAccess, "guest_access")? == Some(json!("can_join")),
            "join_rule": field(StateEventType::RoomJoinRules, "join_rule")?.unwrap_or(json!("invite")),
        });
        let join_rules = self
            .state_content(&state, &StateEventType::RoomJoinRules, "")?
            .unwrap_or(Value::Null);
        if let Some(allow) = join_rules.get("allow").and_then(Value::as_array) {
            let allowed: Vec<&Value> = allow.iter().filter_map(|rule| rule.get("room_id")).collect();
            summary["allowed_room_ids"] = json!(allowed);
        }
        summary["room_version"] = json!(self.room(room_id)?.version);
        for (kind, name, key) in [
            (StateEventType::RoomName, "name", "name"),
            (StateEventType::RoomTopic, "topic", "topic"),
            (StateEventType::RoomAvatar, "url", "avatar_url"),
            (StateEventType::RoomCanonicalAlias, "alias", "canonical_alias"),
            (StateEventType::RoomCreate, "type", "room_type"),
            (StateEventType::RoomEncryption, "algorithm", "encryption"),
        ] {
            if let Some(value) = field(kind, name)? {
                summary[key] = value;
            }
        }
        Ok(summary)
    }
}
