//! Joins across servers, both ways.
//!
//! A local user joining a room of other servers: `make_join` on a resident server gives the
//! event's template, this server fills in the profile, hashes and signs it, and `send_join`
//! returns the room's state and auth chain, every event of which is checked (signatures,
//! hashes, authorization by its own auth events) before the room is stored here.
//! Another server's user joining a room here: `make_join` builds the template on the room's
//! forward extremities when the room's rules let the user in, and `send_join` takes the signed
//! event through the same intake as any remote event, sends it on to the other servers in the
//! room, and answers with the state before it and its auth chain.

use std::collections::HashMap;

use ruma::api::federation::membership::create_join_event;
use ruma::api::federation::membership::prepare_join_event;
use ruma::canonical_json::{CanonicalJsonObject, CanonicalJsonValue};
use ruma::events::TimelineEventType;
use ruma::events::room::member::MembershipState;
use ruma::{EventId, OwnedEventId, OwnedServerName, RoomId, RoomVersionId, ServerName, UserId};
use serde_json::Value;
use serde_json::value::RawValue as RawJsonValue;

use super::Federation;
use super::gaps::check_by_auth_events;
use super::pdu::parse_signed_here;
use crate::error::{Error, Result};
use crate::service::rooms::pdu::Pdu;
use crate::service::rooms::remote::Intake;
use crate::service::rooms::{Rooms, rules};

/// The most events a `send_join` answer may carry (state and auth chain together).
const MAX_JOIN_EVENTS: usize = 100_000;

/// Every room version this server can join and serve.
pub fn supported_versions() -> Vec<RoomVersionId> {
    ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"]
        .into_iter()
        .filter_map(|version| RoomVersionId::try_from(version).ok())
        .collect()
}

/// Parses raw events into canonical JSON objects.
fn objects(events: &[Box<RawJsonValue>]) -> Result<Vec<CanonicalJsonObject>> {
    events
        .iter()
        .map(|event| serde_json::from_str(event.get()).map_err(|e| Error::bad_gateway(format!("an event is not canonical JSON: {e}"))))
        .collect()
}

/// A canonical JSON object as raw JSON, to send.
pub fn raw(object: &CanonicalJsonObject) -> Result<Box<RawJsonValue>> {
    serde_json::value::to_raw_value(object).map_err(|e| Error::Internal(e.to_string()))
}

impl Federation {
    /// Joins `user` to a room: here when this server has the room, else through the first of
    /// `servers` that lets them in (then the inviting server, and the server in the room's ID
    /// for room versions that have one).
    pub async fn join(
        &self,
        rooms: &Rooms,
        room_id: &RoomId,
        user: &UserId,
        servers: &[OwnedServerName],
        reason: Option<&str>,
    ) -> Result<()> {
        if rooms.room(room_id).is_ok() {
            rooms.join(room_id, user, reason).await?;
            return Ok(());
        }
        let mut candidates = servers.to_vec();
        if let Some(invite) = rooms.outside_invite(user, room_id)? {
            candidates.push(invite.sender.server_name().to_owned());
        }
        if let Some(server) = room_id.server_name() {
            candidates.push(server.to_owned());
        }
        candidates.dedup();
        if candidates.iter().all(|server| *server == self.server_name) {
            return Err(Error::not_found("This server knows no such room"));
        }
        self.through_first(&candidates, "joining", |server| {
            self.join_through(rooms, room_id, user, server, reason)
        })
        .await
    }

    /// Tries `attempt` with each of `servers` but this one, in order, until one succeeds;
    /// otherwise the last failure (404 when there was no other server to try).
    pub(super) async fn through_first<'a, Attempt>(
        &self,
        servers: &'a [OwnedServerName],
        what: &str,
        attempt: impl Fn(&'a ServerName) -> Attempt,
    ) -> Result<()>
    where
        Attempt: Future<Output = Result<()>>,
    {
        let mut last_error = Error::not_found("No server in the room could be asked");
        for server in servers.iter().filter(|server| **server != self.server_name) {
            match attempt(server).await {
                Ok(()) => return Ok(()),
                Err(error) => {
                    tracing::info!(%server, %error, "{what} through a server failed");
                    last_error = error;
                }
            }
        }
        Err(last_error)
    }

