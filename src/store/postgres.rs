//! The PostgreSQL backend (`storage.backend = "postgres"`): every table is a PostgreSQL table
//! `(k bytea PRIMARY KEY, v bytea)`. PostgreSQL orders `bytea` byte by byte, as RocksDB orders
//! keys, so a prefix or range scan is an index range scan; a batch is one transaction.
//!
//! The store's interface is synchronous (RocksDB answers in microseconds, on the caller's
//! thread), so each call runs on a small runtime of its own that drives the connection pool
//! (tokio-postgres through deadpool), and the caller waits for the answer — on a server thread
//! through `block_in_place`, so the thread's other tasks move to another thread meanwhile.
//!
//! Several processes may share one database: what they share beyond the tables (stream
//! positions, locks, announcements) is in [`super::shared`].
//!
//! Durability: with `storage.sync_writes = false` the sessions commit with
//! `synchronous_commit = off` — a commit is acknowledged once it is in PostgreSQL's WAL
//! buffers, so a crash of Hearth loses nothing and a crash of PostgreSQL itself may lose the
//! last fraction of a second, as a power cut may with RocksDB; with `sync_writes = true` every
//! commit is flushed (and replicated, if the cluster says so) before it is acknowledged.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::OnceLock;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::future::try_join_all;
use tokio::runtime::{Runtime, RuntimeFlavor};
use tokio_postgres::types::ToSql;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::shared::Shared;
use super::{Row, StoreError, Table, prefix_end};
use crate::config::Storage;

/// One write of a batch: a value to put, or `None` to delete the row.
pub type Write = (Table, Vec<u8>, Option<Vec<u8>>);

/// One table's share of a batch.
#[derive(Default)]
struct TableWrites {
    /// Keys to put, with their `values`.
    keys: Vec<Vec<u8>>,
    values: Vec<Vec<u8>>,
    /// Keys to delete.
    deleted: Vec<Vec<u8>>,
}

/// The most connections a process keeps for waiting for and holding rooms' locks (opened as
/// they are needed, beside `storage.postgres_connections`).
const ROOM_LOCK_CONNECTIONS: usize = 16;

/// The connection pool to one database, and this process's share of it.
pub struct Postgres {
    pool: Pool,
    pub shared: Shared,
}

/// The runtime the database connections live on, apart from the server's own: a caller
/// blocked on an answer never holds up the connection that brings it.
pub(super) fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("hearth-postgres")
            .enable_all()
            .build()
            .expect("the PostgreSQL runtime starts")
    })
}

/// A driver or pool error with its causes (a TLS failure says why the certificate failed).
pub(super) fn database_error(error: impl std::error::Error) -> StoreError {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    StoreError::Postgres(text)
}

/// Runs `work` on the database runtime and waits for its answer.
pub(super) fn run<T: Send + 'static>(work: impl Future<Output = Result<T, StoreError>> + Send + 'static) -> Result<T, StoreError> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = sender.send(work.await);
    });
    let wait = move || {
        receiver
            .recv()
            .unwrap_or_else(|_| Err(StoreError::Postgres("the database task ended without an answer".into())))
    };
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(wait),
        _ => wait(),
    }
}

