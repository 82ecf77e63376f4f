//! Filling what a PDU from another server needs and this server lacks, from the server that
//! sent it, always bounded in count: its unknown auth events (with `/event`, and their own auth
//! events in turn), the events between the room's forward extremities and the PDU
//! (`get_missing_events`), and, where that gap is wider than one answer, the state at the far
//! end of it (`/state_ids`, then `/event` for what is unknown here), so the events after the gap
//! can be checked, shown and their state resolved with the room's. Events learned this way are
//! stored as outliers, each only when the events its `auth_events` name authorize it.

use std::collections::{HashMap, HashSet};

use ruma::api::federation::event::{get_event, get_missing_events, get_room_state_ids};
use ruma::canonical_json::CanonicalJsonObject;
use ruma::events::{StateEventType, TimelineEventType};
use ruma::room_version_rules::RoomVersionRules;
use ruma::{EventId, OwnedEventId, RoomId, RoomVersionId, ServerName};

use super::Federation;
use crate::error::{Error, Result};
use crate::service::rooms::pdu::Pdu;
use crate::service::rooms::remote::Intake;
use crate::service::rooms::{Rooms, rules};

/// The most missing events asked for to fill one gap.
const MAX_MISSING_EVENTS: u32 = 20;
/// The most events fetched one by one for one PDU (its auth events, or the state at a gap).
const MAX_FETCHED_EVENTS: usize = 10_000;
/// How many `/event` requests are in flight at once.
const CONCURRENT_FETCHES: usize = 16;
/// The most gaps one PDU may need the state of (one per missing previous event).
const MAX_GAPS: usize = 3;

/// Checks an event against the events its `auth_events` name (and, from room version 12, the
/// room's create event, which they leave out), as `lookup` finds them.
pub fn check_by_auth_events(rules: &RoomVersionRules, pdu: &Pdu, lookup: impl Fn(&EventId) -> Option<Pdu>) -> Result<(), String> {
    let mut auth_events: Vec<Pdu> = pdu.auth_events.iter().filter_map(|id| lookup(id)).collect();
    if rules.authorization.room_create_event_id_as_room_id
        && pdu.kind != TimelineEventType::RoomCreate
        && let Ok(create) = EventId::parse(format!("${}", &pdu.room_id.as_str()[1..]))
        && let Some(create) = lookup(&create)
    {
        auth_events.push(create);
    }
    let auth_state: HashMap<(StateEventType, String), Pdu> = auth_events
        .into_iter()
        .filter_map(|auth| {
            Some((
                (StateEventType::from(auth.kind.to_string().as_str()), auth.state_key.clone()?),
                auth,
            ))
        })
        .collect();
    ruma::state_res::check_state_independent_auth_rules(&rules.authorization, pdu, &lookup)?;
    ruma::state_res::check_state_dependent_auth_rules(&rules.authorization, pdu, |kind: &StateEventType, state_key: &str| {
        auth_state.get(&(kind.clone(), state_key.to_owned())).cloned()
    })
}

impl Federation {
    /// Takes in a checked PDU of a room this server has, fetching from `origin` what it needs
    /// first (see the module doc).
    pub(super) async fn take_in(
        &self,
        rooms: &Rooms,
        origin: &ServerName,
        version: &RoomVersionId,
        pdu: Pdu,
        object: CanonicalJsonObject,
    ) -> Result<Intake> {
        self.fetch_auth_events(rooms, origin, version, &pdu).await;
        match rooms.append_remote(pdu, object, None).await? {
            Intake::MissingPrev(_, event) => {
                let (pdu, object) = *event;
                self.fetch_missing(rooms, origin, version, &pdu.room_id, &pdu.event_id).await;
                self.append_over_gap(rooms, origin, version, pdu, object).await
            }
            outcome => Ok(outcome),
        }
    }

