//! `backlog-bridge run-job` (`docs/scheduler.md`, `docs/cli.md`): the universal runner the cron lines call.
//!
//! The `scheduler` component plans the request and interprets the answer; this module picks
//! the transport (HTTP to the router with the job agent's key, or `--local` in-process) and
//! turns the report into output and an exit code: 0 ok (also skipped: a job whose tool is not
//! installed is `skipped` over either transport, see `caps/invoker.rs`), 1 tool error
//! (including malformed `--params-json`), 2 usage or configuration, 3 transport or
//! authentication failure. Messages follow the runbook's troubleshooting table.

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use backlog_bridge::caps::invoker::{Http, Invoke, InvokeError};
use backlog_bridge::config::rbac::Matrix;
use backlog_bridge::scheduler::runner::{Outcome, PlanError, Runner, Source};
use backlog_bridge::scheduler::{self, Local, call_timeout};
use backlog_bridge::{Bridge, Code, Settings, ToolError};
use scheduler_core::registry::DEFAULT_AGENT;
use serde_json::{Value, json};

use crate::exit::Failure;

/// The router when neither `--router-url` nor `ROUTER_URL` names one (runbook §9).
pub const DEFAULT_ROUTER_URL: &str = "http://localhost:8000";

/// Extra time the HTTP exchange gets beyond the action's own limit (the router's queueing).
const HTTP_MARGIN: Duration = Duration::from_secs(5);

/// Renders a planned request body as `--dry-run` prints it.
type Describe = Box<dyn Fn(&Value) -> Value>;

/// What to run.
pub enum Job {
    Registry(String),
    Adhoc {
        tool: String,
        action: String,
        params: String,
    },
}

/// Runs one job; prints its result (or error) and returns the exit status.
pub fn run(
    settings: Settings,
    job: Job,
    dry_run: bool,
    router_url: Option<String>,
    local: bool,
) -> Result<(), Failure> {
    let config = |e: anyhow::Error| Failure::Config(e);
    let matrix = Matrix::load(&settings.config_dir).map_err(|e| config(e.into()))?;
    // `--local` needs the plugins (to call them, and to know which are installed).
    let bridge = if local {
        Some(Arc::new(Bridge::load(settings.clone()).map_err(config)?))
    } else {
        None
    };
    let (source, tool, action, agent) = match job {
        Job::Registry(id) => {
            let catalog =
                scheduler::catalog(&matrix, |t| bridge.as_ref().is_none_or(|b| b.provides(t)));
            let (registry, text) =
                scheduler::load_registry(&settings.ops_dir, &catalog).map_err(config)?;
            let Some(job) = registry.job(&id) else {
                return Err(config(anyhow!(
                    "unknown job `{id}` (jobs: {})",
                    registry
                        .jobs
                        .iter()
                        .map(|j| j.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            let (tool, action, agent) = (job.tool.clone(), job.action.clone(), job.agent.clone());
            (Source::Registry { text, id }, tool, action, agent)
        }
        Job::Adhoc {
            tool,
            action,
            params,
        } => (
            Source::Adhoc {
                tool: tool.clone(),
                action: action.clone(),
                params,
            },
            tool,
            action,
            DEFAULT_AGENT.to_owned(),
        ),
    };
    let Some(agent_rule) = matrix.agent(&agent) else {
        return Err(config(anyhow!(
            "unknown agent `{agent}` (agents are defined in {})",
            matrix.path.display()
        )));
    };
    let timeout = call_timeout(&matrix, &tool, &action);
    let (invoker, describe): (Arc<dyn Invoke>, Describe) = match &bridge {
        Some(b) => {
            let agent_name = agent.clone();
            (
                Arc::new(Local {
                    bridge: b.clone(),
                    agent: agent.clone(),
                    now: None,
                }),
                Box::new(
                    move |body: &Value| json!({"transport": "local", "agent": agent_name, "body": body}),
                ),
            )
        }
        None => {
            let base_url = router_url
                .or_else(|| std::env::var("ROUTER_URL").ok().filter(|s| !s.is_empty()))
                .unwrap_or_else(|| DEFAULT_ROUTER_URL.into())
                .trim_end_matches('/')
                .to_owned();
            if !base_url.starts_with("http://") {
                return Err(config(anyhow!(
                    "ROUTER_URL {base_url:?}: expected http://HOST:PORT (run-job speaks plain HTTP \
                     to the router; TLS is terminated in front of it)"
                )));
            }
            // Sent even when empty or unset, so the router's 401 is what the operator sees.
            let key = agent_rule
                .api_key_env
                .as_deref()
                .and_then(|v| std::env::var(v).ok())
                .unwrap_or_default();
            let http = Arc::new(Http {
                base_url,
                key,
                timeout: timeout + HTTP_MARGIN,
            });
            let shown = http.clone();
            (http, Box::new(move |body: &Value| shown.describe(body)))
        }
    };
    // `--local` shares the bridge's runtime; over HTTP the runner has one of its own.
    let runner = match &bridge {
        Some(b) => Runner::new(b.runtime(), settings.cache_dir.as_deref()),
        None => Runner::standalone(settings.cache_dir.as_deref()),
    }
    .map_err(config)?;
    let report = match runner.run(&source, dry_run, invoker, timeout + HTTP_MARGIN * 2) {
        Ok(r) => r,
        Err(PlanError::Usage(m)) => return Err(config(anyhow!(m))),
        Err(PlanError::InvalidParams(m)) => {
            return Err(Failure::Tool(ToolError::new(Code::InvalidInput, m)));
        }
        Err(e @ PlanError::Component(_)) => {
            return Err(Failure::Tool(ToolError::new(Code::Internal, e.to_string())));
        }
    };
    // One line per run; a skipped run (its tool not installed, whatever the transport: the
    // invoker answers `skipped`) carries the reason.
    let job_id = report.job_id.as_deref().unwrap_or("-");
    let outcome = report.outcome.as_str();
    match (&report.outcome, &report.reason) {
        (Outcome::Skipped, Some(reason)) => {
            tracing::warn!(
                job = job_id,
                tool,
                action,
                agent,
                outcome,
                reason,
                "run-job"
            )
        }
        _ => tracing::info!(job = job_id, tool, action, agent, outcome, "run-job"),
    }
    match report.outcome {
        Outcome::DryRun => crate::output::emit_line(
            &serde_json::to_string_pretty(&describe(&report.request)).unwrap_or_default(),
        ),
        Outcome::Ok | Outcome::Skipped => {
            crate::output::emit_line(&report.output.unwrap_or(Value::Null).to_string())
        }
        Outcome::Failed | Outcome::Timeout => match report.error {
            Some(InvokeError::Tool(e)) => {
                eprintln!("backlog-bridge: error: {}", e.message);
                Err(Failure::Tool(e))
            }
            Some(InvokeError::Unauthenticated(m)) => {
                let var = agent_rule
                    .api_key_env
                    .as_deref()
                    .unwrap_or("the agent's API key");
                Err(Failure::Exit(
                    3,
                    anyhow!("{m}: check {var} (agent `{agent}`)"),
                ))
            }
            Some(InvokeError::Transport(m)) => Err(Failure::Exit(
                3,
                anyhow!("{m}: is the router running? (ROUTER_URL or --router-url)"),
            )),
            None => Err(Failure::Tool(ToolError::new(
                Code::Internal,
                report.reason.unwrap_or_else(|| "the job failed".into()),
            ))),
        },
    }
}
