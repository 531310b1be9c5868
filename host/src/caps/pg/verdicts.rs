//! The guard's verdicts, remembered by statement text ([`Verdicts`]).
//!
//! A verdict is a function of the text alone, so a statement seen before needs no second parse:
//! a plugin sends the same few statements (placeholders, not values) over and over, and parsing
//! them was a tenth of a Postgres call's host time. Only statements let through are kept, and at
//! most [`Verdicts::CAPACITY`]: the memory stays bounded whatever a guest sends, and a flood of
//! distinct texts costs it the memo, never a wrong verdict.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use super::guard::{Checked, check};

/// Statements the guard let through, by text.
#[derive(Debug, Default)]
pub struct Verdicts {
    passed: RwLock<HashMap<Box<str>, Checked>>,
}

impl Verdicts {
    /// How many statements are remembered; when full, the memo starts over.
    pub const CAPACITY: usize = 1024;
    /// Longer statements are checked every time (a text this long is not a fixed statement).
    pub const MAX_LEN: usize = 16 * 1024;

    /// [`check`], remembered.
    pub fn check(&self, statement: &str) -> Result<Checked, String> {
        let known = self
            .passed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(statement)
            .copied();
        if let Some(checked) = known {
            return Ok(checked);
        }
        let checked = check(statement)?;
        if statement.len() <= Self::MAX_LEN {
            let mut passed = self.passed.write().unwrap_or_else(PoisonError::into_inner);
            if passed.len() >= Self::CAPACITY {
                passed.clear();
            }
            passed.insert(statement.into(), checked);
        }
        Ok(checked)
    }

    /// How many verdicts are remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.passed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_verdict_is_the_guards_and_refusals_are_never_kept() {
        let memo = Verdicts::default();
        let read = "SELECT id FROM backlog_items WHERE id = $1";
        let write = "DELETE FROM backlog_items WHERE id = $1";
        for _ in 0..2 {
            assert_eq!(memo.check(read), check(read));
            assert_eq!(memo.check(write), check(write));
        }
        assert_eq!(memo.len(), 2);
        let refused = "SELECT set_config('role', 'x', false)";
        for _ in 0..2 {
            assert!(memo.check(refused).is_err());
        }
        assert_eq!(memo.len(), 2, "a refusal is not remembered");
    }

    #[test]
    fn the_memo_stays_bounded() {
        let memo = Verdicts::default();
        for i in 0..Verdicts::CAPACITY + 10 {
            let s = format!("SELECT id FROM backlog_items WHERE id = '{i}'");
            assert!(memo.check(&s).is_ok());
            assert!(memo.len() <= Verdicts::CAPACITY);
        }
        let long = format!(
            "SELECT id FROM backlog_items WHERE id = '{}'",
            "x".repeat(Verdicts::MAX_LEN)
        );
        let before = memo.len();
        assert!(memo.check(&long).is_ok());
        assert_eq!(memo.len(), before, "a long statement is not remembered");
    }
}