    async fn join_through(&self, rooms: &Rooms, room_id: &RoomId, user: &UserId, server: &ServerName, reason: Option<&str>) -> Result<()> {
        let mut request = prepare_join_event::v1::Request::new(room_id.to_owned(), user.to_owned());
        request.ver = supported_versions();
        let template = self.send(server, request).await?;
        let version = template.room_version.unwrap_or(RoomVersionId::V1);
        let content = rooms.join_content(user, reason)?;
        let (join, join_object) = self.sign_template(server, &version, &template.event, user, content).await?;

        let request = create_join_event::v2::Request::new(room_id.to_owned(), join.event_id.clone(), raw(&join_object)?);
        let answer = self.send(server, request).await?.room_state;
        if answer.state.len() + answer.auth_chain.len() > MAX_JOIN_EVENTS {
            return Err(Error::bad_gateway(format!("{server} answered the join with too many events")));
        }
        // A restricted room's resident server co-signs the join: use its copy.
        let (join, join_object) = match &answer.event {
            Some(signed) => {
                let mut objects = objects(std::slice::from_ref(signed))?;
                let (pdu, object) = self.check_pdu(&version, objects.remove(0)).await?;
                if pdu.event_id != join.event_id {
                    return Err(Error::bad_gateway(format!("{server} answered with another join event")));
                }
                (pdu, object)
            }
            None => (join, join_object),
        };
        let mut state = Vec::new();
        for object in objects(&answer.state)? {
            state.push(self.check_pdu(&version, object).await?);
        }
        let mut auth_chain = Vec::new();
        for object in objects(&answer.auth_chain)? {
            auth_chain.push(self.check_pdu(&version, object).await?);
        }
        let all: Vec<Pdu> = state
            .iter()
            .chain(auth_chain.iter())
            .map(|(pdu, _)| pdu.clone())
            .chain(std::iter::once(join.clone()))
            .collect();
        if all.iter().any(|pdu| pdu.room_id != room_id) {
            return Err(Error::bad_gateway(format!("{server} answered with events of another room")));
        }
        let rules = rules(&version)?;
        let by_id: HashMap<&EventId, &Pdu> = all.iter().map(|pdu| (&*pdu.event_id, pdu)).collect();
        for pdu in &all {
            check_by_auth_events(&rules, pdu, |id| by_id.get(id).map(|pdu| (*pdu).clone()))
                .map_err(|reason| Error::bad_gateway(format!("the room's event {} is not authorized: {reason}", pdu.event_id)))?;
        }
        rooms.store_joined_room(&version, state, auth_chain, (join, join_object)).await
    }

