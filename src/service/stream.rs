//! The server-wide stream: one increasing position orders everything a client syncs, and the
//! wake-ups that end long-polling syncs.
//!
//! A writer takes a [`Ticket`] before its batch and completes it after the commit (or drops it
//! when the write failed). Readers only read up to [`Stream::visible`], the highest position
//! below which every ticket is complete, so a position committed out of order is never skipped.
//! The users a write concerns are woken when its position becomes visible, not before: a sync
//! woken early would read below it and then sleep through it. A write that is no hurry (another
//! member's read receipt, a presence change) nudges them instead: a long poll nudged waits
//! [`NUDGE_DELAY`] for more before it answers, so a burst of receipts in a big room is one
//! answer per member rather than one per receipt.
//!
//! With RocksDB the positions come from a counter and the tickets in flight are this
//! process's. With PostgreSQL several processes write: positions are taken in the database,
//! and every process follows the others' through their announcements (`store::shared`): a
//! completion announces the users to wake and, before them, what the other processes must
//! apply first (a typing change, a cache entry to drop), so nobody is woken before that.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use ruma::{OwnedUserId, UserId};
use tokio::sync::Notify;

use crate::error::Result;
use crate::store::{Counter, Store};

/// Positions in flight and the wake-ups waiting for them.
#[derive(Default)]
struct Progress {
    /// Positions taken and not completed, with when this process learnt of them.
    in_flight: BTreeMap<u64, Instant>,
    /// The highest position handed out.
    highest: u64,
    /// Completed positions above the visible one, with the users to wake or nudge when it gets
    /// there.
    waiting: BTreeMap<(u64, Wake), Vec<Audience>>,
    /// This process's completions not heard back yet (shared database only).
    unheard: BTreeSet<u64>,
}

/// How a write tells the users it concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Wake {
    /// Their long polls answer at once.
    Now,
    /// Their long polls answer within [`NUDGE_DELAY`], with whatever else came meanwhile.
    Soon,
}

/// The users a write wakes or nudges: a list shared with whoever made it (a room's members
/// come from the room's cache), so a write in a big room copies no user ID; with their wakers
/// when they were found ahead ([`Stream::resolved`]), so it looks none up either.
#[derive(Clone, Default)]
pub struct Audience {
    users: Arc<[OwnedUserId]>,
    /// This process's wakers of `users`, when found ahead.
    wakers: Option<Arc<[Arc<Waker>]>>,
}

impl Audience {
    /// The users woken or nudged.
    pub fn users(&self) -> &[OwnedUserId] {
        &self.users
    }
}

impl From<Vec<OwnedUserId>> for Audience {
    fn from(users: Vec<OwnedUserId>) -> Audience {
        users.into_iter().collect()
    }
}

impl FromIterator<OwnedUserId> for Audience {
    fn from_iter<I: IntoIterator<Item = OwnedUserId>>(users: I) -> Audience {
        Audience {
            users: users.into_iter().collect(),
            wakers: None,
        }
    }
}

/// A user's wake-ups; a long poll subscribes to both before it reads the stream.
#[derive(Default)]
pub struct Waker {
    pub now: Notify,
    pub soon: Notify,
    /// The user's long polls waiting.
    long_polls: AtomicUsize,
}

impl Waker {
    /// Counts a long poll of the user as waiting until the returned guard drops; `None` when
    /// `max` are waiting already.
    pub fn long_poll(&self, max: usize) -> Option<WaitingPoll<'_>> {
        let before = self.long_polls.fetch_add(1, Ordering::SeqCst);
        let waiting = WaitingPoll(&self.long_polls);
        (before < max).then_some(waiting)
    }
}

/// A long poll counted among its user's waiting ones (see [`Waker::long_poll`]).
pub struct WaitingPoll<'a>(&'a AtomicUsize);

impl Drop for WaitingPoll<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Each user's wake-ups, hashed with foldhash: a write to users not found ahead looks each up.
type Wakers = HashMap<OwnedUserId, Arc<Waker>, foldhash::fast::RandomState>;

/// What applies another process's announcement of one kind (its text after the kind).
type Handler = Arc<dyn Fn(&str) + Send + Sync>;

/// The stream positions and the per-user wake-ups.
pub struct Stream {
    store: Store,
    /// Where positions come from with RocksDB (`None`: from the shared database).
    counter: Option<Counter>,
    progress: Mutex<Progress>,
    /// Woken when this process hears one of its completions back (shared database only).
    heard_back: Notify,
    /// An entry stays while an [`Audience`] holds it, so the waker found ahead is the one a
    /// poll waits on.
    wakers: Mutex<Wakers>,
    handlers: Mutex<HashMap<char, Handler>>,
    shutting_down: AtomicBool,
}