/// Runs one statement (prepared once per connection) and returns its rows.
pub(super) async fn query(pool: &Pool, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<tokio_postgres::Row>, StoreError> {
    let client = pool.get().await.map_err(database_error)?;
    let statement = client.prepare_cached(sql).await.map_err(database_error)?;
    client.query(&statement, params).await.map_err(database_error)
}

/// The rows of `table` whose keys meet every `(operator, bound)`, ordered by key (`ASC` or
/// `DESC`), up to `limit`: an index lookup or range scan.
async fn select(
    pool: &Pool,
    table: Table,
    columns: &str,
    bounds: &[(&str, Vec<u8>)],
    order: &str,
    limit: Option<i64>,
) -> Result<Vec<tokio_postgres::Row>, StoreError> {
    let mut sql = format!(r#"SELECT {columns} FROM "{}" WHERE TRUE"#, table.name());
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
    for (operator, bound) in bounds {
        params.push(bound);
        sql.push_str(&format!(" AND k {operator} ${}", params.len()));
    }
    sql.push_str(&format!(" ORDER BY k {order}"));
    if let Some(limit) = &limit {
        params.push(limit);
        sql.push_str(&format!(" LIMIT ${}", params.len()));
    }
    query(pool, &sql, &params).await
}

fn rows(found: Vec<tokio_postgres::Row>) -> Vec<Row> {
    found.into_iter().map(|row| (row.get(0), row.get(1))).collect()
}

impl Postgres {
    /// Connects to `url` with up to `storage.postgres_connections` connections and creates the
    /// tables missing, holding the startup lock (see [`Shared::started`]).
    pub fn open(url: &str, storage: &Storage) -> Result<Postgres, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|error| StoreError::Postgres(format!("storage.postgres_url: {error}")))?;
        // TLS as the URL's `sslmode` asks (by default when the server offers it), the server's
        // certificate verified against the webpki roots and `storage.postgres_ca_file`.
        let tls = crate::tls::client_config(storage.postgres_ca_file.as_deref(), "storage.postgres_ca_file")
            .map(MakeRustlsConnect::new)
            .map_err(StoreError::Postgres)?;
        let commit = if storage.sync_writes { "on" } else { "off" };
        let options = format!("{} -c synchronous_commit={commit}", config.get_options().unwrap_or_default());
        config.options(options.trim_start());
        config.application_name("hearth");
        let pool_of = |size: usize| {
            let manager = Manager::from_config(
                config.clone(),
                tls.clone(),
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            Pool::builder(manager).max_size(size.max(1)).build().map_err(database_error)
        };
        let pool = pool_of(storage.postgres_connections)?;
        let lock_pool = pool_of(ROOM_LOCK_CONNECTIONS)?;
        let create_tables = Table::ALL
            .iter()
            .map(|table| {
                format!(
                    r#"CREATE TABLE IF NOT EXISTS "{}" (k bytea PRIMARY KEY, v bytea NOT NULL)"#,
                    table.name()
                )
            })
            .collect();
        let shared = Shared::open(config, tls, pool.clone(), lock_pool, create_tables)?;
        let store = Postgres { pool, shared };
        Ok(store)
    }

    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let (pool, bounds) = (self.pool.clone(), [("=", key.to_vec())]);
        run(async move { Ok(select(&pool, table, "v", &bounds, "ASC", None).await?.first().map(|row| row.get(0))) })
    }

    /// Every row whose key starts with `prefix`, in key order (values too when `with_values`).
    pub fn scan(&self, table: Table, prefix: &[u8], with_values: bool) -> Result<Vec<Row>, StoreError> {
        let columns = if with_values { "k, v" } else { "k, ''::bytea" };
        let mut bounds = vec![(">=", prefix.to_vec())];
        bounds.extend(prefix_end(prefix).map(|end| ("<", end)));
        let pool = self.pool.clone();
        run(async move { Ok(rows(select(&pool, table, columns, &bounds, "ASC", None).await?)) })
    }

    pub fn range_within(
        &self,
        table: Table,
        (lower, upper): (&[u8], Option<&[u8]>),
        start: &[u8],
        forward: bool,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let mut bounds = if forward {
            vec![(">=", start.max(lower).to_vec())]
        } else {
            vec![("<=", start.to_vec()), (">=", lower.to_vec())]
        };
        bounds.extend(upper.map(|upper| ("<", upper.to_vec())));
        let order = if forward { "ASC" } else { "DESC" };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let pool = self.pool.clone();
        run(async move { Ok(rows(select(&pool, table, "k, v", &bounds, order, Some(limit)).await?)) })
    }

    pub fn count_keys_backward(&self, table: Table, prefix: &[u8], start: &[u8], cap: usize) -> Result<usize, StoreError> {
        let mut bounds = vec![("<=", start.to_vec()), (">=", prefix.to_vec())];
        bounds.extend(prefix_end(prefix).map(|end| ("<", end)));
        let cap = i64::try_from(cap).unwrap_or(i64::MAX);
        let pool = self.pool.clone();
        run(async move { Ok(select(&pool, table, "1", &bounds, "DESC", Some(cap)).await?.len()) })
    }

    pub fn multi_get(&self, table: Table, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let (pool, wanted) = (self.pool.clone(), keys.to_vec());
        let found: HashMap<Vec<u8>, Vec<u8>> = run(async move {
            let sql = format!(r#"SELECT k, v FROM "{}" WHERE k = ANY($1)"#, table.name());
            Ok(rows(query(&pool, &sql, &[&wanted]).await?).into_iter().collect())
        })?;
        Ok(keys.iter().map(|key| found.get(key).cloned()).collect())
    }

    pub fn is_empty(&self, table: Table) -> Result<bool, StoreError> {
        let pool = self.pool.clone();
        run(async move { Ok(select(&pool, table, "1", &[], "ASC", Some(1)).await?.is_empty()) })
    }

    /// Applies a batch in one transaction. As in a RocksDB batch, the last write to a key wins.
    pub fn write(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let mut last: HashMap<(Table, Vec<u8>), Option<Vec<u8>>> = HashMap::with_capacity(writes.len());
        for (table, key, value) in writes {
            last.insert((table, key), value);
        }
        let mut tables: BTreeMap<&'static str, TableWrites> = BTreeMap::new();
        for ((table, key), value) in last {
            let writes = tables.entry(table.name()).or_default();
            match value {
                Some(value) => {
                    writes.keys.push(key);
                    writes.values.push(value);
                }
                None => writes.deleted.push(key),
            }
        }
        let pool = self.pool.clone();
        run(async move {
            let mut client = pool.get().await.map_err(database_error)?;
            let transaction = client.transaction().await.map_err(database_error)?;
            let mut statements: Vec<(tokio_postgres::Statement, Vec<&(dyn ToSql + Sync)>)> = Vec::new();
            for (name, TableWrites { keys, values, deleted }) in &tables {
                if !keys.is_empty() {
                    let sql = format!(
                        r#"INSERT INTO "{name}" (k, v) SELECT * FROM unnest($1::bytea[], $2::bytea[]) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"#
                    );
                    statements.push((transaction.prepare_cached(&sql).await.map_err(database_error)?, vec![keys, values]));
                }
                if !deleted.is_empty() {
                    let sql = format!(r#"DELETE FROM "{name}" WHERE k = ANY($1)"#);
                    statements.push((transaction.prepare_cached(&sql).await.map_err(database_error)?, vec![deleted]));
                }
            }
            // Sent together: the statements of one transaction travel as one pipeline.
            try_join_all(statements.iter().map(|(statement, params)| transaction.execute(statement, params)))
                .await
                .map_err(database_error)?;
            transaction.commit().await.map_err(database_error)
        })
    }

    pub fn put(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.write(vec![(table, key.to_vec(), Some(value.to_vec()))])
    }

    /// Reserves `count` values of the counter at `key` (a `meta` row, u64 big-endian) from
    /// `from` or the stored value, whichever is higher; returns the first. The row is locked
    /// for the transaction, so two processes never reserve the same values.
    pub fn reserve_counter(&self, key: &[u8], from: u64, count: u64) -> Result<u64, StoreError> {
        let (pool, key) = (self.pool.clone(), key.to_vec());
        let meta = Table::Meta.name();
        run(async move {
            let mut client = pool.get().await.map_err(database_error)?;
            let transaction = client.transaction().await.map_err(database_error)?;
            let insert = format!(r#"INSERT INTO "{meta}" (k, v) VALUES ($1, $2) ON CONFLICT (k) DO NOTHING"#);
            transaction
                .execute(insert.as_str(), &[&key, &1u64.to_be_bytes().as_slice()])
                .await
                .map_err(database_error)?;
            let select = format!(r#"SELECT v FROM "{meta}" WHERE k = $1 FOR UPDATE"#);
            let stored: Vec<u8> = transaction
                .query_one(select.as_str(), &[&key])
                .await
                .map_err(database_error)?
                .get(0);
            let stored = u64::from_be_bytes(stored.as_slice().try_into().map_err(|_| StoreError::BadCounter)?);
            let start = stored.max(from);
            let update = format!(r#"UPDATE "{meta}" SET v = $2 WHERE k = $1"#);
            transaction
                .execute(update.as_str(), &[&key, &(start + count).to_be_bytes().as_slice()])
                .await
                .map_err(database_error)?;
            transaction.commit().await.map_err(database_error)?;
            Ok(start)
        })
    }

    /// The size of every table on disk, indexes included, in bytes.
    pub fn table_sizes(&self) -> Result<Vec<(&'static str, u64)>, StoreError> {
        let pool = self.pool.clone();
        let sizes: HashMap<String, i64> = run(async move {
            let sql = "SELECT c.relname::text, pg_total_relation_size(c.oid) FROM pg_class c \
                       JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'";
            let found = query(&pool, sql, &[]).await?;
            Ok(found.into_iter().map(|row| (row.get(0), row.get(1))).collect())
        })?;
        Ok(Table::ALL
            .iter()
            .map(|table| (table.name(), sizes.get(table.name()).copied().unwrap_or(0).max(0) as u64))
            .collect())
    }
}
