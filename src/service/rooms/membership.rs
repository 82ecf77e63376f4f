//! Membership changes: join, leave, invite, kick, ban, unban, knock. Each is one `m.room.member`
//! event; the room version's authorization rules decide whether it is allowed.

use ruma::events::StateEventType;
use ruma::events::room::member::MembershipState;
use ruma::{OwnedEventId, OwnedUserId, RoomId, UserId};
use serde_json::{Value, json};

use super::{NewEvent, Rooms};
use crate::error::{Error, Result};

/// A membership change asked for by `sender`.
pub struct MembershipChange<'a> {
    pub sender: &'a UserId,
    pub target: &'a UserId,
    pub membership: MembershipState,
    pub reason: Option<&'a str>,
    /// For invites: whether the room is a direct chat.
    pub is_direct: bool,
}

impl<'a> MembershipChange<'a> {
    /// A change that is not about a direct chat.
    pub fn new(sender: &'a UserId, target: &'a UserId, membership: MembershipState, reason: Option<&'a str>) -> Self {
        MembershipChange {
            sender,
            target,
            membership,
            reason,
            is_direct: false,
        }
    }
}

impl Rooms {
    /// Appends the member event of a membership change. Joins and knocks carry the target's
    /// profile, as clients expect; users of other servers cannot be reached without federation.
    pub async fn change_membership(&self, room_id: &RoomId, change: MembershipChange<'_>) -> Result<OwnedEventId> {
        if change.target.server_name() != self.server_name() {
            return Err(Error::forbidden(
                "Users of other servers cannot be reached: federation is not available yet",
            ));
        }
        let mut content = json!({ "membership": change.membership.as_str() });
        if matches!(
            change.membership,
            MembershipState::Join | MembershipState::Invite | MembershipState::Knock
        ) {
            let profile = self.profiles.get(change.target)?;
            for field in ["displayname", "avatar_url"] {
                if let Some(value) = profile.get(field) {
                    content[field] = value.clone();
                }
            }
        }
        if let Some(reason) = change.reason {
            content["reason"] = json!(reason);
        }
        if change.is_direct {
            content["is_direct"] = json!(true);
        }
        if change.membership == MembershipState::Join
            && change.sender == change.target
            && let Some(authoriser) = self.join_authoriser(room_id, change.target)?
        {
            content["join_authorised_via_users_server"] = json!(authoriser);
        }
        let event = NewEvent::state(StateEventType::RoomMember, change.target.as_str(), content);
        self.append(room_id, change.sender, event).await
    }

    /// After a change of `user`'s display name or avatar: a new member event (still joined, with
    /// the new profile) in every room the user is joined to, as Synapse does, since clients
    /// show members by their member events. A room that refuses it is skipped and logged.
    pub async fn refresh_member_profiles(&self, user: &UserId) -> Result<()> {
        let profile = self.profiles.get(user)?;
        for room_id in self.rooms_of_user(user, &MembershipState::Join)? {
            let state = self.current_state(&room_id)?;
            let current = self.state_content(&state, &StateEventType::RoomMember, user.as_str())?;
            let mut content = json!({ "membership": "join" });
            for field in ["displayname", "avatar_url"] {
                if let Some(value) = profile.get(field) {
                    content[field] = value.clone();
                }
            }
            let unchanged = ["displayname", "avatar_url"]
                .iter()
                .all(|field| current.as_ref().and_then(|c| c.get(*field)) == content.get(*field));
            if unchanged {
                continue;
            }
            let event = NewEvent::state(StateEventType::RoomMember, user.as_str(), content);
            if let Err(error) = self.append(&room_id, user, event).await {
                tracing::warn!(%room_id, %user, %error, "profile change not sent to the room");
            }
        }
        Ok(())
    }

    /// Joins `user` to a room (or refreshes their member event when already joined).
    pub async fn join(&self, room_id: &RoomId, user: &UserId, reason: Option<&str>) -> Result<OwnedEventId> {
        self.room(room_id)?;
        let change = MembershipChange::new(user, user, MembershipState::Join, reason);
        self.change_membership(room_id, change).await
    }

    /// For a join to a `restricted` room by someone not invited: a local member who may invite,
    /// vouching for the join (the auth rules want one); 403 unless the user is in one of the
    /// rooms the join rule allows. `None` when the room is not restricted or the user invited.
    fn join_authoriser(&self, room_id: &RoomId, user: &UserId) -> Result<Option<OwnedUserId>> {
        let room = self.room(room_id)?;
        let state = self.states.load(room.state)?;
        let join_rules = self
            .state_content(&state, &StateEventType::RoomJoinRules, "")?
            .unwrap_or(Value::Null);
        let restricted = matches!(
            join_rules.get("join_rule").and_then(Value::as_str),
            Some("restricted" | "knock_restricted")
        );
        if !restricted || matches!(self.membership_in(&state, user)?, MembershipState::Invite | MembershipState::Join) {
            return Ok(None);
        }
        let allowed = join_rules.get("allow").and_then(Value::as_array).into_iter().flatten().any(|rule| {
            rule.get("room_id")
                .and_then(Value::as_str)
                .and_then(|id| RoomId::parse(id).ok())
                .and_then(|allowed_room| self.membership(user, &allowed_room).ok().flatten())
                .is_some_and(|record| record.membership == MembershipState::Join)
        });
        if !allowed {
            return Err(Error::forbidden(
                "Joining this room needs membership of a room it allows (or an invite)",
            ));
        }
        let power = self.power_levels(&room.version, &state)?;
        for (member, content) in self.member_events(room_id)? {
            if let Ok(member) = UserId::parse(member.as_str())
                && member.server_name() == self.server_name()
                && content.get("membership").and_then(Value::as_str) == Some("join")
                && power.user_can_invite(&member)
            {
                return Ok(Some(member));
            }
        }
        Err(Error::forbidden("No member of this server can let you in"))
    }

    /// The room's members as `(user, member event content)`, from its current state.
    pub fn member_events(&self, room_id: &RoomId) -> Result<Vec<(String, Value)>> {
        let state = self.current_state(room_id)?;
        let mut members = Vec::new();
        for (short_key, short_event) in state.iter() {
            let (kind, state_key) = self.states.state_key(*short_key)?;
            if kind != StateEventType::RoomMember {
                continue;
            }
            if let Some(pdu) = self.pdu(&self.states.event_id(*short_event)?)? {
                members.push((state_key, pdu.content_value()));
            }
        }
        Ok(members)
    }
}
