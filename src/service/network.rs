//! Which addresses the server may connect to on its own: URL previews fetch what users name, and
//! federation connects wherever a server name leads. Both go through [`GuardedResolver`], which
//! drops addresses in the blocked networks (loopback, private, link-local, … by default) unless
//! they are in the allowed ones, and check literal addresses with [`AddressPolicy::check_url`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::error::{Error, Result};

/// Which addresses the server may connect to.
#[derive(Debug, Clone)]
pub struct AddressPolicy {
    pub blocked: Vec<IpNet>,
    pub allowed: Vec<IpNet>,
}

impl AddressPolicy {
    pub fn permits(&self, ip: IpAddr) -> bool {
        // An IPv4 address mapped into IPv6 is judged as the IPv4 address it is.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.allowed.iter().any(|net| net.contains(&ip)) || !self.blocked.iter().any(|net| net.contains(&ip))
    }

    /// Refuses a URL whose host is a literal address the policy blocks (named hosts are
    /// checked when they are resolved).
    pub fn check_url(&self, url: &reqwest::Url) -> Result<()> {
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        match literal {
            Some(ip) if !self.permits(ip) => Err(Error::forbidden(format!("Connections to {ip} are not allowed"))),
            _ => Ok(()),
        }
    }
}

/// Host names whose addresses were found another way (federation's SRV records): the name stays
/// in the URL, so TLS verifies the certificate for it, while the connection goes to these.
pub type AddressOverrides = Arc<Mutex<HashMap<String, Vec<IpAddr>>>>;

/// Resolves names with the system resolver (or the overrides) and drops every address the
/// policy blocks.
pub struct GuardedResolver {
    pub policy: AddressPolicy,
    pub overrides: AddressOverrides,
}

impl GuardedResolver {
    pub fn new(policy: AddressPolicy) -> GuardedResolver {
        GuardedResolver {
            policy,
            overrides: AddressOverrides::default(),
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let overridden = self.overrides.lock().unwrap_or_else(|e| e.into_inner()).get(name.as_str()).cloned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = match overridden {
                Some(addresses) => addresses.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect(),
                None => tokio::net::lookup_host((name.as_str(), 0)).await?.collect(),
            };
            let addresses: Vec<SocketAddr> = found.into_iter().filter(|address| policy.permits(address.ip())).collect();
            if addresses.is_empty() {
                return Err(format!("{} has no address the server may connect to", name.as_str()).into());
            }
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}
