//! Application services (bridges and bots): their registrations, which users, aliases and rooms
//! they claim, and the outbox of what is pushed to them.
//!
//! A registration is the standard YAML file (`id`, `url`, `as_token`, `hs_token`,
//! `sender_localpart`, `namespaces`, `rate_limited`, `protocols`, `receive_ephemeral`, MSC2409's
//! `de.sorunome.msc2409.push_ephemeral`, MSC3202's `org.matrix.msc3202`), read from the files the
//! configuration names or registered by `hearth admin appservice register` (kept in the
//! `appservices` table). Namespace regexes match from the start of an identifier, as Synapse's do.
//!
//! What an appservice is interested in — events in rooms it claims, of users it claims, in rooms
//! where one of its users is joined or that have an alias it claims; typing, receipts and presence
//! there when it asked for ephemeral events; to-device messages for its users — is written as
//! `appservice_outbox` rows in the batch of what caused it, so nothing is lost across a restart.
//! [`sender`] drains them in order, in transactions; [`calls`] are the other requests the server
//! makes to an appservice (user and alias queries, ping, third-party lookups).

pub mod calls;
pub mod sender;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use regex::Regex;
use ruma::api::appservice::{Namespace, Registration};
use ruma::{DeviceId, OwnedDeviceId, OwnedEventId, OwnedUserId, RoomAliasId, RoomId, ServerName, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::service::stream::Stream;
use crate::store::{Batch, Counter, SEP, Store, Table, key, prefix};

/// A registration file as read: ruma's registration and the unstable keys bridges set.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RegistrationFile {
    #[serde(flatten)]
    registration: Registration,
    #[serde(default, rename = "de.sorunome.msc2409.push_ephemeral")]
    push_ephemeral: bool,
    #[serde(default, rename = "org.matrix.msc3202")]
    device_data: bool,
}

/// Where a registration came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A file of `[appservices] registration_files`.
    File(PathBuf),
    /// `hearth admin appservice register`, kept in the database.
    Admin,
}

/// A registration kept in the database: the YAML as given.
#[derive(Debug, Serialize, Deserialize)]
struct StoredRegistration {
    yaml: String,
    registered_ts: u64,
}

/// One namespace regex of a registration.
#[derive(Debug)]
struct Claim {
    regex: Regex,
    exclusive: bool,
}

impl Claim {
    fn any(claims: &[Claim], text: &str, exclusive_only: bool) -> bool {
        claims
            .iter()
            .any(|claim| (claim.exclusive || !exclusive_only) && claim.regex.is_match(text))
    }
}

/// A registered application service.
#[derive(Debug)]
pub struct Appservice {
    pub registration: Registration,
    /// Whether it gets typing, receipts, presence and to-device messages (`receive_ephemeral`,
    /// or MSC2409's `push_ephemeral`).
    pub receives_ephemeral: bool,
    /// MSC3202 (`org.matrix.msc3202`): transactions carry device-list changes of the users its
    /// users share rooms with, and its users' devices' one-time-key counts (encrypted bridges).
    pub device_data: bool,
    pub source: Source,
    /// The appservice's own user (`sender_localpart`).
    pub sender: OwnedUserId,
    users: Vec<Claim>,
    aliases: Vec<Claim>,
    rooms: Vec<Claim>,
    /// Woken when rows are queued for it.
    wake: tokio::sync::Notify,
    /// Woken when it makes a request: a failed delivery is retried at once.
    pub alive: tokio::sync::Notify,
}

impl Appservice {
    pub fn id(&self) -> &str {
        &self.registration.id
    }

    /// Whether `user` is its own user or in its user namespace.
    pub fn claims_user(&self, user: &UserId) -> bool {
        user == self.sender || Claim::any(&self.users, user.as_str(), false)
    }

    /// Whether `user` is in its exclusive user namespace (or is its own user).
    pub fn claims_user_exclusively(&self, user: &UserId) -> bool {
        user == self.sender || Claim::any(&self.users, user.as_str(), true)
    }

