//! The property checks of the fuzz targets (`fuzz/fuzz_targets/*.rs`, `docs/testing.md`).
//!
//! Each `check_*` takes the fuzzer's raw bytes and panics when a property fails; returning is
//! success. They live in a normal crate so that `cargo test -p fuzz-checks` replays every file
//! of `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` on stable (`tests/replay.rs`).

use backlog_core::actions::{Ctx, execute};
use backlog_core::ids::Entropy;
use backlog_core::mem::MemStore;
use backlog_core::model::{Event, Item};
use backlog_core::params::Params;
use backlog_core::policy::Policy;
use chrono::{DateTime, Duration, Utc};
use scheduler_core::{Registry, Schedule};
use serde_json::Value;

mod checkpoint;
mod config;
mod digest;
mod dispatch;
mod fold;
mod mcp;
mod query;

pub use checkpoint::check_checkpoint;
pub use config::{check_keys, check_plugins, check_rbac};
pub use digest::check_digest;
pub use dispatch::{check_mcp_dispatch, init_mcp_dispatch};
pub use fold::check_jsonl_fold;
pub use mcp::check_mcp;
pub use query::check_query;

/// A property check over the fuzzer's bytes: panics when a property fails.
pub type Check = fn(&[u8]);

/// Every target by name, for the replay test and `fuzz/smoke.sh`.
pub const TARGETS: &[(&str, Check)] = &[
    ("params", check_params),
    ("jsonl_line", check_jsonl_line),
    ("policy", check_policy),
    ("cron", check_cron),
    ("registry", check_registry),
    ("digest", check_digest),
    ("rbac", check_rbac),
    ("plugins", check_plugins),
    ("query", check_query),
    ("mcp", check_mcp),
    ("keys", check_keys),
    ("jsonl_fold", check_jsonl_fold),
    ("mcp_dispatch", check_mcp_dispatch),
    ("checkpoint", check_checkpoint),
];

/// A deterministic entropy source (ids need not be random here).
pub(crate) struct Counter(pub(crate) u64);

impl Entropy for Counter {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *b = (self.0 >> 56) as u8;
        }
    }
}

pub(crate) fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_795_000_000, 0).unwrap_or_default()
}

/// Runs `action` with `params` on `store`; an `internal` error is a bug.
fn run(store: &mut MemStore, policy: &Policy, action: &str, params: &Value) -> Option<Value> {
    let mut entropy = Counter(7);
    let mut ctx = Ctx::new("fuzz", now(), policy, &mut entropy);
    match execute(store, action, params, &mut ctx) {
        Ok(v) => Some(v),
        Err(e) => {
            assert!(
                e.code != backlog_core::ErrorCode::Internal,
                "{action} {params}: internal error {}",
                e.message
            );
            None
        }
    }
}

/// `T::from_json` on `v`, and again on `v` printed and parsed back: equal results.
fn round_trip<T: Params + PartialEq + std::fmt::Debug>(v: &Value, policy: &Policy) {
    let first = T::from_json(v, policy);
    let again: Value = serde_json::from_str(&v.to_string()).expect("printed JSON parses");
    let second = T::from_json(&again, policy);
    match (first, second) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{v}"),
        (Err(a), Err(b)) => assert_eq!(a.code, b.code, "{v}"),
        (a, b) => panic!("{v}: {a:?} then {b:?}"),
    }
}

/// Action params (JSON text; the first byte picks the action): validation is stable under a
/// print/parse round trip, and no action answers `internal` or panics on any params.
pub fn check_params(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(v) = serde_json::from_slice::<Value>(rest) else {
        return;
    };
    use backlog_core::params::*;
    let policy = Policy::default();
    match pick % 6 {
        0 => round_trip::<CreateParams>(&v, &policy),
        1 => round_trip::<UpsertParams>(&v, &policy),
        2 => round_trip::<backlog_core::list::ListQuery>(&v, &policy),
        3 => round_trip::<SetStatusParams>(&v, &policy),
        4 => round_trip::<CleanupParams>(&v, &policy),
        _ => round_trip::<AddCommentParams>(&v, &policy),
    }
    let actions = backlog_core::actions::ACTIONS;
    let action = actions[usize::from(pick) % actions.len()];
    let mut store = MemStore::new();
    run(&mut store, &policy, action, &v);
}

