//! Simplified Sliding Sync (MSC4186, `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync`):
//! the sync Element X and matrix-sdk's room list use.
//!
//! A client asks for windows (`ranges`) of lists of its rooms, sorted by recency (`bump_stamp`:
//! the stream position of the room's latest message-like event), and for rooms it subscribes to
//! by ID. A room new to the connection comes in full (`initial`: name, heroes, counts, the
//! required state and the last `timeline_limit` events); after that only what changed since the
//! connection's `pos`. Extensions carry to-device messages, encryption state, account data,
//! receipts and typing. A request with a `pos` long-polls like /sync v3, on the user's wake-up.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response as AxumResponse};
use ruma::api::client::filter::RoomEventFilter;
use ruma::api::client::sync::sync_events::v5::{Request, Response, request, response};
use ruma::events::StateEventType;
use ruma::events::room::member::MembershipState;
use ruma::{OwnedRoomId, RoomId, UInt, UserId};
use serde_json::{Value, json};

use super::message_pagination::{latest_events, token};
use super::rooms::raw;
use super::sync::{json_answer, long_poll, member, reopen_object, ruma_json, set_presence, stripped_state, write_object};
use crate::api::ruma::Ruma;
use crate::error::Result;
use crate::service::Services;
use crate::service::rooms::BUMP_TYPES;
use crate::service::rooms::receipts::ReceiptEvent;
use crate::service::rooms::state::StateMap;
use crate::service::rooms::visibility::ClientEvent;
use crate::service::sliding_sync::{ConnectionKey, Generation};

/// The most timeline events one room carries.
const MAX_TIMELINE_LIMIT: usize = 100;
/// How many of a room's latest events are looked at for its bump stamp.
const BUMP_LOOKBACK: usize = 20;

/// What the client wants of one room: the list's or subscription's details, merged.
#[derive(Debug, Clone, Default)]
struct RoomConfig {
    required_state: Vec<(StateEventType, String)>,
    timeline_limit: usize,
}

impl RoomConfig {
    fn merge(&mut self, required_state: &[(StateEventType, String)], timeline_limit: UInt) {
        for entry in required_state {
            if !self.required_state.contains(entry) {
                self.required_state.push(entry.clone());
            }
        }
        self.timeline_limit = self
            .timeline_limit
            .max((u64::from(timeline_limit) as usize).min(MAX_TIMELINE_LIMIT));
    }
}

/// A room the user is in or invited to, with what list filters and sorting need.
struct Candidate {
    room_id: OwnedRoomId,
    membership: MembershipState,
    membership_event: ruma::OwnedEventId,
    /// The stream position of the user's membership event.
    membership_stream: u64,
    bump_stamp: u64,
}

/// `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync`
pub async fn sync_events(State(services): State<Arc<Services>>, req: Ruma<Request>) -> Result<Answer> {
    let session = req.session()?;
    let request = &req.body;
    let key: ConnectionKey = (
        session.user_id.clone(),
        session.device_id.clone(),
        request.conn_id.clone().unwrap_or_default(),
    );
    let base = request
        .pos
        .as_deref()
        .map(|pos| services.sliding_sync.generation(&key, pos))
        .transpose()?;
    set_presence(&services, &session.user_id, &request.set_presence).await?;
    // Lists and extensions are sticky: what the request leaves out, the connection remembers.
    let lists = match (&base, request.lists.is_empty()) {
        (Some(base), true) => base.lists.clone(),
        _ => request.lists.clone(),
    };
    let extensions = sticky_extensions(&request.extensions, base.as_ref().map(|base| &base.extensions));
    let (mut answer, generation) = long_poll(&services, &session.user_id, request.timeout, base.is_none(), |visible| {
        let context = Context {
            services: &services,
            user: &session.user_id,
            device: &session.device_id,
            since: base.as_ref().map(|base| base.stream),
            sent: base.as_ref().map(|base| &base.sent),
            visible,
            lists: &lists,
            subscriptions: &request.room_subscriptions,
            extensions: &extensions,
        };
        let (answer, sent, changed) = build(&context)?;
        let generation = Generation {
            stream: visible,
            sent,
            lists: lists.clone(),
            extensions: extensions.clone(),
        };
        Ok(((answer, generation), changed))
    })
    .await?;
    answer.response.pos = services.sliding_sync.record(&key, request.pos.as_deref(), generation);
    answer.response.txn_id = request.txn_id.clone();
    Ok(answer)
}

