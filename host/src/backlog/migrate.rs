//! `backlog-bridge migrate [--dsn DSN] [--dry-run] [--import-jsonl DIR]` (`docs/storage.md`).
//!
//! Creates or completes schema v4 ([`backlog_store::PG_SCHEMA_SQL`], idempotent) in one
//! transaction, and optionally copies a JSONL store into it, by id, in the same transaction:
//! items newer than the database's copy replace it, events are added once, events of items
//! that are not there are skipped. A second run changes nothing. `--dry-run` prints the SQL
//! and what would be imported, and does not connect.
//!
//! Must not: print or log the DSN unredacted; run anything outside that one transaction.
//! Items are copied as the JSONL store serializes them: the host does not interpret them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use backlog_core::model::{Event, Item};
use backlog_core::store::BacklogStore as _;
use backlog_store::{Access, JsonlStore, PG_SCHEMA_SQL, PG_SCHEMA_VERSION};
use serde::Serialize;
use tokio_postgres::Client;
use tokio_postgres::types::{ToSql, Type};

use crate::caps::pg::{ConnectError, Dsn, Limits, Postgres};

/// Items (or events) per import statement.
const CHUNK: usize = 1000;

/// How long one migration statement may run.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(600);

/// Serializes concurrent `migrate` runs on one database (`pg_advisory_xact_lock` key).
const LOCK_KEY: i64 = 0x0062_6163_6b6c_6f67; // "backlog" in ASCII

/// What to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub dsn: Dsn,
    pub dry_run: bool,
    /// A JSONL store directory to copy into Postgres.
    pub import_jsonl: Option<PathBuf>,
}

/// The JSON summary printed on stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The DSN, redacted.
    pub dsn: String,
    pub schema_version: i32,
    /// Whether this run changed the schema (false when it was current, and on a dry run).
    pub applied: bool,
    pub dry_run: bool,
    /// Items inserted or replaced (on a dry run: items found in the JSONL store).
    pub imported_items: u64,
    /// Events inserted (on a dry run: events found).
    pub imported_events: u64,
    /// JSONL items not imported because Postgres holds their `dedupe_key` under another id.
    pub skipped_items: u64,
}

/// Why a migration failed; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{dir}: cannot read the JSONL store: {message}")]
    Jsonl { dir: PathBuf, message: String },
    #[error(
        "the database has schema version {found}, newer than this build's {PG_SCHEMA_VERSION}: \
         use a newer backlog-bridge"
    )]
    Newer { found: i32 },
    #[error("{step} failed, nothing was changed: {message}")]
    Sql { step: &'static str, message: String },
}

impl MigrateError {
    /// The process exit code (`docs/cli.md`): 2 configuration, 3 cannot reach the server, 1 else.
    pub fn exit_code(&self) -> u8 {
        match self {
            MigrateError::Connect(ConnectError::Connect { .. }) => 3,
            MigrateError::Connect(_) | MigrateError::Jsonl { .. } => 2,
            MigrateError::Newer { .. } | MigrateError::Sql { .. } => 1,
        }
    }
}

/// `CREATE … IF NOT EXISTS` of a schema that exists raises NOTICEs ("already exists,
/// skipping"); a re-run of `migrate` should print nothing of the kind.
const QUIET_NOTICES: &str = "SET LOCAL client_min_messages = warning";

