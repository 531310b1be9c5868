//! The `postgres` backend (`docs/storage.md`): [`PostgresStore`], a [`BacklogStore`] over the tables of
//! schema v4 ([`crate::PG_SCHEMA_SQL`]), reached through the [`Sql`] seam.
//!
//! Owns the SQL text of every backlog statement and the decoding of their rows ([`rows`]).
//! Every statement is a single parameterized statement: no value from a caller or from stored
//! data is ever spliced into SQL text (the only generated text is placeholder numbers). It
//! never sends transaction or session statements: whoever implements [`Sql`] (the host, for
//! the component) wraps each call in one transaction, which makes `write`'s item + events
//! atomic and a read-only grant binding.
//!
//! Wire forms: timestamps travel as RFC 3339 (`timestamp` values, cast `$n::timestamptz`)
//! and are normalized on reading to `YYYY-MM-DDTHH:MM:SS.ffffffZ`; dates as `YYYY-MM-DD`
//! (`date` values); JSONB is read as JSON text (`::text`) and parsed. Typed values rather than
//! `to_char` text, because only they carry year 0000 (1 BC in Postgres) both ways. Ordering
//! of text uses `COLLATE "C"` (byte order, what the other stores sort by), whatever the
//! database's locale.

mod rows;
mod sql;

use std::collections::{HashMap, HashSet};

use backlog_core::dashboard::Dashboard;
use backlog_core::list::{ItemKeys, ListQuery};
use backlog_core::model::{Event, Item};
use backlog_core::policy::Policy;
use backlog_core::store::{self, BacklogStore, Page, StoreError};
use backlog_core::time;

use crate::jsonl::PAGE_MAX_BYTES;

pub use sql::{
    INSUFFICIENT_PRIVILEGE, MIGRATE_HINT, QueryResult, READ_ONLY_TRANSACTION, Sql, SqlError,
    UNIQUE_VIOLATION, Value, lost_race,
};

/// The `BACKLOG_BACKEND` value (and `BacklogStore::backend`) of [`PostgresStore`].
pub const POSTGRES_BACKEND: &str = "postgres";

/// The SELECT list every item read uses (columns of table alias `$p`), in the order
/// [`rows::item`] decodes.
#[rustfmt::skip]
macro_rules! item_columns {
    ($p:literal) => {
        concat!(
            $p, "id, ", $p, "created_at, ", $p, "updated_at, ",
            $p, "env, ", $p, "service, ", $p, "category, ", $p, "title, ",
            $p, "description, ", $p, "priority, ", $p, "status, ", $p, "owner, ",
            $p, "due_date, ", $p, "source, ", $p, "dedupe_key, ",
            $p, "evidence_refs::text, ", $p, "tags::text, ", $p, "meta::text"
        )
    };
}

// After the macro: they use it.
mod dashboard;
mod dashboard_cache;
mod filter;
use filter::ITEM_TEXT_BYTES;
mod params;

use filter::Filter;
use params::{event_params, int, item_params, single_count, text};

/// The columns of an item as [`rows::item`] reads them.
pub const ITEM_COLUMNS: &str = item_columns!("");
/// How many columns [`ITEM_COLUMNS`] has.
const ITEM_COLUMN_COUNT: usize = 17;
/// The columns of an event as [`rows::event`] reads them.
pub const EVENT_COLUMNS: &str = "id, item_id, ts, type, actor, message, meta::text";
/// The columns of [`ItemKeys`] as [`rows::keys`] reads them.
pub const KEY_COLUMNS: &str = "id, env, service, owner, category, priority, status, due_date";

/// The listing order (priority, due_date, id) in byte order.
const LIST_ORDER: &str = r#"priority COLLATE "C", due_date, id COLLATE "C""#;

const GET_SQL: &str = concat!(
    "SELECT ",
    item_columns!(""),
    " FROM backlog_items WHERE id = $1"
);
const FIND_SQL: &str = concat!(
    "SELECT ",
    item_columns!(""),
    " FROM backlog_items WHERE dedupe_key = $1"
);
/// Followed by `($1, …, $n)`: the items holding any of n dedupe keys.
const FIND_MANY_SQL: &str = concat!(
    "SELECT ",
    item_columns!(""),
    " FROM backlog_items WHERE dedupe_key IN"
);
const EVENTS_SQL: &str = "SELECT id, item_id, ts, type, actor, message, meta::text \
     FROM backlog_events WHERE item_id = $1 ORDER BY seq LIMIT $2";