/// A position being written; complete it once the batch is committed.
pub struct Ticket<'a> {
    stream: &'a Stream,
    position: u64,
    /// Announcements for the other processes, sent with the completion.
    notes: Vec<String>,
    done: bool,
}

impl Ticket<'_> {
    /// The position this write takes.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Tells the other processes on a shared database, with the completion and before its
    /// wake-ups, `text` for the handler of `kind` (see [`Stream::on_announcement`]).
    pub fn announce(&mut self, kind: char, text: String) {
        if self.stream.counter.is_none() {
            self.notes.push(format!("{kind} {text}"));
        }
    }

    /// Marks the write committed; `users` are woken once it is visible.
    pub fn complete(self, users: impl Into<Audience>) {
        self.finish(vec![(Wake::Now, users.into())]);
    }

    /// Marks the write committed; once it is visible, `woken` are woken and `nudged` nudged.
    pub fn complete_nudging(self, woken: impl Into<Audience>, nudged: impl Into<Audience>) {
        self.finish(vec![(Wake::Now, woken.into()), (Wake::Soon, nudged.into())]);
    }

    fn finish(mut self, wakes: Vec<(Wake, Audience)>) {
        self.done = true;
        let notes = std::mem::take(&mut self.notes);
        self.stream.finish(self.position, wakes, notes);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.stream.finish(self.position, Vec::new(), Vec::new());
        }
    }
}

/// How long a nudged long poll waits for more before it answers.
pub const NUDGE_DELAY: Duration = Duration::from_millis(250);
/// The longest wait for this process to hear its own completions back.
const HEAR_BACK: Duration = Duration::from_secs(2);
/// How long a position may stay in flight before the processes that died are looked for.
const STUCK: Duration = Duration::from_secs(5);
/// The most bytes of one announcement (PostgreSQL takes up to 8,000).
const MAX_NOTE: usize = 7_000;

impl Stream {
    pub fn new(store: &Store) -> Result<Arc<Stream>> {
        let counter = Counter::open(store, "stream")?;
        let Some(shared) = store.shared() else {
            let start = counter.next()?;
            return Ok(Arc::new(Stream::with(store, Some(counter), start)));
        };
        // A store moved from RocksDB brings its positions: the shared stream starts above them.
        let notes = shared.take_notes();
        let snapshot = shared.stream_snapshot(counter.recorded_ceiling())?;
        let stream = Arc::new(Stream::with(store, None, snapshot.highest));
        {
            let mut progress = stream.progress.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            progress
                .in_flight
                .extend(snapshot.in_flight.into_iter().map(|position| (position, now)));
        }
        if let Some(notes) = notes {
            let (listener, floor) = (Arc::downgrade(&stream), snapshot.highest);
            std::thread::Builder::new()
                .name("hearth-stream".into())
                .spawn(move || follow(listener, notes, floor))
                .map_err(|error| crate::error::Error::Internal(format!("cannot start the stream listener: {error}")))?;
        }
        Ok(stream)
    }

    fn with(store: &Store, counter: Option<Counter>, highest: u64) -> Stream {
        Stream {
            store: store.clone(),
            counter,
            progress: Mutex::new(Progress {
                highest,
                ..Progress::default()
            }),
            heard_back: Notify::new(),
            wakers: Mutex::default(),
            handlers: Mutex::new(HashMap::new()),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Takes the next position for a write.
    pub fn begin(&self) -> Result<Ticket<'_>> {
        self.begin_after_gap(0)
    }

    /// Takes a position for a write after leaving `gap` positions unused below it (a room
    /// joined through another server keeps them for the history it backfills).
    pub fn begin_after_gap(&self, gap: u64) -> Result<Ticket<'_>> {
        let position = match &self.counter {
            Some(counter) => {
                let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
                let position = counter.next_after_gap(gap)?;
                Self::taken(&mut progress, position);
                position
            }
            None => {
                let shared = self.store.shared().expect("a stream without counter is shared");
                let position = shared.take_position(gap)?;
                Self::taken(&mut self.progress.lock().unwrap_or_else(|e| e.into_inner()), position);
                position
            }
        };
        Ok(Ticket {
            stream: self,
            position,
            notes: Vec::new(),
            done: false,
        })
    }

    fn taken(progress: &mut Progress, position: u64) {
        progress.in_flight.entry(position).or_insert_with(Instant::now);
        progress.highest = progress.highest.max(position);
    }

