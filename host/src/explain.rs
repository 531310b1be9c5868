//! `backlog-bridge explain AGENT [TOOL ACTION]` and `GET /v1/explain`: what an agent may
//! call and, for one call, why it would be allowed or refused and which grants it would get —
//! the question asked after a 403.
//!
//! The verdict comes from the same check a call goes through ([`Bridge::authorize`]), so the
//! explanation cannot disagree with the router. The matrix is parsed with `serde_yaml_ng`,
//! which keeps no positions; the line numbers shown are found by scanning the matrix text for
//! the YAML keys (`agents:` → `<agent>:` → the entitlement; `tools:` → `<tool>:` →
//! `actions:` → `<action>:`), indentation-aware. A key the scan cannot place has no line.

use serde::Serialize;
use serde_json::Value;

use crate::error::{Code, ToolError};
use crate::grants::Grants;
use crate::registry::Bridge;

/// The explanation of one agent (and optionally one call).
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub agent: String,
    /// The RBAC matrix file.
    pub matrix: String,
    /// Line of the agent's key in the matrix (1-based).
    pub agent_line: Option<usize>,
    /// The entitlements the agent holds, with the line each is listed on.
    pub holds: Vec<Entitlement>,
    /// Every action the agent may call (installed and allowed), as `tool.action`.
    pub may_call: Vec<String>,
    /// Every action the matrix lists, allowed or not, with what is missing.
    pub actions: Vec<ActionVerdict>,
    /// The one call asked about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call: Option<CallVerdict>,
}

/// One entitlement and where the matrix says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entitlement {
    pub name: String,
    pub line: Option<usize>,
}

/// Whether the agent may call one listed action.
#[derive(Debug, Clone, Serialize)]
pub struct ActionVerdict {
    pub tool: String,
    pub action: String,
    pub allowed: bool,
    /// Whether a loaded plugin provides the tool (a listed tool may not be installed).
    pub installed: bool,
    /// Required entitlements the agent does not hold.
    pub missing: Vec<String>,
}

/// The verdict on one call.
#[derive(Debug, Clone, Serialize)]
pub struct CallVerdict {
    pub tool: String,
    pub action: String,
    pub allowed: bool,
    /// The error code a call would get (`forbidden`, `not_found`), when refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    /// Why: the router's own message when refused.
    pub reason: String,
    /// Line of the action's key in the matrix, when listed.
    pub action_line: Option<usize>,
    /// The entitlements the action requires: each held or not, and the line that says so
    /// (the agent's line when held, the action's line when not).
    pub required: Vec<Required>,
    /// The grants the call would get (they follow the action, not the caller); absent when
    /// no installed plugin provides the action or the matrix does not list it.
    pub grants: Option<Grants>,
    /// Wall-clock limit of the call, seconds.
    pub timeout_s: Option<u64>,
}

/// One required entitlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Required {
    pub name: String,
    pub held: bool,
    pub line: Option<usize>,
}

