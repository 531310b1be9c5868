//! `db-value` ↔ Postgres: parameters are sent with the type their variant names (`text` →
//! text, `int64` → int8, `float64` → float8, `boolean` → bool, `json` → jsonb, `timestamp` →
//! timestamptz, `date` → date, `null` → inferred by the server); result columns of those types
//! (and int2/int4, float4, varchar, char, name, json, void) come back as the matching variant.
//! Any other column type is an error naming the column and its type: the guest casts it in SQL
//! (`::text`, `::int8`, `::float8`).
//!
//! Timestamps leave the host as RFC 3339 UTC with microseconds (`2026-03-02T06:20:01.123456Z`);
//! as parameters they may carry any offset, or none (read as UTC, the legacy form).

use std::error::Error;

use bytes::{BufMut as _, BytesMut};
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use crate::runtime::bindings::pg::DbValue;

/// SQLSTATE `invalid_datetime_format`: a timestamp or date parameter that does not parse.
pub const INVALID_DATETIME_FORMAT: &str = "22007";
/// SQLSTATE `feature_not_supported`: a result column of a type `db-value` does not carry.
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";

/// A value the host could not convert, with the SQLSTATE the guest receives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValueError {
    pub sqlstate: &'static str,
    pub message: String,
}

/// A guest parameter, parsed and ready to encode as the type it declares.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Json(String),
    Timestamp(DateTime<Utc>),
    Date(NaiveDate),
}

impl Param {
    /// Parses parameter `$n` (1-based, for the message).
    pub fn from_guest(value: DbValue, n: usize) -> Result<Param, ValueError> {
        Ok(match value {
            DbValue::Null => Param::Null,
            DbValue::Boolean(b) => Param::Bool(b),
            DbValue::Int64(i) => Param::Int(i),
            DbValue::Float64(f) => Param::Float(f),
            DbValue::Text(s) => Param::Text(s),
            DbValue::Json(s) => Param::Json(s),
            DbValue::Timestamp(s) => {
                Param::Timestamp(parse_timestamp(&s).ok_or_else(|| ValueError {
                    sqlstate: INVALID_DATETIME_FORMAT,
                    message: format!("parameter ${n}: {s:?} is not an RFC 3339 timestamp"),
                })?)
            }
            DbValue::Date(s) => Param::Date(NaiveDate::parse_from_str(&s, "%Y-%m-%d").map_err(
                |_| ValueError {
                    sqlstate: INVALID_DATETIME_FORMAT,
                    message: format!("parameter ${n}: {s:?} is not a YYYY-MM-DD date"),
                },
            )?),
        })
    }

    /// The type the host declares for this parameter (`unknown` lets the server infer it).
    pub fn declared_type(&self) -> Type {
        match self {
            Param::Null => Type::UNKNOWN,
            Param::Bool(_) => Type::BOOL,
            Param::Int(_) => Type::INT8,
            Param::Float(_) => Type::FLOAT8,
            Param::Text(_) => Type::TEXT,
            Param::Json(_) => Type::JSONB,
            Param::Timestamp(_) => Type::TIMESTAMPTZ,
            Param::Date(_) => Type::DATE,
        }
    }
}

/// RFC 3339 with any offset, or a naive `YYYY-MM-DDTHH:MM:SS[.f]` read as UTC.
fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
}

impl ToSql for Param {
    /// Encodes in binary as [`Param::declared_type`]; `ty` is always that type.
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Param::Null => Ok(IsNull::Yes),
            Param::Bool(b) => b.to_sql(ty, out),
            Param::Int(i) => i.to_sql(ty, out),
            Param::Float(f) => f.to_sql(ty, out),
            Param::Text(s) => s.as_str().to_sql(ty, out),
            Param::Json(s) => {
                // jsonb's binary form: version 1, then the JSON text (the server parses it).
                out.put_u8(1);
                out.put_slice(s.as_bytes());
                Ok(IsNull::No)
            }
            Param::Timestamp(t) => t.to_sql(ty, out),
            Param::Date(d) => d.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Whether result columns of type `ty` convert to a `db-value`.
pub fn supported(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::BOOL
            | Type::INT2
            | Type::INT4
            | Type::INT8
            | Type::FLOAT4
            | Type::FLOAT8
            | Type::TEXT
            | Type::VARCHAR
            | Type::BPCHAR
            | Type::NAME
            | Type::UNKNOWN
            | Type::JSON
            | Type::JSONB
            | Type::TIMESTAMPTZ
            | Type::DATE
            | Type::VOID
    )
}

/// The error for a result column of an unsupported type.
pub fn unsupported_column(name: &str, ty: &Type) -> ValueError {
    ValueError {
        sqlstate: FEATURE_NOT_SUPPORTED,
        message: format!(
            "result column `{name}` has type {ty}, which the host does not convert; cast it in \
             SQL (`::text`, `::int8`, `::float8`)"
        ),
    }
}

