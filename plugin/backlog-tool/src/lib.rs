//! The `backlog_tool` component: a thin adapter from WIT to `backlog-core` (rules) and
//! `backlog-store` (storage). It owns the JSON shapes of its actions; the typed per-action
//! interfaces convert to the same params and call the same code as the generic `call`.
//!
//! Architecture invariant: no backlog rule lives here. This crate only decodes the call
//! context, keeps the store open across calls of a warm instance, and converts types.

mod bindings;
mod component;
mod log;
mod pg;
mod reports;
mod store;
mod typed;

pub use component::Component;

bindings::export!(Component with_types_in bindings);