/// The item upsert by id (last write wins). [`PostgresStore::write`] sends it alone or as
/// the data-modifying CTE in front of the events INSERT.
const UPSERT_ITEM_SQL: &str = "INSERT INTO backlog_items (id, created_at, updated_at, env, service, category, title, \
     description, priority, status, owner, due_date, source, dedupe_key, evidence_refs, tags, meta) \
     VALUES ($1, $2::timestamptz, $3::timestamptz, $4, $5, $6, $7, $8, $9, $10, $11, $12::date, $13, $14, \
     $15::jsonb, $16::jsonb, $17::jsonb) \
     ON CONFLICT (id) DO UPDATE SET created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, \
     env = EXCLUDED.env, service = EXCLUDED.service, category = EXCLUDED.category, \
     title = EXCLUDED.title, description = EXCLUDED.description, priority = EXCLUDED.priority, \
     status = EXCLUDED.status, owner = EXCLUDED.owner, due_date = EXCLUDED.due_date, \
     source = EXCLUDED.source, dedupe_key = EXCLUDED.dedupe_key, \
     evidence_refs = EXCLUDED.evidence_refs, tags = EXCLUDED.tags, meta = EXCLUDED.meta";
/// The INSERT of an item whose id this call claimed as new: a taken id fails it (SQLSTATE
/// 23505), never replaces another item.
const INSERT_ITEM_SQL: &str = "INSERT INTO backlog_items (id, created_at, updated_at, env, service, category, title, \
     description, priority, status, owner, due_date, source, dedupe_key, evidence_refs, tags, meta) \
     VALUES ($1, $2::timestamptz, $3::timestamptz, $4, $5, $6, $7, $8, $9, $10, $11, $12::date, $13, $14, \
     $15::jsonb, $16::jsonb, $17::jsonb)";
/// Parameters per item in [`UPSERT_ITEM_SQL`].
const ITEM_PARAMS: usize = 17;
/// Parameters per event row of the events INSERT.
const EVENT_PARAMS: usize = 7;
const CLEANUP_SQL: &str = "DELETE FROM backlog_items WHERE status IN ('done', 'canceled') AND updated_at < $1::timestamptz";
const CLEANUP_DRY_SQL: &str = "SELECT count(*) FROM backlog_items \
     WHERE status IN ('done', 'canceled') AND updated_at < $1::timestamptz";
/// The probe: the schema version this code was written for is recorded.
const PROBE_SQL: &str = "SELECT count(*) FROM backlog_schema_version WHERE version = $1::int8";

/// The Postgres store over an [`Sql`] connection.
///
/// Once calls are scoped with [`BacklogStore::begin_call`], it remembers, for the rest of
/// the call, the items it read or wrote by id and dedupe key (misses too), so the lookups
/// the actions repeat within one call (upsert, then create, by the same key) cost one
/// statement. A call is one transaction: nothing else it could see changes but its own
/// writes, which update what it remembers. Unscoped, every read goes to the database.
#[derive(Debug)]
pub struct PostgresStore<S> {
    sql: S,
    seen: Option<Seen>,
    /// Reads by id and dedupe key lock the rows they find (`FOR UPDATE`) until the call's
    /// transaction ends: set for write calls ([`PostgresStore::with_row_locks`]).
    row_locks: bool,
    /// The last dashboard this store computed, for as long as the database commits nothing
    /// (`pg/dashboard.rs`).
    dashboard: Option<dashboard_cache::Cached>,
}

/// What the current call looked up: items by id and the id holding a dedupe key; `None`
/// values are known misses.
#[derive(Debug, Default)]
struct Seen {
    by_id: HashMap<String, Option<Item>>,
    by_key: HashMap<String, Option<String>>,
    /// Ids this call claimed for new items without a lookup ([`BacklogStore::claim_new_id`]):
    /// their write is a plain INSERT.
    new_ids: HashSet<String>,
}

