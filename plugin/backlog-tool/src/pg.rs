//! [`Sql`] over the host's `backlog-bridge:pg/postgres` import: the component's only way to
//! Postgres. Converts values and errors one to one; the host owns the connection, the
//! transaction of the call and the grant.

use backlog_store::{QueryResult, Sql, SqlError, Value};

use crate::bindings::backlog_bridge::pg::postgres::{self, DbValue, PgError};

/// The database name the host maps to its DSN.
pub const DATABASE: &str = "backlog";

/// Statements through the host import, on database [`DATABASE`].
#[derive(Debug, Default, Clone, Copy)]
pub struct WitSql;

fn to_db(v: &Value) -> DbValue {
    match v {
        Value::Null => DbValue::Null,
        Value::Bool(b) => DbValue::Boolean(*b),
        Value::Int(n) => DbValue::Int64(*n),
        Value::Float(f) => DbValue::Float64(*f),
        Value::Text(s) => DbValue::Text(s.clone()),
        Value::Json(s) => DbValue::Json(s.clone()),
        Value::Timestamp(s) => DbValue::Timestamp(s.clone()),
        Value::Date(s) => DbValue::Date(s.clone()),
    }
}

fn from_db(v: DbValue) -> Value {
    match v {
        DbValue::Null => Value::Null,
        DbValue::Boolean(b) => Value::Bool(b),
        DbValue::Int64(n) => Value::Int(n),
        DbValue::Float64(f) => Value::Float(f),
        DbValue::Text(s) => Value::Text(s),
        DbValue::Json(s) => Value::Json(s),
        DbValue::Timestamp(s) => Value::Timestamp(s),
        DbValue::Date(s) => Value::Date(s),
    }
}

impl Sql for WitSql {
    fn execute(&mut self, statement: &str, params: &[Value]) -> Result<QueryResult, SqlError> {
        let params: Vec<DbValue> = params.iter().map(to_db).collect();
        match postgres::execute(DATABASE, statement, &params) {
            Ok(r) => Ok(QueryResult {
                columns: r.columns,
                rows: r
                    .rows
                    .into_iter()
                    .map(|row| row.into_iter().map(from_db).collect())
                    .collect(),
                rows_affected: r.rows_affected,
            }),
            Err(e) => Err(from_pg(e)),
        }
    }

    fn queue(&mut self, statement: &str, params: &[Value]) -> Result<(), SqlError> {
        let params: Vec<DbValue> = params.iter().map(to_db).collect();
        postgres::queue(DATABASE, statement, &params).map_err(from_pg)
    }
}

fn from_pg(e: PgError) -> SqlError {
    match e {
        PgError::NotGranted(m) => SqlError::NotGranted(m),
        PgError::Refused(m) => SqlError::Refused(m),
        PgError::Unavailable(m) => SqlError::Unavailable(m),
        PgError::Sql(s) => SqlError::Sql {
            sqlstate: s.sqlstate,
            message: s.message,
        },
        PgError::Limit(m) => SqlError::Limit(m),
    }
}
