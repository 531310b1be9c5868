//! Bearer-key authentication (`docs/configuration.md`, `docs/http-api.md`): which agent a request speaks for.
//!
//! Owns the agents' API keys, read once at start-up from the environment variables that
//! `config/rbac_tools_matrix.yml` names (`agents.<id>.api_key_env`). An agent whose variable is
//! unset or empty cannot log in over HTTP.
//!
//! Must not: log, echo or store a key in clear (only SHA-256 digests are kept, and log lines
//! name the variables, never their values); compare keys in a way whose timing depends on how
//! much of a key matched (digests are compared in full, against every agent).

use sha2::{Digest as _, Sha256};

use crate::config::keys::{self, KeyLine};
use crate::config::rbac::Matrix;
use crate::error::{Code, ToolError};

/// The keys agents log in with, as digests.
pub struct Keys {
    agents: Vec<(String, [u8; 32])>,
}

/// Shortest key accepted at start: a key a person could guess or read over a shoulder is
/// refused rather than served.
pub const MIN_KEY_CHARS: usize = 16;

/// A key table `serve` refuses to start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Two agents whose key variables hold the same key: a request could not say who it is.
    #[error(
        "agents `{first}` and `{second}` have the same API key ({first_source} and \
         {second_source}); give each agent its own key"
    )]
    Shared {
        first: String,
        first_source: String,
        second: String,
        second_source: String,
    },
    /// A key too short to be a secret.
    #[error(
        "{var} (an API key of agent `{agent}`) has {chars} characters; keys must have at \
         least {MIN_KEY_CHARS} (e.g. `openssl rand -hex 24`)"
    )]
    TooShort {
        agent: String,
        /// Where the key came from: `$VAR` or `FILE:LINE`.
        var: String,
        chars: usize,
    },
    /// A key file that cannot be used (unreadable, open to group/others, malformed).
    #[error("{0}")]
    File(String),
}

fn check_length(agent: &str, key: &str, source: &str) -> Result<(), KeyError> {
    let chars = key.chars().count();
    if chars < MIN_KEY_CHARS {
        return Err(KeyError::TooShort {
            agent: agent.to_owned(),
            var: source.to_owned(),
            chars,
        });
    }
    Ok(())
}

/// HTTP optional whitespace: the only bytes trimmed around a key (never Unicode spaces, so
/// a key that ends in a no-break space must be sent with it).
fn trim_ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

impl Keys {
    /// Reads each agent's keys: from its variable through `var` (the process environment in
    /// production) and from its key file (`api_key_file`, relative to the matrix's directory;
    /// [`crate::config::keys`]). Every key of both sources is valid, so a rotation can overlap.
    /// ASCII whitespace around a variable's key (a trailing newline from `$(cat file)`) is
    /// trimmed with a warning; nothing else is. Logs which agents can log in and which
    /// variables are unset.
    pub fn load(matrix: &Matrix, var: impl Fn(&str) -> Option<String>) -> Result<Keys, KeyError> {
        let config_dir = matrix.path.parent().unwrap_or(std::path::Path::new("."));
        // (agent, digest, where the key came from: `$VAR` or `FILE:LINE`)
        let mut agents: Vec<(String, [u8; 32], String)> = Vec::new();
        let mut add = |agent: &str, digest: [u8; 32], source: String| {
            if let Some((other, _, other_source)) = agents
                .iter()
                .find(|(a, d, _)| a != agent && constant_time_eq(d, &digest))
            {
                return Err(KeyError::Shared {
                    first: other.clone(),
                    first_source: other_source.clone(),
                    second: agent.to_owned(),
                    second_source: source,
                });
            }
            agents.push((agent.to_owned(), digest, source));
            Ok(())
        };
        for (agent, rule) in matrix.agents() {
            if let Some(file) = &rule.api_key_file {
                let path = keys::path(config_dir, file);
                for (line, entry) in
                    keys::read(agent, &path).map_err(|e| KeyError::File(e.to_string()))?
                {
                    let source = format!("{}:{line}", path.display());
                    let digest = match entry {
                        KeyLine::Digest(d) => d,
                        KeyLine::Key(key) => {
                            check_length(agent, &key, &source)?;
                            digest(&key)
                        }
                    };
                    add(agent, digest, source)?;
                }
            }
            let Some(name) = &rule.api_key_env else {
                continue;
            };
            let raw = var(name);
            let key = raw.as_deref().map(|k| k.trim_ascii());
            if let (Some(raw), Some(key)) = (&raw, key)
                && raw.len() != key.len()
                && !key.is_empty()
            {
                tracing::warn!(
                    agent,
                    "router: ${name} has whitespace around the key; it was trimmed (only ASCII \
                     whitespace is)"
                );
            }
            match key.filter(|k| !k.is_empty()) {
                Some(key) => {
                    let source = format!("${name}");
                    check_length(agent, key, &source)?;
                    add(agent, digest(key), source)?;
                }
                None => tracing::warn!(
                    agent,
                    "router: ${name} is not set: agent `{agent}` cannot log in over HTTP with it"
                ),
            }
        }
        let mut names: Vec<&str> = agents.iter().map(|(a, ..)| a.as_str()).collect();
        names.dedup();
        tracing::info!("router: agents with an API key: {}", names.join(", "));
        Ok(Keys {
            agents: agents.into_iter().map(|(a, d, _)| (a, d)).collect(),
        })
    }

