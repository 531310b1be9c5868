//! The JSONL fold: lines of `items.jsonl` and `events.jsonl` applied to the JSONL store's warm
//! index (`backlog-store`: `index/`, `counts.rs`), through the store's public API.

use std::io::Write as _;
use std::path::Path;

use backlog_core::list::{ItemKeys, ListQuery};
use backlog_core::model::Event;
use backlog_core::policy::Policy;
use backlog_core::store::{BacklogStore, finish_dashboard};
use backlog_core::{dashboard, list};
use backlog_store::{Access, EVENTS_FILE, ITEMS_FILE, JsonlStore};
use serde_json::Value;

const TODAY: &str = "2026-12-06";

fn open(dir: &Path) -> JsonlStore {
    JsonlStore::open(dir.to_owned(), Access::ReadOnly, Box::new(|_| {}))
}

fn append(dir: &Path, file: &str, lines: &[&str]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(file))
        .expect("open for append");
    for l in lines {
        f.write_all(l.as_bytes()).expect("append");
        f.write_all(b"\n").expect("append");
    }
}

/// Everything a reader can see of a store: every item's keys, the item itself and its events,
/// the default listing, and the dashboard of each env (plus `prod`).
fn snapshot(store: &mut JsonlStore, policy: &Policy) -> Option<Value> {
    let mut keys = store.keys(None).ok()?;
    keys.sort_by(|a, b| a.id.cmp(&b.id));
    let mut items = Vec::new();
    for k in &keys {
        let item = store.get(&k.id).ok()?.expect("a listed key's item exists");
        assert_eq!(ItemKeys::of(&item), *k, "keys of {}", k.id);
        let events = store.events(&k.id, 1000).ok()?;
        // Whichever item the key finds, warm and cold stores must agree on it.
        let by_key = store.find_by_dedupe_key(&item.dedupe_key).ok()?;
        if let Some(found) = &by_key {
            assert_eq!(found.dedupe_key, item.dedupe_key, "found by its dedupe key");
        }
        let by_key = by_key.map(|i| i.id);
        items.push(serde_json::json!({"item": item, "events": events, "by_key": by_key}));
    }
    let page = store.list(&ListQuery::default(), TODAY).ok()?;
    let mut envs: Vec<&str> = keys.iter().map(|k| k.env.as_str()).collect();
    envs.push("prod");
    envs.sort_unstable();
    envs.dedup();
    let mut dashboards = Vec::new();
    for env in envs {
        let got = store.dashboard(env, TODAY, policy).ok()?;
        // The full recomputation: what `BacklogStore::dashboard` answers by default.
        let counts = dashboard::compute(keys.iter().filter(|k| k.env == env), TODAY, policy);
        let want = finish_dashboard(store, env, counts, policy).ok()?;
        assert_eq!(
            got, want,
            "dashboard of {env}: index counts vs recomputation"
        );
        dashboards.push(serde_json::to_value(&got).expect("a dashboard prints"));
    }
    // The listing agrees with a plain filter and sort of the keys.
    let selected = list::select(&ListQuery::default(), keys.iter(), TODAY);
    let listed: Vec<&str> = page.items.iter().map(|i| i.id.as_str()).collect();
    let want: Vec<&str> = selected.0.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(listed, want, "list page vs list::select");
    assert_eq!(page.total, selected.1, "list total");
    Some(serde_json::json!({
        "items": items,
        "page": page.items,
        "total": page.total,
        "dashboards": dashboards,
    }))
}

/// JSONL lines (the first byte picks a cut; a line that parses as an event goes to
/// `events.jsonl`, any other to `items.jsonl`): opening the store never panics; the index's
/// dashboard counts equal a full recomputation and its listing a plain filter and sort; a
/// store that indexed a prefix and then the rest (appended by another process) answers
/// exactly as a store that indexed all at once.
pub fn check_jsonl_fold(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let lines: Vec<&str> = text.split('\n').collect();
    let cut = usize::from(pick) % (lines.len() + 1);
    let is_event = |l: &str| serde_json::from_str::<Event>(l).is_ok();
    let dir = tempfile::tempdir().expect("a scratch dir");
    let policy = Policy::default();

    let (head, tail) = lines.split_at(cut);
    let (items_head, events_head): (Vec<&str>, Vec<&str>) = head.iter().partition(|l| !is_event(l));
    append(dir.path(), ITEMS_FILE, &items_head);
    append(dir.path(), EVENTS_FILE, &events_head);
    let mut warm = open(dir.path());
    let _ = snapshot(&mut warm, &policy);
    let (items_tail, events_tail): (Vec<&str>, Vec<&str>) = tail.iter().partition(|l| !is_event(l));
    append(dir.path(), ITEMS_FILE, &items_tail);
    append(dir.path(), EVENTS_FILE, &events_tail);
    let incremental = snapshot(&mut warm, &policy);
    let mut cold = open(dir.path());
    let full = snapshot(&mut cold, &policy);
    assert_eq!(incremental, full, "prefix then rest vs all at once");
    // The same store asked again (a warm index, nothing new): the same answers.
    if let Some(b) = &full {
        assert_eq!(
            snapshot(&mut cold, &policy).as_ref(),
            Some(b),
            "asked twice"
        );
    }
}
