//! Action rules over [`MemStore`] with [`SeqEntropy`] and a pinned clock.

use super::*;
use crate::error::ErrorCode;
use crate::ids::SeqEntropy;
use crate::mem::MemStore;
use crate::policy::Policy;

const NOW: &str = "2026-03-02T06:20:01.123456Z";

/// A store, a policy, deterministic ids and a clock that tests move by hand.
struct World {
    store: MemStore,
    policy: Policy,
    entropy: SeqEntropy,
    now: DateTime<Utc>,
    actor: String,
    /// The caller may use reserved (generated) dedupe keys.
    reserved: bool,
}

impl World {
    fn new() -> Self {
        World {
            store: MemStore::new(),
            policy: Policy::default(),
            entropy: SeqEntropy::default(),
            now: time::parse_ts(NOW).unwrap_or_default(),
            actor: "operator".into(),
            reserved: false,
        }
    }

    fn at(&mut self, ts: &str) -> &mut Self {
        self.now = time::parse_ts(ts).unwrap_or_default();
        self
    }

    fn call(&mut self, action: &str, params: Value) -> Result<Value> {
        let mut ctx = Ctx::new(&self.actor, self.now, &self.policy, &mut self.entropy)
            .with_reserved_keys(self.reserved);
        execute(&mut self.store, action, &params, &mut ctx)
    }

    #[track_caller]
    fn ok(&mut self, action: &str, params: Value) -> Value {
        match self.call(action, params.clone()) {
            Ok(v) => v,
            Err(e) => panic!("{action} {params}: {e:?}"),
        }
    }

    /// The call fails with `code` and a message containing every fragment.
    #[track_caller]
    fn fails(&mut self, action: &str, params: Value, code: ErrorCode, frags: &[&str]) {
        match self.call(action, params.clone()) {
            Ok(v) => panic!("{action} {params} succeeded: {v}"),
            Err(e) => {
                assert_eq!(e.code, code, "{action} {params}: {}", e.message);
                for f in frags {
                    assert!(e.message.contains(f), "{:?} lacks {f:?}", e.message);
                }
            }
        }
    }

    fn upsert_gen(&mut self, params: Value) -> Result<UpsertOutcome> {
        let p = UpsertParams::from_json(&params, &self.policy)?;
        let mut ctx = Ctx::new(&self.actor, self.now, &self.policy, &mut self.entropy);
        upsert(&mut self.store, p, UpsertMode::Generation, &mut ctx)
    }

    fn events_of(&mut self, id: &str) -> Vec<Value> {
        let v = self.ok("events", json!({"id": id, "limit": 1000}));
        v["events"].as_array().cloned().unwrap_or_default()
    }

