//! One call's transaction on one pooled connection ([`Session`]): `BEGIN` pipelined with the
//! first statement, each guard-checked statement, and the end — COMMIT or ROLLBACK with the
//! session reset and its check in the same round trip.

use std::cell::Cell;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

use super::conn::{Conn, check_columns, first_row};
use super::pipeline::{Failure, Queued, fetch, prepare, prepare_all, run_queued};
use super::pool::{GRACE, Limits, Postgres};
use crate::caps::pg::value::Param;
use crate::runtime::bindings::pg::{PgError, QueryResult, SqlError};

/// How long past the call's deadline the COMMIT that carries queued statements may take
/// ([`Session::end`]).
pub const COMMIT_GRACE: Duration = Duration::from_millis(250);

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
        [Some("true"), ..] => {}
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
    /// The call's time limit passed while the statements it queued were running with the
    /// COMMIT (a write waiting for a row lock, say): the host canceled them, and the server
    /// rolled the transaction back. The number is the time they were given, in ms.
    #[error(
        "the call's time limit passed while Postgres ran the writes it queued for the COMMIT \
         (after {0} ms); they were canceled and rolled back"
    )]
    TimedOut(u128),
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
    /// Statements the guest queued, not sent yet: they go with the next statement or the
    /// COMMIT.
    queued: Vec<Queued>,
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

