//! The host's configuration files: the RBAC matrix, the plugin registry and key files, each
//! through the loader `serve` uses (files written to a scratch directory where the loader
//! reads from disk).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use backlog_bridge::config::keys::{self, KeyLine};
use backlog_bridge::config::plugins::{self, PluginEntry};
use backlog_bridge::config::rbac::{self, Denial, MAX_TIMEOUT_S, Matrix};
use backlog_bridge::grants::grants_for;
use backlog_bridge::http::auth::{Keys, MIN_KEY_CHARS};
use serde_json::{Value, json};
use sha2::Digest as _;

thread_local! {
    static SCRATCH: RefCell<Option<tempfile::TempDir>> = const { RefCell::new(None) };
}

/// A scratch directory for this thread (kept for the process: one per fuzzing process).
fn scratch() -> PathBuf {
    SCRATCH.with(|s| {
        s.borrow_mut()
            .get_or_insert_with(|| tempfile::tempdir().expect("a scratch dir"))
            .path()
            .to_owned()
    })
}

fn write(path: &Path, bytes: &[u8], mode: u32) {
    std::fs::write(path, bytes).expect("write a scratch file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The RBAC matrix (YAML text): a matrix that loads can be used (every lookup answers; an
/// agent is authorized exactly when it holds every required entitlement; every timeout is in
/// range and gives a deadline) and round-trips (printed and parsed again: the same matrix).
pub fn check_rbac(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = PathBuf::from("config").join(rbac::FILE);
    let Ok(m) = Matrix::parse(path.clone(), text) else {
        return;
    };
    let yaml = m.to_yaml();
    let back = Matrix::parse(path, &yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
    assert_eq!(back, m, "round trip through\n{yaml}");

    let actions: Vec<(String, String)> = m
        .listed_actions()
        .map(|(t, a)| (t.to_owned(), a.to_owned()))
        .collect();
    let agents: Vec<String> = m.agents().map(|(a, _)| a.to_owned()).collect();
    for (tool, action) in &actions {
        let rule = m.action(tool, action).expect("a listed action has a rule");
        assert!(m.knows_tool(tool));
        assert!(!rule.entitlements.is_empty(), "{tool}.{action}");
        if let Some(t) = rule.timeout_s {
            assert!((1..=MAX_TIMEOUT_S).contains(&t), "{tool}.{action}: {t}");
            assert!(
                Instant::now().checked_add(Duration::from_secs(t)).is_some(),
                "{tool}.{action}: no deadline {t} s ahead"
            );
        }
        for agent in agents.iter().map(String::as_str).chain(["", "ghost agent"]) {
            let held = m.agent(agent).map(|r| r.entitlements.clone());
            let result = m.authorize(agent, tool, action);
            match (&held, &result) {
                (None, Err(Denial::UnknownAgent { .. })) => {}
                (Some(held), Ok(r)) => {
                    assert_eq!(*r, rule);
                    assert!(rule.entitlements.iter().all(|e| held.contains(e)));
                }
                (Some(held), Err(Denial::Missing { missing, .. })) => {
                    assert!(!missing.is_empty());
                    for e in &rule.entitlements {
                        assert_eq!(missing.contains(e), !held.contains(e), "{e}");
                    }
                }
                _ => panic!("{agent} {tool}.{action}: held {held:?}, answer {result:?}"),
            }
            // Every answer prints (logs, HTTP errors).
            if let Err(d) = &result {
                let _ = d.to_string();
            }
        }
    }
    // Unlisted actions are denied to everyone.
    for agent in &agents {
        for (tool, action) in [("", ""), ("no such tool", "x")] {
            if m.action(tool, action).is_none() {
                assert!(matches!(
                    m.authorize(agent, tool, action),
                    Err(Denial::Unlisted { .. })
                ));
            }
        }
    }
}

/// One plugin entry as the loader's caller sees it (every field `serve` reads).
fn plugin_view(p: &PluginEntry) -> Value {
    json!({
        "component": p.component,
        "memory_limit_mib": p.memory_limit_mib,
        "may_use": p.may_use,
        "grants": p.grants,
        "sha256": p.sha256,
        "instances": p.instances.map(|i| i.as_str()),
        "max_pooled": p.max_pooled,
    })
}

/// `config/plugins.yml` (YAML text): a registry that loads can be used (memory limits in
/// range, pins 64 lowercase hex digits that compare against a real digest, grants capped by
/// `may_use`) and round-trips (printed and loaded again: the same entries).
pub fn check_plugins(data: &[u8]) {
    let dir = scratch().join("plugins");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    write(&dir.join(plugins::FILE), data, 0o600);
    let Ok(loaded) = plugins::load(&dir) else {
        return;
    };
    let mut printed = BTreeMap::new();
    for (name, p) in &loaded {
        assert!((1..=4096).contains(&p.memory_limit_mib), "{name}");
        assert!(
            p.reuse().max_pooled <= 32,
            "{name}: max_pooled beyond the pool"
        );
        if let Some(pin) = &p.sha256 {
            assert!(
                pin.len() == 64
                    && pin
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{name}: pin {pin:?}"
            );
            let bytes = name.as_bytes();
            let matches = plugins::check_pin(name, p, Path::new("c.wasm"), bytes).is_ok();
            assert_eq!(matches, *pin == plugins::sha256_hex(bytes), "{name}");
        }
        let entitlements: Vec<String> = p.grants.keys().cloned().collect();
        let g = grants_for(p.may_use, &p.grants, &entitlements);
        assert_eq!(g.intersect(p.may_use), g, "{name}: grants beyond may_use");
        let _ = p.source(&dir);
        printed.insert(name.clone(), plugin_view(p));
    }
    let yaml = serde_yaml_ng::to_string(&json!({ "plugins": printed })).expect("YAML prints");
    write(&dir.join(plugins::FILE), yaml.as_bytes(), 0o600);
    let again = plugins::load(&dir).unwrap_or_else(|e| panic!("{yaml}: {e}"));
    let view = |m: &BTreeMap<String, PluginEntry>| -> BTreeMap<String, Value> {
        m.iter().map(|(k, p)| (k.clone(), plugin_view(p))).collect()
    };
    assert_eq!(view(&again), view(&loaded), "round trip through\n{yaml}");
}

fn sha256(key: &str) -> [u8; 32] {
    sha2::Sha256::digest(key.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A matrix of one agent `a` whose keys are in the file `a.keys` beside it.
fn key_matrix(dir: &Path) -> Matrix {
    let yaml = "tools: {}\nagents:\n  a: { entitlements: [r], api_key_file: a.keys }\n";
    Matrix::parse(dir.join(rbac::FILE), yaml).expect("the key matrix parses")
}

/// The agent the header `Bearer KEY` logs in as, with the key file holding `file`.
fn login(dir: &Path, file: &[u8], key: &str) -> Result<Option<String>, String> {
    write(&dir.join("a.keys"), file, 0o600);
    let keys = Keys::load(&key_matrix(dir), |_| None).map_err(|e| e.to_string())?;
    let header = format!("Bearer {key}");
    Ok(keys
        .authenticate(Some(header.as_bytes()))
        .ok()
        .map(str::to_owned))
}

/// A key file (text): reading never panics; every digest line holds 64 hex digits; a file
/// the server accepts lets in each key listed verbatim, and the key's `sha256:` line lets in
/// the same key; a key not listed gets in with neither.
pub fn check_keys(data: &[u8]) {
    let dir = scratch().join("keys");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join("a.keys");
    write(&path, data, 0o600);
    let Ok(lines) = keys::read("a", &path) else {
        return;
    };
    let text = std::str::from_utf8(data).expect("an accepted key file is text");
    let source: Vec<&str> = text.lines().collect();
    let mut listed = Vec::new();
    let mut digests = Vec::new();
    for (n, line) in &lines {
        let raw = source[n - 1].trim_ascii();
        match line {
            KeyLine::Digest(d) => {
                let hex_text = raw
                    .strip_prefix("sha256:")
                    .expect("a digest line starts with sha256:")
                    .trim_ascii();
                assert!(
                    hex_text.len() == 64 && hex_text.bytes().all(|b| b.is_ascii_hexdigit()),
                    "line {n}: {raw:?} accepted as a digest"
                );
                assert_eq!(hex_text.to_ascii_lowercase(), hex(d), "line {n}");
                digests.push(*d);
            }
            KeyLine::Key(k) => {
                assert_eq!(k, raw, "line {n}");
                listed.push(k.clone());
            }
        }
    }
    let short = listed.iter().any(|k| k.chars().count() < MIN_KEY_CHARS);
    let outsider = "an outsider's key, not listed";
    match login(&dir, data, outsider) {
        Err(e) => assert!(short, "refused without a short key: {e}"),
        Ok(who) => {
            let known = listed.iter().any(|k| k == outsider) || digests.contains(&sha256(outsider));
            assert_eq!(who.is_some(), known, "the outsider's key");
            for k in &listed {
                assert_eq!(login(&dir, data, k), Ok(Some("a".into())), "listed key");
                let line = format!("sha256:{}\n", hex(&sha256(k)));
                assert_eq!(
                    login(&dir, line.as_bytes(), k),
                    Ok(Some("a".into())),
                    "its digest line {line}"
                );
                let other = format!("{k}-other");
                if !listed.contains(&other) {
                    assert_eq!(login(&dir, line.as_bytes(), &other), Ok(None), "{line}");
                }
            }
        }
    }
}