    /// The agent whose key the `Authorization` header value carries (`Bearer <key>`), or the
    /// 401 `unauthenticated` error. Only spaces and tabs around the scheme and key are
    /// ignored.
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<&str, ToolError> {
        let unauthenticated = |why: &str| ToolError::new(Code::Unauthenticated, why);
        let Some(value) = authorization else {
            return Err(unauthenticated(
                "missing `Authorization: Bearer <api key>` header",
            ));
        };
        let key = std::str::from_utf8(value)
            .ok()
            .and_then(|v| {
                let (scheme, key) = trim_ows(v).split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| trim_ows(key))
            })
            .filter(|k| !k.is_empty())
            .ok_or_else(|| unauthenticated("the Authorization header is not `Bearer <api key>`"))?;
        let presented = digest(key);
        // Every agent is compared, so the time taken does not say which one (if any) matched.
        let mut found = None;
        for (agent, expected) in &self.agents {
            let equal = constant_time_eq(expected, &presented);
            found = if equal && found.is_none() {
                Some(agent.as_str())
            } else {
                found
            };
        }
        found.ok_or_else(|| unauthenticated("unknown API key"))
    }
}

/// Failed logins per client address, as token buckets: each address may fail `per_minute`
/// times in a burst, then once per `60 / per_minute` seconds; beyond, requests that fail
/// authentication are answered 429 with `Retry-After` instead of 401. A request with a
/// valid key is never limited. The table is bounded: when full, recovered addresses are
/// forgotten first, then all.
pub struct FailureLimiter {
    per_minute: u32,
    buckets: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: std::time::Instant,
}

/// Addresses remembered at once.
const MAX_TRACKED: usize = 16_384;

impl FailureLimiter {
    pub fn new(per_minute: u32) -> FailureLimiter {
        FailureLimiter {
            per_minute: per_minute.max(1),
            buckets: std::sync::Mutex::default(),
        }
    }

