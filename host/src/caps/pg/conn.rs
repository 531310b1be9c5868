//! One pooled connection ([`Conn`]), driven by the thread that uses it.
//!
//! A pooled connection owns a single-threaded tokio runtime, which its socket is registered
//! with, and its connection future. A statement runs with `block_on` on the calling thread (a
//! guest's host call on a `spawn_blocking` thread, or the CLI's main thread), polling the
//! connection and the statement together: no hand-off to another thread and back for each
//! statement, which was the largest part of a call's host time. Nobody polls an idle
//! connection; one the server closed meanwhile shows on its next use, and the session runs
//! that statement again on a new connection.

use std::collections::HashMap;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Config, Connection, NoTls, Socket, Statement};

/// The future that reads and writes one connection's socket.
type Link = Pin<Box<Connection<Socket, NoTlsStream>>>;

/// A pooled connection: the client, its driver, and its session as it was when opened, which
/// every reset must bring back ([`state`]).
pub(super) struct Conn {
    client: Client,
    /// The session check's row on the fresh session.
    pub(super) fresh: Vec<Option<String>>,
    /// [`CHECK_SESSION`], prepared once when the connection opens: run after every reset, it
    /// costs the server an execution, not a parse and a plan (~50 µs a call).
    pub(super) check: Statement,
    driver: Mutex<Driver>,
    /// Statements prepared on this connection.
    statements: Mutex<Prepared>,
}

/// By text, then parameter types.
type Prepared = HashMap<Box<str>, Vec<(Vec<Type>, Statement)>>;

struct Driver {
    runtime: Option<Runtime>,
    /// `None` once the connection ended: the client's requests then fail at once.
    link: Option<Link>,
}

/// Why a connection could not be opened.
pub(super) enum Opening {
    /// The connection's runtime could not be built.
    Runtime(std::io::Error),
    /// The server refused, or the network failed.
    Failed(tokio_postgres::Error),
    /// No answer within the wait.
    TimedOut,
}

impl std::ops::Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let driver = self
            .driver
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        driver.link = None;
        // Dropping a runtime may block, which is not allowed on an async thread.
        if let Some(runtime) = driver.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Conn {
    /// Connects with `config` and reads the fresh session's state ([`state`]), within `wait`.
    pub(super) fn open(config: &Config, wait: Duration) -> Result<Conn, Opening> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Opening::Runtime)?;
        let opened = runtime.block_on(async {
            tokio::time::timeout(wait, async {
                let (client, connection) = config.connect(NoTls).await?;
                let mut link = Some(Box::pin(connection));
                let (check, fresh) = alongside(&mut link, async {
                    let check = client.prepare(CHECK_SESSION).await?;
                    let fresh = state(&client, &check).await?;
                    Ok::<_, tokio_postgres::Error>((check, fresh))
                })
                .await?;
                Ok((client, link, check, fresh))
            })
            .await
        });
        let (client, link, check, fresh) = match opened {
            Ok(Ok(opened)) => opened,
            failed => {
                runtime.shutdown_background();
                return Err(match failed {
                    Ok(Err(e)) => Opening::Failed(e),
                    _ => Opening::TimedOut,
                });
            }
        };
        Ok(Conn {
            client,
            fresh,
            check,
            driver: Mutex::new(Driver {
                runtime: Some(runtime),
                link,
            }),
            statements: Mutex::default(),
        })
    }

    /// How many statements one connection keeps prepared; later ones are prepared for each
    /// use (the server keeps a prepared statement's plan for the session).
    pub(super) const MAX_PREPARED: usize = 256;

    /// The statement prepared on this connection for `sql` with parameters of `types`.
    pub(super) fn prepared(&self, sql: &str, types: &[Type]) -> Option<Statement> {
        let statements = self
            .statements
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        statements
            .get(sql)?
            .iter()
            .find(|(t, _)| t == types)
            .map(|(_, s)| s.clone())
    }

    /// Keeps `statement` (prepared for `sql` with `types`) for the next calls on this
    /// connection, up to [`Conn::MAX_PREPARED`].
    pub(super) fn keep(&self, sql: &str, types: Vec<Type>, statement: Statement) {
        let mut statements = self
            .statements
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if statements.values().map(Vec::len).sum::<usize>() < Self::MAX_PREPARED {
            statements
                .entry(sql.into())
                .or_default()
                .push((types, statement));
        }
    }

    /// Reads what the server sent while the connection sat idle: a server that ended the
    /// session meanwhile (restart, idle timeout) shows as [`Client::is_closed`] afterwards.
    /// Waits for nothing.
    pub(super) fn catch_up(&self) {
        let mut driver = self.driver.lock().unwrap_or_else(PoisonError::into_inner);
        let Driver { runtime, link } = &mut *driver;
        if let Some(runtime) = runtime.as_ref() {
            // Yielding once makes the runtime look at its sockets without waiting (a timer,
            // even of zero, would wait for the next millisecond tick).
            runtime.block_on(alongside(link, tokio::task::yield_now()));
        }
    }

    /// Runs `fut` (statements on this connection) on the calling thread, driving the
    /// connection meanwhile; `None` when it did not finish within `wait`.
    pub(super) fn drive<T>(&self, wait: Duration, fut: impl Future<Output = T>) -> Option<T> {
        let mut driver = self.driver.lock().unwrap_or_else(PoisonError::into_inner);
        let Driver { runtime, link } = &mut *driver;
        let runtime = runtime.as_ref()?;
        runtime.block_on(async { tokio::time::timeout(wait, alongside(link, fut)).await.ok() })
    }
}

