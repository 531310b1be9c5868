//! Nothing acknowledged is lost: kill -9 in the middle of writes, and two writer processes.

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::Stdio;

use serde_json::{Value, json};

use crate::util::Env;

fn upsert_line(key: &str, round: usize) -> Value {
    json!({"tool":"backlog_tool","action":"upsert","params":{
        "dedupe_key": key, "env":"prod","service":"svc","category":"refactor",
        "title": format!("round {round}")}})
}

/// Every dedupe_key present in the store, read through the binary (the store must open).
fn keys_in_store(env: &Env) -> HashSet<String> {
    let mut keys = HashSet::new();
    let mut offset = 0;
    loop {
        let page = env.ok("list", json!({"limit": 1000, "offset": offset}));
        for item in page["items"].as_array().unwrap() {
            keys.insert(item["dedupe_key"].as_str().unwrap().to_owned());
        }
        match page["next_offset"].as_u64() {
            Some(n) => offset = n,
            None => return keys,
        }
    }
}

#[test]
fn kill_9_mid_stream_never_loses_an_acknowledged_upsert() {
    let env = Env::new();
    let mut acknowledged = HashSet::new();
    for round in 0..50 {
        let mut child = env
            .cmd()
            .arg("batch")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        // Feed more than we wait for, so the kill lands while writes are in flight.
        let wait_for = 3 + round % 7;
        let keys: Vec<String> = (0..wait_for + 20)
            .map(|i| format!("k:{round}:{i}"))
            .collect();
        for k in &keys {
            writeln!(stdin, "{}", upsert_line(k, round)).unwrap();
        }
        stdin.flush().unwrap();
        for k in keys.iter().take(wait_for) {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert_eq!(v["action"], "created", "{v}");
            acknowledged.insert(k.clone());
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let present = keys_in_store(&env);
    let lost: Vec<_> = acknowledged.difference(&present).collect();
    assert!(
        lost.is_empty(),
        "lost {} acknowledged upserts: {lost:?}",
        lost.len()
    );
    assert!(acknowledged.len() >= 50 * 3);
    // The store still takes writes after all that.
    env.ok("upsert", upsert_line("after", 0)["params"].clone());
}

#[test]
fn two_writer_processes_interleave_nothing_and_lose_nothing() {
    let env = Env::new();
    let spawn = |who: &str| {
        let lines: Vec<Value> = (0..500)
            .map(|i| upsert_line(&format!("{who}:{}", i % 250), i))
            .collect();
        let mut child = env
            .cmd()
            .arg("batch")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            for l in lines {
                writeln!(stdin, "{l}").unwrap();
            }
        });
        child
    };
    let (a, b) = (spawn("a"), spawn("b"));
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let results: Vec<Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(results.len(), 500);
        assert!(results.iter().all(|r| r.get("code").is_none()), "no errors");
    }
    // Every line of both files is a whole JSON object (no torn or interleaved lines).
    for file in ["items.jsonl", "events.jsonl"] {
        let text = std::fs::read_to_string(env.backlog_dir().join(file)).unwrap();
        for (n, line) in text.lines().enumerate() {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("{file}:{} is not JSON ({e}): {line}", n + 1));
        }
    }
    let keys = keys_in_store(&env);
    assert_eq!(keys.len(), 500);
    let events = std::fs::read_to_string(env.backlog_dir().join("events.jsonl")).unwrap();
    // 500 creates + 500 title updates (each key is upserted twice with different titles).
    assert_eq!(events.lines().count(), 1000);
}