    pub fn claims_alias(&self, alias: &RoomAliasId) -> bool {
        Claim::any(&self.aliases, alias.as_str(), false)
    }

    pub fn claims_alias_exclusively(&self, alias: &RoomAliasId) -> bool {
        Claim::any(&self.aliases, alias.as_str(), true)
    }

    pub fn claims_room(&self, room_id: &RoomId) -> bool {
        Claim::any(&self.rooms, room_id.as_str(), false)
    }

    /// Whether the server's rate limits apply to the users it acts as: only when its
    /// registration says `rate_limited: true` (appservices are not limited by default), and
    /// never to its own user (the spec excludes the sender).
    pub fn rate_limits(&self, user: &UserId) -> bool {
        self.registration.rate_limited == Some(true) && user != self.sender
    }

    /// The protocols it bridges (`protocols`).
    pub fn protocols(&self) -> &[String] {
        self.registration.protocols.as_deref().unwrap_or_default()
    }
}

/// What waits in an appservice's outbox.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Queued {
    /// A room event, read when sent (so a redaction in between applies).
    Event(OwnedEventId),
    /// Typing, a receipt or presence, as the transaction's `ephemeral` carries it.
    Ephemeral(Value),
    /// A to-device message for one of its users' devices (MSC2409), with `to_user_id` and
    /// `to_device_id`.
    ToDevice(Value),
    /// MSC3202: a user its users share a room with changed devices or keys, or newly shares one.
    DeviceListChanged(OwnedUserId),
    /// MSC3202: a user no longer shares any room with its users.
    DeviceListLeft(OwnedUserId),
    /// MSC3202: one of its users' devices' one-time or fallback keys changed (the counts are
    /// read when sent).
    KeyCounts(OwnedUserId, OwnedDeviceId),
}

/// What decides whether a room event concerns an appservice, read only when needed.
pub struct EventScope<'a> {
    pub room_id: &'a RoomId,
    pub sender: &'a UserId,
    /// The user a member event is about.
    pub target: Option<&'a UserId>,
}

/// Which appservices have a user joined to a room, as of a room state.
struct JoinedUsers {
    state: u64,
    /// The registrations it was computed for.
    registered: Arc<Vec<Arc<Appservice>>>,
    appservices: Arc<Vec<String>>,
}

/// The registered appservices and their outboxes.
pub struct Appservices {
    store: Store,
    server_name: ruma::OwnedServerName,
    registered: Arc<RwLock<Arc<Vec<Arc<Appservice>>>>>,
    numbers: Counter,
    /// Woken when an appservice is registered or unregistered.
    pub changed: Arc<tokio::sync::Notify>,
    /// Tells the other processes on a shared database of registrations made here.
    stream: Arc<Stream>,
    /// Per room, which appservices have a user joined there (see `interested_in_event`).
    joined_users: Mutex<HashMap<ruma::OwnedRoomId, JoinedUsers>>,
    http: reqwest::Client,
}

/// How long a request to an appservice may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Applies another process's registration or unregistration of the appservice `id`, as the
/// store now has it.
fn reload(store: &Store, server_name: &ServerName, registered: &RwLock<Arc<Vec<Arc<Appservice>>>>, id: &str) {
    let stored = match store.get_json::<StoredRegistration>(Table::Appservices, id.as_bytes()) {
        Ok(stored) => stored,
        Err(error) => {
            tracing::error!(%error, appservice = id, "cannot read an appservice registered by another process");
            return;
        }
    };
    let mut registered = registered.write().unwrap_or_else(|e| e.into_inner());
    let mut list: Vec<Arc<Appservice>> = registered
        .iter()
        .filter(|appservice| appservice.id() != id || matches!(appservice.source, Source::File(_)))
        .cloned()
        .collect();
    if let Some(stored) = stored
        && let Ok(appservice) = parse(&stored.yaml, server_name, Source::Admin)
        && check_unique(&list, &appservice).is_ok()
    {
        list.push(Arc::new(appservice));
    }
    *registered = Arc::new(list);
}

