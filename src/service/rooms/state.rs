//! Room state as snapshots: "the state at event X" and "the current state" are one lookup each.
//!
//! State keys (`type`, `state_key`) and event IDs are interned to short u64 IDs. A state is a
//! map from short state key to short event ID, stored under a short *state hash* as a delta
//! over its parent state (the state before the event that changed it), with a full copy every
//! [`MAX_DELTA_DEPTH`] levels so a load reads at most that many rows. Events that do not change
//! state share their predecessor's state hash, so a message costs no state row at all.
//!
//! Most readers want a key or two of a state (a member's membership, the history visibility,
//! the state event an event replaces): they read it through the stored rows ([`StateLookup`]
//! on a [`StateRef`]), kept in memory as small as they are stored. A state is loaded whole
//! only where it is needed whole (a first sync, a room's current state), and only it is kept,
//! not the states between it and its full copy.

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
/// hundreds of entries, ~25 bytes each in a map, of a small one a few). A user's first sync in
/// 1,000 small rooms loads each room's state: the count cap keeps them all; the entries cap
/// (~6 MiB) keeps the current states of ~400 rooms of 600 members.
const CACHED_STATES: usize = 8_000;
const CACHED_STATE_ENTRIES: usize = 250_000;
/// Stored rows kept in memory, counted in entries (16 bytes each) plus [`ROW_OVERHEAD`] a row:
/// ~10 MiB at most. A big room's 600 joins are 600 rows of one entry and 19 full copies.
const CACHED_ROW_ENTRIES: usize = 500_000;
const ROW_OVERHEAD: usize = 6;
/// Event IDs of short event IDs kept in memory.
const CACHED_EVENT_IDS: usize = 20_000;

/// One stored state row: a delta over `parent`, or a full state when `parent` is `None`; its
/// entries sorted by key, one each (rows stored before they were may repeat a key: the later
/// entry counts, as when they were applied in order).
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
        Some(StateRow {
            parent,
            depth,
            entries: sorted_entries(entries),
        })
    }

    /// The event holding `key` in this row.
    fn get(&self, key: ShortStateKey) -> Option<ShortEventId> {
        let at = self.entries.binary_search_by_key(&key, |(key, _)| *key).ok()?;
        Some(self.entries[at].1)
    }
}

/// Entries sorted by key, the last of each key kept (as applying them in order would).
fn sorted_entries(mut entries: Vec<(ShortStateKey, ShortEventId)>) -> Vec<(ShortStateKey, ShortEventId)> {
    entries.reverse();
    // Stable: of one key's entries, the last given comes first and stays.
    entries.sort_by_key(|(key, _)| *key);
    entries.dedup_by_key(|(key, _)| *key);
    entries
}

/// A stored state read key by key, without loading it whole: the state `base` names (none:
/// the empty state before a room's first event) with `over` set over it (a state event's own
/// entry, for the state after it).
#[derive(Clone, Copy, Default)]
pub struct StateRef {
    pub base: Option<StateHash>,
    pub over: Option<(ShortStateKey, ShortEventId)>,
}

impl StateRef {
    /// The state a hash names.
    pub fn at(hash: StateHash) -> StateRef {
        StateRef {
            base: Some(hash),
            over: None,
        }
    }
}

/// A state to look keys up in: loaded whole, or stored.
pub trait StateLookup {
    /// The event holding `key` in this state.
    fn event_at(&self, states: &RoomStates, key: ShortStateKey) -> Result<Option<ShortEventId>>;
}

impl StateLookup for StateMap {
    fn event_at(&self, _: &RoomStates, key: ShortStateKey) -> Result<Option<ShortEventId>> {
        Ok(self.get(&key).copied())
    }
}

impl<T: StateLookup> StateLookup for Arc<T> {
    fn event_at(&self, states: &RoomStates, key: ShortStateKey) -> Result<Option<ShortEventId>> {
        T::event_at(self, states, key)
    }
}

impl StateLookup for StateRef {
    fn event_at(&self, states: &RoomStates, key: ShortStateKey) -> Result<Option<ShortEventId>> {
        match (self.over, self.base) {
            (Some((over, event)), _) if over == key => Ok(Some(event)),
            (_, Some(hash)) => states.event_at(hash, key),
            (_, None) => Ok(None),
        }
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
    rows: Mutex<RowCache>,
    /// Short event IDs resolved lately (a state lookup resolves one each time).
    event_ids: Mutex<HashMap<ShortEventId, OwnedEventId>>,
}

/// Loaded states by hash, and how many entries they hold together.
#[derive(Default)]
struct StateCache {
    states: HashMap<StateHash, Arc<StateMap>>,
    entries: usize,
}

/// Stored rows by hash, and their weight against [`CACHED_ROW_ENTRIES`].
#[derive(Default)]
struct RowCache {
    rows: HashMap<StateHash, Arc<StateRow>>,
    weight: usize,
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
            rows: Mutex::default(),
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

