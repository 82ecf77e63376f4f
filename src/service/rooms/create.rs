//! Creating a room: the create event, the creator's join, power levels, the preset's join
//! rules, history visibility and guest access, the initial state, name, topic and invites — the
//! order and defaults of the spec's `createRoom` (and Synapse's).

use ruma::events::StateEventType;
use ruma::events::room::member::MembershipState;
use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomVersionId, UserId};
use serde_json::{Map, Value, json};

use super::membership::MembershipChange;
use super::{NewEvent, Rooms, rules};
use crate::error::{Error, Result};

/// The room versions this server creates and joins.
pub const SUPPORTED_ROOM_VERSIONS: [RoomVersionId; 3] = [RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12];

/// The version of new rooms when the client names none (what Synapse 1.163 creates).
pub const DEFAULT_ROOM_VERSION: RoomVersionId = RoomVersionId::V12;

/// A room's initial settings, as `createRoom` gives them.
pub struct RoomSettings {
    pub version: RoomVersionId,
    /// `private_chat`, `trusted_private_chat` or `public_chat`.
    pub preset: String,
    /// Extra fields of the create event (`type: m.space`, `m.federate`, …).
    pub creation_content: Map<String, Value>,
    pub power_level_override: Option<Map<String, Value>>,
    /// (type, state_key, content) of the initial state events.
    pub initial_state: Vec<(String, String, Value)>,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub invite: Vec<OwnedUserId>,
    pub is_direct: bool,
    /// The alias to create and make canonical.
    pub alias: Option<OwnedRoomAliasId>,
    /// Whether to list the room in the public directory.
    pub publish: bool,
}

impl RoomSettings {
    /// A room of the default version with `preset`, a name, and nothing else set.
    pub fn named(preset: &str, name: &str) -> RoomSettings {
        RoomSettings {
            version: DEFAULT_ROOM_VERSION,
            preset: preset.to_owned(),
            creation_content: Map::new(),
            power_level_override: None,
            initial_state: vec![],
            name: Some(name.to_owned()),
            topic: None,
            invite: vec![],
            is_direct: false,
            alias: None,
            publish: false,
        }
    }
}

impl Rooms {
    /// Creates a room as the spec's `createRoom` does; returns its ID.
    pub async fn create_room(&self, creator: &UserId, settings: RoomSettings) -> Result<OwnedRoomId> {
        if !SUPPORTED_ROOM_VERSIONS.contains(&settings.version) {
            return Err(Error::unsupported_room_version(format!(
                "Room version {} is not supported here",
                settings.version
            )));
        }
        let rules = rules(&settings.version)?;
        if let Some(alias) = &settings.alias {
            if self.resolve_alias(alias).is_ok() {
                return Err(Error::room_in_use(format!("The alias {alias} is taken")));
            }
            // Refused before the room exists, not after.
            self.check_alias_claim(alias, creator)?;
        }
        let mut create_content = settings.creation_content;
        create_content.insert("room_version".into(), json!(settings.version));
        if !rules.authorization.use_room_create_sender {
            create_content.insert("creator".into(), json!(creator));
        }
        let room_id = self.create(&settings.version, creator, Value::Object(create_content)).await?;

        self.join(&room_id, creator, None).await?;

        let creators_are_privileged = rules.authorization.explicitly_privilege_room_creators;
        let mut power_levels = default_power_levels(creator, creators_are_privileged, &settings.preset, &settings.invite);
        if let Some(overrides) = settings.power_level_override {
            for (field, value) in overrides {
                power_levels.insert(field, value);
            }
        }
        if creators_are_privileged && let Some(users) = power_levels.get_mut("users").and_then(Value::as_object_mut) {
            // Room version 12 gives creators unlimited power and forbids listing them.
            users.remove(creator.as_str());
        }
        let send_state = async |kind: StateEventType, state_key: &str, content: Value| {
            self.append(&room_id, creator, NewEvent::state(kind, state_key, content)).await
        };
        send_state(StateEventType::RoomPowerLevels, "", Value::Object(power_levels)).await?;
        if let Some(alias) = &settings.alias {
            self.create_alias(alias, &room_id, creator)?;
            send_state(StateEventType::RoomCanonicalAlias, "", json!({ "alias": alias })).await?;
        }

        let (join_rule, guest_access) = match settings.preset.as_str() {
            "public_chat" => ("public", "forbidden"),
            _ => ("invite", "can_join"),
        };
        send_state(StateEventType::RoomJoinRules, "", json!({ "join_rule": join_rule })).await?;
        send_state(StateEventType::RoomHistoryVisibility, "", json!({ "history_visibility": "shared" })).await?;
        send_state(StateEventType::RoomGuestAccess, "", json!({ "guest_access": guest_access })).await?;

        for (kind, state_key, content) in settings.initial_state {
            send_state(StateEventType::from(kind.as_str()), &state_key, content).await?;
        }
        if let Some(name) = settings.name {
            send_state(StateEventType::RoomName, "", json!({ "name": name })).await?;
        }
        if let Some(topic) = settings.topic {
            let content = json!({ "topic": topic, "m.topic": { "m.text": [{ "body": topic, "mimetype": "text/plain" }] } });
            send_state(StateEventType::RoomTopic, "", content).await?;
        }
        // Users of other servers are invited over federation, by the caller.
        for invitee in settings.invite.iter().filter(|invitee| invitee.server_name() == self.server_name()) {
            let change = MembershipChange {
                sender: creator,
                target: invitee,
                membership: MembershipState::Invite,
                reason: None,
                is_direct: settings.is_direct,
            };
            self.change_membership(&room_id, change).await?;
        }
        if settings.publish {
            self.set_published(&room_id, true)?;
        }
        Ok(room_id)
    }
}

/// The power levels of a new room: the creator (when not privileged by the room version) at
/// 100, and for `trusted_private_chat` the invitees too; anyone may invite to a private chat;
/// the rest as Synapse sets them.
fn default_power_levels(creator: &UserId, creators_are_privileged: bool, preset: &str, invite: &[OwnedUserId]) -> Map<String, Value> {
    let mut users = Map::new();
    if !creators_are_privileged {
        users.insert(creator.to_string(), json!(100));
    }
    if preset == "trusted_private_chat" {
        for invitee in invite {
            users.insert(invitee.to_string(), json!(100));
        }
    }
    let content = json!({
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": if preset == "public_chat" { 50 } else { 0 },
        "notifications": { "room": 50 },
    });
    match content {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
