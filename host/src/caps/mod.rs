//! Capabilities the host grants guests beyond WASI. One module per capability, named after
//! what it grants; each holds the state one call was granted and the `Host` impl of its WIT
//! interface. The linker wires them in `runtime/engine.rs`, one line each (the scheduler
//! component's `invoker` in `scheduler/runner.rs`, its own linker).
//!
//! Architecture invariant: a capability acts only on what the call's `Grants` gave its store
//! (see `runtime/sandbox.rs`); guest input never widens it.

pub mod invoker;
pub mod pg;