    fn create(&mut self, extra: Value) -> Value {
        let mut p = json!({"env": "prod", "service": "gateway", "category": "security", "title": "Patch it"});
        if let (Some(m), Value::Object(e)) = (p.as_object_mut(), extra) {
            m.extend(e);
        }
        self.ok("create", p)
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn types(evs: &[Value]) -> Vec<&str> {
    evs.iter().map(|e| s(&e["type"])).collect()
}

#[test]
fn create_applies_defaults() {
    let mut w = World::new();
    let item = w.create(json!({}));
    let keys: Vec<&String> = item
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    assert_eq!(keys.len(), 17, "{keys:?}");
    assert_eq!(item["id"], "bl_000000000001");
    assert_eq!(item["created_at"], NOW);
    assert_eq!(item["updated_at"], NOW);
    assert_eq!(item["priority"], "P1");
    assert_eq!(item["due_date"], "2026-03-09");
    assert_eq!(item["owner"], "oncall");
    assert_eq!(item["status"], "open");
    assert_eq!(item["source"], "manual");
    assert_eq!(item["dedupe_key"], "manual:bl_000000000001");
    assert_eq!(item["description"], "");
    assert_eq!(item["evidence_refs"], json!({}));
    assert_eq!(item["tags"], json!([]));
    assert_eq!(item["meta"], json!({}));
    assert_eq!(w.store.writes(), 1);

    let evs = w.events_of("bl_000000000001");
    assert_eq!(types(&evs), ["created"]);
    assert_eq!(evs[0]["actor"], "operator");
    assert_eq!(evs[0]["ts"], NOW);
    assert_eq!(evs[0]["id"], "ev_000000000002");
    assert_eq!(evs[0]["item_id"], "bl_000000000001");

    // Category owner, then service override, win over the default owner.
    let arch = w.create(json!({"category": "arch_review"}));
    assert_eq!(
        (
            s(&arch["owner"]),
            s(&arch["due_date"]),
            s(&arch["priority"])
        ),
        ("cto", "2026-03-16", "P1")
    );
    w.policy
        .ownership
        .overrides
        .insert("gateway".into(), "team-gw".into());
    let over = w.create(json!({"category": "arch_review"}));
    assert_eq!(over["owner"], "team-gw");
}

#[test]
fn create_takes_given_fields_and_rejects_taken_keys() {
    let mut w = World::new();
    let item = w.create(json!({
        "description": "d", "priority": "P3", "owner": "me", "due_date": "2027-01-01",
        "dedupe_key": "k1", "evidence_refs": {"alerts": ["al_1"]}, "tags": ["x"],
        "meta": {"n": 1}, "source": "pressure"
    }));
    assert_eq!(
        (
            s(&item["priority"]),
            s(&item["owner"]),
            s(&item["due_date"]),
            s(&item["dedupe_key"]),
            s(&item["source"])
        ),
        ("P3", "me", "2027-01-01", "k1", "pressure")
    );
    assert_eq!(item["evidence_refs"], json!({"alerts": ["al_1"]}));
    w.fails("create", json!({"env": "prod", "service": "gw", "category": "refactor", "title": "t", "dedupe_key": "k1"}),
        ErrorCode::Conflict, &["\"k1\"", "bl_000000000001"]);
    assert_eq!(w.store.len(), 1);
    w.fails(
        "create",
        json!({"env": "prod", "service": "gw", "category": "nope", "title": "t"}),
        ErrorCode::InvalidInput,
        &["category", "arch_review"],
    );
}

#[test]
fn actor_comes_from_context() {
    let mut w = World::new();
    w.actor = "viewer-bot".into();
    let item = w.create(json!({}));
    let id = s(&item["id"]).to_owned();
    w.fails(
        "add_comment",
        json!({"id": id, "message": "m", "actor": "cto"}),
        ErrorCode::InvalidInput,
        &["unknown parameter `actor`"],
    );
    let ev = w.ok("add_comment", json!({"id": id, "message": "m"}));
    assert_eq!(ev["actor"], "viewer-bot");
    w.actor = String::new();
    w.fails(
        "add_comment",
        json!({"id": id, "message": "m"}),
        ErrorCode::Internal,
        &["actor"],
    );
}

#[test]
fn unknown_action() {
    let mut w = World::new();
    w.fails(
        "dance",
        json!({}),
        ErrorCode::NotFound,
        &[
            "\"dance\"",
            "create, upsert, get, list, events, set_status, add_comment",
        ],
    );
    // Action existence is checked before params.
    w.fails("dance", json!([]), ErrorCode::NotFound, &["dance"]);
}

fn up(extra: Value) -> Value {
    let mut p = json!({"env": "prod", "service": "gateway", "category": "refactor", "title": "Refactor", "dedupe_key": "k"});
    if let (Some(m), Value::Object(e)) = (p.as_object_mut(), extra) {
        m.extend(e);
    }
    p
}

#[test]
fn upsert_created_updated_unchanged() {
    let mut w = World::new();
    let r = w.ok("upsert", up(json!({"meta": {"a": 1, "b": [1, 2]}})));
    assert_eq!(r["action"], "created");
    let id = s(&r["item"]["id"]).to_owned();
    assert_eq!(r["item"]["priority"], "P2");
    assert_eq!(w.store.writes(), 1);

    // Same content (keys in another order) → unchanged, nothing written.
    w.at("2026-03-03T00:00:00Z");
    let r = w.ok(
        "upsert",
        json!({"dedupe_key": "k", "meta": {"b": [1, 2], "a": 1}, "title": "Refactor"}),
    );
    assert_eq!(r["action"], "unchanged");
    assert_eq!(r["item"]["updated_at"], NOW);
    assert_eq!(w.store.writes(), 1);

    // Changed fields → one `updated` event listing them sorted.
    let r = w.ok("upsert", json!({"dedupe_key": "k", "title": "New", "tags": ["t"], "due_date": "2026-04-02", "meta": {"a": 1, "b": [1, 2]}}));
    assert_eq!(r["action"], "updated");
    assert_eq!(r["item"]["updated_at"], "2026-03-03T00:00:00.000000Z");
    assert_eq!(r["item"]["created_at"], NOW);
    assert_eq!(r["item"]["id"], id.as_str());
    assert_eq!(w.store.writes(), 2);
    let evs = w.events_of(&id);
    assert_eq!(types(&evs), ["created", "updated"]);
    assert_eq!(
        evs[1]["meta"],
        json!({"fields": ["due_date", "tags", "title"]})
    );

    // By id too.
    let r = w.ok("upsert", json!({"id": id, "priority": "P0"}));
    assert_eq!(
        (s(&r["action"]), s(&r["item"]["priority"])),
        ("updated", "P0")
    );
}

#[test]
fn upsert_owner_changes_only_when_given() {
    let mut w = World::new();
    let id = s(&w.ok("upsert", up(json!({})))["item"]["id"]).to_owned();
    let r = w.ok("upsert", json!({"dedupe_key": "k", "owner": "oncall"}));
    assert_eq!(r["action"], "unchanged");
    let r = w.ok("upsert", json!({"dedupe_key": "k", "owner": "team-a"}));
    assert_eq!(
        (s(&r["action"]), s(&r["item"]["owner"])),
        ("updated", "team-a")
    );
    let evs = w.events_of(&id);
    assert_eq!(types(&evs), ["created", "owner_changed"]);
    assert_eq!(evs[1]["meta"], json!({"from": "oncall", "to": "team-a"}));
    // Owner and other fields: both events, one write.
    let writes = w.store.writes();
    w.ok(
        "upsert",
        json!({"dedupe_key": "k", "owner": "team-b", "title": "T2"}),
    );
    assert_eq!(w.store.writes(), writes + 1);
    let evs = w.events_of(&id);
    assert_eq!(
        types(&evs),
        ["created", "owner_changed", "updated", "owner_changed"]
    );
    assert_eq!(evs[2]["meta"], json!({"fields": ["title"]}));
    // Not naming owner keeps it.
    let r = w.ok("upsert", json!({"dedupe_key": "k", "title": "T3"}));
    assert_eq!(r["item"]["owner"], "team-b");
}

#[test]
fn upsert_never_changes_status() {
    let mut w = World::new();
    let id = s(&w.ok("upsert", up(json!({})))["item"]["id"]).to_owned();
    w.ok("set_status", json!({"id": id, "status": "done"}));
    let r = w.ok("upsert", json!({"id": id, "title": "still done"}));
    assert_eq!(
        (s(&r["action"]), s(&r["item"]["status"])),
        ("updated", "done")
    );
    w.fails(
        "upsert",
        json!({"id": id, "status": "open"}),
        ErrorCode::InvalidInput,
        &["unknown parameter `status`"],
    );
}

#[test]
fn upsert_matching_rules() {
    let mut w = World::new();
    let a = s(&w.ok("upsert", up(json!({"dedupe_key": "ka"})))["item"]["id"]).to_owned();
    let b = s(&w.ok("upsert", up(json!({"dedupe_key": "kb"})))["item"]["id"]).to_owned();
    let ghost = "bl_00000000ffff";

    // Unknown id without dedupe_key.
    w.fails(
        "upsert",
        json!({"id": ghost, "title": "x"}),
        ErrorCode::NotFound,
        &["item bl_00000000ffff not found"],
    );
    // id and dedupe_key of two different items.
    w.fails(
        "upsert",
        json!({"id": a, "dedupe_key": "kb"}),
        ErrorCode::Conflict,
        &[a.as_str(), b.as_str(), "\"kb\""],
    );
    // Unknown (valid) id plus a dedupe_key of another item.
    w.fails(
        "upsert",
        json!({"id": ghost, "dedupe_key": "ka"}),
        ErrorCode::Conflict,
        &[ghost, a.as_str(), "\"ka\""],
    );
    // Malformed id.
    w.fails(
        "upsert",
        json!({"id": "bl_zz", "dedupe_key": "ka"}),
        ErrorCode::InvalidInput,
        &["`id` must match"],
    );
    // Unknown id + unmatched key: created, with that id, if the create fields are there.
    w.fails(
        "upsert",
        json!({"id": ghost, "dedupe_key": "kc", "title": "t"}),
        ErrorCode::InvalidInput,
        &["missing: `env`, `service`, `category`"],
    );
    let r = w.ok("upsert", up(json!({"id": ghost, "dedupe_key": "kc"})));
    assert_eq!((s(&r["action"]), s(&r["item"]["id"])), ("created", ghost));
    // id matches and dedupe_key names the same item: fine.
    assert_eq!(
        w.ok("upsert", json!({"id": a, "dedupe_key": "ka"}))["action"],
        "unchanged"
    );
    // id matches, new unused dedupe_key: the key moves.
    let r = w.ok("upsert", json!({"id": a, "dedupe_key": "ka2"}));
    assert_eq!(
        (s(&r["action"]), s(&r["item"]["dedupe_key"])),
        ("updated", "ka2")
    );
    assert_eq!(
        w.events_of(&a).last().map(|e| e["meta"].clone()),
        Some(json!({"fields": ["dedupe_key"]}))
    );
    // The old key is free again: with only it, upsert would create and lacks fields.
    w.fails(
        "upsert",
        json!({"dedupe_key": "ka"}),
        ErrorCode::InvalidInput,
        &["missing: `env`, `service`, `category`, `title`"],
    );
}

#[test]
fn upsert_generation_mode() {
    let mut w = World::new();
    let gen_params = |title: &str, tags: Value| {
        json!({"env": "prod", "service": "gateway", "category": "refactor", "title": title,
               "dedupe_key": "platform_backlog:2026-10:prod:gateway:refactor", "source": "digest",
               "priority": "P1", "owner": "bot-owner", "due_date": "2026-03-20",
               "description": "- regressions_30d: 3", "evidence_refs": {"alerts": ["al_1"]},
               "tags": tags, "meta": {"score": 82}})
    };
    let r = w
        .upsert_gen(gen_params("T1", json!(["auto", "week:2026-10"])))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.action, UpsertAction::Created);
    assert_eq!(
        (r.item.owner.as_str(), r.item.priority.as_str()),
        ("bot-owner", "P1")
    );
    let id = r.item.id.clone();
    // Humans take over.
    w.ok("upsert", json!({"id": id, "owner": "alice", "priority": "P0", "due_date": "2026-03-05", "tags": ["auto", "mine", "week:2026-10"]}));
    w.ok("set_status", json!({"id": id, "status": "in_progress"}));

    // Regeneration with the same content: unchanged, no write.
    let writes = w.store.writes();
    let r = w
        .upsert_gen(gen_params("T1", json!(["auto", "week:2026-10"])))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.action, UpsertAction::Unchanged);
    assert_eq!(w.store.writes(), writes);

