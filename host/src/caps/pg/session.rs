//! One call's transaction on one pooled connection ([`Session`]): `BEGIN` pipelined with the
//! first statement, each guard-checked statement, and the end — COMMIT or ROLLBACK with the
//! session reset and its check in the same round trip.

use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt as _;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};

use super::conn::{CHECK_SESSION, Conn, check_columns, first_row};
use super::pool::{GRACE, Limits, Postgres};
use crate::caps::pg::value::{Cell, Param, supported, unsupported_column};
use crate::runtime::bindings::pg::{PgError, QueryResult, SqlError};

/// SQLSTATE for a result value the host cannot represent (an infinite timestamp, …).
const DATETIME_FIELD_OVERFLOW: &str = "22008";

/// What resets a connection's session between calls: what `DISCARD ALL` does but for
/// `DEALLOCATE ALL` and `DISCARD PLANS`. The role and session authorization, every setting (the
/// host's come back from the startup packet), cursors, listens, advisory locks, sequence state
/// and temp objects go. The host's own prepared statements and their plans stay (the server
/// replans them itself when what they depend on changes): dropping them made every call parse
/// and plan its statements, and its trigger's, again. A guest cannot prepare one (the guard
/// refuses `PREPARE`), and the check after the reset closes a connection on which one was.
/// One simple query: an implicit transaction, so a failure anywhere undoes it all and the
/// connection is closed. Pipelined behind the COMMIT with the session check behind it: one
/// round trip for the three.
const RESET_SESSION: &str = "SET SESSION AUTHORIZATION DEFAULT; RESET ALL; \
     CLOSE ALL; UNLISTEN *; SELECT pg_catalog.pg_advisory_unlock_all(); DISCARD SEQUENCES; \
     DISCARD TEMP";

/// Whether the check after a reset (`now`) shows the session as it was when the connection was
/// opened (`fresh`): the login role, every checked setting back. `Err` names what is not.
pub fn session_clean(now: &[Option<&str>], fresh: &[Option<&str>]) -> Result<(), String> {
    match now {
        [] => return Err("the session check returned no row".into()),
        [Some("t"), ..] => {}
        [_, role, ..] => {
            return Err(format!(
                "the session still runs as role {:?}, not the login role",
                role.unwrap_or("?")
            ));
        }
        [_] => return Err("the session check returned a short row".into()),
    }
    if now.len() != fresh.len() {
        return Err("the session check's row changed shape".into());
    }
    let changed = now
        .iter()
        .zip(fresh)
        .zip(check_columns())
        .find(|((a, b), _)| a != b);
    match changed {
        Some(((now, fresh), name)) => Err(format!(
            "setting {name} is {:?}, not {:?} as when the connection was opened",
            now.unwrap_or("NULL"),
            fresh.unwrap_or("NULL")
        )),
        None => Ok(()),
    }
}

/// How a call ends its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Commit,
    Rollback,
}

/// Why a transaction could not be committed: its writes are not in the database, except
/// after [`CommitError::Unavailable`], whose outcome nobody on the host side can know.
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
    /// The connection broke after `COMMIT` was sent: the server may have committed or not,
    /// and the host cannot tell. The answer says so (the writes are not acknowledged, and a
    /// caller should look before it retries a create).
    #[error(
        "Postgres became unavailable while committing, so whether its writes were saved is \
         unknown (look before retrying): {0}"
    )]
    Unavailable(String),
}

/// One call's transaction on one pooled connection. Opened by the first statement (its
/// `BEGIN` travels in the same round trip), ended by [`Session::end`]; dropped without ending,
/// it closes its connection (the server then rolls back), so no transaction outlives its call.
///
/// Writers take no lock of their own: correctness under concurrent writers comes from the
/// database (the store's row locks and the UNIQUE constraints), and a call that lost a race
/// ([`retryable`]) is run again by the host in a fresh transaction (`docs/storage.md`).
pub struct Session {
    pool: Arc<Postgres>,
    client: Option<Arc<Conn>>,
    /// The `BEGIN` not sent yet: it goes with the first statement.
    begin: Option<&'static str>,
    /// The connection came from the idle list, so the server may have closed it meanwhile.
    reused: bool,
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

/// Whether a transaction that failed with `sqlstate` lost a race with a concurrent one and may
/// succeed when run again from the start: a serialization failure (40001), a deadlock
/// (40P01), or a unique violation (23505: two calls created one new dedupe key at once; the
/// second sees the first's item when run again).
pub fn retryable(sqlstate: &str) -> bool {
    matches!(sqlstate, "40001" | "40P01" | "23505")
}

impl Session {
    /// Takes a connection and checks the schema (once per pool); the transaction (`BEGIN READ
    /// ONLY` unless `read_write`) starts with the first statement, in its round trip.
    pub fn begin(pool: &Arc<Postgres>, read_write: bool) -> Result<Session, PgError> {
        let begin = if read_write {
            "BEGIN"
        } else {
            "BEGIN READ ONLY"
        };
        let mut retried = false;
        loop {
            let (client, reused) = pool.checkout()?;
            match pool.ensure_schema(&client) {
                Ok(()) => {
                    return Ok(Session {
                        pool: pool.clone(),
                        client: Some(client),
                        begin: Some(begin),
                        reused,
                        failed: None,
                    });
                }
                Err(_) if client.is_closed() && reused && !retried => {
                    pool.checkin(None);
                    retried = true;
                }
                Err(e) => {
                    // Nothing was begun: the connection goes back to the pool as it came.
                    pool.checkin(Some(client));
                    return Err(e);
                }
            }
        }
    }

