//! The REST tables the router serves: one per tool that has REST routes (`super::rest`).

use super::rest::RestTable;

/// The REST tables of the installed tools' faces.
pub const REST: &[&RestTable] = &[&crate::backlog::routes::TABLE];
