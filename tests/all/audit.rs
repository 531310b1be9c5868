//! The audit trail's edges (`docs/change-control.md`): an MCP call refused by its params
//! schema after authorization is audited like any call; `--audit-dir off` writes nothing.

use serde_json::json;

use crate::change::{audit_lines, mcp_stdio_call};
use crate::util::Env;

#[test]
fn an_mcp_call_refused_by_its_schema_leaves_an_allow_line_with_the_code() {
    let env = Env::new();
    let audit = env.ops.join("audit");
    mcp_stdio_call(
        &env,
        "viewer",
        "backlog_tool_list",
        json!({"limit": "many", "note": "value-that-must-not-be-audited"}),
    );
    let lines = audit_lines(&audit);
    let refused: Vec<_> = lines
        .iter()
        .filter(|l| l["event"] == "call" && l["face"] == "mcp")
        .collect();
    assert_eq!(refused.len(), 1, "{lines:#?}");
    let line = refused[0];
    assert_eq!(line["decision"], "allow", "{line}");
    assert_eq!(line["action"], "list", "{line}");
    assert_eq!(line["outcome"], "invalid_input", "{line}");
    assert_eq!(line["grants"]["backlog_dir"], "read", "{line}");
    let text = std::fs::read_to_string(
        std::fs::read_dir(&audit)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
            .unwrap(),
    )
    .unwrap();
    assert!(!text.contains("value-that-must-not-be-audited"), "{text}");
    assert!(!text.contains("many"), "{text}");
}

#[test]
fn audit_dir_off_writes_no_trail() {
    let env = Env::new().var("BACKLOG_BRIDGE_AUDIT_DIR", "off");
    env.ok("list", json!({}));
    let created = env.ok(
        "create",
        json!({"service": "gateway", "env": "prod", "category": "refactor", "title": "t"}),
    );
    assert!(created["id"].is_string(), "{created}");
    assert!(!env.ops.join("audit").exists());
    assert!(!env.ops.join("off").exists());
    assert!(!std::path::Path::new("off").exists());
}
