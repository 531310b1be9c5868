//! Test support: a throwaway PostgreSQL 15 cluster and a native [`Sql`] over the `postgres`
//! crate that behaves like the host's `backlog-bridge:pg/postgres`.
//!
//! The cluster is initdb'd into a temp directory (chowned to `postgres` and run through
//! `runuser` when the tests run as root), trusts local connections, listens on 127.0.0.1 and a
//! free port, and runs with `fsync=off`. Each test gets its own database with the current schema. A
//! watchdog shell stops the server and removes the directory when the test process exits; an
//! owned [`Cluster`] is also stopped when dropped. A test that cannot start Postgres fails
//! loudly: nothing here skips.
//!
//! [`PgConn`] mirrors the host: the first statement of a call opens a transaction (`BEGIN
//! READ ONLY` for a read grant), [`PgConn::finish`] commits or rolls back, transaction and
//! session statements and multi-statement strings are refused, parameters must match the
//! server's inferred types exactly, and result columns come back as typed values.

#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use backlog_store::{PG_SCHEMA_SQL, PostgresStore, QueryResult, Sql, SqlError, Value};
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls};

/// Where the PostgreSQL 15 binaries are (override with `PG_BIN`).
fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
    dir.join(name)
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// `program args…`, as the `postgres` user when we are root.
fn pg_command(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut c: Command, what: &str) -> Result<(), String> {
    let out = c
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// A running throwaway cluster.
pub struct Cluster {
    pub root: PathBuf,
    pub port: u16,
    data: PathBuf,
    /// Whether drop stops it (the shared cluster relies on the watchdog instead).
    owned: bool,
}

impl Cluster {
    /// initdb + start, on a free port. Panics (fails the test) with the reason if it cannot.
    pub fn start() -> Cluster {
        Self::try_start(true)
            .unwrap_or_else(|e| panic!("cannot start a PostgreSQL 15 test cluster: {e}"))
    }

    fn try_start(owned: bool) -> Result<Cluster, String> {
        let initdb = bin("initdb");
        if !initdb.exists() {
            return Err(format!(
                "{} not found: install PostgreSQL 15 or set PG_BIN",
                initdb.display()
            ));
        }
        let root = tempfile::Builder::new()
            .prefix("backlog-pg-")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?
            .keep();
        if is_root() {
            let mut c = Command::new("chown");
            c.args(["-R", "postgres:postgres"]).arg(&root);
            run(c, "chown")?;
        }
        let data = root.join("data");
        let mut c = pg_command(&initdb);
        c.arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"]);
        run(c, "initdb")?;
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port()?;
            let cluster = Cluster {
                root: root.clone(),
                port,
                data: data.clone(),
                owned,
            };
            match cluster.pg_start() {
                Ok(()) => {
                    cluster.watchdog();
                    return Ok(cluster);
                }
                Err(e) => {
                    // Port taken between probing and starting: try another.
                    std::mem::forget(cluster);
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// `pg_ctl start` (waits until the server accepts connections).
    pub fn pg_start(&self) -> Result<(), String> {
        let mut c = pg_command(&bin("pg_ctl"));
        c.arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", "60", "-l"])
            .arg(self.root.join("server.log"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
                self.port,
                self.root.display()
            ))
            .arg("start");
        run(c, "pg_ctl start")
    }

    /// `pg_ctl stop -m fast`.
    pub fn pg_stop(&self) -> Result<(), String> {
        let mut c = pg_command(&bin("pg_ctl"));
        c.arg("-D")
            .arg(&self.data)
            .args(["-w", "-m", "fast", "stop"]);
        run(c, "pg_ctl stop")
    }

    /// Stops the server and removes its directory once this process is gone.
    fn watchdog(&self) {
        let pg_ctl = bin("pg_ctl");
        let stop = if is_root() {
            format!(
                "runuser -u postgres -- {} -D {} -m immediate stop",
                pg_ctl.display(),
                self.data.display()
            )
        } else {
            format!(
                "{} -D {} -m immediate stop",
                pg_ctl.display(),
                self.data.display()
            )
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop}; rm -rf {root}",
            pid = std::process::id(),
            root = self.root.display()
        );
        let _ = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }

    fn url(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={db} connect_timeout=5",
            self.port
        )
    }

    /// A plain client on `db`.
    pub fn client(&self, db: &str) -> Client {
        Client::connect(&self.url(db), NoTls)
            .unwrap_or_else(|e| panic!("connect to test database {db}: {e}"))
    }

    /// A fresh database named after `test` (unique per process), with the current schema when
    /// `schema`. Returns its name.
    pub fn database(&self, test: &str, schema: bool) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "t_{}_{}",
            test.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = self.client("postgres");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("create database {name}: {e}"));
        if schema {
            // As `migrate` does: the whole file in one transaction.
            let mut c = self.client(&name);
            c.batch_execute(&format!("BEGIN; {PG_SCHEMA_SQL}; COMMIT;"))
                .unwrap_or_else(|e| panic!("apply the schema: {e}"));
        }
        name
    }

    /// A read-write [`PgConn`] on a fresh migrated database for `test`.
    pub fn conn(&self, test: &str) -> PgConn {
        let db = self.database(test, true);
        PgConn::connect(self, &db, false)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.owned {
            let _ = self.pg_stop();
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// The cluster shared by every test of this binary (a database per test).
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match CLUSTER.get_or_init(|| Cluster::try_start(false)) {
        Ok(c) => c,
        Err(e) => panic!("cannot start a PostgreSQL 15 test cluster: {e}"),
    }
}

/// The native [`Sql`]: one connection, the host's transaction discipline.
pub struct PgConn {
    /// The database.
    pub db: String,
    url: String,
    client: Option<Client>,
    read_only: bool,
    in_tx: bool,
    /// Every statement the store sent, in order.
    pub log: Vec<String>,
}

/// Statements the host refuses (first keyword).
const REFUSED: &[&str] = &[
    "BEGIN",
    "START",
    "COMMIT",
    "END",
    "ROLLBACK",
    "ABORT",
    "SAVEPOINT",
    "RELEASE",
    "PREPARE",
    "SET",
    "RESET",
    "DO",
    "CALL",
    "COPY",
    "LISTEN",
    "NOTIFY",
    "LOCK",
    "DISCARD",
    "VACUUM",
];

impl PgConn {
    /// A connection to `db`; with `read_only`, every call runs in `BEGIN READ ONLY`.
    pub fn connect(cluster: &Cluster, db: &str, read_only: bool) -> PgConn {
        PgConn {
            db: db.to_owned(),
            url: cluster.url(db),
            client: None,
            read_only,
            in_tx: false,
            log: Vec::new(),
        }
    }

    /// The same database, read-only.
    pub fn read_only_twin(&self) -> PgConn {
        PgConn {
            db: self.db.clone(),
            url: self.url.clone(),
            client: None,
            read_only: true,
            in_tx: false,
            log: Vec::new(),
        }
    }

    fn client(&mut self) -> Result<&mut Client, SqlError> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.in_tx = false;
            let c = Client::connect(&self.url, NoTls)
                .map_err(|e| SqlError::Unavailable(format!("cannot connect: {e}")))?;
            self.client = Some(c);
        }
        self.client
            .as_mut()
            .ok_or_else(|| SqlError::Unavailable("no connection".into()))
    }

    /// Ends the call: commits when `ok`, else rolls back (what the host does after the guest
    /// returns).
    pub fn finish(&mut self, ok: bool) {
        if !self.in_tx {
            return;
        }
        self.in_tx = false;
        if let Some(c) = self.client.as_mut() {
            let end = if ok { "COMMIT" } else { "ROLLBACK" };
            if let Err(e) = c.batch_execute(end)
                && ok
            {
                panic!("COMMIT failed: {e}");
            }
        }
    }
}

