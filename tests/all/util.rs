//! The harness: a temp directory with its own config, ops dir and component cache, and
//! helpers that run the real binary.

#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_backlog-bridge");
/// The hostile test component.
pub const HOSTILE_WASM: &str = env!("HOSTILE_GUEST_WASM");
/// The backlog_tool component.
pub const BACKLOG_TOOL_WASM: &str = env!("BACKLOG_TOOL_WASM");

/// The repository's shipped config directory.
pub fn repo_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}

/// A component cache shared by the tests of this run (compiling once is enough).
pub fn shared_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache")
}

/// One isolated bridge installation.
pub struct Env {
    pub tmp: tempfile::TempDir,
    pub config: PathBuf,
    pub ops: PathBuf,
    pub cache: PathBuf,
    pub vars: Vec<(String, String)>,
    /// The store the installation runs on.
    pub backend: Backend,
    /// Its database, on the `postgres` and `auto` backends.
    pub db: Option<crate::pg::TestDb>,
}

/// The stores the action suite runs on (`BACKLOG_BACKEND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Jsonl,
    Postgres,
    /// Auto with a live, migrated Postgres: it must behave exactly like `postgres`.
    Auto,
}

impl Backend {
    /// The name the dashboard reports for the store that answered.
    pub fn store_name(self) -> &'static str {
        match self {
            Backend::Jsonl => "jsonl",
            Backend::Postgres | Backend::Auto => "postgres",
        }
    }
}

