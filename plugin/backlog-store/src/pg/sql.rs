//! The SQL execution seam: [`Sql`], a mirror of the host's `backlog-bridge:pg/postgres`
//! interface (`wit/deps/pg/pg.wit`) in plain Rust, so [`super::PostgresStore`] compiles and is
//! tested natively (over the `postgres` crate) and runs in the component (over the WIT import)
//! unchanged.
//!
//! Owns the value and error types and the mapping of [`SqlError`] onto [`StoreError`]. It
//! knows nothing of the backlog tables.

use std::fmt;

use backlog_core::store::StoreError;

/// One parameter or column value (pg.wit `db-value`).
///
/// Parameters must match the type the server infers for their placeholder: `Text` for text,
/// `Int` for bigint (`LIMIT`, `OFFSET`), `Timestamp` for timestamptz (RFC 3339), `Date` for
/// date (`YYYY-MM-DD`), `Json` for json/jsonb (JSON text).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// boolean.
    Bool(bool),
    /// bigint (and smaller integers in results).
    Int(i64),
    /// double precision.
    Float(f64),
    /// text.
    Text(String),
    /// JSON text (json/jsonb).
    Json(String),
    /// RFC 3339 (timestamptz).
    Timestamp(String),
    /// `YYYY-MM-DD` (date).
    Date(String),
}

/// What a statement returned (pg.wit `query-result`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryResult {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Rows, each with one value per column.
    pub rows: Vec<Vec<Value>>,
    /// Rows inserted, updated or deleted (0 for a plain SELECT).
    pub rows_affected: u64,
}

/// Why a statement did not run or failed (pg.wit `pg-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlError {
    /// This call has no Postgres grant.
    NotGranted(String),
    /// The statement is not allowed (transaction or session control, several statements).
    Refused(String),
    /// The server cannot be reached, or its schema is not current.
    Unavailable(String),
    /// The server rejected the statement.
    Sql {
        /// Five-character SQLSTATE, e.g. `23505`.
        sqlstate: String,
        /// The server's message.
        message: String,
    },
    /// The result exceeded the host's row or byte cap, or the statement timeout.
    Limit(String),
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlError::NotGranted(m) => write!(f, "postgres: not granted: {m}"),
            SqlError::Refused(m) => write!(f, "postgres: statement refused: {m}"),
            SqlError::Unavailable(m) => write!(f, "postgres unavailable: {m}"),
            SqlError::Sql { sqlstate, message } => {
                write!(f, "postgres: SQLSTATE {sqlstate}: {message}")
            }
            SqlError::Limit(m) => write!(f, "postgres: limit exceeded: {m}"),
        }
    }
}

impl std::error::Error for SqlError {}

/// SQLSTATE of a unique violation.
pub const UNIQUE_VIOLATION: &str = "23505";
/// SQLSTATE of a write in a read-only transaction.
pub const READ_ONLY_TRANSACTION: &str = "25006";
/// SQLSTATE of insufficient privilege.
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";

/// Runs one parameterized statement (`$1`, `$2`, …) in the current call's transaction.
///
/// Implementations own the transaction: the first statement of a call opens it, the end of
/// the call commits (success) or rolls back (error). Callers never send transaction or
/// session statements (`BEGIN`, `COMMIT`, `SET`, …) and never more than one statement per
/// string; a statement that fails leaves the transaction unusable for the rest of the call.
pub trait Sql {
    /// Runs `statement` with `params` bound to `$1..$n`.
    fn execute(&mut self, statement: &str, params: &[Value]) -> Result<QueryResult, SqlError>;

    /// Runs `statement` whose result the caller does not need (a write), at the latest with
    /// the end of the call: the host sends it with the next [`Sql::execute`] or with the
    /// COMMIT, in the same round trip. Its server error then comes back from that `execute`,
    /// or fails the call. By default it runs now.
    fn queue(&mut self, statement: &str, params: &[Value]) -> Result<(), SqlError> {
        self.execute(statement, params).map(drop)
    }
}

impl<S: Sql + ?Sized> Sql for &mut S {
    fn execute(&mut self, statement: &str, params: &[Value]) -> Result<QueryResult, SqlError> {
        (**self).execute(statement, params)
    }

    fn queue(&mut self, statement: &str, params: &[Value]) -> Result<(), SqlError> {
        (**self).queue(statement, params)
    }
}

impl<S: Sql + ?Sized> Sql for Box<S> {
    fn execute(&mut self, statement: &str, params: &[Value]) -> Result<QueryResult, SqlError> {
        (**self).execute(statement, params)
    }