/// Whether a statement that failed with `sqlstate` wrote beyond the call's grant: a write in a
/// read-only transaction (25006) or without the privilege (42501). Such a call is `forbidden`.
pub fn beyond_grant(sqlstate: &str) -> bool {
    matches!(sqlstate, "25006" | "42501")
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
                        queued: Vec::new(),
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

    /// Queues a guard-checked statement whose result the guest does not need: it goes out
    /// with the call's next statement or with the COMMIT ([`Session::end`]).
    pub fn queue(&mut self, statement: &str, params: Vec<Param>) {
        self.queued.push(Queued {
            sql: statement.to_owned(),
            params,
        });
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
        let queued = std::mem::take(&mut self.queued);
        let again = (begin.is_some() && self.reused).then(|| (params.clone(), queued.clone()));
        let answer = client.drive(wait, async {
            // Pipelined: BEGIN (when this is the call's first statement), the queued
            // statements and this one go out together, in that order. BEGIN fails only with
            // the connection, and then nothing else runs.
            let work = async {
                let (prepared, this) = tokio::join!(
                    prepare_all(&client, &queued),
                    prepare(&client, statement, &params)
                );
                let (prepared, this) = (prepared?, this?);
                let (ran, result) = tokio::join!(
                    run_queued(&client, &prepared, &queued),
                    fetch(&client, &this, &params, limits)
                );
                ran.map_err(queued_failure)?;
                result
            };
            let (began, result) = tokio::join!(send_begin(&client, begin), work);
            began.and(result)
        });
        // A pooled connection the server closed meanwhile (restart, idle timeout, its
        // termination notice arriving as an error of the BEGIN): nothing of this call ran;
        // once more on a new connection.
        let stale = match &answer {
            Some(Err(Failure::Connection(_))) => true,
            Some(Err(Failure::Db { .. })) => client.is_closed(),
            _ => false,
        };
        if let (true, Some((params, queued)), Some(begin)) = (stale, again, begin) {
            self.queued = queued;
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
    /// as it came. Queued statements go out in the COMMIT's round trip (with the `BEGIN` when
    /// they are all the call sent); a rollback drops them unsent. With queued statements the
    /// round trip is bounded by the call's `deadline` (plus [`COMMIT_GRACE`] for the COMMIT
    /// itself), as they would have been run one by one: a queued write that waits for a row
    /// lock does not hold the call for the whole statement timeout.
    pub fn end(mut self, end: End, deadline: Option<Instant>) -> Result<(), CommitError> {
        let failed = self.failed.take();
        let queued = match (end, &failed) {
            (End::Commit, None) => std::mem::take(&mut self.queued),
            _ => Vec::new(),
        };
        if self.begin.is_some() && queued.is_empty() {
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
        let begin = self.begin.take();
        let finish = match (end, &failed) {
            (End::Commit, None) => "COMMIT",
            _ => "ROLLBACK",
        };
        let wait = self.pool.limits.statement_timeout + GRACE;
        // Queued statements are the call's own work: at its deadline (and the COMMIT's grace)
        // the host cancels them, then reads what the server made of the transaction.
        let cancel_after = match deadline {
            Some(deadline) if !queued.is_empty() => {
                Some(deadline.saturating_duration_since(Instant::now()) + COMMIT_GRACE)
            }
            _ => None,
        };
        let canceled = Cell::new(false);
        let cancel = client.cancel_token();
        let answer = client.drive(wait, async {
            let work = finish_on(&client, begin, &queued, finish);
            let Some(after) = cancel_after else {
                return work.await;
            };
            let mut work = pin!(work);
            tokio::select! {
                finished = &mut work => finished,
                () = tokio::time::sleep(after) => {
                    canceled.set(true);
                    let _ = cancel.cancel_query(NoTls).await;
                    work.await
                }
            }
        });
        // A server error; the host's own cancel at the deadline is the call's timeout.
        let refused = |sqlstate: String, message: String| match cancel_after {
            Some(after) if canceled.get() && sqlstate == "57014" => {
                CommitError::TimedOut(after.as_millis())
            }
            _ => CommitError::Refused { sqlstate, message },
        };
        let Some(Finished {
            began,
            ran,
            ended,
            clean,
        }) = answer
        else {
            self.pool.checkin(None);
            return Err(CommitError::Unavailable(
                "the server did not answer COMMIT".into(),
            ));
        };
        // A pooled connection the server closed meanwhile, found by the BEGIN of a call that
        // only queued: nothing of it ran; once more on a new connection.
        let lost =
            matches!(&began, Err(Failure::Connection(_))) || (began.is_err() && client.is_closed());
        if let (true, Some(begin), true) = (lost, begin, self.reused) {
            self.pool.checkin(None);
            let (client, _) = match self.pool.checkout() {
                Ok(taken) => taken,
                Err(e) => return Err(CommitError::Unavailable(e.to_string())),
            };
            self.client = Some(client);
            self.begin = Some(begin);
            // Not again: a new connection that fails is an answer.
            self.reused = false;
            self.queued = queued;
            return self.end(end, deadline);
        }
        if let Err(why) = &clean {
            tracing::warn!("postgres: closing a connection that did not come back clean: {why}");
        }
        let reuse = began.is_ok() && ended.is_ok() && clean.is_ok();
        self.pool.checkin(reuse.then_some(client));
        if end == End::Rollback {
            return Ok(());
        }
        if let Some(sqlstate) = failed {
            return Err(CommitError::Aborted(sqlstate));
        }
        match began.and(ran).map_err(queued_failure) {
            Err(Failure::Db { sqlstate, message }) => return Err(refused(sqlstate, message)),
            Err(Failure::Connection(message)) => return Err(CommitError::Unavailable(message)),
            // A queued statement's result is not read: not expected, but never success.
            Err(Failure::Host(_)) => {
                return Err(CommitError::Unavailable(
                    "the host could not run a queued statement".into(),
                ));
            }
            Ok(()) => {}
        }
        ended.map_err(|e| match e.as_db_error() {
            Some(db) => refused(db.code().code().to_owned(), db.message().to_owned()),
            None => CommitError::Unavailable(e.to_string()),
        })
    }
}

/// What the end of a call's transaction came back with.
struct Finished {
    /// The `BEGIN` sent with the end, when the call's statements were all queued.
    began: Result<(), Failure>,
    /// The queued statements.
    ran: Result<(), Failure>,
    /// The COMMIT or ROLLBACK.
    ended: Result<(), tokio_postgres::Error>,
    /// Whether the session came back from its reset as it was opened (`Err`: why not).
    clean: Result<(), String>,
}

/// The end of a transaction in one round trip: `begin` (if nothing was sent yet), the queued
/// statements, `finish`, the session reset and its check. A queued statement this connection
/// has not prepared costs a round trip before; one that fails to prepare turns `finish` into
/// a ROLLBACK.
async fn finish_on(
    client: &Conn,
    begin: Option<&'static str>,
    queued: &[Queued],
    finish: &'static str,
) -> Finished {
    let (statements, finish, prepare_failed) = match prepare_all(client, queued).await {
        Ok(statements) => (statements, finish, None),
        Err(e) => (Vec::new(), "ROLLBACK", Some(e)),
    };
    let queued = &queued[..statements.len()];
    let c: &Client = client;
    let (began, ran, ended, reset, check) = tokio::join!(
        send_begin(client, begin),
        run_queued(client, &statements, queued),
        c.batch_execute(finish),
        c.batch_execute(RESET_SESSION),
        c.query(&client.check, &[])
    );
    let clean = match reset.and(check) {
        Ok(rows) => {
            let row = first_row(&rows);
            let row: Vec<Option<&str>> = row.iter().map(Option::as_deref).collect();
            let fresh: Vec<Option<&str>> = client.fresh.iter().map(Option::as_deref).collect();
            session_clean(&row, &fresh)
        }
        Err(e) => Err(format!("the reset failed: {e}")),
    };
    Finished {
        began,
        ran: match prepare_failed {
            Some(e) => Err(e),
            None => ran,
        },
        ended,
        clean,
    }
}

/// Sends `begin`, if any.
async fn send_begin(client: &Conn, begin: Option<&'static str>) -> Result<(), Failure> {
    match begin {
        Some(begin) => client.batch_execute(begin).await.map_err(Failure::from),
        None => Ok(()),
    }
}

/// A queued statement's server error, named as one (the guest sent it earlier).
fn queued_failure(f: Failure) -> Failure {
    match f {
        Failure::Db { sqlstate, message } => Failure::Db {
            message: format!("a queued statement failed: {message}"),
            sqlstate,
        },
        other => other,
    }
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
            Some("true"),
            Some("bridge"),
            Some("\"$user\", public"),
            Some("30s"),
        ];
        assert_eq!(session_clean(&fresh, &fresh), Ok(()));
        let mut role = fresh;
        role[0] = Some("false");
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
        for s in ["25006", "42501"] {
            assert!(beyond_grant(s) && !retryable(s), "{s}");
        }
        assert!(!beyond_grant("23505"));
    }
}
