//! The limits of the host's Postgres access, and their settings in the environment.

use std::time::Duration;

/// Limits of the host's Postgres access (defaults as documented in `docs/configuration.md`); the timeouts can be set
/// with [`CONNECT_TIMEOUT_VAR`] and [`STATEMENT_TIMEOUT_VAR`] ([`Limits::from_env`]).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Server-side `statement_timeout` of every session.
    pub statement_timeout: Duration,
    /// Most rows one statement may return.
    pub max_rows: usize,
    /// Most bytes (raw column data) one statement may return.
    pub max_bytes: usize,
    /// Longest wait for a connection (connecting, or a free slot).
    pub connect_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// After a failed connect, how long calls answer `unavailable` without trying again.
    pub retry_after: Duration,
}

/// The connect timeout, in milliseconds.
pub const CONNECT_TIMEOUT_VAR: &str = "BACKLOG_POSTGRES_CONNECT_TIMEOUT_MS";
/// The server-side statement timeout, in milliseconds.
pub const STATEMENT_TIMEOUT_VAR: &str = "BACKLOG_POSTGRES_STATEMENT_TIMEOUT_MS";

impl Limits {
    /// The defaults, with the timeouts of [`CONNECT_TIMEOUT_VAR`] and
    /// [`STATEMENT_TIMEOUT_VAR`] when set (1 ms ..= 1 h; anything else is refused).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Limits, String> {
        let ms = |name: &str| -> Result<Option<Duration>, String> {
            let Some(v) = var(name).filter(|v| !v.trim().is_empty()) else {
                return Ok(None);
            };
            match v.trim().parse::<u64>() {
                Ok(n) if (1..=3_600_000).contains(&n) => Ok(Some(Duration::from_millis(n))),
                _ => Err(format!(
                    "{name}={v:?}: must be a whole number of milliseconds from 1 to 3600000"
                )),
            }
        };
        let mut limits = Limits::default();
        if let Some(t) = ms(CONNECT_TIMEOUT_VAR)? {
            limits.connect_timeout = t;
        }
        if let Some(t) = ms(STATEMENT_TIMEOUT_VAR)? {
            limits.statement_timeout = t;
        }
        Ok(limits)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            statement_timeout: Duration::from_secs(5),
            max_rows: 100_000,
            max_bytes: 64 << 20,
            connect_timeout: Duration::from_secs(2),
            max_connections: 16,
            retry_after: Duration::from_secs(5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_come_from_the_environment_and_bad_values_are_refused() {
        let d = Limits::from_env(|_| None).unwrap();
        assert!(d.connect_timeout <= Duration::from_secs(2));
        assert_eq!(d.statement_timeout, Duration::from_secs(5));
        let set = Limits::from_env(|k| match k {
            CONNECT_TIMEOUT_VAR => Some("750".into()),
            STATEMENT_TIMEOUT_VAR => Some(" 1500 ".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(set.connect_timeout, Duration::from_millis(750));
        assert_eq!(set.statement_timeout, Duration::from_millis(1500));
        for bad in ["0", "-1", "2s", "3600001"] {
            let e = Limits::from_env(|k| (k == CONNECT_TIMEOUT_VAR).then(|| bad.to_owned()))
                .unwrap_err();
            assert!(e.contains(CONNECT_TIMEOUT_VAR), "{e}");
        }
    }
}
