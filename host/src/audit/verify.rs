//! `backlog-bridge audit verify`: walks the chain over every file, oldest first.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{GENESIS, files, line_hash};

/// The first place the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {why}", file.display())]
pub struct Break {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    pub why: String,
}

/// What an intact chain holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intact {
    pub files: usize,
    pub lines: u64,
}

/// Checks every line's `prev` against the previous line and that `seq` counts up by one.
pub fn verify(dir: &Path) -> anyhow::Result<Result<Intact, Break>> {
    let mut prev_hash = GENESIS.to_owned();
    let mut prev_seq = 0u64;
    let mut lines = 0u64;
    let all = files(dir)?;
    for file in &all {
        let bytes = std::fs::read(file)?;
        let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        if body.is_empty() {
            continue;
        }
        for (i, line) in body.split(|b| *b == b'\n').enumerate() {
            let broken = |why: String| {
                Ok(Err(Break {
                    file: file.clone(),
                    line: i + 1,
                    why,
                }))
            };
            let Ok(v) = serde_json::from_slice::<Value>(line) else {
                return broken("not a JSON line".into());
            };
            let prev = v["prev"].as_str().unwrap_or_default();
            if prev != prev_hash {
                return broken(format!(
                    "`prev` is {prev}, but the line before hashes to {prev_hash} (a line before \
                     it was edited, removed or moved, or this one was)"
                ));
            }
            let seq = v["seq"].as_u64().unwrap_or(0);
            if seq != prev_seq + 1 {
                return broken(format!("`seq` is {seq}, expected {}", prev_seq + 1));
            }
            prev_hash = line_hash(line);
            prev_seq = seq;
            lines += 1;
        }
    }
    Ok(Ok(Intact {
        files: all.len(),
        lines,
    }))
}
