//! Concurrency property (`docs/testing.md`): two `batch` processes of the real binary, started
//! together on one store (one JSONL directory, or one harness-started Postgres database),
//! each run a random list of writes; the answers each got and the state they leave must be
//! what SOME serial order of their operations gives — each process's operations in its own
//! order, the two interleaved — by the reference model (`tests/model/`).
//!
//! The check is a search over interleavings (Wing & Gong's linearizability check): from
//! `(i, j)` operations done, apply process A's next operation to the model if its model
//! answer equals the answer A really got, or B's likewise; a complete path whose final model
//! state equals the real one is the witness. Visited `(i, j, model state)` are not explored
//! twice, so commuting operations do not blow the search up.
//!
//! To keep answers comparable without knowing the order: the clock is pinned (every write has
//! the same timestamp), every item has a dedupe key and is named by it (real and model ids are
//! dropped), comment messages name their process and step. The operations: upserts on keys
//! both processes share (last writer wins, field by field) and on keys of their own,
//! creates on their own keys (a second one is a `conflict`), status moves and comments on
//! shared items (illegal moves are a `conflict` depending on the order).
//!
//! Cases: `PROPTEST_CASES` (default 3 per backend).

use std::collections::HashSet;
use std::io::Write as _;
use std::process::Stdio;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
use serde_json::{Value, json};

use crate::model_seq::model::{self, Fields, Model};
use crate::util::{Backend, Env};

/// Items created before the two processes start, shared by both.
const SHARED: &[&str] = &["s0", "s1", "s2"];