/// A sliding sync answer: ruma's response, and the receipts extension's events, written by
/// hand into the answer (see [`ReceiptEvent`]).
pub struct Answer {
    response: Response,
    receipts: BTreeMap<OwnedRoomId, ReceiptEvent>,
}

impl IntoResponse for Answer {
    fn into_response(self) -> AxumResponse {
        json_answer(self.serialize())
    }
}

impl Answer {
    /// The answer's JSON: ruma's response without its extensions, then the extensions, ruma's
    /// with the receipts added.
    fn serialize(self) -> Result<Vec<u8>> {
        let Answer { mut response, receipts } = self;
        let extensions = std::mem::take(&mut response.extensions);
        let mut out = ruma_json(response)?;
        if extensions.is_empty() && receipts.is_empty() {
            return Ok(out);
        }
        reopen_object(&mut out);
        member(&mut out, "extensions")?;
        write_object(&mut out, &extensions)?;
        if !receipts.is_empty() {
            member(&mut out, "receipts")?;
            out.extend_from_slice(br#"{"rooms":{"#);
            for (room_id, receipt_event) in &receipts {
                member(&mut out, room_id.as_str())?;
                out.extend_from_slice(receipt_event.json());
            }
            out.extend_from_slice(b"}}");
        }
        out.extend_from_slice(b"}}");
        Ok(out)
    }
}

/// The request's extensions, each falling back to the connection's earlier settings when the
/// request does not mention it.
fn sticky_extensions(requested: &request::Extensions, earlier: Option<&request::Extensions>) -> request::Extensions {
    let Some(earlier) = earlier else {
        return requested.clone();
    };
    let mut extensions = requested.clone();
    if extensions.to_device.enabled.is_none() {
        extensions.to_device.enabled = earlier.to_device.enabled;
    }
    if extensions.e2ee.enabled.is_none() {
        extensions.e2ee.enabled = earlier.e2ee.enabled;
    }
    if extensions.account_data.enabled.is_none() {
        extensions.account_data = earlier.account_data.clone();
    }
    if extensions.receipts.enabled.is_none() {
        extensions.receipts = earlier.receipts.clone();
    }
    if extensions.typing.enabled.is_none() {
        extensions.typing = earlier.typing.clone();
    }
    extensions
}

/// Everything one response is made from.
struct Context<'a> {
    services: &'a Services,
    user: &'a UserId,
    device: &'a ruma::DeviceId,
    since: Option<u64>,
    sent: Option<&'a BTreeSet<OwnedRoomId>>,
    visible: u64,
    lists: &'a BTreeMap<String, request::List>,
    subscriptions: &'a BTreeMap<OwnedRoomId, request::RoomSubscription>,
    extensions: &'a request::Extensions,
}