fn db_error(e: postgres::Error) -> SqlError {
    match e.as_db_error() {
        Some(db) => SqlError::Sql {
            sqlstate: db.code().code().to_owned(),
            message: db.message().to_owned(),
        },
        None if e.is_closed()
            || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()) =>
        {
            SqlError::Unavailable(format!("connection lost: {e}"))
        }
        None => SqlError::Sql {
            sqlstate: "XX000".into(),
            message: format!("client: {e}"),
        },
    }
}

fn param(v: &Value) -> Result<Box<dyn ToSql + Sync>, SqlError> {
    let bad = |what: &str, s: &str| SqlError::Sql {
        sqlstate: "22007".into(),
        message: format!("invalid {what} parameter {s:?}"),
    };
    Ok(match v {
        Value::Null => Box::new(Option::<String>::None),
        Value::Bool(b) => Box::new(*b),
        Value::Int(n) => Box::new(*n),
        Value::Float(f) => Box::new(*f),
        Value::Text(s) => Box::new(s.clone()),
        Value::Json(s) => {
            Box::new(serde_json::from_str::<serde_json::Value>(s).map_err(|_| bad("json", s))?)
        }
        Value::Timestamp(s) => Box::new(
            chrono::DateTime::parse_from_rfc3339(s)
                .map_err(|_| bad("timestamp", s))?
                .with_timezone(&chrono::Utc),
        ),
        Value::Date(s) => {
            Box::new(chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| bad("date", s))?)
        }
    })
}

