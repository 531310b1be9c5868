use super::*;
use crate::error::ErrorCode;
use crate::policy::Policy;
use serde_json::json;

/// `Ok(())` or `Err(fragment)`: the message must contain the fragment.
#[track_caller]
fn check(got: Result, want: std::result::Result<(), &str>) {
    match (got, want) {
        (Ok(()), Ok(())) => {}
        (Err(e), Err(frag)) => {
            assert_eq!(e.code, ErrorCode::InvalidInput);
            assert!(e.message.contains(frag), "{:?} lacks {frag:?}", e.message);
        }
        (got, want) => panic!("got {got:?}, want {want:?}"),
    }
}

fn s(c: char, n: usize) -> String {
    std::iter::repeat_n(c, n).collect()
}

#[test]
fn env_rule() {
    check(env("prod"), Ok(()));
    check(env("a"), Ok(()));
    check(env("0-dev_2"), Ok(()));
    check(env(&s('a', 32)), Ok(()));
    check(
        env(&s('a', 33)),
        Err("`env` must match ^[a-z0-9][a-z0-9_-]{0,31}$"),
    );
    check(
        env("Prod"),
        Err("`env` must match ^[a-z0-9][a-z0-9_-]{0,31}$, got \"Prod\""),
    );
    check(env(""), Err("`env` must match"));
    check(env("-prod"), Err("`env` must match"));
    check(env("pr.od"), Err("`env` must match"));
    check(env("prod\0"), Err("`env` must match"));
    check(env("prodé"), Err("`env` must match"));
}

#[test]
fn service_rule() {
    check(service("gateway"), Ok(()));
    check(service("api.v2_x-y"), Ok(()));
    check(service(&s('a', 64)), Ok(()));
    check(
        service(&s('a', 65)),
        Err("`service` must match ^[a-z0-9][a-z0-9._-]{0,63}$"),
    );
    check(service(".gw"), Err("`service` must match"));
    check(service("gw:1"), Err("`service` must match"));
    check(service(""), Err("`service` must match"));
}

#[test]
fn category_rule() {
    let p = Policy::default();
    check(crate::params::known_category(&p, "security"), Ok(()));
    check(
        crate::params::known_category(&p, "secrity"),
        Err(
            "one of the policy's categories (arch_review, refactor, slo_hardening, cleanup_followups, security), got \"secrity\"",
        ),
    );
    check(category_name("arch_review"), Ok(()));
    check(category_name("a:b"), Err("`category` must match"));
}

#[test]
fn length_rules_count_chars() {
    // 'é' is 2 bytes, '😀' 4 bytes: limits count chars.
    check(title(&s('é', 200)), Ok(()));
    check(title(&s('😀', 200)), Ok(()));
    check(
        title(&s('é', 201)),
        Err("`title` must be 1..200 characters long, got 201"),
    );
    check(
        title(""),
        Err("`title` must be 1..200 characters long, got 0"),
    );
    check(title("a\0b"), Err("`title` must not contain U+0000"));
    check(description(""), Ok(()));
    check(description(&s('ж', 10_000)), Ok(()));
    check(
        description(&s('ж', 10_001)),
        Err("`description` must be 0..10000 characters long"),
    );
    check(
        description("\0"),
        Err("`description` must not contain U+0000"),
    );
    check(owner("oncall"), Ok(()));
    check(owner(&s('ö', 64)), Ok(()));
    check(
        owner(&s('ö', 65)),
        Err("`owner` must be 1..64 characters long, got 65"),
    );
    check(owner(""), Err("`owner` must be 1..64"));
    check(owner("on\0call"), Err("`owner` must not contain U+0000"));
    check(dedupe_key("manual:bl_000000000001"), Ok(()));
    check(dedupe_key(&s('ü', 256)), Ok(()));
    check(
        dedupe_key(&s('ü', 257)),
        Err("`dedupe_key` must be 1..256 characters long, got 257"),
    );
    check(dedupe_key(""), Err("`dedupe_key` must be 1..256"));
    check(
        dedupe_key("k\0"),
        Err("`dedupe_key` must not contain U+0000"),
    );
    check(message("x"), Ok(()));
    check(message(&s('日', 4000)), Ok(()));
    check(
        message(&s('日', 4001)),
        Err("`message` must be 1..4000 characters long, got 4001"),
    );
    check(message(""), Err("`message` must be 1..4000"));
    check(message("a\0"), Err("`message` must not contain U+0000"));
    check(comment(""), Ok(()));
    check(comment(&s('x', 4001)), Err("`comment` must be 0..4000"));
    check(comment("\0"), Err("`comment` must not contain U+0000"));
}

