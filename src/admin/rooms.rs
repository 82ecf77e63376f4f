//! `hearth admin room …` and `hearth admin community …`.

use clap::Subcommand;
use ruma::events::StateEventType;
use ruma::events::room::member::MembershipState;
use ruma::{OwnedRoomId, OwnedRoomOrAliasId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AdminOutput;
use crate::error::{Error, Result};
use crate::service::Services;
use crate::service::rooms::NewEvent;

/// `hearth admin room …`
#[derive(Debug, Clone, Subcommand, Serialize, Deserialize)]
pub enum RoomCommand {
    /// List every room this server knows.
    List,
    /// Show a room (ID or alias): its settings, aliases, members and their power levels.
    Show { room: String },
    /// Delete a room from this server: its members leave, its aliases and listing go, and its
    /// history is purged.
    Delete { room: String },
    /// Rebuild the search index of every room from scratch (it is also rebuilt by itself at
    /// start-up when missing).
    Reindex,
    /// Print an event as its signed federation PDU, e.g. to check its hashes and signature.
    Event { event_id: String },
    /// Set a member's power level in a room (100: admin), sent by the room's most powerful
    /// local member.
    Promote {
        room: String,
        user: String,
        #[arg(long, default_value_t = 100)]
        level: i64,
    },
}

/// `hearth admin community …`
#[derive(Debug, Clone, Subcommand, Serialize, Deserialize)]
pub enum CommunityCommand {
    /// Create a community: a space and its channel rooms, owned by a local user.
    Create {
        /// The community's name.
        name: String,
        /// Channel names, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "general")]
        channels: Vec<String>,
        /// The owner, e.g. `@alice:example.org` or `alice`.
        #[arg(long)]
        owner: String,
    },
}

/// One room as listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoomLine {
    pub room_id: String,
    pub name: Option<String>,
    pub version: String,
    pub joined_members: u64,
    pub alias: Option<String>,
}

pub fn room_id(services: &Services, room: &str) -> Result<OwnedRoomId> {
    let parsed =
        OwnedRoomOrAliasId::try_from(room).map_err(|e| Error::invalid_param(format!("{room} is neither a room ID nor an alias: {e}")))?;
    match OwnedRoomId::try_from(parsed) {
        Ok(room_id) => Ok(room_id),
        Err(alias) => services.rooms.resolve_alias(&alias),
    }
}

/// Runs a room command.
pub async fn execute_room(services: &Services, command: RoomCommand) -> Result<AdminOutput> {
    let rooms = &services.rooms;
    match command {
        RoomCommand::List => {
            let mut lines = Vec::new();
            for (room_id, record) in rooms.all()? {
                let summary = rooms.summary(&room_id)?;
                lines.push(RoomLine {
                    room_id: room_id.to_string(),
                    name: summary["name"].as_str().map(str::to_owned),
                    version: record.version.to_string(),
                    joined_members: summary["num_joined_members"].as_u64().unwrap_or(0),
                    alias: summary["canonical_alias"].as_str().map(str::to_owned),
                });
            }
            Ok(AdminOutput::Rooms(lines))
        }
        RoomCommand::Reindex => {
            let read = rooms.rebuild_search_index()?;
            Ok(AdminOutput::Done(format!("search index rebuilt from {read} events")))
        }
        RoomCommand::Show { room } => {
            let room_id = room_id(services, &room)?;
            let record = rooms.room(&room_id)?;
            let state = rooms.states.load(record.state)?;
            let power = rooms.power_levels(&record.version, &state)?;
            let mut members = serde_json::Map::new();
            for (user, content) in rooms.member_events(&room_id)? {
                let level = UserId::parse(user.as_str())
                    .map(|u| format!("{:?}", power.for_user(&u)))
                    .unwrap_or_default();
                members.insert(user, json!({ "membership": content["membership"], "power_level": level }));
            }
            let mut details = rooms.summary(&room_id)?;
            details["aliases"] = json!(rooms.room_aliases(&room_id)?);
            details["published"] = json!(rooms.is_published(&room_id)?);
            details["members"] = Value::Object(members);
            details["created_ts"] = json!(record.created_ts);
            details["state_events"] = json!(state.len());
            Ok(AdminOutput::Details(details))
        }
        RoomCommand::Event { event_id } => {
            let event_id =
                ruma::EventId::parse(event_id.as_str()).map_err(|e| Error::invalid_param(format!("{event_id} is not an event ID: {e}")))?;
            let stored = rooms
                .stored_event(&event_id)?
                .ok_or_else(|| Error::not_found(format!("no event {event_id}")))?;
            let version = rooms.room(&stored.meta.room_id)?.version;
            Ok(AdminOutput::Details(
                json!({ "room_id": stored.meta.room_id, "room_version": version, "pdu": stored.pdu.object()? }),
            ))
        }
        RoomCommand::Delete { room } => {
            let room_id = room_id(services, &room)?;
            let purged = rooms.delete_room(&room_id).await?;
            Ok(AdminOutput::Done(format!("deleted {room_id} ({purged} events purged)")))
        }
        RoomCommand::Promote { room, user, level } => {
            let room_id = room_id(services, &room)?;
            let user_id = services.accounts.parse_login_name(&user)?;
            let record = rooms.room(&room_id)?;
            let state = rooms.states.load(record.state)?;
            let power = rooms.power_levels(&record.version, &state)?;
            let mut actors = Vec::new();
            for (member, content) in rooms.member_events(&room_id)? {
                let Ok(member) = UserId::parse(member.as_str()) else { continue };
                if member.server_name() == services.config.server_name && content["membership"] == "join" {
                    actors.push((power.for_user(&member), member));
                }
            }
            actors.sort();
            let Some((_, actor)) = actors.pop() else {
                return Err(Error::forbidden("No local member of the room can change its power levels"));
            };
            let mut content = rooms
                .state_content(&state, &StateEventType::RoomPowerLevels, "")?
                .unwrap_or_else(|| json!({}));
            content["users"][user_id.as_str()] = json!(level);
            if rooms.membership_in(&state, &user_id)? != MembershipState::Join {
                return Err(Error::forbidden(format!("{user_id} is not in the room")));
            }
            rooms
                .append(&room_id, &actor, NewEvent::state(StateEventType::RoomPowerLevels, "", content))
                .await?;
            Ok(AdminOutput::Done(format!(
                "{user_id} has power level {level} in {room_id} (set by {actor})"
            )))
        }
    }
}

/// Runs a community command.
pub async fn execute_community(services: &Services, command: CommunityCommand) -> Result<AdminOutput> {
    match command {
        CommunityCommand::Create { name, channels, owner } => {
            let owner = services.accounts.parse_login_name(&owner)?;
            services.accounts.get_active(&owner)?;
            let channels: Vec<String> = channels
                .into_iter()
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty())
                .collect();
            let (space, rooms) = services.rooms.create_community(&owner, &name, &channels).await?;
            Ok(AdminOutput::Details(json!({
                "space": space,
                "channels": channels.iter().zip(&rooms).map(|(name, room)| json!({ "name": name, "room_id": room })).collect::<Vec<_>>(),
            })))
        }
    }
}
