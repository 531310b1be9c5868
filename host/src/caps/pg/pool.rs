//! Connections to the configured database: the pool ([`Postgres`]), the per-call
//! transaction on one pooled connection ([`Session`]), and the schema check.
//!
//! Threads: the connections are `tokio-postgres` clients driven by a small runtime the pool
//! owns. Callers (a wasm host call on whatever thread runs the guest — the CLI's main thread,
//! a `spawn_blocking` thread of the HTTP server) hand a future to that runtime and wait on a
//! channel with a deadline; nobody calls `block_on`, so this works inside or outside another
//! runtime.
//!
//! Every connection is opened with the host's session settings in its startup packet
//! (`statement_timeout`, `TimeZone=UTC`), so they are the session defaults that a reset
//! restores. Between calls a connection is reset with `DISCARD ALL` (role and session
//! authorization, settings, temp objects, advisory locks, cursors, prepared statements) and
//! then verified in the same round trip: `current_user = session_user` and no setting left
//! from the session. A connection that fails the check is closed, never reused: a call must
//! not see — or run as — what an earlier call left in the session.
//!
//! Outages: a connect that fails or does not answer within the connect timeout marks the
//! server down for [`Limits::retry_after`]; until then calls and [`Postgres::status`] answer
//! `unavailable` at once instead of each waiting for a connect timeout.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt as _;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls};

use super::dsn::Dsn;
use super::value::{Cell, Param, supported, unsupported_column};
use crate::runtime::bindings::pg::{PgError, QueryResult, SqlError};

/// The database name guests use: the only one the host grants.
pub const DATABASE: &str = "backlog";

/// Limits of the host's Postgres access (defaults as documented in `docs/configuration.md`); the timeouts can be set
/// with [`CONNECT_TIMEOUT_VAR`] and [`STATEMENT_TIMEOUT_VAR`] ([`Limits::from_env`]).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Server-side `statement_timeout` of every session.
    pub statement_timeout: Duration,
    /// Most rows one statement may return.
    pub max_rows: usize,
    /// Most bytes (raw column data) one statement may return.
    pub max_bytes: usize,
    /// Longest wait for a connection (connecting, or a free slot).
    pub connect_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// After a failed connect, how long calls answer `unavailable` without trying again.
    pub retry_after: Duration,
}

/// The connect timeout, in milliseconds.
pub const CONNECT_TIMEOUT_VAR: &str = "BACKLOG_POSTGRES_CONNECT_TIMEOUT_MS";
/// The server-side statement timeout, in milliseconds.
pub const STATEMENT_TIMEOUT_VAR: &str = "BACKLOG_POSTGRES_STATEMENT_TIMEOUT_MS";

impl Limits {
    /// The defaults, with the timeouts of [`CONNECT_TIMEOUT_VAR`] and
    /// [`STATEMENT_TIMEOUT_VAR`] when set (1 ms ..= 1 h; anything else is refused).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Limits, String> {
        let ms = |name: &str| -> Result<Option<Duration>, String> {
            let Some(v) = var(name).filter(|v| !v.trim().is_empty()) else {
                return Ok(None);
            };
            match v.trim().parse::<u64>() {
                Ok(n) if (1..=3_600_000).contains(&n) => Ok(Some(Duration::from_millis(n))),
                _ => Err(format!(
                    "{name}={v:?}: must be a whole number of milliseconds from 1 to 3600000"
                )),
            }
        };
        let mut limits = Limits::default();
        if let Some(t) = ms(CONNECT_TIMEOUT_VAR)? {
            limits.connect_timeout = t;
        }
        if let Some(t) = ms(STATEMENT_TIMEOUT_VAR)? {
            limits.statement_timeout = t;
        }
        Ok(limits)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            statement_timeout: Duration::from_secs(5),
            max_rows: 100_000,
            max_bytes: 64 << 20,
            connect_timeout: Duration::from_secs(2),
            max_connections: 16,
            retry_after: Duration::from_secs(5),
        }
    }
}

/// Extra wait beyond the statement timeout before the host gives up on the server.
const GRACE: Duration = Duration::from_secs(2);

