//! Bearer-key authentication (SPEC §9, §10): which agent a request speaks for.
//!
//! Owns the agents' API keys, read once at start-up from the environment variables that
//! `config/rbac_tools_matrix.yml` names (`agents.<id>.api_key_env`). An agent whose variable is
//! unset or empty cannot log in over HTTP.
//!
//! Must not: log, echo or store a key in clear (only SHA-256 digests are kept, and log lines
//! name the variables, never their values); compare keys in a way whose timing depends on how
//! much of a key matched (digests are compared in full, against every agent).

use sha2::{Digest as _, Sha256};

use crate::config::rbac::Matrix;
use crate::error::{Code, ToolError};

/// The keys agents log in with, as digests.
pub struct Keys {
    agents: Vec<(String, [u8; 32])>,
}

/// Two agents whose key variables hold the same key: a request could not say who it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "agents `{first}` and `{second}` have the same API key (${first_var} and ${second_var}); \
     give each agent its own key"
)]
pub struct SharedKey {
    pub first: String,
    pub first_var: String,
    pub second: String,
    pub second_var: String,
}

impl Keys {
    /// Reads each agent's key from its variable through `var` (the process environment in
    /// production). Logs which agents can log in and which variables are unset.
    pub fn load(matrix: &Matrix, var: impl Fn(&str) -> Option<String>) -> Result<Keys, SharedKey> {
        let mut agents: Vec<(String, [u8; 32], String)> = Vec::new();
        for (agent, rule) in matrix.agents() {
            let Some(name) = &rule.api_key_env else {
                continue;
            };
            match var(name).filter(|k| !k.is_empty()) {
                Some(key) => {
                    let digest = digest(&key);
                    if let Some((other, _, other_var)) =
                        agents.iter().find(|(_, d, _)| constant_time_eq(d, &digest))
                    {
                        return Err(SharedKey {
                            first: other.clone(),
                            first_var: other_var.clone(),
                            second: agent.to_owned(),
                            second_var: name.clone(),
                        });
                    }
                    agents.push((agent.to_owned(), digest, name.clone()));
                }
                None => tracing::warn!(
                    agent,
                    "router: ${name} is not set: agent `{agent}` cannot log in over HTTP"
                ),
            }
        }
        let names: Vec<&str> = agents.iter().map(|(a, ..)| a.as_str()).collect();
        tracing::info!("router: agents with an API key: {}", names.join(", "));
        Ok(Keys {
            agents: agents.into_iter().map(|(a, d, _)| (a, d)).collect(),
        })
    }

    /// The agent whose key the `Authorization` header value carries (`Bearer <key>`), or the
    /// spec's 401 `unauthenticated` error.
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
                let (scheme, key) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
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
            "A_KEY" => Some("alpha-key".into()),
            "B_KEY" => Some(String::new()),
            _ => None,
        })
        .unwrap();
        check(&keys, Some("Bearer alpha-key"), Ok("a"));
        check(&keys, Some("bearer  alpha-key "), Ok("a"));
        check(&keys, None, Err("missing"));
        check(&keys, Some("Bearer"), Err("not `Bearer"));
        check(&keys, Some("Bearer "), Err("not `Bearer"));
        check(&keys, Some("Basic alpha-key"), Err("not `Bearer"));
        check(&keys, Some("Bearer alpha-ke"), Err("unknown API key"));
        check(&keys, Some("Bearer alpha-keyy"), Err("unknown API key"));
        // B_KEY is empty: agent `b` cannot log in, not even with an empty key.
        check(&keys, Some("Bearer  "), Err("not `Bearer"));
    }

    #[test]
    fn two_agents_with_one_key_are_refused() {
        let err = Keys::load(&matrix(), |_| Some("k3y-value".into()))
            .err()
            .unwrap();
        assert_eq!((err.first.as_str(), err.second.as_str()), ("a", "b"));
        assert!(!err.to_string().contains("k3y-value"), "{err}");
    }
}
