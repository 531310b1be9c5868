//! The invoker's in-process transport: a planned job's tool call through the call pipeline
//! (`crate::call`) as the job's agent, so RBAC, grants and time limits apply exactly as for
//! any other caller (`run-job --local`, the scheduler loop).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::call::{self, Meta};
use crate::caps::invoker::{Invoke, InvokeError, skipped_if_not_installed, split};
use crate::registry::Bridge;

/// In-process transport: the pipeline as `agent` (a trusted local entry point).
pub struct Local {
    pub bridge: Arc<Bridge>,
    pub agent: String,
    /// The clock the tool sees (the scheduled minute in drills); `None`: the bridge's clock.
    pub now: Option<DateTime<Utc>>,
}

impl Invoke for Local {
    fn invoke(&self, request: &Value) -> Result<Value, InvokeError> {
        let (tool, action, params) = split(request)?;
        let meta = Meta {
            now: self.now,
            face: crate::audit::Face::Scheduler,
            ..Meta::new()
        };
        call::call(
            &*self.bridge,
            &self.agent,
            &tool,
            &action,
            Value::Object(params).to_string(),
            meta,
        )
        .map(|answer| answer.to_value())
        .map_err(InvokeError::Tool)
        .or_else(|e| skipped_if_not_installed(&tool, e))
    }
}