    /// Fills in and signs a membership event that `server` made the template of for `user`
    /// (`make_join`, `make_leave`): `content` is added to the template's.
    pub async fn sign_template(
        &self,
        server: &ServerName,
        version: &RoomVersionId,
        template: &RawJsonValue,
        user: &UserId,
        content: Value,
    ) -> Result<(Pdu, CanonicalJsonObject)> {
        let rules = rules(version).map_err(|_| Error::unsupported_room_version(format!("Room version {version} is not supported")))?;
        let mut event: CanonicalJsonObject =
            serde_json::from_str(template.get()).map_err(|e| Error::bad_gateway(format!("{server}: the membership template: {e}")))?;
        let is_template_for =
            |field: &str, expected: &str| matches!(event.get(field), Some(CanonicalJsonValue::String(v)) if v == expected);
        if !is_template_for("sender", user.as_str())
            || !is_template_for("state_key", user.as_str())
            || !is_template_for("type", "m.room.member")
        {
            return Err(Error::bad_gateway(format!(
                "{server} gave a membership template for something else"
            )));
        }
        let mut merged = match event.remove("content") {
            Some(CanonicalJsonValue::Object(content)) => content,
            _ => CanonicalJsonObject::new(),
        };
        for (field, value) in content.as_object().into_iter().flatten() {
            if let Ok(value) = CanonicalJsonValue::try_from(value.clone()) {
                merged.insert(field.clone(), value);
            }
        }
        event.insert("content".into(), CanonicalJsonValue::Object(merged));
        event.insert("origin".into(), CanonicalJsonValue::String(self.server_name.to_string()));
        event.insert(
            "origin_server_ts".into(),
            CanonicalJsonValue::Integer(ruma::Int::try_from(crate::service::now_ms()).unwrap_or(ruma::Int::MAX)),
        );
        for field in ["hashes", "signatures", "unsigned"] {
            event.remove(field);
        }
        if matches!(rules.event_id_format, ruma::room_version_rules::EventIdFormatVersion::V1) {
            let local = crate::service::random_string(24);
            event.insert(
                "event_id".into(),
                CanonicalJsonValue::String(format!("${local}:{}", self.server_name)),
            );
        } else {
            event.remove("event_id");
        }
        ruma::signatures::hash_and_sign_event(self.server_name.as_str(), self.key.pair(), &mut event, &rules.redaction)
            .map_err(|e| Error::Internal(format!("signing a membership event: {e}")))?;
        parse_signed_here(version, event)
    }

    /// `make_join` and `make_leave` served: the template of `user`'s membership change, for
    /// their server `origin`.
    pub fn make_membership(
        &self,
        rooms: &Rooms,
        origin: &ServerName,
        room_id: &RoomId,
        user: &UserId,
        membership: &MembershipState,
        versions: &[RoomVersionId],
    ) -> Result<(RoomVersionId, Value)> {
        if user.server_name() != origin {
            return Err(Error::forbidden("A server may only change the membership of its own users"));
        }
        let record = rooms.room(room_id)?;
        self.check_acl(rooms, origin, room_id)?;
        let versions = if versions.is_empty() {
            vec![RoomVersionId::V1]
        } else {
            versions.to_vec()
        };
        if *membership != MembershipState::Leave && !versions.contains(&record.version) {
            return Err(Error::incompatible_room_version(record.version.to_string()));
        }
        let template = rooms.remote_member_template(room_id, user, membership)?;
        Ok((record.version, template))
    }

    /// Checks a membership event another server signed for `send_join` or `send_leave`: the
    /// event named in the path, in this room, the origin's user changing their own membership.
    pub(super) async fn receive_membership(
        &self,
        rooms: &Rooms,
        origin: &ServerName,
        (room_id, event_id): (&RoomId, &EventId),
        event: &RawJsonValue,
        membership: &MembershipState,
    ) -> Result<(Pdu, CanonicalJsonObject)> {
        let record = rooms.room(room_id)?;
        self.check_acl(rooms, origin, room_id)?;
        let mut object: CanonicalJsonObject =
            serde_json::from_str(event.get()).map_err(|e| Error::bad_json(format!("The event is not canonical JSON: {e}")))?;
        // A restricted join vouched for by a user of this server carries this server's
        // signature too, which the checks require.
        let vouched = match &object.get("content") {
            Some(CanonicalJsonValue::Object(content)) => match content.get("join_authorised_via_users_server") {
                Some(CanonicalJsonValue::String(user)) => UserId::parse(user).ok(),
                _ => None,
            },
            _ => None,
        };
        if *membership == MembershipState::Join && vouched.is_some_and(|user| user.server_name() == self.server_name) {
            // An event's signatures are over its redacted form.
            let rules = rules(&record.version)?;
            let mut redacted = ruma::canonical_json::redact(object.clone(), &rules.redaction, None)
                .map_err(|e| Error::bad_json(format!("The join cannot be redacted: {e}")))?;
            ruma::signatures::sign_json(self.server_name.as_str(), self.key.pair(), &mut redacted)
                .map_err(|e| Error::Internal(format!("co-signing a join: {e}")))?;
            if let Some(signatures) = redacted.remove("signatures") {
                object.insert("signatures".into(), signatures);
            }
        }
        let (pdu, object) = self.check_pdu(&record.version, object).await?;
        let actual = pdu
            .content_value()
            .get("membership")
            .and_then(Value::as_str)
            .map(MembershipState::from);
        if pdu.event_id != event_id
            || pdu.room_id != room_id
            || pdu.kind != TimelineEventType::RoomMember
            || pdu.state_key.as_deref() != Some(pdu.sender.as_str())
            || actual.as_ref() != Some(membership)
            || pdu.sender.server_name() != origin
        {
            return Err(Error::bad_json(format!(
                "Not a {membership} of the origin server's user to this room"
            )));
        }
        Ok((pdu, object))
    }