#[derive(Debug, Clone)]
enum Op {
    /// Upsert by key (`shared` or this process's own `n`), with a title, maybe a priority and
    /// an owner.
    Upsert {
        shared: bool,
        n: usize,
        title: String,
        priority: Option<&'static str>,
        owner: Option<&'static str>,
    },
    /// Create under this process's own key `n`.
    Create(usize),
    /// Move shared item `n` to a status.
    SetStatus(usize, &'static str),
    /// Comment on shared item `n`.
    Comment(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let upsert = (
        any::<bool>(),
        0usize..3,
        "[a-c]{1,2}",
        prop::option::of(prop::sample::select(vec!["P0", "P1", "P2"])),
        prop::option::of(prop::sample::select(vec!["alice", "bob"])),
    )
        .prop_map(|(shared, n, title, priority, owner)| Op::Upsert {
            shared,
            n,
            title,
            priority,
            owner,
        });
    prop_oneof![
        4 => upsert,
        2 => (0usize..3).prop_map(Op::Create),
        3 => (0usize..3, prop::sample::select(model::STATUSES.to_vec())).prop_map(|(n, s)| Op::SetStatus(n, s)),
        2 => (0usize..3).prop_map(Op::Comment),
    ]
}

fn key(process: usize, shared: bool, n: usize) -> String {
    if shared {
        SHARED[n % SHARED.len()].to_owned()
    } else {
        format!("p{process}-{n}")
    }
}

/// Operation `step` of `process` as (action, params for the product with `ids` the real ids of
/// the shared items, the model's call with `ids` the model's).
fn request(process: usize, step: usize, op: &Op, ids: &[String]) -> (&'static str, Value) {
    match op {
        Op::Upsert {
            shared,
            n,
            title,
            priority,
            owner,
        } => {
            let mut p = json!({"env": "prod", "service": "api", "category": "refactor",
                "title": title, "dedupe_key": key(process, *shared, *n)});
            if let Some(x) = priority {
                p["priority"] = json!(x);
            }
            if let Some(x) = owner {
                p["owner"] = json!(x);
            }
            ("upsert", p)
        }
        Op::Create(n) => (
            "create",
            json!({"env": "prod", "service": "api", "category": "refactor", "title": "new",
                "dedupe_key": key(process, false, *n)}),
        ),
        Op::SetStatus(n, s) => ("set_status", json!({"id": ids[*n], "status": s})),
        Op::Comment(n) => (
            "add_comment",
            json!({"id": ids[*n], "message": format!("p{process} step {step}")}),
        ),
    }
}

fn fields(p: &Value) -> Fields {
    let s = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_owned);
    Fields {
        env: s("env"),
        service: s("service"),
        category: s("category"),
        title: s("title"),
        priority: s("priority"),
        owner: s("owner"),
        dedupe_key: s("dedupe_key"),
    }
}

/// The model's answer to `action` with the product's `params` (shared item `n`'s real id is
/// `real_ids[n]`, its model id `m{n}`).
fn apply(m: &mut Model, action: &str, params: &Value, real_ids: &[String]) -> Value {
    let id = || {
        let real = params["id"].as_str().unwrap_or_default();
        let n = real_ids
            .iter()
            .position(|r| r == real)
            .expect("a shared item");
        format!("m{n}")
    };
    let answer = match action {
        "upsert" => m.upsert(fields(params), true),
        "create" => m.create(fields(params), true),
        "set_status" => m.set_status(&id(), params["status"].as_str().unwrap_or_default(), None),
        "add_comment" => m.add_comment(&id(), params["message"].as_str().unwrap_or_default()),
        other => panic!("no model call for {other}"),
    };
    normalize(action, &answer.unwrap_or_else(|code| json!({"code": code})))
}

/// An item without its id (items are named by their dedupe key).
fn item(v: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for k in model::ITEM_FIELDS.iter().filter(|k| **k != "id") {
        out.insert((*k).to_owned(), v.get(*k).cloned().unwrap_or(Value::Null));
    }
    Value::Object(out)
}

fn event(v: &Value) -> Value {
    json!({"ts": v["ts"], "type": v["type"], "message": v["message"]})
}

/// An answer in id-free terms: `{"code"}` for an error, items without ids, events as
/// (ts, type, message).
fn normalize(action: &str, v: &Value) -> Value {
    if let Some(code) = v.get("code") {
        return json!({ "code": code });
    }
    match action {
        "upsert" => json!({"action": v["action"], "item": item(&v["item"])}),
        "add_comment" => event(v),
        _ => item(v),
    }
}

/// A whole store, id-free: items by dedupe key, each with its events in order.
fn model_state(m: &Model) -> Vec<Value> {
    let mut items: Vec<Value> = m
        .items
        .values()
        .map(|i| {
            let mut v = item(&model::item_json(i));
            v["events"] = json!(
                i.events
                    .iter()
                    .map(|e| event(&model::event_json(&i.id, e)))
                    .collect::<Vec<_>>()
            );
            v
        })
        .collect();
    items.sort_by(|a, b| a["dedupe_key"].as_str().cmp(&b["dedupe_key"].as_str()));
    items
}

fn real_state(env: &Env) -> Vec<Value> {
    let mut items: Vec<Value> = env
        .state()
        .iter()
        .map(|i| {
            let mut v = item(i);
            v["events"] = json!(
                i["events"]
                    .as_array()
                    .expect("events")
                    .iter()
                    .map(event)
                    .collect::<Vec<_>>()
            );
            v
        })
        .collect();
    items.sort_by(|a, b| a["dedupe_key"].as_str().cmp(&b["dedupe_key"].as_str()));
    items
}

/// One process's calls: (action, params, the answer it got).
type Log = Vec<(&'static str, Value, Value)>;

/// Whether some interleaving of `a` and `b` gives every answer and then `end`.
fn linearizable(start: &Model, a: &Log, b: &Log, ids: &[String], end: &[Value]) -> bool {
    let mut seen = HashSet::new();
    let mut stack = vec![(0usize, 0usize, start.clone())];
    while let Some((i, j, m)) = stack.pop() {
        if i == a.len() && j == b.len() {
            if model_state(&m) == end {
                return true;
            }
            continue;
        }
        if !seen.insert((i, j, format!("{:?}", m.items))) {
            continue;
        }
        for (log, at, next) in [(a, i, (i + 1, j)), (b, j, (i, j + 1))] {
            let Some((action, params, got)) = log.get(at) else {
                continue;
            };
            let mut m2 = m.clone();
            if apply(&mut m2, action, params, ids) == normalize(action, got) {
                stack.push((next.0, next.1, m2));
            }
        }
    }
    false
}

fn run(backend: Backend, a: &[Op], b: &[Op]) -> Result<(), TestCaseError> {
    let env = Env::on(backend);
    // The shared items, created first (in the model too: m0, m1, m2).
    let mut start = Model::new(model::ts_parse(crate::model_seq::START));
    let seed: Vec<Value> = SHARED
        .iter()
        .map(|k| {
            json!({"tool": "backlog_tool", "action": "create", "params": {"env": "prod",
            "service": "api", "category": "refactor", "title": "shared", "dedupe_key": k}})
        })
        .collect();
    let mut ids = Vec::new();
    for (line, out) in seed.iter().zip(env.batch(&seed)) {
        ids.push(out["id"].as_str().expect("seed id").to_owned());
        start
            .create(fields(&line["params"]), true)
            .expect("seed in model");
    }
    // Both processes get their whole input at once and run together.
    let requests: Vec<Vec<(&'static str, Value)>> = [a, b]
        .iter()
        .enumerate()
        .map(|(p, ops)| {
            ops.iter()
                .enumerate()
                .map(|(s, op)| request(p, s, op, &ids))
                .collect()
        })
        .collect();
    let children: Vec<_> = requests
        .iter()
        .map(|reqs| {
            let mut child = env
                .cmd()
                .arg("batch")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn batch");
            let mut stdin = child.stdin.take().expect("stdin");
            for (action, params) in reqs {
                let line = json!({"tool": "backlog_tool", "action": action, "params": params});
                writeln!(stdin, "{line}").expect("write to batch");
            }
            child
        })
        .collect();
    let mut logs: Vec<Log> = Vec::new();
    for (child, reqs) in children.into_iter().zip(&requests) {
        let out = child.wait_with_output().expect("batch");
        prop_assert!(out.status.success(), "batch failed: {:?}", out);
        let answers: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        prop_assert_eq!(answers.len(), reqs.len(), "one answer per line");
        logs.push(
            reqs.iter()
                .cloned()
                .zip(answers)
                .map(|((a, p), v)| (a, p, v))
                .collect(),
        );
    }
    let end = real_state(&env);
    if std::env::var_os("CONC_TRACE").is_some() {
        let serial = |x: &Log, y: &Log| {
            let mut both = x.clone();
            both.extend(y.iter().cloned());
            linearizable(&start, &both, &Vec::new(), &ids, &end)
        };
        eprintln!(
            "ops {}+{}: A;B {} B;A {}",
            logs[0].len(),
            logs[1].len(),
            serial(&logs[0], &logs[1]),
            serial(&logs[1], &logs[0])
        );
    }
    prop_assert!(
        linearizable(&start, &logs[0], &logs[1], &ids, &end),
        "no serial order of the two processes' operations gives their answers and the end state\nA: {:#?}\nB: {:#?}\nend: {:#?}",
        logs[0],
        logs[1],
        end
    );
    Ok(())
}

fn check(backend: Backend, file: &'static str) {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(file))),
        ..Config::default()
    });
    let ops = || prop::collection::vec(op(), 1..16);
    runner
        .run(&(ops(), ops()), |(a, b)| run(backend, &a, &b))
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn two_processes_on_one_jsonl_dir_are_serializable() {
    check(
        Backend::Jsonl,
        "../tests/model/regressions/concurrency_jsonl.txt",
    );
}

#[test]
fn two_processes_on_one_postgres_database_are_serializable() {
    check(
        Backend::Postgres,
        "../tests/model/regressions/concurrency_postgres.txt",
    );
}

/// The search itself: an order exists for answers that agree, none for answers no order gives
/// (here: both processes "created" the same shared key's item).
#[test]
fn the_interleaving_search_finds_orders_and_refuses_impossible_answers() {
    let start = Model::new(model::ts_parse(crate::model_seq::START));
    let up = |title: &str| {
        json!({"env": "prod", "service": "api", "category": "refactor", "title": title,
            "dedupe_key": "s9"})
    };
    // A's upsert created the item, B's then updated it: the order A, B.
    let mut m = start.clone();
    let a_ans = m.upsert(fields(&up("a")), true).unwrap();
    let b_ans = m.upsert(fields(&up("b")), true).unwrap();
    let end = model_state(&m);
    let a: Log = vec![("upsert", up("a"), a_ans.clone())];
    let b: Log = vec![("upsert", up("b"), b_ans)];
    assert!(linearizable(&start, &a, &b, &[], &end));
    // Both claim `created`: no serial order gives that.
    let mut m2 = start.clone();
    let b_created = m2.upsert(fields(&up("b")), true).unwrap();
    let b: Log = vec![("upsert", up("b"), b_created)];
    assert!(!linearizable(&start, &a, &b, &[], &end));
}
