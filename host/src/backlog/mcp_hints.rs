//! The effects of `backlog_tool`'s write actions, as MCP tool annotations show them
//! (`mcp::catalog::annotations`).
//!
//! `create`, `add_comment` only add; `upsert` and `set_status` change fields but keep the old
//! values in the item's events; generation re-run on the same digest changes nothing;
//! `cleanup` deletes items and their history for good.

use super::routes::TOOL;
use crate::mcp::hints::{Effects, WriteHints};

/// `backlog_tool`'s write actions and their effects.
pub const WRITE_HINTS: WriteHints = &[
    (TOOL, "create", Effects::ADDS),
    (TOOL, "upsert", Effects::IDEMPOTENT),
    (TOOL, "set_status", Effects::ADDS),
    (TOOL, "add_comment", Effects::ADDS),
    (TOOL, "auto_generate_weekly", Effects::IDEMPOTENT),
    (TOOL, "auto_generate_daily", Effects::IDEMPOTENT),
    (TOOL, "cleanup", Effects::DESTROYS),
];
