use super::*;
use crate::error::ErrorCode;
use crate::list::{ListQuery, MAX_OFFSET};
use crate::model::{Priority, Source, Status};
use crate::policy::Policy;
use serde_json::Value;
use serde_json::json;

#[track_caller]
fn check_err<P: Params + std::fmt::Debug>(params: Value, frag: &str) {
    match P::from_json(&params, &Policy::default()) {
        Ok(p) => panic!("{params} parsed as {p:?}, want error containing {frag:?}"),
        Err(e) => {
            assert_eq!(e.code, ErrorCode::InvalidInput, "{e}");
            assert!(e.message.contains(frag), "{:?} lacks {frag:?}", e.message);
        }
    }
}

#[track_caller]
fn parse<P: Params>(params: Value) -> P {
    match P::from_json(&params, &Policy::default()) {
        Ok(p) => p,
        Err(e) => panic!("{params}: {e}"),
    }
}

fn base() -> Value {
    json!({"env": "prod", "service": "gateway", "category": "security", "title": "Patch it"})
}

fn with(mut v: Value, key: &str, x: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.insert(key.into(), x);
    }
    v
}

#[test]
fn create_parses() {
    let p: CreateParams = parse(base());
    assert_eq!((p.env.as_str(), p.title.as_str()), ("prod", "Patch it"));
    assert_eq!(p.priority, None);
    let p: CreateParams = parse(json!({
        "env": "prod", "service": "gateway", "category": "security", "title": "t",
        "description": "d", "priority": "P0", "owner": "cto", "due_date": "2026-04-01",
        "dedupe_key": "k", "evidence_refs": {"alerts": ["al_1"], "incidents": []},
        "tags": ["a", "b"], "meta": {"x": 1}, "source": "risk"
    }));
    assert_eq!(p.priority, Some(Priority::P0));
    assert_eq!(p.source, Some(Source::Risk));
    assert_eq!(p.evidence_refs.as_ref().map(|r| r.len()), Some(2));
    // null = absent for optional fields.
    let p: CreateParams = parse(with(base(), "owner", Value::Null));
    assert_eq!(p.owner, None);
}

#[test]
fn create_rejects() {
    check_err::<CreateParams>(
        json!([]),
        "params of `create` must be a JSON object, got array",
    );
    check_err::<CreateParams>(json!("x"), "must be a JSON object, got string");
    check_err::<CreateParams>(
        with(base(), "status", json!("open")),
        "unknown parameter `status` for `create`; allowed: env, service, category, title, description",
    );
    check_err::<CreateParams>(
        json!({"env": "prod"}),
        "missing required parameter `service` for `create`",
    );
    check_err::<CreateParams>(
        with(base(), "title", Value::Null),
        "missing required parameter `title`",
    );
    check_err::<CreateParams>(
        with(base(), "title", json!(5)),
        "`title` must be a string, got number",
    );
    check_err::<CreateParams>(
        with(base(), "tags", json!("a")),
        "`tags` must be a list of strings, got string",
    );
    check_err::<CreateParams>(
        with(base(), "tags", json!(["a", 1])),
        "`tags[1]` must be a string, got number",
    );
    check_err::<CreateParams>(
        with(base(), "meta", json!([])),
        "`meta` must be an object, got array",
    );
    check_err::<CreateParams>(
        with(base(), "evidence_refs", json!({"a": "x"})),
        "`evidence_refs.a` must be a list of strings, got string",
    );
    check_err::<CreateParams>(
        with(base(), "evidence_refs", json!({"a": [true]})),
        "`evidence_refs.a[0]` must be a string, got boolean",
    );
    check_err::<CreateParams>(
        with(base(), "priority", json!("urgent")),
        "`priority` must be one of P0, P1, P2, P3",
    );
    check_err::<CreateParams>(
        with(base(), "source", json!("cron")),
        "`source` must be one of",
    );
    check_err::<CreateParams>(
        with(base(), "category", json!("nope")),
        "policy's categories",
    );
    check_err::<CreateParams>(with(base(), "env", json!("Prod")), "`env` must match");
    check_err::<CreateParams>(
        with(base(), "due_date", json!("2026-02-30")),
        "`due_date` must be a calendar date",
    );
    check_err::<CreateParams>(with(base(), "meta", json!({"a": "\u{0}"})), "U+0000");
    check_err::<CreateParams>(with(base(), "title", json!("x\u{0}")), "U+0000");
}