    // Regeneration with new content: refreshes title/meta, adds tags, keeps human fields.
    let mut p = gen_params("T2", json!(["auto", "escalated"]));
    p["meta"] = json!({"score": 90});
    let r = w.upsert_gen(p).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.action, UpsertAction::Updated);
    let it = &r.item;
    assert_eq!(
        (
            it.owner.as_str(),
            it.priority.as_str(),
            it.due_date.as_str(),
            it.status.as_str()
        ),
        ("alice", "P0", "2026-03-05", "in_progress")
    );
    assert_eq!(it.title, "T2");
    assert_eq!(it.tags, ["auto", "mine", "week:2026-10", "escalated"]);
    let evs = w.events_of(&id);
    assert_eq!(
        evs.last().map(|e| e["meta"].clone()),
        Some(json!({"fields": ["meta", "tags", "title"]}))
    );
    assert!(!types(&evs[3..]).contains(&"owner_changed"));
}

#[track_caller]
fn check_transition(from: Status, to: Status, want: std::result::Result<bool, ()>) {
    let mut w = World::new();
    let id = s(&w.create(json!({}))["id"]).to_owned();
    if from != Status::Open {
        w.ok("set_status", json!({"id": id, "status": from.as_str()}));
    }
    let writes = w.store.writes();
    let n_events = w.events_of(&id).len();
    w.at("2026-03-04T00:00:00Z");
    let got = w.call("set_status", json!({"id": id, "status": to.as_str()}));
    match (got, want) {
        (Ok(item), Ok(changes)) => {
            assert_eq!(item["status"], to.as_str(), "{from}->{to}");
            let evs = w.events_of(&id);
            if changes {
                assert_eq!(w.store.writes(), writes + 1, "{from}->{to}");
                let last = evs.last().cloned().unwrap_or_default();
                assert_eq!(last["type"], "status_changed");
                assert_eq!(
                    last["meta"],
                    json!({"from": from.as_str(), "to": to.as_str()})
                );
                assert_eq!(last["message"], "");
                assert_eq!(item["updated_at"], "2026-03-04T00:00:00.000000Z");
            } else {
                assert_eq!(w.store.writes(), writes, "{from}->{to} wrote");
                assert_eq!(evs.len(), n_events);
            }
        }
        (Err(e), Err(())) => {
            assert_eq!(e.code, ErrorCode::Conflict, "{from}->{to}");
            let msg = &e.message;
            assert!(
                msg.contains(&format!("from {from} to {to}")) && msg.contains("reopened"),
                "{msg}"
            );
            assert_eq!(w.store.writes(), writes);
        }
        (got, want) => panic!("{from}->{to}: got {got:?}, want {want:?}"),
    }
}

