//! The shared engine: PostgreSQL, a table per store table, for several
//! nodes serving the same domains. A table is `imgate_<name> (k bytea
//! PRIMARY KEY, v bytea)`; a counter table holds `bytes` and `messages`
//! as integers and [`Op::Add`] becomes an upsert that adds, so concurrent
//! writers never read-then-write a sum. A batch is one transaction, its
//! statements pipelined on one connection; a durable one returns after
//! PostgreSQL's COMMIT (with `synchronous_commit` as the server sets it:
//! on a cluster with a synchronous standby, after the standby has it).
//!
//! Read-modify-write turns ([`Backend::exclusive`]) hold a session-level
//! advisory lock that every node takes, on a connection that is this
//! thread's until the turn ends: the turn's reads and its batches (each its
//! own transaction) go through it. The lock lives exactly as long as that
//! connection holds it: if the connection dies, PostgreSQL releases the
//! lock, and the turn cannot write any more either — every write of a
//! turn is made under it. The store's operations are synchronous, so a
//! thread is a turn's whole extent.
//!
//! The driver is asynchronous (tokio-postgres); this engine runs its
//! connections on a small runtime of its own, so it can be called from any
//! thread, as RocksDB can.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use futures::StreamExt;

use super::{
    Backend, BackendError, Batch, COUNTER_TABLES, Durability, Entry, ErrorKind, Exclusive, Heard, Listener, Op, Scan,
    counter_value,
};
use crate::store::schema::{ALL_CFS, parse_account_value};

/// The advisory lock every node's read-modify-write turns take.
const TURN_LOCK: i64 = 0x696d_6761_7465_0001;
/// The advisory lock held while tables are created.
const SETUP_LOCK: i64 = 0x696d_6761_7465_0002;
/// Keys a scan fetches at a time, at most.
const PAGE: i64 = 512;
/// The channel nodes announce changes on.
const CHANNEL: &str = "imgate";

pub struct Postgres {
    pool: Pool,
    /// For the listening connection, which lives outside the pool.
    config: tokio_postgres::Config,
    /// Drives the connections; shut down without blocking when dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

/// How a `[store] url` is used: its settings, and the pool's.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: String,
    pub max_connections: usize,
}

fn is_counter(table: &str) -> bool {
    COUNTER_TABLES.contains(&table)
}

fn classify(e: &tokio_postgres::Error) -> ErrorKind {
    if e.is_closed() {
        return ErrorKind::Unavailable;
    }
    match e.code() {
        Some(c) if *c == SqlState::DISK_FULL => ErrorKind::DiskFull,
        Some(c)
            if *c == SqlState::READ_ONLY_SQL_TRANSACTION
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || *c == SqlState::TOO_MANY_CONNECTIONS
                || c.code().starts_with("08") =>
        {
            ErrorKind::Unavailable
        }
        Some(_) => ErrorKind::Other,
        // No SQL state and not closed: the connection could not be made.
        None => ErrorKind::Unavailable,
    }
}

fn error(e: tokio_postgres::Error) -> BackendError {
    let kind = classify(&e);
    // The driver's Display leaves out the server's message; its source has it.
    let text = match e.as_db_error() {
        Some(db) => format!("database: {}", db.message()),
        None => format!("database: {e}"),
    };
    BackendError::new(kind, text)
}

fn pool_error(e: deadpool_postgres::PoolError) -> BackendError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => error(e),
        other => BackendError::new(ErrorKind::Unavailable, format!("database: {other}")),
    }
}

fn table_name(table: &str) -> String {
    format!("imgate_{table}")
}

/// Runs a future on the calling thread. The futures given here only talk
/// to a connection task over channels (the connection's IO runs on the
/// engine's runtime), so no runtime is needed on this thread.
fn wait<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

thread_local! {
    /// This thread's turn: (engine identity, the connection in its transaction).
    static TURN: RefCell<Option<(usize, Object)>> = const { RefCell::new(None) };
}

/// A connection for one operation: this thread's turn, lent and put back,
/// or one from the pool.
struct Session {
    client: Option<Object>,
    /// The engine whose turn this is, to put it back.
    turn_of: Option<usize>,
}

impl std::ops::Deref for Session {
    type Target = Object;
    fn deref(&self) -> &Object {
        self.client.as_ref().expect("a session holds its connection until dropped")
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let (Some(id), Some(client)) = (self.turn_of, self.client.take()) {
            TURN.with(|t| *t.borrow_mut() = Some((id, client)));
        }
    }
}

/// Ends a turn: the lock is released and the connection goes back to the pool.
struct TurnGuard {
    id: usize,
}

impl Drop for TurnGuard {
    fn drop(&mut self) {
        let taken = TURN.with(|t| {
            let mut t = t.borrow_mut();
            if t.as_ref().is_some_and(|(id, _)| *id == self.id) { t.take() } else { None }
        });
        if let Some((_, client)) = taken
            && wait(client.batch_execute(&format!("SELECT pg_advisory_unlock({TURN_LOCK})"))).is_err()
        {
            // A connection whose state is unknown goes, not back to the pool.
            drop(Object::take(client));
        }
    }
}