#[test]
fn due_date_rule() {
    check(due_date("2026-03-02"), Ok(()));
    check(due_date("2024-02-29"), Ok(()));
    check(
        due_date("2026-02-29"),
        Err("`due_date` must be a calendar date YYYY-MM-DD, got \"2026-02-29\""),
    );
    check(
        due_date("2026-3-2"),
        Err("`due_date` must be a calendar date"),
    );
    check(
        due_date("2026-03-02T00:00:00Z"),
        Err("`due_date` must be a calendar date"),
    );
    check(
        due_date("2026-03-02\0"),
        Err("`due_date` must be a calendar date"),
    );
}

#[test]
fn tags_rule() {
    let tags_of = |n: usize, each: &str| vec![each.to_owned(); n];
    check(tags(&[]), Ok(()));
    check(tags(&tags_of(32, "auto")), Ok(()));
    check(
        tags(&tags_of(33, "auto")),
        Err("`tags` must hold at most 32 tags, got 33"),
    );
    check(tags(&[s('ß', 64)]), Ok(()));
    check(
        tags(&["ok".into(), s('ß', 65)]),
        Err("`tags[1]` must be 1..64 characters long, got 65"),
    );
    check(tags(&["".into()]), Err("`tags[0]` must be 1..64"));
    check(
        tags(&["a\0".into()]),
        Err("`tags[0]` must not contain U+0000"),
    );
}

#[test]
fn meta_rule() {
    let obj = |v: Value| v.as_object().cloned().unwrap_or_default();
    check(
        meta(&obj(json!({"score": 82, "a": ["x", {"b": null}]}))),
        Ok(()),
    );
    check(
        meta(&obj(json!({"a": ["x", {"b": "y\u{0}"}]}))),
        Err("found at `meta.a[1].b`"),
    );
    check(
        meta(&obj(json!({"a": {"k\u{0}": 1}}))),
        Err("must not contain U+0000"),
    );
    check(
        meta(&obj(json!({"k\u{0}": 1}))),
        Err("must not contain U+0000"),
    );
    // {"m":"…"} is 8 bytes of overhead; 'é' is 2 bytes.
    let at_limit = obj(json!({ "m": s('é', (META_MAX_BYTES - 8) / 2) }));
    assert_eq!(
        serde_json::to_vec(&at_limit).map(|v| v.len()).ok(),
        Some(META_MAX_BYTES)
    );
    check(meta(&at_limit), Ok(()));
    let over = obj(json!({ "m": s('x', META_MAX_BYTES - 7) }));
    check(
        meta(&over),
        Err("`meta` must be at most 65536 bytes serialized (compact JSON), got 65537"),
    );
}

