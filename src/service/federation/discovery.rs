//! Server discovery: where to connect for a server name, as the Server-Server API says.
//!
//! 1. An IP literal is the address, with its port or 8448.
//! 2. A host name with an explicit port is that host and port.
//! 3. Otherwise `https://<name>/.well-known/matrix/server` may delegate to another name, which
//!    is then resolved by the same rules (literal, explicit port), then through SRV records
//!    (`_matrix-fed._tcp`, then the deprecated `_matrix._tcp`), then on port 8448.
//! 4. Without delegation: SRV records of the name, then the name on port 8448.
//!
//! The URL keeps the (delegated) host name, so TLS verifies the certificate for it and it is
//! the `Host` header; an SRV target's addresses reach the connection through the resolver's
//! overrides. Delegations are cached: a day when found, an hour when there was none.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;
use ruma::ServerName;
use serde::Deserialize;

use super::Federation;
use crate::error::{Error, Result};

/// The default federation port.
const DEFAULT_PORT: u16 = 8448;
/// How long a found delegation is believed.
const DELEGATION_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// How long "no delegation" is believed.
const NO_DELEGATION_LIFETIME: Duration = Duration::from_secs(3600);
/// The largest `.well-known/matrix/server` document read.
const MAX_WELL_KNOWN_BYTES: usize = 64 * 1024;

/// Cached delegations and the DNS resolver for SRV records.
pub struct Discovery {
    delegations: Mutex<HashMap<String, (Instant, Option<String>)>>,
    dns: Option<TokioResolver>,
}

impl Discovery {
    pub fn new() -> Discovery {
        let dns = match TokioResolver::builder_tokio() {
            Ok(builder) => match builder.build() {
                Ok(resolver) => Some(resolver),
                Err(error) => {
                    tracing::warn!(%error, "no DNS resolver: SRV records of other servers will not be looked up");
                    None
                }
            },
            Err(error) => {
                tracing::warn!(%error, "no DNS configuration: SRV records of other servers will not be looked up");
                None
            }
        };
        Discovery {
            delegations: Mutex::new(HashMap::new()),
            dns,
        }
    }
}

#[derive(Deserialize)]
struct WellKnownServer {
    #[serde(rename = "m.server")]
    server: String,
}

/// A host and an optional port, split off a server name or delegation.
fn split_host_port(name: &str) -> (&str, Option<u16>) {
    let (host, port) = match name.rsplit_once(':') {
        // A bare IPv6 address has colons but no brackets; a port follows the closing bracket.
        Some((host, port)) if !host.contains(':') || host.ends_with(']') => (host, port.parse().ok()),
        _ => (name, None),
    };
    (host, port)
}

fn is_ip_literal(host: &str) -> bool {
    host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok()
}

impl Federation {
    /// The base URL (`https://host:port`) to reach `server` at.
    pub async fn base_url(&self, server: &ServerName) -> Result<String> {
        let (host, port) = split_host_port(server.as_str());
        if is_ip_literal(host) || port.is_some() {
            return Ok(format!("https://{host}:{}", port.unwrap_or(DEFAULT_PORT)));
        }
        if let Some(delegated) = self.delegation(host).await {
            let (delegated_host, delegated_port) = split_host_port(&delegated);
            if is_ip_literal(delegated_host) || delegated_port.is_some() {
                return Ok(format!("https://{delegated_host}:{}", delegated_port.unwrap_or(DEFAULT_PORT)));
            }
            return Ok(self.srv_or_default(delegated_host).await);
        }
        Ok(self.srv_or_default(host).await)
    }

    /// The delegation a host's `.well-known/matrix/server` names, cached.
    async fn delegation(&self, host: &str) -> Option<String> {
        if let Some((fetched, delegation)) = self.discovery.delegations.lock().unwrap_or_else(|e| e.into_inner()).get(host) {
            let lifetime = if delegation.is_some() {
                DELEGATION_LIFETIME
            } else {
                NO_DELEGATION_LIFETIME
            };
            if fetched.elapsed() < lifetime {
                return delegation.clone();
            }
        }
        let delegation = self.fetch_well_known(host).await;
        if let Err(error) = &delegation {
            tracing::debug!(%host, %error, "no server delegation");
        }
        let delegation = delegation.ok();
        self.discovery
            .delegations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host.to_owned(), (Instant::now(), delegation.clone()));
        delegation
    }

    async fn fetch_well_known(&self, host: &str) -> Result<String> {
        let url = format!("https://{host}/.well-known/matrix/server");
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| Error::bad_gateway(format!("{url}: {e}")))?;
        if !response.status().is_success() {
            return Err(Error::bad_gateway(format!("{url} answered {}", response.status())));
        }
        let body = super::client::read_limited(response, MAX_WELL_KNOWN_BYTES).await?;
        let document: WellKnownServer = serde_json::from_slice(&body).map_err(|e| Error::bad_gateway(format!("{url}: {e}")))?;
        let delegated = document.server.trim().to_owned();
        ServerName::parse(&delegated).map_err(|e| Error::bad_gateway(format!("{url}: m.server is not a server name: {e}")))?;
        Ok(delegated)
    }

    /// The first SRV record of `host` (`_matrix-fed._tcp`, then `_matrix._tcp`), with the
    /// target's addresses given to the resolver for `host`; `host:8448` without one.
    async fn srv_or_default(&self, host: &str) -> String {
        if let Some(dns) = &self.discovery.dns {
            for service in ["_matrix-fed._tcp", "_matrix._tcp"] {
                let Ok(records) = dns.srv_lookup(format!("{service}.{host}.")).await else {
                    continue;
                };
                let best = records
                    .answers()
                    .iter()
                    .filter_map(|record| match &record.data {
                        RData::SRV(srv) => Some(srv),
                        _ => None,
                    })
                    .min_by_key(|srv| (srv.priority, u16::MAX - srv.weight));
                let Some(record) = best else {
                    continue;
                };
                let target = record.target.to_utf8();
                let Ok(addresses) = tokio::net::lookup_host((target.trim_end_matches('.'), record.port)).await else {
                    continue;
                };
                let addresses: Vec<IpAddr> = addresses.map(|address| address.ip()).collect();
                if addresses.is_empty() {
                    continue;
                }
                self.overrides
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(host.to_owned(), addresses);
                return format!("https://{host}:{}", record.port);
            }
        }
        format!("https://{host}:{DEFAULT_PORT}")
    }
}

#[cfg(test)]
mod tests {
    use super::{is_ip_literal, split_host_port};

    #[test]
    fn server_names_split_into_host_and_port() {
        assert_eq!(split_host_port("example.org"), ("example.org", None));
        assert_eq!(split_host_port("example.org:8449"), ("example.org", Some(8449)));
        assert_eq!(split_host_port("127.0.0.1:443"), ("127.0.0.1", Some(443)));
        assert_eq!(split_host_port("[::1]:8448"), ("[::1]", Some(8448)));
        assert_eq!(split_host_port("[::1]"), ("[::1]", None));
        assert!(is_ip_literal("127.0.0.1") && is_ip_literal("[::1]"));
        assert!(!is_ip_literal("example.org"));
    }
}
