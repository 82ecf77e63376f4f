//! Typed configuration: the embedded defaults (`config.example.toml`) < a TOML file <
//! `HEARTH_*` environment variables.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use ruma::OwnedServerName;
use serde::{Deserialize, Serialize};

/// The embedded default configuration, which is also the documented example.
pub const DEFAULT_CONFIG: &str = include_str!("../config.example.toml");

/// Everything Hearth can be configured with; `config.example.toml` documents each field.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server_name: OwnedServerName,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub registration: RegistrationMode,
    pub public_baseurl: Option<String>,
    pub max_request_size: usize,
    pub client_ip_header: Option<String>,
    pub admin_socket: Option<PathBuf>,
    /// How long the access tokens of clients that asked for a refresh token work; unset:
    /// they do not expire.
    #[serde(default, with = "humantime_serde")]
    pub access_token_lifetime: Option<std::time::Duration>,
    pub well_known: WellKnown,
    pub log: Log,
    pub storage: Storage,
    pub rate_limits: RateLimits,
    pub limits: Limits,
    pub media: Media,
    pub directory: Directory,
    pub tls: Tls,
    pub metrics: MetricsConfig,
    pub federation: Federation,
    /// The TURN server calls relay through.
    pub turn: Turn,
    /// Bridges and bots registered from files.
    pub appservices: Appservices,
    /// Mail: address confirmation, password resets, invitations, notifications. Unset: no mail.
    #[serde(default)]
    pub email: Option<Email>,
}

/// Application services registered from their registration YAML files.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Appservices {
    pub registration_files: Vec<PathBuf>,
}

/// The TURN server of voice and video calls, with coturn's shared-secret credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    pub uris: Vec<String>,
    pub shared_secret: Option<String>,
    #[serde(with = "humantime_serde")]
    pub ttl: std::time::Duration,
}

/// Sending mail, and what mails offer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Email {
    /// The SMTP server, in lettre's URL form (`smtp://`, `smtp://…?tls=required`, `smtps://`).
    pub smtp_url: String,
    /// The sender of every mail, e.g. `Hearth <hearth@example.org>`.
    pub from: String,
    /// How long an invitation by email stays usable.
    #[serde(default = "default_invite_lifetime", with = "humantime_serde")]
    pub invite_lifetime: std::time::Duration,
    /// How long a message stays unread before an email notification tells of it.
    #[serde(default = "default_notification_delay", with = "humantime_serde")]
    pub notification_delay: std::time::Duration,
}

fn default_invite_lifetime() -> std::time::Duration {
    std::time::Duration::from_secs(7 * 24 * 3600)
}

fn default_notification_delay() -> std::time::Duration {
    std::time::Duration::from_secs(10 * 60)
}

/// Who may register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationMode {
    Closed,
    Token,
    Open,
}

/// What `/.well-known/matrix/*` announces.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WellKnown {
    pub server: Option<String>,
    pub client: Option<String>,
    /// The page served as `support_page` at `/.well-known/matrix/support`.
    #[serde(default)]
    pub support_page: Option<String>,
    /// Who to contact about the server, served at `/.well-known/matrix/support`.
    #[serde(default)]
    pub support_contacts: Vec<SupportContact>,
}

/// A contact of `/.well-known/matrix/support`: a role and a Matrix ID or an email address.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportContact {
    /// `m.role.admin` or `m.role.security`.
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix_id: Option<ruma::OwnedUserId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_address: Option<String>,
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    pub format: LogFormat,
    pub level: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Plain,
    Json,
}

/// Where the store lives and how durable its writes are.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    pub backend: StorageBackend,
    pub postgres_url: Option<String>,
    pub postgres_ca_file: Option<PathBuf>,
    pub postgres_connections: usize,
    pub sync_writes: bool,
}

/// The database behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// Embedded, under the data directory: one process.
    Rocksdb,
    /// A PostgreSQL server's database, which several processes may share.
    Postgres,
}

/// Serving HTTPS directly.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub certificate: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// The Prometheus metrics listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    pub listen: Option<SocketAddr>,
}

/// The public room directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Directory {
    pub publish: DirectoryPublishers,
}

/// Who may list rooms in the public directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectoryPublishers {
    /// Room members allowed to set the room's canonical alias (its admins and moderators).
    RoomAdmins,
    /// Server admins only.
    ServerAdmins,
}

/// The media repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Media {
    pub max_upload_size: u64,
    pub legacy_unauthenticated_download: bool,
    pub max_pending_uploads: usize,
    #[serde(with = "humantime_serde")]
    pub pending_upload_lifetime: std::time::Duration,
    pub upload_rate: RateLimit,
    pub url_preview: UrlPreview,
}

/// URL previews.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlPreview {
    pub enabled: bool,
    pub max_page_size: usize,
    pub blocked_networks: Vec<ipnet::IpNet>,
    pub allowed_networks: Vec<ipnet::IpNet>,
}

/// Federation with other homeservers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Federation {
    pub enabled: bool,
    pub trusted_ca_file: Option<PathBuf>,
    pub blocked_networks: Vec<ipnet::IpNet>,
    pub allowed_networks: Vec<ipnet::IpNet>,
    pub allowed_servers: Vec<OwnedServerName>,
    pub denied_servers: Vec<OwnedServerName>,
}

/// Rate limits: per IP for logins and registrations, per user for messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    pub login: RateLimit,
    pub registration: RateLimit,
    pub message: RateLimit,
}

/// Timeouts and caps on what one client may hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: std::time::Duration,
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: std::time::Duration,
    pub max_connections: usize,
    pub max_long_polls_per_user: usize,
}

