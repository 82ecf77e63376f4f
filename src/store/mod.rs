//! Storage: the one place that knows keys and bytes.
//!
//! The tables below live in one of two databases, chosen by `storage.backend`: RocksDB under
//! `<data_dir>/db`, a column family per busy table and one for the rest ([`rocks`], the embedded
//! default), or a PostgreSQL database, one PostgreSQL table per table ([`postgres`]). Every
//! logical change is one [`Batch`] (a RocksDB `WriteBatch`, or one PostgreSQL transaction): it
//! lands whole or not at all. A write acknowledged to a client survives a crash of the
//! process; with `storage.sync_writes` it is also durable on disk before the acknowledgement.
//!
//! Keys are byte strings whose parts are joined by [`SEP`] (0xFF, which never occurs in a Matrix
//! identifier), so "all rows of a user" is a prefix scan. Values are JSON unless said otherwise.
//!
//! # Tables
//!
//! | table                 | key                               | value                               |
//! |-----------------------|-----------------------------------|-------------------------------------|
//! | `meta`                | `schema_version`                  | u32, big-endian                     |
//! |                       | `signing_key`                     | [`crate::service::server_key`]'s `StoredKey` |
//! | `users`               | user ID                           | `service::accounts::UserRecord`     |
//! | `devices`             | user ID ‖ device ID               | `service::devices::Device`          |
//! | `access_tokens`       | token ID (the public part)        | `service::devices::TokenRecord` (SHA-256 of the secret, owner) |
//! | `profiles`            | user ID                           | `ruma::profile::UserProfile`        |
//! | `account_data`        | user ID ‖ room ID or empty ‖ type | the event content                   |
//! | `filters`             | user ID ‖ filter ID (u64, BE)     | the filter definition               |
//! | `registration_tokens` | token                             | `service::registration_tokens::RegistrationToken` |
//! | `media`               | server name ‖ media ID            | `service::media::MediaRecord`       |
//! | `media_by_user`       | uploader ‖ created_ts (u64, BE) ‖ server name ‖ media ID | empty     |
//! | `media_by_blob`       | content SHA-256 ‖ server name ‖ media ID | empty: who uses a file       |
//! | `media_pending`       | uploader ‖ media ID               | u64 expiry (ms), JSON: reserved IDs without content |
//! | `media_thumbnails`    | content SHA-256 ‖ `<w>x<h>-<method>` | the thumbnail's content type     |
//! | `rooms`               | room ID                           | `service::rooms::RoomRecord` (version, current state, extremities) |
//! | `events`              | event ID                          | `service::rooms::StoredEvent` (signed PDU, stream position, state before) |
//! | `timeline`            | room short ID (u64, BE) ‖ stream position (u64, BE) | event ID        |
//! | `state_snapshots`     | state hash (u64, BE)              | binary: parent ‖ depth ‖ (short state key, short event ID)*, see `service::rooms::state` |
//! | `short_ids`           | `k` type ‖ state key, or `e` event ID | u64, BE                         |
//! | `short_id_lookup`     | `k` or `e` ‖ short ID (u64, BE)   | the interned string                 |
//! | `memberships`         | user ID ‖ room ID                 | `service::rooms::MembershipRecord`  |
//! | `room_members`        | room ID ‖ user ID                 | the membership (`"join"`, …)        |
//! | `transactions`        | user ID ‖ device ID ‖ room ID ‖ transaction ID | event ID            |
//! | `relations`           | room ID ‖ parent event ID ‖ stream position (u64, BE) | JSON [rel_type, event ID, type] |
//! | `aliases`             | room alias                        | `service::rooms::directory::AliasRecord` |
//! | `room_aliases`        | room ID ‖ room alias              | empty                               |
//! | `public_rooms`        | room ID                           | empty: listed in the directory      |
//! | `receipts`            | room ID ‖ user ID ‖ receipt type ‖ thread | `service::rooms::receipts::Receipt` |
//! | `account_data_changes` | user ID ‖ stream position (u64, BE) | the `account_data` key that changed |
//! | `notifications`       | user ID ‖ stream position (u64, BE) | `service::push::NotificationRecord` |
//! | `room_notifications`  | user ID ‖ room ID ‖ stream position of the recording (u64, BE) | 1 byte: highlight, the event's stream position (u64, BE), then the thread root's event ID if in a thread (for unread counts; older rows lack the position and are keyed by it) |
//! | `unread_snapshots`    | user ID ‖ room ID                 | `service::unread::UnreadSnapshot`: the counts up to a position, and the read positions they assume |
//! | `pushers`             | user ID ‖ app ID ‖ pushkey         | ruma's `Pusher`                     |
//! | `to_device`           | user ID ‖ device ID ‖ stream position (u64, BE) index (u32, BE) | the message: `{type, sender, content}` |
//! | `to_device_transactions` | sender ‖ device ID ‖ transaction ID | empty: the transaction was sent   |
//! | `presence`            | user ID                           | `service::presence::PresenceRecord` |
//! | `presence_changes`    | stream position (u64, BE)         | the user whose presence changed     |
//! | `stream_rooms`        | stream position (u64, BE)         | the room ID of the event or receipt at it: what changed since a sync token |
//! | `device_keys`         | user ID ‖ device ID               | the device's signed identity keys, as uploaded |
//! | `one_time_keys`       | user ID ‖ device ID ‖ key ID (`algorithm:id`) | the one-time key, deleted when claimed |
//! | `fallback_keys`       | user ID ‖ device ID ‖ algorithm   | `service::keys::FallbackKey` (key, used flag) |
//! | `cross_signing_keys`  | user ID ‖ `master`, `self_signing` or `user_signing` | the cross-signing key, as uploaded |
//! | `key_signatures`      | target user ‖ device ID or public key ‖ signer ‖ signer's key ID | the signature (JSON string) |
//! | `device_list_changes` | stream position (u64, BE) ‖ user ID | empty: the user's devices or keys changed |
//! | `member_changes`      | stream position (u64, BE)         | JSON [room ID, user ID, membership]: whose membership changed |
//! | `backup_versions`     | user ID ‖ version (u64, BE)       | `service::key_backup::BackupVersion` |
//! | `backup_keys`         | user ID ‖ version (u64, BE) ‖ room ID ‖ session ID | the backed-up session key |
//! | `server_keys`         | server name                       | `service::federation::keys::ServerKeys`: its newest key document and every key seen |
//! | `federation_outbox`   | destination ‖ stream position (u64, BE) | event ID: to send, deleted once the destination took it |
//! | `federation_edus`     | destination ‖ EDU number (u64, BE) | `service::rooms::outbox::QueuedEdu` (the EDU, when queued): to send, deleted once the destination took it (typing and presence older than 5 minutes are dropped unsent) |
//! | `federation_transactions` | origin ‖ transaction ID       | the per-PDU results answered, so a retried transaction gets the same |
//! | `invite_states`       | membership event ID               | the stripped state shown with an invite to a room of other servers |
//! | `openid_tokens`       | token                             | `service::openid::OpenIdToken` (user, expiry) |
//! | `device_list_streams` | user ID                           | the stream ID (u64, JSON) of a local user's last device change told to other servers |
//! | `remote_device_lists` | user ID                           | `service::federation::device_lists::RemoteDeviceList`: another server's user's devices and cross-signing keys, as cached |
//! | `mail_outbox` | mail number (u64, BE) | `service::mail::QueuedMail`: to send, deleted once the SMTP server took it |
//! | `threepid_sessions` | session ID | `service::threepids::ValidationSession`: an address being confirmed by a mailed link |
//! | `threepids` | medium ‖ address | `service::threepids::ThreepidRecord`: the account the confirmed address belongs to |
//! | `user_threepids` | user ID ‖ medium ‖ address | empty: the addresses of an account |
//! | `identity_tokens` | token | `service::identity::IdentityAccount`: an account of the built-in identity service |
//! | `identity_bindings` | medium ‖ address | user ID (JSON): published to the identity service's lookup |
//! | `identity_hashes` | lookup hash (`sha256` of address, medium and pepper) | JSON [medium, address] |
//! | `email_digests` | user ID ‖ email address (an email pusher) | `service::email_notifications::DigestState`: what was mailed, per room |
//! | `email_invites` | invitation secret (the landing page's link) | `service::email_invites::EmailInvite` |
//! | `threads`             | room ID ‖ thread root's event ID  | u64 (BE): stream position of the thread's latest reply |
//! | `thread_activity`     | room ID ‖ stream position (u64, BE) | the thread root's event ID: threads by latest reply (a row whose position `threads` no longer names is stale) |
//! | `search_postings`     | term ‖ stream position (u64, BE)  | binary: field (u8) ‖ occurrences (u8) ‖ words in the field (u16, BE) ‖ room ID, see `service::rooms::search` |
//! | `refresh_tokens`      | token ID (the public part)        | `service::devices::RefreshRecord` (SHA-256 of the secret, owner) |
//! | `login_tokens`        | token                             | `service::devices::LoginTokenRecord`: a one-time `m.login.token` from `/login/get_token` |
//! | `receipt_changes`     | room ID ‖ stream position (u64, BE) | the `receipts` key written at that position (a row whose receipt has moved on is stale) |
//! | `reports`             | report number (u64, BE)           | `service::reports::Report`: a user's report of an event, room or user to the server's admins |
//! | `appservices`         | appservice ID                     | `service::appservices::StoredRegistration`: one registered with `hearth admin` (the YAML) |
//! | `appservice_outbox`   | appservice ID ‖ row number (u64, BE) | `service::appservices::Queued`: to push to the appservice, deleted once it took it |
//! | `appservice_directory` | room ID                          | JSON [appservice ID, network ID]: published in an appservice's room directory |
//!
//! Counters (stream positions, short IDs) keep their ceiling in `meta` as `counter.<name>`, see
//! [`Counter`].
//!
//! Writers: `accounts` writes `users` and `profiles`; `devices` writes `devices` and
//! `access_tokens`; `account_data` and `filters` their namesakes; `registration_tokens` its own
//! table and, on registration, together with `accounts` in one batch; `media` the `media*`
//! tables (the files themselves live under `<data_dir>/media/`); `keys` the key tables and
//! `device_list_changes`; `key_backup` the `backup_*` tables; `federation` `server_keys` and `federation_transactions`; `rooms` writes `federation_outbox` with each event and the sender deletes what was sent; `rooms` every room table
//! (`member_changes` among them), one batch per event.

