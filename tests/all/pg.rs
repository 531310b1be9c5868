//! A throwaway PostgreSQL 15 cluster for this test binary, and a fresh database per test.
//!
//! [`database()`] starts the cluster on first use (initdb into
//! `<system temp dir>/backlog-bridge-pg-e2e/<pid>`, owned by `postgres` when the tests run as
//! root; not under the checkout, whose parents the `postgres` user may not be able to enter, as
//! in a `mktemp -d` clone; trust
//! auth on loopback, except role [`PASSWORD_USER`] which must log in with its password;
//! `fsync=off`; a free port) and stops it at process exit (`atexit`). A start also stops and
//! removes clusters left behind by test processes that no longer run. Binaries come from
//! `/usr/lib/postgresql/15/bin` (or `PG_BIN_DIR`); `.ci/run` installs them.
//!
//! A test that needs Postgres and cannot get it fails, loudly: it never skips.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Where the PostgreSQL 15 binaries are.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("PG_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

/// A role that authenticates with [`PASSWORD`] (scram-sha-256), for redaction tests.
pub const PASSWORD_USER: &str = "bridge_pw";
/// Its password: must never appear in any output.
pub const PASSWORD: &str = "pw-Secr3t-hunter2";

/// The running cluster.
pub struct Cluster {
    /// `…/backlog-bridge-pg-e2e/<pid>`: the data directory, socket directory and log live here.
    dir: PathBuf,
    pub port: u16,
    /// Whether commands run as the `postgres` user (the tests run as root).
    as_postgres: bool,
}

/// One test's database.
#[derive(Debug, Clone)]
pub struct TestDb {
    pub name: String,
    /// Superuser DSN (trust auth).
    pub dsn: String,
    pub port: u16,
}

impl TestDb {
    /// A DSN for [`PASSWORD_USER`] with its password, URL form.
    pub fn password_dsn(&self) -> String {
        format!(
            "postgresql://{PASSWORD_USER}:{PASSWORD}@127.0.0.1:{}/{}",
            self.port, self.name
        )
    }

