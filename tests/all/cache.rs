//! Compiled components are cached on disk; a second start does not recompile.

use serde_json::json;

use crate::util::Env;

fn entries(dir: &std::path::Path) -> Vec<(String, std::time::SystemTime)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().modified().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn second_start_loads_from_cache() {
    let mut env = Env::new().var("RUST_LOG", "backlog_bridge=debug");
    env.cache = env.tmp.path().join("cache");
    let first = env.call("operator", "backlog_tool", "list", &json!({}));
    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        first.stderr.contains("compiled component"),
        "{}",
        first.stderr
    );
    let after_first = entries(&env.cache);
    assert_eq!(after_first.len(), 1, "one cache entry: {after_first:?}");

    let second = env.call("operator", "backlog_tool", "list", &json!({}));
    assert_eq!(second.code, 0, "{second:?}");
    assert!(
        second.stderr.contains("loaded cached component"),
        "{}",
        second.stderr
    );
    assert!(
        !second.stderr.contains("compiled component"),
        "{}",
        second.stderr
    );
    assert_eq!(entries(&env.cache), after_first, "cache untouched");
}