    /// A stored state, whole: from its rows, or from the nearest of its ancestors loaded.
    pub fn load(&self, hash: StateHash) -> Result<Arc<StateMap>> {
        let mut deltas = Vec::new();
        let mut at = hash;
        let mut state = loop {
            if let Some(loaded) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).states.get(&at).cloned() {
                if deltas.is_empty() {
                    return Ok(loaded);
                }
                break StateMap::clone(&loaded);
            }
            let row = self.row(at)?;
            match row.parent {
                Some(parent) => {
                    at = parent;
                    deltas.push(row);
                }
                None => break row.entries.iter().copied().collect(),
            }
        };
        for row in deltas.iter().rev() {
            state.extend(row.entries.iter().copied());
        }
        let state = Arc::new(state);
        self.remember(hash, &state);
        Ok(state)
    }

    /// A stored state, whole, with what a [`StateRef`] sets over it.
    pub fn load_ref(&self, state: StateRef) -> Result<Arc<StateMap>> {
        let base = match state.base {
            Some(hash) => self.load(hash)?,
            None => Arc::new(StateMap::new()),
        };
        Ok(match state.over {
            Some((key, event)) if base.get(&key) != Some(&event) => {
                let mut state = StateMap::clone(&base);
                state.insert(key, event);
                Arc::new(state)
            }
            _ => base,
        })
    }