#[test]
fn transitions_all_pairs() {
    use Status::*;
    for from in Status::ALL {
        for to in Status::ALL {
            let want = if from == to {
                Ok(false)
            } else if !from.is_terminal() || to == Open {
                Ok(true)
            } else {
                Err(())
            };
            assert_eq!(transition_allowed(from, to), want.is_ok());
            check_transition(from, to, want);
        }
    }
    // Spot checks of the table itself.
    assert!(transition_allowed(Done, Open));
    assert!(transition_allowed(Blocked, Canceled));
    assert!(!transition_allowed(Canceled, Done));
    assert!(!transition_allowed(Done, InProgress));
}

#[test]
fn set_status_comments() {
    let mut w = World::new();
    let id = s(&w.create(json!({}))["id"]).to_owned();
    w.ok(
        "set_status",
        json!({"id": id, "status": "blocked", "comment": "waiting on vendor"}),
    );
    let evs = w.events_of(&id);
    assert_eq!(evs[1]["message"], "waiting on vendor");
    // Same status with a comment: only a `commented` event.
    w.at("2026-03-05T00:00:00Z");
    let item = w.ok(
        "set_status",
        json!({"id": id, "status": "blocked", "comment": "still waiting"}),
    );
    assert_eq!(item["updated_at"], "2026-03-05T00:00:00.000000Z");
    let evs = w.events_of(&id);
    assert_eq!(types(&evs), ["created", "status_changed", "commented"]);
    assert_eq!(evs[2]["message"], "still waiting");
    // Same status, empty comment: nothing.
    let writes = w.store.writes();
    w.ok(
        "set_status",
        json!({"id": id, "status": "blocked", "comment": ""}),
    );
    assert_eq!(w.store.writes(), writes);
    w.fails(
        "set_status",
        json!({"id": "bl_0000000000ff", "status": "open"}),
        ErrorCode::NotFound,
        &["item bl_0000000000ff not found"],
    );
    w.fails(
        "set_status",
        json!({"id": id, "status": "cancelled"}),
        ErrorCode::InvalidInput,
        &["one L"],
    );
    w.ok("set_status", json!({"id": id, "status": "done"}));
    w.fails("set_status", json!({"id": id, "status": "in_progress"}), ErrorCode::Conflict,
        &[&format!("cannot move {id} from done to in_progress: a done item can only be reopened (status open)")]);
}