/// Extra wait beyond the connect timeout (the client's own timer fires first).
const CONNECT_MARGIN: Duration = Duration::from_millis(250);

/// What resets a connection's session between calls. It includes `SET SESSION AUTHORIZATION
/// DEFAULT` (and so the role), `RESET ALL` (the host's settings come back from the startup
/// packet), `CLOSE ALL`, `UNLISTEN *`, `pg_advisory_unlock_all()`, `DISCARD PLANS`, `DISCARD
/// SEQUENCES` and `DISCARD TEMP`. It may not run in a transaction block — a multi-statement
/// simple query is one — so it goes alone, pipelined behind the COMMIT with [`CHECK_SESSION`]
/// behind it: one round trip for the three.
const RESET_SESSION: &str = "DISCARD ALL";

/// The check after [`RESET_SESSION`]: same role, the current role, settings the session
/// changed (`role` is not listed in `pg_settings`: the first column covers it). Judged by
/// [`session_clean`].
const CHECK_SESSION: &str = "SELECT current_user = session_user, current_user::text, \
     (SELECT count(*) FROM pg_catalog.pg_settings WHERE source = 'session')";

/// Whether the check of [`RESET_SESSION`] (its row as text: same role, current role, session
/// settings) shows a clean session: the login role, no setting changed by the session.
pub fn session_clean(row: &[Option<&str>]) -> Result<(), String> {
    match row {
        [Some("t"), Some(_), Some("0")] => Ok(()),
        [Some("t"), _, n] => Err(format!(
            "{} settings are still changed by the session",
            n.unwrap_or("?")
        )),
        [_, role, _] => Err(format!(
            "the session still runs as role {:?}, not the login role",
            role.unwrap_or("?")
        )),
        _ => Err("the session check returned no row".into()),
    }
}

/// The transaction-scoped advisory lock every write-capable call takes first
/// ([`BEGIN_WRITER`]); the value spells `backlog!`.
pub const WRITER_LOCK: i64 = 0x6261_636b_6c6f_6721;

/// How a write-capable call's transaction starts: it waits for the writer lock, so writes
/// are serialized across threads, processes and replicas (as with the JSONL store's directory
/// lock). Without it, two calls upserting one new `dedupe_key` at once would both miss it and
/// one would fail on the UNIQUE constraint. Read-only calls never wait. The lock ends with
/// the transaction (COMMIT or ROLLBACK), and is taken before any row lock, so it cannot
/// deadlock with one.
const BEGIN_WRITER: &str = "BEGIN; SELECT pg_advisory_xact_lock(7089056601489762081)";

/// SQLSTATE for a result value the host cannot represent (an infinite timestamp, …).
const DATETIME_FIELD_OVERFLOW: &str = "22008";

/// The query behind [`Postgres::status`] and the schema check.
const SCHEMA_VERSION_SQL: &str = "SELECT max(version) FROM backlog_schema_version";

/// A failed connect or DSN: typed for the library, shown with the DSN redacted.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the Postgres DSN is not a valid connection string: {reason}")]
    Dsn { reason: String },
    #[error("cannot start the Postgres client runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot connect to {dsn}: {message}")]
    Connect { dsn: String, message: String },
}

/// Reachability and schema, for readiness checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgStatus {
    /// The server accepted a connection and answered.
    pub reachable: bool,
    /// `backlog_schema_version` holds this build's version ([`backlog_store::PG_SCHEMA_VERSION`]).
    pub schema_current: bool,
    /// How old this answer is: zero when the server was asked now; else the last known state
    /// (the server was found down less than [`Limits::retry_after`] ago, or every connection
    /// was busy).
    pub age: Duration,
}

/// The last thing the pool learned about the server.
#[derive(Debug, Clone)]
struct Known {
    at: Instant,
    reachable: bool,
    schema_current: bool,
    /// Why it is down, while it is.
    down: Option<String>,
}

struct Slots {
    idle: Vec<Arc<Client>>,
    /// Connections open, idle or in use.
    open: usize,
}