impl Appservices {
    /// Reads the registrations of `files` and those kept in the store. A file that cannot be
    /// used is an error naming the file, the line and the reason.
    pub fn new(store: &Store, server_name: &ServerName, files: &[PathBuf], stream: Arc<Stream>) -> Result<Appservices> {
        let mut list = Vec::new();
        for file in files {
            let appservice = read_file(file, server_name).and_then(|appservice| {
                check_unique(&list, &appservice)?;
                Ok(appservice)
            });
            list.push(Arc::new(appservice.map_err(Error::bad_request)?));
        }
        for (id, stored) in store.scan_json::<StoredRegistration>(Table::Appservices, &[])? {
            let id = String::from_utf8_lossy(&id).into_owned();
            match parse(&stored.yaml, server_name, Source::Admin) {
                Ok(appservice) if check_unique(&list, &appservice).is_ok() => list.push(Arc::new(appservice)),
                Ok(_) => tracing::warn!(appservice = %id, "a registered appservice clashes with one of the configuration's; skipped"),
                Err(reason) => tracing::warn!(appservice = %id, %reason, "a registered appservice cannot be read; skipped"),
            }
        }
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .pool_idle_timeout(crate::service::federation::POOL_IDLE_TIMEOUT)
            .build()
            .map_err(|e| Error::Internal(format!("appservice client: {e}")))?;
        let registered = Arc::new(RwLock::new(Arc::new(list)));
        let changed = Arc::new(tokio::sync::Notify::new());
        let (heard_store, heard_server, heard_list, heard_changed) =
            (store.clone(), server_name.to_owned(), registered.clone(), changed.clone());
        stream.on_announcement('p', move |id| {
            reload(&heard_store, &heard_server, &heard_list, id);
            heard_changed.notify_one();
        });
        Ok(Appservices {
            store: store.clone(),
            server_name: server_name.to_owned(),
            registered,
            numbers: Counter::open(store, "appservice_outbox")?,
            changed,
            stream,
            joined_users: Mutex::new(HashMap::new()),
            http,
        })
    }

