//! What several Hearth processes on one PostgreSQL database share beyond the tables: the
//! stream's positions, locks, and notifications.
//!
//! Each process keeps one control connection of its own, apart from the pool. On it the
//! process
//! - holds a session advisory lock on its process number while it lives, so the others can
//!   tell a process that died from one that is slow;
//! - listens on the `hearth` channel, where every process announces the stream positions it
//!   takes and completes, the users to wake, and what other processes must forget (`NOTIFY` is
//!   delivered in commit order, to every listener, the sender included);
//! - takes the short named locks (session advisory locks keyed by a hash of the name, tried
//!   until taken) that serialize rare writers across processes: short-ID interning, account
//!   creation, an outbox's drainer.
//!
//! A room's writers, which contend, wait for its lock in PostgreSQL's own queue instead: each
//! waiter on a connection of a small pool of its own (`pg_advisory_lock`), granted in order, so
//! a process whose writers follow one another cannot starve another process's.
//! Stream positions come from one row (`hearth_stream`): taking one raises it and records the
//! position as in flight (`hearth_stream_in_flight`) in the same transaction, and announces it;
//! completing deletes that row and announces it. A position's allocation commits while the
//! row is locked, so every listener hears allocations in position order, and hears a
//! completion only after the allocation: a reader's visible position (below the lowest position
//! it has heard taken and not completed) never passes a write still in flight anywhere. A
//! position whose process died is abandoned by whichever process notices it waiting.
//!
//! If the control connection breaks, the process exits: its locks are gone and it may have
//! missed wake-ups, so serving on would be wrong.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::Pool;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio_postgres::AsyncMessage;

use super::StoreError;
use super::postgres::{database_error, query, run, runtime};

/// The channel every process listens on.
const CHANNEL: &str = "hearth";
/// The advisory lock held while a process creates or migrates the schema.
const STARTUP_LOCK: i64 = 0x4865_6172_7468;
/// The first key of the (two-key) advisory locks processes hold on their numbers.
const PROCESS_LOCKS: i32 = 0x4865_6172;
/// How long a position of a dead process may stay in flight before another process
/// abandons it (a commit sent just before the process died may still land meanwhile).
const ABANDON_AFTER: &str = "5 seconds";
/// How often a waiting lock is tried again.
const LOCK_RETRY: Duration = Duration::from_millis(2);

/// The schema beyond the tables, created at start.
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS hearth_stream (one boolean PRIMARY KEY DEFAULT true CHECK (one), highest bigint NOT NULL)",
    "CREATE TABLE IF NOT EXISTS hearth_stream_in_flight (position bigint PRIMARY KEY, process int NOT NULL, since timestamptz NOT NULL DEFAULT now())",
    "CREATE SEQUENCE IF NOT EXISTS hearth_processes",
];

/// A process's share of the database: its control connection and number.
pub struct Shared {
    control: Arc<tokio_postgres::Client>,
    pool: Pool,
    /// Connections that wait for and hold the rooms' locks.
    lock_pool: Pool,
    process: i32,
    /// What the other processes (and this one) announced, in commit order, until taken.
    notes: Mutex<Option<std::sync::mpsc::Receiver<String>>>,
}

/// The stream's state when a process starts.
pub struct StreamSnapshot {
    pub highest: u64,
    pub in_flight: Vec<u64>,
}

/// A held named lock; released on drop.
pub struct SharedLock {
    holder: Option<Holder>,
    key: i64,
}

/// The connection a lock is held on.
enum Holder {
    Control(Arc<tokio_postgres::Client>),
    Pooled(Box<deadpool_postgres::Object>),
}

impl Drop for SharedLock {
    fn drop(&mut self) {
        let (Some(holder), key) = (self.holder.take(), self.key) else {
            return;
        };
        runtime().spawn(async move {
            let unlocked = match &holder {
                Holder::Control(client) => client.execute("SELECT pg_advisory_unlock($1)", &[&key]).await,
                Holder::Pooled(client) => client.execute("SELECT pg_advisory_unlock($1)", &[&key]).await,
            };
            if let Err(error) = unlocked {
                tracing::error!(%error, "releasing a database lock failed");
                // Closing the session releases whatever it holds.
                if let Holder::Pooled(client) = holder {
                    drop(deadpool_postgres::Object::take(*client));
                }
            }
        });
    }
}

