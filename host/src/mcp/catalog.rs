//! The runtime manifest as MCP tools: one tool per (tool, action) that the installed plugins
//! provide and the RBAC matrix lists, built once when the server starts.
//!
//! Names are `{tool}_{action}` (`backlog_tool_create`): stable as long as the plugin and the
//! action keep their names, and within `^[A-Za-z0-9_-]{1,64}$`, the set every MCP client
//! accepts. The description is the action's `describe()` text, the `inputSchema` the
//! component's own params schema (nothing hand-copied here), and that same schema is compiled
//! once to check arguments before any guest runs.
//!
//! Must not: authorize (the handler asks the matrix per call) or call a guest.

use std::collections::HashMap;
use std::sync::Arc;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::Value;

pub use super::hints::{Effects, WriteHints};
use crate::error::{Code, ToolError};
use crate::registry::{Bridge, ManifestAction};

/// The longest tool name MCP clients accept.
pub const MAX_NAME_LEN: usize = 64;

/// Errors are reported at most this many at a time (one bad call may break many rules).
const MAX_REPORTED_ERRORS: usize = 5;

/// Why an action could not become an MCP tool (the server leaves it out and logs this).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error(
        "{tool}.{action}: the MCP tool name `{name}` is not within ^[A-Za-z0-9_-]{{1,64}}$ (rename the plugin in plugins.yml)"
    )]
    BadName {
        tool: String,
        action: String,
        name: String,
    },
    #[error("{tool}.{action}: the MCP tool name `{name}` is already taken by {other}")]
    Duplicate {
        tool: String,
        action: String,
        name: String,
        other: String,
    },
    #[error("{tool}.{action}: the params schema from describe() is not a JSON object")]
    SchemaNotObject { tool: String, action: String },
    #[error("{tool}.{action}: the params schema from describe() does not compile: {message}")]
    BadSchema {
        tool: String,
        action: String,
        message: String,
    },
}

/// The MCP name of `tool.action`.
pub fn tool_name(tool: &str, action: &str) -> Result<String, CatalogError> {
    let name = format!("{tool}_{action}");
    let fits = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if fits {
        Ok(name)
    } else {
        Err(CatalogError::BadName {
            tool: tool.into(),
            action: action.into(),
            name,
        })
    }
}

/// Every tool's [`WriteHints`].
const WRITE_HINTS: &[WriteHints] = &[crate::backlog::mcp_hints::WRITE_HINTS];

/// The annotations of one action. `readOnlyHint` comes from the action's grants, so it is
/// what the sandbox enforces: no read-write directory and no read-write Postgres. A
/// write-capable action no [`WriteHints`] table knows keeps MCP's defaults
/// (`destructiveHint` true, `idempotentHint` false): the careful reading.
pub fn annotations(action: &ManifestAction) -> ToolAnnotations {
    let title = format!("{} {}", action.tool, action.action.name);
    let base = ToolAnnotations::with_title(title).open_world(false);
    if !action.grants.writes() {
        return base.read_only(true).destructive(false).idempotent(true);
    }
    let known = WRITE_HINTS
        .iter()
        .flat_map(|table| table.iter())
        .find(|(t, a, _)| *t == action.tool && *a == action.action.name);
    match known {
        Some((_, _, e)) => base
            .read_only(false)
            .destructive(e.destructive)
            .idempotent(e.idempotent),
        None => base.read_only(false),
    }
}

/// One MCP tool and what it calls.
pub struct Entry {
    /// The registered tool (plugin) name.
    pub tool: String,
    pub action: String,
    /// The MCP definition as `tools/list` shows it.
    pub def: Tool,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("tool", &self.tool)
            .field("action", &self.action)
            .field("name", &self.def.name)
            .finish_non_exhaustive()
    }
}