#[test]
fn comments_and_events() {
    let mut w = World::new();
    let id = s(&w.create(json!({}))["id"]).to_owned();
    for i in 0..5 {
        w.at(&format!("2026-03-0{}T00:00:00Z", i + 3));
        let ev = w.ok("add_comment", json!({"id": id, "message": format!("c{i}")}));
        assert_eq!(
            (s(&ev["type"]), s(&ev["message"]), s(&ev["item_id"])),
            ("commented", format!("c{i}").as_str(), id.as_str())
        );
        assert_eq!(ev["ts"], format!("2026-03-0{}T00:00:00.000000Z", i + 3));
    }
    let item = w.ok("get", json!({"id": id}));
    assert_eq!(item["updated_at"], "2026-03-07T00:00:00.000000Z");
    assert!(item.get("events").is_none());
    let evs = w.ok("events", json!({"id": id, "limit": 3}));
    let msgs: Vec<&str> = evs["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| s(&e["message"]))
        .collect();
    assert_eq!(msgs, ["", "c0", "c1"]);
    let all = w.ok("get", json!({"id": id, "include_events": true}));
    assert_eq!(all["events"].as_array().map(Vec::len), Some(6));
    assert_eq!(all["title"], "Patch it");
    w.fails(
        "events",
        json!({"id": "bl_0000000000ff"}),
        ErrorCode::NotFound,
        &["item bl_0000000000ff not found"],
    );
    w.fails(
        "get",
        json!({"id": "bl_0000000000ff"}),
        ErrorCode::NotFound,
        &["item bl_0000000000ff not found"],
    );
    w.fails(
        "add_comment",
        json!({"id": "bl_0000000000ff", "message": "m"}),
        ErrorCode::NotFound,
        &["not found"],
    );
    w.fails(
        "get",
        json!({"id": "nope"}),
        ErrorCode::InvalidInput,
        &["`id` must match"],
    );
}

fn ids_of(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| s(&i["id"]).to_owned())
        .collect()
}