/// Polls `fut` and the connection together until `fut` is done. A connection that ends
/// (closed by either side, or broken) is dropped, which fails what `fut` still waits for.
async fn alongside<T>(link: &mut Option<Link>, fut: impl Future<Output = T>) -> T {
    let mut fut = pin!(fut);
    std::future::poll_fn(|cx| {
        if let Some(connection) = link.as_mut()
            && let Poll::Ready(ended) = connection.as_mut().poll(cx)
        {
            if let Err(e) = ended {
                tracing::debug!("postgres connection closed: {e}");
            }
            *link = None;
        }
        fut.as_mut().poll(cx)
    })
    .await
}

/// The session check, run on a fresh connection ([`state`]) and after every reset (in the
/// reset's round trip): the role (same as the login role, and which), the settings that change
/// what a statement means or may do, and how many prepared statements SQL made (a guest's;
/// the host prepares through the protocol). `RESET ALL` restores every setting; the check
/// confirms it on these, against the same query run when the connection was opened, at the
/// cost of a few `current_setting` calls (reading `pg_settings` instead costs the server half a
/// millisecond per call). Judged by the session's `session_clean`.
pub(super) const CHECK_SESSION: &str = "SELECT (current_user = session_user)::text AS same_role, \
     current_user::text AS role, \
     pg_catalog.current_setting('search_path') AS search_path, \
     pg_catalog.current_setting('statement_timeout') AS statement_timeout, \
     pg_catalog.current_setting('lock_timeout') AS lock_timeout, \
     pg_catalog.current_setting('idle_in_transaction_session_timeout') \
         AS idle_in_transaction_session_timeout, \
     pg_catalog.current_setting('TimeZone') AS timezone, \
     pg_catalog.current_setting('DateStyle') AS datestyle, \
     pg_catalog.current_setting('IntervalStyle') AS intervalstyle, \
     pg_catalog.current_setting('default_transaction_read_only') \
         AS default_transaction_read_only, \
     pg_catalog.current_setting('default_transaction_isolation') \
         AS default_transaction_isolation, \
     pg_catalog.current_setting('session_replication_role') AS session_replication_role, \
     pg_catalog.current_setting('row_security') AS row_security, \
     pg_catalog.current_setting('bytea_output') AS bytea_output, \
     pg_catalog.current_setting('standard_conforming_strings') AS standard_conforming_strings, \
     pg_catalog.current_setting('client_encoding') AS client_encoding, \
     pg_catalog.current_setting('extra_float_digits') AS extra_float_digits, \
     (SELECT count(*) FROM pg_catalog.pg_prepared_statements WHERE from_sql)::text AS sql_prepared";

/// The session check's row on `client` now (every column as text), by its prepared
/// statement `check`: run once on a fresh connection, it is what every reset must bring back.
pub(super) async fn state(
    client: &Client,
    check: &Statement,
) -> Result<Vec<Option<String>>, tokio_postgres::Error> {
    let rows = client.query(check, &[]).await?;
    Ok(first_row(&rows))
}

/// The first row of the session check's answer, as text (a column that is not text: `None`).
pub(super) fn first_row(rows: &[tokio_postgres::Row]) -> Vec<Option<String>> {
    rows.first()
        .map(|r| {
            (0..r.len())
                .map(|i| r.try_get::<_, Option<String>>(i).ok().flatten())
                .collect()
        })
        .unwrap_or_default()
}

/// The names of [`CHECK_SESSION`]'s columns, in order.
pub(super) fn check_columns() -> impl Iterator<Item = &'static str> {
    CHECK_SESSION
        .split(" AS ")
        .skip(1)
        .filter_map(|rest| rest.split([',', ' ']).next())
}