/// The pool: the DSN, the client runtime, idle connections, and the schema state.
pub struct Postgres {
    dsn: Dsn,
    config: Config,
    runtime: Option<tokio::runtime::Runtime>,
    slots: Mutex<Slots>,
    freed: Condvar,
    schema_current: AtomicBool,
    schema_warned: AtomicBool,
    known: Mutex<Option<Known>>,
    /// The limits every session of this pool gets.
    pub limits: Limits,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("dsn", &self.dsn)
            .finish_non_exhaustive()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Dropping a runtime blocks on its tasks, which may not happen inside another runtime.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Postgres {
    /// A pool for `dsn`. Parses the DSN and starts the client runtime; connects lazily.
    pub fn new(dsn: Dsn, limits: Limits) -> Result<Postgres, ConnectError> {
        let mut config: Config = dsn.expose().parse().map_err(|e| ConnectError::Dsn {
            reason: super::dsn::parse_error(&e),
        })?;
        // The host's session settings, as startup options so that `RESET ALL` restores them.
        let ours = format!(
            "-c statement_timeout={} -c TimeZone=UTC",
            limits.statement_timeout.as_millis()
        );
        let options = match config.get_options() {
            Some(theirs) if !theirs.trim().is_empty() => format!("{theirs} {ours}"),
            _ => ours,
        };
        config.options(options);
        if config.get_application_name().is_none() {
            config.application_name("backlog-bridge");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(limits.connect_timeout);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("postgres-client")
            .enable_all()
            .build()
            .map_err(ConnectError::Runtime)?;
        Ok(Postgres {
            dsn,
            config,
            runtime: Some(runtime),
            slots: Mutex::new(Slots {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
            schema_current: AtomicBool::new(false),
            schema_warned: AtomicBool::new(false),
            known: Mutex::new(None),
            limits,
        })
    }

    /// The DSN, for logs (prints redacted).
    pub fn dsn(&self) -> &Dsn {
        &self.dsn
    }

    /// Runs `fut` on the client runtime and waits at most `wait` for its output.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        wait: Duration,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        let rt = self.runtime.as_ref()?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv_timeout(wait).ok()
    }

    /// A new connection, outside the pool (for `migrate` and the scheduler).
    pub fn connect(&self) -> Result<Client, ConnectError> {
        self.connect_within(self.limits.connect_timeout + CONNECT_MARGIN)
    }

    /// A new connection, waiting at most `wait`; a failure marks the server down.
    fn connect_within(&self, wait: Duration) -> Result<Client, ConnectError> {
        let config = self.config.clone();
        let failed = |message: String| {
            self.mark_down(&message);
            Err(ConnectError::Connect {
                dsn: self.dsn.redacted(),
                message,
            })
        };
        match self.run(wait, connect(config)) {
            Some(Ok(client)) => Ok(client),
            Some(Err(e)) => failed(connect_failure(&e)),
            None => failed(format!(
                "the server did not answer within {} ms (connect timeout; set {CONNECT_TIMEOUT_VAR})",
                wait.as_millis()
            )),
        }
    }

    /// Records that the server is down (calls answer `unavailable` without trying for
    /// [`Limits::retry_after`]).
    fn mark_down(&self, why: &str) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        let already = known
            .as_ref()
            .is_some_and(|k| k.down.is_some() && k.at.elapsed() < self.limits.retry_after);
        if !already {
            tracing::warn!(
                dsn = %self.dsn,
                "postgres: unavailable, calls answer `unavailable` without trying for {} s: {why}",
                self.limits.retry_after.as_secs()
            );
        }
        *known = Some(Known {
            at: Instant::now(),
            reachable: false,
            schema_current: false,
            down: Some(why.to_owned()),
        });
    }

    fn mark_known(&self, reachable: bool, schema_current: bool) {
        *self.known.lock().unwrap_or_else(PoisonError::into_inner) = Some(Known {
            at: Instant::now(),
            reachable,
            schema_current,
            down: None,
        });
    }

    /// Why the server counts as down, while it was found down less than
    /// [`Limits::retry_after`] ago.
    fn down(&self) -> Option<(String, Duration)> {
        let known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        let k = known.as_ref()?;
        let age = k.at.elapsed();
        match &k.down {
            Some(why) if age < self.limits.retry_after => Some((why.clone(), age)),
            _ => None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An idle connection, or a new one if fewer than `max_connections` are open. The bool
    /// says whether it was reused (and so may have gone stale).
    fn checkout(&self) -> Result<(Arc<Client>, bool), PgError> {
        if let Some((why, age)) = self.down() {
            return Err(PgError::Unavailable(format!(
                "cannot connect to Postgres: {why} ({} ms ago; the host tries again {} s after \
                 a failure)",
                age.as_millis(),
                self.limits.retry_after.as_secs()
            )));
        }
        let deadline = Instant::now() + self.limits.connect_timeout;
        let mut slots = self.lock();
        loop {
            while let Some(client) = slots.idle.pop() {
                if !client.is_closed() {
                    return Ok((client, true));
                }
                slots.open -= 1;
            }
            if slots.open < self.limits.max_connections {
                slots.open += 1;
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PgError::Unavailable(format!(
                    "all {} Postgres connections are busy",
                    self.limits.max_connections
                )));
            }
            slots = self
                .freed
                .wait_timeout(slots, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        drop(slots);
        match self.connect() {
            Ok(client) => Ok((Arc::new(client), false)),
            Err(e) => {
                self.checkin(None);
                tracing::warn!("postgres: {e}");
                // The guest gets the reason, not the DSN (host and port included).
                let reason = match e {
                    ConnectError::Connect { message, .. } => message,
                    other => other.to_string(),
                };
                Err(PgError::Unavailable(format!(
                    "cannot connect to Postgres: {reason}"
                )))
            }
        }
    }

    /// Returns a clean connection to the pool, or (with `None`) frees its slot.
    fn checkin(&self, client: Option<Arc<Client>>) {
        let mut slots = self.lock();
        match client {
            Some(c) if !c.is_closed() => slots.idle.push(c),
            _ => slots.open -= 1,
        }
        self.freed.notify_one();
    }

    /// Whether the server answers and holds the current schema. Waits at most one connect
    /// timeout in all: while the server is marked down, or when every connection is busy, it
    /// answers the last known state (with its age) at once.
    pub fn status(&self) -> PgStatus {
        let last = |this: &Postgres| {
            let known = this.known.lock().unwrap_or_else(PoisonError::into_inner);
            match known.as_ref() {
                Some(k) => PgStatus {
                    reachable: k.reachable,
                    schema_current: k.schema_current,
                    age: k.at.elapsed(),
                },
                None => PgStatus {
                    reachable: false,
                    schema_current: false,
                    age: Duration::ZERO,
                },
            }
        };
        if self.down().is_some() {
            return last(self);
        }
        let deadline = Instant::now() + self.limits.connect_timeout;
        let idle = {
            let mut slots = self.lock();
            let mut found = None;
            while let Some(client) = slots.idle.pop() {
                if !client.is_closed() {
                    found = Some(client);
                    break;
                }
                slots.open -= 1;
            }
            if found.is_none() {
                if slots.open >= self.limits.max_connections {
                    drop(slots);
                    return last(self);
                }
                slots.open += 1;
            }
            found
        };
        let client = match idle {
            Some(client) => client,
            None => match self.connect_within(self.limits.connect_timeout) {
                Ok(client) => Arc::new(client),
                Err(_) => {
                    self.checkin(None);
                    return last(self);
                }
            },
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let schema = self.schema_within(&client, left.max(Duration::from_millis(1)));
        if let Err(e) = &schema {
            self.mark_down(&e.to_string());
        }
        self.checkin(schema.is_ok().then_some(client));
        let current =
            matches!(schema, Ok(Schema::Version(Some(v))) if v == backlog_store::PG_SCHEMA_VERSION);
        if schema.is_ok() {
            self.mark_known(true, current);
        }
        PgStatus {
            reachable: schema.is_ok(),
            schema_current: current,
            age: Duration::ZERO,
        }
    }

    /// What the database says about its schema; `Err` when it did not answer.
    fn schema(&self, client: &Arc<Client>) -> Result<Schema, PgError> {
        self.schema_within(client, self.limits.statement_timeout + GRACE)
    }

    fn schema_within(&self, client: &Arc<Client>, wait: Duration) -> Result<Schema, PgError> {
        let client = client.clone();
        let answer = self.run(wait, async move {
            match client.query_typed(SCHEMA_VERSION_SQL, &[]).await {
                Ok(rows) => {
                    Ok(Schema::Version(rows.first().and_then(|r| {
                        r.try_get::<_, Option<i32>>(0).ok().flatten()
                    })))
                }
                Err(e) => match e.as_db_error() {
                    Some(db) if *db.code() == tokio_postgres::error::SqlState::UNDEFINED_TABLE => {
                        Ok(Schema::Version(None))
                    }
                    Some(db) => Ok(Schema::Unreadable(format!(
                        "SQLSTATE {}: {}",
                        db.code().code(),
                        db.message()
                    ))),
                    None => Err(unavailable(&e)),
                },
            }
        });
        answer.unwrap_or_else(|| Err(PgError::Unavailable("the server did not answer".into())))
    }

    /// Checks (until it once succeeds) that the database holds the current schema; logs the
    /// operator's remedy once.
    fn ensure_schema(&self, client: &Arc<Client>) -> Result<(), PgError> {
        if self.schema_current.load(Ordering::Relaxed) {
            return Ok(());
        }
        let want = backlog_store::PG_SCHEMA_VERSION;
        let found = match self.schema(client)? {
            Schema::Version(Some(v)) if v == want => {
                self.schema_current.store(true, Ordering::Relaxed);
                return Ok(());
            }
            Schema::Version(Some(v)) => format!("schema version {v}"),
            Schema::Version(None) => "no backlog schema".to_owned(),
            Schema::Unreadable(why) => format!("an unreadable schema version ({why})"),
        };
        let message = format!(
            "the database holds {found}, this build needs version {want}: run `backlog-bridge migrate`"
        );
        if !self.schema_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(dsn = %self.dsn, "postgres: {message}");
        }
        Err(PgError::Unavailable(message))
    }
}

/// The schema as the database reports it.
enum Schema {
    /// `max(version)` of `backlog_schema_version`; `None`: no table, or no row.
    Version(Option<i32>),
    /// The server answered with an error (e.g. the role may not read the table).
    Unreadable(String),
}

/// Why a connect failed, as the operator needs it: the server's own message and SQLSTATE
/// (an authentication or catalog error), with the fix; else the client's reason and its
/// causes (refused, timed out, …). Never the DSN or the password.
pub fn connect_failure(e: &tokio_postgres::Error) -> String {
    use tokio_postgres::error::SqlState;
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let fix = if *code == SqlState::INVALID_CATALOG_NAME {
            "create the database (`createdb NAME`) or fix the database name in \
             BACKLOG_POSTGRES_DSN"
        } else if *code == SqlState::INVALID_PASSWORD {
            "check the role's password in BACKLOG_POSTGRES_DSN"
        } else if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
            "create the role (`CREATE ROLE NAME LOGIN PASSWORD …`) or fix the user name in \
             BACKLOG_POSTGRES_DSN; check pg_hba.conf allows it"
        } else if *code == SqlState::TOO_MANY_CONNECTIONS {
            "the server has no free connection slot: raise max_connections or lower the \
             number of bridge processes"
        } else if *code == SqlState::CANNOT_CONNECT_NOW {
            "the server is starting up or shutting down: retry shortly"
        } else {
            "see the server's log"
        };
        return format!(
            "the server refused the connection: {} (SQLSTATE {}); fix: {fix}",
            db.message(),
            code.code()
        );
    }
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

async fn connect(config: Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("postgres connection closed: {e}");
        }
    });
    Ok(client)
}

/// How a call ends its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Commit,
    Rollback,
}

