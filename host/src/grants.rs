//! Grants: what one call may touch. Data, not strings, and deny by default — a
//! [`Grants::default()`] has no directories, no database, no environment.
//!
//! [`grants_for`] is the one place where policy (the plugin registry) and the action's required
//! entitlements become capabilities. It is pure and table-tested below.

use std::collections::BTreeMap;

use serde::Deserialize;

/// How much of one resource a call may use. Ordered: `None < Read < ReadWrite`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    #[default]
    None,
    Read,
    ReadWrite,
}

impl Access {
    /// The wasmtime preopen permissions for this access, if any.
    pub fn fs_perms(self) -> Option<wasmtime_wasi::FsPerms> {
        match self {
            Access::None => None,
            Access::Read => Some(wasmtime_wasi::FsPerms::ReadOnly),
            Access::ReadWrite => Some(wasmtime_wasi::FsPerms::ReadWrite),
        }
    }
}

/// The capabilities of one call. Only calls with equal grants may share a warm instance (and,
/// unless the plugin is `shared`, only of the same caller: `runtime/pool.rs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Grants {
    /// The JSONL store directory, preopened in the guest as `/backlog`.
    pub backlog_dir: Access,
    /// The reports directory (`<ops-dir>/reports`), preopened as `/reports`.
    pub reports_dir: Access,
    /// Postgres access through the host's `backlog-bridge:pg` import (`read`: every
    /// transaction `READ ONLY`); never a DSN.
    pub postgres: Access,
}

impl Grants {
    /// The larger access of each resource.
    pub fn union(self, other: Grants) -> Grants {
        Grants {
            backlog_dir: self.backlog_dir.max(other.backlog_dir),
            reports_dir: self.reports_dir.max(other.reports_dir),
            postgres: self.postgres.max(other.postgres),
        }
    }

    /// The smaller access of each resource.
    pub fn intersect(self, other: Grants) -> Grants {
        Grants {
            backlog_dir: self.backlog_dir.min(other.backlog_dir),
            reports_dir: self.reports_dir.min(other.reports_dir),
            postgres: self.postgres.min(other.postgres),
        }
    }

    /// Whether the call may change anything (and so must be serialized per directory).
    pub fn writes(self) -> bool {
        self.backlog_dir == Access::ReadWrite || self.postgres == Access::ReadWrite
    }
}

/// Grants follow the action: the union of what each of the action's *required* entitlements
/// gives (`by_entitlement`), capped by what the plugin may ever get (`ceiling`). What the
/// caller additionally holds never widens a call, so an admin's `get` still runs read-only.
pub fn grants_for(
    ceiling: Grants,
    by_entitlement: &BTreeMap<String, Grants>,
    required: &[String],
) -> Grants {
    required
        .iter()
        .filter_map(|e| by_entitlement.get(e))
        .fold(Grants::default(), |acc, g| acc.union(*g))
        .intersect(ceiling)
}

#[cfg(test)]
mod tests {
    use super::Access::{None as No, Read as R, ReadWrite as RW};
    use super::*;

    fn g(backlog_dir: Access, reports_dir: Access) -> Grants {
        Grants {
            backlog_dir,
            reports_dir,
            postgres: backlog_dir,
        }
    }

    fn shipped() -> BTreeMap<String, Grants> {
        [
            ("tools.backlog.read", g(R, No)),
            ("tools.backlog.write", g(RW, No)),
            ("tools.backlog.admin", g(RW, R)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    #[track_caller]
    fn check(ceiling: Grants, required: &[&str], expect: Grants) {
        let required: Vec<String> = required.iter().map(|s| s.to_string()).collect();
        assert_eq!(grants_for(ceiling, &shipped(), &required), expect);
    }

    #[test]
    fn policy_to_grants() {
        let all = g(RW, RW);
        check(all, &[], Grants::default()); // nothing required: nothing granted
        check(all, &["tools.backlog.read"], g(R, No)); // read-only
        check(all, &["tools.backlog.write"], g(RW, No)); // read-write, no reports
        check(all, &["tools.backlog.admin"], g(RW, R)); // admin: reports read-only
        check(
            all,
            &["tools.backlog.read", "tools.backlog.write"],
            g(RW, No),
        ); // union
        check(all, &["tools.unknown"], Grants::default()); // unmapped entitlement: nothing
        check(g(R, No), &["tools.backlog.admin"], g(R, No)); // ceiling caps over-broad maps
        check(
            Grants::default(),
            &["tools.backlog.write"],
            Grants::default(),
        ); // empty ceiling
    }

    #[test]
    fn only_read_write_grants_write() {
        assert!(!g(R, R).writes());
        assert!(g(RW, No).writes());
        assert!(!Grants::default().writes());
    }
}
