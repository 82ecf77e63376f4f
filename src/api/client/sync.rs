//! `GET /sync` (v3): the rooms a user is in, invited to and has left, their timelines and
//! state, and account data — all of it on the first sync, what changed since the token after.
//!
//! A sync token `s<N>` is a position of the server-wide stream. What changed since it is read
//! from the stream's indexes (`stream_rooms`, `account_data_changes`), so an incremental sync
//! costs what changed, not the number of rooms. A long poll waits on the user's wake-up, which
//! it subscribes to before reading, so a write landing in between is never slept through.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response as AxumResponse};
use ruma::api::client::filter::{FilterDefinition, RoomEventFilter};
use ruma::api::client::sync::sync_events::UnreadNotificationsCount;
use ruma::api::client::sync::sync_events::v3::{
    Filter, InviteState, InvitedRoom, JoinedRoom, KnockedRoom, LeftRoom, Request, Response, Timeline,
};
use ruma::api::{OutgoingResponse, OutgoingResponseExt};
use ruma::events::room::member::MembershipState;
use ruma::events::{AnySyncEphemeralRoomEvent, StateEventType, TimelineEventType};
use ruma::presence::PresenceState;
use ruma::serde::Raw;
use ruma::{DeviceId, OwnedRoomId, RoomId, UInt, UserId};
use serde_json::{Value, json};

use super::message_pagination::{Page, filter_allows, latest_events, token};
use super::rooms::raw;
use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::service::Services;
use crate::service::push::PUSH_RULES;
use crate::service::rooms::MembershipRecord;
use crate::service::rooms::receipts::ReceiptEvent;
use crate::service::rooms::state::StateLookup;
use crate::service::rooms::visibility::ClientEvent;
use crate::service::stream::NUDGE_DELAY;

/// The longest a sync long-polls, whatever the client asks.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// Timeline events per room when the filter sets no limit.
const DEFAULT_TIMELINE_LIMIT: usize = 10;

/// Parses a sync token (`s<position>`), refusing one the stream has not reached.
pub fn parse_since(since: &str, visible: u64) -> Result<u64> {
    let position = since
        .strip_prefix('s')
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| Error::invalid_param(format!("Invalid sync token: {since}")))?;
    if position > visible {
        return Err(Error::invalid_param(format!("Unknown sync token: {since}")));
    }
    Ok(position)
}

/// Who is syncing, and how.
struct SyncContext<'a> {
    services: &'a Services,
    user: &'a UserId,
    device: &'a DeviceId,
    since: Option<u64>,
    visible: u64,
    full_state: bool,
    filter: &'a FilterDefinition,
}

/// `GET /_matrix/client/v3/sync`
pub async fn sync_events(State(services): State<Arc<Services>>, req: Ruma<Request>) -> Result<SyncResponse> {
    let session = req.session()?;
    let request = &req.body;
    let filter = match &request.filter {
        Some(Filter::FilterDefinition(definition)) => definition.clone(),
        Some(Filter::FilterId(id)) => services
            .filters
            .get(&session.user_id, id)?
            .ok_or_else(|| Error::invalid_param(format!("Unknown filter {id}")))?,
        _ => FilterDefinition::default(),
    };
    set_presence(&services, &session.user_id, &request.set_presence).await?;
    let stream = services.rooms.stream();
    let since = match &request.since {
        Some(since) => Some(parse_since(since, stream.visible())?),
        None => None,
    };
    let at_once = since.is_none() || request.full_state;
    long_poll(&services, &session.user_id, request.timeout, at_once, |visible| {
        let context = SyncContext {
            services: &services,
            user: &session.user_id,
            device: &session.device_id,
            since,
            visible,
            full_state: request.full_state,
            filter: &filter,
        };
        build(&context)
    })
    .await
}

/// A `/sync` answer in which every room object carries each sub-object of its section with an
/// `events` array, empty when there is nothing, as Synapse sends them: ruma leaves empty ones
/// out, and clients that validate against the spec's schema reject a room without them. The
/// joined and left rooms' timelines and state are kept as events beside ruma's response and
/// written straight into the answer.
pub struct SyncResponse {
    response: Response,
    events: BTreeMap<OwnedRoomId, RoomEvents>,
}

/// A joined or left room's timeline and state events, and a joined room's receipts.
#[derive(Default)]
struct RoomEvents {
    timeline: Vec<ClientEvent>,
    state: Vec<ClientEvent>,
    receipts: Option<ReceiptEvent>,
}

