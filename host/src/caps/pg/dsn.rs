//! The Postgres DSN: where it comes from (`--dsn`, `BACKLOG_POSTGRES_DSN`, `POSTGRES_DSN`) and
//! how it is shown ([`render`]).
//!
//! Security: the DSN carries the database password. It lives only in [`Dsn`], whose `Debug`
//! and `Display` never print the text the user gave: they print a DSN rebuilt from the parsed
//! configuration (user, hosts, ports, database) and nothing else, so no spelling of a password
//! (URL user info, `?password=`, a percent-encoded key, a quoted or backslash-escaped
//! `key=value` value, an upper-case scheme) can reach a log line, an error or `migrate`'s
//! output. Nothing here hands the DSN to a guest.

use std::fmt;

use tokio_postgres::Config;
use tokio_postgres::config::Host;

/// The environment variables a DSN is read from, in order of precedence.
pub const DSN_VARS: [&str; 2] = ["BACKLOG_POSTGRES_DSN", "POSTGRES_DSN"];

/// A Postgres connection string (URL or `key=value` form). Prints as [`render`] does.
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

    /// The DSN as it may be shown: rebuilt from its parsed configuration, no secret in it.
    pub fn redacted(&self) -> String {
        render(&self.0)
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

/// What is shown for a DSN that does not parse (its text is never shown).
pub const UNPARSABLE: &str = "(a Postgres DSN that does not parse)";

/// `dsn` as it may be shown: `postgresql://USER@HOST:PORT,…/DBNAME`, rebuilt from what
/// `tokio_postgres::Config` (libpq's URL and `key=value` rules) parses out of it: the user,
/// hosts, ports and database name, percent-encoded. Nothing else of the text — password,
/// options, unknown parts — is copied; a DSN that does not parse shows as [`UNPARSABLE`].
pub fn render(dsn: &str) -> String {
    match dsn.parse::<Config>() {
        Ok(config) => render_config(&config),
        Err(_) => UNPARSABLE.to_owned(),
    }
}

/// A parsed configuration, shown without its password.
pub fn render_config(config: &Config) -> String {
    let mut out = String::from("postgresql://");
    if let Some(user) = config.get_user() {
        out.push_str(&encode(user));
        out.push('@');
    }
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                Host::Tcp(name) if name.contains(':') => format!("[{name}]"),
                Host::Tcp(name) => encode(name),
                #[cfg(unix)]
                Host::Unix(path) => encode(&path.to_string_lossy()),
            };
            match ports.get(i).or(ports.first()) {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect();
    out.push_str(&hosts.join(","));
    if let Some(db) = config.get_dbname() {
        out.push('/');
        out.push_str(&encode(db));
    }
    out
}

/// Percent-encodes everything but unreserved URL characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The reason a DSN does not parse, without any of its text (libpq-style parse errors can
/// quote a character of the DSN).
pub fn parse_error(e: &tokio_postgres::Error) -> String {
    let full = std::error::Error::source(e).map_or_else(|| e.to_string(), |s| s.to_string());
    match full.find(": expected") {
        Some(i) => full[..i].to_owned(),
        None => full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(dsn: &str, expect: &str) {
        assert_eq!(render(dsn), expect, "{dsn}");
    }

    #[test]
    fn renders_urls_without_secrets() {
        check(
            "postgresql://bridge:s3cret@db.internal:5432/backlog",
            "postgresql://bridge@db.internal:5432/backlog",
        );
        check(
            "postgresql://bridge:Br%3Fdge-Pw%2342@db/backlog?sslmode=disable",
            "postgresql://bridge@db:5432/backlog",
        );
        check(
            "postgresql://bridge@db/backlog?password=s3cret&sslmode=disable",
            "postgresql://bridge@db:5432/backlog",
        );
        check(
            "postgresql://db/backlog?user=u&pass%77ord=x",
            "postgresql://u@db:5432/backlog",
        );
        check(
            "postgres://db:1,db2:2/backlog",
            "postgresql://db:1,db2:2/backlog",
        );
        check("postgresql://u:@h/d", "postgresql://u@h:5432/d");
    }

    #[test]
    fn renders_key_values_without_secrets() {
        check(
            "host=db user=bridge password=s3cret dbname=backlog",
            "postgresql://bridge@db/backlog",
        );
        check(
            "host=db password = 'with space \\' quote' dbname=backlog port=6543",
            "postgresql://db:6543/backlog",
        );
        check("host=db password=pw\\ 1111 user=u", "postgresql://u@db");
        check(
            "host=/run/postgresql dbname=x",
            "postgresql://%2Frun%2Fpostgresql/x",
        );
    }

    #[test]
    fn unparsable_dsns_show_nothing_of_their_text() {
        for dsn in [
            "password='unterminated secret",
            "POSTGRESQL://bridge:hunter2@db/backlog",
            "postgresql://bridge:hunter2@db:notaport/backlog",
            "hunter2",
        ] {
            assert_eq!(render(dsn), UNPARSABLE, "{dsn}");
            if let Err(e) = dsn.parse::<Config>() {
                assert!(!parse_error(&e).contains("hunter2"), "{}", parse_error(&e));
            }
        }
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

    mod prop {
        use proptest::prelude::*;

        use super::super::render;

        /// Percent-encodes every byte (a URL user info or query value may hold anything).
        fn pct(s: &str) -> String {
            s.bytes().map(|b| format!("%{b:02X}")).collect()
        }

        /// libpq's `key=value` quoting: single quotes, backslash escapes.
        fn quoted(s: &str) -> String {
            format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
        }

        /// Backslash-escapes spaces, quotes and backslashes (unquoted `key=value` form).
        fn escaped(s: &str) -> String {
            s.chars()
                .flat_map(|c| match c {
                    ' ' | '\'' | '\\' => vec!['\\', c],
                    c => vec![c],
                })
                .collect()
        }

        fn password() -> impl Strategy<Value = String> {
            prop_oneof![
                "[ -~]{8,40}",
                "\\PC{8,20}",
                "(%[0-9A-F]{2}){4,12}",
                "[a-z]{4}[?#@/:&= ][A-Za-z0-9]{4}",
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// No form of DSN shows its password, whatever the password holds.
            #[test]
            fn no_password_appears_in_any_rendered_form(pw in password()) {
                let forms = [
                    format!("postgresql://bridge:{}@db.internal:5432/backlog", pct(&pw)),
                    format!("postgres://bridge@db.internal/backlog?password={}", pct(&pw)),
                    format!("postgresql://db.internal/backlog?user=bridge&pass%77ord={}", pct(&pw)),
                    format!("host=db.internal user=bridge password={} dbname=backlog", quoted(&pw)),
                    format!("host=db.internal password={} user=bridge", escaped(&pw)),
                    format!("POSTGRESQL://bridge:{}@db.internal/backlog", pct(&pw)),
                    format!("postgresql://bridge:{pw}@db.internal/backlog"),
                    format!("host=db.internal password={pw} dbname=backlog"),
                ];
                let trimmed = pw.trim();
                for dsn in &forms {
                    let shown = render(dsn);
                    prop_assert!(!shown.contains(&pw), "{dsn:?} showed {shown:?}");
                    prop_assert!(!shown.contains(&pct(&pw)), "{dsn:?} showed {shown:?}");
                    if trimmed.len() >= 6 {
                        prop_assert!(!shown.contains(trimmed), "{dsn:?} showed {shown:?}");
                    }
                }
            }
        }
    }
}
