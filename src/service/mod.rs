//! What a homeserver does, independent of HTTP. Each file is one area; [`Services`] holds them
//! all and is the one context handed to the API layer and the admin commands.

pub mod account_data;
pub mod accounts;
pub mod appservices;
pub mod devices;
pub mod email_invites;
pub mod email_notifications;
pub mod federation;
pub mod filters;
pub mod identity;
mod kept;
pub mod key_backup;
pub mod keyed_locks;
pub mod keys;
pub mod mail;
pub mod media;
pub mod metrics;
pub mod network;
pub mod openid;
pub mod presence;
pub mod profiles;
pub mod push;
pub mod pushers;
pub mod rate_limit;
pub mod registration;
pub mod registration_tokens;
pub mod reports;
pub mod rooms;
pub mod server_key;
pub mod sliding_sync;
pub mod stream;
pub mod threepids;
pub mod to_device;
pub mod typing;
pub mod uia;
pub mod unread;
pub mod url_preview;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;
use rand::distributions::Alphanumeric;

use crate::config::Config;
use crate::error::Result;
use ruma::{DeviceId, OwnedDeviceId, UserId};

use crate::store::{Batch, Store};

/// Every service of one running server (or of one admin command on a stopped server).
pub struct Services {
    pub config: Config,
    pub store: Store,
    pub metrics: Arc<metrics::Metrics>,
    pub server_key: Arc<server_key::ServerKey>,
    pub rooms: rooms::Rooms,
    pub typing: typing::Typing,
    pub to_device: to_device::ToDevice,
    pub presence: presence::Presence,
    pub accounts: accounts::Accounts,
    pub devices: devices::Devices,
    pub keys: keys::Keys,
    pub key_backup: key_backup::KeyBackup,
    pub registration_tokens: registration_tokens::RegistrationTokens,
    pub openid: openid::OpenId,
    pub uia: uia::Uia,
    pub profiles: Arc<profiles::Profiles>,
    pub account_data: Arc<account_data::AccountData>,
    pub push: push::Push,
    pub pushers: pushers::Pushers,
    pub filters: filters::Filters,
    pub media: media::Media,
    pub rate_limits: rate_limit::RateLimiters,
    pub url_previews: url_preview::UrlPreviews,
    pub sliding_sync: sliding_sync::SlidingSync,
    pub federation: federation::Federation,
    pub mail: mail::Mailer,
    pub threepids: threepids::Threepids,
    pub identity: identity::Identity,
    pub reports: reports::Reports,
    pub appservices: Arc<appservices::Appservices>,
}

impl Services {
    /// Builds the services on an opened store; creates the server's signing key on first start.
    pub fn new(config: Config, store: Store) -> Result<Services> {
        let server_key = Arc::new(server_key::ServerKey::load_or_generate(&store)?);
        let stream = stream::Stream::new(&store)?;
        let profiles = Arc::new(profiles::Profiles::new(store.clone()));
        let account_data = Arc::new(account_data::AccountData::new(store.clone(), stream.clone()));
        let metrics = Arc::new(metrics::Metrics::new(store.clone()));
        let appservices = Arc::new(appservices::Appservices::new(
            &store,
            &config.server_name,
            &config.appservices.registration_files,
            stream.clone(),
        )?);
        let federation = federation::Federation::new(
            &config.federation,
            config.server_name.clone(),
            server_key.clone(),
            store.clone(),
            metrics.clone(),
        )?;
        let rooms = rooms::Rooms::new(
            store.clone(),
            config.server_name.clone(),
            server_key.clone(),
            stream.clone(),
            profiles.clone(),
            metrics.clone(),
            appservices.clone(),
        )?;
        Ok(Services {
            typing: typing::Typing::new(store.clone(), stream.clone(), rooms.room_changes()),
            rooms,
            metrics,
            server_key,
            accounts: accounts::Accounts::new(store.clone(), config.server_name.clone(), stream.clone())?,
            devices: devices::Devices::new(store.clone(), config.access_token_lifetime),
            keys: keys::Keys::new(store.clone(), stream.clone(), appservices.clone()),
            key_backup: key_backup::KeyBackup::new(store.clone()),
            registration_tokens: registration_tokens::RegistrationTokens::new(store.clone()),
            openid: openid::OpenId::new(store.clone()),
            uia: uia::Uia::default(),
            profiles: profiles.clone(),
            push: push::Push::new(store.clone(), account_data.clone(), appservices.clone()),
            pushers: pushers::Pushers::new(store.clone())?,
            account_data,
            to_device: to_device::ToDevice::new(store.clone(), stream.clone(), appservices.clone()),
            presence: presence::Presence::new(store.clone(), stream.clone())?,
            filters: filters::Filters::new(store.clone()),
            media: media::Media::new(store.clone(), &config),
            rate_limits: rate_limit::RateLimiters::new(&config.rate_limits, &config.media),
            url_previews: url_preview::UrlPreviews::new(config.media.url_preview.clone())?,
            sliding_sync: sliding_sync::SlidingSync::default(),
            federation,
            mail: mail::Mailer::new(&store, config.email.as_ref())?,
            threepids: threepids::Threepids::new(store.clone()),
            identity: identity::Identity::new(store.clone())?,
            reports: reports::Reports::new(&store)?,
            appservices,
            config,
            store,
        })
    }
}

use keys::KeyChange;

impl Services {
    /// Adds to `batch` the removal of devices of a user (those in `only`, or all but `keep`)
    /// with their keys and to-device inboxes; returns the devices that went.
    pub fn stage_delete_devices(
        &self,
        batch: &mut Batch<'_>,
        user_id: &UserId,
        only: Option<&[OwnedDeviceId]>,
        keep: Option<&DeviceId>,
    ) -> Result<Vec<OwnedDeviceId>> {
        let deleted = self.devices.stage_delete_many(batch, user_id, only, keep)?;
        for device in &deleted {
            self.keys.stage_delete_device(batch, user_id, device)?;
            self.to_device.stage_delete_inbox(batch, user_id, device)?;
        }
        Ok(deleted)
    }

    /// Deletes devices of a user (those in `only`, or all but `keep`) with their keys, and
    /// tells everyone who shares a room with the user.
    pub fn delete_devices(&self, user_id: &UserId, only: Option<&[OwnedDeviceId]>, keep: Option<&DeviceId>) -> Result<()> {
        let mut batch = self.store.batch();
        let deleted = self.stage_delete_devices(&mut batch, user_id, only, keep)?;
        if deleted.is_empty() {
            return Ok(());
        }
        self.keys
            .commit_device_list_change(&self.rooms, batch, user_id, KeyChange::Deleted(&deleted))
    }

    /// Whether the server can serve requests: the store answers reads.
    pub fn check_ready(&self) -> Result<()> {
        self.store.is_empty(crate::store::Table::Meta)?;
        Ok(())
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A random alphanumeric string from the OS-seeded thread RNG.
pub fn random_string(len: usize) -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}
