//! Backlog stores, all implementing [`backlog_core::store::BacklogStore`]: the `jsonl`
//! backend ([`JsonlStore`]) over `std::fs`; the `postgres` backend ([`PostgresStore`]) over
//! the [`Sql`] seam (the host's Postgres import in the component, the `postgres` crate in
//! tests); the `auto` backend ([`AutoStore`]: Postgres, falling back to JSONL with an outage
//! journal replayed into Postgres); and the disabled `null` backend ([`NullStore`]).
//!
//! This crate is compiled natively (tests, benchmarks, host-side tools) and into the
//! `backlog_tool` component (`wasm32-wasip2`), where the JSONL directory is a preopen granted
//! read-only or read-write for the call.
//!
//! Architecture invariant: only `std::fs` / `std::io` (and, inside the component, WASI's own
//! `stat-at` for one look: `lstat.rs`) — no libc, no file locks (the host holds
//! the cross-process lock and serializes writers), no mmap, no sockets, nothing that WASI
//! lacks; Postgres only through [`Sql`], never a DSN. Messages name files by their name
//! (`items.jsonl`), never by an absolute host path.

mod auto;
mod counts;
mod deep;
mod error;
mod file;
mod filter;
mod hash;
mod head;
mod index;
mod jsonl;
mod lstat;
mod names;
mod null;
mod pg;
mod positioned;

pub use auto::{
    Active, AutoStatus, AutoStore, DEFAULT_RETRY_SECONDS, DOWN_UNTIL_FILE, DirLockFn, FAILED_FILE,
    JOURNAL_FILE, REPLAY_BATCH, REPLAYED_FILE, auto_recovery_due, auto_status,
};
pub use error::JsonlError;
pub use file::MAX_LINE;
pub use jsonl::{
    Access, CHECKPOINT_EVERY, CHECKPOINT_FILE, CHECKPOINT_TMP_FILE, CLEANUP_TMP_FILES, Durability,
    EVENTS_FILE, INTENT_FILE, ITEMS_FILE, IndexStats, JsonlStore, PAGE_MAX_BYTES,
};
pub use names::{JSONL_BACKEND, NULL_BACKEND, PG_SCHEMA_SQL, PG_SCHEMA_VERSION};
pub use null::{NULL_WRITE_MESSAGE, NullStore};
pub use pg::{
    EVENT_COLUMNS, INSUFFICIENT_PRIVILEGE, ITEM_COLUMNS, KEY_COLUMNS, MIGRATE_HINT,
    POSTGRES_BACKEND, PostgresStore, QueryResult, READ_ONLY_TRANSACTION, Sql, SqlError,
    UNIQUE_VIOLATION, Value,
};