    /// The highest position whose writes, and all writes below it, are committed.
    pub fn visible(&self) -> u64 {
        let progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        Self::visible_of(&progress)
    }

    fn visible_of(progress: &Progress) -> u64 {
        match progress.in_flight.keys().next() {
            Some(lowest) => lowest - 1,
            None => progress.highest,
        }
    }

    fn finish(&self, position: u64, wakes: Vec<(Wake, Audience)>, notes: Vec<String>) {
        let Some(shared) = self.store.shared() else {
            self.completed(position, wakes);
            return;
        };
        let process = shared.process();
        let mut sent: Vec<String> = notes.into_iter().map(|note| format!("{process} {note}")).collect();
        for (wake, users) in &wakes {
            let kind = match wake {
                Wake::Now => 'w',
                Wake::Soon => 's',
            };
            let mut listed = String::new();
            for user in users.users() {
                if listed.len() + user.as_str().len() > MAX_NOTE {
                    sent.push(format!("{process} {kind} {position}{listed}"));
                    listed.clear();
                }
                listed.push(' ');
                listed.push_str(user.as_str());
            }
            if !listed.is_empty() {
                sent.push(format!("{process} {kind} {position}{listed}"));
            }
        }
        sent.push(format!("{process} c {position}"));
        self.progress.lock().unwrap_or_else(|e| e.into_inner()).unheard.insert(position);
        if let Err(error) = shared.complete_position(position, sent.clone()) {
            // Until it is announced, every process's stream stops below it: keep trying.
            tracing::error!(%error, position, "announcing a completed stream position failed; retrying");
            let store = self.store.clone();
            std::thread::spawn(move || {
                while let Some(shared) = store.shared()
                    && shared.complete_position(position, sent.clone()).is_err()
                {
                    std::thread::sleep(Duration::from_secs(1));
                }
            });
        }
    }

    /// Returns once this process has heard back every completion it announced before the
    /// call (at most [`HEAR_BACK`] later): they are visible here then, so a client reads its own
    /// writes. At once with RocksDB, where a completion is visible when it is made.
    pub async fn heard_back(&self) {
        if self.counter.is_some() {
            return;
        }
        let deadline = tokio::time::Instant::now() + HEAR_BACK;
        let Some(target) = self.progress.lock().unwrap_or_else(|e| e.into_inner()).unheard.last().copied() else {
            return;
        };
        loop {
            let heard = self.heard_back.notified();
            tokio::pin!(heard);
            heard.as_mut().enable();
            let unheard = self.progress.lock().unwrap_or_else(|e| e.into_inner()).unheard.first().copied();
            if unheard.is_none_or(|lowest| lowest > target) {
                return;
            }
            if tokio::time::timeout_at(deadline, heard).await.is_err() {
                return;
            }
        }
    }

    /// Records a completed position and wakes whoever it and the positions it made visible
    /// concern.
    fn completed(&self, position: u64, wakes: Vec<(Wake, Audience)>) {
        let mine = std::cell::Cell::new(false);
        self.settle(|progress| {
            progress.in_flight.remove(&position);
            progress.highest = progress.highest.max(position);
            mine.set(progress.unheard.remove(&position));
            for (wake, users) in wakes.into_iter().filter(|(_, users)| !users.users().is_empty()) {
                progress.waiting.entry((position, wake)).or_default().push(users);
            }
        });
        if mine.get() {
            self.heard_back.notify_waiters();
        }
    }

    /// Applies `change` and wakes the users waiting for positions now visible.
    fn settle(&self, change: impl FnOnce(&mut Progress)) {
        let woken = {
            let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
            change(&mut progress);
            let visible = Self::visible_of(&progress);
            let still_waiting = progress.waiting.split_off(&(visible + 1, Wake::Now));
            std::mem::replace(&mut progress.waiting, still_waiting)
        };
        let notify = |waker: &Waker, wake: Wake| match wake {
            Wake::Now => waker.now.notify_waiters(),
            Wake::Soon => waker.soon.notify_waiters(),
        };
        for ((_, wake), audiences) in woken {
            for audience in audiences {
                match &audience.wakers {
                    Some(wakers) => wakers.iter().for_each(|waker| notify(waker, wake)),
                    None => {
                        let wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
                        for waker in audience.users.iter().filter_map(|user| wakers.get(user)) {
                            notify(waker, wake);
                        }
                    }
                }
            }
        }
    }