impl Seen {
    fn item(&mut self, item: &Item) {
        let mut item = item.clone();
        // As read back: timestamps in the fixed-width form.
        for ts in [&mut item.created_at, &mut item.updated_at] {
            if let Some(t) = time::normalize_ts(ts) {
                *ts = t;
            }
        }
        self.by_key
            .insert(item.dedupe_key.clone(), Some(item.id.clone()));
        self.by_id.insert(item.id.clone(), Some(item));
    }

    fn by_key(&self, key: &str) -> Option<Option<Item>> {
        match self.by_key.get(key)? {
            None => Some(None),
            Some(id) => match self.by_id.get(id)? {
                // Only while that item still holds the key.
                Some(item) if item.dedupe_key == key => Some(Some(item.clone())),
                _ => None,
            },
        }
    }
}

impl<S: Sql> PostgresStore<S> {
    /// The name logged on a backend switch (`backlog_store: using PostgresBacklogStore`).
    pub const LOG_NAME: &'static str = "PostgresBacklogStore";

    /// A store running its statements through `sql`. Does no I/O.
    pub fn new(sql: S) -> Self {
        PostgresStore {
            sql,
            seen: None,
            row_locks: false,
            dashboard: None,
        }
    }

    /// With `on`, every read of an item by id or dedupe key (`get`, `find_by_dedupe_key`,
    /// `prefetch_dedupe_keys`) takes the row's lock (`SELECT … FOR UPDATE`) until the call's
    /// transaction ends, so a read-modify-write of one item is never based on a version a
    /// concurrent call is replacing: that call waits, then reads the committed row. For write
    /// calls only (a read-only transaction refuses row locks). The one race row locks cannot
    /// close, two calls creating one new dedupe key, ends with the UNIQUE constraint failing
    /// the second call (SQLSTATE 23505) after the first commits; the host then runs that call
    /// again, and it finds the item (`docs/storage.md`).
    pub fn with_row_locks(mut self, on: bool) -> Self {
        self.row_locks = on;
        self
    }

    /// `statement` with `FOR UPDATE` when this store takes row locks.
    fn locking(&self, statement: &str) -> String {
        match self.row_locks {
            true => format!("{statement} FOR UPDATE"),
            false => statement.to_owned(),
        }
    }

    /// The connection (tests use it to end a transaction).
    pub fn sql_mut(&mut self) -> &mut S {
        &mut self.sql
    }

    /// The connection back.
    pub fn into_inner(self) -> S {
        self.sql
    }

    /// Checks that the server answers and holds schema version [`crate::PG_SCHEMA_VERSION`]:
    /// one cheap statement. `Unavailable` (with the `migrate` hint) if not.
    pub fn probe(&mut self) -> Result<(), StoreError> {
        let r = self.query(
            PROBE_SQL,
            &[Value::Int(i64::from(crate::PG_SCHEMA_VERSION))],
        )?;
        match single_count(&r)? {
            0 => Err(StoreError::Unavailable(format!(
                "{MIGRATE_HINT} (schema version {} is not recorded)",
                crate::PG_SCHEMA_VERSION
            ))),
            _ => Ok(()),
        }
    }

    /// How many of the event ids `ids` are stored (the auto store checks a replay with it).
    pub fn events_present(&mut self, ids: &[String]) -> Result<usize, StoreError> {
        let mut found = 0;
        for chunk in ids.chunks(1000) {
            let ps: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
            let statement = format!(
                "SELECT count(*) FROM backlog_events WHERE id IN ({})",
                ps.join(", ")
            );
            let params: Vec<Value> = chunk.iter().map(|id| text(id)).collect();
            found += single_count(&self.query(&statement, &params)?)?;
        }
        Ok(found)
    }

    fn query(&mut self, statement: &str, params: &[Value]) -> Result<QueryResult, StoreError> {
        self.sql
            .execute(statement, params)
            .map_err(StoreError::from)
    }

    fn one_item(&mut self, statement: &str, key: &str) -> Result<Option<Item>, StoreError> {
        if key.contains('\0') {
            // Text cannot hold NUL in Postgres: nothing stored can match.
            return Ok(None);
        }
        let r = self.query(statement, &[text(key)])?;
        r.rows.first().map(|row| rows::item(row)).transpose()
    }