mod counter;
mod group_commit;
mod migrations;
mod postgres;
mod rocks;
mod shared;

pub use counter::Counter;
pub use shared::{Shared, SharedLock};

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{Storage, StorageBackend};

/// A raw row: key and value.
pub type Row = (Vec<u8>, Vec<u8>);

/// Separator between the parts of a key.
pub const SEP: u8 = 0xFF;

/// Every table. In RocksDB a rarely written table's discriminant is its tag, the byte its keys
/// start with in the column family those tables share: a new table goes at the end, and none is
/// ever reordered or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    Meta,
    Users,
    Devices,
    AccessTokens,
    Profiles,
    AccountData,
    Filters,
    RegistrationTokens,
    Media,
    MediaByUser,
    MediaByBlob,
    MediaPending,
    MediaThumbnails,
    Rooms,
    Events,
    Timeline,
    StateSnapshots,
    ShortIds,
    ShortIdLookup,
    Memberships,
    RoomMembers,
    Transactions,
    Relations,
    Aliases,
    RoomAliases,
    PublicRooms,
    Receipts,
    StreamRooms,
    AccountDataChanges,
    Presence,
    Notifications,
    RoomNotifications,
    UnreadSnapshots,
    Pushers,
    ToDevice,
    ToDeviceTransactions,
    PresenceChanges,
    DeviceKeys,
    OneTimeKeys,
    FallbackKeys,
    CrossSigningKeys,
    KeySignatures,
    DeviceListChanges,
    MemberChanges,
    BackupVersions,
    BackupKeys,
    ServerKeys,
    FederationOutbox,
    FederationEdus,
    FederationTransactions,
    InviteStates,
    OpenIdTokens,
    DeviceListStreams,
    RemoteDeviceLists,
    MailOutbox,
    ThreepidSessions,
    Threepids,
    UserThreepids,
    IdentityTokens,
    IdentityBindings,
    IdentityHashes,
    EmailInvites,
    EmailDigests,
    Threads,
    ThreadActivity,
    SearchPostings,
    Reports,
    RefreshTokens,
    LoginTokens,
    ReceiptChanges,
    Appservices,
    AppserviceOutbox,
    AppserviceDirectory,
}