/// Writes events as a JSON array, each without its room ID (the room's key in the answer says
/// it).
fn write_events(out: &mut Vec<u8>, events: &[ClientEvent]) -> Result<()> {
    out.push(b'[');
    for (index, event) in events.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        event.write_without_room_id(out)?;
    }
    out.push(b']');
    Ok(())
}

impl IntoResponse for SyncResponse {
    fn into_response(self) -> AxumResponse {
        json_answer(serialize_sync(self))
    }
}

/// An answer written by hand: its JSON, or the error that stopped it.
pub(super) fn json_answer(body: Result<Vec<u8>>) -> AxumResponse {
    match body {
        Ok(body) => ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(error) => error.into_response(),
    }
}

/// A ruma response's JSON body, to write more of by hand.
pub(super) fn ruma_json(response: impl OutgoingResponse) -> Result<Vec<u8>> {
    Ok(response
        .try_into_http_response::<Vec<u8>>()
        .map_err(|error| Error::Internal(format!("response serialization: {error}")))?
        .into_body())
}

/// A sync answer's JSON: ruma serializes all but the rooms; each room is ruma's serialization
/// with its events and the sub-objects ruma leaves out written after its own members.
/// Everything is written into the one buffer of the answer, each event straight from its
/// parsed form, so no event is copied or parsed back.
fn serialize_sync(sync: SyncResponse) -> Result<Vec<u8>> {
    let SyncResponse { mut response, mut events } = sync;
    let rooms = std::mem::take(&mut response.rooms);
    let mut out = ruma_json(response)?;
    if rooms.is_empty() {
        return Ok(out);
    }
    reopen_object(&mut out);
    member(&mut out, "rooms")?;
    out.push(b'{');
    write_section(&mut out, "join", rooms.join, |out, room_id, mut room| {
        let timeline = std::mem::take(&mut room.timeline);
        let typing = std::mem::take(&mut room.ephemeral.events);
        let mut room_events = events.remove(room_id).unwrap_or_default();
        let receipts = room_events.receipts.take();
        let lists = [("account_data", room.account_data.events.is_empty())];
        write_with_sections(out, &room, timeline, room_events, &lists)?;
        write_ephemeral(out, &typing, receipts.as_ref())
    })?;
    write_section(&mut out, "leave", rooms.leave, |out, room_id, mut room| {
        let timeline = std::mem::take(&mut room.timeline);
        let lists = [("account_data", room.account_data.events.is_empty())];
        write_with_sections(out, &room, timeline, events.remove(room_id).unwrap_or_default(), &lists)
    })?;
    write_section(&mut out, "invite", rooms.invite, |out, _, room| {
        write_with_empty_lists(out, &room, &[("invite_state", room.invite_state.is_empty())])
    })?;
    write_section(&mut out, "knock", rooms.knock, |out, _, room| {
        write_with_empty_lists(out, &room, &[("knock_state", room.knock_state.is_empty())])
    })?;
    out.extend_from_slice(b"}}");
    Ok(out)
}

/// One section's rooms (none: no section), as an object by room ID, each written by
/// `write_room`.
fn write_section<R>(
    out: &mut Vec<u8>,
    name: &str,
    rooms: BTreeMap<OwnedRoomId, R>,
    mut write_room: impl FnMut(&mut Vec<u8>, &RoomId, R) -> Result<()>,
) -> Result<()> {
    if rooms.is_empty() {
        return Ok(());
    }
    member(out, name)?;
    out.push(b'{');
    for (room_id, room) in rooms {
        member(out, room_id.as_str())?;
        write_room(out, &room_id, room)?;
        out.push(b'}');
    }
    out.push(b'}');
    Ok(())
}

/// An invited or knocked room: ruma's members, then the event lists of `lists` (name, whether
/// empty) that ruma leaves out. The room's object is left open.
fn write_with_empty_lists(out: &mut Vec<u8>, room: &impl serde::Serialize, lists: &[(&str, bool)]) -> Result<()> {
    write_object(out, room)?;
    write_empty_lists(out, lists)
}

