//! Who may call what: the shipped RBAC matrix for `backlog_tool`, and the agents the model
//! tests use. A caller without an action's entitlement gets `forbidden` before its params are
//! read; a caller with `tools.backlog.write` but not `tools.backlog.admin` may not give an item
//! a reserved dedupe key (`forbidden` from `create`/`upsert`, see [`super::is_reserved_key`]).

/// The agents of the sequences: (name, entitlements).
pub const AGENTS: &[(&str, &[&str])] = &[
    (
        "operator",
        &[
            "tools.backlog.read",
            "tools.backlog.write",
            "tools.backlog.admin",
        ],
    ),
    // Not shipped: installed by the model tests' RBAC matrix.
    ("writer", &["tools.backlog.read", "tools.backlog.write"]),
    ("viewer", &["tools.backlog.read"]),
];

/// The actions of `backlog_tool`; any other is `not_found`, whoever asks.
pub const ACTIONS: &[&str] = &[
    "create",
    "upsert",
    "get",
    "list",
    "events",
    "set_status",
    "add_comment",
    "dashboard",
    "auto_generate_weekly",
    "auto_generate_daily",
    "cleanup",
];

/// The entitlement each action needs.
pub fn needs(action: &str) -> &'static str {
    match action {
        "get" | "list" | "events" | "dashboard" => "tools.backlog.read",
        "create" | "upsert" | "set_status" | "add_comment" => "tools.backlog.write",
        _ => "tools.backlog.admin",
    }
}

pub fn holds(agent: &str, entitlement: &str) -> bool {
    AGENTS
        .iter()
        .any(|(a, ents)| *a == agent && ents.contains(&entitlement))
}

/// Whether `agent` may call `action` at all.
pub fn may_call(agent: &str, action: &str) -> bool {
    holds(agent, needs(action))
}

/// Whether `agent` may use reserved dedupe keys.
pub fn admin(agent: &str) -> bool {
    holds(agent, "tools.backlog.admin")
}
