//! The backlog-bridge host: a wasmtime embedding that loads tool components, checks RBAC per
//! action before entering a guest, and runs each call in a sandbox holding only the grants
//! that action needs.
//!
//! Architecture invariant: the host contains no backlog logic. It knows tools only through
//! the generic `describe`/`call` WIT interface; everything about items lives in the guests.

pub mod backlog;
pub mod bridge;
pub mod caps;
pub mod config;
pub mod error;
pub mod explain;
pub mod grants;
pub mod http;
pub mod lock;
pub mod logging;
pub mod mcp;
pub mod migrate;
pub mod params;
pub mod runtime;
pub mod scheduler;

pub use bridge::{Bridge, CallRequest, Settings};
pub use error::{Code, ToolError};
