//! The shared engine: PostgreSQL, a table per store table, for several
//! nodes serving the same domains. A table is `imgate_<name> (k bytea
//! PRIMARY KEY, v bytea)`; a counter table holds `bytes` and `messages`
//! as integers and [`super::Op::Add`] becomes an upsert that adds, so concurrent
//! writers never read-then-write a sum. A batch is one transaction: the
//! few statements [`super::pg_batch`] folds it into, pipelined on one
//! connection; a durable one returns after
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
use futures::StreamExt;
use tokio_postgres::error::SqlState;

use super::{
    Backend, BackendError, Batch, Durability, Entry, ErrorKind, Exclusive, Heard, Listener, Scan, counter_value,
    is_counter,
};
use crate::store::schema::ALL_CFS;

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
    /// The longest any statement (a commit included) may take.
    timeout: Duration,
    /// Drives the connections; shut down without blocking when dropped.
    runtime: Option<tokio::runtime::Runtime>,
    /// This node's turns, one at a time: only the thread holding it asks
    /// PostgreSQL for the advisory lock, so threads waiting for a turn
    /// wait here and keep no connection (a pool drained by waiters would
    /// starve every plain read of this node).
    turns: std::sync::Mutex<()>,
}

/// How a `[store] url` is used: its settings, and the pool's.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: String,
    pub max_connections: usize,
    /// How long a connection, a statement or a commit may take before the
    /// operation fails as unavailable. A commit that waits on a missing
    /// synchronous standby fails this way (its client gets `451`, never a
    /// `250` that only one machine holds).
    pub timeout: Duration,
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
        None => {
            // "error connecting to server" says nothing without its cause.
            let mut text = format!("database: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text += &format!(": {cause}");
                source = cause.source();
            }
            text
        }
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

/// The columns a read of `table` selects: a counter's two integers, or the value.
fn columns(table: &str) -> &'static str {
    if is_counter(table) { "k, bytes, messages" } else { "k, v" }
}

/// A row read with [`columns`], as a key and its value.
fn entry(table: &str, row: &tokio_postgres::Row) -> Entry {
    let value = if is_counter(table) { counter_value(row.get(1), row.get(2)) } else { row.get(1) };
    (row.get(0), value)
}

thread_local! {
    /// This thread's turn: the engine's identity, and the connection holding
    /// the turn's lock (`None` once that connection is lost: the turn can
    /// do nothing more, since its lock is gone with it).
    static TURN: RefCell<Option<(usize, Option<Object>)>> = const { RefCell::new(None) };
}

/// A connection for one operation: this thread's turn, lent and put back,
/// or one from the pool.
struct Session {
    client: Option<Object>,
    /// The engine whose turn this is, to put it back.
    turn_of: Option<usize>,
    /// The connection's state is unknown (a statement timed out, a
    /// rollback failed): it is closed, not reused.
    lost: bool,
}

impl std::ops::Deref for Session {
    type Target = Object;
    fn deref(&self) -> &Object {
        self.client.as_ref().expect("a session holds its connection until dropped")
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let client = self.client.take().expect("a session holds its connection until dropped");
        let client = if self.lost {
            drop(Object::take(client));
            None
        } else {
            Some(client)
        };
        if let Some(id) = self.turn_of {
            TURN.with(|t| *t.borrow_mut() = Some((id, client)));
        }
    }
}

/// Ends a turn: the lock is released and the connection goes back to the
/// pool; then the node's next turn may start (the fields drop after `drop`).
struct TurnGuard<'a> {
    engine: &'a Postgres,
    _local: std::sync::MutexGuard<'a, ()>,
}