/// Why a transaction could not be committed (the call's writes are not in the database).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// A statement failed, so the server had aborted the transaction; the guest still
    /// returned success. Its writes were rolled back.
    #[error(
        "a statement of this call failed (SQLSTATE {0}), so its Postgres transaction was rolled \
         back although the plugin reported success"
    )]
    Aborted(String),
    /// The server refused the commit (serialization failure, deferred constraint, …).
    #[error("Postgres refused to commit: SQLSTATE {sqlstate}: {message}")]
    Refused { sqlstate: String, message: String },
    /// The connection broke; the outcome is unknown to the host, the writes are not
    /// acknowledged.
    #[error("Postgres became unavailable while committing: {0}")]
    Unavailable(String),
}

/// One call's transaction on one pooled connection. Opened by the first statement, ended by
/// [`Session::end`]; dropped without ending, it closes its connection (the server then rolls
/// back), so no transaction outlives its call.
pub struct Session {
    pool: Arc<Postgres>,
    client: Option<Arc<Client>>,
    /// SQLSTATE of the first server error: the server has aborted the transaction.
    failed: Option<String>,
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.client.take().is_some() {
            self.pool.checkin(None);
        }
    }
}

impl Session {
    /// Takes a connection, checks the schema and opens the call's transaction (`BEGIN READ
    /// ONLY` unless `read_write`, which also waits for [`WRITER_LOCK`]). A pooled connection the server has closed meanwhile
    /// (restart, idle timeout) is replaced once.
    pub fn begin(pool: &Arc<Postgres>, read_write: bool) -> Result<Session, PgError> {
        let begin = if read_write {
            BEGIN_WRITER
        } else {
            "BEGIN READ ONLY"
        };
        let mut retried = false;
        loop {
            let (client, reused) = pool.checkout()?;
            let mut session = Session {
                pool: pool.clone(),
                client: Some(client.clone()),
                failed: None,
            };
            let stale = |client: &Client| client.is_closed() && reused && !retried;
            if let Err(e) = pool.ensure_schema(&client) {
                if stale(&client) {
                    retried = true;
                    continue;
                }
                // Nothing was begun: the connection goes back to the pool as it came.
                if let Some(c) = session.client.take() {
                    pool.checkin(Some(c));
                }
                return Err(e);
            }
            let wait = pool.limits.statement_timeout + GRACE;
            let c = client.clone();
            match pool.run(wait, async move { c.batch_execute(begin).await }) {
                Some(Ok(())) => return Ok(session),
                Some(Err(_)) if stale(&client) => retried = true,
                Some(Err(e)) => return Err(unavailable(&e)),
                None => {
                    return Err(PgError::Unavailable(
                        "the server did not answer BEGIN".into(),
                    ));
                }
            }
        }
    }