    fn queue(&mut self, statement: &str, params: &[Value]) -> Result<(), SqlError> {
        (**self).queue(statement, params)
    }
}

/// What the operator has to do when the tables are missing.
pub const MIGRATE_HINT: &str =
    "the database has no current backlog schema: run `backlog-bridge migrate`";

impl From<SqlError> for StoreError {
    /// `Unavailable` (and connection-class or missing-schema SQLSTATEs) → `Unavailable`;
    /// `NotGranted`, `Refused`, read-only transaction (25006) and insufficient privilege
    /// (42501) → `Forbidden`; everything else → `Internal`, naming the SQLSTATE.
    fn from(e: SqlError) -> Self {
        match &e {
            SqlError::Unavailable(_) => StoreError::Unavailable(e.to_string()),
            SqlError::NotGranted(_) | SqlError::Refused(_) => StoreError::Forbidden(e.to_string()),
            SqlError::Limit(_) => StoreError::Internal(e.to_string()),
            SqlError::Sql { sqlstate, message } => match sqlstate.as_str() {
                READ_ONLY_TRANSACTION | INSUFFICIENT_PRIVILEGE => StoreError::Forbidden(format!(
                    "postgres refused the write: this call holds a read-only grant \
                     (SQLSTATE {sqlstate}: {message})"
                )),
                // undefined_table, undefined_column, invalid_schema_name: not migrated.
                "42P01" | "42703" | "3F000" => StoreError::Unavailable(format!(
                    "{MIGRATE_HINT} (SQLSTATE {sqlstate}: {message})"
                )),
                // connection_exception (08xxx), admin/crash shutdown, cannot_connect_now.
                s if s.starts_with("08") || matches!(s, "57P01" | "57P02" | "57P03") => {
                    StoreError::Unavailable(e.to_string())
                }
                _ => StoreError::Internal(e.to_string()),
            },
        }
    }
}

/// Whether `e` is a statement failure of a transaction that lost a race with a concurrent one
/// (serialization failure 40001, deadlock 40P01, unique violation 23505): the host rolls the
/// call back and runs it again, so nothing about it is final.
pub fn lost_race(e: &StoreError) -> bool {
    match e {
        StoreError::Internal(m) => ["40001", "40P01", UNIQUE_VIOLATION]
            .iter()
            .any(|s| m.contains(&format!("SQLSTATE {s}"))),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lost_races_count_as_lost_races() {
        for state in ["40001", "40P01", "23505"] {
            let e = StoreError::from(SqlError::Sql {
                sqlstate: state.into(),
                message: "x".into(),
            });
            assert!(lost_race(&e), "{state}: {e:?}");
        }
        for state in ["23503", "23514", "42P01", "25006"] {
            let e = StoreError::from(SqlError::Sql {
                sqlstate: state.into(),
                message: "x".into(),
            });
            assert!(!lost_race(&e), "{state}: {e:?}");
        }
        assert!(!lost_race(&StoreError::Unavailable(
            "SQLSTATE 40001".into()
        )));
    }

    fn sql(state: &str) -> SqlError {
        SqlError::Sql {
            sqlstate: state.into(),
            message: "boom".into(),
        }
    }

    #[test]
    fn errors_map_to_store_errors() {
        let cases: Vec<(SqlError, &str)> = vec![
            (SqlError::Unavailable("down".into()), "unavailable"),
            (SqlError::NotGranted("no".into()), "forbidden"),
            (SqlError::Refused("BEGIN".into()), "forbidden"),
            (SqlError::Limit("rows".into()), "internal"),
            (sql("25006"), "forbidden"),
            (sql("42501"), "forbidden"),
            (sql("42P01"), "unavailable"),
            (sql("08006"), "unavailable"),
            (sql("57P01"), "unavailable"),
            (sql("23505"), "internal"),
            (sql("22P02"), "internal"),
        ];
        for (e, want) in cases {
            let shown = e.to_string();
            let got = match StoreError::from(e) {
                StoreError::Unavailable(_) => "unavailable",
                StoreError::Forbidden(_) => "forbidden",
                StoreError::Internal(m) => {
                    assert!(m.contains("postgres"), "{m}");
                    "internal"
                }
            };
            assert_eq!(got, want, "{shown}");
        }
        match StoreError::from(sql("42P01")) {
            StoreError::Unavailable(m) => assert!(m.contains("backlog-bridge migrate"), "{m}"),
            other => panic!("{other:?}"),
        }
        match StoreError::from(sql("22P02")) {
            StoreError::Internal(m) => assert!(m.contains("SQLSTATE 22P02"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
