//! Invites across servers, both ways, and rejecting an invite to a room of other servers.
//!
//! Inviting another server's user: the invite is built and signed here, sent to the invitee's
//! server (`invite` v2, with the room's stripped state as full PDUs), which signs it too; the
//! doubly signed event is then appended like any event. Another server inviting a user of this
//! one: the event is checked, signed, and kept with its stripped state for the invitee's sync.
//! Rejecting such an invite goes through the inviting server (`make_leave`, `send_leave`).

use ruma::api::federation::membership::{RawStrippedState, create_invite, create_leave_event, prepare_leave_event};
use ruma::canonical_json::CanonicalJsonObject;
use ruma::events::TimelineEventType;
use ruma::events::room::member::MembershipState;
use ruma::{RoomId, ServerName, UserId};
use serde_json::value::RawValue as RawJsonValue;
use serde_json::{Value, json};

use super::Federation;
use super::knocks::stripped_state_event;
use super::membership::raw;
use crate::error::{Error, Result};
use crate::service::accounts::Accounts;
use crate::service::rooms::membership::MembershipChange;
use crate::service::rooms::remote::Intake;
use crate::service::rooms::{NewEvent, Rooms, rules};

impl Federation {
    /// Invites `target` (of this server or another) to a room here on behalf of `sender`.
    pub async fn invite(
        &self,
        rooms: &Rooms,
        room_id: &RoomId,
        sender: &UserId,
        target: &UserId,
        reason: Option<&str>,
        is_direct: bool,
    ) -> Result<()> {
        if target.server_name() == self.server_name {
            let mut change = MembershipChange::new(sender, target, MembershipState::Invite, reason);
            change.is_direct = is_direct;
            rooms.change_membership(room_id, change).await?;
            return Ok(());
        }
        // The profile of another server's user is theirs to tell, not ours.
        let mut content = json!({ "membership": "invite" });
        if let Some(reason) = reason {
            content["reason"] = json!(reason);
        }
        if is_direct {
            content["is_direct"] = json!(true);
        }
        self.invite_remote(rooms, room_id, sender, target, content).await
    }

    /// Invites `target`, a user of another server, to a room here on behalf of `sender`.
    async fn invite_remote(&self, rooms: &Rooms, room_id: &RoomId, sender: &UserId, target: &UserId, content: Value) -> Result<()> {
        let version = rooms.room(room_id)?.version;
        let event = NewEvent::state(ruma::events::StateEventType::RoomMember, target.as_str(), content);
        let (draft, object) = rooms.draft(room_id, sender, event).await?;
        let stripped_state = rooms
            .stripped_state_pdus(room_id)?
            .iter()
            .map(|pdu| raw(pdu).map(RawStrippedState::Pdu))
            .collect::<Result<Vec<_>>>()?;
        let request = create_invite::v2::Request::new(
            room_id.to_owned(),
            draft.event_id.clone(),
            version.clone(),
            raw(&object)?,
            stripped_state,
        );
        let answer = self.send(target.server_name(), request).await?;
        let signed: CanonicalJsonObject =
            serde_json::from_str(answer.event.get()).map_err(|e| Error::bad_gateway(format!("the signed invite: {e}")))?;
        let (pdu, object) = self.check_pdu(&version, signed).await?;
        if pdu.event_id != draft.event_id {
            return Err(Error::bad_gateway(format!("{} changed the invite it signed", target.server_name())));
        }
        match rooms.append_remote(pdu, object, None).await? {
            Intake::Accepted | Intake::Known => Ok(()),
            Intake::Rejected(reason) | Intake::SoftFailed(reason) => Err(Error::forbidden(format!("The invite is not allowed: {reason}"))),
            Intake::MissingPrev(..) => Err(Error::Internal("the invite follows unknown events".into())),
        }
    }

    /// `invite` served: another server invites a user of this one. Returns the event signed by
    /// this server too.
    pub async fn receive_invite(
        &self,
        rooms: &Rooms,
        accounts: &Accounts,
        origin: &ServerName,
        request: &create_invite::v2::Request,
    ) -> Result<Box<RawJsonValue>> {
        let version = &request.room_version;
        let rules = rules(version).map_err(|_| Error::incompatible_room_version(version.to_string()))?;
        let object: CanonicalJsonObject =
            serde_json::from_str(request.event.get()).map_err(|e| Error::bad_json(format!("The invite is not canonical JSON: {e}")))?;
        let (pdu, mut object) = self.check_pdu(version, object).await?;
        let target = pdu.state_key.as_deref().and_then(|key| UserId::parse(key).ok());
        let membership = pdu.content_value().get("membership").and_then(Value::as_str).map(str::to_owned);
        let Some(target) = target.filter(|target| target.server_name() == self.server_name) else {
            return Err(Error::bad_json("The invitee is not a user of this server"));
        };
        if pdu.event_id != request.event_id
            || pdu.room_id != request.room_id
            || pdu.kind != TimelineEventType::RoomMember
            || membership.as_deref() != Some("invite")
            || pdu.sender.server_name() != origin
        {
            return Err(Error::bad_json("Not an invite from the origin server's user to this room"));
        }
        accounts.get_active(&target).map_err(|_| Error::not_found("No such user"))?;
        ruma::signatures::hash_and_sign_event(self.server_name.as_str(), self.key.pair(), &mut object, &rules.redaction)
            .map_err(|e| Error::Internal(format!("signing an invite: {e}")))?;
        // In a room this server takes part in, the invite arrives in a transaction as well.
        if rooms.room(&pdu.room_id).is_err() {
            let stripped_state: Vec<Value> = request.invite_room_state.iter().filter_map(stripped_state_event).collect();
            rooms.record_outside_membership(&pdu, object.clone(), &stripped_state)?;
        }
        raw(&object)
    }

    /// Rejects the invite `user` holds to a room of other servers, through the inviting server.
    pub async fn reject_remote_invite(&self, rooms: &Rooms, room_id: &RoomId, user: &UserId, reason: Option<&str>) -> Result<()> {
        let invite = rooms
            .outside_invite(user, room_id)?
            .ok_or_else(|| Error::forbidden("You are not invited to this room"))?;
        let server = invite.sender.server_name();
        let template = self
            .send(server, prepare_leave_event::v1::Request::new(room_id.to_owned(), user.to_owned()))
            .await?;
        let version = template.room_version.unwrap_or(ruma::RoomVersionId::V1);
        let content = rooms.member_content(user, &MembershipState::Leave, reason)?;
        let (leave, object) = self.sign_template(server, &version, &template.event, user, content).await?;
        let request = create_leave_event::v2::Request::new(room_id.to_owned(), leave.event_id.clone(), raw(&object)?);
        self.send(server, request).await?;
        rooms.record_outside_membership(&leave, object, &[])
    }
}
