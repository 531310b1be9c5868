//! The Postgres capability: the host side of `backlog-bridge:pg/postgres@0.1.0`
//! (`wit/deps/pg/pg.wit`).
//!
//! Owns what one call may do with Postgres ([`PgGrant`], held by the call's store): whether it
//! may at all (`grants.postgres`), read-only or read-write, and the call's transaction, which
//! the host opens on the first statement and ends when the call returns ([`PgGrant::end_call`]:
//! commit on `ok`, roll back on an error result, a trap or a timeout).
//!
//! Must not: hand a guest the DSN, a password or a host name (guests name the database
//! `backlog`); let a guest statement control the transaction or the session (see [`guard`]);
//! let a transaction or session state outlive its call (a warm instance starts every call
//! clean).
//!
//! Only this module talks to Postgres (`migrate` borrows its pool).

mod conn;
pub mod dsn;
pub mod guard;
mod pipeline;
pub mod pool;
pub mod session;
pub mod value;
mod verdicts;

use std::sync::Arc;
use std::time::Instant;

pub use dsn::{DSN_VARS, Dsn, render};
pub use pool::{
    CONNECT_TIMEOUT_VAR, ConnectError, DATABASE, Limits, PgStatus, Postgres, STATEMENT_TIMEOUT_VAR,
};
pub use session::{CommitError, End};

/// The WIT types of `backlog-bridge:pg/postgres`, as the host sees them.
pub use crate::runtime::bindings::pg::{DbValue, PgError, QueryResult, SqlError};

use wasmtime::component::{HasData, Linker};

use crate::grants::Access;
use crate::runtime::bindings::pg::{Host, add_to_linker as link};
use session::Session;
use value::Param;

/// One store's Postgres grant, and the transaction of the call it is running.
pub struct PgGrant {
    /// The pool, when the call has a grant (`None`: every statement is `not-granted`).
    pool: Option<Arc<Postgres>>,
    read_write: bool,
    session: Option<Session>,
    /// The running call's deadline: the host stops waiting for the server then.
    deadline: Option<Instant>,
    /// The last call's transaction lost a race ([`session::retryable`]): running it again may
    /// succeed.
    lost_race: bool,
}

impl PgGrant {
    /// The grant for `access` over `pool` (no pool or `Access::None`: nothing).
    pub fn new(access: Access, pool: Option<Arc<Postgres>>) -> PgGrant {
        PgGrant {
            pool: pool.filter(|_| access != Access::None),
            read_write: access == Access::ReadWrite,
            session: None,
            deadline: None,
            lost_race: false,
        }
    }

    /// No Postgres at all (the default of every store).
    pub fn none() -> PgGrant {
        PgGrant::new(Access::None, None)
    }

    /// Starts a call that must finish by `deadline`.
    pub fn begin_call(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
    }

    /// Ends the call's transaction, if a statement opened one: commits for
    /// [`End::Commit`], rolls back otherwise. Always leaves no transaction behind. Statements
    /// still queued go out with the COMMIT, within the call's time limit
    /// ([`CommitError::TimedOut`]).
    pub fn end_call(&mut self, end: End) -> Result<(), CommitError> {
        let deadline = self.deadline.take();
        self.lost_race = false;
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let failed = session.failed().is_some_and(session::retryable);
        let ended = session.end(end, deadline);
        self.lost_race = failed
            || matches!(&ended, Err(CommitError::Refused { sqlstate, .. }) if session::retryable(sqlstate));
        ended
    }

    /// Whether the transaction [`PgGrant::end_call`] just ended lost a race with a concurrent
    /// one (serialization failure, deadlock, unique violation): it was rolled back, and the
    /// whole call may be run again in a fresh transaction.
    pub fn lost_race(&self) -> bool {
        self.lost_race
    }

    /// The guest's `execute`.
    pub fn execute(
        &mut self,
        database: &str,
        statement: &str,
        params: Vec<DbValue>,
    ) -> Result<QueryResult, PgError> {
        let deadline = self.deadline;
        let (session, params, rows_only) = self.admit(database, statement, params)?;
        session.execute(statement, params, rows_only, deadline)
    }

    /// The guest's `queue`: checked now, sent with the next statement or the COMMIT.
    pub fn queue(
        &mut self,
        database: &str,
        statement: &str,
        params: Vec<DbValue>,
    ) -> Result<(), PgError> {
        let (session, params, _) = self.admit(database, statement, params)?;
        session.queue(statement, params);
        Ok(())
    }

    /// What `execute` and `queue` check before a statement may go to the server: the grant,
    /// the database's name, the guard, the parameters and the call's time; then the call's
    /// session (opened here on its first statement), the parameters and whether the
    /// statement only reads rows.
    fn admit(
        &mut self,
        database: &str,
        statement: &str,
        params: Vec<DbValue>,
    ) -> Result<(&mut Session, Vec<Param>, bool), PgError> {
        let Some(pool) = &self.pool else {
            return Err(PgError::NotGranted(
                "this call has no Postgres grant: none of the action's entitlements gives \
                 `postgres` in plugins.yml, or the host has no Postgres backend configured \
                 (BACKLOG_BACKEND postgres|auto and BACKLOG_POSTGRES_DSN)"
                    .into(),
            ));
        };
        if database != DATABASE {
            return Err(PgError::NotGranted(format!(
                "no grant for database `{database}`; the only database is `{DATABASE}`"
            )));
        }
        let checked = pool.verdicts.check(statement).map_err(PgError::Refused)?;
        let params = params
            .into_iter()
            .enumerate()
            .map(|(i, v)| Param::from_guest(v, i + 1))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                PgError::Sql(SqlError {
                    sqlstate: e.sqlstate.into(),
                    message: e.message,
                })
            })?;
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(PgError::Limit("the call's time limit is spent".into()));
        }
        if self.session.is_none() {
            self.session = Some(Session::begin(pool, self.read_write)?);
        }
        match &mut self.session {
            Some(session) => Ok((session, params, checked.rows_only)),
            None => Err(PgError::Unavailable("no Postgres session".into())),
        }
    }
}

/// The trap a host call raises when the call's time limit passes while (or before) Postgres
/// runs a statement; the host reports it as `timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the call's time limit passed while Postgres was running a statement")]
pub struct DeadlineExceeded;

/// The capability as the linker sees it: a store's state projects its [`PgGrant`] out
/// (`|state| &mut state.pg`), as `wasmtime-wasi` does for its interfaces.
pub struct Pg;

impl HasData for Pg {
    type Data<'a> = &'a mut PgGrant;
}

/// Links `backlog-bridge:pg/postgres` for stores whose state holds a [`PgGrant`].
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    project: fn(&mut T) -> &mut PgGrant,
) -> wasmtime::Result<()> {
    link::<T, Pg>(linker, project)
}

impl Host for PgGrant {
    fn execute(
        &mut self,
        database: String,
        statement: String,
        params: Vec<DbValue>,
    ) -> wasmtime::Result<Result<QueryResult, PgError>> {
        let deadline = self.deadline;
        let result = PgGrant::execute(self, &database, &statement, params);
        match (&result, deadline) {
            (Err(PgError::Limit(_)), Some(d)) if Instant::now() >= d => {
                Err(wasmtime::Error::new(DeadlineExceeded))
            }
            _ => Ok(result),
        }
    }

    fn queue(
        &mut self,
        database: String,
        statement: String,
        params: Vec<DbValue>,
    ) -> Result<(), PgError> {
        PgGrant::queue(self, &database, &statement, params)
    }
}
