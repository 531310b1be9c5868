//! The backlog-bridge host: a wasmtime embedding that loads tool components, checks RBAC per
//! action before entering a guest, and runs each call in a sandbox holding only the grants
//! that action needs.
//!
//! Every entry point reaches a guest through one pipeline, `call.rs`; `registry.rs` holds
//! what is loaded, `runtime/` and `caps/` what a guest gets.
//!
//! Architecture invariant: the host contains no backlog logic outside `backlog/` (the store's
//! settings, files, status, guest config, gauges and `migrate`). It knows tools only through
//! the generic `describe`/`call` WIT interface; everything about items lives in the guests.

pub mod audit;
pub mod backlog;
mod builtins;
pub mod call;
pub mod caps;
pub mod check;
pub mod config;
pub mod error;
pub mod explain;
pub mod grants;
pub mod http;
pub mod lock;
pub mod logging;
pub mod mcp;
pub mod params;
pub mod registry;
pub mod reload;
pub mod runtime;
pub mod scheduler;

pub use backlog::{Settings, migrate};
pub use call::CallRequest;
pub use registry::Bridge;

pub use error::{Code, ToolError};