/// One JSONL line: an item or event that parses prints back to a line that parses to the same
/// value.
pub fn check_jsonl_line(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(item) = serde_json::from_str::<Item>(text) {
        let line = serde_json::to_string(&item).expect("an item prints");
        assert!(!line.contains('\n'), "one line: {line}");
        let back: Item = serde_json::from_str(&line).expect("a printed item parses");
        assert_eq!(back, item);
    }
    if let Ok(ev) = serde_json::from_str::<Event>(text) {
        let line = serde_json::to_string(&ev).expect("an event prints");
        let back: Event = serde_json::from_str(&line).expect("a printed event parses");
        assert_eq!(back, ev);
    }
}

/// The policy (YAML text): one that loads gives the same policy after a round trip through
/// its JSON form, read both as a document and in resolved form (what guests get), and can be
/// used (create, dashboard, cleanup, weekly generation run without
/// `internal`).
pub fn check_policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(doc) = serde_yaml_ng::from_str::<Value>(text) else {
        return;
    };
    let Ok(policy) = Policy::from_json_str(&doc.to_string()) else {
        return;
    };
    let json = serde_json::to_string(&policy).expect("a policy prints");
    let back = Policy::from_json_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
    assert_eq!(back, policy);
    let resolved = Policy::from_resolved_json(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
    assert_eq!(resolved, policy);
    // Any text: an error or a valid policy, never a panic.
    let _ = Policy::from_resolved_json(text);
    let mut store = MemStore::new();
    let category = policy.categories.names()[0].to_owned();
    let item = serde_json::json!({"env":"prod","service":"api","category": category,"title":"t"});
    run(&mut store, &policy, "create", &item);
    run(
        &mut store,
        &policy,
        "dashboard",
        &serde_json::json!({"env":"prod"}),
    );
    run(&mut store, &policy, "cleanup", &serde_json::json!({}));
}

/// Checks one schedule from `now`: the next fire is after `now`, matches, and no minute in
/// between (up to two days) matches; the printed expression parses to the same schedule.
fn schedule_properties(s: &Schedule, now: DateTime<Utc>) {
    let again = Schedule::parse(s.as_str()).expect("a printed schedule parses");
    assert_eq!(&again, s);
    let Some(next) = s.next_after(now) else {
        panic!("`{s}` parsed, so it fires, but has no next fire after {now}");
    };
    assert!(next > now && s.matches(next), "`{s}` after {now}: {next}");
    let mut t = scheduler_core::cron::minute_floor(now) + Duration::minutes(1);
    let stop = next.min(now + Duration::days(2));
    while t < stop {
        assert!(
            !s.matches(t),
            "`{s}` after {now}: {t} matches before {next}"
        );
        t += Duration::minutes(1);
    }
}

/// A cron expression (the first 5 bytes are the instant): see [`schedule_properties`].
pub fn check_cron(data: &[u8]) {
    if data.len() < 5 {
        return;
    }
    let (head, rest) = data.split_at(5);
    let secs = head.iter().fold(0i64, |a, b| a * 256 + i64::from(*b)) % 7_258_118_400;
    let Some(now) = DateTime::from_timestamp(secs, 0) else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if let Ok(s) = Schedule::parse(text) {
        schedule_properties(&s, now);
    }
}

/// The task registry (YAML text): every job of a registry that loads has a working schedule.
pub fn check_registry(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = Registry::parse("task_registry.yml", text, None) {
        for j in &r.jobs {
            schedule_properties(&j.schedule, now());
        }
    }
}