/// One response, the rooms the connection has had in full after it, and whether it carries
/// anything new.
fn build(context: &Context<'_>) -> Result<(Answer, BTreeSet<OwnedRoomId>, bool)> {
    let services = context.services;
    let mut response = Response::new(String::new());
    let mut sent = context.sent.cloned().unwrap_or_default();
    let mut changed = false;

    let candidates = candidates(services, context.user)?;
    let direct_rooms = direct_rooms(services, context.user)?;
    let mut window: BTreeMap<OwnedRoomId, RoomConfig> = BTreeMap::new();
    for (name, list) in context.lists {
        let mut matching: Vec<&Candidate> = Vec::new();
        for candidate in candidates.values() {
            if list_allows(services, list.filters.as_ref(), candidate, &direct_rooms)? {
                matching.push(candidate);
            }
        }
        matching.sort_by(|a, b| b.bump_stamp.cmp(&a.bump_stamp).then_with(|| a.room_id.cmp(&b.room_id)));
        for (start, end) in &list.ranges {
            let (start, end) = (u64::from(*start) as usize, u64::from(*end) as usize);
            for candidate in matching.iter().skip(start).take(end.saturating_sub(start) + 1) {
                window
                    .entry(candidate.room_id.clone())
                    .or_default()
                    .merge(&list.room_details.required_state, list.room_details.timeline_limit);
            }
        }
        let mut counted = response::List::default();
        counted.count = UInt::new(matching.len() as u64).unwrap_or_default();
        response.lists.insert(name.clone(), counted);
    }
    for (room_id, subscription) in context.subscriptions {
        if candidates.contains_key(room_id) {
            window
                .entry(room_id.clone())
                .or_default()
                .merge(&subscription.required_state, subscription.timeline_limit);
        }
    }

    // Rooms the connection knows that changed: new events, or the user left them.
    let changed_rooms: BTreeSet<OwnedRoomId> = match context.since {
        Some(since) => services.rooms.rooms_changed(since, context.visible)?,
        None => BTreeSet::new(),
    };
    for (room_id, config) in &window {
        let Some(candidate) = candidates.get(room_id) else {
            continue;
        };
        let known = sent.contains(room_id) && context.since.is_some();
        if known && !changed_rooms.contains(room_id) {
            continue;
        }
        let room = if known {
            room_update(context, candidate, config)?
        } else {
            Some(room_in_full(context, candidate, config, &direct_rooms)?)
        };
        if let Some(room) = room {
            response.rooms.insert(room_id.clone(), room);
            sent.insert(room_id.clone());
            changed = true;
        }
    }
    // Known rooms the user has left since: their last timeline, then they are forgotten.
    for room_id in &changed_rooms {
        if candidates.contains_key(room_id) || !sent.contains(room_id) {
            continue;
        }
        if let Some(record) = services.rooms.membership(context.user, room_id)?
            && let Some(stored) = services.rooms.stored_event(&record.event_id)?
        {
            let mut room = response::Room::new();
            room.timeline = vec![raw(&services
                .rooms
                .client_event(&record.event_id, &stored, None)?
                .without_room_id())?];
            response.rooms.insert(room_id.clone(), room);
            changed = true;
        }
        sent.remove(room_id);
    }

    let mut receipts = BTreeMap::new();
    changed |= extensions(context, &window, &changed_rooms, &mut response.extensions, &mut receipts)?;
    Ok((Answer { response, receipts }, sent, changed))
}

/// The rooms the user is joined to, invited to or knocking on, with their bump stamps.
fn candidates(services: &Services, user: &UserId) -> Result<BTreeMap<OwnedRoomId, Candidate>> {
    let mut candidates = BTreeMap::new();
    for (room_id, record) in services.rooms.memberships_of(user)? {
        if !matches!(
            record.membership,
            MembershipState::Join | MembershipState::Invite | MembershipState::Knock
        ) {
            continue;
        }
        let bump_stamp = match record.membership {
            MembershipState::Join => bump_stamp(services, &room_id)?,
            _ => record.stream,
        };
        let candidate = Candidate {
            room_id: room_id.clone(),
            membership: record.membership,
            membership_event: record.event_id,
            membership_stream: record.stream,
            bump_stamp,
        };
        candidates.insert(room_id, candidate);
    }
    Ok(candidates)
}

/// The stream position of the room's latest message-like event, as its record keeps it; for a
/// record from before it was kept, or a room joined over federation without one yet, looked
/// for among the latest events (failing one, the latest event's).
fn bump_stamp(services: &Services, room_id: &RoomId) -> Result<u64> {
    let kept = services.rooms.room(room_id)?.bump_stamp;
    if kept > 0 {
        return Ok(kept);
    }
    let latest = services.rooms.timeline(room_id, None, false, BUMP_LOOKBACK)?;
    for (position, event_id) in &latest {
        if let Some(pdu) = services.rooms.pdu(event_id)?
            && BUMP_TYPES.contains(&pdu.kind.to_string().as_str())
        {
            return Ok(*position);
        }
    }
    Ok(latest.first().map_or(0, |(position, _)| *position))
}

/// The rooms the user's `m.direct` account data names as direct chats.
fn direct_rooms(services: &Services, user: &UserId) -> Result<BTreeSet<OwnedRoomId>> {
    let Some(content) = services.account_data.get(user, None, "m.direct")? else {
        return Ok(BTreeSet::new());
    };
    let content: Value = serde_json::from_str(content.get())?;
    Ok(content
        .as_object()
        .into_iter()
        .flat_map(|users| users.values())
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|room| RoomId::parse(room.as_str()?).ok())
        .collect())
}