    /// The SQLSTATE of the first statement of this call the server refused, if any.
    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    fn close_connection(&mut self) {
        if self.client.take().is_some() {
            self.pool.checkin(None);
        }
    }

    /// Runs one guard-checked statement (the first one behind the transaction's `BEGIN`, in
    /// one round trip). `rows_only` (a SELECT, VALUES, TABLE or EXPLAIN) reports 0 rows
    /// affected. `deadline` is the call's: the host stops waiting then. A pooled connection the
    /// server closed meanwhile (restart, idle timeout) is replaced once, on the first statement.
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
        let begin = self.begin.take();
        let again = (begin.is_some() && self.reused).then(|| params.clone());
        let answer = client.drive(wait, async {
            match begin {
                // Pipelined: BEGIN is sent first, the statement right behind it. BEGIN fails
                // only with the connection, and then the statement never runs.
                Some(begin) => {
                    let (began, result) = tokio::join!(
                        client.batch_execute(begin),
                        query(&client, statement, params, limits)
                    );
                    began.map_err(Failure::from).and(result)
                }
                None => query(&client, statement, params, limits).await,
            }
        });
        // A pooled connection the server closed meanwhile (restart, idle timeout, its
        // termination notice arriving as an error of the BEGIN): nothing of this call ran;
        // once more on a new connection.
        let stale = match &answer {
            Some(Err(Failure::Connection(_))) => true,
            Some(Err(Failure::Db { .. })) => client.is_closed(),
            _ => false,
        };
        if let (true, Some(params), Some(begin)) = (stale, again, begin) {
            self.close_connection();
            let (client, reused) = self.pool.checkout()?;
            self.client = Some(client);
            self.begin = Some(begin);
            self.reused = reused;
            return self.execute(statement, params, rows_only, deadline);
        }
        match answer {
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

    /// Commits or rolls back, resets the session, and returns the connection to the pool. A
    /// session whose first statement never went out began nothing: its connection goes back
    /// as it came.
    pub fn end(mut self, end: End) -> Result<(), CommitError> {
        if self.begin.is_some() {
            if let Some(client) = self.client.take() {
                self.pool.checkin(Some(client));
            }
            return Ok(());
        }
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
        let (c, fresh): (&Client, _) = (&client, &client.fresh);
        let answer = client.drive(wait, async {
            // Pipelined: the reset is sent right behind the COMMIT, one round trip for both.
            let (ended, reset, check) = tokio::join!(
                c.batch_execute(finish),
                c.batch_execute(RESET_SESSION),
                c.simple_query(CHECK_SESSION)
            );
            let clean = match reset.and(check) {
                Ok(messages) => {
                    let row = first_row(&messages);
                    let row: Vec<Option<&str>> = row.iter().map(Option::as_deref).collect();
                    let fresh: Vec<Option<&str>> = fresh.iter().map(Option::as_deref).collect();
                    session_clean(&row, &fresh)
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
    client: &Conn,
    sql: &str,
    params: Vec<Param>,
    limits: Limits,
) -> Result<QueryResult, Failure> {
    let types: Vec<Type> = params.iter().map(Param::declared_type).collect();
    let statement = match client.prepared(sql, &types) {
        Some(statement) => statement,
        None => {
            let statement = client.prepare_typed(sql, &types).await?;
            client.keep(sql, types, statement.clone());
            statement
        }
    };
    let values = params.iter().map(|p| p as &(dyn ToSql + Sync));
    let mut stream = pin!(client.query_raw(&statement, values).await?);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_session_back_as_it_was_opened_is_clean() {
        let names: Vec<&str> = check_columns().collect();
        assert_eq!(names.len(), 18, "{names:?}");
        assert_eq!(names[..3], ["same_role", "role", "search_path"]);
        assert_eq!(names[17], "sql_prepared");
        let fresh = [
            Some("t"),
            Some("bridge"),
            Some("\"$user\", public"),
            Some("30s"),
        ];
        assert_eq!(session_clean(&fresh, &fresh), Ok(()));
        let mut role = fresh;
        role[0] = Some("f");
        role[1] = Some("auditor");
        let role = session_clean(&role, &fresh).unwrap_err();
        assert!(role.contains("\"auditor\""), "{role}");
        let mut path = fresh;
        path[2] = Some("evil, public");
        let path = session_clean(&path, &fresh).unwrap_err();
        assert!(
            path.contains("search_path") && path.contains("evil"),
            "{path}"
        );
        assert!(session_clean(&fresh[..3], &fresh).is_err());
        assert!(session_clean(&[], &fresh).is_err());
        assert!(session_clean(&[None, None, None, None], &fresh).is_err());
    }

    #[test]
    fn only_lost_races_are_run_again() {
        for s in ["40001", "40P01", "23505"] {
            assert!(retryable(s), "{s}");
        }
        for s in ["23503", "23514", "25006", "57014", "42P01", "08006"] {
            assert!(!retryable(s), "{s}");
        }
    }
}