/// The advisory lock key of a name: the first 8 bytes of its SHA-256, the same in every
/// process and every version.
fn lock_key(name: &[u8]) -> i64 {
    let digest = Sha256::digest(name);
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

impl Shared {
    /// Opens the control connection, listens, and takes the startup lock (released by
    /// [`Shared::started`]) before creating the schema and taking a process number.
    pub fn open(
        config: tokio_postgres::Config,
        tls: tokio_postgres_rustls::MakeRustlsConnect,
        pool: Pool,
        lock_pool: Pool,
        create_tables: Vec<String>,
    ) -> Result<Shared, StoreError> {
        let (sender, receiver) = std::sync::mpsc::channel();
        let (control, process) = run(async move {
            let (client, mut connection) = config.connect(tls).await.map_err(database_error)?;
            tokio::spawn(async move {
                let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(message) = messages.next().await {
                    match message {
                        Ok(AsyncMessage::Notification(note)) => {
                            let _ = sender.send(note.payload().to_owned());
                        }
                        Ok(_) => {}
                        Err(error) => {
                            tracing::error!(%error, "the control connection to PostgreSQL broke; exiting");
                            std::process::exit(70);
                        }
                    }
                }
            });
            client.batch_execute(&format!("LISTEN {CHANNEL}")).await.map_err(database_error)?;
            client
                .execute("SELECT pg_advisory_lock($1)", &[&STARTUP_LOCK])
                .await
                .map_err(database_error)?;
            for sql in create_tables.iter().map(String::as_str).chain(SCHEMA.iter().copied()) {
                client.batch_execute(sql).await.map_err(database_error)?;
            }
            let process: i32 = client
                .query_one("SELECT (nextval('hearth_processes') % 2147483647)::int", &[])
                .await
                .map_err(database_error)?
                .get(0);
            client
                .execute("SELECT pg_advisory_lock($1, $2)", &[&PROCESS_LOCKS, &process])
                .await
                .map_err(database_error)?;
            Ok((Arc::new(client), process))
        })?;
        Ok(Shared {
            control,
            pool,
            lock_pool,
            process,
            notes: Mutex::new(Some(receiver)),
        })
    }

    /// Ends the startup: the schema is current, other processes may start.
    pub fn started(&self) -> Result<(), StoreError> {
        let control = self.control.clone();
        run(async move {
            control
                .execute("SELECT pg_advisory_unlock($1)", &[&STARTUP_LOCK])
                .await
                .map_err(database_error)?;
            Ok(())
        })
    }

    /// This process's number, unique among the processes that ever ran on the database.
    pub fn process(&self) -> i32 {
        self.process
    }

    /// The announcements, in commit order, for the one reader that takes them.
    pub fn take_notes(&self) -> Option<std::sync::mpsc::Receiver<String>> {
        self.notes.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// The stream as it stands, first raised to `at_least` (a store moved here from RocksDB
    /// brings its positions).
    pub fn stream_snapshot(&self, at_least: u64) -> Result<StreamSnapshot, StoreError> {
        let pool = self.pool.clone();
        let at_least = at_least as i64;
        run(async move {
            query(
                &pool,
                "INSERT INTO hearth_stream (one, highest) VALUES (true, $1) \
                 ON CONFLICT (one) DO UPDATE SET highest = GREATEST(hearth_stream.highest, EXCLUDED.highest)",
                &[&at_least],
            )
            .await?;
            let rows = query(
                &pool,
                "SELECT highest, ARRAY(SELECT position FROM hearth_stream_in_flight) FROM hearth_stream",
                &[],
            )
            .await?;
            let row = rows
                .first()
                .ok_or_else(|| StoreError::Postgres("hearth_stream has no row".into()))?;
            let in_flight: Vec<i64> = row.get(1);
            Ok(StreamSnapshot {
                highest: row.get::<_, i64>(0) as u64,
                in_flight: in_flight.into_iter().map(|position| position as u64).collect(),
            })
        })
    }

    /// Takes the next stream position after `gap` unused ones, records it in flight and
    /// announces it as `<process> a <position>`.
    pub fn take_position(&self, gap: u64) -> Result<u64, StoreError> {
        let (pool, step, note) = (self.pool.clone(), gap as i64 + 1, format!("{} a ", self.process));
        let process = self.process;
        run(async move {
            let rows = query(
                &pool,
                "WITH next AS (UPDATE hearth_stream SET highest = highest + $1 RETURNING highest), \
                 taken AS (INSERT INTO hearth_stream_in_flight (position, process) SELECT highest, $2 FROM next RETURNING position) \
                 SELECT taken.position FROM taken, LATERAL (SELECT pg_notify('hearth', $3 || taken.position::text)) announced",
                &[&step, &process, &note],
            )
            .await?;
            let row = rows
                .first()
                .ok_or_else(|| StoreError::Postgres("hearth_stream has no row".into()))?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }

    /// Completes (or abandons) a position: deletes its in-flight row and sends `notes`, in
    /// order, in the same transaction.
    pub fn complete_position(&self, position: u64, notes: Vec<String>) -> Result<(), StoreError> {
        let pool = self.pool.clone();
        run(async move {
            query(
                &pool,
                "WITH done AS (DELETE FROM hearth_stream_in_flight WHERE position = $1) \
                 SELECT count(*) FROM unnest($2::text[]) WITH ORDINALITY AS note(text, n), \
                 LATERAL (SELECT pg_notify('hearth', note.text)) sent",
                &[&(position as i64), &notes],
            )
            .await?;
            Ok(())
        })
    }

    /// Abandons the positions in flight for a while of processes that are gone, announcing
    /// each as completed; returns how many there were.
    pub fn abandon_dead_positions(&self) -> Result<u64, StoreError> {
        let (pool, note) = (self.pool.clone(), format!("{} c ", self.process));
        run(async move {
            let sql = format!(
                "WITH live AS (SELECT objid::bigint AS process FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::int::oid \
                   AND objsubid = 2 AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())), \
                 dead AS (DELETE FROM hearth_stream_in_flight WHERE since < now() - interval '{ABANDON_AFTER}' \
                   AND process::bigint NOT IN (SELECT process FROM live) RETURNING position) \
                 SELECT count(*) FROM dead, LATERAL (SELECT pg_notify('hearth', $2 || dead.position::text)) sent"
            );
            let rows = query(&pool, &sql, &[&PROCESS_LOCKS, &note]).await?;
            Ok(rows.first().map(|row| row.get::<_, i64>(0) as u64).unwrap_or(0))
        })
    }

    /// Sends one announcement at once, outside any write.
    pub fn announce(&self, note: String) -> Result<(), StoreError> {
        let pool = self.pool.clone();
        run(async move {
            query(&pool, "SELECT 1 FROM (SELECT pg_notify('hearth', $1)) sent", &[&note]).await?;
            Ok(())
        })
    }

    /// Takes the short lock `name` if no other process holds it.
    pub fn try_lock(&self, name: &[u8]) -> Result<Option<SharedLock>, StoreError> {
        let (control, key) = (self.control.clone(), lock_key(name));
        run(async move { try_lock(control, key).await })
    }

    /// Waits in PostgreSQL's queue for the lock `name` and takes it, on a connection of the
    /// lock pool held until it is released.
    pub async fn lock(&self, name: &[u8]) -> Result<SharedLock, StoreError> {
        let (lock_pool, key) = (self.lock_pool.clone(), lock_key(name));
        let (sender, receiver) = tokio::sync::oneshot::channel();
        runtime().spawn(async move {
            let taken = async {
                let client = lock_pool.get().await.map_err(database_error)?;
                client
                    .execute("SELECT pg_advisory_lock($1)", &[&key])
                    .await
                    .map_err(database_error)?;
                Ok(SharedLock {
                    holder: Some(Holder::Pooled(Box::new(client))),
                    key,
                })
            };
            let _ = sender.send(taken.await);
        });
        receiver
            .await
            .unwrap_or_else(|_| Err(StoreError::Postgres("the lock task ended without an answer".into())))
    }

    /// Waits for the short lock `name` and takes it, blocking the thread.
    pub fn lock_blocking(&self, name: &[u8]) -> Result<SharedLock, StoreError> {
        let (control, key) = (self.control.clone(), lock_key(name));
        run(async move {
            loop {
                if let Some(lock) = try_lock(control.clone(), key).await? {
                    return Ok(lock);
                }
                tokio::time::sleep(LOCK_RETRY).await;
            }
        })
    }
}

async fn try_lock(control: Arc<tokio_postgres::Client>, key: i64) -> Result<Option<SharedLock>, StoreError> {
    let taken: bool = control
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .await
        .map_err(database_error)?
        .get(0);
    Ok(taken.then_some(SharedLock {
        holder: Some(Holder::Control(control)),
        key,
    }))
}
