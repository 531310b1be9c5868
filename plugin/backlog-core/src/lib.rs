//! Pure backlog logic: the data model, validation, ids and timestamps, upsert/dedupe rules,
//! lifecycle transitions, events, listing, the dashboard, generation from digests, cleanup,
//! the policy and the action dispatcher.
//!
//! Architecture invariant: this crate does no I/O and knows nothing of WIT or wasm. Storage is
//! reached only through [`store::BacklogStore`], the reports directory only through
//! [`digest::Reports`]; time, ids, the actor and the reports grant come in through
//! [`ctx::Ctx`]. Everything here is tested natively in milliseconds.
//!
//! Layers (a module imports only from its own layer's left or from lower layers, so there are
//! no circles; unit tests excepted; `tests/layers.rs` checks it):
//! 1. `error`, `time`, `ids`: leaves, no imports from this crate.
//! 2. `model` (item, event, enums), `list` (queries over item keys).
//! 3. `validate` (field rules), then `policy` (inside: `model`, `parse`, `defaults`).
//! 4. `dashboard` (the arithmetic), `params` (action params), `digest` (digest files).
//! 5. `store` (the storage trait; its default dashboard), `mem` (the in-memory store).
//! 6. `ctx` (the call context), `upsert` (create/upsert), `schema` (what `describe()` says).
//! 7. `generate` (weekly/daily generation), then `actions` (the other actions, `execute`).

pub mod actions;
pub mod ctx;
pub mod dashboard;
pub mod digest;
pub mod error;
pub mod generate;
pub mod ids;
pub mod list;
pub mod mem;
pub mod model;
pub mod params;
pub mod policy;
pub mod schema;
pub mod store;
pub mod time;
pub mod upsert;
pub mod validate;

pub use error::{Error, ErrorCode};
