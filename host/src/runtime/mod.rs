//! The wasmtime side of the host: one [`Engine`], one [`Linker`], compiled components cached
//! on disk, and [`Plugin`]s that run calls in sandboxed stores.
//!
//! Architecture invariant: this module grants nothing on its own. A store gets exactly the
//! preopens and the Postgres access of the [`Grants`](crate::grants::Grants) handed to it (see
//! `sandbox.rs`); no environment, arguments, network or inherited stdio ever reach a guest.

pub(crate) mod bindings;
pub mod cache;
pub mod engine;
pub mod plugin;
pub mod pool;
pub mod sandbox;
pub mod stderr;

pub use engine::Runtime;
pub use plugin::{ActionInfo, CallOutcome, Plugin, ToolInfo};