    /// The event holding `key` in the state `hash` names: from the state if it is loaded, else
    /// from its rows, newest first.
    pub fn event_at(&self, hash: StateHash, key: ShortStateKey) -> Result<Option<ShortEventId>> {
        if let Some(loaded) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).states.get(&hash) {
            return Ok(loaded.get(&key).copied());
        }
        let mut at = hash;
        loop {
            let row = self.row(at)?;
            if let Some(event) = row.get(key) {
                return Ok(Some(event));
            }
            match row.parent {
                Some(parent) => at = parent,
                None => return Ok(None),
            }
        }
    }

    /// One stored row, kept once read.
    fn row(&self, hash: StateHash) -> Result<Arc<StateRow>> {
        if let Some(row) = self.rows.lock().unwrap_or_else(|e| e.into_inner()).rows.get(&hash) {
            return Ok(row.clone());
        }
        let bytes = self
            .store
            .get(Table::StateSnapshots, &hash.to_be_bytes())?
            .ok_or_else(|| Error::Internal(format!("state {hash} is missing")))?;
        let row = Arc::new(StateRow::decode(&bytes).ok_or_else(|| Error::Internal(format!("state {hash} is corrupt")))?);
        self.remember_row(hash, &row);
        Ok(row)
    }

    /// Stores the state that `changes` make of the state `parent` (none for a room's first
    /// event), in `batch`; returns its hash.
    pub fn save(&self, batch: &mut Batch<'_>, parent: Option<StateHash>, changes: &[(ShortStateKey, ShortEventId)]) -> Result<StateHash> {
        let changes = sorted_entries(changes.to_vec());
        let parent_depth = parent.map(|parent| self.row(parent)).transpose()?.map(|row| row.depth);
        let delta_depth = parent_depth.filter(|depth| *depth < MAX_DELTA_DEPTH).map(|depth| depth + 1);
        // The room moves on to the new state: a loaded parent (its current state) becomes the
        // new state rather than stay beside it (lookups in the parent read its rows); a full
        // copy is made whole anyway.
        let mut whole = parent.and_then(|parent| self.take_loaded(parent)).map(Arc::unwrap_or_clone);
        if whole.is_none() && delta_depth.is_none() {
            whole = Some(match parent {
                Some(parent) => StateMap::clone(&*self.load(parent)?),
                None => StateMap::new(),
            });
        }
        if let Some(whole) = &mut whole {
            whole.extend(changes.iter().copied());
        }
        let row = match delta_depth {
            Some(depth) => StateRow {
                parent,
                depth,
                entries: changes,
            },
            // A full copy, of the state made whole above.
            None => StateRow {
                parent: None,
                depth: 0,
                entries: whole.iter().flatten().map(|(key, event)| (*key, *event)).collect(),
            },
        };
        let hash = self.state_hashes.next()?;
        batch.put(Table::StateSnapshots, &hash.to_be_bytes(), &row.encode());
        // Kept before the batch commits: the hash is new and unreferenced until then, and a
        // failed commit leaves entries nobody looks up.
        self.remember_row(hash, &Arc::new(row));
        if let Some(whole) = whole {
            self.remember(hash, &Arc::new(whole));
        }
        Ok(hash)
    }

    /// Takes a loaded state out of the cache.
    fn take_loaded(&self, hash: StateHash) -> Option<Arc<StateMap>> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let loaded = cache.states.remove(&hash)?;
        cache.entries -= loaded.len();
        Some(loaded)
    }

    /// Caches a loaded or saved state, emptying the cache first when it holds too many entries.
    fn remember(&self, hash: StateHash, state: &Arc<StateMap>) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.states.len() >= CACHED_STATES || cache.entries + state.len() > CACHED_STATE_ENTRIES {
            *cache = StateCache::default();
        }
        cache.entries += state.len();
        if let Some(replaced) = cache.states.insert(hash, state.clone()) {
            cache.entries -= replaced.len();
        }
    }

    /// Caches a stored row, emptying the cache first when it is full.
    fn remember_row(&self, hash: StateHash, row: &Arc<StateRow>) {
        let weight = row.entries.len() + ROW_OVERHEAD;
        let mut cache = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        if cache.weight + weight > CACHED_ROW_ENTRIES {
            *cache = RowCache::default();
        }
        if cache.rows.insert(hash, row.clone()).is_none() {
            cache.weight += weight;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_DELTA_DEPTH, RoomStates, StateMap, StateRef, StateRow};
    use crate::config::{Storage, StorageBackend};
    use crate::store::{Store, Table};

    #[test]
    fn lookups_through_rows_agree_with_whole_states() {
        let data_dir = tempfile::tempdir().unwrap();
        let storage = Storage {
            backend: StorageBackend::Rocksdb,
            postgres_url: None,
            postgres_ca_file: None,
            postgres_connections: 1,
            sync_writes: false,
        };
        let store = Store::open(data_dir.path(), &storage).unwrap();
        let states = RoomStates::new(store.clone()).unwrap();
        // A chain long enough for full copies, each state changing a key of a few.
        let (mut hashes, mut expected) = (Vec::new(), Vec::new());
        let mut parent = None;
        let mut whole = StateMap::new();
        let mut batch = store.batch();
        for step in 0..(3 * MAX_DELTA_DEPTH as u64) {
            let changes = [(step % 7, 100 + step), (step % 7, 200 + step)];
            let hash = states.save(&mut batch, parent, &changes).unwrap();
            whole.insert(step % 7, 200 + step);
            hashes.push(hash);
            expected.push(whole.clone());
            parent = Some(hash);
        }
        batch.commit().unwrap();
        // Read again from the store alone, and then with the rows kept and states loaded.
        for states in [RoomStates::new(store.clone()).unwrap(), states] {
            for (hash, whole) in hashes.iter().zip(&expected) {
                for key in 0..8 {
                    assert_eq!(states.event_at(*hash, key).unwrap(), whole.get(&key).copied());
                }
                assert_eq!(*states.load(*hash).unwrap(), *whole);
            }
        }

        // A state event's own entry over the state before it.
        let over = StateRef {
            base: hashes.first().copied(),
            over: Some((5, 999)),
        };
        let loaded = RoomStates::new(store.clone()).unwrap().load_ref(over).unwrap();
        assert_eq!(loaded.get(&5), Some(&999));
        assert_eq!(loaded.get(&0), Some(&200));

        // Rows stored unsorted, with a key twice (before rows were sorted): the later counts.
        let row = StateRow {
            parent: None,
            depth: 0,
            entries: vec![(9, 1), (3, 2), (9, 3)],
        };
        let mut batch = store.batch();
        batch.put(Table::StateSnapshots, &u64::MAX.to_be_bytes(), &row.encode());
        batch.commit().unwrap();
        let states = RoomStates::new(store).unwrap();
        assert_eq!(states.event_at(u64::MAX, 9).unwrap(), Some(3));
        assert_eq!(states.event_at(u64::MAX, 3).unwrap(), Some(2));
        assert_eq!(states.event_at(u64::MAX, 4).unwrap(), None);
    }
}