    /// Every registered appservice.
    pub fn list(&self) -> Arc<Vec<Arc<Appservice>>> {
        self.registered.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn is_empty(&self) -> bool {
        self.list().is_empty()
    }

    /// Whether any appservice gets ephemeral events.
    pub fn any_ephemeral(&self) -> bool {
        self.list().iter().any(|appservice| appservice.receives_ephemeral)
    }

    /// The registered appservices `wanted` picks.
    pub fn matching(&self, wanted: impl Fn(&Appservice) -> bool) -> Vec<Arc<Appservice>> {
        self.list().iter().filter(|appservice| wanted(appservice)).cloned().collect()
    }

    /// The appservice an `as_token` belongs to.
    pub fn by_token(&self, token: &str) -> Option<Arc<Appservice>> {
        use subtle::ConstantTimeEq;
        self.list()
            .iter()
            .find(|appservice| bool::from(appservice.registration.as_token.as_bytes().ct_eq(token.as_bytes())))
            .cloned()
    }

    /// Registers the appservice of registration YAML `text` (kept in the store); refused with
    /// the line and the reason when it cannot be used, or when its ID or tokens are taken.
    pub fn register(&self, text: &str) -> Result<Arc<Appservice>> {
        let appservice = Arc::new(parse(text, &self.server_name, Source::Admin).map_err(Error::bad_request)?);
        let mut registered = self.registered.write().unwrap_or_else(|e| e.into_inner());
        check_unique(&registered, &appservice).map_err(Error::bad_request)?;
        let stored = StoredRegistration {
            yaml: text.to_owned(),
            registered_ts: super::now_ms(),
        };
        let mut batch = self.store.batch();
        batch.put_json(Table::Appservices, appservice.id().as_bytes(), &stored);
        batch.commit()?;
        let mut list = registered.as_ref().clone();
        list.push(appservice.clone());
        *registered = Arc::new(list);
        drop(registered);
        self.changed.notify_one();
        self.stream.announce('p', appservice.id())?;
        Ok(appservice)
    }

    /// Unregisters an appservice registered with `hearth admin`, dropping what waits for it.
    pub fn unregister(&self, id: &str) -> Result<()> {
        let mut registered = self.registered.write().unwrap_or_else(|e| e.into_inner());
        let appservice = registered
            .iter()
            .find(|appservice| appservice.id() == id)
            .ok_or_else(|| Error::not_found(format!("no appservice {id}")))?;
        if let Source::File(file) = &appservice.source {
            return Err(Error::bad_request(format!(
                "appservice {id} is registered by the configuration ({}); remove it there",
                file.display()
            )));
        }
        let mut batch = self.store.batch();
        batch.delete(Table::Appservices, id.as_bytes());
        for row in self.store.scan_keys(Table::AppserviceOutbox, &prefix(&[id.as_bytes()]))? {
            batch.delete(Table::AppserviceOutbox, &row);
        }
        batch.commit()?;
        *registered = Arc::new(registered.iter().filter(|appservice| appservice.id() != id).cloned().collect());
        drop(registered);
        self.changed.notify_one();
        self.stream.announce('p', id)?;
        Ok(())
    }

    /// The appservice whose exclusive user namespace holds `user`, if any.
    pub fn exclusive_owner_of_user(&self, user: &UserId) -> Option<Arc<Appservice>> {
        self.list()
            .iter()
            .find(|appservice| appservice.claims_user_exclusively(user))
            .cloned()
    }

    /// The appservice whose exclusive alias namespace holds `alias`, if any.
    pub fn exclusive_owner_of_alias(&self, alias: &RoomAliasId) -> Option<Arc<Appservice>> {
        self.list()
            .iter()
            .find(|appservice| appservice.claims_alias_exclusively(alias))
            .cloned()
    }

    /// The appservices a room event concerns. `members` (the room's joined users) and `aliases`
    /// are read only when the cheaper checks leave an appservice undecided; which appservices
    /// have a joined user is kept per room for its state before the event (`state`), so the
    /// messages of a room whose members did not change read no members.
    pub fn interested_in_event(
        &self,
        scope: &EventScope<'_>,
        state: Option<u64>,
        members: impl FnOnce() -> Result<Vec<OwnedUserId>>,
        aliases: impl FnOnce() -> Result<Vec<ruma::OwnedRoomAliasId>>,
    ) -> Result<Vec<Arc<Appservice>>> {
        let list = self.list();
        let (mut interested, undecided): (Vec<_>, Vec<_>) = list.iter().cloned().partition(|appservice| {
            appservice.claims_user(scope.sender)
                || scope.target.is_some_and(|target| appservice.claims_user(target))
                || appservice.claims_room(scope.room_id)
        });
        if undecided.is_empty() {
            return Ok(interested);
        }
        let with_members = self.with_joined_users(scope.room_id, state, &list, members)?;
        let (by_member, undecided): (Vec<_>, Vec<_>) = undecided
            .into_iter()
            .partition(|appservice| with_members.iter().any(|id| id == appservice.id()));
        interested.extend(by_member);
        if undecided.iter().any(|appservice| !appservice.aliases.is_empty()) {
            let aliases = aliases()?;
            interested.extend(
                undecided
                    .into_iter()
                    .filter(|appservice| aliases.iter().any(|alias| appservice.claims_alias(alias))),
            );
        }
        Ok(interested)
    }

    /// The IDs of the appservices of `list` with a user joined to a room, from the cache when
    /// it holds them for this room state and these registrations.
    fn with_joined_users(
        &self,
        room_id: &RoomId,
        state: Option<u64>,
        list: &Arc<Vec<Arc<Appservice>>>,
        members: impl FnOnce() -> Result<Vec<OwnedUserId>>,
    ) -> Result<Arc<Vec<String>>> {
        let mut cache = self.joined_users.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(state), Some(known)) = (state, cache.get(room_id))
            && known.state == state
            && Arc::ptr_eq(&known.registered, list)
        {
            return Ok(known.appservices.clone());
        }
        drop(cache);
        let members = members()?;
        let appservices: Arc<Vec<String>> = Arc::new(
            list.iter()
                .filter(|appservice| members.iter().any(|member| appservice.claims_user(member)))
                .map(|appservice| appservice.id().to_owned())
                .collect(),
        );
        if let Some(state) = state {
            cache = self.joined_users.lock().unwrap_or_else(|e| e.into_inner());
            let known = JoinedUsers {
                state,
                registered: list.clone(),
                appservices: appservices.clone(),
            };
            cache.insert(room_id.to_owned(), known);
        }
        Ok(appservices)
    }