/// One result value.
pub struct Cell(pub DbValue);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Cell, Box<dyn Error + Sync + Send>> {
        let value = match *ty {
            Type::BOOL => DbValue::Boolean(bool::from_sql(ty, raw)?),
            Type::INT2 => DbValue::Int64(i16::from_sql(ty, raw)?.into()),
            Type::INT4 => DbValue::Int64(i32::from_sql(ty, raw)?.into()),
            Type::INT8 => DbValue::Int64(i64::from_sql(ty, raw)?),
            Type::FLOAT4 => DbValue::Float64(f32::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => DbValue::Float64(f64::from_sql(ty, raw)?),
            Type::JSON => DbValue::Json(std::str::from_utf8(raw)?.to_owned()),
            Type::JSONB => match raw.split_first() {
                Some((1, text)) => DbValue::Json(std::str::from_utf8(text)?.to_owned()),
                _ => return Err("unsupported jsonb version".into()),
            },
            Type::TIMESTAMPTZ => DbValue::Timestamp(
                DateTime::<Utc>::from_sql(ty, raw)?.to_rfc3339_opts(SecondsFormat::Micros, true),
            ),
            Type::DATE => {
                DbValue::Date(NaiveDate::from_sql(ty, raw)?.format("%Y-%m-%d").to_string())
            }
            Type::VOID => DbValue::Null,
            // text, varchar, bpchar, name, unknown: UTF-8 text in binary form too.
            _ => DbValue::Text(std::str::from_utf8(raw)?.to_owned()),
        };
        Ok(Cell(value))
    }

    fn from_sql_null(_: &Type) -> Result<Cell, Box<dyn Error + Sync + Send>> {
        Ok(Cell(DbValue::Null))
    }

    fn accepts(ty: &Type) -> bool {
        supported(ty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn ts(input: &str, expect: Option<&str>) {
        let got = Param::from_guest(DbValue::Timestamp(input.into()), 1).ok();
        let got = got.map(|p| match p {
            Param::Timestamp(t) => t.to_rfc3339_opts(SecondsFormat::Micros, true),
            other => panic!("{other:?}"),
        });
        assert_eq!(got.as_deref(), expect, "{input}");
    }

    #[test]
    fn timestamps_parse_with_offsets_and_legacy_naive_form() {
        ts(
            "2026-03-02T06:20:01.123456Z",
            Some("2026-03-02T06:20:01.123456Z"),
        );
        ts(
            "2026-03-02T08:20:01.5+02:00",
            Some("2026-03-02T06:20:01.500000Z"),
        );
        ts("2026-03-02T06:20:01", Some("2026-03-02T06:20:01.000000Z"));
        ts(
            "2026-03-02T06:20:01.123456",
            Some("2026-03-02T06:20:01.123456Z"),
        );
        ts("2026-03-02", None);
        ts("yesterday", None);
    }

    #[test]
    fn bad_values_name_the_parameter_and_sqlstate() {
        let e = Param::from_guest(DbValue::Date("2026-13-01".into()), 3).unwrap_err();
        assert_eq!(e.sqlstate, INVALID_DATETIME_FORMAT);
        assert!(e.message.contains("$3"), "{e}");
        assert_eq!(
            Param::from_guest(DbValue::Date("2026-02-28".into()), 1),
            Ok(Param::Date(NaiveDate::from_ymd_opt(2026, 2, 28).unwrap()))
        );
    }

    #[test]
    fn declared_types_follow_the_variant() {
        let cases = [
            (DbValue::Null, Type::UNKNOWN),
            (DbValue::Boolean(true), Type::BOOL),
            (DbValue::Int64(1), Type::INT8),
            (DbValue::Float64(1.5), Type::FLOAT8),
            (DbValue::Text("x".into()), Type::TEXT),
            (DbValue::Json("{}".into()), Type::JSONB),
            (
                DbValue::Timestamp("2026-01-01T00:00:00Z".into()),
                Type::TIMESTAMPTZ,
            ),
            (DbValue::Date("2026-01-01".into()), Type::DATE),
        ];
        for (v, ty) in cases {
            assert_eq!(Param::from_guest(v, 1).unwrap().declared_type(), ty);
        }
    }

    #[test]
    fn only_listed_column_types_convert() {
        assert!(supported(&Type::JSONB) && supported(&Type::INT4) && supported(&Type::TEXT));
        for ty in [
            Type::NUMERIC,
            Type::TIMESTAMP,
            Type::UUID,
            Type::OID,
            Type::TEXT_ARRAY,
        ] {
            assert!(!supported(&ty), "{ty}");
        }
        let e = unsupported_column("total", &Type::NUMERIC);
        assert!(
            e.message.contains("`total`") && e.message.contains("numeric"),
            "{e}"
        );
    }
}