    /// Appends a PDU whose auth events are in; previous events it still lacks are not fetched
    /// but the state at each of them is, and they are stored as outliers with it.
    async fn append_over_gap(
        &self,
        rooms: &Rooms,
        origin: &ServerName,
        version: &RoomVersionId,
        pdu: Pdu,
        object: CanonicalJsonObject,
    ) -> Result<Intake> {
        match rooms.append_remote(pdu, object, None).await? {
            Intake::MissingPrev(missing, event) if missing.len() <= MAX_GAPS => {
                for prev in &missing {
                    if let Err(error) = self.fetch_state_at(rooms, origin, version, &event.0.room_id, prev).await {
                        tracing::info!(%origin, %prev, %error, "the state at a gap could not be had");
                    }
                }
                let (pdu, object) = *event;
                rooms.append_remote(pdu, object, None).await
            }
            outcome => Ok(outcome),
        }
    }

    /// Asks `origin` for the events between the room's forward extremities and `latest`, and
    /// takes them in oldest first, each over its own gap if need be. Failures are logged: the
    /// event that needed them then fails or is taken in over the gap.
    async fn fetch_missing(&self, rooms: &Rooms, origin: &ServerName, version: &RoomVersionId, room_id: &RoomId, latest: &EventId) {
        let Ok(record) = rooms.room(room_id) else { return };
        let mut request = get_missing_events::v1::Request::new(room_id.to_owned(), record.extremities, vec![latest.to_owned()]);
        request.limit = MAX_MISSING_EVENTS.into();
        let events = match self.send(origin, request).await {
            Ok(answer) => answer.events,
            Err(error) => {
                tracing::info!(%origin, %room_id, %error, "missing events could not be fetched");
                return;
            }
        };
        let mut checked = Vec::new();
        for event in events.iter().take(MAX_MISSING_EVENTS as usize) {
            let Ok(object) = serde_json::from_str::<CanonicalJsonObject>(event.get()) else {
                continue;
            };
            match self.check_pdu(version, object).await {
                Ok(checked_pdu) if checked_pdu.0.room_id == room_id => checked.push(checked_pdu),
                Ok(_) => tracing::info!(%origin, "a missing event is of another room"),
                Err(error) => tracing::info!(%origin, %error, "a missing event failed its checks"),
            }
        }
        checked.sort_by_key(|(pdu, _)| pdu.depth);
        for (pdu, object) in checked {
            self.fetch_auth_events(rooms, origin, version, &pdu).await;
            if let Err(error) = self.append_over_gap(rooms, origin, version, pdu, object).await {
                tracing::info!(%origin, %error, "a missing event could not be stored");
            }
        }
    }

    /// Fetches the auth events of `pdu` this server lacks, and theirs, and stores those that
    /// are authorized as outliers.
    async fn fetch_auth_events(&self, rooms: &Rooms, origin: &ServerName, version: &RoomVersionId, pdu: &Pdu) {
        let wanted: Vec<OwnedEventId> = pdu
            .auth_events
            .iter()
            .filter(|id| !rooms.has_event(id).unwrap_or(true))
            .cloned()
            .collect();
        if wanted.is_empty() {
            return;
        }
        let fetched = self.fetch_events(rooms, origin, version, &pdu.room_id, wanted).await;
        if let Err(error) = self.store_authorized_outliers(rooms, version, fetched) {
            tracing::info!(%origin, %error, "fetched auth events could not be stored");
        }
    }