    /// Queues `item` in `batch` for each of `appservices`; their senders are woken once the
    /// batch is committed.
    /// One without a `url` (it only sends requests) gets nothing queued.
    pub fn queue(&self, batch: &mut Batch<'_>, mut appservices: Vec<Arc<Appservice>>, item: &Queued) -> Result<()> {
        appservices.retain(|appservice| appservice.registration.url.is_some());
        if appservices.is_empty() {
            return Ok(());
        }
        let number = self.numbers.next()?;
        for appservice in &appservices {
            batch.put_json(
                Table::AppserviceOutbox,
                &key(&[appservice.id().as_bytes(), &number.to_be_bytes()]),
                item,
            );
        }
        batch.on_commit(move || {
            for appservice in appservices {
                appservice.wake.notify_one();
            }
        });
        Ok(())
    }

    /// Queues `item` for `appservices` in a batch of its own, and wakes them.
    pub fn send(&self, appservices: Vec<Arc<Appservice>>, item: &Queued) -> Result<()> {
        if appservices.is_empty() {
            return Ok(());
        }
        let mut batch = self.store.batch();
        self.queue(&mut batch, appservices, item)?;
        batch.commit()?;
        Ok(())
    }

    /// The appservices that get a room's ephemeral events: those asking for them that claim the
    /// room or have a user joined to it (as of room state `state`, from the cache when it holds
    /// that state; `members` is read otherwise).
    pub fn ephemeral_for_room(
        &self,
        room_id: &RoomId,
        state: u64,
        members: impl FnOnce() -> Result<Vec<OwnedUserId>>,
    ) -> Result<Vec<Arc<Appservice>>> {
        let list = self.list();
        if !list.iter().any(|appservice| appservice.receives_ephemeral) {
            return Ok(Vec::new());
        }
        let with_members = self.with_joined_users(room_id, Some(state), &list, members)?;
        let joined = |appservice: &Appservice| with_members.iter().any(|id| id == appservice.id());
        Ok(list
            .iter()
            .filter(|appservice| appservice.receives_ephemeral && (appservice.claims_room(room_id) || joined(appservice)))
            .cloned()
            .collect())
    }

    /// Queues in `batch` a to-device message for `user`'s `device` for the appservices that
    /// claim the user and get ephemeral events (MSC2409).
    pub fn queue_to_device(&self, batch: &mut Batch<'_>, user: &UserId, device: &ruma::DeviceId, message: &Value) -> Result<()> {
        let interested = self.matching(|appservice| appservice.receives_ephemeral && appservice.claims_user(user));
        if interested.is_empty() {
            return Ok(());
        }
        let mut message = message.clone();
        message["to_user_id"] = Value::from(user.as_str());
        message["to_device_id"] = Value::from(device.as_str());
        self.queue(batch, interested, &Queued::ToDevice(message))
    }

    /// Queues in `batch` the new key counts of `user`'s `device` for the appservices that claim
    /// the user and get device data.
    pub fn queue_key_counts(&self, batch: &mut Batch<'_>, user: &UserId, device: &DeviceId) -> Result<()> {
        let interested = self.matching(|appservice| appservice.device_data && appservice.claims_user(user));
        self.queue(batch, interested, &Queued::KeyCounts(user.to_owned(), device.to_owned()))
    }