/// Whether a room passes a list's filters.
fn list_allows(
    services: &Services,
    filters: Option<&request::ListFilters>,
    candidate: &Candidate,
    direct_rooms: &BTreeSet<OwnedRoomId>,
) -> Result<bool> {
    let Some(filters) = filters else { return Ok(true) };
    let invited = candidate.membership == MembershipState::Invite;
    if filters.is_invite.is_some_and(|wanted| wanted != invited) {
        return Ok(false);
    }
    if let Some(wanted) = filters.is_dm
        && wanted != is_dm(services, candidate, direct_rooms)?
    {
        return Ok(false);
    }
    if filters.is_encrypted.is_none() && filters.room_types.is_empty() && filters.not_room_types.is_empty() {
        return Ok(true);
    }
    // An invite to a room of other servers: its state is not here (only the stripped state).
    let state = services.rooms.current_state(&candidate.room_id).unwrap_or_default();
    if let Some(wanted) = filters.is_encrypted {
        let encrypted = services.rooms.state_pdu(&state, &StateEventType::RoomEncryption, "")?.is_some();
        if wanted != encrypted {
            return Ok(false);
        }
    }
    let room_type = services
        .rooms
        .state_content(&state, &StateEventType::RoomCreate, "")?
        .and_then(|content| content.get("type").and_then(Value::as_str).map(str::to_owned));
    let type_matches = |filter: &ruma::directory::RoomTypeFilter| filter.as_str() == room_type.as_deref();
    if !filters.room_types.is_empty() && !filters.room_types.iter().any(type_matches) {
        return Ok(false);
    }
    Ok(!filters.not_room_types.iter().any(type_matches))
}

/// Whether a room is a direct chat: listed in `m.direct`, or invited to as one.
fn is_dm(services: &Services, candidate: &Candidate, direct_rooms: &BTreeSet<OwnedRoomId>) -> Result<bool> {
    if direct_rooms.contains(&candidate.room_id) {
        return Ok(true);
    }
    if candidate.membership == MembershipState::Invite
        && let Some(pdu) = services.rooms.pdu(&candidate.membership_event)?
    {
        return Ok(pdu.content_value()["is_direct"] == true);
    }
    Ok(false)
}

/// A room the connection has not had yet, in full.
fn room_in_full(
    context: &Context<'_>,
    candidate: &Candidate,
    config: &RoomConfig,
    direct_rooms: &BTreeSet<OwnedRoomId>,
) -> Result<response::Room> {
    let services = context.services;
    let room_id = &candidate.room_id;
    let mut room = response::Room::new();
    room.initial = Some(true);
    room.is_dm = Some(is_dm(services, candidate, direct_rooms)?);
    room.bump_stamp = UInt::new(candidate.bump_stamp);
    if candidate.membership != MembershipState::Join {
        room.invite_state = Some(stripped_state(services, room_id, &candidate.membership_event)?);
        return Ok(room);
    }
    let state = services.rooms.current_state(room_id)?;
    room.name = services
        .rooms
        .state_content(&state, &StateEventType::RoomName, "")?
        .and_then(|content| content.get("name").and_then(Value::as_str).map(str::to_owned))
        .filter(|name| !name.is_empty());
    if let Some(avatar) = services
        .rooms
        .state_content(&state, &StateEventType::RoomAvatar, "")?
        .and_then(|content| content.get("url").and_then(Value::as_str).map(ruma::OwnedMxcUri::from))
    {
        room.avatar = js_option::JsOption::Some(avatar);
    }
    let timeline = timeline(context, room_id, None, config.timeline_limit)?;
    room.limited = timeline.more;
    room.prev_batch = Some(token(timeline.start));
    room.num_live = Some(UInt::MIN);
    let senders: BTreeSet<String> = timeline.senders();
    room.timeline = timeline
        .events
        .iter()
        .map(|(_, event)| raw(&event.without_room_id()))
        .collect::<Result<_>>()?;
    room.required_state = required_state(services, context.user, &state, &config.required_state, &senders, None)?;
    let (mut joined, mut invited) = (0u64, 0u64);
    let mut heroes = Vec::new();
    for (member, membership) in services.rooms.members(room_id)?.iter() {
        match membership {
            MembershipState::Join => joined += 1,
            MembershipState::Invite => invited += 1,
            _ => continue,
        }
        if member != context.user && heroes.len() < 5 {
            heroes.push(member.clone());
        }
    }
    room.joined_count = UInt::new(joined);
    room.invited_count = UInt::new(invited);
    if room.name.is_none() {
        let mut described = Vec::new();
        for member in heroes {
            let content = services
                .rooms
                .state_content(&state, &StateEventType::RoomMember, member.as_str())?
                .unwrap_or_default();
            let mut hero = response::Hero::new(member);
            hero.name = content.get("displayname").and_then(Value::as_str).map(str::to_owned);
            hero.avatar = content.get("avatar_url").and_then(Value::as_str).map(ruma::OwnedMxcUri::from);
            described.push(hero);
        }
        room.heroes = Some(described);
    }
    set_unread(services, context.user, room_id, &mut room)?;
    Ok(room)
}

