//! The names every store module shares (a leaf): backend names and the Postgres schema.

/// The `BACKLOG_BACKEND` value (and `BacklogStore::backend`) of [`JsonlStore`](crate::JsonlStore).
pub const JSONL_BACKEND: &str = "jsonl";
/// The `BACKLOG_BACKEND` value (and `BacklogStore::backend`) of [`NullStore`](crate::NullStore).
pub const NULL_BACKEND: &str = "null";

/// The Postgres schema (`docs/storage.md`) as idempotent DDL statements separated by `;` at line ends.
pub const PG_SCHEMA_SQL: &str = include_str!("pg_schema.sql");
/// The schema version `PG_SCHEMA_SQL` creates; a database without it is "unavailable".
pub const PG_SCHEMA_VERSION: i32 = 4;
