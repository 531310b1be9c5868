//! Action params: the JSON object of each action turned into a typed struct.
//!
//! Owns the accepted keys of every action (unknown keys are `invalid_input` naming the key and
//! listing the allowed ones), JSON types (a wrong type names the field and the expected type)
//! and every field rule that does not need the store. JSON `null` counts as absent for optional
//! fields. The typed structs are also what the typed WIT interface fills directly; their
//! `validate` is what both entry points run, so they cannot disagree.

mod contract;
mod fields;
mod read;
mod write;

pub use contract::*;
pub use fields::{Fields, object, type_name};
pub use read::*;
pub use write::*;

#[cfg(test)]
mod tests;