/// What changed in a room the connection knows: the new events, the required state they
/// changed, and the counts; `None` when nothing the room section carries changed.
fn room_update(context: &Context<'_>, candidate: &Candidate, config: &RoomConfig) -> Result<Option<response::Room>> {
    let services = context.services;
    let room_id = &candidate.room_id;
    let since = context.since.unwrap_or_default();
    let mut room = response::Room::new();
    room.bump_stamp = UInt::new(candidate.bump_stamp);
    if candidate.membership != MembershipState::Join {
        // A new invite (or knock) to a room the client had: its stripped state again.
        if candidate.membership_stream <= since {
            return Ok(None);
        }
        room.invite_state = Some(stripped_state(services, room_id, &candidate.membership_event)?);
        return Ok(Some(room));
    }
    let timeline = timeline(context, room_id, Some(since), config.timeline_limit.max(1))?;
    if timeline.events.is_empty() {
        return Ok(None);
    }
    room.limited = timeline.more;
    room.prev_batch = Some(token(timeline.start));
    room.num_live = UInt::new(timeline.events.len() as u64);
    let senders = timeline.senders();
    let changed_state = timeline.events.iter().any(|(_, event)| event.pdu().state_key.is_some());
    if changed_state {
        let state = services.rooms.current_state(room_id)?;
        let before = services.rooms.state_at_position(room_id, since + 1)?;
        room.required_state = required_state(services, context.user, &state, &config.required_state, &senders, Some(&before))?;
    }
    if config.timeline_limit > 0 {
        room.timeline = timeline
            .events
            .iter()
            .map(|(_, event)| raw(&event.without_room_id()))
            .collect::<Result<_>>()?;
    }
    set_unread(services, context.user, room_id, &mut room)?;
    Ok(Some(room))
}

/// A room's latest events, oldest first.
struct Timeline {
    events: Vec<(u64, ClientEvent)>,
    more: bool,
    /// The stream position a backward /messages continues from.
    start: u64,
}

impl Timeline {
    fn senders(&self) -> BTreeSet<String> {
        self.events.iter().map(|(_, event)| event.pdu().sender.to_string()).collect()
    }
}

fn timeline(context: &Context<'_>, room_id: &RoomId, since: Option<u64>, limit: usize) -> Result<Timeline> {
    if limit == 0 {
        return Ok(Timeline {
            events: Vec::new(),
            more: true,
            start: context.visible + 1,
        });
    }
    let page = latest_events(
        context.services,
        room_id,
        (context.user, context.device),
        context.visible,
        since,
        limit,
        &RoomEventFilter::default(),
    )?;
    let more = page.more();
    let events = page.events;
    let start = events.first().map_or(context.visible + 1, |(position, _)| *position);
    Ok(Timeline { events, more, start })
}

/// The state events `required` asks for (`*` as a wildcard type or state key, `$ME` for the
/// user, `$LAZY` for the timeline's senders); with `before`, only those that changed since.
fn required_state(
    services: &Services,
    user: &UserId,
    state: &StateMap,
    required: &[(StateEventType, String)],
    senders: &BTreeSet<String>,
    before: Option<&StateMap>,
) -> Result<Vec<ruma::serde::Raw<ruma::events::AnySyncStateEvent>>> {
    if required.is_empty() {
        return Ok(Vec::new());
    }
    let wanted = |kind: &StateEventType, state_key: &str| {
        required.iter().any(|(wanted_kind, wanted_key)| {
            let kind_matches = wanted_kind.to_string() == "*" || wanted_kind == kind;
            let key_matches = match wanted_key.as_str() {
                "*" => true,
                "$ME" => state_key == user.as_str(),
                "$LAZY" => *kind == StateEventType::RoomMember && (senders.contains(state_key) || state_key == user.as_str()),
                exact => exact == state_key,
            };
            kind_matches && key_matches
        })
    };
    let mut events = Vec::new();
    for (short_key, short_event) in state {
        if before.is_some_and(|before| before.get(short_key) == Some(short_event)) {
            continue;
        }
        let (kind, state_key) = services.rooms.states.state_key(*short_key)?;
        if !wanted(&kind, &state_key) {
            continue;
        }
        let event_id = services.rooms.states.event_id(*short_event)?;
        if let Some(stored) = services.rooms.stored_event(&event_id)? {
            events.push(raw(&services.rooms.client_event(&event_id, &stored, None)?.without_room_id())?);
        }
    }
    Ok(events)
}

