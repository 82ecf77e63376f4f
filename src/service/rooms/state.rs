//! Room state as snapshots: "the state at event X" and "the current state" are one lookup each.
//!
//! State keys (`type`, `state_key`) and event IDs are interned to short u64 IDs. A state is a
//! map from short state key to short event ID, stored under a short *state hash* as a delta
//! over its parent state (the state before the event that changed it), with a full copy every
//! [`MAX_DELTA_DEPTH`] levels so a load reads at most that many rows. Events that do not change
//! state share their predecessor's state hash, so a message costs no state row at all.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use ruma::events::StateEventType;
use ruma::{EventId, OwnedEventId};

use crate::error::{Error, Result};
use crate::store::{Batch, Counter, SEP, Store, Table};

/// Short ID of an interned (`type`, `state_key`).
pub type ShortStateKey = u64;
/// Short ID of an interned event ID.
pub type ShortEventId = u64;
/// Short ID of a stored state.
pub type StateHash = u64;
/// A room state: which event holds each state key.
pub type StateMap = BTreeMap<ShortStateKey, ShortEventId>;

/// Deltas chain at most this deep before a full copy is stored.
const MAX_DELTA_DEPTH: u32 = 32;
/// Loaded states kept in memory, counted in states and in entries (a state of a big room is
/// hundreds of entries, of a small one a few). A busy community's syncs read many big states
/// (a sliding-sync timeline of 50 joins to a room of ~600 members reads 50 of them): the
/// entries cap keeps ~2,000 of those, and a cap of a million entries made syncs spend half
/// their time loading states again (measured: 8 messages/s delivered instead of 19). A user's
/// first sync in 1,000 small rooms loads each room's state and its ancestors (~6 states a room):
/// the count cap keeps them all.
const CACHED_STATES: usize = 8_000;
const CACHED_STATE_ENTRIES: usize = 1_300_000;
/// Event IDs of short event IDs kept in memory.
const CACHED_EVENT_IDS: usize = 20_000;

/// One stored state row: a delta over `parent`, or a full state when `parent` is `None`.
struct StateRow {
    parent: Option<StateHash>,
    depth: u32,
    entries: Vec<(ShortStateKey, ShortEventId)>,
}

impl StateRow {
    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(12 + self.entries.len() * 16);
        bytes.extend_from_slice(&self.parent.unwrap_or(0).to_be_bytes());
        bytes.extend_from_slice(&self.depth.to_be_bytes());
        for (key, event) in &self.entries {
            bytes.extend_from_slice(&key.to_be_bytes());
            bytes.extend_from_slice(&event.to_be_bytes());
        }
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<StateRow> {
        if bytes.len() < 12 || !(bytes.len() - 12).is_multiple_of(16) {
            return None;
        }
        let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let parent = Some(u64_at(0)).filter(|p| *p != 0);
        let depth = u32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes"));
        let entries = (12..bytes.len()).step_by(16).map(|at| (u64_at(at), u64_at(at + 8))).collect();
        Some(StateRow { parent, depth, entries })
    }
}

/// Interned IDs and stored states.
pub struct RoomStates {
    store: Store,
    short_ids: Counter,
    state_hashes: Counter,
    /// Serializes the creation of short IDs, so one string never gets two (with the store's
    /// `interning` lock, across processes).
    interning: Mutex<()>,
    state_keys: RwLock<HashMap<(StateEventType, String), ShortStateKey>>,
    state_keys_by_short: RwLock<HashMap<ShortStateKey, (StateEventType, String)>>,
    cache: Mutex<StateCache>,
    /// Short event IDs resolved lately (a state lookup resolves one each time).
    event_ids: Mutex<HashMap<ShortEventId, OwnedEventId>>,
}

/// Loaded states by hash, and how many entries they hold together.
#[derive(Default)]
struct StateCache {
    states: HashMap<StateHash, (Arc<StateMap>, u32)>,
    entries: usize,
}

