//! The router: `backlog-bridge serve` (`docs/http-api.md`), the HTTP face of the call pipeline
//! (`crate::call`).
//!
//! Call path of a request: access log + request id (`routes::access_log`) → bearer key →
//! agent (`auth`) → [`App::authorize`] (404, 403: the pipeline's token) → body and params
//! shape (413, 400) → [`App::call`]: the pipeline's gate (admission, workers, metrics) and
//! the guest (`crate::call`) → the result or the error object with the status (see
//! `docs/actions.md`).
//!
//! Owns (`serve.rs`): the tokio runtime, listening, graceful shutdown (the pipeline's drain);
//! (`app.rs`) the state every handler shares: keys, the pipeline's gate, the metrics registry.
//! Must not: run guest code on the async runtime's threads (a guest call blocks for up to its
//! time limit); decide anything about params (the component validates them); give
//! the guest anything the bridge would not give a CLI call of the same agent.

pub mod admin;
pub mod app;
pub mod auth;
pub mod browser;
pub mod conn;
mod front;
pub mod metrics;
pub mod openapi;
mod respond;
pub mod rest;
pub mod routes;
pub mod serve;
pub mod tables;

pub use crate::backlog::store::jsonl_writable;
pub use app::{App, MAX_BODY_BYTES, ServeError, ServeOptions};
pub use serve::serve;