impl Drop for TurnGuard<'_> {
    fn drop(&mut self) {
        let id = self.engine.id();
        let taken = TURN.with(|t| {
            let mut t = t.borrow_mut();
            if t.as_ref().is_some_and(|(owner, _)| *owner == id) { t.take() } else { None }
        });
        if let Some((_, Some(client))) = taken {
            let unlock = format!("SELECT pg_advisory_unlock({TURN_LOCK})");
            if !matches!(self.engine.wait(client.batch_execute(&unlock)), Ok(Ok(()))) {
                // A connection whose state is unknown goes, not back to the
                // pool (PostgreSQL drops its lock with it).
                drop(Object::take(client));
            }
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
            config.connect_timeout(settings.timeout);
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
                .wait_timeout(Some(settings.timeout))
                .create_timeout(Some(settings.timeout))
                .recycle_timeout(Some(settings.timeout))
                .build()
                .map_err(|e| BackendError::new(ErrorKind::Other, format!("[store] url: {e}")))?
        };
        let engine =
            Postgres { pool, config, timeout: settings.timeout, runtime: Some(runtime), turns: Default::default() };
        engine.create_tables().map_err(|e| BackendError::new(e.kind, format!("[store] url: {e}")))?;
        Ok(engine)
    }

    fn id(&self) -> usize {
        self as *const Postgres as usize
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives as long as the engine")
    }

    /// Runs a future on the calling thread, for at most the engine's
    /// timeout. The futures given here only talk to a connection task over
    /// channels (the connection's IO runs on the engine's runtime), so no
    /// runtime is needed on this thread; the timer runs on the engine's.
    /// Polled unconstrained: on a thread inside a tokio task whose
    /// cooperative budget is spent, tokio defers a wake-up until the task
    /// yields — which a thread blocked here never does.
    fn wait<F: std::future::Future>(&self, f: F) -> Result<F::Output, BackendError> {
        let timeout = self.timeout;
        let timer = self.runtime().spawn(async move { tokio::time::sleep(timeout).await });
        let f = std::pin::pin!(f);
        match futures::executor::block_on(tokio::task::coop::unconstrained(futures::future::select(f, timer))) {
            futures::future::Either::Left((out, _)) => Ok(out),
            futures::future::Either::Right(_) => Err(BackendError::new(
                ErrorKind::Unavailable,
                format!("database: no answer within {} s", self.timeout.as_secs_f32()),
            )),
        }
    }

    /// Runs a statement's future on `session`; a session whose statement
    /// timed out or whose connection failed is lost.
    fn run<T>(
        &self,
        session: &mut Session,
        f: impl AsyncFnOnce(&Object) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, BackendError> {
        let client = session.client.as_ref().expect("a session holds its connection until dropped");
        let result = self.wait(f(client)).and_then(|r| r.map_err(error));
        if result.as_ref().is_err_and(|e| e.kind == ErrorKind::Unavailable) {
            session.lost = true;
        }
        result
    }

    fn pooled(&self) -> Result<Object, BackendError> {
        let pool = self.pool.clone();
        self.wait(self.runtime().spawn(async move { pool.get().await }))?
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
            Some(Some(client)) => Session { client: Some(client), turn_of: Some(id), lost: false },
            Some(None) => {
                TURN.with(|t| *t.borrow_mut() = Some((id, None)));
                return Err(BackendError::new(
                    ErrorKind::Unavailable,
                    "database: the connection holding this operation's lock was lost",
                ));
            }
            None => Session { client: Some(self.pooled()?), turn_of: None, lost: false },
        })
    }

    fn create_tables(&self) -> Result<(), BackendError> {
        let mut session = Session { client: Some(self.pooled()?), turn_of: None, lost: false };
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
        let result = self.run(&mut session, async |c| c.batch_execute(&sql).await);
        session.lost |= result.is_err();
        result
    }

    fn page(
        &self,
        table: &'static str,
        from: &[u8],
        inclusive: bool,
        below: Option<&[u8]>,
        limit: i64,
    ) -> Result<Vec<Entry>, BackendError> {
        let name = table_name(table);
        let op = if inclusive { ">=" } else { ">" };
        let bound = if below.is_some() { " AND k < $3" } else { "" };
        let sql = format!("SELECT {} FROM {name} WHERE k {op} $1{bound} ORDER BY k LIMIT $2", columns(table));
        let mut session = self.session()?;
        let rows = self.run(&mut session, async |c| {
            let stmt = c.prepare_cached(&sql).await?;
            match below {
                Some(below) => c.query(&stmt, &[&from, &limit, &below]).await,
                None => c.query(&stmt, &[&from, &limit]).await,
            }
        })?;
        Ok(rows.iter().map(|row| entry(table, row)).collect())
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
    below: Option<Vec<u8>>,
    page: VecDeque<Entry>,
    limit: i64,
    done: bool,
}

