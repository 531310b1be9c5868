//! The JSONL index checkpoint (`backlog-store`: `jsonl/checkpoint.rs`, `index/pages.rs`,
//! `index/lazy.rs`): a store written once (items, comments, status changes, then `cleanup`,
//! which writes the checkpoint), whose checkpoint the fuzzer damages.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use backlog_core::actions::{Ctx, execute};
use backlog_core::list::ListQuery;
use backlog_core::model::Status;
use backlog_core::policy::Policy;
use backlog_core::store::BacklogStore;
use backlog_store::{Access, CHECKPOINT_FILE, EVENTS_FILE, ITEMS_FILE, JsonlStore};
use serde_json::{Value, json};

use crate::{Counter, now};

const TODAY: &str = "2026-12-06";

/// The store, its good checkpoint, its items' ids and dedupe keys, and what it answers
/// without a checkpoint.
struct Fixture {
    dir: PathBuf,
    good: Vec<u8>,
    keys: Vec<(String, String)>,
    want: Value,
}

fn open(dir: &Path, access: Access) -> JsonlStore {
    JsonlStore::open(dir.to_owned(), access, Box::new(|_| {}))
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("fuzz-checkpoint-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch dir");
        let policy = Policy::default();
        let mut store = open(&dir, Access::ReadWrite);
        let mut entropy = Counter(11);
        let mut keys = Vec::new();
        for i in 0..90 {
            let mut ctx = Ctx::new("fuzz", now(), &policy, &mut entropy);
            let env = ["prod", "staging"][i % 2];
            let params = json!({"env": env, "service": format!("svc-{}", i % 7),
                "category": "refactor", "title": format!("item {i}"), "dedupe_key": format!("fuzz:{i}")});
            let item = execute(&mut store, "upsert", &params, &mut ctx).expect("upsert");
            let id = item["item"]["id"].as_str().expect("an id").to_owned();
            if i % 3 == 0 {
                let c = json!({"id": id, "message": format!("note {i}")});
                execute(&mut store, "add_comment", &c, &mut ctx).expect("comment");
            }
            if i % 5 == 0 {
                let s = json!({"id": id, "status": Status::Done, "comment": "fixed"});
                execute(&mut store, "set_status", &s, &mut ctx).expect("status");
            }
            keys.push((id, format!("fuzz:{i}")));
        }
        // Kept all (nothing is that old); the rewrite writes the checkpoint.
        store.cleanup("2000-01-01T00:00:00.000000Z", false).expect("cleanup");
        let good = std::fs::read(dir.join(CHECKPOINT_FILE)).expect("cleanup wrote a checkpoint");
        let bare = dir.join("bare");
        std::fs::create_dir_all(&bare).expect("mkdir");
        for f in [ITEMS_FILE, EVENTS_FILE] {
            std::fs::copy(dir.join(f), bare.join(f)).expect("copy");
        }
        let want = answers(&mut open(&bare, Access::ReadOnly), &keys, &policy);
        // The intact checkpoint is what a reader starts from, lazily: the target damages
        // something that is used.
        let mut reader = open(&dir, Access::ReadOnly);
        assert!(reader.get(&keys[0].0).expect("get").is_some());
        assert!(reader.stats().lazy, "a reader opens the checkpoint lazily");
        Fixture {
            dir,
            good,
            keys,
            want,
        }
    })
}

/// What a reader asks, lookups first (answered from the checkpoint without decoding it),
/// then what decodes it whole.
fn answers(store: &mut JsonlStore, keys: &[(String, String)], policy: &Policy) -> Value {
    let mut out = Vec::new();
    for (id, key) in keys {
        out.push(json!({
            "get": store.get(id).ok(),
            "events": store.events(id, 1000).ok(),
            "by_key": store.find_by_dedupe_key(key).ok().map(|i| i.map(|i| i.id)),
        }));
    }
    let staging = ListQuery {
        env: Some("staging".into()),
        limit: 7,
        offset: 3,
        ..ListQuery::default()
    };
    let list = |store: &mut JsonlStore, q: &ListQuery| {
        store.list(q, TODAY).ok().map(|p| {
            (
                p.total,
                p.items.into_iter().map(|i| i.id).collect::<Vec<_>>(),
            )
        })
    };
    let lists = (list(store, &ListQuery::default()), list(store, &staging));
    let mut all = store.keys(None).ok();
    if let Some(k) = all.as_mut() {
        k.sort_by(|a, b| a.id.cmp(&b.id));
    }
    let all = all.map(|k| k.into_iter().map(|k| (k.id, k.status)).collect::<Vec<_>>());
    let dashboard = store.dashboard("prod", TODAY, policy).ok();
    json!({"lookups": out, "lists": lists, "keys": all, "dashboard": dashboard})
}

/// Damage to the checkpoint: each 5 bytes flip one byte (a 4-byte offset, an XOR mask); a
/// first byte with its low bit set also cuts the file at the offset of the last pair (or
/// appends the remaining bytes). Whatever the damage, a reader answers exactly what it
/// answers without a checkpoint, lookups first, and never panics.
pub fn check_checkpoint(data: &[u8]) {
    let fx = fixture();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = fx.good.clone();
    let pairs = rest.chunks_exact(5);
    let tail = pairs.remainder();
    let mut last = 0usize;
    for p in pairs {
        let at = u32::from_le_bytes([p[0], p[1], p[2], p[3]]) as usize % bytes.len().max(1);
        if let Some(b) = bytes.get_mut(at) {
            *b ^= p[4];
        }
        last = at;
    }
    if mode & 1 == 1 {
        if tail.is_empty() {
            bytes.truncate(last);
        } else {
            bytes.extend_from_slice(tail);
        }
    }
    std::fs::write(fx.dir.join(CHECKPOINT_FILE), &bytes).expect("write the checkpoint");
    let got = answers(
        &mut open(&fx.dir, Access::ReadOnly),
        &fx.keys,
        &Policy::default(),
    );
    assert_eq!(got, fx.want, "answers with a damaged checkpoint");
}