impl Postgres {
    /// Connects to the database `settings.url` names and creates the
    /// tables that are missing.
    pub fn open(settings: &Settings) -> Result<Postgres, BackendError> {
        let mut config: tokio_postgres::Config = settings
            .url
            .parse()
            .map_err(|e| BackendError::new(ErrorKind::Other, format!("[store] url is not a PostgreSQL URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_application_name().is_none() {
            config.application_name("imgate");
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("imgate-postgres")
            .enable_all()
            .build()
            .map_err(|e| BackendError::new(ErrorKind::Other, format!("starting the database runtime: {e}")))?;
        let manager = Manager::from_config(
            config.clone(),
            tokio_postgres::NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = {
            let _in = runtime.enter();
            Pool::builder(manager)
                .max_size(settings.max_connections.max(2))
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(Duration::from_secs(10)))
                .create_timeout(Some(Duration::from_secs(10)))
                .recycle_timeout(Some(Duration::from_secs(5)))
                .build()
                .map_err(|e| BackendError::new(ErrorKind::Other, format!("[store] url: {e}")))?
        };
        let engine = Postgres { pool, config, runtime: Some(runtime) };
        engine.create_tables().map_err(|e| BackendError::new(e.kind, format!("[store] url: {e}")))?;
        Ok(engine)
    }

    fn id(&self) -> usize {
        self as *const Postgres as usize
    }

    fn pooled(&self) -> Result<Object, BackendError> {
        let pool = self.pool.clone();
        let runtime = self.runtime.as_ref().expect("the runtime lives as long as the engine");
        wait(runtime.spawn(async move { pool.get().await }))
            .map_err(|e| BackendError::new(ErrorKind::Other, format!("database task: {e}")))?
            .map_err(pool_error)
    }

    /// This thread's turn if it has one, else a pooled connection.
    fn session(&self) -> Result<Session, BackendError> {
        let id = self.id();
        let turn = TURN.with(|t| {
            let mut t = t.borrow_mut();
            if t.as_ref().is_some_and(|(owner, _)| *owner == id) { t.take().map(|(_, c)| c) } else { None }
        });
        Ok(match turn {
            Some(client) => Session { client: Some(client), turn_of: Some(id) },
            None => Session { client: Some(self.pooled()?), turn_of: None },
        })
    }

    fn create_tables(&self) -> Result<(), BackendError> {
        let client = self.pooled()?;
        let mut sql = format!("BEGIN; SELECT pg_advisory_xact_lock({SETUP_LOCK});");
        for table in ALL_CFS {
            let name = table_name(table);
            if is_counter(table) {
                sql += &format!(
                    "CREATE TABLE IF NOT EXISTS {name} (k bytea PRIMARY KEY, bytes bigint NOT NULL, messages bigint NOT NULL);"
                );
            } else {
                sql += &format!("CREATE TABLE IF NOT EXISTS {name} (k bytea PRIMARY KEY, v bytea NOT NULL);");
            }
        }
        sql += "COMMIT;";
        let result = wait(client.batch_execute(&sql)).map_err(error);
        if result.is_err() {
            drop(Object::take(client));
        }
        result
    }

    fn page(&self, table: &'static str, from: &[u8], inclusive: bool, limit: i64) -> Result<Vec<Entry>, BackendError> {
        let name = table_name(table);
        let op = if inclusive { ">=" } else { ">" };
        let columns = if is_counter(table) { "k, bytes, messages" } else { "k, v" };
        let sql = format!("SELECT {columns} FROM {name} WHERE k {op} $1 ORDER BY k LIMIT $2");
        let session = self.session()?;
        let rows = wait(async {
            let stmt = session.prepare_cached(&sql).await?;
            session.query(&stmt, &[&from, &limit]).await
        })
        .map_err(error)?;
        Ok(rows
            .iter()
            .map(|row| {
                let key: Vec<u8> = row.get(0);
                let value = if is_counter(table) { counter_value(row.get(1), row.get(2)) } else { row.get(1) };
                (key, value)
            })
            .collect())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Pages through a table.
struct PgScan<'a> {
    engine: &'a Postgres,
    table: &'static str,
    next: Vec<u8>,
    inclusive: bool,
    page: VecDeque<Entry>,
    limit: i64,
    done: bool,
}

impl Iterator for PgScan<'_> {
    type Item = Result<Entry, BackendError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.page.is_empty() && !self.done {
            match self.engine.page(self.table, &self.next, self.inclusive, self.limit) {
                Ok(rows) => {
                    self.done = (rows.len() as i64) < self.limit;
                    if let Some((k, _)) = rows.last() {
                        self.next = k.clone();
                        self.inclusive = false;
                    }
                    self.page = rows.into();
                    // Most scans stop early (a prefix, a due time): start
                    // small, then fetch more as a scan proves long.
                    self.limit = (self.limit * 4).min(PAGE);
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        self.page.pop_front().map(Ok)
    }
}

/// A statement of a batch, with its parameters.
fn statement(op: &Op) -> (String, Vec<&(dyn ToSql + Sync)>) {
    match op {
        Op::Put { table, key, value } if is_counter(table) => {
            // A counter written whole: the two sums as they read.
            let name = table_name(table);
            let _ = value;
            (
                format!(
                    "INSERT INTO {name} (k, bytes, messages) VALUES ($1, $2, $3) \
                     ON CONFLICT (k) DO UPDATE SET bytes = EXCLUDED.bytes, messages = EXCLUDED.messages"
                ),
                vec![key],
            )
        }
        Op::Put { table, key, value } => (
            format!(
                "INSERT INTO {} (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
                table_name(table)
            ),
            vec![key, value],
        ),
        Op::Delete { table, key } => (format!("DELETE FROM {} WHERE k = $1", table_name(table)), vec![key]),
        Op::Add { table, key, bytes, messages } => {
            let name = table_name(table);
            (
                format!(
                    "INSERT INTO {name} (k, bytes, messages) VALUES ($1, $2, $3) ON CONFLICT (k) DO UPDATE \
                     SET bytes = {name}.bytes + EXCLUDED.bytes, messages = {name}.messages + EXCLUDED.messages"
                ),
                vec![key, bytes, messages],
            )
        }
    }
}

impl Backend for Postgres {
    fn get(&self, table: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self.page(table, key, true, 1)?.into_iter().next().filter(|(k, _)| k == key).map(|(_, v)| v))
    }

    fn scan(&self, table: &'static str, from: &[u8]) -> Scan<'_> {
        Box::new(PgScan {
            engine: self,
            table,
            next: from.to_vec(),
            inclusive: true,
            page: VecDeque::new(),
            limit: 16,
            done: false,
        })
    }

    fn write(&self, batch: Batch, durability: Durability) -> Result<(), BackendError> {
        let mut session = self.session()?;
        let ops = batch.into_ops();
        // Counters written whole carry their sums as parameters of their own.
        let sums: Vec<(i64, i64)> = ops
            .iter()
            .map(|op| match op {
                Op::Put { table, value, .. } if is_counter(table) => parse_account_value(value),
                _ => (0, 0),
            })
            .collect();
        let result = wait(async {
            session.batch_execute("BEGIN").await?;
            if durability == Durability::Lazy {
                session.batch_execute("SET LOCAL synchronous_commit TO off").await?;
            }
            let mut prepared = Vec::with_capacity(ops.len());
            for op in &ops {
                let (sql, _) = statement(op);
                prepared.push(session.prepare_cached(&sql).await?);
            }
            // Sent together: the connection runs them in order.
            let runs = ops.iter().zip(&prepared).zip(&sums).map(|((op, stmt), sums)| {
                let (_, mut params) = statement(op);
                if let Op::Put { table, .. } = op
                    && is_counter(table)
                {
                    params.push(&sums.0);
                    params.push(&sums.1);
                }
                let session = &session;
                async move { session.execute(stmt, &params).await }
            });
            futures::future::try_join_all(runs).await?;
            session.batch_execute("COMMIT").await
        })
        .map_err(error);
        if result.is_err() && wait(session.batch_execute("ROLLBACK")).is_err() {
            // Its state unknown, the connection goes (a turn's lock with it:
            // the turn can write no more).
            let client = session.client.take().expect("the session holds its connection");
            drop(Object::take(client));
        }
        result
    }

    fn exclusive(&self) -> Result<Exclusive<'_>, BackendError> {
        let client = self.pooled()?;
        if let Err(e) = wait(client.batch_execute(&format!("SELECT pg_advisory_lock({TURN_LOCK})"))) {
            drop(Object::take(client));
            return Err(error(e));
        }
        TURN.with(|t| *t.borrow_mut() = Some((self.id(), client)));
        Ok(Box::new(TurnGuard { id: self.id() }))
    }

    fn shared(&self) -> bool {
        true
    }

    fn announce(&self, topic: &str) -> Result<(), BackendError> {
        let session = self.session()?;
        wait(session.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &topic])).map(drop).map_err(error)
    }

    fn listen(&self, on: Listener) {
        let config = self.config.clone();
        let runtime = self.runtime.as_ref().expect("the runtime lives as long as the engine");
        runtime.spawn(async move {
            loop {
                if let Ok((client, mut connection)) = config.connect(tokio_postgres::NoTls).await {
                    // The connection is driven by polling it for messages.
                    let (tx, mut rx) = futures::channel::mpsc::unbounded::<String>();
                    let pump = tokio::spawn(async move {
                        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                        while let Some(Ok(message)) = messages.next().await {
                            if let tokio_postgres::AsyncMessage::Notification(n) = message
                                && tx.unbounded_send(n.payload().to_string()).is_err()
                            {
                                return;
                            }
                        }
                    });
                    if client.batch_execute(&format!("LISTEN {CHANNEL}")).await.is_ok() {
                        on(Heard::Hearing);
                        while let Some(topic) = rx.next().await {
                            on(Heard::Topic(&topic));
                        }
                        on(Heard::Deaf);
                    }
                    pump.abort();
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn postgresql_keeps_the_seam() {
        let db = crate::testkit::postgres::database();
        super::super::check_engine(&db.open());
    }
}
