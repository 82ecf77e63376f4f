//! Federation: talking to other homeservers. Outgoing requests are signed with this server's
//! key (X-Matrix) and sent where server discovery says, over TLS verified against the webpki
//! roots and `federation.trusted_ca_file`, to addresses the network policy permits; incoming
//! ones are verified against the origin's key before any handler runs. Every remote server is
//! treated as hostile: answers are bounded in size and time.

pub mod client;
pub mod device_lists;
pub mod discovery;
pub mod edus;
pub mod gaps;
pub mod history;
pub mod invites;
pub mod keys;
pub mod knocks;
pub mod media;
pub mod membership;
pub mod pdu;
pub mod queries;
pub mod sender;
pub mod transactions;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ruma::{OwnedServerName, ServerName};

use super::keyed_locks::KeyedLocks;
use super::metrics::Metrics;
use super::network::{AddressOverrides, AddressPolicy, GuardedResolver};
use super::server_key::ServerKey;
use crate::config;
use crate::error::{Error, Result};
use crate::store::Store;

/// How long one request to another server may take, answer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting to another server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle pooled connection is reused: below the 10 s after which Hearth (its
/// `limits.header_read_timeout`) and other servers close idle keep-alive connections, so a
/// request is never written into a connection the other side is closing at that moment (it
/// would fail as "connection closed before message completed").
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// This server's side of federation.
pub struct Federation {
    config: config::Federation,
    server_name: OwnedServerName,
    key: Arc<ServerKey>,
    store: Store,
    http: reqwest::Client,
    policy: AddressPolicy,
    overrides: AddressOverrides,
    discovery: discovery::Discovery,
    /// Other servers' keys, as stored.
    key_cache: Mutex<HashMap<OwnedServerName, Arc<keys::ServerKeys>>>,
    /// One key fetch per server at a time.
    key_fetches: KeyedLocks<OwnedServerName>,
    /// One fetch per remote media ID at a time.
    media_fetches: KeyedLocks<String>,
    /// How sending to each destination goes.
    pub sender: sender::Sender,
    metrics: Arc<Metrics>,
}

impl Federation {
    pub fn new(
        config: &config::Federation,
        server_name: OwnedServerName,
        key: Arc<ServerKey>,
        store: Store,
        metrics: Arc<Metrics>,
    ) -> Result<Federation> {
        let policy = AddressPolicy {
            blocked: config.blocked_networks.clone(),
            allowed: config.allowed_networks.clone(),
        };
        let resolver = GuardedResolver::new(policy.clone());
        let overrides = resolver.overrides.clone();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls_config(config)?)
            .dns_resolver(Arc::new(resolver))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .tcp_nodelay(true)
            .user_agent(concat!("Hearth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Internal(format!("federation client: {e}")))?;
        Ok(Federation {
            config: config.clone(),
            server_name,
            key,
            store,
            http,
            policy,
            overrides,
            discovery: discovery::Discovery::new(),
            key_cache: Mutex::new(HashMap::new()),
            key_fetches: KeyedLocks::default(),
            media_fetches: KeyedLocks::default(),
            sender: sender::Sender::default(),
            metrics,
        })
    }

    /// Whether the server-server API is served and anything sent.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// Refuses (403) a server this one does not federate with: itself, one in `denied_servers`,
    /// one missing from a non-empty `allowed_servers`, or any when federation is off.
    pub fn check_server(&self, server: &ServerName) -> Result<()> {
        if !self.config.enabled {
            return Err(Error::forbidden("Federation is disabled on this server"));
        }
        if server == self.server_name {
            return Err(Error::forbidden("That is this server"));
        }
        let listed = |list: &[OwnedServerName]| list.iter().any(|name| name == server);
        if listed(&self.config.denied_servers) || (!self.config.allowed_servers.is_empty() && !listed(&self.config.allowed_servers)) {
            return Err(Error::forbidden(format!("This server does not federate with {server}")));
        }
        Ok(())
    }
}

/// TLS for outgoing federation: the webpki roots and the certificates of `trusted_ca_file`,
/// always verified.
fn tls_config(config: &config::Federation) -> Result<rustls::ClientConfig> {
    let mut tls = crate::tls::client_config(config.trusted_ca_file.as_deref(), "federation.trusted_ca_file").map_err(Error::Internal)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tls)
}