#[test]
fn upsert_parses() {
    let p: UpsertParams = parse(json!({"dedupe_key": "k", "title": "t"}));
    assert_eq!(
        (p.dedupe_key.as_deref(), p.title.as_deref()),
        (Some("k"), Some("t"))
    );
    let p: UpsertParams = parse(json!({"id": "bl_000000000001"}));
    assert_eq!(p.id.as_deref(), Some("bl_000000000001"));
    check_err::<UpsertParams>(json!({"title": "t"}), "needs `id` or `dedupe_key`");
    check_err::<UpsertParams>(json!({"id": "bl_1"}), "`id` must match ^bl_[0-9a-f]{12}$");
    check_err::<UpsertParams>(
        json!({"id": "bl_000000000001", "status": "done"}),
        "unknown parameter `status` for `upsert`",
    );
    check_err::<UpsertParams>(
        json!({"dedupe_key": "k", "title": ""}),
        "`title` must be 1..200",
    );
    let missing = UpsertParams {
        dedupe_key: Some("k".into()),
        title: Some("t".into()),
        ..Default::default()
    }
    .to_create()
    .map(|_| ())
    .unwrap_err();
    assert!(
        missing
            .message
            .contains("missing: `env`, `service`, `category`"),
        "{}",
        missing.message
    );
}

#[test]
fn small_actions() {
    let g: GetParams = parse(json!({"id": "bl_000000000001"}));
    assert!(!g.include_events);
    let g: GetParams = parse(json!({"id": "bl_000000000001", "include_events": true}));
    assert!(g.include_events);
    check_err::<GetParams>(
        json!({"id": "bl_000000000001", "include_events": "yes"}),
        "`include_events` must be a boolean, got string",
    );
    check_err::<GetParams>(json!({}), "missing required parameter `id` for `get`");
    check_err::<GetParams>(json!({"id": 7}), "`id` must be a string, got number");

    let e: EventsParams = parse(json!({"id": "bl_000000000001"}));
    assert_eq!(e.limit, 100);
    let e: EventsParams = parse(json!({"id": "bl_000000000001", "limit": 1000}));
    assert_eq!(e.limit, 1000);
    check_err::<EventsParams>(
        json!({"id": "bl_000000000001", "limit": 0}),
        "`limit` must be between 1 and 1000, got 0",
    );
    check_err::<EventsParams>(
        json!({"id": "bl_000000000001", "limit": 1001}),
        "between 1 and 1000, got 1001",
    );
    check_err::<EventsParams>(
        json!({"id": "bl_000000000001", "limit": -1}),
        "`limit` must be a non-negative integer, got number",
    );
    check_err::<EventsParams>(
        json!({"id": "bl_000000000001", "limit": 1.5}),
        "`limit` must be a non-negative integer",
    );

    let s: SetStatusParams =
        parse(json!({"id": "bl_000000000001", "status": "done", "comment": "ok"}));
    assert_eq!((s.status, s.comment.as_deref()), (Status::Done, Some("ok")));
    check_err::<SetStatusParams>(
        json!({"id": "bl_000000000001", "status": "cancelled"}),
        "with one L",
    );
    check_err::<SetStatusParams>(
        json!({"id": "bl_000000000001"}),
        "missing required parameter `status`",
    );
    check_err::<SetStatusParams>(
        json!({"id": "bl_000000000001", "status": "done", "comment": "\u{0}"}),
        "`comment` must not contain U+0000",
    );

    let a: AddCommentParams = parse(json!({"id": "bl_000000000001", "message": "hi"}));
    assert_eq!(a.message, "hi");
    check_err::<AddCommentParams>(
        json!({"id": "bl_000000000001", "message": ""}),
        "`message` must be 1..4000",
    );
    check_err::<AddCommentParams>(
        json!({"id": "bl_000000000001", "message": "a\u{0}"}),
        "`message` must not contain U+0000",
    );
    check_err::<AddCommentParams>(
        json!({"id": "bl_000000000001", "message": "m", "actor": "x"}),
        "unknown parameter `actor` for `add_comment`; allowed: id, message",
    );
}

