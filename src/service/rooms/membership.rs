//! Membership changes: join, leave, invite, kick, ban, unban, knock. Each is one `m.room.member`
//! event; the room version's authorization rules decide whether it is allowed.

use ruma::events::room::member::MembershipState;
use ruma::events::{StateEventType, TimelineEventType};
use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedUserId, RoomId, UserId};
use serde_json::{Value, json};

use super::pdu::Pdu;
use super::{NewEvent, Rooms, StateMap};
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
        if change.target.server_name() != self.server_name() && change.membership == MembershipState::Invite {
            return Err(Error::forbidden("Invites to users of other servers are not available yet"));
        }
        let mut content = self.member_content(change.target, &change.membership, change.reason)?;
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

    /// The content of a member event: the membership, the reason, and for joins, invites and
    /// knocks the target's profile, as clients expect.
    pub fn member_content(&self, target: &UserId, membership: &MembershipState, reason: Option<&str>) -> Result<Value> {
        let mut content = json!({ "membership": membership.as_str() });
        if matches!(membership, MembershipState::Join | MembershipState::Invite | MembershipState::Knock) {
            let profile = self.profiles.get(target)?;
            for field in ["displayname", "avatar_url"] {
                if let Some(value) = profile.get(field) {
                    content[field] = value.clone();
                }
            }
        }
        if let Some(reason) = reason {
            content["reason"] = json!(reason);
        }
        Ok(content)
    }

    /// The template of another server's user's join or leave (`make_join`, `make_leave`),
    /// built on the forward extremities as a local event would be, once the room's rules are
    /// seen to allow it.
    pub fn remote_member_template(&self, room_id: &RoomId, user: &UserId, membership: &MembershipState) -> Result<Value> {
        let room = self.room(room_id)?;
        let rules = super::rules(&room.version)?;
        let state = self.states.load(room.state)?;
        let mut content = json!({ "membership": membership.as_str() });
        if *membership == MembershipState::Join
            && let Some(authoriser) = self.join_authoriser(room_id, user)?
        {
            content["join_authorised_via_users_server"] = json!(authoriser);
        }
        let kind = TimelineEventType::RoomMember;
        let content_raw = serde_json::value::to_raw_value(&content)?;
        let auth_types = ruma::state_res::auth_types_for_event(&kind, user, Some(user.as_str()), &content_raw, &rules.authorization)
            .map_err(|e| Error::bad_json(format!("Invalid join: {e}")))?;
        let mut auth_events = Vec::new();
        for (auth_kind, state_key) in &auth_types {
            if let Some(pdu) = self.state_pdu(&state, auth_kind, state_key)? {
                auth_events.push(pdu.event_id);
            }
        }
        let origin_server_ts = MilliSecondsSinceUnixEpoch::now();
        let draft = Pdu {
            event_id: OwnedEventId::try_from("$template").map_err(|e| Error::Internal(e.to_string()))?,
            room_id: room_id.to_owned(),
            sender: user.to_owned(),
            origin_server_ts,
            kind: kind.clone(),
            content: content_raw,
            state_key: Some(user.to_string()),
            prev_events: room.extremities.clone(),
            auth_events: auth_events.clone(),
            depth: ruma::UInt::try_from(room.depth + 1).unwrap_or_default(),
            redacts: None,
            rejected: false,
            room_id_derived: false,
        };
        let fetch_state = |kind: &StateEventType, state_key: &str| self.state_pdu(&state, kind, state_key).ok().flatten();
        ruma::state_res::check_state_dependent_auth_rules(&rules.authorization, &draft, fetch_state)
            .map_err(|reason| Error::forbidden(format!("This membership change is not allowed: {reason}")))?;
        Ok(json!({
            "type": kind,
            "room_id": room_id,
            "sender": user,
            "state_key": user,
            "content": content,
            "origin_server_ts": origin_server_ts,
            "depth": room.depth + 1,
            "prev_events": room.extremities,
            "auth_events": auth_events,
        }))
    }

    /// The content of `user`'s join: their profile and the reason.
    pub fn join_content(&self, user: &UserId, reason: Option<&str>) -> Result<Value> {
        self.member_content(user, &MembershipState::Join, reason)
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
        self.member_events_in(&*self.current_state(room_id)?)
    }

    /// The member events of a state: (state key, content) of each.
    pub fn member_events_in(&self, state: &StateMap) -> Result<Vec<(String, Value)>> {
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