impl Table {
    /// Every table, in the order of their tags.
    pub const ALL: [Table; 73] = [
        Table::Meta,
        Table::Users,
        Table::Devices,
        Table::AccessTokens,
        Table::Profiles,
        Table::AccountData,
        Table::Filters,
        Table::RegistrationTokens,
        Table::Media,
        Table::MediaByUser,
        Table::MediaByBlob,
        Table::MediaPending,
        Table::MediaThumbnails,
        Table::Rooms,
        Table::Events,
        Table::Timeline,
        Table::StateSnapshots,
        Table::ShortIds,
        Table::ShortIdLookup,
        Table::Memberships,
        Table::RoomMembers,
        Table::Transactions,
        Table::Relations,
        Table::Aliases,
        Table::RoomAliases,
        Table::PublicRooms,
        Table::Receipts,
        Table::StreamRooms,
        Table::AccountDataChanges,
        Table::Presence,
        Table::Notifications,
        Table::RoomNotifications,
        Table::UnreadSnapshots,
        Table::Pushers,
        Table::ToDevice,
        Table::ToDeviceTransactions,
        Table::PresenceChanges,
        Table::DeviceKeys,
        Table::OneTimeKeys,
        Table::FallbackKeys,
        Table::CrossSigningKeys,
        Table::KeySignatures,
        Table::DeviceListChanges,
        Table::MemberChanges,
        Table::BackupVersions,
        Table::BackupKeys,
        Table::ServerKeys,
        Table::FederationOutbox,
        Table::FederationEdus,
        Table::FederationTransactions,
        Table::InviteStates,
        Table::OpenIdTokens,
        Table::DeviceListStreams,
        Table::RemoteDeviceLists,
        Table::MailOutbox,
        Table::ThreepidSessions,
        Table::Threepids,
        Table::UserThreepids,
        Table::IdentityTokens,
        Table::IdentityBindings,
        Table::IdentityHashes,
        Table::EmailInvites,
        Table::EmailDigests,
        Table::Threads,
        Table::ThreadActivity,
        Table::SearchPostings,
        Table::Reports,
        Table::RefreshTokens,
        Table::LoginTokens,
        Table::ReceiptChanges,
        Table::Appservices,
        Table::AppserviceOutbox,
        Table::AppserviceDirectory,
    ];