impl Entry {
    fn new(action: &ManifestAction, catalog: &Catalog) -> Result<Entry, CatalogError> {
        let tool = action.tool;
        let name = &action.action.name;
        let mcp_name = tool_name(tool, name)?;
        if let Some(other) = catalog.get(&mcp_name) {
            return Err(CatalogError::Duplicate {
                tool: tool.into(),
                action: name.clone(),
                name: mcp_name,
                other: format!("{}.{}", other.tool, other.action),
            });
        }
        let Value::Object(schema) = &action.action.params_schema else {
            return Err(CatalogError::SchemaNotObject {
                tool: tool.into(),
                action: name.clone(),
            });
        };
        let validator = jsonschema::validator_for(&action.action.params_schema).map_err(|e| {
            CatalogError::BadSchema {
                tool: tool.into(),
                action: name.clone(),
                message: e.to_string(),
            }
        })?;
        let schema: Arc<JsonObject> = Arc::new(schema.clone());
        let def = Tool::new(mcp_name, action.action.description.clone(), schema)
            .annotate(annotations(action));
        Ok(Entry {
            tool: tool.into(),
            action: name.clone(),
            def,
            validator,
        })
    }

    /// Checks `arguments` against the action's params schema: `invalid_input` naming each
    /// offending place (JSON Pointer into the arguments) and what was expected.
    pub fn check(&self, arguments: &Value) -> Result<(), ToolError> {
        let problems: Vec<String> = self
            .validator
            .iter_errors(arguments)
            .take(MAX_REPORTED_ERRORS + 1)
            .map(|e| {
                let at = e.instance_path().to_string();
                let at = if at.is_empty() { "/".into() } else { at };
                format!("at {at}: {}", e.masked())
            })
            .collect();
        if problems.is_empty() {
            return Ok(());
        }
        let mut message = format!(
            "arguments of {} do not match its input schema: {}",
            self.def.name,
            problems
                .iter()
                .take(MAX_REPORTED_ERRORS)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        );
        if problems.len() > MAX_REPORTED_ERRORS {
            message.push_str("; …");
        }
        Err(ToolError::new(Code::InvalidInput, message))
    }
}

/// Every MCP tool of this host, in manifest order.
#[derive(Debug, Default)]
pub struct Catalog {
    entries: Vec<Entry>,
    by_name: HashMap<String, usize>,
}

impl Catalog {
    /// Builds the catalog from the bridge's manifest. An action that cannot become a tool is
    /// left out with a warning (and reported in the second value); the others still serve.
    pub fn build(bridge: &Bridge) -> (Catalog, Vec<CatalogError>) {
        Catalog::from_manifest(bridge.manifest())
    }