/// The SQL a run executes, for `--dry-run`.
pub fn planned_sql(import: Option<(&Path, usize, usize)>) -> String {
    let mut sql = format!(
        "BEGIN;\n{QUIET_NOTICES};\nSELECT pg_advisory_xact_lock({LOCK_KEY});\n{}",
        PG_SCHEMA_SQL.trim_end()
    );
    if let Some((dir, items, events)) = import {
        // The import statements take the rows as parameters: shown commented out, so the
        // output stays a script `psql -f -` runs.
        let commented = |q: &str| {
            q.trim()
                .lines()
                .map(|l| format!("-- {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        sql.push_str(&format!(
            "\n-- import {items} items and {events} events from {}, {CHUNK} per statement:\n{};\n{};",
            dir.display(),
            commented(IMPORT_ITEMS_SQL),
            commented(IMPORT_EVENTS_SQL)
        ));
    }
    sql.push_str("\nCOMMIT;\n");
    sql
}

/// Runs the migration (or, with `dry_run`, only reads the JSONL store).
pub fn run(options: &Options) -> Result<(Summary, String), MigrateError> {
    let store = match &options.import_jsonl {
        Some(dir) => Some(read_jsonl(dir)?),
        None => None,
    };
    let mut summary = Summary {
        dsn: options.dsn.redacted(),
        schema_version: PG_SCHEMA_VERSION,
        applied: false,
        dry_run: options.dry_run,
        imported_items: 0,
        imported_events: 0,
        skipped_items: 0,
    };
    if options.dry_run {
        let import = options
            .import_jsonl
            .as_deref()
            .zip(store.as_ref())
            .map(|(d, s)| {
                let events = s.iter().map(|(_, e)| e.len()).sum();
                (d, s.len(), events)
            });
        if let Some((_, items, events)) = import {
            summary.imported_items = items as u64;
            summary.imported_events = events as u64;
        }
        return Ok((summary, planned_sql(import)));
    }
    let limits = Limits {
        statement_timeout: STATEMENT_TIMEOUT,
        ..Limits::from_env(|k| std::env::var(k).ok()).map_err(|reason| {
            MigrateError::Connect(ConnectError::Dsn {
                reason: format!("bad timeout setting: {reason}"),
            })
        })?
    };
    let pool = Postgres::new(options.dsn.clone(), limits)?;
    let db = Db {
        client: Arc::new(pool.connect()?),
        pool: &pool,
    };
    tracing::info!(dsn = %options.dsn, "migrating to schema version {PG_SCHEMA_VERSION}");
    if let Some(warning) = db.role_warning()? {
        tracing::warn!("migrate: {warning}");
    }
    db.batch("BEGIN", "BEGIN")?;
    db.batch("the session settings", QUIET_NOTICES)?;
    db.batch(
        "the migration lock",
        &format!("SELECT pg_advisory_xact_lock({LOCK_KEY})"),
    )?;
    let before = db.schema_version()?;
    if let Some(found) = before.filter(|v| *v > PG_SCHEMA_VERSION) {
        return Err(MigrateError::Newer { found });
    }
    db.batch("the schema", PG_SCHEMA_SQL)?;
    summary.applied = before != Some(PG_SCHEMA_VERSION);
    if let Some(store) = &store {
        for chunk in store.chunks(CHUNK) {
            let items: Vec<&Item> = chunk.iter().map(|(i, _)| i).collect();
            let [imported, skipped] = db.counts("importing items", IMPORT_ITEMS_SQL, &items)?;
            summary.imported_items += imported;
            summary.skipped_items += skipped;
        }
        let events: Vec<&Event> = store.iter().flat_map(|(_, e)| e).collect();
        for chunk in events.chunks(CHUNK) {
            let [imported, _] = db.counts("importing events", IMPORT_EVENTS_SQL, chunk)?;
            summary.imported_events += imported;
        }
    }
    db.batch("COMMIT", "COMMIT")?;
    if summary.skipped_items > 0 {
        tracing::warn!(
            skipped = summary.skipped_items,
            "migrate: JSONL items skipped: Postgres holds their dedupe_key under another id"
        );
    }
    Ok((summary, String::new()))
}

/// Every item of the JSONL store (last line per id) with its events, oldest first.
fn read_jsonl(dir: &Path) -> Result<Vec<(Item, Vec<Event>)>, MigrateError> {
    let fail = |message: String| MigrateError::Jsonl {
        dir: dir.to_owned(),
        message,
    };
    if !dir.is_dir() {
        return Err(fail("not a directory".into()));
    }
    let warn = Box::new(|m: &str| tracing::warn!("{m}"));
    let mut store = JsonlStore::open(dir.to_owned(), Access::ReadOnly, warn);
    let keys = store.keys(None).map_err(|e| fail(e.to_string()))?;
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        let Some(item) = store.get(&k.id).map_err(|e| fail(e.to_string()))? else {
            continue;
        };
        let events = store
            .events(&k.id, usize::MAX)
            .map_err(|e| fail(e.to_string()))?;
        out.push((item, events));
    }
    Ok(out)
}