    /// The table's name: its PostgreSQL table's, and in RocksDB its column family's (a busy
    /// table's; a rarely written one's only in a store of an earlier Hearth).
    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Users => "users",
            Table::Devices => "devices",
            Table::AccessTokens => "access_tokens",
            Table::Profiles => "profiles",
            Table::AccountData => "account_data",
            Table::Filters => "filters",
            Table::RegistrationTokens => "registration_tokens",
            Table::Media => "media",
            Table::MediaByUser => "media_by_user",
            Table::MediaByBlob => "media_by_blob",
            Table::MediaPending => "media_pending",
            Table::MediaThumbnails => "media_thumbnails",
            Table::Rooms => "rooms",
            Table::Events => "events",
            Table::Timeline => "timeline",
            Table::StateSnapshots => "state_snapshots",
            Table::ShortIds => "short_ids",
            Table::ShortIdLookup => "short_id_lookup",
            Table::Memberships => "memberships",
            Table::RoomMembers => "room_members",
            Table::Transactions => "transactions",
            Table::Relations => "relations",
            Table::Aliases => "aliases",
            Table::RoomAliases => "room_aliases",
            Table::PublicRooms => "public_rooms",
            Table::Receipts => "receipts",
            Table::StreamRooms => "stream_rooms",
            Table::AccountDataChanges => "account_data_changes",
            Table::Presence => "presence",
            Table::Notifications => "notifications",
            Table::RoomNotifications => "room_notifications",
            Table::UnreadSnapshots => "unread_snapshots",
            Table::Pushers => "pushers",
            Table::ToDevice => "to_device",
            Table::ToDeviceTransactions => "to_device_transactions",
            Table::PresenceChanges => "presence_changes",
            Table::DeviceKeys => "device_keys",
            Table::OneTimeKeys => "one_time_keys",
            Table::FallbackKeys => "fallback_keys",
            Table::CrossSigningKeys => "cross_signing_keys",
            Table::KeySignatures => "key_signatures",
            Table::DeviceListChanges => "device_list_changes",
            Table::MemberChanges => "member_changes",
            Table::BackupVersions => "backup_versions",
            Table::BackupKeys => "backup_keys",
            Table::ServerKeys => "server_keys",
            Table::FederationOutbox => "federation_outbox",
            Table::FederationTransactions => "federation_transactions",
            Table::InviteStates => "invite_states",
            Table::OpenIdTokens => "openid_tokens",
            Table::DeviceListStreams => "device_list_streams",
            Table::RemoteDeviceLists => "remote_device_lists",
            Table::FederationEdus => "federation_edus",
            Table::MailOutbox => "mail_outbox",
            Table::ThreepidSessions => "threepid_sessions",
            Table::Threepids => "threepids",
            Table::UserThreepids => "user_threepids",
            Table::IdentityTokens => "identity_tokens",
            Table::IdentityBindings => "identity_bindings",
            Table::IdentityHashes => "identity_hashes",
            Table::EmailInvites => "email_invites",
            Table::EmailDigests => "email_digests",
            Table::Threads => "threads",
            Table::ThreadActivity => "thread_activity",
            Table::SearchPostings => "search_postings",
            Table::Reports => "reports",
            Table::RefreshTokens => "refresh_tokens",
            Table::LoginTokens => "login_tokens",
            Table::ReceiptChanges => "receipt_changes",
            Table::Appservices => "appservices",
            Table::AppserviceOutbox => "appservice_outbox",
            Table::AppserviceDirectory => "appservice_directory",
        }
    }
}

