//! Capabilities the host grants guests beyond WASI. One module per capability, named after
//! what it grants; each holds the state one call was granted and the `Host` impl of its WIT
//! interface, and links that interface with a `HasData` marker so the store's state projects
//! the capability's own state out (`|state| &mut state.pg`). `runtime/sandbox.rs` links them
//! all, one line each, into the one linker both worlds (tool, scheduler) share.
//!
//! Architecture invariant: a capability acts only on what the call's `Grants` gave its store
//! (see `runtime/sandbox.rs`); guest input never widens it.

pub mod dir_lock;
pub mod invoker;
pub mod pg;