/// Runs each listed `fn(Backend)` as one test per backend: `jsonl::NAME`, `postgres::NAME`,
/// `auto::NAME` — one suite, not three copies.
#[macro_export]
macro_rules! backend_suite {
    ($($name:ident),* $(,)?) => {
        mod jsonl {
            $(#[test] fn $name() { super::$name($crate::util::Backend::Jsonl) })*
        }
        mod postgres {
            $(#[test] fn $name() { super::$name($crate::util::Backend::Postgres) })*
        }
        mod auto {
            $(#[test] fn $name() { super::$name($crate::util::Backend::Auto) })*
        }
    };
}

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Env {
    /// The shipped config, an empty ops dir, the shared cache, the JSONL backend.
    pub fn new() -> Env {
        let tmp = tempfile::tempdir().expect("tempdir");
        let config = tmp.path().join("config");
        let ops = tmp.path().join("ops");
        std::fs::create_dir_all(&config).unwrap();
        std::fs::create_dir_all(&ops).unwrap();
        for f in ["rbac_tools_matrix.yml", "plugins.yml", "backlog_policy.yml"] {
            std::fs::copy(repo_config().join(f), config.join(f)).unwrap();
        }
        Env {
            tmp,
            config,
            ops,
            cache: shared_cache(),
            vars: vec![
                ("BACKLOG_BACKEND".into(), "jsonl".into()),
                ("BACKLOG_BRIDGE_NOW".into(), "2026-11-27T10:00:00Z".into()),
            ],
            backend: Backend::Jsonl,
            db: None,
        }
    }

    /// A fresh installation on `backend`: for `postgres` and `auto`, a fresh database of the
    /// test cluster, migrated.
    pub fn on(backend: Backend) -> Env {
        let env = Env::new();
        if backend == Backend::Jsonl {
            return env;
        }
        let db = crate::pg::database();
        let mut env = env.with_postgres(&db);
        if backend == Backend::Auto {
            env = env.var("BACKLOG_BACKEND", "auto");
        }
        let run = env.migrate(&[]);
        assert_eq!(run.code, 0, "migrate: {run:?}");
        env.backend = backend;
        env.db = Some(db);
        env
    }

    /// Loads a JSONL store (`items.jsonl`, `events.jsonl` in `dir`) as this installation's
    /// backlog: copied into the backlog directory, or imported with `migrate --import-jsonl`.
    pub fn seed_jsonl(&self, dir: &Path) {
        if self.db.is_none() {
            std::fs::create_dir_all(self.backlog_dir()).unwrap();
            for f in ["items.jsonl", "events.jsonl"] {
                std::fs::copy(dir.join(f), self.backlog_dir().join(f)).unwrap();
            }
            return;
        }
        let run = self.migrate(&["--import-jsonl", dir.to_str().unwrap()]);
        assert_eq!(run.code, 0, "import: {run:?}");
    }

    /// Everything the store holds, as the actions show it: every item (by id) with its events.
    /// Equal states mean nothing was written, whatever the backend.
    pub fn state(&self) -> Vec<Value> {
        let mut items = Vec::new();
        let mut offset = 0;
        loop {
            let page = self.ok("list", serde_json::json!({"limit": 1000, "offset": offset}));
            items.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["next_offset"].as_u64() {
                Some(n) => offset = n,
                None => break,
            }
        }
        items.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        for item in &mut items {
            let id = item["id"].clone();
            item["events"] =
                self.ok("events", serde_json::json!({"id": id, "limit": 1000}))["events"].clone();
        }
        items
    }

    /// Also registers the hostile test component as tool `hostile` (`per-caller`, so its warm
    /// instances are reused as a builtin's are): `write_backlog` needs
    /// only `tools.backlog.read` (a read-only grant); `pg_read`/`pg_slow` get Postgres
    /// read-only, `pg_write`/`pg_slow_write` read-write, `pg_none` no Postgres (its
    /// entitlement, `tools.backlog.admin`, gives this plugin nothing); the `slow` ones have
    /// a time limit of 1 s.
    pub fn with_hostile(self) -> Env {
        let plugins = format!(
            "
  hostile:
    component: {HOSTILE_WASM}
    memory_limit_mib: 32
    instances: per-caller
    may_use:   {{ backlog_dir: read_write, postgres: read_write }}
    grants:
      tools.backlog.read:  {{ backlog_dir: read, postgres: read }}
      tools.backlog.write: {{ backlog_dir: read_write, postgres: read_write }}
"
        );
        append(&self.config.join("plugins.yml"), &plugins);
        let matrix = std::fs::read_to_string(self.config.join("rbac_tools_matrix.yml")).unwrap();
        let matrix = matrix.replacen(
            "tools:\n",
            "tools:
  hostile:
    actions:
      write_backlog: { entitlements: [tools.backlog.read] }
      spin:          { entitlements: [tools.backlog.read], timeout_s: 1 }
      alloc:         { entitlements: [tools.backlog.read] }
      escape:        { entitlements: [tools.backlog.write] }
      panic:         { entitlements: [tools.backlog.read] }
      ok:            { entitlements: [tools.backlog.read] }
      pg_read:       { entitlements: [tools.backlog.read] }
      pg_write:      { entitlements: [tools.backlog.write] }
      pg_none:       { entitlements: [tools.backlog.admin] }
      pg_slow:       { entitlements: [tools.backlog.read], timeout_s: 1 }
      pg_slow_write: { entitlements: [tools.backlog.write], timeout_s: 1 }
",
            1,
        );
        std::fs::write(self.config.join("rbac_tools_matrix.yml"), matrix).unwrap();
        self
    }

    /// The Postgres backend on `db` (`BACKLOG_BACKEND=postgres`, `BACKLOG_POSTGRES_DSN`).
    pub fn with_postgres(self, db: &crate::pg::TestDb) -> Env {
        self.var("BACKLOG_BACKEND", "postgres")
            .var("BACKLOG_POSTGRES_DSN", &db.dsn)
    }

    /// `migrate ARGS…` with this installation's environment.
    pub fn migrate(&self, args: &[&str]) -> Run {
        self.cmd()
            .arg("migrate")
            .args(args)
            .output()
            .expect("run binary")
            .into()
    }

    pub fn var(mut self, k: &str, v: &str) -> Env {
        self.vars.retain(|(key, _)| key != k);
        self.vars.push((k.into(), v.into()));
        self
    }

    pub fn backlog_dir(&self) -> PathBuf {
        self.ops.join("backlog")
    }

    /// A command for the binary with this installation's flags and environment.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config-dir")
            .arg(&self.config)
            .arg("--ops-dir")
            .arg(&self.ops);
        self.environment(&mut cmd);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// This installation's environment on `cmd` (and nothing of the caller's `BACKLOG_*`,
    /// keys or log settings); for the binary, or for a client that launches it.
    pub fn environment(&self, cmd: &mut Command) {
        for (k, _) in std::env::vars() {
            if k.starts_with("BACKLOG_")
                || k.ends_with("_API_KEY")
                || k == "RUST_LOG"
                || k == "POSTGRES_DSN"
            {
                cmd.env_remove(k);
            }
        }
        cmd.env("BACKLOG_BRIDGE_CACHE_DIR", &self.cache);
        // Temporary files of the process (the `memory` backend's directory) go with this
        // installation, so a process the test kills leaves nothing in the system's /tmp.
        cmd.env("TMPDIR", self.tmp.path());
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
    }

    /// `call TOOL ACTION --params-json P --agent A`.
    pub fn call(&self, agent: &str, tool: &str, action: &str, params: &Value) -> Run {
        self.cmd()
            .args(["call", tool, action, "--agent", agent, "--params-json"])
            .arg(params.to_string())
            .output()
            .expect("run binary")
            .into()
    }

    /// A successful call's result.
    #[track_caller]
    pub fn ok(&self, action: &str, params: Value) -> Value {
        let run = self.call("operator", "backlog_tool", action, &params);
        assert_eq!(run.code, 0, "{action} {params} failed: {run:?}");
        run.json()
    }

    /// A failed call's error object; asserts the code and exit status 1.
    #[track_caller]
    pub fn err(&self, action: &str, params: Value, code: &str) -> Value {
        let run = self.call("operator", "backlog_tool", action, &params);
        let json = run.json();
        assert_eq!(json["code"], code, "{action} {params}: {run:?}");
        assert_eq!(run.code, 1, "{run:?}");
        assert!(
            json["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{json}"
        );
        json
    }

    /// Runs `batch`: one request per line in, one result per line out, in one process.
    pub fn batch(&self, lines: &[Value]) -> Vec<Value> {
        let mut child = self
            .cmd()
            .arg("batch")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn batch");
        // Fed from a thread: a long batch's answers fill the stdout pipe while its requests
        // are still being written.
        let mut stdin = child.stdin.take().unwrap();
        let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let feeder = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let out: Run = child.wait_with_output().unwrap().into();
        feeder.join().unwrap().unwrap();
        assert_eq!(out.code, 0, "{out:?}");
        out.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

pub fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Every file of a directory with its bytes, for byte-identity checks.
pub fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}