/// A joined or left room: ruma's members (its timeline's and state's events are in `events`,
/// so it leaves those out), then the timeline and state written whole (a timeline's `events`
/// and `limited` always there: ruma leaves out an empty list and `false`), and the event lists
/// of `lists` (name, whether empty) when ruma leaves them out. The room's object is left open.
fn write_with_sections(
    out: &mut Vec<u8>,
    room: &impl serde::Serialize,
    timeline: Timeline,
    events: RoomEvents,
    lists: &[(&'static str, bool)],
) -> Result<()> {
    write_object(out, room)?;
    member(out, "timeline")?;
    out.extend_from_slice(br#"{"events":"#);
    write_events(out, &events.timeline)?;
    out.extend_from_slice(br#","limited":"#);
    serde_json::to_writer(&mut *out, &timeline.limited)?;
    if let Some(prev_batch) = &timeline.prev_batch {
        member(out, "prev_batch")?;
        serde_json::to_writer(&mut *out, prev_batch)?;
    }
    out.extend_from_slice(br#"},"state":{"events":"#);
    write_events(out, &events.state)?;
    out.push(b'}');
    write_empty_lists(out, lists)
}

/// A joined room's `ephemeral` member: its typing event (ruma's) and its receipts (written by
/// hand), the room's object left open.
fn write_ephemeral(out: &mut Vec<u8>, typing: &[Raw<AnySyncEphemeralRoomEvent>], receipts: Option<&ReceiptEvent>) -> Result<()> {
    member(out, "ephemeral")?;
    out.extend_from_slice(br#"{"events":["#);
    let typing = typing.iter().map(|event| event.json().get().as_bytes());
    for (index, event) in typing.chain(receipts.map(ReceiptEvent::json)).enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(event);
    }
    out.extend_from_slice(b"]}");
    Ok(())
}

/// Sub-objects with an empty event list, for those of `lists` (name, whether empty) that are.
fn write_empty_lists(out: &mut Vec<u8>, lists: &[(&str, bool)]) -> Result<()> {
    for (name, _) in lists.iter().filter(|(_, empty)| *empty) {
        member(out, name)?;
        out.extend_from_slice(br#"{"events":[]}"#);
    }
    Ok(())
}

/// `value`'s JSON object, left open for more members.
pub(super) fn write_object(out: &mut Vec<u8>, value: &impl serde::Serialize) -> Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    reopen_object(out);
    Ok(())
}

/// Takes the closing brace off the JSON object at the end of `out`.
pub(super) fn reopen_object(out: &mut Vec<u8>) {
    if out.last() == Some(&b'}') {
        out.pop();
    }
}

/// Starts a member of the object being written: a comma unless it is the first, its name.
pub(super) fn member(out: &mut Vec<u8>, name: &str) -> Result<()> {
    if out.last() != Some(&b'{') {
        out.push(b',');
    }
    serde_json::to_writer(&mut *out, name)?;
    out.push(b':');
    Ok(())
}

/// Applies a sync's `set_presence` (`offline`, the default, changes nothing). A change is
/// visible to the sync that made it: with processes sharing a database, it waits to hear its
/// completion back, or the sync would answer below it and the next one return at once for it.
pub async fn set_presence(services: &Services, user: &UserId, presence: &PresenceState) -> Result<()> {
    if *presence != PresenceState::Offline && services.set_presence(user, presence.as_str(), None)? {
        services.rooms.stream().heard_back().await;
    }
    Ok(())
}

/// A long poll: builds a response for the visible stream position until it carries something
/// new (`true`), `at_once` says not to wait, the timeout (at most [`MAX_TIMEOUT`]) has passed,
/// or the server shuts down. Between builds it waits on the user's wake-ups, subscribed before
/// each build, so a write landing in between is never slept through; a nudge (a write that is
/// no hurry) is answered [`NUDGE_DELAY`] later, with what else came meanwhile. A user already
/// holding `limits.max_long_polls_per_user` syncs gets `M_LIMIT_EXCEEDED` instead of one more
/// wait.
pub async fn long_poll<R>(
    services: &Services,
    user: &UserId,
    timeout: Option<Duration>,
    at_once: bool,
    mut build: impl FnMut(u64) -> Result<(R, bool)>,
) -> Result<R> {
    let stream = services.rooms.stream();
    let deadline = tokio::time::Instant::now() + timeout.unwrap_or_default().min(MAX_TIMEOUT);
    let waker = stream.waker(user);
    let mut waiting = None;
    loop {
        let (woken, nudged) = (waker.now.notified(), waker.soon.notified());
        tokio::pin!(woken, nudged);
        woken.as_mut().enable();
        nudged.as_mut().enable();
        let (response, changed) = build(stream.visible())?;
        if changed || at_once || tokio::time::Instant::now() >= deadline || stream.is_shutting_down() {
            return Ok(response);
        }
        if waiting.is_none() {
            let Some(counted) = waker.long_poll(services.config.limits.max_long_polls_per_user) else {
                return Err(Error::LimitExceeded { retry_after_ms: 1000 });
            };
            waiting = Some((counted, services.metrics.long_poll()));
        }
        tokio::select! {
            _ = tokio::time::timeout_at(deadline, &mut woken) => {}
            () = &mut nudged => {
                // No hurry: let more of the same come (or something that is a hurry).
                let gathered = deadline.min(tokio::time::Instant::now() + NUDGE_DELAY);
                let _ = tokio::time::timeout_at(gathered, woken).await;
            }
        }
    }
}

/// One sync response; `true` when it carries anything new.
fn build(context: &SyncContext<'_>) -> Result<(SyncResponse, bool)> {
    let services = context.services;
    let mut response = Response::new(format!("s{}", context.visible));
    let mut events = BTreeMap::new();
    let mut changed = false;

    // The user's membership in each room to answer for: on a first sync all of them, read at
    // once; after, those of the rooms that changed.
    let allowed = |room_id: &RoomId| room_allowed(&context.filter.room.rooms, &context.filter.room.not_rooms, room_id);
    let rooms: Vec<(OwnedRoomId, MembershipRecord)> = match context.since {
        None => services
            .rooms
            .memberships_of(context.user)?
            .into_iter()
            .filter(|(room_id, _)| allowed(room_id))
            .collect(),
        Some(since) => {
            let mut records = Vec::new();
            for room_id in services.rooms.rooms_changed(since, context.visible)? {
                if allowed(&room_id)
                    && let Some(record) = services.rooms.membership(context.user, &room_id)?
                {
                    records.push((room_id, record));
                }
            }
            records
        }
    };
    for (room_id, record) in rooms {
        if record.forgotten || record.stream > context.visible {
            continue;
        }
        let membership_is_new = context.since.is_none_or(|since| record.stream > since);
        match record.membership {
            MembershipState::Join => {
                if let Some((joined, room_events)) = joined_room(context, &room_id, membership_is_new)? {
                    response.rooms.join.insert(room_id.clone(), joined);
                    events.insert(room_id, room_events);
                    changed = true;
                }
            }
            MembershipState::Invite if membership_is_new => {
                let mut invited = InvitedRoom::new();
                invited.invite_state = InviteState::from(stripped_state(services, &room_id, &record.event_id)?);
                response.rooms.invite.insert(room_id, invited);
                changed = true;
            }
            MembershipState::Knock if membership_is_new => {
                let mut knocked = KnockedRoom::new();
                knocked.knock_state.events = stripped_state(services, &room_id, &record.event_id)?;
                response.rooms.knock.insert(room_id, knocked);
                changed = true;
            }
            MembershipState::Leave | MembershipState::Ban
                if membership_is_new && (context.since.is_some() || context.filter.room.include_leave) =>
            {
                let mut timeline = Vec::new();
                if let Some(stored) = services.rooms.stored_event(&record.event_id)? {
                    timeline.push(services.rooms.client_event(&record.event_id, &stored, None)?);
                }
                response.rooms.leave.insert(room_id.clone(), LeftRoom::new());
                events.insert(
                    room_id,
                    RoomEvents {
                        timeline,
                        ..RoomEvents::default()
                    },
                );
                changed = true;
            }
            _ => {}
        }
    }

    // On a first sync, everyone the user shares a room with; after, whoever changed and may be
    // seen: the cost follows the changes, not the number of rooms.
    let presence_users = match context.since {
        None => services.presence.audience(&services.rooms, context.user)?,
        Some(since) => {
            let mut visible = BTreeSet::new();
            let changed = services.presence.changed(since, context.visible)?;
            let my_rooms: BTreeSet<OwnedRoomId> = match changed.is_empty() {
                true => BTreeSet::new(),
                false => services
                    .rooms
                    .rooms_of_user(context.user, &MembershipState::Join)?
                    .into_iter()
                    .collect(),
            };
            for user in changed {
                if services.presence.visible_to(&services.rooms, &user, context.user, &my_rooms)? {
                    visible.insert(user);
                }
            }
            visible
        }
    };
    for user in presence_users {
        let Some(record) = services.presence.get(&user)? else { continue };
        if context.since.is_some_and(|since| record.stream <= since) || record.stream > context.visible {
            continue;
        }
        let event = json!({ "type": "m.presence", "sender": user, "content": record.content() });
        response.presence.events.push(raw(&event)?);
        changed = true;
    }

    let to_device = services
        .to_device
        .take(context.user, context.device, context.since, context.visible)?;
    if !to_device.is_empty() {
        response.to_device.events = to_device.iter().map(raw).collect::<Result<_>>()?;
        changed = true;
    }

    // Encryption: whose devices to fetch again, and the device's own key stock (always sent,
    // so clients know to top up one-time keys and that fallback keys are supported).
    if let Some(since) = context.since {
        let updates = services
            .keys
            .device_list_updates(&services.rooms, context.user, since, context.visible)?;
        if !updates.changed.is_empty() || !updates.left.is_empty() {
            response.device_lists.changed = updates.changed.into_iter().collect();
            response.device_lists.left = updates.left.into_iter().collect();
            changed = true;
        }
    }
    response.device_one_time_keys_count = services.keys.one_time_key_counts(context.user, context.device)?;
    response.device_unused_fallback_key_types = Some(services.keys.unused_fallback_key_types(context.user, context.device)?);

    // Clients read the push rules from account data: the defaults until the user changes them.
    if context.since.is_none() && services.account_data.get(context.user, None, PUSH_RULES)?.is_none() {
        let rules = services.push.rules(context.user)?;
        response
            .account_data
            .events
            .push(raw(&json!({ "type": PUSH_RULES, "content": { "global": &*rules } }))?);
    }
    for entry in services.account_data.changed(context.user, context.since, context.visible)? {
        let event = json!({ "type": entry.event_type, "content": serde_json::from_str::<Value>(entry.content.get())? });
        changed = true;
        match entry.room_id {
            None => response.account_data.events.push(raw(&event)?),
            Some(room_id) => {
                let in_room = services
                    .rooms
                    .membership(context.user, &room_id)?
                    .is_some_and(|record| record.membership == MembershipState::Join && !record.forgotten);
                if in_room {
                    response
                        .rooms
                        .join
                        .entry(room_id)
                        .or_default()
                        .account_data
                        .events
                        .push(raw(&event)?);
                }
            }
        }
    }
    Ok((SyncResponse { response, events }, changed))
}

fn room_allowed(rooms: &Option<Vec<OwnedRoomId>>, not_rooms: &[OwnedRoomId], room_id: &RoomId) -> bool {
    rooms.as_ref().is_none_or(|rooms| rooms.iter().any(|r| r == room_id)) && !not_rooms.iter().any(|r| r == room_id)
}

/// A joined room's section: the timeline since the token (or its end), the state before the
/// timeline when it is the first sync of the room or the timeline was cut, and the summary.
fn joined_room(context: &SyncContext<'_>, room_id: &RoomId, newly_joined: bool) -> Result<Option<(JoinedRoom, RoomEvents)>> {
    let services = context.services;
    let timeline_filter: &RoomEventFilter = &context.filter.room.timeline;
    let limit = timeline_filter
        .limit
        .map_or(DEFAULT_TIMELINE_LIMIT, |l| u64::from(l) as usize)
        .clamp(1, 100);
    let since = if newly_joined { None } else { context.since };
    let page = latest_events(
        services,
        room_id,
        (context.user, context.device),
        context.visible,
        since,
        limit,
        timeline_filter,
    )?;
    let Page { events, next } = page;
    let cut = next.is_some();
    let receipts = services.rooms.receipt_event(room_id, context.user, since, context.visible)?;
    let mut ephemeral = Vec::new();
    if let Some(typing) = services.typing.typing_since(room_id, since, context.visible) {
        ephemeral.push(raw(&json!({ "type": "m.typing", "content": { "user_ids": typing } }))?);
    }
    if since.is_some() && events.is_empty() && ephemeral.is_empty() && receipts.is_none() && !context.full_state {
        return Ok(None);
    }
    let mut joined = JoinedRoom::new();
    joined.ephemeral.events = ephemeral;
    joined.timeline.limited = cut;
    let timeline_start = events.first().map_or(context.visible + 1, |(position, _)| *position);
    joined.timeline.prev_batch = Some(token(timeline_start));

    // The state before the timeline: whole on a first sync, full_state or a fresh join; the
    // changes since the token when the timeline was cut; nothing otherwise.
    let state_at_start = match &next {
        // The state after the event just before the timeline, which the page read.
        Some((_, preceding)) => services.rooms.state_ref_after(preceding)?,
        None => services.rooms.state_ref_at_position(room_id, timeline_start)?,
    };
    let state_filter = &context.filter.room.state;
    let lazy_members = !state_filter.lazy_load_options.is_disabled();
    let mut state: Vec<(u64, u64)> = Vec::new();
    if since.is_none() || context.full_state || cut {
        let whole = services.rooms.states.load_ref(state_at_start)?;
        let at_since = match since {
            Some(since) if !context.full_state => Some(services.rooms.state_at_position(room_id, since + 1)?),
            _ => None,
        };
        state = whole
            .iter()
            .filter(|(key, event)| at_since.as_ref().is_none_or(|at_since| at_since.get(key) != Some(event)))
            .map(|(key, event)| (*key, *event))
            .collect();
    }
    // Lazy-loaded members: only those who speak in the timeline (and the user), always sent
    // with it, even when the client may have them already. The others are left out by their
    // state keys, before any event is read: a big room's members are most of its state.
    let senders: BTreeSet<&str> = events
        .iter()
        .map(|(_, event)| event.pdu().sender.as_str())
        .chain([context.user.as_str()])
        .collect();
    if lazy_members {
        let mut needed = Vec::with_capacity(state.len());
        for (key, event) in state {
            let (kind, state_key) = services.rooms.states.state_key(key)?;
            if kind != StateEventType::RoomMember || senders.contains(state_key.as_str()) {
                needed.push((key, event));
            }
        }
        state = needed;
        for sender in &senders {
            if let Some(key) = services.rooms.states.short_state_key(&StateEventType::RoomMember, sender, false)?
                && let Some(event) = state_at_start.event_at(&services.rooms.states, key)?
            {
                state.push((key, event));
            }
        }
        state.sort_unstable();
        state.dedup();
    }
    let mut state_events = Vec::with_capacity(state.len());
    let event_ids = state
        .iter()
        .map(|(_, short_event)| services.rooms.states.event_id(*short_event))
        .collect::<Result<Vec<_>>>()?;
    for served in services.rooms.served_events(&event_ids)?.into_iter().flatten() {
        let event = services.rooms.served_client_event(served.pdu, &served.meta, None)?;
        if filter_allows(state_filter, &event) {
            state_events.push(event);
        }
    }
    // The summary goes out when it may have changed: a first sync of the room, full state, a
    // timeline that was cut or filtered, or a membership change in it.
    let membership_changed = events.iter().any(|(_, event)| event.pdu().kind == TimelineEventType::RoomMember);
    let filtered = timeline_filter.types.is_some() || !timeline_filter.not_types.is_empty();
    if since.is_none() || context.full_state || cut || filtered || membership_changed {
        summarize(services, room_id, context.user, &mut joined)?;
    }
    // Thread-aware clients get each thread's counts apart from the main timeline's.
    let unread = services.push.unread(&services.rooms, context.user, room_id)?;
    let room_counts = if timeline_filter.unread_thread_notifications {
        for (root, counts) in &unread.threads {
            let mut thread = UnreadNotificationsCount::new();
            thread.notification_count = UInt::new(counts.notifications);
            thread.highlight_count = UInt::new(counts.highlights);
            joined.unread_thread_notifications.insert(root.clone(), thread);
        }
        unread.main
    } else {
        unread.total()
    };
    joined.unread_notifications.notification_count = UInt::new(room_counts.notifications);
    joined.unread_notifications.highlight_count = UInt::new(room_counts.highlights);
    let room_events = RoomEvents {
        timeline: events.into_iter().map(|(_, event)| event).collect(),
        state: state_events,
        receipts,
    };
    Ok(Some((joined, room_events)))
}

/// The room summary: up to five other members as heroes, and the member counts.
fn summarize(services: &Services, room_id: &RoomId, user: &UserId, joined: &mut JoinedRoom) -> Result<()> {
    let (mut join_count, mut invite_count) = (0u64, 0u64);
    for (member, membership) in services.rooms.members(room_id)?.iter() {
        match membership {
            MembershipState::Join => join_count += 1,
            MembershipState::Invite => invite_count += 1,
            _ => continue,
        }
        if member != user && joined.summary.heroes.len() < 5 {
            joined.summary.heroes.push(member.clone());
        }
    }
    joined.summary.joined_member_count = UInt::new(join_count);
    joined.summary.invited_member_count = UInt::new(invite_count);
    Ok(())
}

/// The stripped state an invitee or knocker sees: the room's name, rules and avatar, and the
/// membership event itself.
pub fn stripped_state<T>(services: &Services, room_id: &RoomId, membership_event: &ruma::EventId) -> Result<Vec<ruma::serde::Raw<T>>> {
    services.rooms.stripped_state(room_id, membership_event)?.iter().map(raw).collect()
}