#[test]
fn list_filters_sorts_pages() {
    let mut w = World::new();
    // (priority, due_date, env, service, status)
    let rows = [
        ("P2", "2026-03-01", "prod", "gw", "open"), // 1: overdue
        ("P1", "2026-03-10", "prod", "gw", "open"), // 2
        ("P1", "2026-03-01", "prod", "db", "done"), // 3: past due but terminal
        ("P0", "2026-04-01", "staging", "gw", "blocked"), // 4
        ("P1", "2026-03-01", "prod", "db", "in_progress"), // 5: overdue
    ];
    let mut ids = Vec::new();
    for (prio, due, env, service, status) in rows {
        let it =
            w.create(json!({"priority": prio, "due_date": due, "env": env, "service": service}));
        let id = s(&it["id"]).to_owned();
        if status != "open" {
            w.ok("set_status", json!({"id": id, "status": status}));
        }
        ids.push(id);
    }
    let id = |n: usize| ids[n - 1].clone();
    #[track_caller]
    fn check(w: &mut World, q: Value, want: &[String], total: usize, next: Value) {
        let r = w.ok("list", q.clone());
        assert_eq!(ids_of(&r), want, "{q}");
        assert_eq!(r["total"], total, "{q}");
        assert_eq!(r["next_offset"], next, "{q}");
    }
    // Order: priority, due_date, id.
    check(
        &mut w,
        json!({}),
        &[id(4), id(3), id(5), id(2), id(1)],
        5,
        Value::Null,
    );
    check(
        &mut w,
        json!({"env": "prod"}),
        &[id(3), id(5), id(2), id(1)],
        4,
        Value::Null,
    );
    check(
        &mut w,
        json!({"status": ["open", "blocked"]}),
        &[id(4), id(2), id(1)],
        3,
        Value::Null,
    );
    check(&mut w, json!({"status": "done"}), &[id(3)], 1, Value::Null);
    check(
        &mut w,
        json!({"priority": "P1", "service": "db"}),
        &[id(3), id(5)],
        2,
        Value::Null,
    );
    check(
        &mut w,
        json!({"overdue": true}),
        &[id(5), id(1)],
        2,
        Value::Null,
    );
    check(
        &mut w,
        json!({"overdue": false}),
        &[id(4), id(3), id(2)],
        3,
        Value::Null,
    );
    check(
        &mut w,
        json!({"due_before": "2026-03-10"}),
        &[id(3), id(5), id(1)],
        3,
        Value::Null,
    );
    check(
        &mut w,
        json!({"owner": "oncall", "category": "security"}),
        &[id(4), id(3), id(5), id(2), id(1)],
        5,
        Value::Null,
    );
    check(&mut w, json!({"owner": "nobody"}), &[], 0, Value::Null);
    // Paging.
    check(&mut w, json!({"limit": 2}), &[id(4), id(3)], 5, json!(2));
    check(
        &mut w,
        json!({"limit": 2, "offset": 2}),
        &[id(5), id(2)],
        5,
        json!(4),
    );
    check(
        &mut w,
        json!({"limit": 2, "offset": 4}),
        &[id(1)],
        5,
        Value::Null,
    );
    check(
        &mut w,
        json!({"limit": 2, "offset": 9}),
        &[],
        5,
        Value::Null,
    );
    // Overdue follows the clock.
    w.at("2026-03-11T00:00:00Z");
    check(
        &mut w,
        json!({"overdue": true}),
        &[id(5), id(2), id(1)],
        3,
        Value::Null,
    );
    w.fails(
        "list",
        json!({"limit": 0}),
        ErrorCode::InvalidInput,
        &["`limit` must be between 1 and 1000"],
    );
    // An offset past every store is refused with the limit (the same in the component,
    // where `usize` is 32 bits, and natively).
    w.fails(
        "list",
        json!({"offset": u64::MAX, "limit": 1000}),
        ErrorCode::InvalidInput,
        &["`offset` must be between 0 and 4294967295, got 18446744073709551615"],
    );
    check(
        &mut w,
        json!({"offset": 4_294_967_295u64, "limit": 1000}),
        &[],
        5,
        Value::Null,
    );
    // A typed query that skipped the parser gets the same rule.
    let q = ListQuery {
        limit: 0,
        ..ListQuery::default()
    };
    let ctx = Ctx::new("operator", w.now, &w.policy, &mut w.entropy);
    assert_eq!(
        list(&mut w.store, q, &ctx).map_err(|e| e.code),
        Err(ErrorCode::InvalidInput)
    );
}

#[test]
fn every_change_is_one_write() {
    let mut w = World::new();
    let id = s(&w.create(json!({}))["id"]).to_owned();
    let steps: Vec<(&str, Value)> = vec![
        ("upsert", json!({"id": id, "title": "a", "owner": "b"})),
        (
            "set_status",
            json!({"id": id, "status": "in_progress", "comment": "go"}),
        ),
        ("add_comment", json!({"id": id, "message": "m"})),
    ];
    for (action, params) in steps {
        let before = w.store.writes();
        w.ok(action, params);
        assert_eq!(w.store.writes(), before + 1, "{action}");
    }
    let before = w.store.writes();
    w.ok("get", json!({"id": id, "include_events": true}));
    w.ok("list", json!({}));
    w.ok("events", json!({"id": id}));
    assert_eq!(w.store.writes(), before);
}

#[test]
fn id_collisions_are_retried() {
    let mut w = World::new();
    w.create(json!({}));
    // A fresh entropy source repeats bl_000000000001; create must skip it.
    w.entropy = SeqEntropy::default();
    let second = w.create(json!({}));
    assert_ne!(second["id"], "bl_000000000001");
    assert_eq!(w.store.len(), 2);
}

/// Creates an item, moves it to `status` and backdates its `updated_at` to `updated_at`
/// (raw, possibly in a legacy form). Returns its id.
fn aged(w: &mut World, status: &str, updated_at: &str) -> String {
    let id = s(&w.create(json!({}))["id"]).to_owned();
    if status != "open" {
        w.ok("set_status", json!({"id": id, "status": status}));
    }
    if let Some(mut it) = w.store.get(&id).ok().flatten() {
        it.updated_at = updated_at.to_owned();
        w.store.insert_raw(it);
    }
    id
}