    /// A sync client (superuser) on this database.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.dsn, postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.name))
    }

    /// The rows of `sql` (one query), each as JSON text, in the query's order.
    pub fn rows(&self, sql: &str) -> Vec<String> {
        let wrapped = format!("SELECT to_jsonb(q)::text FROM ({sql}) q");
        self.client()
            .query(&wrapped, &[])
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect()
    }

    /// The single value of `sql`, as text.
    pub fn scalar(&self, sql: &str) -> String {
        let mut client = self.client();
        let row = client
            .query_one(&format!("SELECT ({sql})::text"), &[])
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        row.get::<_, Option<String>>(0)
            .unwrap_or_else(|| "NULL".into())
    }

    /// Runs statements (simple protocol).
    pub fn batch(&self, sql: &str) {
        self.client()
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// A fresh, empty database on the cluster of this test binary (started on first use).
#[track_caller]
pub fn database() -> TestDb {
    let cluster = CLUSTER.get_or_init(|| match Cluster::start(None) {
        Ok(c) => c,
        Err(e) => panic!(
            "cannot start the test PostgreSQL 15 cluster (binaries in {}; `.ci/run` installs \
             them): {e}",
            bin_dir().display()
        ),
    });
    cluster.database()
}

/// A cluster of one test's own, which it may stop and start (outage drills); removed on drop.
pub struct PrivateCluster(Cluster);

impl PrivateCluster {
    /// Starts a new cluster (fails the test loudly if it cannot).
    #[track_caller]
    pub fn start() -> PrivateCluster {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let tag = NEXT.fetch_add(1, Ordering::Relaxed);
        match Cluster::start(Some(tag)) {
            Ok(c) => PrivateCluster(c),
            Err(e) => panic!("cannot start a private PostgreSQL 15 cluster: {e}"),
        }
    }

    /// A fresh, empty database on it.
    pub fn database(&self) -> TestDb {
        self.0.database()
    }

    /// Stops the server (fast shutdown), keeping its data; clients now get connection refused.
    #[track_caller]
    pub fn pause(&self) {
        let data = self.0.data();
        let data = path_str(&data).unwrap();
        self.0
            .run("pg_ctl", &["-D", data, "-m", "fast", "-w", "stop"])
            .unwrap_or_else(|e| panic!("stop the private cluster: {e}"));
    }

    /// Starts it again on the same port and data.
    #[track_caller]
    pub fn resume(&self) {
        self.0
            .pg_start()
            .unwrap_or_else(|e| panic!("restart the private cluster: {e}"));
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        self.0.stop();
    }
}

extern "C" fn stop_at_exit() {
    if let Some(c) = CLUSTER.get() {
        c.stop();
    }
}

impl Cluster {
    /// Starts a cluster in `…/backlog-bridge-pg-e2e/<pid>` (the binary's shared one) or
    /// `<pid>.<tag>`. Directories are named by pid, so runs from several checkouts share the
    /// base and clean up each other's leftovers safely.
    fn start(tag: Option<usize>) -> Result<Cluster, String> {
        let base = std::env::temp_dir().join("backlog-bridge-pg-e2e");
        std::fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
        // Enterable by `postgres` whatever the umask.
        std::fs::set_permissions(&base, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| format!("{}: {e}", base.display()))?;
        let as_postgres = unsafe { libc::geteuid() } == 0;
        if tag.is_none() {
            remove_stale(&base, as_postgres);
        }
        let name = match tag {
            None => std::process::id().to_string(),
            Some(t) => format!("{}.{t}", std::process::id()),
        };
        let mut cluster = Cluster {
            dir: base.join(name),
            port: 0,
            as_postgres,
        };
        // A directory of this name is left over from an earlier process with our pid.
        let _ = std::fs::remove_dir_all(&cluster.dir);
        std::fs::create_dir_all(&cluster.dir).map_err(|e| e.to_string())?;
        if as_postgres {
            chown_to_postgres(&cluster.dir)?;
        }
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
        )?;
        let hba = format!(
            "local all all trust\nhost all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\nhost all all 127.0.0.1/32 trust\n"
        );
        std::fs::write(data.join("pg_hba.conf"), hba).map_err(|e| e.to_string())?;
        if tag.is_none() {
            // SAFETY: registering a plain `extern "C" fn` with no captured state.
            unsafe { libc::atexit(stop_at_exit) };
        }
        let mut last = String::new();
        for _ in 0..3 {
            cluster.port = free_port()?;
            match cluster.pg_start() {
                Ok(()) => {
                    cluster.setup_roles()?;
                    return Ok(cluster);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// `pg_ctl start` on this cluster's data directory and port; waits until it accepts
    /// connections.
    fn pg_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=200",
            self.port,
            path_str(&self.dir)?
        );
        let log = self.dir.join("postgres.log");
        let data = self.data();
        self.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data)?,
                "-l",
                path_str(&log)?,
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        )
        .map_err(|e| {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            format!("{e}\nserver log:\n{tail}")
        })
    }

    /// A fresh, empty database owned by [`PASSWORD_USER`].
    fn database(&self) -> TestDb {
        let name = format!("test_{}", NEXT_DB.fetch_add(1, Ordering::Relaxed));
        let db = TestDb {
            dsn: format!("postgresql://postgres@127.0.0.1:{}/{name}", self.port),
            name,
            port: self.port,
        };
        let admin = format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port);
        let mut client = postgres::Client::connect(&admin, postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect to the test cluster: {e}"));
        client
            .batch_execute(&format!(
                "CREATE DATABASE {} OWNER {PASSWORD_USER}",
                db.name
            ))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {}: {e}", db.name));
        db
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn setup_roles(&self) -> Result<(), String> {
        let admin = format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port);
        let mut client =
            postgres::Client::connect(&admin, postgres::NoTls).map_err(|e| e.to_string())?;
        client
            .batch_execute(&format!(
                "CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD '{PASSWORD}'"
            ))
            .map_err(|e| e.to_string())
    }

    /// Stops the server now (immediate shutdown) and removes its directory.
    pub fn stop(&self) {
        if let Ok(data) = path_str(&self.data()) {
            let _ = self.run("pg_ctl", &["-D", data, "-m", "immediate", "-w", "stop"]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Runs a PostgreSQL binary (as `postgres` when root).
    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        run_pg(self.as_postgres, &self.dir, program, args)
    }
}

fn run_pg(as_postgres: bool, cwd: &Path, program: &str, args: &[&str]) -> Result<(), String> {
    let exe = bin_dir().join(program);
    let mut cmd = if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    let out = cmd
        .args(args)
        .current_dir(cwd)
        .env_remove("PGDATA")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Stops and removes clusters of test processes that are gone (a crashed or killed run).
fn remove_stale(base: &Path, as_postgres: bool) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        // `<pid>` or `<pid>.<tag>` (a private cluster).
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.split('.').next())
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // Ours (a private cluster this process already started) or another live run's.
        if pid == std::process::id() as i32 || running(pid) {
            continue;
        }
        let dir = entry.path();
        if let Some(data) = dir.join("data").to_str() {
            let _ = run_pg(
                as_postgres,
                base,
                "pg_ctl",
                &["-D", data, "-m", "immediate", "-w", "stop"],
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Whether process `pid` exists and is not a zombie (a killed test not yet reaped).
fn running(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    });
    exists && !zombie
}

fn chown_to_postgres(dir: &Path) -> Result<(), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .map_err(|e| e.to_string())?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| "there is no `postgres` user to run the cluster as".to_string())
    };
    std::os::unix::fs::chown(dir, Some(id("-u")?), Some(id("-g")?))
        .map_err(|e| format!("chown {}: {e}", dir.display()))
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn path_str(p: &Path) -> Result<&str, String> {
    p.to_str()
        .ok_or_else(|| format!("{} is not UTF-8", p.display()))
}