    /// Queues in `batch` a device-list change of `user` for the appservices that get device
    /// data and claim the user or one of the users who share a room with them (`sharing`, read
    /// only when such an appservice exists).
    pub fn queue_device_list_change(
        &self,
        batch: &mut Batch<'_>,
        user: &UserId,
        sharing: impl FnOnce() -> Result<Vec<OwnedUserId>>,
    ) -> Result<()> {
        let mut interested = self.matching(|appservice| appservice.device_data);
        if interested.is_empty() {
            return Ok(());
        }
        let sharing = sharing()?;
        interested.retain(|appservice| appservice.claims_user(user) || sharing.iter().any(|other| appservice.claims_user(other)));
        self.queue(batch, interested, &Queued::DeviceListChanged(user.to_owned()))
    }

    /// How many rows wait for each appservice.
    pub fn queue_depths(&self) -> Result<HashMap<String, usize>> {
        let mut depths = HashMap::new();
        for row in self.store.scan_keys(Table::AppserviceOutbox, &[])? {
            if let Some(end) = row.iter().position(|byte| *byte == SEP) {
                *depths.entry(String::from_utf8_lossy(&row[..end]).into_owned()).or_default() += 1;
            }
        }
        Ok(depths)
    }
}

/// Reads registration file `file`; the error names the file, the line and the reason.
fn read_file(file: &Path, server_name: &ServerName) -> std::result::Result<Appservice, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    parse(&text, server_name, Source::File(file.to_owned())).map_err(|reason| format!("{}: {reason}", file.display()))
}

/// Checks registration file `file` (at start-up, with the configuration).
pub fn check_file(file: &Path, server_name: &ServerName) -> std::result::Result<(), String> {
    read_file(file, server_name).map(|_| ())
}

/// Refuses an appservice whose ID or tokens another one of `list` has.
fn check_unique(list: &[Arc<Appservice>], new: &Appservice) -> std::result::Result<(), String> {
    for other in list {
        if other.id() == new.id() {
            return Err(format!("an appservice with id {:?} is registered already", new.id()));
        }
        let (a, b) = (&other.registration, &new.registration);
        if a.as_token == b.as_token || a.hs_token == b.hs_token {
            return Err(format!("appservice {:?} has the same as_token or hs_token", other.id()));
        }
    }
    Ok(())
}

/// Reads and checks registration YAML `text`; the error names the line and the reason.
fn parse(text: &str, server_name: &ServerName, source: Source) -> std::result::Result<Appservice, String> {
    let file: RegistrationFile = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    let line = |needle: &str| {
        text.lines()
            .position(|line| line.contains(needle))
            .map_or_else(String::new, |n| format!("line {}: ", n + 1))
    };
    let registration = file.registration;
    if registration.id.trim().is_empty() {
        return Err(format!("{}`id` must not be empty", line("id:")));
    }
    for (key, token) in [("as_token", &registration.as_token), ("hs_token", &registration.hs_token)] {
        if token.trim().is_empty() {
            return Err(format!("{}`{key}` must not be empty", line(key)));
        }
    }
    if registration.as_token == registration.hs_token {
        return Err(format!("{}`as_token` and `hs_token` must differ", line("hs_token")));
    }
    let sender = UserId::parse_with_server_name(registration.sender_localpart.as_str(), server_name).map_err(|e| {
        format!(
            "{}`sender_localpart` {:?}: {e}",
            line("sender_localpart"),
            registration.sender_localpart
        )
    })?;
    if let Some(url) = &registration.url {
        let parsed = url::Url::parse(url).map_err(|e| format!("{}`url` {url:?}: {e}", line("url:")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("{}`url` {url:?}: must be an http or https URL", line("url:")));
        }
    }
    let compile = |namespaces: &[Namespace]| {
        namespaces
            .iter()
            .map(|namespace| {
                Regex::new(&format!("^(?:{})", namespace.regex))
                    .map(|regex| Claim {
                        regex,
                        exclusive: namespace.exclusive,
                    })
                    .map_err(|e| {
                        // The regex crate's message draws the pattern over lines; its last says why.
                        let reason = e
                            .to_string()
                            .lines()
                            .last()
                            .unwrap_or_default()
                            .trim_start_matches("error: ")
                            .to_owned();
                        format!("{}namespace regex {:?}: {reason}", line(&namespace.regex), namespace.regex)
                    })
            })
            .collect::<std::result::Result<Vec<_>, String>>()
    };
    Ok(Appservice {
        users: compile(&registration.namespaces.users)?,
        aliases: compile(&registration.namespaces.aliases)?,
        rooms: compile(&registration.namespaces.rooms)?,
        receives_ephemeral: registration.receive_ephemeral || file.push_ephemeral,
        device_data: file.device_data,
        source,
        sender,
        wake: tokio::sync::Notify::new(),
        alive: tokio::sync::Notify::new(),
        registration,
    })
}

