//! RocksDB storage: the one place that knows keys and bytes.
//!
//! The database lives in `<data_dir>/db`, is opened once per process, and has one column family
//! per table. Every logical change is one [`Batch`] (a RocksDB `WriteBatch`): it lands whole or
//! not at all. The WAL is always on, so a write acknowledged to a client survives a process crash;
//! with `storage.sync_writes` it is also fsynced before the acknowledgement, concurrent writers
//! sharing one fsync ([`group_commit`]).
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

pub use counter::Counter;

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, DB, DBRecoveryMode, Direction, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions};
use serde::Serialize;
use serde::de::DeserializeOwned;

use group_commit::GroupCommit;

/// A raw row: key and value.
pub type Row = (Vec<u8>, Vec<u8>);

/// Separator between the parts of a key.
pub const SEP: u8 = 0xFF;

/// Every table, one column family each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Every table, in the order their column families are created.
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

    /// The column family's name.
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
            StoreError::Rocks(error) => crate::error::Error::Storage(error),
            other => crate::error::Error::Internal(other.to_string()),
        }
    }
}

/// The opened database. Cheap to clone; every clone is the same database.
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
    /// With `storage.sync_writes`: the fsyncs that make writes durable before they are
    /// acknowledged.
    group_commit: Option<Arc<GroupCommit>>,
}