fn state_key_string(kind: &StateEventType, state_key: &str) -> Vec<u8> {
    let mut bytes = kind.to_string().into_bytes();
    bytes.push(SEP);
    bytes.extend_from_slice(state_key.as_bytes());
    bytes
}

impl RoomStates {
    pub fn new(store: Store) -> Result<RoomStates> {
        Ok(RoomStates {
            short_ids: Counter::open(&store, "short_id")?,
            state_hashes: Counter::open(&store, "state_hash")?,
            store,
            interning: Mutex::new(()),
            state_keys: RwLock::new(HashMap::new()),
            state_keys_by_short: RwLock::new(HashMap::new()),
            cache: Mutex::default(),
            event_ids: Mutex::new(HashMap::new()),
        })
    }

    /// The short ID of a string of `kind` (`b'k'` state key, `b'e'` event), created if `create`.
    fn intern(&self, kind: u8, string: &[u8], create: bool) -> Result<Option<u64>> {
        let mut key = vec![kind];
        key.extend_from_slice(string);
        let read = |store: &Store| -> Result<Option<u64>> {
            Ok(store
                .get(Table::ShortIds, &key)?
                .and_then(|bytes| bytes.as_slice().try_into().ok().map(u64::from_be_bytes)))
        };
        if let Some(short) = read(&self.store)? {
            return Ok(Some(short));
        }
        if !create {
            return Ok(None);
        }
        let _interning = self.interning.lock().unwrap_or_else(|e| e.into_inner());
        let _interning_elsewhere = self.store.lock_blocking(b"interning")?;
        if let Some(short) = read(&self.store)? {
            return Ok(Some(short));
        }
        let short = self.short_ids.next()?;
        let mut reverse = vec![kind];
        reverse.extend_from_slice(&short.to_be_bytes());
        let mut batch = self.store.batch();
        batch.put(Table::ShortIds, &key, &short.to_be_bytes());
        batch.put(Table::ShortIdLookup, &reverse, string);
        batch.commit()?;
        Ok(Some(short))
    }

    /// The short ID of a state key; `None` if no state event ever used it.
    pub fn short_state_key(&self, kind: &StateEventType, state_key: &str, create: bool) -> Result<Option<ShortStateKey>> {
        let pair = (kind.clone(), state_key.to_owned());
        if let Some(short) = self.state_keys.read().unwrap_or_else(|e| e.into_inner()).get(&pair) {
            return Ok(Some(*short));
        }
        let short = self.intern(b'k', &state_key_string(kind, state_key), create)?;
        if let Some(short) = short {
            self.state_keys
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(pair.clone(), short);
            self.state_keys_by_short
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(short, pair);
        }
        Ok(short)
    }

    /// The (`type`, `state_key`) of a short state key.
    pub fn state_key(&self, short: ShortStateKey) -> Result<(StateEventType, String)> {
        if let Some(pair) = self.state_keys_by_short.read().unwrap_or_else(|e| e.into_inner()).get(&short) {
            return Ok(pair.clone());
        }
        let mut key = vec![b'k'];
        key.extend_from_slice(&short.to_be_bytes());
        let bytes = self
            .store
            .get(Table::ShortIdLookup, &key)?
            .ok_or_else(|| Error::Internal(format!("unknown short state key {short}")))?;
        let mut parts = bytes.splitn(2, |b| *b == SEP);
        let kind = StateEventType::from(String::from_utf8_lossy(parts.next().unwrap_or_default()).as_ref());
        let state_key = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
        let pair = (kind, state_key);
        self.state_keys_by_short
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(short, pair.clone());
        Ok(pair)
    }

    /// The short ID of an event, created on first use.
    pub fn short_event_id(&self, event_id: &EventId) -> Result<ShortEventId> {
        self.intern(b'e', event_id.as_bytes(), true)?
            .ok_or_else(|| Error::Internal("short event ID not created".into()))
    }

