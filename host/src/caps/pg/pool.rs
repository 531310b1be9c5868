//! Connections to the configured database: the pool ([`Postgres`]), the per-call
//! transaction on one pooled connection ([`Session`](super::session::Session)), and the schema check.
//!
//! Threads: a pooled connection ([`Conn`]) owns a single-threaded runtime, and the thread
//! running the call (the CLI's main thread, a `spawn_blocking` thread of the HTTP server)
//! drives it while it waits for its statement: no hand-off per statement. The pool's own
//! small runtime runs what is not a pooled call: connections for `migrate` and the scheduler
//! ([`Postgres::connect`], whose callers hand futures over and wait on a channel with a
//! deadline) and cancel requests.
//!
//! Every connection is opened with the host's session settings in its startup packet
//! (`statement_timeout`, `TimeZone=UTC`), so they are the session defaults that a reset
//! restores. Between calls a connection is reset (role and session authorization, settings,
//! temp objects, advisory locks, cursors: `DISCARD ALL` but for the host's prepared
//! statements) and then checked in the same round trip against its state when it was
//! opened: the login role, the settings that change what a statement means, no statement
//! prepared by SQL. A connection that fails the check is closed, never reused: a call must
//! not see — or run as — what an earlier call left in the session.
//!
//! Outages: a connect that fails or does not answer within the connect timeout marks the
//! server down for [`Limits::retry_after`]; until then calls and [`Postgres::status`] answer
//! `unavailable` at once instead of each waiting for a connect timeout.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, Config, NoTls};

use super::conn::{Conn, Opening};
use super::dsn::Dsn;
use crate::runtime::bindings::pg::PgError;

mod limits;

pub use limits::{CONNECT_TIMEOUT_VAR, Limits, STATEMENT_TIMEOUT_VAR};

/// The database name guests use: the only one the host grants.
pub const DATABASE: &str = "backlog";

/// Extra wait beyond the statement timeout before the host gives up on the server.
pub(super) const GRACE: Duration = Duration::from_secs(2);

/// Extra wait beyond the connect timeout (the client's own timer fires first).
const CONNECT_MARGIN: Duration = Duration::from_millis(250);

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
    idle: Vec<Arc<Conn>>,
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
    /// The guard's verdicts on the statements guests sent through this pool.
    pub(super) verdicts: super::verdicts::Verdicts,
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
            verdicts: Default::default(),
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
        match self.run(wait, connect(self.config.clone())) {
            Some(Ok(client)) => Ok(client),
            Some(Err(e)) => self.failed(connect_failure(&e)),
            None => self.failed(timed_out(wait)),
        }
    }

    /// A new connection for the pool (driven by its callers), with its fresh session's state.
    fn pooled_within(&self, wait: Duration) -> Result<Conn, ConnectError> {
        match Conn::open(&self.config, wait) {
            Ok(conn) => Ok(conn),
            Err(Opening::Runtime(e)) => Err(ConnectError::Runtime(e)),
            Err(Opening::Failed(e)) => self.failed(connect_failure(&e)),
            Err(Opening::TimedOut) => self.failed(timed_out(wait)),
        }
    }

    /// Marks the server down for `message` and says so.
    fn failed<T>(&self, message: String) -> Result<T, ConnectError> {
        self.mark_down(&message);
        Err(ConnectError::Connect {
            dsn: self.dsn.redacted(),
            message,
        })
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
    pub(super) fn checkout(&self) -> Result<(Arc<Conn>, bool), PgError> {
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
            if let Some(client) = slots.idle.pop() {
                drop(slots);
                client.catch_up();
                if !client.is_closed() {
                    return Ok((client, true));
                }
                slots = self.lock();
                slots.open -= 1;
                continue;
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
        match self.pooled_within(self.limits.connect_timeout + CONNECT_MARGIN) {
            Ok(conn) => Ok((Arc::new(conn), false)),
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
    pub(super) fn checkin(&self, client: Option<Arc<Conn>>) {
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
                client.catch_up();
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
            None => match self.pooled_within(self.limits.connect_timeout) {
                Ok(conn) => Arc::new(conn),
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
    fn schema(&self, client: &Arc<Conn>) -> Result<Schema, PgError> {
        self.schema_within(client, self.limits.statement_timeout + GRACE)
    }

    fn schema_within(&self, client: &Arc<Conn>, wait: Duration) -> Result<Schema, PgError> {
        let answer = client.drive(wait, async {
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
    pub(super) fn ensure_schema(&self, client: &Arc<Conn>) -> Result<(), PgError> {
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

/// The message of a connect that did not answer within `wait`.
fn timed_out(wait: Duration) -> String {
    format!(
        "the server did not answer within {} ms (connect timeout; set {CONNECT_TIMEOUT_VAR})",
        wait.as_millis()
    )
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

fn unavailable(e: &tokio_postgres::Error) -> PgError {
    PgError::Unavailable(match e.as_db_error() {
        Some(db) => format!("SQLSTATE {}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    })
}
