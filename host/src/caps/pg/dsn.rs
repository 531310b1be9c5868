//! The Postgres DSN: where it comes from (`--dsn`, `BACKLOG_POSTGRES_DSN`, `POSTGRES_DSN`) and
//! how it is shown ([`redact`]).
//!
//! Security: the DSN carries the database password. It lives only in [`Dsn`], whose `Debug`
//! and `Display` print the redacted form, so a `{:?}` of the settings or a log line cannot leak
//! it. Nothing here hands the DSN to a guest.

use std::fmt;

/// The environment variables a DSN is read from, in order of precedence.
pub const DSN_VARS: [&str; 2] = ["BACKLOG_POSTGRES_DSN", "POSTGRES_DSN"];

/// A Postgres connection string (URL or `key=value` form). Prints redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn(String);

impl Dsn {
    /// Wraps a connection string.
    pub fn new(dsn: impl Into<String>) -> Dsn {
        Dsn(dsn.into())
    }

    /// `flag`, else the first non-empty variable of [`DSN_VARS`]; `None` when none is set.
    pub fn resolve(flag: Option<&str>, var: impl Fn(&str) -> Option<String>) -> Option<Dsn> {
        flag.filter(|f| !f.is_empty())
            .map(str::to_owned)
            .or_else(|| {
                DSN_VARS
                    .iter()
                    .find_map(|k| var(k).filter(|v| !v.is_empty()))
            })
            .map(Dsn)
    }

    /// The connection string itself, password included: only for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The connection string with its password hidden.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
}

impl fmt::Debug for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dsn({:?})", self.redacted())
    }
}

impl fmt::Display for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// The mask that replaces a password.
const MASK: &str = "***";

/// `dsn` with every password replaced by `***`: the user-info password of a URL
/// (`postgresql://user:secret@host/db`), a `password=` query parameter, and the `password`
/// key of the `key=value` form (quoted or not). Errs on the side of hiding: text it cannot
/// parse after a `password` key is masked to the end.
pub fn redact(dsn: &str) -> String {
    let trimmed = dsn.trim_start();
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        redact_url(dsn)
    } else {
        redact_key_values(dsn)
    }
}

fn redact_url(dsn: &str) -> String {
    let scheme_end = dsn.find("://").map(|i| i + 3).unwrap_or(0);
    let (scheme, rest) = dsn.split_at(scheme_end);
    let (before_query, query) = match rest.find('?') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    // The user info ends at the last `@` before the query: a password may hold `@` or `/`.
    let mut out = String::from(scheme);
    match before_query.rfind('@') {
        Some(at) => {
            let userinfo = &before_query[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push(':');
                    out.push_str(MASK);
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&before_query[at..]);
        }
        None => out.push_str(before_query),
    }
    if let Some(query) = query {
        out.push('?');
        let params: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}={MASK}"),
                _ => kv.to_owned(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

/// `key = value` pairs separated by whitespace; values unquoted or in single quotes with
/// backslash escapes (libpq's rules).
fn redact_key_values(dsn: &str) -> String {
    let mut out = String::with_capacity(dsn.len());
    let mut rest = dsn;
    loop {
        let ws = rest.len() - rest.trim_start().len();
        out.push_str(&rest[..ws]);
        rest = &rest[ws..];
        if rest.is_empty() {
            return out;
        }
        let Some(eq) = rest.find('=') else {
            out.push_str(rest);
            return out;
        };
        let key = rest[..eq].trim();
        let is_password = key.eq_ignore_ascii_case("password");
        out.push_str(&rest[..=eq]);
        rest = &rest[eq + 1..];
        let ws = rest.len() - rest.trim_start().len();
        out.push_str(&rest[..ws]);
        rest = &rest[ws..];
        let value_len = match value_len(rest) {
            Some(n) => n,
            // An unterminated quote: hide everything after a password key.
            None if is_password => {
                out.push_str(MASK);
                return out;
            }
            None => rest.len(),
        };
        if is_password {
            out.push_str(MASK);
        } else {
            out.push_str(&rest[..value_len]);
        }
        rest = &rest[value_len..];
    }
}

/// Length of the value at the start of `s`, or `None` for an unterminated quote.
fn value_len(s: &str) -> Option<usize> {
    if let Some(quoted) = s.strip_prefix('\'') {
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '\'' => return Some(i + 2),
                _ => {}
            }
        }
        None
    } else {
        Some(s.find(char::is_whitespace).unwrap_or(s.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(dsn: &str, expect: &str) {
        assert_eq!(redact(dsn), expect, "{dsn}");
    }

    #[test]
    fn redacts_urls() {
        check(
            "postgresql://bridge:s3cret@db.internal:5432/backlog",
            "postgresql://bridge:***@db.internal:5432/backlog",
        );
        check(
            "postgres://bridge:p@ss/w:rd@db/backlog?sslmode=disable",
            "postgres://bridge:***@db/backlog?sslmode=disable",
        );
        check(
            "postgresql://bridge@db/backlog?password=s3cret&sslmode=disable",
            "postgresql://bridge@db/backlog?password=***&sslmode=disable",
        );
        check(
            "postgresql://db/backlog?user=u&PASSWORD=x",
            "postgresql://db/backlog?user=u&PASSWORD=***",
        );
        check("postgresql://db/backlog", "postgresql://db/backlog");
        check("postgresql://u:@h/d", "postgresql://u:***@h/d");
    }

    #[test]
    fn redacts_key_values() {
        check(
            "host=db user=bridge password=s3cret dbname=backlog",
            "host=db user=bridge password=*** dbname=backlog",
        );
        check(
            "host=db password = 'with space \\' quote' dbname=backlog",
            "host=db password = *** dbname=backlog",
        );
        check("password='unterminated secret", "password=***");
        check("PassWord=x", "PassWord=***");
        check("host=db dbname=backlog", "host=db dbname=backlog");
        check("", "");
    }

    #[test]
    fn dsn_never_prints_its_password() {
        let dsn = Dsn::new("postgresql://u:hunter2@h/d");
        assert!(!format!("{dsn:?} {dsn}").contains("hunter2"));
        assert_eq!(dsn.expose(), "postgresql://u:hunter2@h/d");
    }

    #[test]
    fn resolution_order() {
        let env = |k: &str| match k {
            "BACKLOG_POSTGRES_DSN" => Some("a".to_owned()),
            "POSTGRES_DSN" => Some("b".to_owned()),
            _ => None,
        };
        let only_b = |k: &str| (k == "POSTGRES_DSN").then(|| "b".to_owned());
        let empty_a = |k: &str| Some(if k == "BACKLOG_POSTGRES_DSN" { "" } else { "b" }.into());
        assert_eq!(Dsn::resolve(Some("f"), env), Some(Dsn::new("f")));
        assert_eq!(Dsn::resolve(None, env), Some(Dsn::new("a")));
        assert_eq!(Dsn::resolve(Some(""), only_b), Some(Dsn::new("b")));
        assert_eq!(Dsn::resolve(None, empty_a), Some(Dsn::new("b")));
        assert_eq!(Dsn::resolve(None, |_| None), None);
    }
}
