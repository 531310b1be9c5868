//! What goes out in one round trip on one connection: the statements a guest queued
//! ([`Queued`], the WIT `queue`) ahead of its next statement or of the COMMIT, each request
//! sent before any answer is awaited ([`in_order`]), and the reading of one statement's rows
//! ([`fetch`]).
//!
//! Order is the contract: a queued write runs before whatever the guest sends after it. A
//! tokio-postgres request goes out on its future's first poll when its statement is prepared,
//! so [`prepare_all`] runs first (a round trip of its own only for a statement this
//! connection has not prepared yet), then the requests are polled in the order they were made.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::Poll;

use futures_util::TryStreamExt as _;
use futures_util::future::{MaybeDone, maybe_done};
use tokio_postgres::Statement;
use tokio_postgres::types::{ToSql, Type};

use super::conn::Conn;
use super::pool::Limits;
use super::value::{Cell, Param, supported, unsupported_column};
use crate::runtime::bindings::pg::{PgError, QueryResult, SqlError};

/// SQLSTATE for a result value the host cannot represent (an infinite timestamp, …).
const DATETIME_FIELD_OVERFLOW: &str = "22008";

/// How a statement failed on the client runtime.
pub(super) enum Failure {
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

/// A statement the guest queued: it travels with the call's next statement or its COMMIT.
#[derive(Debug, Clone)]
pub(super) struct Queued {
    pub(super) sql: String,
    pub(super) params: Vec<Param>,
}

/// Polls every future, in the order given, on every poll until all are done: requests made
/// on their first poll go out in that order, in one write.
pub(super) async fn in_order<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<MaybeDone<F>>>> = futures
        .into_iter()
        .map(|f| Box::pin(maybe_done(f)))
        .collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for f in &mut futures {
            done &= f.as_mut().poll(cx).is_ready();
        }
        match done {
            true => Poll::Ready(()),
            false => Poll::Pending,
        }
    })
    .await;
    futures
        .iter_mut()
        .filter_map(|f| f.as_mut().take_output())
        .collect()
}

/// The prepared statement for `sql` with parameters like `params`: this connection's, else
/// prepared now (and kept).
pub(super) async fn prepare(
    client: &Conn,
    sql: &str,
    params: &[Param],
) -> Result<Statement, Failure> {
    let types: Vec<Type> = params.iter().map(Param::declared_type).collect();
    if let Some(statement) = client.prepared(sql, &types) {
        return Ok(statement);
    }
    let statement = client.prepare_typed(sql, &types).await?;
    client.keep(sql, types, statement.clone());
    Ok(statement)
}

/// The statements of `queued`, prepared: no round trip when this connection has them all,
/// else one for all that are missing (their requests go out together).
pub(super) async fn prepare_all(
    client: &Conn,
    queued: &[Queued],
) -> Result<Vec<Statement>, Failure> {
    let prepares = queued.iter().map(|q| prepare(client, &q.sql, &q.params));
    in_order(prepares.collect()).await.into_iter().collect()
}

/// Sends the queued statements (prepared as `statements`) at once and waits for them all;
/// the first failure, in queue order, is the answer.
pub(super) async fn run_queued(
    client: &Conn,
    statements: &[Statement],
    queued: &[Queued],
) -> Result<(), Failure> {
    let runs = statements.iter().zip(queued).map(|(statement, q)| {
        client.execute_raw(statement, q.params.iter().map(|p| p as &(dyn ToSql + Sync)))
    });
    for ran in in_order(runs.collect()).await {
        ran?;
    }
    Ok(())
}

/// Runs `statement` with `params` and reads its rows, within the host's caps.
pub(super) async fn fetch(
    client: &Conn,
    statement: &Statement,
    params: &[Param],
    limits: Limits,
) -> Result<QueryResult, Failure> {
    let values = params.iter().map(|p| p as &(dyn ToSql + Sync));
    let mut stream = pin!(client.query_raw(statement, values).await?);
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
