//! Field rules (see `docs/data-model.md`) and the action params (`docs/actions.md`), one function per rule. Each returns
//! `invalid_input` naming the field and the rule it broke.
//!
//! Lengths count Unicode scalar values (`chars`), never bytes; U+0000 is rejected in every
//! string, including keys and values nested inside `meta` and `evidence_refs`. Rules that need
//! the store (dedupe uniqueness, existence) live in `actions`, not here.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde_json::{Map, Value};

use crate::error::Error;
use crate::ids;
use crate::model::{Item, Priority, Source, Status};
use crate::policy::Policy;
use crate::time;

/// `title`: 1..=200 chars.
pub const TITLE_MAX: usize = 200;
/// `description`: 0..=10000 chars.
pub const DESCRIPTION_MAX: usize = 10_000;
/// `owner`: 1..=64 chars.
pub const OWNER_MAX: usize = 64;
/// `dedupe_key`: 1..=256 chars.
pub const DEDUPE_KEY_MAX: usize = 256;
/// At most 32 tags.
pub const TAGS_MAX: usize = 32;
/// Each tag 1..=64 chars.
pub const TAG_MAX: usize = 64;
/// `meta` serialized compactly: at most 64 KiB (bytes).
pub const META_MAX_BYTES: usize = 64 * 1024;
/// `meta` nesting: at most 16 levels of objects and arrays, `meta` itself counting as the
/// first (`{"a":{"b":[1]}}` is 3 levels).
pub const META_MAX_DEPTH: usize = 16;
/// `evidence_refs` serialized compactly: at most 64 KiB (bytes).
pub const EVIDENCE_MAX_BYTES: usize = 64 * 1024;
/// At most 1000 ids per evidence kind.
pub const EVIDENCE_IDS_MAX: usize = 1000;
/// `add_comment.message` 1..=4000 chars, `set_status.comment` 0..=4000.
pub const MESSAGE_MAX: usize = 4000;

/// Regex (documentation and JSON Schema) of `env`.
pub const ENV_PATTERN: &str = "^[a-z0-9][a-z0-9_-]{0,31}$";
/// Regex of `service`.
pub const SERVICE_PATTERN: &str = "^[a-z0-9][a-z0-9._-]{0,63}$";
/// Regex of policy category names.
pub const CATEGORY_PATTERN: &str = "^[a-z0-9][a-z0-9._-]{0,63}$";
/// Regex of item ids.
pub const ITEM_ID_PATTERN: &str = "^bl_[0-9a-f]{12}$";
/// Regex of `YYYY-MM-DD` dates (plus: must be a real calendar date).
pub const DATE_PATTERN: &str = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$";

type Result<T = ()> = std::result::Result<T, Error>;

/// A value for an error message: debug-quoted, cut after 64 chars.
pub(crate) fn shown(s: &str) -> String {
    const CUT: usize = 64;
    match s.char_indices().nth(CUT) {
        Some((at, _)) => format!("{:?}…", &s[..at]),
        None => format!("{s:?}"),
    }
}

/// Rejects U+0000 anywhere in `s`.
pub fn no_nul(field: &str, s: &str) -> Result {
    if s.contains('\0') {
        return Err(Error::invalid_input(format!(
            "`{field}` must not contain U+0000 (NUL)"
        )));
    }
    Ok(())
}

/// Rejects U+0000 in any string or key anywhere inside `v`; the message names the path.
pub fn no_nul_json(field: &str, v: &Value) -> Result {
    fn walk(path: &mut String, v: &Value) -> Option<String> {
        match v {
            Value::String(s) if s.contains('\0') => Some(path.clone()),
            Value::Array(a) => a.iter().enumerate().find_map(|(i, x)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let hit = walk(path, x);
                path.truncate(len);
                hit
            }),
            Value::Object(m) => m.iter().find_map(|(k, x)| {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                let hit = if k.contains('\0') {
                    Some(path.clone())
                } else {
                    walk(path, x)
                };
                path.truncate(len);
                hit
            }),
            _ => None,
        }
    }
    let mut path = field.to_owned();
    match walk(&mut path, v) {
        Some(at) => Err(Error::invalid_input(format!(
            "`{field}` must not contain U+0000 (NUL), found at `{}`",
            at.escape_debug()
        ))),
        None => Ok(()),
    }
}