/// Builds a key from its parts, joined by [`SEP`].
pub fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut key = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push(SEP);
        }
        key.extend_from_slice(part);
    }
    key
}

/// Builds a prefix covering every key whose leading parts are `parts`.
pub fn prefix(parts: &[&[u8]]) -> Vec<u8> {
    let mut prefix = key(parts);
    prefix.push(SEP);
    prefix
}

/// The first key after every key starting with `prefix` (`None` when there is none: the
/// prefix is empty or all 0xFF bytes).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|byte| *byte != u8::MAX)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

/// Why the store could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    #[error("the data directory holds schema version {found}, newer than this Hearth's {supported}")]
    TooNew { found: u32, supported: u32 },
    #[error("the stored schema version is unreadable")]
    BadSchemaVersion,
    #[error("a stored counter is unreadable")]
    BadCounter,
    #[error("stored value in table {table} does not parse: {error}")]
    Corrupt { table: &'static str, error: serde_json::Error },
    #[error("the fsync of the WAL did not finish: {0}")]
    SyncAborted(String),
}

impl From<StoreError> for crate::error::Error {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Rocks(_) | StoreError::Postgres(_) => crate::error::Error::Storage(error.to_string()),
            other => crate::error::Error::Internal(other.to_string()),
        }
    }
}

/// The database behind the store.
enum Backend {
    RocksDb(rocks::RocksDb),
    Postgres(postgres::Postgres),
}

/// The opened database. Cheap to clone; every clone is the same database.
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
}

fn decode<T: DeserializeOwned>(table: Table, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|error| StoreError::Corrupt {
        table: table.name(),
        error,
    })
}

