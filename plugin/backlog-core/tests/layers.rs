//! The module layering written in `src/lib.rs` holds: every module imports (`crate::x`) only
//! modules of a lower layer or earlier in its own layer, so there are no import circles. Unit
//! tests (`#[cfg(test)]` and `*/tests.rs`, `*/tests/*`) and comments are not counted.

use std::collections::BTreeSet;
use std::path::Path;

/// The layers of `src/lib.rs`, lowest first; within a layer, a module may use the ones before it.
const LAYERS: &[&[&str]] = &[
    &["error", "time", "ids"],
    &["model", "list"],
    &["validate", "policy"],
    &["dashboard", "params", "digest"],
    &["store", "mem"],
    &["ctx", "upsert", "schema"],
    &["generate", "actions"],
];

fn rank(module: &str) -> Option<(usize, usize)> {
    LAYERS.iter().enumerate().find_map(|(layer, mods)| {
        mods.iter()
            .position(|m| *m == module)
            .map(|pos| (layer, pos))
    })
}

/// The modules `text` names as `crate::x`, outside comments and before `#[cfg(test)]`.
fn uses(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut out = BTreeSet::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for part in line.split("crate::").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src").flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "tests" || name == "tests.rs" {
            continue;
        }
        if path.is_dir() {
            files(&path, out);
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_import_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut seen = BTreeSet::new();
    let mut wrong = Vec::new();
    for path in all {
        let rel = path.strip_prefix(&src).expect("under src");
        let top = rel
            .components()
            .next()
            .map(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_owned()
            })
            .unwrap_or_default();
        if top == "lib" {
            continue;
        }
        seen.insert(top.clone());
        let Some(mine) = rank(&top) else {
            wrong.push(format!("{top} is in no layer of lib.rs"));
            continue;
        };
        let text = std::fs::read_to_string(&path).expect("read module");
        for used in uses(&text) {
            if used == top {
                continue;
            }
            match rank(&used) {
                Some(theirs) if theirs < mine => {}
                _ => wrong.push(format!("{} uses crate::{used}", rel.display())),
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
    let listed: BTreeSet<String> = LAYERS
        .iter()
        .flat_map(|l| l.iter().map(|m| m.to_string()))
        .collect();
    assert_eq!(seen, listed, "LAYERS and the modules differ");
}