/// Explains `agent` (and `call`, a `(tool, action)`). An unknown agent is `not_found`.
pub fn explain(
    bridge: &Bridge,
    agent: &str,
    call: Option<(&str, &str)>,
) -> Result<Explanation, ToolError> {
    let matrix = &bridge.matrix;
    let Some(rule) = matrix.agent(agent) else {
        let known: Vec<&str> = matrix.agents().map(|(id, _)| id).collect();
        return Err(ToolError::new(
            Code::NotFound,
            format!(
                "unknown agent `{agent}` (agents in {}: {})",
                matrix.path.display(),
                known.join(", ")
            ),
        ));
    };
    let text = std::fs::read_to_string(&matrix.path).unwrap_or_default();
    let lines = Lines::new(&text);
    let held = &rule.entitlements;
    let holds = held
        .iter()
        .map(|e| Entitlement {
            name: e.clone(),
            line: lines.entitlement_of_agent(agent, e),
        })
        .collect();
    let actions: Vec<ActionVerdict> = matrix
        .listed_actions()
        .map(|(tool, action)| {
            let missing: Vec<String> = matrix
                .action(tool, action)
                .map(|r| {
                    r.entitlements
                        .iter()
                        .filter(|e| !held.contains(e))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            ActionVerdict {
                tool: tool.to_owned(),
                action: action.to_owned(),
                allowed: bridge.authorize(agent, tool, action).is_ok(),
                installed: bridge.provides(tool),
                missing,
            }
        })
        .collect();
    let may_call = actions
        .iter()
        .filter(|a| a.allowed)
        .map(|a| format!("{}.{}", a.tool, a.action))
        .collect();
    let call = call.map(|(tool, action)| {
        let verdict = bridge.authorize(agent, tool, action).map(|_| ());
        let rule = matrix.action(tool, action);
        let action_line = lines.action(tool, action);
        let required = rule
            .map(|r| {
                r.entitlements
                    .iter()
                    .map(|e| {
                        let held = held.contains(e);
                        Required {
                            name: e.clone(),
                            held,
                            line: if held {
                                lines.entitlement_of_agent(agent, e)
                            } else {
                                action_line
                            },
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let grants = bridge
            .manifest()
            .find(|m| m.tool == tool && m.action.name == action)
            .map(|m| m.grants);
        let (allowed, code, reason) = match verdict {
            Ok(()) => (
                true,
                None,
                format!("`{agent}` holds every entitlement {tool}.{action} requires"),
            ),
            Err(e) => (false, Some(e.code.as_str()), e.message),
        };
        CallVerdict {
            tool: tool.to_owned(),
            action: action.to_owned(),
            allowed,
            code,
            reason,
            action_line,
            required,
            grants,
            timeout_s: rule.and_then(|r| r.timeout_s),
        }
    });
    Ok(Explanation {
        agent: agent.to_owned(),
        matrix: matrix.path.display().to_string(),
        agent_line: lines.key_path(&["agents", agent]),
        holds,
        may_call,
        actions,
        call,
    })
}

impl Explanation {
    /// As JSON (the `/v1/explain` body and `-o json`).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// For a person: what the agent holds and may call, then the verdict on the call.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let at = |line: Option<usize>| match line {
            Some(n) => format!("{}:{n}", self.matrix),
            None => self.matrix.clone(),
        };
        let mut out = String::new();
        let _ = writeln!(out, "agent {} ({})", self.agent, at(self.agent_line));
        let _ = writeln!(out, "holds:");
        if self.holds.is_empty() {
            let _ = writeln!(out, "  (nothing)");
        }
        for e in &self.holds {
            let _ = writeln!(out, "  {:<28} {}", e.name, at(e.line));
        }
        let _ = writeln!(out, "may call:");
        if self.may_call.is_empty() {
            let _ = writeln!(out, "  (nothing)");
        }
        for a in &self.may_call {
            let _ = writeln!(out, "  {a}");
        }
        let refused: Vec<&ActionVerdict> = self.actions.iter().filter(|a| !a.allowed).collect();
        if !refused.is_empty() {
            let _ = writeln!(out, "may not call:");
            for a in refused {
                let why = if a.missing.is_empty() {
                    "not installed".to_owned()
                } else {
                    format!("lacks {}", a.missing.join(", "))
                };
                let _ = writeln!(out, "  {}.{}  ({why})", a.tool, a.action);
            }
        }
        if let Some(c) = &self.call {
            let _ = writeln!(out);
            let verdict = if c.allowed {
                "ALLOWED".to_owned()
            } else {
                format!("DENIED ({})", c.code.unwrap_or(Code::Forbidden.as_str()))
            };
            let _ = writeln!(out, "{}.{}: {verdict}", c.tool, c.action);
            let _ = writeln!(out, "  {}", c.reason);
            if c.action_line.is_some() {
                let _ = writeln!(out, "  requires (listed at {}):", at(c.action_line));
            }
            for r in &c.required {
                let state = if r.held { "held" } else { "MISSING" };
                let _ = writeln!(out, "    {:<28} {state:<8} {}", r.name, at(r.line));
            }
            match c.grants {
                Some(g) => {
                    let _ = writeln!(
                        out,
                        "  grants: backlog_dir={} reports_dir={} postgres={}",
                        access(g.backlog_dir),
                        access(g.reports_dir),
                        access(g.postgres)
                    );
                }
                None => {
                    let _ = writeln!(out, "  grants: none (no installed plugin runs it)");
                }
            }
            if let Some(t) = c.timeout_s {
                let _ = writeln!(out, "  timeout: {t} s");
            }
        }
        out
    }
}

fn access(a: crate::grants::Access) -> &'static str {
    match a {
        crate::grants::Access::None => "none",
        crate::grants::Access::Read => "read",
        crate::grants::Access::ReadWrite => "read_write",
    }
}

/// Line numbers of YAML keys, by scanning the text (block style, as the shipped matrix is
/// written; flow-style maps inside a line are searched as text).
struct Lines<'a> {
    lines: Vec<&'a str>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Lines {
            lines: text.lines().collect(),
        }
    }

    /// The 1-based line of the key at `path` (each key nested in the previous one's block).
    fn key_path(&self, path: &[&str]) -> Option<usize> {
        let (mut start, mut end) = (0, self.lines.len());
        let mut found = None;
        for key in path {
            // The keys of this block sit at the indentation of its first line.
            let child = (start..end).find_map(|i| indentation(self.lines[i]))?;
            let idx = (start..end).find(|&i| {
                let line = self.lines[i];
                indentation(line) == Some(child) && yaml_key(line.trim_start()) == Some(*key)
            })?;
            found = Some(idx);
            start = idx + 1;
            end = self.block_end(idx, child);
        }
        found.map(|i| i + 1)
    }

    /// The end (exclusive) of the block of the key on line `idx` at `indent`.
    fn block_end(&self, idx: usize, indent: usize) -> usize {
        (idx + 1..self.lines.len())
            .find(|&i| indentation(self.lines[i]).is_some_and(|n| n <= indent))
            .unwrap_or(self.lines.len())
    }

    /// The line listing `entitlement` in the agent's block (its `entitlements:` list).
    fn entitlement_of_agent(&self, agent: &str, entitlement: &str) -> Option<usize> {
        let agent_line = self.key_path(&["agents", agent])? - 1;
        let indent = indentation(self.lines[agent_line])?;
        let end = self.block_end(agent_line, indent);
        (agent_line..end)
            .find(|&i| {
                let line = self.lines[i];
                let code = line.split('#').next().unwrap_or("");
                code.split(['[', ']', ',', ' ', '{', '}'])
                    .any(|tok| tok.trim_matches(|c| c == '"' || c == '\'') == entitlement)
            })
            .map(|i| i + 1)
    }

    /// The line of `tools.<tool>.actions.<action>`.
    fn action(&self, tool: &str, action: &str) -> Option<usize> {
        self.key_path(&["tools", tool, "actions", action])
    }
}

/// Indentation of a line that holds YAML (not blank, not a comment).
fn indentation(line: &str) -> Option<usize> {
    let trimmed = line.trim_start();
    (!trimmed.is_empty() && !trimmed.starts_with('#')).then(|| line.len() - trimmed.len())
}

/// The key a `key: …` line starts with (quotes removed).
fn yaml_key(line: &str) -> Option<&str> {
    let (key, _) = line.split_once(':')?;
    let key = key.trim();
    let key = key
        .strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .or_else(|| key.strip_prefix('\'').and_then(|k| k.strip_suffix('\'')))
        .unwrap_or(key);
    (!key.is_empty()).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MATRIX: &str = "\
# comment
tools:
  t:
    actions:
      read:  { entitlements: [r] }
      both:
        entitlements: [r, w]
  u:
    actions:
      read: { entitlements: [x] }
agents:
  reader:
    entitlements: [r]
  \"writer\":
    entitlements:
      - r
      - w
";

    #[test]
    fn lines_of_keys() {
        let l = Lines::new(MATRIX);
        assert_eq!(l.action("t", "read"), Some(5));
        assert_eq!(l.action("t", "both"), Some(6));
        assert_eq!(l.action("u", "read"), Some(10));
        assert_eq!(l.action("t", "nope"), None);
        assert_eq!(l.key_path(&["agents", "reader"]), Some(12));
        assert_eq!(l.key_path(&["agents", "writer"]), Some(14));
        assert_eq!(l.entitlement_of_agent("reader", "r"), Some(13));
        assert_eq!(l.entitlement_of_agent("reader", "w"), None);
        assert_eq!(l.entitlement_of_agent("writer", "w"), Some(17));
        // `read` under `agents` is not the action `read`.
        assert_eq!(l.key_path(&["agents", "read"]), None);
    }
}