impl Store {
    /// Opens the configured database (RocksDB under `data_dir/db`, or PostgreSQL), creating
    /// it when new, and migrates it to the current schema.
    pub fn open(data_dir: &Path, storage: &Storage) -> Result<Store, StoreError> {
        let backend = match (&storage.backend, &storage.postgres_url) {
            (StorageBackend::Rocksdb, _) => Backend::RocksDb(rocks::RocksDb::open(data_dir, storage.sync_writes)?),
            (StorageBackend::Postgres, Some(url)) => Backend::Postgres(postgres::Postgres::open(url, storage)?),
            // The configuration refuses to load without it.
            (StorageBackend::Postgres, None) => return Err(StoreError::Postgres("storage.postgres_url is not set".into())),
        };
        let store = Store {
            backend: Arc::new(backend),
        };
        migrations::run(&store)?;
        if let Some(shared) = store.shared() {
            shared.started()?;
        }
        Ok(store)
    }

    /// What this process shares with the others on the same database (PostgreSQL); `None`
    /// for RocksDB, which one process has to itself.
    pub fn shared(&self) -> Option<&Shared> {
        match &*self.backend {
            Backend::RocksDb(_) => None,
            Backend::Postgres(db) => Some(&db.shared),
        }
    }

    /// Waits for the lock `name`, which serializes a writer with those of other processes on
    /// the same database (nothing to wait for with RocksDB: callers serialize in-process).
    pub async fn lock(&self, name: &[u8]) -> Result<StoreLock, StoreError> {
        Ok(StoreLock {
            _held: match self.shared() {
                Some(shared) => Some(shared.lock(name).await?),
                None => None,
            },
        })
    }

    /// [`Store::lock`], blocking the thread.
    pub fn lock_blocking(&self, name: &[u8]) -> Result<StoreLock, StoreError> {
        Ok(StoreLock {
            _held: self.shared().map(|shared| shared.lock_blocking(name)).transpose()?,
        })
    }

    /// Takes the lock `name` unless another process holds it.
    pub fn try_lock(&self, name: &[u8]) -> Result<Option<StoreLock>, StoreError> {
        match self.shared() {
            Some(shared) => Ok(shared.try_lock(name)?.map(|lock| StoreLock { _held: Some(lock) })),
            None => Ok(Some(StoreLock { _held: None })),
        }
    }

    /// Reserves `count` values of the counter at `key` from `from` on (or later, when another
    /// process reserved past it), durably; returns the first.
    pub fn reserve_counter(&self, key: &[u8], from: u64, count: u64) -> Result<u64, StoreError> {
        match &*self.backend {
            Backend::RocksDb(db) => {
                db.put_synced(Table::Meta, key, &(from + count).to_be_bytes())?;
                Ok(from)
            }
            Backend::Postgres(db) => db.reserve_counter(key, from, count),
        }
    }

    /// Whether the database is the embedded RocksDB one (backed up by `hearth admin backup`)
    /// rather than a PostgreSQL server's.
    pub fn is_embedded(&self) -> bool {
        matches!(*self.backend, Backend::RocksDb(_))
    }