    fn close_connection(&mut self) {
        if self.client.take().is_some() {
            self.pool.checkin(None);
        }
    }

    /// Runs one guard-checked statement. `rows_only` (a SELECT, VALUES, TABLE or EXPLAIN)
    /// reports 0 rows affected. `deadline` is the call's: the host stops waiting then.
    pub fn execute(
        &mut self,
        statement: &str,
        params: Vec<Param>,
        rows_only: bool,
        deadline: Option<Instant>,
    ) -> Result<QueryResult, PgError> {
        let Some(client) = self.client.clone() else {
            return Err(PgError::Unavailable(
                "the connection of this call was lost".into(),
            ));
        };
        let limits = self.pool.limits;
        let mut wait = limits.statement_timeout + GRACE;
        if let Some(deadline) = deadline {
            wait = wait.min(deadline.saturating_duration_since(Instant::now()));
        }
        let cancel = client.cancel_token();
        let sql = statement.to_owned();
        match self.pool.run(wait, query(client, sql, params, limits)) {
            Some(Ok(mut result)) => {
                if rows_only {
                    result.rows_affected = 0;
                }
                Ok(result)
            }
            Some(Err(Failure::Db { sqlstate, message })) => {
                self.failed.get_or_insert(sqlstate.clone());
                Err(sql_error(sqlstate, message, limits))
            }
            Some(Err(Failure::Host(e))) => Err(e),
            Some(Err(Failure::Connection(message))) => {
                self.close_connection();
                Err(PgError::Unavailable(message))
            }
            None => {
                // Stop the statement, and drop this connection: its transaction is unknown.
                self.pool.run(Duration::ZERO, async move {
                    let _ = cancel.cancel_query(NoTls).await;
                });
                self.close_connection();
                Err(PgError::Limit(format!(
                    "the statement did not finish within the call's time limit ({} ms left)",
                    wait.as_millis()
                )))
            }
        }
    }