impl Store {
    /// Opens (or creates) the database under `data_dir/db` and migrates it to the current schema.
    pub fn open(data_dir: &Path, sync_writes: bool) -> Result<Store, StoreError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // A torn last WAL record after a power cut is dropped instead of refusing to start.
        options.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        options.set_keep_log_file_num(4);
        options.increase_parallelism(2);
        // Memory for a small server: the memtables of all tables together stay under 16 MiB
        // (a table's fills to 4 MiB before it is flushed), and one 16 MiB block cache, which
        // also holds the index and filter blocks, serves every table.
        options.set_db_write_buffer_size(16 << 20);
        options.set_write_buffer_size(4 << 20);
        let mut table_options = rocksdb::BlockBasedOptions::default();
        table_options.set_block_cache(&rocksdb::Cache::new_lru_cache(16 << 20));
        table_options.set_cache_index_and_filter_blocks(true);
        options.set_block_based_table_factory(&table_options);
        let families = Table::ALL.iter().map(|t| ColumnFamilyDescriptor::new(t.name(), options.clone()));
        let db = DB::open_cf_descriptors(&options, data_dir.join("db"), families)?;
        let db = Arc::new(db);
        let store = Store {
            group_commit: sync_writes.then(|| Arc::new(GroupCommit::new(db.clone()))),
            db,
        };
        migrations::run(&store)?;
        Ok(store)
    }

    fn cf(&self, table: Table) -> &rocksdb::ColumnFamily {
        // Every table's column family is created in `open`.
        self.db.cf_handle(table.name()).expect("column family created at open")
    }

    /// Reads one raw value.
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(table), key)?)
    }

    /// Reads one JSON value.
    pub fn get_json<T: DeserializeOwned>(&self, table: Table, key: &[u8]) -> Result<Option<T>, StoreError> {
        self.get(table, key)?
            .map(|bytes| {
                serde_json::from_slice(&bytes).map_err(|error| StoreError::Corrupt {
                    table: table.name(),
                    error,
                })
            })
            .transpose()
    }

    /// Every row whose key starts with `prefix`, in key order, values decoded from JSON.
    pub fn scan_json<T: DeserializeOwned>(&self, table: Table, prefix: &[u8]) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
        let mut rows = Vec::new();
        for item in self.db.iterator_cf(self.cf(table), IteratorMode::From(prefix, Direction::Forward)) {
            let (key, value) = item?;
            if !key.starts_with(prefix) {
                break;
            }
            let value = serde_json::from_slice(&value).map_err(|error| StoreError::Corrupt {
                table: table.name(),
                error,
            })?;
            rows.push((key.into_vec(), value));
        }
        Ok(rows)
    }

    /// The keys of every row whose key starts with `prefix`, in key order (for index tables,
    /// whose values are empty).
    pub fn scan_keys(&self, table: Table, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut keys = Vec::new();
        for item in self.db.iterator_cf(self.cf(table), IteratorMode::From(prefix, Direction::Forward)) {
            let (key, _) = item?;
            if !key.starts_with(prefix) {
                break;
            }
            keys.push(key.into_vec());
        }
        Ok(keys)
    }

    /// Up to `limit` raw rows under `prefix`, starting at `start` (inclusive) and going forward
    /// or backward in key order.
    pub fn range(&self, table: Table, prefix: &[u8], start: &[u8], forward: bool, limit: usize) -> Result<Vec<Row>, StoreError> {
        let end = prefix_end(prefix);
        self.range_within(table, (prefix, end.as_deref()), start, forward, limit)
    }

    /// Up to `limit` raw rows from `start` (inclusive), forward or backward in key order, with
    /// keys from `lower` (inclusive) up to `upper` (exclusive; no end when `None`). Bounded so,
    /// RocksDB stops at the bound instead of reading past it, and skips the files outside.
    pub fn range_within(
        &self,
        table: Table,
        (lower, upper): (&[u8], Option<&[u8]>),
        start: &[u8],
        forward: bool,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let direction = if forward { Direction::Forward } else { Direction::Reverse };
        let mut options = ReadOptions::default();
        if !lower.is_empty() {
            options.set_iterate_lower_bound(lower.to_vec());
        }
        if let Some(upper) = upper {
            options.set_iterate_upper_bound(upper.to_vec());
        }
        let mut rows = Vec::new();
        for item in self
            .db
            .iterator_cf_opt(self.cf(table), options, IteratorMode::From(start, direction))
        {
            if rows.len() >= limit {
                break;
            }
            let (key, value) = item?;
            rows.push((key.into_vec(), value.into_vec()));
        }
        Ok(rows)
    }

    /// How many keys under `prefix` there are from `start` (inclusive) backward, counting up to
    /// `cap` (keys only, nothing copied).
    pub fn count_keys_backward(&self, table: Table, prefix: &[u8], start: &[u8], cap: usize) -> Result<usize, StoreError> {
        let mut iterator = self.db.raw_iterator_cf(self.cf(table));
        iterator.seek_for_prev(start);
        let mut count = 0;
        while count < cap && iterator.key().is_some_and(|key| key.starts_with(prefix)) {
            count += 1;
            iterator.prev();
        }
        iterator.status()?;
        Ok(count)
    }

    /// Reads many raw values of one table at once (RocksDB's batched point reads), in the
    /// order of `keys`.
    pub fn multi_get(&self, table: Table, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.db
            .batched_multi_get_cf(self.cf(table), keys, false)
            .into_iter()
            .map(|value| Ok(value?.map(|slice| slice.to_vec())))
            .collect()
    }

    /// Whether a table has no rows at all.
    pub fn is_empty(&self, table: Table) -> Result<bool, StoreError> {
        match self.db.iterator_cf(self.cf(table), IteratorMode::Start).next() {
            None => Ok(true),
            Some(item) => item.map(|_| false).map_err(StoreError::from),
        }
    }

    /// Starts a batch of writes that will land together.
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            store: self,
            batch: WriteBatch::default(),
            committed: Vec::new(),
        }
    }

    /// Returns once every write finished so far is fsynced, when `storage.sync_writes` asks for
    /// it (before a write is acknowledged); at once otherwise.
    pub async fn durable(&self) -> Result<(), StoreError> {
        match &self.group_commit {
            Some(group_commit) => group_commit.durable().await,
            None => Ok(()),
        }
    }

    /// Writes one value and fsyncs the WAL before returning, whatever `sync_writes` says (for
    /// counter ceilings, which must never be lost).
    pub fn put_synced(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db.put_cf_opt(self.cf(table), key, value, &options)?;
        Ok(())
    }

    /// Writes a consistent checkpoint of the whole database into `path` (which must not
    /// exist), as of now, while writes go on.
    pub fn checkpoint(&self, path: &Path) -> Result<(), StoreError> {
        rocksdb::checkpoint::Checkpoint::new(&self.db)?.create_checkpoint(path)?;
        Ok(())
    }

    /// Sizes and compaction figures of every table, as RocksDB estimates them now (for the
    /// metrics). A figure RocksDB cannot give reads as 0.
    pub fn statistics(&self) -> StoreStatistics {
        use rocksdb::properties::{self as p, PropName};
        let figure =
            |table: Table, property: &PropName| self.db.property_int_value_cf(self.cf(table), property).ok().flatten().unwrap_or(0);
        let whole = |property: &PropName| self.db.property_int_value(property).ok().flatten().unwrap_or(0);
        StoreStatistics {
            tables: Table::ALL
                .iter()
                .map(|&table| TableStatistics {
                    name: table.name(),
                    sst_files_bytes: figure(table, p::TOTAL_SST_FILES_SIZE),
                    live_data_bytes: figure(table, p::ESTIMATE_LIVE_DATA_SIZE),
                    memtable_bytes: figure(table, p::CUR_SIZE_ALL_MEM_TABLES),
                    pending_compaction_bytes: figure(table, p::ESTIMATE_PENDING_COMPACTION_BYTES),
                })
                .collect(),
            running_compactions: whole(p::NUM_RUNNING_COMPACTIONS),
            running_flushes: whole(p::NUM_RUNNING_FLUSHES),
            compaction_pending: Table::ALL
                .iter()
                .map(|&table| figure(table, p::COMPACTION_PENDING))
                .max()
                .unwrap_or(0),
        }
    }

    /// Flushes memtables and the WAL to disk: called on clean shutdown.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_wal(true)?;
        for table in Table::ALL {
            self.db.flush_cf(self.cf(table))?;
        }
        Ok(())
    }
}