/// `$1` is a JSON array of items as stored; returns [imported, skipped for a dedupe_key held
/// by another id]. A row is replaced only by a newer `updated_at`.
const IMPORT_ITEMS_SQL: &str = r#"
WITH incoming AS (
    SELECT e->>'id' AS id, (e->>'created_at')::timestamptz AS created_at,
           (e->>'updated_at')::timestamptz AS updated_at, e->>'env' AS env,
           e->>'service' AS service, e->>'category' AS category, e->>'title' AS title,
           e->>'description' AS description, e->>'priority' AS priority, e->>'status' AS status,
           e->>'owner' AS owner, (e->>'due_date')::date AS due_date, e->>'source' AS source,
           e->>'dedupe_key' AS dedupe_key, e->'evidence_refs' AS evidence_refs,
           e->'tags' AS tags, e->'meta' AS meta
      FROM jsonb_array_elements($1::jsonb) AS x(e)
), clash AS (
    SELECT i.id FROM incoming i
     WHERE EXISTS (SELECT 1 FROM backlog_items b WHERE b.dedupe_key = i.dedupe_key AND b.id <> i.id)
), written AS (
    INSERT INTO backlog_items (id, created_at, updated_at, env, service, category, title,
                               description, priority, status, owner, due_date, source,
                               dedupe_key, evidence_refs, tags, meta)
    SELECT id, created_at, updated_at, env, service, category, title, description, priority,
           status, owner, due_date, source, dedupe_key, evidence_refs, tags, meta
      FROM incoming WHERE id NOT IN (SELECT id FROM clash)
    ON CONFLICT (id) DO UPDATE SET
        created_at = excluded.created_at, updated_at = excluded.updated_at, env = excluded.env,
        service = excluded.service, category = excluded.category, title = excluded.title,
        description = excluded.description, priority = excluded.priority,
        status = excluded.status, owner = excluded.owner, due_date = excluded.due_date,
        source = excluded.source, dedupe_key = excluded.dedupe_key,
        evidence_refs = excluded.evidence_refs, tags = excluded.tags, meta = excluded.meta
      WHERE excluded.updated_at > backlog_items.updated_at
    RETURNING 1
)
SELECT (SELECT count(*) FROM written), (SELECT count(*) FROM clash)
"#;

/// `$1` is a JSON array of events as stored, oldest first; returns [imported, 0]. Events of
/// items that are not in the database are skipped; existing ids are left alone.
const IMPORT_EVENTS_SQL: &str = r#"
WITH written AS (
    INSERT INTO backlog_events (id, item_id, ts, type, actor, message, meta)
    SELECT e->>'id', e->>'item_id', (e->>'ts')::timestamptz, e->>'type', e->>'actor',
           coalesce(e->>'message', ''), coalesce(e->'meta', '{}'::jsonb)
      FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS x(e, n)
     WHERE EXISTS (SELECT 1 FROM backlog_items b WHERE b.id = e->>'item_id')
     ORDER BY n
    ON CONFLICT (id) DO NOTHING
    RETURNING 1
)
SELECT count(*), 0::int8 FROM written
"#;

/// The migration's connection; every step runs on the pool's client runtime.
struct Db<'a> {
    client: Arc<Client>,
    pool: &'a Postgres,
}