    /// Commits or rolls back, resets the session, and returns the connection to the pool.
    pub fn end(mut self, end: End) -> Result<(), CommitError> {
        let Some(client) = self.client.take() else {
            return match end {
                End::Commit => Err(CommitError::Unavailable(
                    "the connection of this call was lost".into(),
                )),
                End::Rollback => Ok(()),
            };
        };
        let failed = self.failed.take();
        let finish = match (end, &failed) {
            (End::Commit, None) => "COMMIT",
            _ => "ROLLBACK",
        };
        let wait = self.pool.limits.statement_timeout + GRACE;
        let c = client.clone();
        let answer = self.pool.run(wait, async move {
            // Pipelined: the reset is sent right behind the COMMIT, one round trip for both.
            let (ended, reset, check) = tokio::join!(
                c.batch_execute(finish),
                c.batch_execute(RESET_SESSION),
                c.simple_query(CHECK_SESSION)
            );
            let clean = match reset.and(check) {
                Ok(messages) => {
                    let row = messages.iter().find_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => {
                            Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                        }
                        _ => None,
                    });
                    let row: Vec<Option<String>> = row.unwrap_or_default();
                    let row: Vec<Option<&str>> = row.iter().map(Option::as_deref).collect();
                    session_clean(&row)
                }
                Err(e) => Err(format!("the reset failed: {e}")),
            };
            (ended, clean)
        });
        let (ended, clean) = match answer {
            Some(answer) => answer,
            None => {
                self.pool.checkin(None);
                return Err(CommitError::Unavailable(
                    "the server did not answer COMMIT".into(),
                ));
            }
        };
        if let Err(why) = &clean {
            tracing::warn!("postgres: closing a connection that did not come back clean: {why}");
        }
        let reuse = ended.is_ok() && clean.is_ok();
        self.pool.checkin(reuse.then_some(client));
        match (end, failed, ended) {
            (End::Rollback, _, _) => Ok(()),
            (End::Commit, Some(sqlstate), _) => Err(CommitError::Aborted(sqlstate)),
            (End::Commit, None, Ok(())) => Ok(()),
            (End::Commit, None, Err(e)) => Err(match e.as_db_error() {
                Some(db) => CommitError::Refused {
                    sqlstate: db.code().code().to_owned(),
                    message: db.message().to_owned(),
                },
                None => CommitError::Unavailable(e.to_string()),
            }),
        }
    }
}