/// What [`Store::statistics`] reports.
#[derive(Debug)]
pub struct StoreStatistics {
    pub tables: Vec<TableStatistics>,
    pub running_compactions: u64,
    pub running_flushes: u64,
    /// 1 when some table waits for a compaction, else 0.
    pub compaction_pending: u64,
}

/// One table's sizes, in bytes.
#[derive(Debug)]
pub struct TableStatistics {
    pub name: &'static str,
    pub sst_files_bytes: u64,
    pub live_data_bytes: u64,
    pub memtable_bytes: u64,
    pub pending_compaction_bytes: u64,
}

/// A set of writes applied atomically by [`Batch::commit`].
pub struct Batch<'a> {
    store: &'a Store,
    batch: WriteBatch,
    /// What to do once the batch is written (wake whoever reads what it adds).
    committed: Vec<Box<dyn FnOnce() + Send>>,
}

impl Batch<'_> {
    /// Puts a raw value.
    pub fn put(&mut self, table: Table, key: &[u8], value: &[u8]) {
        self.batch.put_cf(self.store.cf(table), key, value);
    }

    /// Puts a value encoded as JSON.
    pub fn put_json<T: Serialize + ?Sized>(&mut self, table: Table, key: &[u8], value: &T) {
        // Serializing our own plain data types into a Vec cannot fail.
        let bytes = serde_json::to_vec(value).expect("stored types serialize");
        self.put(table, key, &bytes);
    }

    /// Deletes one row.
    pub fn delete(&mut self, table: Table, key: &[u8]) {
        self.batch.delete_cf(self.store.cf(table), key);
    }

    /// Runs `then` once the batch is written (not at all if it fails).
    pub fn on_commit(&mut self, then: impl FnOnce() + Send + 'static) {
        self.committed.push(Box::new(then));
    }

    /// Writes the batch; when this returns `Ok`, the change is in the WAL (fsynced by
    /// [`Store::durable`] with `storage.sync_writes`).
    pub fn commit(self) -> Result<(), StoreError> {
        self.store.db.write(self.batch)?;
        if let Some(group_commit) = &self.store.group_commit {
            group_commit.wrote();
        }
        for then in self.committed {
            then();
        }
        Ok(())
    }
}
