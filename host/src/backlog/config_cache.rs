//! The guests' configuration documents a bridge has built (`guest_config.rs`), by grant set
//! and caller. A bridge's settings, policy and matrix do not change (a reload makes a new
//! bridge), so a caller's document is the same text call after call: built once, not
//! serialized again per call (the policy's escaping alone was a fifth of the host's own time
//! in a warm `get`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::grants::Grants;

/// Documents kept at most (callers × grant sets; the matrix bounds both): past it, the cache
/// starts over.
const KEPT: usize = 1024;

/// The documents built so far.
#[derive(Default)]
pub(crate) struct GuestConfigs(Mutex<HashMap<(Grants, String), Arc<str>>>);

impl GuestConfigs {
    /// The document of `agent` with `grants`, built by `build` the first time.
    pub(crate) fn get_or_build(
        &self,
        grants: Grants,
        agent: &str,
        build: impl FnOnce() -> String,
    ) -> Arc<str> {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(text) = kept.get(&(grants, agent.to_owned())) {
            return text.clone();
        }
        let text: Arc<str> = build().into();
        if kept.len() >= KEPT {
            kept.clear();
        }
        kept.insert((grants, agent.to_owned()), text.clone());
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grants::Access;

    #[test]
    fn a_document_is_built_once_per_grants_and_caller() {
        let kept = GuestConfigs::default();
        let read = Grants {
            backlog_dir: Access::Read,
            ..Grants::default()
        };
        let a = kept.get_or_build(read, "a", || "first".into());
        let again = kept.get_or_build(read, "a", || unreachable!("built once"));
        assert!(Arc::ptr_eq(&a, &again));
        assert_eq!(&*kept.get_or_build(read, "b", || "b".into()), "b");
        let write = Grants {
            backlog_dir: Access::ReadWrite,
            ..read
        };
        assert_eq!(&*kept.get_or_build(write, "a", || "w".into()), "w");
    }
}