/// `min..=max` chars and no U+0000.
pub fn length(field: &str, s: &str, min: usize, max: usize) -> Result {
    no_nul(field, s)?;
    let n = s.chars().count();
    if n < min || n > max {
        return Err(Error::invalid_input(format!(
            "`{field}` must be {min}..{max} characters long, got {n}"
        )));
    }
    Ok(())
}

/// `^[a-z0-9][<first-char set plus extra>]{0,max-1}$`, hand-written.
fn slug(s: &str, extra: &[u8], max: usize) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match b.split_first() {
        Some((first, rest)) => {
            b.len() <= max && alnum(first) && rest.iter().all(|c| alnum(c) || extra.contains(c))
        }
        None => false,
    }
}

fn pattern(field: &str, s: &str, ok: bool, pat: &str) -> Result {
    if ok {
        return Ok(());
    }
    Err(Error::invalid_input(format!(
        "`{field}` must match {pat}, got {}",
        shown(s)
    )))
}

/// `env`: `^[a-z0-9][a-z0-9_-]{0,31}$`.
pub fn env(s: &str) -> Result {
    pattern("env", s, slug(s, b"_-", 32), ENV_PATTERN)
}

/// `service`: `^[a-z0-9][a-z0-9._-]{0,63}$`.
pub fn service(s: &str) -> Result {
    pattern("service", s, slug(s, b"._-", 64), SERVICE_PATTERN)
}

/// A policy category name: `^[a-z0-9][a-z0-9._-]{0,63}$` (it becomes part of dedupe keys).
pub fn category_name(s: &str) -> Result {
    pattern("category", s, slug(s, b"._-", 64), CATEGORY_PATTERN)
}

/// `category`: a key of the policy's `categories`; the message lists the valid ones.
pub fn category(policy: &Policy, s: &str) -> Result {
    if policy.category(s).is_some() {
        return Ok(());
    }
    Err(Error::invalid_input(format!(
        "`category` must be one of the policy's categories ({}), got {}",
        policy.categories.names().join(", "),
        shown(s)
    )))
}

/// An item id: `^bl_[0-9a-f]{12}$`.
pub fn item_id(field: &str, s: &str) -> Result {
    pattern(field, s, ids::is_item_id(s), ITEM_ID_PATTERN)
}

/// `title`: 1..200 chars.
pub fn title(s: &str) -> Result {
    length("title", s, 1, TITLE_MAX)
}

/// `description`: 0..10000 chars.
pub fn description(s: &str) -> Result {
    length("description", s, 0, DESCRIPTION_MAX)
}

/// `owner`: 1..64 chars.
pub fn owner(s: &str) -> Result {
    length("owner", s, 1, OWNER_MAX)
}

/// A strict `YYYY-MM-DD` calendar date in `field`.
pub fn date(field: &str, s: &str) -> Result<NaiveDate> {
    time::parse_date(s).ok_or_else(|| {
        Error::invalid_input(format!(
            "`{field}` must be a calendar date YYYY-MM-DD, got {}",
            shown(s)
        ))
    })
}

/// `due_date`: strict `YYYY-MM-DD`, a real date.
pub fn due_date(s: &str) -> Result {
    date("due_date", s).map(|_| ())
}

/// `dedupe_key`: 1..256 chars.
pub fn dedupe_key(s: &str) -> Result {
    length("dedupe_key", s, 1, DEDUPE_KEY_MAX)
}

/// `tags`: at most 32, each 1..64 chars.
pub fn tags(tags: &[String]) -> Result {
    if tags.len() > TAGS_MAX {
        return Err(Error::invalid_input(format!(
            "`tags` must hold at most {TAGS_MAX} tags, got {}",
            tags.len()
        )));
    }
    for (i, t) in tags.iter().enumerate() {
        length(&format!("tags[{i}]"), t, 1, TAG_MAX)?;
    }
    Ok(())
}

/// Nesting depth of `v`: 0 for a scalar, 1 for `{}` or `[]`, one more per level inside.
/// Iterative, so any depth a parser produced is safe to measure.
pub fn depth(v: &Value) -> usize {
    let mut max = 0;
    let mut stack: Vec<(&Value, usize)> = vec![(v, 1)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Array(a) => {
                max = max.max(d);
                stack.extend(a.iter().map(|x| (x, d + 1)));
            }
            Value::Object(m) => {
                max = max.max(d);
                stack.extend(m.values().map(|x| (x, d + 1)));
            }
            _ => {}
        }
    }
    max
}