impl Iterator for PgScan<'_> {
    type Item = Result<Entry, BackendError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.page.is_empty() && !self.done {
            match self.engine.page(self.table, &self.next, self.inclusive, self.below.as_deref(), self.limit) {
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

impl Backend for Postgres {
    fn get(&self, table: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self.page(table, key, true, None, 1)?.into_iter().next().filter(|(k, _)| k == key).map(|(_, v)| v))
    }

    fn get_many(&self, table: &'static str, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let name = table_name(table);
        let sql = format!("SELECT {} FROM {name} WHERE k = ANY($1)", columns(table));
        let mut session = self.session()?;
        let rows = self.run(&mut session, async |c| {
            let stmt = c.prepare_cached(&sql).await?;
            c.query(&stmt, &[&keys]).await
        })?;
        let found: std::collections::HashMap<Vec<u8>, Vec<u8>> = rows.iter().map(|row| entry(table, row)).collect();
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    fn scan(&self, table: &'static str, from: &[u8], below: Option<&[u8]>) -> Scan<'_> {
        Box::new(PgScan {
            engine: self,
            table,
            next: from.to_vec(),
            inclusive: true,
            below: below.map(<[u8]>::to_vec),
            page: VecDeque::new(),
            limit: 16,
            done: false,
        })
    }

    fn write(&self, batch: Batch, durability: Durability) -> Result<(), BackendError> {
        let mut session = self.session()?;
        let statements = super::pg_batch::statements(batch.into_ops(), table_name);
        let result = self.run(&mut session, async |c| {
            c.batch_execute("BEGIN").await?;
            if durability == Durability::Lazy {
                c.batch_execute("SET LOCAL synchronous_commit TO off").await?;
            }
            let mut prepared = Vec::with_capacity(statements.len());
            for st in &statements {
                prepared.push(c.prepare_cached(&st.sql).await?);
            }
            // Sent together: the connection runs them in order.
            let runs =
                statements.iter().zip(&prepared).map(|(st, stmt)| async move { c.execute(stmt, &st.params()).await });
            futures::future::try_join_all(runs).await?;
            c.batch_execute("COMMIT").await
        });
        if result.is_err() && !session.lost {
            // Its state unknown, a connection that cannot roll back goes (a
            // turn's lock with it: the turn can write no more).
            let rollback = self.run(&mut session, async |c| c.batch_execute("ROLLBACK").await);
            session.lost |= rollback.is_err();
        }
        result
    }

    fn exclusive(&self) -> Result<Exclusive<'_>, BackendError> {
        // A turn that panicked has ended (its guard unlocked as it
        // unwound), and each of its writes was a whole transaction.
        let local = self.turns.lock().unwrap_or_else(|p| p.into_inner());
        let mut session = Session { client: Some(self.pooled()?), turn_of: None, lost: false };
        let lock = format!("SELECT pg_advisory_lock({TURN_LOCK})");
        if let Err(e) = self.run(&mut session, async |c| c.batch_execute(&lock).await) {
            // It may have been granted as the wait ran out.
            session.lost = true;
            return Err(e);
        }
        // The session goes into this thread's turn as it is dropped.
        session.turn_of = Some(self.id());
        drop(session);
        Ok(Box::new(TurnGuard { engine: self, _local: local }))
    }

    fn shared(&self) -> bool {
        true
    }

    fn announce(&self, topic: &str) -> Result<(), BackendError> {
        let mut session = self.session()?;
        self.run(&mut session, async |c| c.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &topic]).await).map(drop)
    }

    fn listen(&self, on: Listener) {
        let config = self.config.clone();
        self.runtime().spawn(async move {
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

    /// A tokio task that has spent its cooperative budget gets a
    /// JoinHandle's wake-up deferred until it yields, which a blocked
    /// wait never does: the engine must not depend on the caller's budget.
    #[test]
    fn a_call_from_an_async_task_that_spent_its_budget_returns() {
        use super::super::Backend;
        let db = crate::testkit::postgres::database();
        let engine = db.open();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let got = rt.block_on(async {
                while tokio::task::coop::has_budget_remaining() {
                    // Ready at once: spends budget without yielding.
                    tokio::task::coop::consume_budget().await;
                }
                engine.get(crate::store::schema::CF_META, b"absent")
            });
            let _ = tx.send(got.map_err(|e| e.to_string()));
        });
        let got = rx.recv_timeout(std::time::Duration::from_secs(30)).expect("the call returns");
        assert_eq!(got, Ok(None));
    }
}