#[test]
fn meta_depth_and_stored_items_fit() {
    let obj = |v: Value| v.as_object().cloned().unwrap_or_default();
    let nest = |n: usize| {
        let mut v = json!(1);
        for _ in 0..n {
            v = json!([v]);
        }
        v
    };
    assert_eq!(depth(&json!(1)), 0);
    assert_eq!(depth(&json!({"a": [1, {"b": []}]})), 4);
    assert_eq!(object_depth(&Map::new()), 1);
    check(meta(&obj(json!({ "d": nest(15) }))), Ok(()));
    check(
        meta(&obj(json!({ "d": nest(16) }))),
        Err(
            "`meta` must be nested at most 16 levels deep (objects and arrays, `meta` itself included), got 17",
        ),
    );
    // Depth is measured iteratively: past any parser's recursion limit is fine.
    let mut v = json!(1);
    for _ in 0..1000 {
        v = json!([v]);
    }
    assert_eq!(depth(&v), 1000);

    // A stored item over the limits is brought within them, and says what changed.
    let mut item: Item = serde_json::from_value(json!({
        "id": "bl_0123456789ab", "created_at": "2026-03-02T06:20:01.123456Z",
        "updated_at": "2026-03-02T06:20:01.123456Z", "env": "prod", "service": "api",
        "category": "refactor", "title": "t", "description": "", "priority": "P1",
        "status": "open", "owner": "o", "due_date": "2026-03-09", "source": "manual",
        "dedupe_key": "k", "evidence_refs": {"alerts": ["al_1"]}, "tags": [], "meta": {"n": 1}
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(fit_stored(&mut item).is_empty());
    item.meta = obj(json!({ "d": nest(40) }));
    item.evidence_refs = BTreeMap::from([
        (
            "alerts".to_owned(),
            (0..5000).map(|i| format!("al_{i}")).collect(),
        ),
        ("incidents".to_owned(), vec!["x".repeat(70_000)]),
    ]);
    let repairs = fit_stored(&mut item);
    assert_eq!(repairs.len(), 2, "{repairs:?}");
    assert!(repairs[0].contains("41 levels deep"), "{repairs:?}");
    assert!(item.meta[TRUNCATED_KEY].is_string());
    check(meta(&item.meta), Ok(()));
    check(evidence_refs(&item.evidence_refs), Ok(()));
    assert_eq!(item.evidence_refs["alerts"].len(), EVIDENCE_IDS_MAX);
    assert!(item.evidence_refs["incidents"].is_empty());
    assert!(fit_stored(&mut item).is_empty());
}

#[test]
fn evidence_rule() {
    let refs = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), vec![v.to_owned()])]);
    check(evidence_refs(&refs("alerts", "al_1")), Ok(()));
    check(
        evidence_refs(&refs("alerts", "al\0")),
        Err("`evidence_refs.alerts` must not contain U+0000"),
    );
    check(
        evidence_refs(&refs("al\0", "x")),
        Err("`evidence_refs` must not contain U+0000"),
    );
}

#[test]
fn vocabularies() {
    assert_eq!(
        status("status", "in_progress").ok(),
        Some(Status::InProgress)
    );
    assert_eq!(status("status", "canceled").ok(), Some(Status::Canceled));
    check(
        status("status", "cancelled").map(|_| ()),
        Err("spelled `canceled`, with one L"),
    );
    check(
        status("status", "Cancelled").map(|_| ()),
        Err("spelled `canceled`, with one L"),
    );
    check(
        status("status", "closed").map(|_| ()),
        Err("`status` must be one of open, in_progress, blocked, done, canceled, got \"closed\""),
    );
    assert_eq!(priority("priority", "P0").ok(), Some(Priority::P0));
    check(
        priority("priority", "p0").map(|_| ()),
        Err("`priority` must be one of P0, P1, P2, P3"),
    );
    assert_eq!(source("source", "risk").ok(), Some(Source::Risk));
    check(
        source("source", "cron").map(|_| ()),
        Err("`source` must be one of digest, risk, pressure, manual"),
    );
    check(item_id("id", "bl_00000000000a"), Ok(()));
    check(
        item_id("id", "bl_1"),
        Err("`id` must match ^bl_[0-9a-f]{12}$, got \"bl_1\""),
    );
    check(timestamp("ts", "2026-03-02T06:20:01.000000Z"), Ok(()));
    check(
        timestamp("ts", "2026-03-02T06:20:01Z"),
        Err("`ts` must be a UTC timestamp"),
    );
}

#[test]
fn shown_cuts_long_values() {
    assert_eq!(shown("ab"), "\"ab\"");
    let long = s('é', 100);
    assert_eq!(shown(&long), format!("{:?}…", s('é', 64)));
}