    /// The event ID of a short event ID.
    pub fn event_id(&self, short: ShortEventId) -> Result<OwnedEventId> {
        if let Some(event_id) = self.event_ids.lock().unwrap_or_else(|e| e.into_inner()).get(&short) {
            return Ok(event_id.clone());
        }
        let mut key = vec![b'e'];
        key.extend_from_slice(&short.to_be_bytes());
        let bytes = self
            .store
            .get(Table::ShortIdLookup, &key)?
            .ok_or_else(|| Error::Internal(format!("unknown short event ID {short}")))?;
        let event_id =
            EventId::parse(String::from_utf8_lossy(&bytes).as_ref()).map_err(|e| Error::Internal(format!("stored event ID: {e}")))?;
        let mut cached = self.event_ids.lock().unwrap_or_else(|e| e.into_inner());
        if cached.len() >= CACHED_EVENT_IDS {
            cached.clear();
        }
        cached.insert(short, event_id.clone());
        Ok(event_id)
    }

    /// A stored state, whole.
    pub fn load(&self, hash: StateHash) -> Result<Arc<StateMap>> {
        Ok(self.load_with_depth(hash)?.0)
    }

    fn load_with_depth(&self, hash: StateHash) -> Result<(Arc<StateMap>, u32)> {
        if let Some(cached) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).states.get(&hash) {
            return Ok(cached.clone());
        }
        let bytes = self
            .store
            .get(Table::StateSnapshots, &hash.to_be_bytes())?
            .ok_or_else(|| Error::Internal(format!("state {hash} is missing")))?;
        let row = StateRow::decode(&bytes).ok_or_else(|| Error::Internal(format!("state {hash} is corrupt")))?;
        let mut map = match row.parent {
            Some(parent) => StateMap::clone(&*self.load(parent)?),
            None => StateMap::new(),
        };
        map.extend(row.entries);
        let loaded = (Arc::new(map), row.depth);
        self.remember(hash, &loaded);
        Ok(loaded)
    }

    /// Stores the state that `changes` make of the state `parent` (none for a room's first
    /// event), in `batch`; returns its hash and the whole new state.
    pub fn save(
        &self,
        batch: &mut Batch<'_>,
        parent: Option<StateHash>,
        changes: &[(ShortStateKey, ShortEventId)],
    ) -> Result<(StateHash, Arc<StateMap>)> {
        let (mut map, parent_depth) = match parent {
            Some(parent) => {
                let (map, depth) = self.load_with_depth(parent)?;
                (StateMap::clone(&map), Some(depth))
            }
            None => (StateMap::new(), None),
        };
        map.extend(changes.iter().copied());
        let row = match parent_depth {
            Some(depth) if depth < MAX_DELTA_DEPTH => StateRow {
                parent,
                depth: depth + 1,
                entries: changes.to_vec(),
            },
            _ => StateRow {
                parent: None,
                depth: 0,
                entries: map.iter().map(|(k, v)| (*k, *v)).collect(),
            },
        };
        let hash = self.state_hashes.next()?;
        batch.put(Table::StateSnapshots, &hash.to_be_bytes(), &row.encode());
        let map = Arc::new(map);
        // Cached only once the batch commits is not needed: the hash is new and unreferenced
        // until then, and a failed commit leaves an entry nobody looks up.
        self.remember(hash, &(map.clone(), row.depth));
        Ok((hash, map))
    }

    /// Caches a loaded or saved state, emptying the cache first when it holds too many entries.
    fn remember(&self, hash: StateHash, state: &(Arc<StateMap>, u32)) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.states.len() >= CACHED_STATES || cache.entries + state.0.len() > CACHED_STATE_ENTRIES {
            *cache = StateCache::default();
        }
        cache.entries += state.0.len();
        if let Some((replaced, _)) = cache.states.insert(hash, state.clone()) {
            cache.entries -= replaced.len();
        }
    }
}