/// How a statement failed on the client runtime.
enum Failure {
    /// The server rejected it; the transaction is aborted.
    Db { sqlstate: String, message: String },
    /// The host refused the result (caps, column types); the transaction is fine.
    Host(PgError),
    /// The connection is gone.
    Connection(String),
}

impl From<tokio_postgres::Error> for Failure {
    /// A server error, or else the connection is in an unknown state and must go.
    fn from(e: tokio_postgres::Error) -> Failure {
        match e.as_db_error() {
            Some(db) => Failure::Db {
                sqlstate: db.code().code().to_owned(),
                message: db.message().to_owned(),
            },
            None => Failure::Connection(format!("lost the Postgres connection: {e}")),
        }
    }
}

async fn query(
    client: Arc<Client>,
    sql: String,
    params: Vec<Param>,
    limits: Limits,
) -> Result<QueryResult, Failure> {
    let typed = params
        .iter()
        .map(|p| (p as &(dyn ToSql + Sync), p.declared_type()));
    let mut stream = pin!(client.query_typed_raw(&sql, typed).await?);
    let mut columns = Vec::new();
    let mut rows = Vec::new();
    let mut bytes = 0usize;
    while let Some(row) = stream.try_next().await? {
        if rows.is_empty() {
            for c in row.columns() {
                if !supported(c.type_()) {
                    let e = unsupported_column(c.name(), c.type_());
                    return Err(Failure::Host(PgError::Sql(SqlError {
                        sqlstate: e.sqlstate.into(),
                        message: e.message,
                    })));
                }
            }
            columns = row.columns().iter().map(|c| c.name().to_owned()).collect();
        }
        bytes += row.raw_size_bytes();
        if rows.len() == limits.max_rows || bytes > limits.max_bytes {
            return Err(Failure::Host(PgError::Limit(format!(
                "the result exceeds the host's cap of {} rows or {} MiB",
                limits.max_rows,
                limits.max_bytes >> 20
            ))));
        }
        let mut values = Vec::with_capacity(row.len());
        for i in 0..row.len() {
            let cell = row.try_get::<_, Cell>(i).map_err(|e| {
                Failure::Host(PgError::Sql(SqlError {
                    sqlstate: DATETIME_FIELD_OVERFLOW.into(),
                    message: format!("result column {i}: {e}"),
                }))
            })?;
            values.push(cell.0);
        }
        rows.push(values);
    }
    Ok(QueryResult {
        columns,
        rows,
        rows_affected: stream.rows_affected().unwrap_or(0),
    })
}

