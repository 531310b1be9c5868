//! The configuration document a backlog guest is handed with each call (the WIT call
//! context's `config`): which store, the guest paths and accesses it was granted, the policy,
//! and the caller's entitlements.

use serde_json::json;

use super::settings::Backend;
use crate::grants::{Access, Grants};
use crate::registry::Bridge;
use crate::runtime::sandbox::{BACKLOG_DIR, REPORTS_DIR};

impl Bridge {
    /// The configuration document of a call with `grants` by `agent`, built once per bridge
    /// (`config_cache.rs`).
    pub(crate) fn guest_config(&self, grants: Grants, agent: &str) -> std::sync::Arc<str> {
        self.guest_configs
            .get_or_build(grants, agent, || self.build_guest_config(grants, agent))
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
