//! The connections of Simplified Sliding Sync (MSC4186): what each client connection has been
//! sent, so the next response carries only what is new to it.
//!
//! A `pos` token names one generation of a connection: the stream position it was made at,
//! the rooms the client has had in full by then, and the sticky parts of the request (lists
//! and extensions, which a client need not repeat). The state lives in memory: after a
//! restart, or for a generation that was pruned, the server answers `M_UNKNOWN_POS` and the
//! client starts the connection over, as the MSC provides. Each token carries the process's
//! random epoch, so a token of an earlier process is never mistaken for one of this.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ruma::api::client::sync::sync_events::v5::request;
use ruma::{OwnedDeviceId, OwnedRoomId, OwnedUserId};

use super::random_string;
use crate::error::{Error, Result};

/// Generations kept per connection: the newest, and the ones a retried request may name.
const KEPT_GENERATIONS: usize = 3;
/// Connections kept per device, the least recently used dropped first.
const CONNECTIONS_PER_DEVICE: usize = 8;

/// What one `pos` stands for.
#[derive(Debug, Clone, Default)]
pub struct Generation {
    /// The stream position the response was made at.
    pub stream: u64,
    /// Rooms the client has had in full (with `initial: true`).
    pub sent: BTreeSet<OwnedRoomId>,
    /// The lists as last requested.
    pub lists: BTreeMap<String, request::List>,
    /// The extensions as last requested.
    pub extensions: request::Extensions,
}

#[derive(Default)]
struct Connection {
    generations: BTreeMap<u64, Generation>,
    next: u64,
    last_used: u64,
}

/// Who a connection belongs to: user, device, and the client's `conn_id`.
pub type ConnectionKey = (OwnedUserId, OwnedDeviceId, String);

/// Every live sliding-sync connection.
pub struct SlidingSync {
    epoch: String,
    connections: Mutex<HashMap<ConnectionKey, Connection>>,
    /// Counts requests, to find a device's least recently used connection.
    uses: AtomicU64,
}

impl Default for SlidingSync {
    fn default() -> Self {
        SlidingSync {
            epoch: random_string(6),
            connections: Mutex::default(),
            uses: AtomicU64::new(0),
        }
    }
}

impl SlidingSync {
    /// The generation a `pos` token names; 400 `M_UNKNOWN_POS` when it is not (or no longer)
    /// known.
    pub fn generation(&self, key: &ConnectionKey, pos: &str) -> Result<Generation> {
        let unknown = || Error::unknown_pos(format!("Unknown position {pos}: start the connection again"));
        let (epoch, number) = pos.split_once('_').ok_or_else(unknown)?;
        let number: u64 = number.parse().map_err(|_| unknown())?;
        if epoch != self.epoch {
            return Err(unknown());
        }
        let connections = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        connections
            .get(key)
            .and_then(|connection| connection.generations.get(&number))
            .cloned()
            .ok_or_else(unknown)
    }

    /// Records a new generation of a connection after the one the request named (older ones
    /// after it are dropped: the client has moved on) and returns its `pos` token.
    pub fn record(&self, key: &ConnectionKey, base: Option<&str>, generation: Generation) -> String {
        let use_number = self.uses.fetch_add(1, Ordering::Relaxed) + 1;
        let mut connections = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        // A request without `pos` starts the connection afresh.
        if base.is_none() {
            connections.remove(key);
        }
        let connection = connections.entry(key.clone()).or_default();
        connection.next += 1;
        let number = connection.next;
        connection.last_used = use_number;
        connection.generations.insert(number, generation);
        while connection.generations.len() > KEPT_GENERATIONS {
            connection.generations.pop_first();
        }
        let device_connections: Vec<(ConnectionKey, u64)> = connections
            .iter()
            .filter(|(other, _)| other.0 == key.0 && other.1 == key.1)
            .map(|(other, connection)| (other.clone(), connection.last_used))
            .collect();
        if device_connections.len() > CONNECTIONS_PER_DEVICE
            && let Some((oldest, _)) = device_connections.iter().min_by_key(|(_, used)| *used)
        {
            connections.remove(oldest);
        }
        format!("{}_{number}", self.epoch)
    }
}
