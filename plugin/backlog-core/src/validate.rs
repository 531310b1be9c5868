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
mod tests;