    /// Reads one raw value.
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match &*self.backend {
            Backend::RocksDb(db) => db.get(table, key),
            Backend::Postgres(db) => db.get(table, key),
        }
    }

    /// Reads one JSON value.
    pub fn get_json<T: DeserializeOwned>(&self, table: Table, key: &[u8]) -> Result<Option<T>, StoreError> {
        self.get(table, key)?.map(|bytes| decode(table, &bytes)).transpose()
    }

    fn scan(&self, table: Table, prefix: &[u8], with_values: bool) -> Result<Vec<Row>, StoreError> {
        match &*self.backend {
            Backend::RocksDb(db) => db.scan(table, prefix, with_values),
            Backend::Postgres(db) => db.scan(table, prefix, with_values),
        }
    }

    /// Every row whose key starts with `prefix`, in key order, values decoded from JSON.
    pub fn scan_json<T: DeserializeOwned>(&self, table: Table, prefix: &[u8]) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
        self.scan(table, prefix, true)?
            .into_iter()
            .map(|(key, value)| Ok((key, decode(table, &value)?)))
            .collect()
    }

    /// The keys of every row whose key starts with `prefix`, in key order (for index tables,
    /// whose values are empty).
    pub fn scan_keys(&self, table: Table, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self.scan(table, prefix, false)?.into_iter().map(|(key, _)| key).collect())
    }

    /// Up to `limit` raw rows under `prefix`, starting at `start` (inclusive) and going forward
    /// or backward in key order.
    pub fn range(&self, table: Table, prefix: &[u8], start: &[u8], forward: bool, limit: usize) -> Result<Vec<Row>, StoreError> {
        let end = prefix_end(prefix);
        self.range_within(table, (prefix, end.as_deref()), start, forward, limit)
    }

    /// Up to `limit` raw rows from `start` (inclusive), forward or backward in key order, with
    /// keys from `lower` (inclusive) up to `upper` (exclusive; no end when `None`). Bounded so,
    /// the database stops at the bound instead of reading past it.
    pub fn range_within(
        &self,
        table: Table,
        bounds: (&[u8], Option<&[u8]>),
        start: &[u8],
        forward: bool,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        match &*self.backend {
            Backend::RocksDb(db) => db.range_within(table, bounds, start, forward, limit),
            Backend::Postgres(db) => db.range_within(table, bounds, start, forward, limit),
        }
    }

    /// How many keys under `prefix` there are from `start` (inclusive) backward, counting up to
    /// `cap` (keys only, nothing copied).
    pub fn count_keys_backward(&self, table: Table, prefix: &[u8], start: &[u8], cap: usize) -> Result<usize, StoreError> {
        match &*self.backend {
            Backend::RocksDb(db) => db.count_keys_backward(table, prefix, start, cap),
            Backend::Postgres(db) => db.count_keys_backward(table, prefix, start, cap),
        }
    }

    /// Reads many raw values of one table at once, in the order of `keys`.
    pub fn multi_get(&self, table: Table, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        match &*self.backend {
            Backend::RocksDb(db) => db.multi_get(table, keys),
            Backend::Postgres(db) => db.multi_get(table, keys),
        }
    }

    /// Whether a table has no rows at all.
    pub fn is_empty(&self, table: Table) -> Result<bool, StoreError> {
        match &*self.backend {
            Backend::RocksDb(db) => db.is_empty(table),
            Backend::Postgres(db) => db.is_empty(table),
        }
    }

    /// Starts a batch of writes that will land together.
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            writes: match &*self.backend {
                Backend::RocksDb(db) => Writes::RocksDb(db, rocksdb::WriteBatch::default()),
                Backend::Postgres(db) => Writes::Postgres(db, Vec::new()),
            },
            committed: Vec::new(),
        }
    }

    /// Returns once every write finished so far is durable, when `storage.sync_writes` asks for
    /// it (before a write is acknowledged); at once otherwise, and with PostgreSQL, whose
    /// commits are durable when they return.
    pub async fn durable(&self) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::RocksDb(db) => db.durable().await,
            Backend::Postgres(_) => Ok(()),
        }
    }

    /// Writes one value durably before returning, whatever `sync_writes` says (for markers
    /// that must never be lost). PostgreSQL writes its WAL in commit order, so such a value is
    /// never lost while anything written after it survives.
    pub fn put_synced(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::RocksDb(db) => db.put_synced(table, key, value),
            Backend::Postgres(db) => db.put(table, key, value),
        }
    }

    /// Writes a consistent checkpoint of the whole RocksDB database into `path` (which must
    /// not exist), as of now, while writes go on. PostgreSQL is backed up by its own tools.
    pub fn checkpoint(&self, path: &Path) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::RocksDb(db) => db.checkpoint(path),
            Backend::Postgres(_) => Err(StoreError::Postgres("back up PostgreSQL with its own tools".into())),
        }
    }

    /// Sizes and compaction figures of every table, as the database estimates them now (for
    /// the metrics).
    pub fn statistics(&self) -> StoreStatistics {
        match &*self.backend {
            Backend::RocksDb(db) => StoreStatistics::RocksDb(db.statistics()),
            Backend::Postgres(db) => StoreStatistics::Postgres(db.table_sizes().unwrap_or_default()),
        }
    }

    /// Flushes memtables and the WAL to disk: called on clean shutdown.
    pub fn flush(&self) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::RocksDb(db) => db.flush(),
            Backend::Postgres(_) => Ok(()),
        }
    }
}

