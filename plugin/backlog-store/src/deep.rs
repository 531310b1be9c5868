//! Stored item lines too deep for the JSON parser.
//!
//! serde_json refuses input nested more than 128 levels (its recursion limit, which keeps a
//! parser's stack bounded; lifting it would let one stored line overflow the guest's stack).
//! Older versions accepted any `meta` up to 64 KiB, so an items file may hold a line whose
//! `meta` is nested deeper than that. Such a line must not become unreadable (and with it
//! `list`, `dashboard`, and the metrics gauges built on them): [`fit_meta`] finds the
//! top-level `meta` value with a byte scanner that keeps no stack, and replaces it by the
//! truncation marker when it is deeper than [`META_MAX_DEPTH`], so the rest of the line
//! parses as usual. The scanner only needs to be right on valid JSON; on anything else it
//! answers `None` and the line stays corrupt.

use backlog_core::validate::{META_MAX_DEPTH, TRUNCATED_KEY};

/// Skips JSON whitespace from `i`.
fn ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// The end (exclusive) of the string starting with the quote at `i`.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

/// The end (exclusive) of the value starting at `i` and its nesting depth.
fn value_end(b: &[u8], i: usize) -> Option<(usize, usize)> {
    match b.get(i)? {
        b'"' => string_end(b, i).map(|e| (e, 0)),
        b'{' | b'[' => {
            let (mut depth, mut max, mut j) = (0usize, 0usize, i);
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => {
                        depth += 1;
                        max = max.max(depth);
                    }
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some((j + 1, max));
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                j += 1;
            }
            (j > i).then_some((j, 0))
        }
    }
}

/// `line` (one JSON object) with its top-level `meta` replaced by
/// `{"_truncated": "<why>"}` if that value is nested deeper than [`META_MAX_DEPTH`]; `None`
/// when there is nothing to replace or the line is not a well-formed object.
pub(crate) fn fit_meta(line: &[u8]) -> Option<Vec<u8>> {
    let mut i = ws(line, 0);
    if line.get(i) != Some(&b'{') {
        return None;
    }
    i = ws(line, i + 1);
    loop {
        if line.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(line, i)?;
        let is_meta = &line[i..key_end] == b"\"meta\"";
        i = ws(line, key_end);
        if line.get(i) != Some(&b':') {
            return None;
        }
        let start = ws(line, i + 1);
        let (end, depth) = value_end(line, start)?;
        if is_meta && depth > META_MAX_DEPTH {
            let why = format!(
                "meta ({} bytes, {depth} levels deep) exceeded the limits ({} levels) and was dropped on read",
                end - start,
                META_MAX_DEPTH
            );
            let marker = serde_json::json!({ TRUNCATED_KEY: why }).to_string();
            let mut out = Vec::with_capacity(line.len() - (end - start) + marker.len());
            out.extend_from_slice(&line[..start]);
            out.extend_from_slice(marker.as_bytes());
            out.extend_from_slice(&line[end..]);
            return Some(out);
        }
        i = ws(line, end);
        match line.get(i) {
            Some(b',') => i = ws(line, i + 1),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deep(n: usize) -> String {
        format!("{}1{}", "[".repeat(n), "]".repeat(n))
    }

    #[test]
    fn replaces_only_a_too_deep_meta() {
        let line = format!(
            r#"{{"id":"x","s":"a\"{{[","meta":{{"d":{}}},"tags":[]}}"#,
            deep(300)
        );
        let fixed = fit_meta(line.as_bytes()).expect("replaced");
        let v: serde_json::Value = serde_json::from_slice(&fixed).expect("parses now");
        assert_eq!(v["id"], "x");
        assert_eq!(v["s"], "a\"{[");
        assert_eq!(v["tags"], serde_json::json!([]));
        let why = v["meta"][TRUNCATED_KEY].as_str().unwrap_or_default();
        assert!(why.contains("301 levels deep"), "{why}");

        let shallow = format!(
            r#"{{"id":"x","meta":{{"d":{}}}}}"#,
            deep(META_MAX_DEPTH - 1)
        );
        assert_eq!(fit_meta(shallow.as_bytes()), None);
        assert_eq!(fit_meta(b"not json"), None);
        assert_eq!(fit_meta(br#"{"meta":[[[["#), None);
        // Deep, but not under `meta`: not ours to fix.
        let other = format!(r#"{{"title":{},"meta":{{}}}}"#, deep(300));
        assert_eq!(fit_meta(other.as_bytes()), None);
    }
}