    /// Forgets what this call looked up (after a failure, whose transaction is gone).
    fn forget(&mut self) {
        if let Some(seen) = self.seen.as_mut() {
            *seen = Seen::default();
        }
    }

    /// Upserts `item` (by id) and inserts `events` (by id; an event id already stored is kept
    /// as is), in one statement.
    fn write_rows(&mut self, item: Option<&Item>, events: &[Event]) -> Result<(), StoreError> {
        let mut params = Vec::with_capacity(ITEM_PARAMS + EVENT_PARAMS * events.len());
        if let Some(item) = item {
            item_params(item, &mut params)?;
        }
        let events_sql = match events.is_empty() {
            true => None,
            false => Some(insert_events_sql(params.len(), events.len())),
        };
        for ev in events {
            event_params(ev, &mut params)?;
        }
        let item_sql = match item {
            Some(item)
                if self
                    .seen
                    .as_ref()
                    .is_some_and(|s| s.new_ids.contains(&item.id)) =>
            {
                INSERT_ITEM_SQL
            }
            _ => UPSERT_ITEM_SQL,
        };
        let statement = match (item.is_some(), events_sql) {
            (false, None) => return Ok(()),
            (true, None) => item_sql.to_owned(),
            (false, Some(evs)) => evs,
            // A data-modifying CTE: one round trip; the events' foreign key is checked at the
            // end of the statement, after the item row exists.
            (true, Some(evs)) => format!("WITH item AS ({item_sql} RETURNING 1) {evs}"),
        };
        // Queued: with the next statement or the COMMIT, in its round trip (an upsert's
        // write is its last statement, so it saves one).
        self.sql
            .queue(&statement, &params)
            .map_err(|e| write_error(StoreError::from(e), item))
    }
}

/// The events INSERT for `n` rows, placeholders starting after `first - 1`.
fn insert_events_sql(first: usize, n: usize) -> String {
    let mut s = String::from(
        "INSERT INTO backlog_events (id, item_id, ts, type, actor, message, meta) VALUES ",
    );
    for row in 0..n {
        let b = first + row * EVENT_PARAMS;
        if row > 0 {
            s.push_str(", ");
        }
        s.push_str(&format!(
            "(${}, ${}, ${}::timestamptz, ${}, ${}, ${}, ${}::jsonb)",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6,
            b + 7
        ));
    }
    s.push_str(" ON CONFLICT (id) DO NOTHING");
    s
}

/// A clearer error for the failures a write can meet under races or bad data.
fn write_error(e: StoreError, item: Option<&Item>) -> StoreError {
    let StoreError::Internal(msg) = e else {
        return e;
    };
    if msg.contains(&format!("SQLSTATE {UNIQUE_VIOLATION}"))
        && msg.contains("backlog_items_pkey")
        && let Some(item) = item
    {
        return StoreError::Internal(format!(
            "the new item's random id {} is taken in Postgres (run the call again): {msg}",
            item.id
        ));
    }
    if msg.contains(&format!("SQLSTATE {UNIQUE_VIOLATION}"))
        && let Some(item) = item
    {
        return StoreError::Internal(format!(
            "dedupe_key {:?} of item {} already names another item in Postgres \
             (a concurrent write?): {msg}",
            item.dedupe_key, item.id
        ));
    }
    if msg.contains("SQLSTATE 23503") {
        return StoreError::Internal(format!(
            "an event refers to an item that does not exist: {msg}"
        ));
    }
    StoreError::Internal(msg)
}