    /// Fetches the state before `event_id` (a previous event beyond a gap) from `origin` with
    /// the event itself, stores what is authorized, and the event as an outlier with that
    /// state, so events after it can be checked against it.
    async fn fetch_state_at(
        &self,
        rooms: &Rooms,
        origin: &ServerName,
        version: &RoomVersionId,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<()> {
        let answer = self
            .send(
                origin,
                get_room_state_ids::v1::Request::new(event_id.to_owned(), room_id.to_owned()),
            )
            .await?;
        if answer.pdu_ids.len() + answer.auth_chain_ids.len() > MAX_FETCHED_EVENTS {
            return Err(Error::bad_gateway(format!("{origin} answered /state_ids with too many events")));
        }
        let mut wanted: Vec<OwnedEventId> = answer.pdu_ids.iter().chain(&answer.auth_chain_ids).cloned().collect();
        wanted.push(event_id.to_owned());
        wanted.retain(|id| !rooms.has_event(id).unwrap_or(true));
        let mut fetched = self.fetch_events(rooms, origin, version, room_id, wanted).await;
        let position = fetched
            .iter()
            .position(|(pdu, _)| pdu.event_id == event_id)
            .ok_or_else(|| Error::bad_gateway(format!("{origin} did not give the event {event_id}")))?;
        let event = fetched.swap_remove(position);
        self.store_authorized_outliers(rooms, version, fetched)?;
        rooms.store_with_state(event, &answer.pdu_ids).await
    }

    /// Fetches events of a room from `origin` with `/event`, a few at a time, and the auth
    /// events they name that this server lacks, up to [`MAX_FETCHED_EVENTS`]; each is checked
    /// as any PDU. Those that cannot be had are left out.
    async fn fetch_events(
        &self,
        rooms: &Rooms,
        origin: &ServerName,
        version: &RoomVersionId,
        room_id: &RoomId,
        mut wanted: Vec<OwnedEventId>,
    ) -> Vec<(Pdu, CanonicalJsonObject)> {
        let mut seen: HashSet<OwnedEventId> = wanted.iter().cloned().collect();
        let mut fetched = Vec::new();
        while !wanted.is_empty() && fetched.len() < MAX_FETCHED_EVENTS {
            let round: Vec<OwnedEventId> = wanted.drain(..wanted.len().min(CONCURRENT_FETCHES)).collect();
            let answers = futures_util::future::join_all(round.iter().map(|id| self.fetch_event(origin, version, room_id, id))).await;
            for answer in answers {
                let (pdu, object) = match answer {
                    Ok(event) => event,
                    Err(error) => {
                        tracing::info!(%origin, %error, "an event could not be fetched");
                        continue;
                    }
                };
                for auth in &pdu.auth_events {
                    if !rooms.has_event(auth).unwrap_or(true) && seen.insert(auth.clone()) {
                        wanted.push(auth.clone());
                    }
                }
                fetched.push((pdu, object));
            }
        }
        fetched
    }

    /// One event of a room from `origin`, checked.
    async fn fetch_event(
        &self,
        origin: &ServerName,
        version: &RoomVersionId,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<(Pdu, CanonicalJsonObject)> {
        let answer = self.send(origin, get_event::v1::Request::new(event_id.to_owned())).await?;
        let object = serde_json::from_str::<CanonicalJsonObject>(answer.pdu.get())
            .map_err(|e| Error::bad_gateway(format!("{origin} gave an event that is not canonical JSON: {e}")))?;
        let (pdu, object) = self.check_pdu(version, object).await?;
        if pdu.event_id != event_id || pdu.room_id != room_id {
            return Err(Error::bad_gateway(format!("{origin} answered {event_id} with another event")));
        }
        Ok((pdu, object))
    }

    /// Stores fetched events as outliers, oldest first, each only when the events its
    /// `auth_events` name (stored, or stored just before it) authorize it.
    fn store_authorized_outliers(&self, rooms: &Rooms, version: &RoomVersionId, mut events: Vec<(Pdu, CanonicalJsonObject)>) -> Result<()> {
        let rules = rules(version)?;
        events.sort_by_key(|(pdu, _)| pdu.depth);
        let mut authorized: HashMap<OwnedEventId, Pdu> = HashMap::new();
        let mut accepted = Vec::new();
        for (pdu, object) in events {
            let lookup = |id: &EventId| authorized.get(id).cloned().or_else(|| rooms.pdu(id).ok().flatten());
            match check_by_auth_events(&rules, &pdu, lookup) {
                Ok(()) => {
                    authorized.insert(pdu.event_id.clone(), pdu.clone());
                    accepted.push((pdu, object));
                }
                Err(reason) => tracing::info!(event_id = %pdu.event_id, %reason, "a fetched event is not authorized"),
            }
        }
        let mut batch = self.store.batch();
        rooms.store_outliers(&mut batch, &accepted)?;
        batch.commit()?;
        Ok(())
    }
}
