//! The JSONL index checkpoint over the real binary and guest: a new process answers lookups
//! and writes from it (opened lazily, without decoding it) exactly as a process that indexes
//! the files from the start, and a damaged checkpoint is ignored with a warning and changes
//! no answer (`docs/storage.md`).

use serde_json::{Value, json};

use crate::util::Env;

/// A store past one checkpoint: 1,100 creates (2,200 lines: a checkpoint at 2,048) in one
/// `batch` process, then a tail of status changes after it.
fn populated() -> (Env, Vec<String>) {
    let env = Env::new();
    let line = |action: &str, params: Value| json!({"agent": "operator", "tool": "backlog_tool", "action": action, "params": params});
    let creates: Vec<Value> = (0..1100)
        .map(|i| {
            let (env, priority) = (["prod", "staging"][i % 2], ["P0", "P1", "P2", "P3"][i % 4]);
            line(
                "create",
                json!({"env": env, "service": format!("svc-{}", i % 13),
                       "category": "refactor", "title": format!("item {i}"),
                       "priority": priority}),
            )
        })
        .collect();
    let ids: Vec<String> = env
        .batch(&creates)
        .iter()
        .map(|r| r["id"].as_str().unwrap_or_else(|| panic!("{r}")).to_owned())
        .collect();
    assert!(env.backlog_dir().join("index.checkpoint").exists());
    let tail: Vec<Value> = ids
        .iter()
        .step_by(97)
        .map(|id| line("set_status", json!({"id": id, "status": "in_progress"})))
        .collect();
    for r in env.batch(&tail) {
        assert!(r.get("error").is_none(), "{r}");
    }
    (env, ids)
}

/// A second installation holding copies of `env`'s JSONL files only (no checkpoint).
fn without_checkpoint(env: &Env) -> Env {
    let copy = Env::new();
    copy.seed_jsonl(&env.backlog_dir());
    assert!(!copy.backlog_dir().join("index.checkpoint").exists());
    copy
}

/// What cold processes answer: a few items with their events, dedupe-key upserts of an
/// existing item and of a new one, then a listing. Each call is its own process.
fn answers(env: &Env, ids: &[String]) -> Vec<Value> {
    let mut out = Vec::new();
    for id in ids.iter().step_by(211) {
        out.push(env.ok("get", json!({"id": id})));
        out.push(env.ok("events", json!({"id": id})));
    }
    let key = env.ok("get", json!({"id": ids[500]}))["dedupe_key"].clone();
    let upsert = |key: &Value, title: &str| {
        json!({"dedupe_key": key, "env": "prod", "service": "svc-1", "category": "refactor",
               "title": title})
    };
    let updated = env.ok("upsert", upsert(&key, "updated by dedupe key"));
    out.push(updated["item"]["id"].clone());
    out.push(env.ok("get", json!({"id": ids[500]}))["title"].clone());
    let created = env.ok("upsert", upsert(&json!("manual:fresh-key"), "new"));
    out.push(created["item"]["title"].clone());
    let list = env.ok(
        "list",
        json!({"env": "prod", "status": ["in_progress"], "limit": 50}),
    );
    out.push(list["total"].clone());
    out.push(json!(list["items"].as_array().map(|items| {
        items.iter().map(|i| i["id"].clone()).collect::<Vec<_>>()
    })));
    out
}

/// What a cold process that runs `action` logs (it must succeed).
fn stderr_of(env: &Env, action: &str, params: Value) -> String {
    let run = env.call("operator", "backlog_tool", action, &params);
    assert_eq!(run.code, 0, "{run:?}");
    run.stderr
}

/// Rewrites `env`'s checkpoint with `damage` applied to its bytes.
fn damage_checkpoint(env: &Env, damage: impl FnOnce(&mut Vec<u8>)) {
    let path = env.backlog_dir().join("index.checkpoint");
    let mut bytes = std::fs::read(&path).expect("checkpoint");
    damage(&mut bytes);
    std::fs::write(&path, &bytes).expect("write");
}

#[test]
fn a_cold_process_answers_from_the_checkpoint_as_from_the_files() {
    let (env, ids) = populated();
    let plain = without_checkpoint(&env);
    assert!(
        !stderr_of(&env, "get", json!({"id": ids[3]})).contains(IGNORED),
        "the checkpoint was not used"
    );
    assert_eq!(answers(&env, &ids), answers(&plain, &ids));
}

const IGNORED: &str = "jsonl: warning: ignoring index.checkpoint";

/// A byte in the middle of the checkpoint flipped: a lookup may not read that block (blocks
/// are read and checked as lookups reach them), a listing reads them all; either way no
/// answer changes.
#[test]
fn a_damaged_checkpoint_is_ignored_with_a_warning_and_changes_no_answer() {
    let (env, ids) = populated();
    let plain = without_checkpoint(&env);
    damage_checkpoint(&env, |bytes| {
        let at = bytes.len() / 2;
        bytes[at] ^= 0x5a;
    });
    let stderr = stderr_of(&env, "list", json!({"limit": 1}));
    assert!(stderr.contains(IGNORED), "{stderr}");
    assert_eq!(answers(&env, &ids), answers(&plain, &ids));
}

/// Every block of the checkpoint's index damaged but the last two (its footer, which opening
/// reads): the header and block table are intact, so the checkpoint opens, and the damage is
/// met by the `get`'s own lookup, whose answer is then dropped and recomputed from the files.
#[test]
fn a_damaged_block_met_by_a_lookup_is_dropped_with_a_warning() {
    let (env, ids) = populated();
    let plain = without_checkpoint(&env);
    damage_checkpoint(&env, |bytes| {
        // The layout (`jsonl/checkpoint.rs`): a 122-byte header whose second word is the
        // body's length, a hash per 4 KiB block of the body, the body.
        let body_len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
        let blocks = body_len.div_ceil(4096);
        let body_at = 122 + 8 * blocks;
        assert_eq!(
            body_at + body_len,
            bytes.len(),
            "the layout the test assumes"
        );
        assert!(blocks > 4, "a store of several blocks");
        for b in 0..blocks - 2 {
            bytes[body_at + b * 4096 + 100] ^= 0x5a;
        }
    });
    let stderr = stderr_of(&env, "get", json!({"id": ids[3]}));
    // Met by the lookup (not refused at opening: "not a checkpoint or damaged").
    let met = format!("{IGNORED} (its index is damaged or does not decode)");
    assert!(stderr.contains(&met), "{stderr}");
    assert_eq!(answers(&env, &ids), answers(&plain, &ids));
}