impl<S: Sql> BacklogStore for PostgresStore<S> {
    fn backend(&self) -> &'static str {
        POSTGRES_BACKEND
    }

    fn begin_call(&mut self) {
        self.seen = Some(Seen::default());
    }

    fn get(&mut self, id: &str) -> Result<Option<Item>, StoreError> {
        if let Some(hit) = self.seen.as_ref().and_then(|s| s.by_id.get(id)) {
            return Ok(hit.clone());
        }
        let found = self.one_item(&self.locking(GET_SQL), id)?;
        if let Some(seen) = self.seen.as_mut() {
            match &found {
                Some(item) => seen.item(item),
                None => {
                    seen.by_id.insert(id.to_owned(), None);
                }
            }
        }
        Ok(found)
    }

    /// One `SELECT … WHERE dedupe_key IN (…)` per 500 keys not yet known to this call; the
    /// hits and the misses are remembered for the rest of the call (unscoped: nothing).
    fn prefetch_dedupe_keys(&mut self, keys: &[String]) -> Result<(), StoreError> {
        let Some(seen) = self.seen.as_ref() else {
            return Ok(());
        };
        let mut wanted: Vec<&String> = keys
            .iter()
            .filter(|k| !k.contains('\0') && seen.by_key(k).is_none())
            .collect();
        wanted.sort();
        wanted.dedup();
        for chunk in wanted.chunks(500) {
            let ps: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
            let statement = self.locking(&format!("{FIND_MANY_SQL} ({})", ps.join(", ")));
            let params: Vec<Value> = chunk.iter().map(|k| text(k)).collect();
            let r = self.query(&statement, &params)?;
            let found: Vec<Item> = r
                .rows
                .iter()
                .map(|row| rows::item(row))
                .collect::<Result<_, _>>()?;
            if let Some(seen) = self.seen.as_mut() {
                for key in chunk {
                    seen.by_key.entry((*key).clone()).or_insert(None);
                }
                for item in &found {
                    seen.item(item);
                }
            }
        }
        Ok(())
    }

    /// In a scoped call: yes, without a lookup. The item's write is then a plain INSERT, which a
    /// taken id fails with a unique violation: the host runs the call again (`docs/storage.md`).
    fn claim_new_id(&mut self, id: &str) -> Result<bool, StoreError> {
        match self.seen.as_mut() {
            Some(seen) => {
                seen.new_ids.insert(id.to_owned());
                Ok(true)
            }
            None => Ok(self.get(id)?.is_none()),
        }
    }

    fn find_by_dedupe_key(&mut self, key: &str) -> Result<Option<Item>, StoreError> {
        if let Some(hit) = self.seen.as_ref().and_then(|s| s.by_key(key)) {
            return Ok(hit);
        }
        let found = self.one_item(&self.locking(FIND_SQL), key)?;
        if let Some(seen) = self.seen.as_mut() {
            match &found {
                Some(item) => seen.item(item),
                None => {
                    seen.by_key.insert(key.to_owned(), None);
                }
            }
        }
        Ok(found)
    }

    /// One statement: the page's ids with `count(*) OVER ()` as the total (sorted as narrow
    /// rows), joined back for the page's full items; a second `count(*)` only when the page
    /// comes back empty (offset past the end, or limit 0).
    fn list(&mut self, query: &ListQuery, today: &str) -> Result<Page, StoreError> {
        let mut f = Filter::of(query, today)?;
        if f.impossible {
            return Ok(Page {
                items: Vec::new(),
                total: 0,
            });
        }
        let wh = f.where_clause();
        let limit = f.bind(int(query.limit));
        let offset = f.bind(int(query.offset));
        // Sort and count narrow rows; build full items for the page only, and end the page
        // before the item that would take it past `PAGE_MAX_BYTES` of item text (the JSONL
        // store's budget; at least one item), so a page fits the guest's memory whatever
        // `limit` asks for and whatever an older version stored.
        let statement = format!(
            "WITH page AS (SELECT id, priority, due_date, count(*) OVER () AS total \
             FROM backlog_items{wh} ORDER BY {LIST_ORDER} LIMIT {limit} OFFSET {offset}), \
             sized AS (SELECT page.id, page.total, sum({ITEM_TEXT_BYTES}) OVER (ORDER BY \
             page.priority COLLATE \"C\", page.due_date, page.id COLLATE \"C\" ROWS UNBOUNDED \
             PRECEDING) - ({ITEM_TEXT_BYTES}) AS bytes_before \
             FROM page JOIN backlog_items i ON i.id = page.id) \
             SELECT {}, sized.total FROM sized JOIN backlog_items i ON i.id = sized.id \
             WHERE sized.bytes_before < {PAGE_MAX_BYTES} \
             ORDER BY i.priority COLLATE \"C\", i.due_date, i.id COLLATE \"C\"",
            item_columns!("i.")
        );
        let r = self.query(&statement, &f.params)?;
        let mut items = Vec::with_capacity(r.rows.len());
        let mut total = 0;
        for row in &r.rows {
            items.push(rows::item(row)?);
            let n = row.get(ITEM_COLUMN_COUNT..).unwrap_or_default();
            total = rows::Row::new("backlog_items", n).count("total")?;
        }
        if items.is_empty() && (query.offset > 0 || query.limit == 0) {
            f.params.truncate(f.params.len() - 2);
            let r = self.query(
                &format!("SELECT count(*) FROM backlog_items{wh}"),
                &f.params,
            )?;
            total = single_count(&r)?;
        }
        Ok(Page { items, total })
    }

    fn events(&mut self, item_id: &str, limit: usize) -> Result<Vec<Event>, StoreError> {
        if item_id.contains('\0') {
            return Ok(Vec::new());
        }
        let r = self.query(EVENTS_SQL, &[text(item_id), int(limit)])?;
        r.rows.iter().map(|row| rows::event(row)).collect()
    }

    /// The item upsert by id and the events INSERT, as one statement (a data-modifying CTE)
    /// in the caller's transaction.
    fn write(&mut self, item: Option<&Item>, events: &[Event]) -> Result<(), StoreError> {
        match self.write_rows(item, events) {
            Ok(()) => {
                if let (Some(seen), Some(item)) = (self.seen.as_mut(), item) {
                    // Stored now: a later write of it in this call replaces it.
                    seen.new_ids.remove(&item.id);
                    seen.item(item);
                }
                Ok(())
            }
            Err(e) => {
                self.forget();
                Err(e)
            }
        }
    }

    fn keys(&mut self, env: Option<&str>) -> Result<Vec<ItemKeys>, StoreError> {
        let r = match env {
            Some(e) if e.contains('\0') => return Ok(Vec::new()),
            Some(e) => self.query(
                &format!("SELECT {KEY_COLUMNS} FROM backlog_items WHERE env = $1"),
                &[text(e)],
            )?,
            None => self.query(&format!("SELECT {KEY_COLUMNS} FROM backlog_items"), &[])?,
        };
        r.rows.iter().map(|row| rows::keys(row)).collect()
    }

    /// One `DELETE` (events go by `ON DELETE CASCADE`); a dry run one `SELECT count(*)`.
    fn cleanup(&mut self, cutoff: &str, dry_run: bool) -> Result<usize, StoreError> {
        let at = time::format_ts(store::parse_cutoff(cutoff)?);
        let params = [Value::Timestamp(at)];
        if dry_run {
            let r = self.query(CLEANUP_DRY_SQL, &params)?;
            return single_count(&r);
        }
        self.forget();
        let r = self.query(CLEANUP_SQL, &params)?;
        usize::try_from(r.rows_affected)
            .map_err(|_| StoreError::Internal("postgres: absurd deleted count".into()))
    }

    /// See [`PostgresStore::counted_dashboard`]: equal to the default computation.
    fn dashboard(
        &mut self,
        env: &str,
        today: &str,
        policy: &Policy,
    ) -> Result<Dashboard, StoreError> {
        self.counted_dashboard(env, today, policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_read_the_columns_the_decoders_expect() {
        assert!(EVENTS_SQL.starts_with(&format!("SELECT {EVENT_COLUMNS} FROM ")));
        assert!(GET_SQL.starts_with(&format!("SELECT {ITEM_COLUMNS} FROM ")));
        assert_eq!(UPSERT_ITEM_SQL.matches('$').count(), ITEM_PARAMS);
    }

    #[test]
    fn events_insert_numbers_its_placeholders_after_the_item() {
        assert_eq!(
            insert_events_sql(17, 2),
            "INSERT INTO backlog_events (id, item_id, ts, type, actor, message, meta) VALUES \
             ($18, $19, $20::timestamptz, $21, $22, $23, $24::jsonb), \
             ($25, $26, $27::timestamptz, $28, $29, $30, $31::jsonb) ON CONFLICT (id) DO NOTHING"
        );
    }
}