impl Db<'_> {
    fn wait(&self) -> Duration {
        STATEMENT_TIMEOUT + Duration::from_secs(5)
    }

    fn batch(&self, step: &'static str, sql: &str) -> Result<(), MigrateError> {
        let client = self.client.clone();
        let sql = sql.to_owned();
        let answer = self
            .pool
            .run(self.wait(), async move { client.batch_execute(&sql).await });
        flatten(step, answer)
    }

    /// Why the login role is riskier than it must be: it is a member of other roles (a
    /// statement could switch to them) or a superuser; `None` when neither.
    fn role_warning(&self) -> Result<Option<String>, MigrateError> {
        let client = self.client.clone();
        let answer = self.pool.run(self.wait(), async move {
            let row = client.query_one(ROLE_SQL, &[]).await?;
            Ok((
                row.try_get::<_, String>(0)?,
                row.try_get::<_, bool>(1)?,
                row.try_get::<_, Option<String>>(2)?,
            ))
        });
        let (role, superuser, member_of) = flatten("checking the login role", answer)?;
        Ok(role_warning(&role, superuser, member_of.as_deref()))
    }

    fn schema_version(&self) -> Result<Option<i32>, MigrateError> {
        let client = self.client.clone();
        let answer = self.pool.run(self.wait(), async move {
            let exists = client
                .query_one(
                    "SELECT to_regclass('backlog_schema_version') IS NOT NULL",
                    &[],
                )
                .await?
                .get::<_, bool>(0);
            if !exists {
                return Ok(None);
            }
            client
                .query_one("SELECT max(version) FROM backlog_schema_version", &[])
                .await?
                .try_get::<_, Option<i32>>(0)
        });
        flatten("reading the schema version", answer)
    }

    /// Runs `sql` with `rows` as a JSON array in `$1`; returns its two int8 columns.
    fn counts<T: Serialize>(
        &self,
        step: &'static str,
        sql: &'static str,
        rows: &[T],
    ) -> Result<[u64; 2], MigrateError> {
        let json = serde_json::to_string(rows).map_err(|e| MigrateError::Sql {
            step,
            message: e.to_string(),
        })?;
        let client = self.client.clone();
        let answer = self.pool.run(self.wait(), async move {
            let params: [(&(dyn ToSql + Sync), Type); 1] = [(&json, Type::TEXT)];
            let row = client.query_typed(sql, &params).await?;
            let first = row.first();
            let get = |i: usize| first.map_or(Ok(0), |r| r.try_get::<_, i64>(i));
            Ok::<_, tokio_postgres::Error>([get(0)?.max(0) as u64, get(1)?.max(0) as u64])
        });
        flatten(step, answer)
    }
}

/// The login role, whether it is a superuser, and the roles it was granted (`pg_auth_members`;
/// any indirect membership goes through one of them), comma-separated.
const ROLE_SQL: &str = "SELECT session_user::text, r.rolsuper, \
     (SELECT string_agg(g.rolname::text, ', ' ORDER BY g.rolname) \
        FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles g ON g.oid = m.roleid \
       WHERE m.member = r.oid) \
     FROM pg_catalog.pg_roles r WHERE r.rolname = session_user";

/// The warning for a login role that can become other roles.
fn role_warning(role: &str, superuser: bool, member_of: Option<&str>) -> Option<String> {
    let fix = "use a login role that is a member of no other role and holds only the grants \
               on the backlog tables (see README, Postgres)";
    if superuser {
        return Some(format!(
            "the login role {role:?} is a superuser: a statement could switch to any role; {fix}"
        ));
    }
    member_of.filter(|m| !m.is_empty()).map(|m| {
        format!(
            "the login role {role:?} is a member of other roles ({m}): a statement could \
             switch to them and use their rights; {fix}"
        )
    })
}

fn flatten<T>(
    step: &'static str,
    answer: Option<Result<T, tokio_postgres::Error>>,
) -> Result<T, MigrateError> {
    match answer {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(MigrateError::Sql {
            step,
            message: match e.as_db_error() {
                Some(db) => format!("SQLSTATE {}: {}", db.code().code(), db.message()),
                None => e.to_string(),
            },
        }),
        None => Err(MigrateError::Sql {
            step,
            message: "the server did not answer in time".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_role_that_can_become_others_is_warned_about() {
        assert_eq!(role_warning("bridge", false, None), None);
        assert_eq!(role_warning("bridge", false, Some("")), None);
        let w = role_warning("bridge", false, Some("auditor, pg_monitor")).unwrap();
        assert!(
            w.contains("member of other roles (auditor, pg_monitor)"),
            "{w}"
        );
        assert!(
            role_warning("postgres", true, None)
                .unwrap()
                .contains("superuser")
        );
    }

    #[test]
    fn dry_run_sql_is_the_schema_in_one_transaction() {
        let sql = planned_sql(None);
        assert!(sql.starts_with("BEGIN;\n"), "{sql}");
        assert!(sql.ends_with("COMMIT;\n"), "{sql}");
        assert!(sql.contains("CREATE TABLE IF NOT EXISTS backlog_items"));
        let with_import = planned_sql(Some((Path::new("ops/backlog"), 3, 7)));
        assert!(with_import.contains("-- import 3 items and 7 events from ops/backlog"));
        assert!(with_import.contains("INSERT INTO backlog_events"));
    }
}