    /// Applies one announcement heard on the shared database; `floor` is the highest position
    /// of the snapshot the stream started from (allocations at or below it are in it).
    fn heard(&self, note: &str, floor: u64) {
        let mut parts = note.splitn(3, ' ');
        let (Some(process), Some(kind), rest) = (parts.next(), parts.next(), parts.next().unwrap_or("")) else {
            return;
        };
        let position = || rest.split(' ').next().and_then(|position| position.parse::<u64>().ok());
        match kind {
            "a" => {
                if let Some(position) = position().filter(|position| *position > floor) {
                    Self::taken(&mut self.progress.lock().unwrap_or_else(|e| e.into_inner()), position);
                }
            }
            "w" | "s" => {
                let Some(position) = position() else { return };
                let wake = if kind == "w" { Wake::Now } else { Wake::Soon };
                let users: Audience = rest.split(' ').skip(1).filter_map(|user| UserId::parse(user).ok()).collect();
                // Heard after the position became visible (an abandoned one), they wake at once.
                self.settle(|progress| progress.waiting.entry((position, wake)).or_default().push(users));
            }
            "c" => {
                if let Some(position) = position() {
                    self.completed(position, Vec::new());
                }
            }
            _ => {
                let own = self.store.shared().is_some_and(|shared| process == shared.process().to_string());
                let handler = kind
                    .chars()
                    .next()
                    .and_then(|kind| self.handlers.lock().unwrap_or_else(|e| e.into_inner()).get(&kind).cloned());
                if let Some(handler) = handler.filter(|_| !own) {
                    handler(rest);
                }
            }
        }
    }

    /// Has announcements of `kind` from the other processes applied by `handler`.
    pub fn on_announcement(&self, kind: char, handler: impl Fn(&str) + Send + Sync + 'static) {
        self.handlers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(kind, Arc::new(handler));
    }

    /// Tells the other processes on a shared database, at once, `text` for the handler of
    /// `kind`; nothing with RocksDB.
    pub fn announce(&self, kind: char, text: &str) -> Result<()> {
        if let Some(shared) = self.store.shared() {
            shared.announce(format!("{} {kind} {text}", shared.process()))?;
        }
        Ok(())
    }

    /// Whether a position has been in flight long enough to look for its process among the
    /// dead.
    fn stuck(&self) -> bool {
        let progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        progress.in_flight.values().next().is_some_and(|since| since.elapsed() > STUCK)
    }

    /// The wake-ups of a user: create their `notified()` futures *before* reading the stream.
    pub fn waker(&self, user: &UserId) -> Arc<Waker> {
        self.wakers_to_add().entry(user.to_owned()).or_default().clone()
    }

    /// The users' wakers, about to get more: those nobody holds are dropped first when there
    /// are many.
    fn wakers_to_add(&self) -> std::sync::MutexGuard<'_, Wakers> {
        let mut wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        if wakers.len() > 100_000 {
            wakers.retain(|_, notify| Arc::strong_count(notify) > 1);
        }
        wakers
    }

    /// `users` with their wakers found now, for the writes that wake them all (a room's
    /// members, kept with the room's member list).
    pub fn resolved(&self, users: Arc<[OwnedUserId]>) -> Audience {
        let mut wakers = self.wakers_to_add();
        let found = users.iter().map(|user| wakers.entry(user.clone()).or_default().clone()).collect();
        Audience {
            users,
            wakers: Some(found),
        }
    }

    /// Ends every long poll now and every later one at once: the server is shutting down, and
    /// its in-flight requests should finish instead of waiting out their timeouts.
    pub fn shut_down(&self) {
        // Set before waking, so a poll that subscribes after the wake-ups still sees it.
        self.shutting_down.store(true, Ordering::SeqCst);
        for waker in self.wakers.lock().unwrap_or_else(|e| e.into_inner()).values() {
            waker.now.notify_waiters();
        }
    }

    /// Whether [`Stream::shut_down`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}

/// Follows the announcements of a shared database until the stream is dropped, and abandons
/// the positions of processes that died while writing.
fn follow(stream: Weak<Stream>, notes: std::sync::mpsc::Receiver<String>, floor: u64) {
    let mut looked = Instant::now();
    loop {
        let note = notes.recv_timeout(Duration::from_secs(1));
        let Some(stream) = stream.upgrade() else { return };
        match note {
            Ok(note) => stream.heard(&note, floor),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if looked.elapsed() >= Duration::from_secs(1)
            && stream.stuck()
            && let Some(shared) = stream.store.shared()
        {
            looked = Instant::now();
            match shared.abandon_dead_positions() {
                Ok(0) => {}
                Ok(abandoned) => tracing::warn!(abandoned, "abandoned the stream positions of a process that died"),
                Err(error) => tracing::error!(%error, "looking for the stream positions of dead processes failed"),
            }
        }
    }
}