/// A lock taken by [`Store::lock`]; released on drop.
#[must_use]
pub struct StoreLock {
    _held: Option<SharedLock>,
}

/// What [`Store::statistics`] reports.
#[derive(Debug)]
pub enum StoreStatistics {
    RocksDb(RocksDbStatistics),
    /// Each table's size on disk, indexes included (empty when the database did not answer).
    Postgres(Vec<(&'static str, u64)>),
}

/// RocksDB's figures.
#[derive(Debug)]
pub struct RocksDbStatistics {
    pub families: Vec<FamilyStatistics>,
    pub running_compactions: u64,
    pub running_flushes: u64,
    /// 1 when some column family waits for a compaction, else 0.
    pub compaction_pending: u64,
}

/// One column family's sizes, in bytes.
#[derive(Debug)]
pub struct FamilyStatistics {
    pub name: &'static str,
    pub sst_files_bytes: u64,
    pub live_data_bytes: u64,
    pub memtable_bytes: u64,
    pub pending_compaction_bytes: u64,
}

/// The writes of a batch, in the form of the backend that will apply them.
enum Writes<'a> {
    RocksDb(&'a rocks::RocksDb, rocksdb::WriteBatch),
    Postgres(&'a postgres::Postgres, Vec<postgres::Write>),
}

/// A set of writes applied atomically by [`Batch::commit`].
pub struct Batch<'a> {
    writes: Writes<'a>,
    /// What to do once the batch is written (wake whoever reads what it adds).
    committed: Vec<Box<dyn FnOnce() + Send>>,
}

impl Batch<'_> {
    /// Puts a raw value.
    pub fn put(&mut self, table: Table, key: &[u8], value: &[u8]) {
        match &mut self.writes {
            Writes::RocksDb(db, batch) => db.put(batch, table, key, value),
            Writes::Postgres(_, writes) => writes.push((table, key.to_vec(), Some(value.to_vec()))),
        }
    }

    /// Puts a value encoded as JSON.
    pub fn put_json<T: Serialize + ?Sized>(&mut self, table: Table, key: &[u8], value: &T) {
        // Serializing our own plain data types into a Vec cannot fail.
        let bytes = serde_json::to_vec(value).expect("stored types serialize");
        self.put(table, key, &bytes);
    }

    /// Deletes one row.
    pub fn delete(&mut self, table: Table, key: &[u8]) {
        match &mut self.writes {
            Writes::RocksDb(db, batch) => db.delete(batch, table, key),
            Writes::Postgres(_, writes) => writes.push((table, key.to_vec(), None)),
        }
    }

    /// Runs `then` once the batch is written (not at all if it fails).
    pub fn on_commit(&mut self, then: impl FnOnce() + Send + 'static) {
        self.committed.push(Box::new(then));
    }

    /// Writes the batch; when this returns `Ok`, the change is in the WAL (fsynced by
    /// [`Store::durable`] with `storage.sync_writes`), or committed in PostgreSQL. An empty
    /// batch writes nothing (a sync that finds nothing to delete costs no write).
    pub fn commit(self) -> Result<(), StoreError> {
        match self.writes {
            Writes::RocksDb(_, batch) if batch.is_empty() => {}
            Writes::Postgres(_, writes) if writes.is_empty() => {}
            Writes::RocksDb(db, batch) => db.write(batch)?,
            Writes::Postgres(db, writes) => db.write(writes)?,
        }
        for then in self.committed {
            then();
        }
        Ok(())
    }
}
