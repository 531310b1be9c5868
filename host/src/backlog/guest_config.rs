//! The configuration document a backlog guest is handed with each call (the WIT call
//! context's `config`): which store, the guest paths and accesses it was granted, the policy,
//! and the caller's entitlements.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::settings::Backend;
use crate::grants::{Access, Grants};
use crate::registry::Bridge;
use crate::runtime::sandbox::{BACKLOG_DIR, REPORTS_DIR};

/// The documents handed to guests so far, by grants and caller. A bridge's settings, policy
/// and matrix do not change (a reload makes a new bridge), so the text is the same call after
/// call: built once, not serialized again per call (the policy's escaping alone was a fifth
/// of the host's own time in a warm `get`).
#[derive(Default)]
pub(crate) struct GuestConfigs(Mutex<HashMap<(Grants, String), Arc<str>>>);

/// Documents kept at most (callers × grant sets; the matrix bounds both): past it, the cache
/// starts over.
const KEPT: usize = 1024;

impl Bridge {
    /// The configuration document of a call with `grants` by `agent` ([`Bridge::build_guest_config`]),
    /// built once per bridge.
    pub(crate) fn guest_config(&self, grants: Grants, agent: &str) -> Arc<str> {
        let mut kept = self
            .guest_configs
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(text) = kept.get(&(grants, agent.to_owned())) {
            return text.clone();
        }
        let text: Arc<str> = self.build_guest_config(grants, agent).into();
        if kept.len() >= KEPT {
            kept.clear();
        }
        kept.insert((grants, agent.to_owned()), text.clone());
        text
    }

    /// Settings a guest may know: which store, the guest paths and the Postgres access it was
    /// granted (never the DSN), and the caller's entitlements (data the guest may use to
    /// narrow what it does, e.g. reserved dedupe keys; it can never widen the grants).
    fn build_guest_config(&self, grants: Grants, agent: &str) -> String {
        let backend = match self.settings.backend {
            Backend::Auto if self.resources.postgres.is_some() => "auto",
            b => b.guest_name(),
        };
        let mut config = json!({ "backend": backend });
        if backend == "auto" {
            config["pg_retry_seconds"] = json!(self.settings.pg_retry_seconds);
        }
        match grants.backlog_dir {
            Access::None => {}
            Access::Read => {
                config["backlog_dir"] = json!(BACKLOG_DIR);
                config["backlog_access"] = json!("read");
            }
            Access::ReadWrite => {
                config["backlog_dir"] = json!(BACKLOG_DIR);
                config["backlog_access"] = json!("read_write");
            }
        }
        if grants.reports_dir != Access::None {
            config["reports_dir"] = json!(REPORTS_DIR);
        }
        match grants.postgres {
            Access::None => {}
            Access::Read => config["postgres"] = json!("read"),
            Access::ReadWrite => config["postgres"] = json!("read_write"),
        }
        if grants.backlog_dir == Access::ReadWrite && self.settings.backend != Backend::Null {
            // The host syncs both files in parallel after the call (see `durable`).
            config["sync"] = json!("host");
            if super::store::lock_on_demand(&self.settings, &self.resources) {
                // The guest takes the directory's lock if it turns to the directory.
                config["dir_lock"] = json!("on_demand");
            }
        }
        config["policy"] = json!(self.policy.json);
        let entitlements = self
            .matrix
            .agent(agent)
            .map(|a| a.entitlements.clone())
            .unwrap_or_default();
        config["entitlements"] = json!(entitlements);
        config.to_string()
    }
}