    /// Records one failed authentication from `addr`: `Ok` while within the budget, else
    /// the seconds until the next failure is allowed.
    pub fn fail(&self, addr: std::net::IpAddr) -> Result<(), u64> {
        let now = std::time::Instant::now();
        let burst = f64::from(self.per_minute);
        let rate = burst / 60.0;
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        let refill =
            |b: &Bucket| (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&addr) {
            buckets.retain(|_, b| refill(b) < burst);
            if buckets.len() >= MAX_TRACKED {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(addr).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.tokens = refill(bucket);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Compares two digests in time independent of where they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix() -> Matrix {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(crate::config::rbac::FILE),
            "tools: {}\nagents:\n  a: { entitlements: [r], api_key_env: A_KEY }\n  \
             b: { entitlements: [r], api_key_env: B_KEY }\n  c: { entitlements: [r] }\n",
        )
        .unwrap();
        Matrix::load(dir.path()).unwrap()
    }

    #[track_caller]
    fn check(keys: &Keys, header: Option<&str>, expect: Result<&str, &str>) {
        let got = keys.authenticate(header.map(str::as_bytes));
        match (got, expect) {
            (Ok(agent), Ok(want)) => assert_eq!(agent, want),
            (Err(e), Err(fragment)) => {
                assert_eq!(e.code, Code::Unauthenticated);
                assert!(e.message.contains(fragment), "{e}");
            }
            (got, want) => panic!("{header:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn bearer_keys_name_their_agent() {
        let keys = Keys::load(&matrix(), |v| match v {
            "A_KEY" => Some("alpha-key-0123456789".into()),
            "B_KEY" => Some(String::new()),
            _ => None,
        })
        .unwrap();
        check(&keys, Some("Bearer alpha-key-0123456789"), Ok("a"));
        check(&keys, Some("bearer  alpha-key-0123456789 "), Ok("a"));
        check(&keys, None, Err("missing"));
        check(&keys, Some("Bearer"), Err("not `Bearer"));
        check(&keys, Some("Bearer "), Err("not `Bearer"));
        check(
            &keys,
            Some("Basic alpha-key-0123456789"),
            Err("not `Bearer"),
        );
        check(
            &keys,
            Some("Bearer alpha-key-012345678"),
            Err("unknown API key"),
        );
        check(
            &keys,
            Some("Bearer alpha-key-01234567899"),
            Err("unknown API key"),
        );
        // Only spaces and tabs are ignored: a no-break space is part of the key.
        check(
            &keys,
            Some("Bearer alpha-key-0123456789\u{a0}"),
            Err("unknown API key"),
        );
        // B_KEY is empty: agent `b` cannot log in, not even with an empty key.
        check(&keys, Some("Bearer  "), Err("not `Bearer"));
    }

    #[test]
    fn keys_are_trimmed_of_ascii_whitespace_only() {
        let keys = Keys::load(&matrix(), |v| match v {
            "A_KEY" => Some(" alpha-key-0123456789\n".into()),
            "B_KEY" => Some("beta-key-0123456789\u{a0}".into()),
            _ => None,
        })
        .unwrap();
        check(&keys, Some("Bearer alpha-key-0123456789"), Ok("a"));
        check(
            &keys,
            Some("Bearer beta-key-0123456789"),
            Err("unknown API key"),
        );
        check(&keys, Some("Bearer beta-key-0123456789\u{a0}"), Ok("b"));
    }

    #[test]
    fn short_keys_are_refused() {
        let err = Keys::load(&matrix(), |v| (v == "B_KEY").then(|| "short-key".into()))
            .err()
            .unwrap();
        assert_eq!(
            err,
            KeyError::TooShort {
                agent: "b".into(),
                var: "$B_KEY".into(),
                chars: 9
            }
        );
        assert!(err.to_string().contains("$B_KEY"), "{err}");
        assert!(!err.to_string().contains("short-key"), "{err}");
    }

    #[test]
    fn failures_are_limited_per_address() {
        let limiter = FailureLimiter::new(3);
        let (a, b) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert_eq!(limiter.fail(a), Ok(()));
        }
        let wait = limiter.fail(a).unwrap_err();
        assert!((1..=20).contains(&wait), "{wait}");
        assert_eq!(limiter.fail(b), Ok(()));
    }

    #[test]
    fn two_agents_with_one_key_are_refused() {
        let err = Keys::load(&matrix(), |_| Some("k3y-value-0123456789".into()))
            .err()
            .unwrap();
        let KeyError::Shared { first, second, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!((first.as_str(), second.as_str()), ("a", "b"));
        assert!(!err.to_string().contains("k3y-value"), "{err}");
    }

    #[test]
    fn key_file_and_variable_keys_are_valid_together() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(crate::config::rbac::FILE),
            "tools: {}\nagents:\n  a: { entitlements: [r], api_key_env: A_KEY, \
             api_key_file: a.keys }\n",
        )
        .unwrap();
        let file = dir.path().join("a.keys");
        let digest_line: String = digest("file-digest-key-0123")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(
            &file,
            format!("file-clear-key-0123\nsha256:{digest_line}\n"),
        )
        .unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let matrix = Matrix::load(dir.path()).unwrap();
        let keys = Keys::load(&matrix, |_| Some("variable-key-0123456".into())).unwrap();
        for key in [
            "file-clear-key-0123",
            "file-digest-key-0123",
            "variable-key-0123456",
        ] {
            check(&keys, Some(&format!("Bearer {key}")), Ok("a"));
        }
        check(
            &keys,
            Some("Bearer other-key-0123456789"),
            Err("unknown API key"),
        );
    }
}
