//! The `scheduler` component (`docs/scheduler.md`): plans a job (from the registry text or an ad-hoc
//! tool call), applies dry-run, invokes the tool through the host's `invoker` import and
//! interprets the answer into a report.
//!
//! Architecture invariant: no grants. This component sees no files, no Postgres, no network
//! and no keys; the host's invoker decides how (and as whom) the request travels.

use scheduler_core::registry::{self, Registry};
use serde_json::{Map, Value};

wit_bindgen::generate!({
    path: "../../wit",
    world: "backlog-bridge:scheduler/scheduler-runner@0.1.0",
    generate_all,
});

use backlog_bridge::scheduler::invoker::{self, InvokeError};
use backlog_bridge::tool::types::ErrorCode;
use exports::backlog_bridge::scheduler::runner::{Guest, JobSource, Outcome, PlanError, Report};

/// The component.
pub struct Component;

export!(Component);

impl Guest for Component {
    fn run(source: JobSource, dry_run: bool) -> Result<Report, PlanError> {
        let (job_id, request) = plan(&source)?;
        let request = request.to_string();
        if dry_run {
            return Ok(Report {
                job_id,
                request,
                outcome: Outcome::DryRun,
                output: None,
                reason: None,
                error: None,
            });
        }
        let answer = invoker::invoke(&request);
        Ok(interpret(job_id, request, answer))
    }
}

/// The request body of the job.
fn plan(source: &JobSource) -> Result<(Option<String>, Value), PlanError> {
    match source {
        JobSource::Registry(r) => {
            let reg = Registry::parse(registry::FILE, &r.registry, None)
                .map_err(|e| PlanError::Usage(e.to_string()))?;
            let job = reg.job(&r.id).ok_or_else(|| {
                PlanError::Usage(format!(
                    "unknown job `{}` (not in {})",
                    r.id,
                    registry::FILE
                ))
            })?;
            Ok((Some(job.id.clone()), job.request_body()))
        }
        JobSource::Adhoc(a) => {
            let params: Map<String, Value> = match serde_json::from_str::<Value>(&a.params) {
                Ok(Value::Object(m)) => m,
                Ok(_) => {
                    return Err(PlanError::InvalidParams(
                        "--params-json must be a JSON object".into(),
                    ));
                }
                Err(e) => {
                    return Err(PlanError::InvalidParams(format!(
                        "--params-json is not valid JSON: {e}"
                    )));
                }
            };
            if let Some(k) = ["tool", "action", "params"]
                .iter()
                .find(|k| params.contains_key(**k))
            {
                return Err(PlanError::InvalidParams(format!(
                    "--params-json must not contain `{k}` (it is part of the request body)"
                )));
            }
            Ok((None, registry::request_body(&a.tool, &a.action, &params)))
        }
    }
}

/// The report of an answered (or failed) call.
fn interpret(
    job_id: Option<String>,
    request: String,
    answer: Result<String, InvokeError>,
) -> Report {
    let mut report = Report {
        job_id,
        request,
        outcome: Outcome::Ok,
        output: None,
        reason: None,
        error: None,
    };
    match answer {
        Ok(result) => {
            let parsed: Value = serde_json::from_str(&result).unwrap_or(Value::Null);
            if parsed.get("skipped") == Some(&Value::Bool(true)) {
                report.outcome = Outcome::Skipped;
                report.reason = Some(
                    parsed
                        .get("reason")
                        .and_then(Value::as_str)
                        .unwrap_or("the tool skipped the run")
                        .to_owned(),
                );
            }
            report.output = Some(result);
        }
        Err(e) => {
            let (outcome, reason) = match &e {
                InvokeError::Tool(t) if t.code == ErrorCode::Timeout => {
                    (Outcome::Timeout, t.message.clone())
                }
                InvokeError::Tool(t) => (Outcome::Failed, t.message.clone()),
                InvokeError::Unauthenticated(m) | InvokeError::Transport(m) => {
                    (Outcome::Failed, m.clone())
                }
            };
            report.outcome = outcome;
            report.reason = Some(reason);
            report.error = Some(e);
        }
    }
    report
}
