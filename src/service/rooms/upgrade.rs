//! Room upgrades: a new room of another version replaces an old one. The new room gets the old
//! one's state (name, topic, avatar, rules, power levels, bans, space links), its local
//! aliases move over, and the old room gets a tombstone pointing at the new one and is closed
//! to new messages from ordinary members.

use ruma::events::StateEventType;
use ruma::events::room::member::MembershipState;
use ruma::{OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, UserId};
use serde_json::{Value, json};

use super::create::SUPPORTED_ROOM_VERSIONS;
use super::membership::MembershipChange;
use super::{NewEvent, Rooms, rules};
use crate::error::{Error, Result};
use crate::store::{Table, key};

/// State copied into the replacement room, in this order (power levels first, so the
/// upgrader may send the rest).
const COPIED_STATE: [&str; 9] = [
    "m.room.power_levels",
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.encryption",
    "m.room.server_acl",
];

impl Rooms {
    /// Replaces `old` with a new room of `version`; returns the new room's ID.
    pub async fn upgrade(
        &self,
        old: &RoomId,
        user: &UserId,
        version: &RoomVersionId,
        additional_creators: Vec<OwnedUserId>,
    ) -> Result<OwnedRoomId> {
        if !SUPPORTED_ROOM_VERSIONS.contains(version) {
            return Err(Error::unsupported_room_version(format!(
                "Room version {version} is not supported here"
            )));
        }
        let old_record = self.room(old)?;
        let old_state = self.states.load(old_record.state)?;
        if !self
            .power_levels(&old_record.version, &old_state)?
            .user_can_send_state(user, StateEventType::RoomTombstone)
        {
            return Err(Error::forbidden("You may not upgrade this room"));
        }
        let new_rules = rules(version)?;

        let old_create = self.state_content(&old_state, &StateEventType::RoomCreate, "")?.unwrap_or_default();
        let mut create = json!({ "room_version": version, "predecessor": { "room_id": old } });
        for field in ["type", "m.federate"] {
            if let Some(value) = old_create.get(field) {
                create[field] = value.clone();
            }
        }
        if !new_rules.authorization.use_room_create_sender {
            create["creator"] = json!(user);
        }
        if new_rules.authorization.additional_room_creators && !additional_creators.is_empty() {
            create["additional_creators"] = json!(additional_creators);
        }
        let new = self.create(version, user, create).await?;
        self.join(&new, user, None).await?;

        for kind in COPIED_STATE {
            let kind = StateEventType::from(kind);
            let Some(mut content) = self.state_content(&old_state, &kind, "")? else {
                continue;
            };
            if kind == StateEventType::RoomPowerLevels {
                let users = content["users"].as_object_mut();
                if let Some(users) = users {
                    if new_rules.authorization.explicitly_privilege_room_creators {
                        users.remove(user.as_str());
                        for creator in &additional_creators {
                            users.remove(creator.as_str());
                        }
                    } else {
                        let level = users.get(user.as_str()).and_then(Value::as_i64).unwrap_or(0).max(100);
                        users.insert(user.to_string(), json!(level));
                    }
                }
            }
            self.append(&new, user, NewEvent::state(kind, "", content)).await?;
        }
        for (short_key, _) in old_state.iter() {
            let (kind, state_key) = self.states.state_key(*short_key)?;
            let copy = match kind {
                StateEventType::SpaceChild | StateEventType::SpaceParent => true,
                StateEventType::RoomMember => {
                    self.membership_in(
                        &old_state,
                        &UserId::parse(state_key.as_str()).map_err(|e| Error::Internal(e.to_string()))?,
                    )? == MembershipState::Ban
                }
                _ => false,
            };
            if !copy {
                continue;
            }
            if kind == StateEventType::RoomMember {
                let Ok(banned) = UserId::parse(state_key.as_str()) else { continue };
                let change = MembershipChange::new(user, &banned, MembershipState::Ban, Some("Banned in the room this one replaces"));
                self.change_membership(&new, change).await?;
            } else if let Some(content) = self.state_content(&old_state, &kind, &state_key)? {
                self.append(&new, user, NewEvent::state(kind, &state_key, content)).await?;
            }
        }

        let aliases = self.room_aliases(old)?;
        if !aliases.is_empty() {
            let mut batch = self.store.batch();
            for alias in &aliases {
                if let Some(mut record) = self
                    .store
                    .get_json::<super::directory::AliasRecord>(Table::Aliases, alias.as_bytes())?
                {
                    record.room_id = new.clone();
                    batch.put_json(Table::Aliases, alias.as_bytes(), &record);
                }
                batch.delete(Table::RoomAliases, &key(&[old.as_bytes(), alias.as_bytes()]));
                batch.put(Table::RoomAliases, &key(&[new.as_bytes(), alias.as_bytes()]), &[]);
            }
            batch.commit()?;
        }
        if let Some(canonical) = self.state_content(&old_state, &StateEventType::RoomCanonicalAlias, "")? {
            self.append(&new, user, NewEvent::state(StateEventType::RoomCanonicalAlias, "", canonical))
                .await?;
            self.append(old, user, NewEvent::state(StateEventType::RoomCanonicalAlias, "", json!({})))
                .await?;
        }
        if self.is_published(old)? {
            self.set_published(old, false)?;
            self.set_published(&new, true)?;
        }

        let tombstone = json!({ "body": "This room has been replaced", "replacement_room": new });
        self.append(old, user, NewEvent::state(StateEventType::RoomTombstone, "", tombstone))
            .await?;
        // Close the old room to ordinary members.
        let current = self.current_state(old)?;
        if let Some(mut levels) = self.state_content(&current, &StateEventType::RoomPowerLevels, "")? {
            let users_default = levels.get("users_default").and_then(Value::as_i64).unwrap_or(0);
            let restricted = 50.max(users_default + 1);
            for field in ["events_default", "invite"] {
                let level = levels.get(field).and_then(Value::as_i64).unwrap_or(0);
                levels[field] = json!(level.max(restricted));
            }
            self.append(old, user, NewEvent::state(StateEventType::RoomPowerLevels, "", levels))
                .await?;
        }
        Ok(new)
    }
}