/// A server error as the guest sees it; a statement timeout is a `limit`.
fn sql_error(sqlstate: String, message: String, limits: Limits) -> PgError {
    match sqlstate.as_str() {
        // query_canceled: the host's statement_timeout (or its cancel at the call's deadline).
        "57014" => PgError::Limit(format!(
            "the statement was canceled after the host's statement timeout of {} ms ({message})",
            limits.statement_timeout.as_millis()
        )),
        s if s.starts_with("08") || matches!(s, "57P01" | "57P02" | "57P03") => {
            PgError::Unavailable(format!("SQLSTATE {s}: {message}"))
        }
        _ => PgError::Sql(SqlError { sqlstate, message }),
    }
}

fn unavailable(e: &tokio_postgres::Error) -> PgError {
    PgError::Unavailable(match e.as_db_error() {
        Some(db) => format!("SQLSTATE {}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_session_back_on_the_login_role_without_settings_is_clean() {
        assert_eq!(
            session_clean(&[Some("t"), Some("bridge"), Some("0")]),
            Ok(())
        );
        let role = session_clean(&[Some("f"), Some("auditor"), Some("0")]).unwrap_err();
        assert!(role.contains("\"auditor\""), "{role}");
        let settings = session_clean(&[Some("t"), Some("bridge"), Some("2")]).unwrap_err();
        assert!(settings.contains("2 settings"), "{settings}");
        assert!(session_clean(&[]).is_err());
        assert!(session_clean(&[None, None, None]).is_err());
    }

    #[test]
    fn timeouts_come_from_the_environment_and_bad_values_are_refused() {
        let d = Limits::from_env(|_| None).unwrap();
        assert!(d.connect_timeout <= Duration::from_secs(2));
        assert_eq!(d.statement_timeout, Duration::from_secs(5));
        let set = Limits::from_env(|k| match k {
            CONNECT_TIMEOUT_VAR => Some("750".into()),
            STATEMENT_TIMEOUT_VAR => Some(" 1500 ".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(set.connect_timeout, Duration::from_millis(750));
        assert_eq!(set.statement_timeout, Duration::from_millis(1500));
        for bad in ["0", "-1", "2s", "3600001"] {
            let e = Limits::from_env(|k| (k == CONNECT_TIMEOUT_VAR).then(|| bad.to_owned()))
                .unwrap_err();
            assert!(e.contains(CONNECT_TIMEOUT_VAR), "{e}");
        }
    }

    #[test]
    fn writers_begin_by_taking_the_writer_lock() {
        assert_eq!(
            BEGIN_WRITER,
            format!("BEGIN; SELECT pg_advisory_xact_lock({WRITER_LOCK})")
        );
    }
}