fn set_unread(services: &Services, user: &UserId, room_id: &RoomId, room: &mut response::Room) -> Result<()> {
    let unread = services.push.unread(&services.rooms, user, room_id)?.total();
    room.unread_notifications.notification_count = UInt::new(unread.notifications);
    room.unread_notifications.highlight_count = UInt::new(unread.highlights);
    Ok(())
}

/// Fills the enabled extensions, the receipts' events into `receipts_out`; `true` when one
/// carries something new.
fn extensions(
    context: &Context<'_>,
    window: &BTreeMap<OwnedRoomId, RoomConfig>,
    changed_rooms: &BTreeSet<OwnedRoomId>,
    out: &mut response::Extensions,
    receipts_out: &mut BTreeMap<OwnedRoomId, ReceiptEvent>,
) -> Result<bool> {
    let services = context.services;
    let requested = context.extensions;
    let mut changed = false;

    if requested.to_device.enabled == Some(true) {
        let acknowledged = requested.to_device.since.as_deref().and_then(|since| since.parse().ok());
        let messages = services
            .to_device
            .take(context.user, context.device, acknowledged, context.visible)?;
        changed |= !messages.is_empty();
        let mut to_device = response::ToDevice::default();
        to_device.next_batch = context.visible.to_string();
        to_device.events = messages.iter().map(raw).collect::<Result<_>>()?;
        out.to_device = Some(to_device);
    }
    if requested.e2ee.enabled == Some(true) {
        if let Some(since) = context.since {
            let updates = services
                .keys
                .device_list_updates(&services.rooms, context.user, since, context.visible)?;
            changed |= !updates.changed.is_empty() || !updates.left.is_empty();
            out.e2ee.device_lists.changed = updates.changed.into_iter().collect();
            out.e2ee.device_lists.left = updates.left.into_iter().collect();
        }
        out.e2ee.device_one_time_keys_count = services.keys.one_time_key_counts(context.user, context.device)?;
        out.e2ee.device_unused_fallback_key_types = Some(services.keys.unused_fallback_key_types(context.user, context.device)?);
    }
    if requested.account_data.enabled == Some(true) {
        for entry in services.account_data.changed(context.user, context.since, context.visible)? {
            let event = json!({ "type": entry.event_type, "content": serde_json::from_str::<Value>(entry.content.get())? });
            match entry.room_id {
                None => out.account_data.global.push(raw(&event)?),
                Some(room_id) if window.contains_key(&room_id) => out.account_data.rooms.entry(room_id).or_default().push(raw(&event)?),
                Some(_) => continue,
            }
            changed = true;
        }
    }
    // Receipts and typing of the rooms in the window: all of them for a room new to the
    // connection, the changes since its `pos` for the others.
    let new_to_connection = |room_id: &RoomId| context.since.is_none() || !context.sent.is_some_and(|sent| sent.contains(room_id));
    if requested.receipts.enabled == Some(true) {
        for room_id in window.keys() {
            let since = if new_to_connection(room_id) {
                None
            } else if changed_rooms.contains(room_id) {
                context.since
            } else {
                continue;
            };
            if let Some(receipts) = services.rooms.receipt_event(room_id, context.user, since, context.visible)? {
                receipts_out.insert(room_id.clone(), receipts);
                changed |= since.is_some();
            }
        }
    }
    if requested.typing.enabled == Some(true) {
        for room_id in window.keys() {
            let since = if new_to_connection(room_id) { None } else { context.since };
            if let Some(users) = services.typing.typing_since(room_id, since, context.visible) {
                if since.is_none() && users.is_empty() {
                    continue;
                }
                out.typing.rooms.insert(
                    room_id.clone(),
                    raw(&json!({ "type": "m.typing", "content": { "user_ids": users } }))?,
                );
                changed |= since.is_some();
            }
        }
    }
    Ok(changed)
}