#[test]
fn cleanup_deletes_only_old_terminal_items() {
    let mut w = World::new();
    // now 2026-03-02T06:20:01.123456Z, retention 180 days.
    let cutoff = "2025-09-03T06:20:01.123456Z";
    // (status, updated_at, goes)
    let rows = [
        ("done", "2025-01-01T00:00:00.000000Z", true),
        ("canceled", "2025-09-03T06:20:01.123455Z", true), // 1 µs before the cutoff
        ("done", cutoff, false),                           // at the cutoff: kept
        ("done", "2026-03-01T00:00:00.000000Z", false),
        ("open", "2020-01-01T00:00:00.000000Z", false),
        ("in_progress", "2020-01-01T00:00:00.000000Z", false),
        ("blocked", "2020-01-01T00:00:00.000000Z", false),
        // Legacy naive timestamps read as UTC.
        ("done", "2025-09-03T06:20:01.123455", true),
        ("done", "2025-09-03T06:20:01.123456", false),
        ("canceled", "2025-01-01T00:00:00", true),
        // Another offset: as text it sorts after the cutoff, as a time it is before.
        ("done", "2025-09-03T08:20:01.123455+02:00", true),
        // A time that does not parse is never deleted.
        ("done", "last tuesday", false),
    ];
    let ids: Vec<(String, bool)> = rows
        .iter()
        .map(|(st, at, goes)| (aged(&mut w, st, at), *goes))
        .collect();
    let going: Vec<&String> = ids.iter().filter(|(_, g)| *g).map(|(id, _)| id).collect();
    let events_before = w.store.total_events();
    let events_going: usize = going.iter().map(|id| w.store.event_count(id)).sum();
    assert!(events_going > 0);

    // Dry run: counts, changes nothing.
    let writes = w.store.writes();
    let mut r = w.ok("cleanup", json!({"dry_run": true}));
    // …and names what would go (id, title, env, status, updated_at).
    let shown = r.as_object_mut().unwrap().remove("would_delete").unwrap();
    let mut shown: Vec<String> = shown
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            assert!(v["title"].is_string() && v["updated_at"].is_string(), "{v}");
            v["id"].as_str().unwrap().to_owned()
        })
        .collect();
    shown.sort();
    let mut want: Vec<String> = going.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(shown, want);
    assert_eq!(
        r,
        json!({"deleted": going.len(), "dry_run": true, "cutoff": cutoff})
    );
    assert_eq!(
        (w.store.len(), w.store.writes(), w.store.total_events()),
        (rows.len(), writes, events_before)
    );

    let r = w.ok("cleanup", json!({}));
    assert_eq!(
        r,
        json!({"deleted": going.len(), "dry_run": false, "cutoff": cutoff})
    );
    assert_eq!(w.store.len(), rows.len() - going.len());
    for (id, goes) in &ids {
        assert_eq!(w.store.get(id).ok().flatten().is_none(), *goes, "{id}");
        if *goes {
            assert_eq!(w.store.event_count(id), 0, "events of {id} stayed");
        }
    }
    assert_eq!(w.store.total_events(), events_before - events_going);
    // Nothing left to delete.
    assert_eq!(w.ok("cleanup", json!({}))["deleted"], 0);
    w.fails(
        "get",
        json!({"id": going[0]}),
        ErrorCode::NotFound,
        &["not found"],
    );
}

#[test]
fn cleanup_cutoffs() {
    let now = time::parse_ts(NOW).unwrap_or_default();
    #[track_caller]
    fn check(now: DateTime<Utc>, days: u32, want: &str) {
        let got = cleanup_cutoff(now, days);
        assert_eq!(got, want, "{days} days");
        assert_eq!(got.len(), 27);
        assert_eq!(time::normalize_ts(&got).as_deref(), Some(want));
    }
    check(now, 0, NOW);
    check(now, 1, "2026-03-01T06:20:01.123456Z");
    check(now, 180, "2025-09-03T06:20:01.123456Z");
    // 2026-03-02 is 739_676 days after 0001-01-01, plus 366 for the (leap) year 0.
    check(now, 739_676, "0001-01-01T06:20:01.123456Z");
    check(now, 740_042, "0000-01-01T06:20:01.123456Z");
    check(now, 740_043, MIN_CUTOFF);
    check(now, u32::MAX, MIN_CUTOFF);

    let mut w = World::new();
    // The default comes from the policy; retention_days 0 cuts at now.
    w.policy.defaults.retention_days = 30;
    assert_eq!(
        w.ok("cleanup", json!({}))["cutoff"],
        "2026-01-31T06:20:01.123456Z"
    );
    assert_eq!(w.ok("cleanup", json!({"retention_days": 0}))["cutoff"], NOW);
    let id = aged(&mut w, "done", NOW);
    assert_eq!(w.ok("cleanup", json!({"retention_days": 0}))["deleted"], 0);
    w.at("2026-03-02T06:20:01.123457Z");
    assert_eq!(
        w.ok("cleanup", json!({"retention_days": 0, "dry_run": false}))["deleted"],
        1
    );
    assert!(w.store.get(&id).ok().flatten().is_none());
    w.fails(
        "cleanup",
        json!({"retention_days": -1}),
        ErrorCode::InvalidInput,
        &["`retention_days` must be a non-negative integer"],
    );
    // The store rejects a cutoff that is not a timestamp.
    assert!(w.store.cleanup("yesterday", true).is_err());
}

