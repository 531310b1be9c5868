//! The overdue gauges of `/metrics`: overdue and overdue-P0 item counts per env, from
//! read-only `list` calls as `--metrics-agent` (the host reads only their `total`), reused
//! for a few seconds between scrapes.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::call::{Meta, Params};
use crate::error::{Code, ToolError};
use crate::http::metrics::OverdueCounts;
use crate::registry::Bridge;

/// How long the overdue gauges are reused between scrapes.
const OVERDUE_TTL: Duration = Duration::from_secs(10);

/// The gauges' agent and envs, and the last counts.
pub struct OverdueGauges {
    agent: String,
    envs: Vec<String>,
    cache: Mutex<Option<(Instant, OverdueCounts)>>,
}

impl OverdueGauges {
    pub fn new(agent: String, envs: Vec<String>) -> OverdueGauges {
        OverdueGauges {
            agent,
            envs,
            cache: Mutex::new(None),
        }
    }

    /// The counts (cached for a few seconds). Runs guest calls: call it on a worker.
    pub fn counts(&self, bridge: &Bridge) -> OverdueCounts {
        if let Ok(cache) = self.cache.lock()
            && let Some((at, counts)) = cache.as_ref()
            && at.elapsed() < OVERDUE_TTL
        {
            return counts.clone();
        }
        let total = |params: Value| -> Result<u64, ToolError> {
            // The host's own bookkeeping: its `tool call` line is debug, so scrapes add no
            // log noise.
            let result = bridge
                .authorize(&self.agent, "backlog_tool", "list")?
                .run(Params::from_value(&params)?, Meta::quiet())?;
            result.to_value()["total"]
                .as_u64()
                .ok_or_else(|| ToolError::new(Code::Internal, "list returned no numeric `total`"))
        };
        let mut counts = BTreeMap::new();
        for env in &self.envs {
            let all = total(json!({"env": env, "overdue": true, "limit": 1}));
            let p0 = total(json!({"env": env, "overdue": true, "priority": "P0", "limit": 1}));
            match (all, p0) {
                (Ok(all), Ok(p0)) => {
                    counts.insert(env.clone(), (all, p0));
                }
                (Err(e), _) | (_, Err(e)) => tracing::warn!(
                    env,
                    agent = self.agent,
                    "router: overdue gauges unavailable for env `{env}`: {e}"
                ),
            }
        }
        if let Ok(mut cache) = self.cache.lock() {
            *cache = Some((Instant::now(), counts.clone()));
        }
        counts
    }
}