fn column(row: &postgres::Row, i: usize) -> Result<Value, SqlError> {
    let ty = row.columns()[i].type_().clone();
    let get_err = |e: postgres::Error| SqlError::Sql {
        sqlstate: "XX000".into(),
        message: format!("client: column {i}: {e}"),
    };
    macro_rules! get {
        ($t:ty, $wrap:expr) => {
            row.try_get::<_, Option<$t>>(i)
                .map_err(get_err)?
                .map_or(Value::Null, $wrap)
        };
    }
    Ok(match ty {
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => get!(String, Value::Text),
        Type::INT8 => get!(i64, Value::Int),
        Type::INT4 => get!(i32, |n| Value::Int(i64::from(n))),
        Type::INT2 => get!(i16, |n| Value::Int(i64::from(n))),
        Type::BOOL => get!(bool, Value::Bool),
        Type::FLOAT8 => get!(f64, Value::Float),
        Type::JSON | Type::JSONB => get!(serde_json::Value, |j| Value::Json(j.to_string())),
        Type::TIMESTAMPTZ => get!(chrono::DateTime<chrono::Utc>, |t| Value::Timestamp(
            t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        )),
        Type::DATE => get!(chrono::NaiveDate, |d| Value::Date(
            d.format("%Y-%m-%d").to_string()
        )),
        other => {
            return Err(SqlError::Sql {
                sqlstate: "0A000".into(),
                message: format!("result column type {other} is not supported"),
            });
        }
    })
}

impl Sql for PgConn {
    fn execute(&mut self, statement: &str, params: &[Value]) -> Result<QueryResult, SqlError> {
        self.log.push(statement.to_owned());
        let first = statement
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        if REFUSED.contains(&first.as_str()) || statement.contains(';') {
            return Err(SqlError::Refused(format!(
                "transaction/session statements and multiple statements are not allowed: {first}"
            )));
        }
        let read_only = self.read_only;
        if !self.in_tx {
            let begin = if read_only {
                "BEGIN READ ONLY"
            } else {
                "BEGIN"
            };
            self.client()?.batch_execute(begin).map_err(db_error)?;
            self.in_tx = true;
        }
        let client = self.client()?;
        let stmt = client.prepare(statement).map_err(db_error)?;
        let boxed: Vec<Box<dyn ToSql + Sync>> =
            params.iter().map(param).collect::<Result<_, _>>()?;
        let refs: Vec<&(dyn ToSql + Sync)> = boxed.iter().map(|b| b.as_ref()).collect();
        let mut it = client.query_raw(&stmt, refs).map_err(db_error)?;
        let mut rows = Vec::new();
        while let Some(row) = it.next().map_err(db_error)? {
            let mut values = Vec::with_capacity(row.len());
            for i in 0..row.len() {
                values.push(column(&row, i)?);
            }
            rows.push(values);
        }
        let rows_affected = it.rows_affected().unwrap_or(0);
        Ok(QueryResult {
            columns: stmt.columns().iter().map(|c| c.name().to_owned()).collect(),
            rows,
            rows_affected,
        })
    }
}

/// Runs `f` as one host call on `store`: one transaction, committed if `f` succeeds and
/// rolled back if not.
pub fn call<T, E>(
    store: &mut PostgresStore<PgConn>,
    f: impl FnOnce(&mut PostgresStore<PgConn>) -> Result<T, E>,
) -> Result<T, E> {
    backlog_core::store::BacklogStore::begin_call(store);
    let r = f(store);
    store.sql_mut().finish(r.is_ok());
    r
}

/// Rows in `table` (through a separate connection).
pub fn count(cluster: &Cluster, db: &str, table: &str) -> i64 {
    let mut c = cluster.client(db);
    c.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .map(|r| r.get::<_, i64>(0))
        .unwrap_or_else(|e| panic!("count {table}: {e}"))
}