/// A token bucket: `burst` requests at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

impl Config {
    /// Loads the layered configuration. The error is one line naming the offending key.
    pub fn load(file: Option<&Path>) -> Result<Config, String> {
        let mut figment = Figment::from(Toml::string(DEFAULT_CONFIG));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(format!("configuration file {} does not exist", file.display()));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        figment = figment.merge(Env::prefixed("HEARTH_").split("__").ignore(&["config"]));
        let config: Config = figment.extract().map_err(describe)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        for (key, limit) in [
            ("rate_limits.login", self.rate_limits.login),
            ("rate_limits.registration", self.rate_limits.registration),
            ("rate_limits.message", self.rate_limits.message),
            ("media.upload_rate", self.media.upload_rate),
        ] {
            if !(limit.per_second > 0.0 && limit.per_second.is_finite()) || limit.burst == 0 {
                return Err(format!("configuration key `{key}`: per_second and burst must be positive"));
            }
        }
        for (key, value) in [
            ("limits.max_connections", self.limits.max_connections),
            ("limits.max_long_polls_per_user", self.limits.max_long_polls_per_user),
        ] {
            if value == 0 {
                return Err(format!("configuration key `{key}`: must be positive"));
            }
        }
        for (key, value) in [
            ("limits.header_read_timeout", self.limits.header_read_timeout),
            ("limits.body_read_timeout", self.limits.body_read_timeout),
        ] {
            if value.is_zero() {
                return Err(format!("configuration key `{key}`: must be longer than zero"));
            }
        }
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(format!("configuration key `log.level`: {error}"));
        }
        if self.tls.certificate.is_some() != self.tls.key.is_some() {
            return Err("configuration key `tls`: set both `certificate` and `key`, or neither".into());
        }
        if let Some(path) = &self.federation.trusted_ca_file {
            let readable = std::fs::read_to_string(path).map(|pem| pem.contains("-----BEGIN CERTIFICATE-----"));
            if !matches!(readable, Ok(true)) {
                return Err(format!(
                    "configuration key `federation.trusted_ca_file`: {} is not a readable PEM file of certificates",
                    path.display()
                ));
            }
        }
        if self.storage.backend == StorageBackend::Postgres {
            let Some(url) = &self.storage.postgres_url else {
                return Err("configuration key `storage.postgres_url`: must be set with `backend = \"postgres\"`".into());
            };
            if let Err(error) = url.parse::<tokio_postgres::Config>() {
                return Err(format!("configuration key `storage.postgres_url`: {error}"));
            }
            if self.storage.postgres_connections == 0 {
                return Err("configuration key `storage.postgres_connections`: must be positive".into());
            }
        }
        if self.max_request_size < 1024 {
            return Err("configuration key `max_request_size`: must be at least 1024 bytes".into());
        }
        for contact in &self.well_known.support_contacts {
            if !matches!(contact.role.as_str(), "m.role.admin" | "m.role.security") {
                return Err(format!(
                    "configuration key `well_known.support_contacts`: role {:?} is neither m.role.admin nor m.role.security",
                    contact.role
                ));
            }
            if contact.matrix_id.is_none() && contact.email_address.is_none() {
                return Err("configuration key `well_known.support_contacts`: each contact needs a matrix_id or an email_address".into());
            }
        }
        for file in &self.appservices.registration_files {
            crate::service::appservices::check_file(file, &self.server_name)
                .map_err(|reason| format!("configuration key `appservices.registration_files`: {reason}"))?;
        }
        if !self.turn.uris.is_empty() && self.turn.shared_secret.is_none() {
            return Err("configuration key `turn.shared_secret`: must be set with `turn.uris`".into());
        }
        if let Some(uri) = self
            .turn
            .uris
            .iter()
            .find(|uri| !["turn:", "turns:", "stun:"].iter().any(|scheme| uri.starts_with(scheme)))
        {
            return Err(format!(
                "configuration key `turn.uris`: {uri:?} is not a turn:, turns: or stun: URI"
            ));
        }
        if let Some(email) = &self.email {
            crate::service::mail::check_config(email)?;
            if self.public_baseurl.is_none() {
                return Err("configuration key `public_baseurl`: must be set with `[email]`, for the links in mails".into());
            }
        }
        if let Some(url) = &self.public_baseurl
            && !matches!(url::Url::parse(url), Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some())
        {
            return Err(format!("configuration key `public_baseurl`: {url:?} is not an http(s) URL"));
        }
        Ok(())
    }

    /// `public_baseurl` without a trailing slash, for the links in mails and pages.
    pub fn public_base(&self) -> &str {
        self.public_baseurl.as_deref().unwrap_or("").trim_end_matches('/')
    }

    /// Where the admin socket lives.
    pub fn admin_socket_path(&self) -> PathBuf {
        self.admin_socket.clone().unwrap_or_else(|| self.data_dir.join("admin.sock"))
    }

    /// The client base URL announced in `/.well-known/matrix/client`, if any.
    pub fn client_base_url(&self) -> Option<&str> {
        self.well_known.client.as_deref().or(self.public_baseurl.as_deref())
    }
}

/// Turns figment's error into one line: which key, what is wrong, where it came from.
fn describe(error: figment::Error) -> String {
    let key = error.path.join(".");
    let source = error
        .metadata
        .as_ref()
        .map(|meta| match &meta.source {
            Some(source) => format!(" (from {source})"),
            None => format!(" (from {})", meta.name),
        })
        .unwrap_or_default();
    if key.is_empty() {
        format!("configuration: {}{source}", error.kind)
    } else {
        format!("configuration key `{key}`: {}{source}", error.kind)
    }
}
