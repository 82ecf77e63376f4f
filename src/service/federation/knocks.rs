//! Knocks across servers: a local user asking to join a room of other servers (`make_knock`,
//! then `send_knock`, whose answer is the room's stripped state, kept for the knocker's sync),
//! and `send_knock` served for other servers' users.

use ruma::api::federation::membership::{RawStrippedState, create_knock_event, prepare_knock_event};
use ruma::events::room::member::MembershipState;
use ruma::{EventId, OwnedServerName, RoomId, ServerName, UserId};
use serde_json::value::RawValue as RawJsonValue;
use serde_json::{Value, json};

use super::Federation;
use super::membership::{raw, supported_versions};
use crate::error::Result;
use crate::service::rooms::Rooms;

impl Federation {
    /// Knocks on a room of other servers for `user`, through the first of `servers` that takes
    /// the knock.
    pub async fn knock_remote(
        &self,
        rooms: &Rooms,
        room_id: &RoomId,
        user: &UserId,
        servers: &[OwnedServerName],
        reason: Option<&str>,
    ) -> Result<()> {
        self.through_first(servers, "knocking", |server| {
            self.knock_through(rooms, room_id, user, server, reason)
        })
        .await
    }

    async fn knock_through(&self, rooms: &Rooms, room_id: &RoomId, user: &UserId, server: &ServerName, reason: Option<&str>) -> Result<()> {
        let mut request = prepare_knock_event::v1::Request::new(room_id.to_owned(), user.to_owned());
        request.ver = supported_versions();
        let template = self.send(server, request).await?;
        let content = rooms.member_content(user, &MembershipState::Knock, reason)?;
        let (knock, object) = self
            .sign_template(server, &template.room_version, &template.event, user, content)
            .await?;
        let answer = self
            .send(
                server,
                create_knock_event::v1::Request::new(room_id.to_owned(), knock.event_id.clone(), raw(&object)?),
            )
            .await?;
        let stripped: Vec<Value> = answer.knock_room_state.iter().filter_map(stripped_state_event).collect();
        rooms.record_outside_membership(&knock, object, &stripped)
    }

    /// `send_knock` served: takes another server's user's signed knock; answers with the room's
    /// stripped state.
    pub async fn send_knock(
        &self,
        rooms: &Rooms,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        event: &RawJsonValue,
    ) -> Result<Vec<RawStrippedState>> {
        let (pdu, object) = self
            .receive_membership(rooms, origin, (room_id, event_id), event, &MembershipState::Knock)
            .await?;
        self.append_membership(rooms, origin, &pdu, object).await?;
        rooms
            .stripped_state_pdus(room_id)?
            .iter()
            .map(|pdu| raw(pdu).map(RawStrippedState::Pdu))
            .collect()
    }
}

/// A stripped state event as another server sent it (a full PDU since Matrix 1.16, stripped
/// before), in stripped form.
#[allow(deprecated)] // servers before Matrix 1.16 still send the stripped form
pub fn stripped_state_event(state: &RawStrippedState) -> Option<Value> {
    match state {
        RawStrippedState::Pdu(pdu) => {
            let value: Value = serde_json::from_str(pdu.get()).ok()?;
            Some(json!({ "type": value["type"], "state_key": value["state_key"], "content": value["content"], "sender": value["sender"] }))
        }
        RawStrippedState::Stripped(event) => serde_json::from_str(event.json().get()).ok(),
        _ => None,
    }
}
