//! JSONL crash property (`docs/testing.md`): for any sequence of acknowledged writes and any
//! crash inside the next write (each file cut at any byte offset of what that write appends to
//! it, its write intent on disk), the store opens, warns, and shows exactly the state the
//! acknowledged writes left; the next write lands whole after it. Over the real binary; the
//! state is what `list` and `events` say.
//!
//! Cases: `PROPTEST_CASES` (default 6).

use std::path::Path;

use backlog_store::INTENT_FILE;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
use serde_json::{Value, json};

use crate::model_seq::Driver;
use crate::util::Env;

/// Every item (by id) with its events, as the actions show them.
fn state(d: &mut Driver) -> Vec<Value> {
    let list = d.call("list", &json!({"limit": 1000}));
    let mut items = list["items"].as_array().expect("items").clone();
    items.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    for item in &mut items {
        let evs = d.call("events", &json!({"id": item["id"], "limit": 1000}));
        item["events"] = evs["events"].clone();
    }
    items
}

fn sizes(dir: &Path) -> (u64, u64) {
    let len = |f: &str| std::fs::metadata(dir.join(f)).map(|m| m.len()).unwrap_or(0);
    (len("items.jsonl"), len("events.jsonl"))
}

/// One write: (kind, which item, text).
fn write_op() -> impl Strategy<Value = (u8, usize, String)> {
    (0u8..4, 0usize..8, "[a-zü✓ ]{1,20}")
}

fn params(kind: u8, ids: &[String], target: usize, text: &str) -> (&'static str, Value) {
    let id = |n: usize| ids.get(n % ids.len().max(1)).cloned().unwrap_or_default();
    match (kind, ids.is_empty()) {
        (_, true) | (0, _) => (
            "create",
            json!({"env":"prod","service":"api","category":"refactor","title": text}),
        ),
        (1, _) => ("add_comment", json!({"id": id(target), "message": text})),
        (2, _) => {
            let s = ["in_progress", "blocked", "open", "done"][target % 4];
            ("set_status", json!({"id": id(target), "status": s}))
        }
        _ => ("upsert", json!({"id": id(target), "title": text})),
    }
}

fn property(
    ops: &[(u8, usize, String)],
    pick: usize,
    at_items: u64,
    at_events: u64,
    shape: u8,
) -> Result<(), TestCaseError> {
    let env = Env::new();
    let dir = env.backlog_dir();
    let mut d = Driver::start(&env);
    let mut ids: Vec<String> = Vec::new();
    // (sizes, write intent, state) after each acknowledged write; index 0 is the empty store.
    let mut acked = vec![((0, 0), Vec::new(), Vec::new())];
    for (kind, target, text) in ops {
        let (action, p) = params(*kind, &ids, *target, text);
        let out = d.call(action, &p);
        if out.get("code").is_some() {
            // Refused (e.g. an illegal transition): nothing written, nothing acknowledged.
            continue;
        }
        if action == "create" {
            ids.push(out["id"].as_str().expect("id").to_owned());
        }
        let intent = std::fs::read(dir.join(INTENT_FILE)).unwrap_or_default();
        acked.push((sizes(&dir), intent, state(&mut d)));
    }
    drop(d);
    if acked.len() == 1 {
        return Ok(());
    }
    // A crash inside write k+1: its write intent is on disk (synced before any append), and
    // each file holds any prefix of what the write appends to it — the host syncs both files
    // at once, so the disk may have kept more of either. Shapes: the item line cut, events
    // not written; the item line whole, the event lines cut (the window a write intent
    // closes); both cut anywhere; the events whole, the item line cut.
    let k = pick % (acked.len() - 1);
    let ((i0, e0), _, want) = acked[k].clone();
    let ((i1, e1), intent, whole) = acked[k + 1].clone();
    let within = |lo: u64, hi: u64, at: u64| lo + at % (hi - lo + 1);
    let (cut_items, cut_events) = match shape % 4 {
        0 => (within(i0, i1, at_items), e0),
        1 => (i1, within(e0, e1, at_events)),
        2 => (within(i0, i1, at_items), within(e0, e1, at_events)),
        _ => (within(i0, i1, at_items), e1),
    };
    let want = if (cut_items, cut_events) == (i1, e1) {
        whole
    } else {
        want
    };
    let torn = Env::new();
    std::fs::create_dir_all(torn.backlog_dir()).unwrap();
    for (f, n) in [("items.jsonl", cut_items), ("events.jsonl", cut_events)] {
        let bytes = std::fs::read(dir.join(f)).unwrap_or_default();
        std::fs::write(torn.backlog_dir().join(f), &bytes[..n as usize]).unwrap();
    }
    std::fs::write(torn.backlog_dir().join(INTENT_FILE), &intent).unwrap();
    let first = torn.call("operator", "backlog_tool", "list", &json!({}));
    prop_assert_eq!(first.code, 0, "{:?}", first);
    let mut d = Driver::start(&torn);
    let got = state(&mut d);
    drop(d);
    prop_assert_eq!(
        &got,
        &want,
        "cut at items {} events {} inside write {}",
        cut_items,
        cut_events,
        k + 1
    );
    // The next write cuts the interrupted one off for good, says so, and lands whole.
    let more = torn.call(
        "operator",
        "backlog_tool",
        "create",
        &json!({"env":"prod","service":"api","category":"refactor","title": "after the crash"}),
    );
    prop_assert_eq!(more.code, 0, "{:?}", more);
    let partial = (cut_items, cut_events) != (i0, e0) && (cut_items, cut_events) != (i1, e1);
    if partial {
        prop_assert!(
            more.stderr.contains("cut an interrupted write"),
            "no warning for a cut at items {cut_items} of {i0}..{i1}, events {cut_events} of \
             {e0}..{e1}: {more:?}"
        );
    }
    let mut d = Driver::start(&torn);
    let mut after = state(&mut d);
    prop_assert_eq!(after.len(), want.len() + 1);
    after.retain(|i| i["id"] != more.json()["id"]);
    prop_assert_eq!(after, want);
    Ok(())
}

#[test]
fn any_cut_gives_the_acknowledged_writes() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "../tests/model/regressions/torn.txt",
        ))),
        ..Config::default()
    });
    let strategy = (
        prop::collection::vec(write_op(), 1..10),
        any::<usize>(),
        any::<u64>(),
        any::<u64>(),
        any::<u8>(),
    );
    runner
        .run(&strategy, |(ops, pick, i, e, shape)| {
            property(&ops, pick, i, e, shape)
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
