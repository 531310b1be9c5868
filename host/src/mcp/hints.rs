//! Hints about what a tool's writes do, for MCP's annotations (a leaf: each tool's table,
//! such as `crate::backlog::mcp_hints`, and `catalog.rs` build on it).

/// What the manifest does not say about a write-capable action's effects, as MCP's
/// `destructiveHint` and `idempotentHint`: hints only — a client decides what to confirm with
/// them; the sandbox decides what a call may touch. Each tool's table lives with what the host
/// knows of that tool (`crate::backlog::mcp_hints` for `backlog_tool`).
pub type WriteHints = &'static [(&'static str, &'static str, Effects)];

/// What a write does: destroys data for good, and whether running it twice changes more than
/// running it once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effects {
    pub destructive: bool,
    pub idempotent: bool,
}

impl Effects {
    /// Adds (an item, an event): nothing lost, a repeat adds again.
    pub const ADDS: Effects = Effects {
        destructive: false,
        idempotent: false,
    };
    /// Changes to a state that a repeat leaves as it is.
    pub const IDEMPOTENT: Effects = Effects {
        destructive: false,
        idempotent: true,
    };
    /// Deletes for good.
    pub const DESTROYS: Effects = Effects {
        destructive: true,
        idempotent: false,
    };
}