/// Nesting depth of an object (`meta`): 1 + the depth of its deepest value.
pub fn object_depth(m: &Map<String, Value>) -> usize {
    1 + m.values().map(depth).max().unwrap_or(0)
}

/// Compact JSON size of `v` in bytes, without building the text.
pub fn json_size<T: serde::Serialize + ?Sized>(v: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Serializing maps of strings cannot fail; a failure would count what was written.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// `meta`: no U+0000 anywhere, at most [`META_MAX_DEPTH`] levels deep and [`META_MAX_BYTES`]
/// serialized compactly.
pub fn meta(meta: &Map<String, Value>) -> Result {
    let d = object_depth(meta);
    if d > META_MAX_DEPTH {
        return Err(Error::invalid_input(format!(
            "`meta` must be nested at most {META_MAX_DEPTH} levels deep (objects and arrays, `meta` itself included), got {d}"
        )));
    }
    for (k, v) in meta {
        if k.contains('\0') {
            return Err(Error::invalid_input(
                "`meta` must not contain U+0000 (NUL), found in a key",
            ));
        }
        no_nul_json(&format!("meta.{k}"), v)?;
    }
    let size = json_size(meta);
    if size > META_MAX_BYTES {
        return Err(Error::invalid_input(format!(
            "`meta` must be at most {META_MAX_BYTES} bytes serialized (compact JSON), got {size}"
        )));
    }
    Ok(())
}

/// `evidence_refs`: kind → list of ids; no U+0000 in kinds or ids, at most
/// [`EVIDENCE_IDS_MAX`] ids per kind and [`EVIDENCE_MAX_BYTES`] serialized compactly.
pub fn evidence_refs(refs: &BTreeMap<String, Vec<String>>) -> Result {
    for (kind, list) in refs {
        no_nul("evidence_refs", kind)?;
        if list.len() > EVIDENCE_IDS_MAX {
            return Err(Error::invalid_input(format!(
                "`evidence_refs.{}` must hold at most {EVIDENCE_IDS_MAX} ids, got {}",
                kind.escape_debug(),
                list.len()
            )));
        }
        for id in list {
            no_nul(&format!("evidence_refs.{kind}"), id)?;
        }
    }
    let size = json_size(refs);
    if size > EVIDENCE_MAX_BYTES {
        return Err(Error::invalid_input(format!(
            "`evidence_refs` must be at most {EVIDENCE_MAX_BYTES} bytes serialized (compact JSON), got {size}"
        )));
    }
    Ok(())
}

/// What [`fit_stored`] changed in a stored item, one line each, for a warning.
pub type Repairs = Vec<String>;

/// Marker key of a `meta` that was replaced on read because it broke the limits.
pub const TRUNCATED_KEY: &str = "_truncated";

/// Brings a *stored* item (possibly written by an older version with looser limits) within
/// the `meta` and `evidence_refs` limits, so that reading it cannot fail or blow up a page:
/// an over-limit `meta` is replaced by `{"_truncated": "<why>"}`; `evidence_refs` keeps at
/// most [`EVIDENCE_IDS_MAX`] ids per kind and, in key order, the ids that fit in
/// [`EVIDENCE_MAX_BYTES`]. Returns what it changed (empty: the item was within limits).
pub fn fit_stored(item: &mut Item) -> Repairs {
    let mut repairs = Vec::new();
    let d = object_depth(&item.meta);
    let size = json_size(&item.meta);
    if d > META_MAX_DEPTH || size > META_MAX_BYTES {
        let why = format!(
            "meta ({size} bytes, {d} levels deep) exceeded the limits ({META_MAX_BYTES} bytes, {META_MAX_DEPTH} levels) and was dropped on read"
        );
        repairs.push(why.clone());
        item.meta = Map::from_iter([(TRUNCATED_KEY.to_owned(), Value::String(why))]);
    }
    let size = json_size(&item.evidence_refs);
    let too_many = item
        .evidence_refs
        .values()
        .any(|l| l.len() > EVIDENCE_IDS_MAX);
    if size > EVIDENCE_MAX_BYTES || too_many {
        // `{}` plus, per kind, `"kind":[]` and a comma; per id its quoted text and a comma.
        let mut budget = EVIDENCE_MAX_BYTES.saturating_sub(2);
        let mut kept = 0usize;
        let mut total = 0usize;
        item.evidence_refs.retain(|kind, ids| {
            total += ids.len();
            let cost = json_size(kind.as_str()) + 4;
            if cost > budget {
                return false;
            }
            budget -= cost;
            let mut n = 0;
            for id in ids.iter() {
                let cost = json_size(id.as_str()) + 1;
                if n >= EVIDENCE_IDS_MAX || cost > budget {
                    break;
                }
                budget -= cost;
                n += 1;
            }
            ids.truncate(n);
            kept += n;
            true
        });
        repairs.push(format!(
            "evidence_refs ({size} bytes, {total} ids) exceeded the limits ({EVIDENCE_MAX_BYTES} bytes, {EVIDENCE_IDS_MAX} ids per kind); {kept} ids kept on read"
        ));
    }
    repairs
}

/// `add_comment.message`: 1..4000 chars.
pub fn message(s: &str) -> Result {
    length("message", s, 1, MESSAGE_MAX)
}

/// `set_status.comment`: 0..4000 chars.
pub fn comment(s: &str) -> Result {
    length("comment", s, 0, MESSAGE_MAX)
}

/// `actor` of an event (from the call context): 1..64 chars.
pub fn actor(s: &str) -> Result {
    length("actor", s, 1, OWNER_MAX)
}

/// A status name; `cancelled` gets a hint about the spelling.
pub fn status(field: &str, s: &str) -> Result<Status> {
    Ok(match s {
        "open" => Status::Open,
        "in_progress" => Status::InProgress,
        "blocked" => Status::Blocked,
        "done" => Status::Done,
        "canceled" => Status::Canceled,
        _ => {
            let hint = if s.eq_ignore_ascii_case("cancelled") {
                " (the status is spelled `canceled`, with one L)"
            } else {
                ""
            };
            return Err(Error::invalid_input(format!(
                "`{field}` must be one of open, in_progress, blocked, done, canceled, got {}{hint}",
                shown(s)
            )));
        }
    })
}

/// A priority name, `P0`..`P3`.
pub fn priority(field: &str, s: &str) -> Result<Priority> {
    Ok(match s {
        "P0" => Priority::P0,
        "P1" => Priority::P1,
        "P2" => Priority::P2,
        "P3" => Priority::P3,
        _ => {
            return Err(Error::invalid_input(format!(
                "`{field}` must be one of P0, P1, P2, P3, got {}",
                shown(s)
            )));
        }
    })
}

/// A source name.
pub fn source(field: &str, s: &str) -> Result<Source> {
    Ok(match s {
        "digest" => Source::Digest,
        "risk" => Source::Risk,
        "pressure" => Source::Pressure,
        "manual" => Source::Manual,
        _ => {
            return Err(Error::invalid_input(format!(
                "`{field}` must be one of digest, risk, pressure, manual, got {}",
                shown(s)
            )));
        }
    })
}

/// A stored timestamp: fixed-width UTC form (what this crate writes).
pub fn timestamp(field: &str, s: &str) -> Result {
    if time::normalize_ts(s).as_deref() == Some(s) {
        return Ok(());
    }
    Err(Error::invalid_input(format!(
        "`{field}` must be a UTC timestamp YYYY-MM-DDTHH:MM:SS.ffffffZ, got {}",
        shown(s)
    )))
}

/// Every field rule (see `docs/data-model.md`) on a whole item, except membership of `category` in the policy
/// (a stored item keeps a category the policy has since dropped).
pub fn item(item: &Item) -> Result {
    item_id("id", &item.id)?;
    timestamp("created_at", &item.created_at)?;
    timestamp("updated_at", &item.updated_at)?;
    env(&item.env)?;
    service(&item.service)?;
    category_name(&item.category)?;
    title(&item.title)?;
    description(&item.description)?;
    owner(&item.owner)?;
    due_date(&item.due_date)?;
    dedupe_key(&item.dedupe_key)?;
    evidence_refs(&item.evidence_refs)?;
    tags(&item.tags)?;
    meta(&item.meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
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
        check(category(&p, "security"), Ok(()));
        check(
            category(&p, "secrity"),
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
            Err(
                "`status` must be one of open, in_progress, blocked, done, canceled, got \"closed\"",
            ),
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
}
