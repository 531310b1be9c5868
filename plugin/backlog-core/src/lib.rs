//! Pure backlog logic: the data model, validation, ids and timestamps, upsert/dedupe rules,
//! lifecycle transitions, events, listing, the dashboard, generation from digests, cleanup,
//! the policy and the action dispatcher.
//!
//! Architecture invariant: this crate does no I/O and knows nothing of WIT or wasm. Storage is
//! reached only through [`store::BacklogStore`], the reports directory only through
//! [`digest::Reports`]; time, ids, the actor and the reports grant come in through
//! [`actions::Ctx`]. Everything here is tested natively in milliseconds.

pub mod actions;
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
pub mod validate;

pub use error::{Error, ErrorCode};