#[test]
fn env_only_and_cleanup() {
    let d: DashboardParams = parse(json!({}));
    assert_eq!(d.env, "prod");
    let d: DashboardParams = parse(json!({"env": null}));
    assert_eq!(d.env, "prod");
    let w: WeeklyParams = parse(json!({"env": "staging"}));
    assert_eq!(w.env, "staging");
    let dl: DailyParams = parse(json!({"env": "dev"}));
    assert_eq!(dl.env, "dev");
    check_err::<DashboardParams>(json!({"env": "Prod"}), "`env` must match");
    check_err::<WeeklyParams>(json!({"env": 1}), "`env` must be a string, got number");
    check_err::<DailyParams>(
        json!({"week": "2026-48"}),
        "unknown parameter `week` for `auto_generate_daily`; allowed: env",
    );
    check_err::<DashboardParams>(
        json!({"limit": 3}),
        "unknown parameter `limit` for `dashboard`; allowed: env",
    );

    let c: CleanupParams = parse(json!({}));
    assert_eq!(
        c,
        CleanupParams {
            retention_days: None,
            dry_run: false
        }
    );
    let c: CleanupParams = parse(json!({"retention_days": 0, "dry_run": true}));
    assert_eq!((c.retention_days, c.dry_run), (Some(0), true));
    check_err::<CleanupParams>(
        json!({"retention_days": -1}),
        "`retention_days` must be a non-negative integer, got number",
    );
    check_err::<CleanupParams>(
        json!({"retention_days": 1.5}),
        "`retention_days` must be a non-negative integer",
    );
    check_err::<CleanupParams>(
        json!({"retention_days": "30"}),
        "`retention_days` must be a non-negative integer, got string",
    );
    check_err::<CleanupParams>(
        json!({"retention_days": 5_000_000_000u64}),
        "`retention_days` must be at most 4294967295, got 5000000000",
    );
    check_err::<CleanupParams>(
        json!({"dry_run": "yes"}),
        "`dry_run` must be a boolean, got string",
    );
    check_err::<CleanupParams>(
        json!({"retention": 3}),
        "unknown parameter `retention` for `cleanup`; allowed: retention_days, dry_run",
    );
}

#[test]
fn list_query() {
    let q: ListQuery = parse(json!({}));
    assert_eq!(q, ListQuery::default());
    let q: ListQuery = parse(json!({"status": "open"}));
    assert_eq!(q.status, [Status::Open]);
    let q: ListQuery = parse(json!({"status": ["open", "blocked", "open"]}));
    assert_eq!(q.status, [Status::Open, Status::Blocked]);
    let q: ListQuery = parse(json!({"status": "open, in_progress"}));
    assert_eq!(q.status, [Status::Open, Status::InProgress]);
    let q: ListQuery = parse(json!({
        "env": "prod", "priority": "P1", "service": "gw", "owner": "cto", "category": "refactor",
        "due_before": "2026-04-01", "overdue": false, "limit": 5, "offset": 10, "status": null
    }));
    assert_eq!((q.limit, q.offset, q.overdue), (5, 10, Some(false)));
    assert_eq!(q.priority, Some(Priority::P1));
    check_err::<ListQuery>(json!({"status": "cancelled"}), "with one L");
    check_err::<ListQuery>(
        json!({"status": 1}),
        "`status` must be a string or a list of strings, got number",
    );
    check_err::<ListQuery>(json!({"status": [1]}), "`status[0]` must be a string");
    check_err::<ListQuery>(
        json!({"limit": 0}),
        "`limit` must be between 1 and 1000, got 0",
    );
    check_err::<ListQuery>(json!({"limit": 1001}), "`limit` must be between 1 and 1000");
    check_err::<ListQuery>(
        json!({"offset": -3}),
        "`offset` must be a non-negative integer",
    );
    // Past the limit: the message says the limit, on every platform.
    check_err::<ListQuery>(
        json!({"offset": 99_999_999_999u64}),
        "`offset` must be between 0 and 4294967295, got 99999999999",
    );
    let q: ListQuery = parse(json!({"offset": 4_294_967_295u64}));
    assert_eq!(q.offset, MAX_OFFSET);
    check_err::<ListQuery>(
        json!({"limit": 99_999_999_999u64}),
        "`limit` must be between 1 and 1000, got 99999999999",
    );
    check_err::<ListQuery>(
        json!({"overdue": "true"}),
        "`overdue` must be a boolean, got string",
    );
    check_err::<ListQuery>(
        json!({"due_before": "tomorrow"}),
        "`due_before` must be a calendar date",
    );
    check_err::<ListQuery>(json!({"env": "PROD"}), "`env` must match");
    check_err::<ListQuery>(json!({"sort": "id"}), "unknown parameter `sort` for `list`");
}
