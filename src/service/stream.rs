//! The server-wide stream: one increasing position orders everything a client syncs, and the
//! wake-ups that end long-polling syncs.
//!
//! A writer takes a [`Ticket`] before its batch and completes it after the commit (or drops it
//! when the write failed). Readers only read up to [`Stream::visible`], the highest position
//! below which every ticket is complete, so a position committed out of order is never skipped.
//! The users a write concerns are woken when its position becomes visible, not before: a sync
//! woken early would read below it and then sleep through it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ruma::{OwnedUserId, UserId};
use tokio::sync::Notify;

use crate::error::Result;
use crate::store::{Counter, Store};

/// Positions in flight and the wake-ups waiting for them.
#[derive(Default)]
struct Progress {
    in_flight: BTreeSet<u64>,
    /// The highest position handed out.
    highest: u64,
    /// Completed positions above the visible one, with the users to wake when it gets there.
    waiting: BTreeMap<u64, Vec<OwnedUserId>>,
}

/// The stream positions and the per-user wake-ups.
pub struct Stream {
    counter: Counter,
    progress: Mutex<Progress>,
    wakers: Mutex<HashMap<OwnedUserId, Arc<Notify>>>,
    shutting_down: AtomicBool,
}

/// A position being written; complete it once the batch is committed.
pub struct Ticket<'a> {
    stream: &'a Stream,
    position: u64,
    done: bool,
}

impl Ticket<'_> {
    /// The position this write takes.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Marks the write committed; `users` are woken once it is visible.
    pub fn complete(mut self, users: Vec<OwnedUserId>) {
        self.done = true;
        self.stream.finish(self.position, users);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.stream.finish(self.position, Vec::new());
        }
    }
}

impl Stream {
    pub fn new(store: &Store) -> Result<Stream> {
        let counter = Counter::open(store, "stream")?;
        let start = counter.next()?;
        Ok(Stream {
            counter,
            progress: Mutex::new(Progress {
                highest: start,
                ..Progress::default()
            }),
            wakers: Mutex::new(HashMap::new()),
            shutting_down: AtomicBool::new(false),
        })
    }

    /// Takes the next position for a write.
    pub fn begin(&self) -> Result<Ticket<'_>> {
        self.begin_after_gap(0)
    }

    /// Takes a position for a write after leaving `gap` positions unused below it (a room
    /// joined through another server keeps them for the history it backfills).
    pub fn begin_after_gap(&self, gap: u64) -> Result<Ticket<'_>> {
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        let position = self.counter.next_after_gap(gap)?;
        progress.in_flight.insert(position);
        progress.highest = progress.highest.max(position);
        Ok(Ticket {
            stream: self,
            position,
            done: false,
        })
    }

    /// The highest position whose writes, and all writes below it, are committed.
    pub fn visible(&self) -> u64 {
        let progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        Self::visible_of(&progress)
    }

    fn visible_of(progress: &Progress) -> u64 {
        match progress.in_flight.first() {
            Some(lowest) => lowest - 1,
            None => progress.highest,
        }
    }

    fn finish(&self, position: u64, users: Vec<OwnedUserId>) {
        let woken = {
            let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
            progress.in_flight.remove(&position);
            if !users.is_empty() {
                progress.waiting.entry(position).or_default().extend(users);
            }
            let visible = Self::visible_of(&progress);
            let still_waiting = progress.waiting.split_off(&(visible + 1));
            std::mem::replace(&mut progress.waiting, still_waiting)
        };
        let wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        for user in woken.into_values().flatten() {
            if let Some(notify) = wakers.get(&user) {
                notify.notify_waiters();
            }
        }
    }

    /// The wake-up of a user: create its `notified()` future *before* reading the stream.
    pub fn waker(&self, user: &UserId) -> Arc<Notify> {
        let mut wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        if wakers.len() > 100_000 {
            wakers.retain(|_, notify| Arc::strong_count(notify) > 1);
        }
        wakers.entry(user.to_owned()).or_default().clone()
    }

    /// Ends every long poll now and every later one at once: the server is shutting down, and
    /// its in-flight requests should finish instead of waiting out their timeouts.
    pub fn shut_down(&self) {
        // Set before waking, so a poll that subscribes after the wake-ups still sees it.
        self.shutting_down.store(true, Ordering::SeqCst);
        for notify in self.wakers.lock().unwrap_or_else(|e| e.into_inner()).values() {
            notify.notify_waiters();
        }
    }

    /// Whether [`Stream::shut_down`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}