    /// [`Catalog::build`] over any manifest (tests build one by hand).
    pub fn from_manifest<'a>(
        manifest: impl IntoIterator<Item = ManifestAction<'a>>,
    ) -> (Catalog, Vec<CatalogError>) {
        let mut catalog = Catalog::default();
        let mut skipped = Vec::new();
        for action in manifest {
            match Entry::new(&action, &catalog) {
                Ok(entry) => {
                    catalog
                        .by_name
                        .insert(entry.def.name.to_string(), catalog.entries.len());
                    catalog.entries.push(entry);
                }
                Err(e) => {
                    tracing::warn!("mcp: leaving out a tool: {e}");
                    skipped.push(e);
                }
            }
        }
        (catalog, skipped)
    }

    /// The entry of an MCP tool name.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.by_name.get(name).map(|&i| &self.entries[i])
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::grants::{Access, Grants};
    use crate::runtime::ActionInfo;

    #[track_caller]
    fn check_name(tool: &str, action: &str, expect: Option<&str>) {
        assert_eq!(tool_name(tool, action).ok().as_deref(), expect);
    }

    #[test]
    fn names() {
        check_name("backlog_tool", "create", Some("backlog_tool_create"));
        check_name(
            "backlog_tool",
            "auto_generate_weekly",
            Some("backlog_tool_auto_generate_weekly"),
        );
        check_name("my-tool", "x", Some("my-tool_x"));
        check_name("tool.v2", "get", None);
        check_name("tool", "sp ace", None);
        check_name("t", &"a".repeat(62), Some(&format!("t_{}", "a".repeat(62))));
        check_name("t", &"a".repeat(63), None);
        check_name("t", "é", None);
    }

    fn info(name: &str, schema: Value) -> ActionInfo {
        ActionInfo {
            name: name.into(),
            description: format!("does {name}"),
            params_schema: schema,
        }
    }

    fn grants(dir: Access, pg: Access) -> Grants {
        Grants {
            backlog_dir: dir,
            reports_dir: Access::None,
            postgres: pg,
        }
    }

    fn manifest<'a>(tool: &'a str, info: &'a ActionInfo, grants: Grants) -> ManifestAction<'a> {
        ManifestAction {
            tool,
            tool_description: "a tool",
            action: info,
            grants,
        }
    }

    #[track_caller]
    fn check_hints(
        tool: &str,
        action: &str,
        g: Grants,
        expect: (Option<bool>, Option<bool>, Option<bool>),
    ) {
        let i = info(action, json!({"type": "object"}));
        let a = annotations(&manifest(tool, &i, g));
        assert_eq!(
            (a.read_only_hint, a.destructive_hint, a.idempotent_hint),
            expect,
            "{tool}.{action}"
        );
    }

    #[test]
    fn hints() {
        let read = grants(Access::Read, Access::Read);
        let write = grants(Access::ReadWrite, Access::ReadWrite);
        let pg_write = grants(Access::Read, Access::ReadWrite);
        let t = Some(true);
        let f = Some(false);
        check_hints("backlog_tool", "get", read, (t, f, t));
        check_hints("backlog_tool", "dashboard", read, (t, f, t));
        // Read-only follows the grants, not the name.
        check_hints("backlog_tool", "create", read, (t, f, t));
        check_hints("backlog_tool", "create", write, (f, f, f));
        check_hints("backlog_tool", "upsert", pg_write, (f, f, t));
        check_hints("backlog_tool", "cleanup", write, (f, t, f));
        // Unknown writes keep MCP's careful defaults.
        check_hints("other_tool", "cleanup", write, (f, None, None));
        check_hints("other_tool", "compute", Grants::default(), (t, f, t));
    }

    fn object_schema() -> Value {
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "id": {"type": "string", "pattern": "^bl_[0-9a-f]{12}$"},
                "title": {"type": "string", "maxLength": 5},
                "limit": {"type": "integer", "minimum": 1}
            },
            "required": ["id"],
            "additionalProperties": false
        })
    }

    #[track_caller]
    fn check_args(args: Value, expect: Result<(), &[&str]>) {
        let i = info("get", object_schema());
        let (catalog, skipped) =
            Catalog::from_manifest([manifest("t", &i, grants(Access::Read, Access::None))]);
        assert!(skipped.is_empty());
        let entry = catalog.get("t_get").expect("t_get");
        match (entry.check(&args), expect) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err(parts)) => {
                assert_eq!(e.code, Code::InvalidInput);
                for p in parts {
                    assert!(e.message.contains(p), "{:?} lacks {p:?}", e.message);
                }
            }
            (got, want) => panic!("{args}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn arguments() {
        check_args(json!({"id": "bl_0123456789ab"}), Ok(()));
        check_args(json!({"id": "bl_0123456789ab", "limit": 3}), Ok(()));
        check_args(json!({}), Err(&["t_get", "at /:", "id"]));
        check_args(json!({"id": 7}), Err(&["at /id", "string"]));
        check_args(json!({"id": "x"}), Err(&["at /id"]));
        check_args(
            json!({"id": "bl_0123456789ab", "bogus": 1}),
            Err(&["at /:", "bogus"]),
        );
        check_args(
            json!({"id": "bl_0123456789ab", "title": "too long"}),
            Err(&["at /title"]),
        );
        check_args(
            json!({"id": "bl_0123456789ab", "limit": 0}),
            Err(&["at /limit"]),
        );
        check_args(json!([1]), Err(&["object"]));
    }

    #[test]
    fn left_out() {
        let good = info("get", object_schema());
        let dup = info("get", object_schema());
        let not_object = info("list", json!(true));
        let bad_schema = info("events", json!({"type": 17}));
        let bad_name = info("sp ace", object_schema());
        let g = grants(Access::Read, Access::None);
        let (catalog, skipped) = Catalog::from_manifest([
            manifest("t", &good, g),
            manifest("t", &dup, g),
            manifest("t", &not_object, g),
            manifest("t", &bad_schema, g),
            manifest("t", &bad_name, g),
        ]);
        assert_eq!(catalog.entries().count(), 1);
        let kinds: Vec<&str> = skipped
            .iter()
            .map(|e| match e {
                CatalogError::BadName { .. } => "name",
                CatalogError::Duplicate { .. } => "dup",
                CatalogError::SchemaNotObject { .. } => "not_object",
                CatalogError::BadSchema { .. } => "schema",
            })
            .collect();
        assert_eq!(kinds, ["dup", "not_object", "schema", "name"]);
    }
}