impl crate::service::Services {
    /// Creates an appservice's own user (`sender_localpart`) when it does not exist yet.
    pub async fn ensure_appservice_user(&self, appservice: &Appservice) -> Result<()> {
        if self.accounts.get(&appservice.sender)?.is_some() {
            return Ok(());
        }
        let account = crate::service::registration::NewAccount {
            user_id: appservice.sender.clone(),
            password: None,
            admin: false,
            registration_token: None,
            login: None,
            email: None,
        };
        match self.create_account(account).await {
            Ok(_) => Ok(()),
            // Created meanwhile.
            Err(Error::Matrix {
                errcode: "M_USER_IN_USE", ..
            }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// The room a local alias names; an unknown alias in an appservice's namespace is asked of
    /// the appservice first (it may create it).
    pub async fn resolve_local_alias(&self, alias: &RoomAliasId) -> Result<ruma::OwnedRoomId> {
        match self.rooms.resolve_alias(alias) {
            Err(Error::Matrix {
                errcode: "M_NOT_FOUND", ..
            }) if self.appservices.query_alias(alias).await => self.rooms.resolve_alias(alias),
            answer => answer,
        }
    }

    /// Whether a local user exists; an unknown user in an appservice's namespace is asked of
    /// the appservice first (it may register it).
    pub async fn local_user_exists(&self, user: &UserId) -> Result<bool> {
        Ok(self.accounts.get(user)?.is_some() || (self.appservices.query_user(user).await && self.accounts.get(user)?.is_some()))
    }

    /// Pushes a room's typing users to the appservices that get its ephemeral events.
    pub fn push_typing_to_appservices(&self, room_id: &RoomId) -> Result<()> {
        let interested = self.appservices_for_room_ephemeral(room_id)?;
        if interested.is_empty() {
            return Ok(());
        }
        let typing = self.typing.typing_since(room_id, None, u64::MAX).unwrap_or_default();
        let event = serde_json::json!({ "type": "m.typing", "room_id": room_id, "content": { "user_ids": typing } });
        self.appservices.send(interested, &Queued::Ephemeral(event))
    }

    /// Pushes a presence change to the appservices that get ephemeral events of a room the
    /// user is in (or that claim the user).
    pub fn push_presence_to_appservices(&self, user: &UserId, content: Value) -> Result<()> {
        if !self.appservices.any_ephemeral() {
            return Ok(());
        }
        let mut interested = self
            .appservices
            .matching(|appservice| appservice.receives_ephemeral && appservice.claims_user(user));
        for room_id in self.rooms.rooms_of_user(user, &ruma::events::room::member::MembershipState::Join)? {
            for appservice in self.appservices_for_room_ephemeral(&room_id)? {
                if !interested.iter().any(|known| Arc::ptr_eq(known, &appservice)) {
                    interested.push(appservice);
                }
            }
        }
        let event = serde_json::json!({ "type": "m.presence", "sender": user, "content": content });
        self.appservices.send(interested, &Queued::Ephemeral(event))
    }

    fn appservices_for_room_ephemeral(&self, room_id: &RoomId) -> Result<Vec<Arc<Appservice>>> {
        if !self.appservices.any_ephemeral() {
            return Ok(Vec::new());
        }
        let state = self.rooms.room(room_id)?.state;
        self.appservices
            .ephemeral_for_room(room_id, state, || self.rooms.joined_members(room_id))
    }
}