    /// Appends a membership event received through `send_join` or `send_leave`, sending it on
    /// to the other servers in the room.
    pub(super) async fn append_membership(&self, rooms: &Rooms, origin: &ServerName, pdu: &Pdu, object: CanonicalJsonObject) -> Result<()> {
        let record = rooms.room(&pdu.room_id)?;
        let others: Vec<OwnedServerName> = record.servers.iter().filter(|server| **server != origin).cloned().collect();
        match rooms.append_remote(pdu.clone(), object, Some(others)).await? {
            Intake::Accepted | Intake::Known => Ok(()),
            Intake::Rejected(reason) | Intake::SoftFailed(reason) => {
                Err(Error::forbidden(format!("The membership change is not allowed: {reason}")))
            }
            Intake::MissingPrev(..) => Err(Error::bad_json("The event follows events this server does not know")),
        }
    }

    /// `send_leave` served: takes another server's user's signed leave.
    pub async fn send_leave(
        &self,
        rooms: &Rooms,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        event: &RawJsonValue,
    ) -> Result<()> {
        let (pdu, object) = self
            .receive_membership(rooms, origin, (room_id, event_id), event, &MembershipState::Leave)
            .await?;
        self.append_membership(rooms, origin, &pdu, object).await
    }

    /// `send_join` served: takes another server's user's signed join; answers with the state
    /// before it, its auth chain and the event as stored.
    pub async fn send_join(
        &self,
        rooms: &Rooms,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        event: &RawJsonValue,
    ) -> Result<create_join_event::v2::RoomState> {
        let (pdu, object) = self
            .receive_membership(rooms, origin, (room_id, event_id), event, &MembershipState::Join)
            .await?;
        self.append_membership(rooms, origin, &pdu, object.clone()).await?;
        let stored = rooms
            .stored_event(&pdu.event_id)?
            .ok_or_else(|| Error::Internal("the join was not stored".into()))?;
        let state = match stored.meta.state_before {
            Some(hash) => rooms.states.load(hash)?,
            None => return Err(Error::Internal("the join has no state before it".into())),
        };
        let mut state_ids: Vec<OwnedEventId> = Vec::new();
        for short_event in state.values() {
            state_ids.push(rooms.states.event_id(*short_event)?);
        }
        let mut chain: Vec<OwnedEventId> = rooms
            .auth_chain(state_ids.iter().cloned().chain(std::iter::once(pdu.event_id.clone())))?
            .into_iter()
            .collect();
        chain.sort();
        let mut room_state = create_join_event::v2::RoomState::new();
        for id in &state_ids {
            if let Some(stored) = rooms.stored_event(id)? {
                room_state.state.push(stored.pdu.to_raw()?);
            }
        }
        for id in &chain {
            if let Some(stored) = rooms.stored_event(id)? {
                room_state.auth_chain.push(stored.pdu.to_raw()?);
            }
        }
        room_state.event = Some(raw(&object)?);
        room_state.servers_in_room = Some(rooms.resident_servers(room_id)?.iter().map(ToString::to_string).collect());
        Ok(room_state)
    }
}