#[test]
fn generated_dedupe_keys_are_reserved() {
    let mut w = World::new();
    let key = "platform_backlog:2026-10:prod:gateway:security";
    let params = json!({"env": "prod", "service": "gateway", "category": "security",
                        "title": "squat", "dedupe_key": key});
    let frags = ["namespace of generated items", "tools.backlog.admin"];
    w.fails("create", params.clone(), ErrorCode::Forbidden, &frags);
    w.fails("upsert", params.clone(), ErrorCode::Forbidden, &frags);
    // Moving an item onto a reserved key is creating one there.
    let mine = w.create(json!({"dedupe_key": "mine"}));
    let id = mine["id"].as_str().unwrap_or_default().to_owned();
    w.fails(
        "upsert",
        json!({"id": id, "dedupe_key": key}),
        ErrorCode::Forbidden,
        &frags,
    );
    // Other keys, and keys merely sharing the prefix text, are anyone's.
    w.create(json!({"dedupe_key": "platform_backlog_notes:1"}));
    w.create(json!({"dedupe_key": "platform_backlogx:2026-10"}));
    assert!(w.store.find_by_dedupe_key(key).ok().flatten().is_none());

    // Generation may (it holds the key), and an item it made may be updated by its key or id
    // by anyone with write access (humans own owner/status/priority/due_date).
    let made = w
        .upsert_gen(
            json!({"env": "prod", "service": "gateway", "category": "security",
                           "title": "generated", "dedupe_key": key}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(made.action, UpsertAction::Created);
    w.ok("upsert", json!({"dedupe_key": key, "owner": "alice"}));
    w.ok("upsert", json!({"id": made.item.id, "priority": "P0"}));

    // An admin may create there.
    let mut w = World::new();
    w.reserved = true;
    w.ok("create", params.clone());
}

#[test]
fn item_limits_on_every_write_path() {
    let mut w = World::new();
    let nest = |n: usize| {
        let mut v = json!(1);
        for _ in 0..n {
            v = json!({ "a": v });
        }
        v
    };
    // meta itself is level 1: 15 more levels inside are allowed, 16 are not.
    w.create(json!({"meta": {"x": nest(15)}}));
    let deep = json!({"x": nest(16)});
    let want = ["`meta` must be nested at most 16 levels deep", "got 17"];
    w.fails(
        "create",
        json!({"env": "prod", "service": "gw", "category": "security", "title": "t", "meta": deep}),
        ErrorCode::InvalidInput,
        &want,
    );
    w.fails("upsert", json!({"env": "prod", "service": "gw", "category": "security", "title": "t", "dedupe_key": "d", "meta": deep}), ErrorCode::InvalidInput, &want);
    let ids: Vec<String> = (0..1001).map(|i| format!("al_{i}")).collect();
    w.fails(
        "create",
        json!({"env": "prod", "service": "gw", "category": "security", "title": "t", "evidence_refs": {"alerts": ids}}),
        ErrorCode::InvalidInput,
        &["`evidence_refs.alerts` must hold at most 1000 ids, got 1001"],
    );
    let big: Vec<String> = (0..700).map(|i| format!("{i:0>120}")).collect();
    w.fails(
        "upsert",
        json!({"dedupe_key": "d2", "env": "prod", "service": "gw", "category": "security", "title": "t", "evidence_refs": {"alerts": big}}),
        ErrorCode::InvalidInput,
        &["`evidence_refs` must be at most 65536 bytes"],
    );
}

/// `execute_text` answers `get` with the very text of `execute`'s tree: fields in the same
/// order, `events` last when asked, the same errors.
#[test]
fn get_as_text_is_the_trees_text() {
    let mut w = World::new();
    let a = w.create(json!({"description": "quote \" and \u{2028} and é", "owner": "team-a"}));
    let id = a["id"].as_str().unwrap_or_default().to_owned();
    w.ok("add_comment", json!({"id": id, "message": "first"}));
    w.ok("set_status", json!({"id": id, "status": "in_progress"}));
    let b = w.create(json!({"title": "Another", "service": "billing"}));
    let other = b["id"].as_str().unwrap_or_default().to_owned();
    for params in [
        json!({"id": id}),
        json!({"id": id, "include_events": true}),
        json!({"id": other, "include_events": true}),
        json!({"id": other, "include_events": false}),
        json!({"id": "bl_000000000000"}),
        json!({"id": 7}),
    ] {
        let mut ctx = Ctx::new(&w.actor, w.now, &w.policy, &mut w.entropy);
        let text = execute_text(&mut w.store, "get", &params, &mut ctx);
        let mut ctx = Ctx::new(&w.actor, w.now, &w.policy, &mut w.entropy);
        let tree = execute(&mut w.store, "get", &params, &mut ctx).map(|v| v.to_string());
        match (text, tree) {
            (Ok(text), Ok(tree)) => assert_eq!(text, tree, "{params}"),
            (Err(a), Err(b)) => assert_eq!((a.code, a.message), (b.code, b.message), "{params}"),
            (a, b) => panic!("{params}: {a:?} against {b:?}"),
        }
    }
}
