//! The dashboard on Postgres: counts kept by the database in every write's transaction, the
//! overdue page from a partial index. Equal to the default computation for every env, day and
//! policy (the property test in `tests/pg_dashboard.rs` checks it after random writes and
//! cleanups).

use backlog_core::dashboard::{
    Dashboard, DashboardCounts, PriorityCounts, ServiceCount, StatusCounts,
};
use backlog_core::model::{Item, Priority};
use backlog_core::policy::Policy;
use backlog_core::store::{BacklogStore as _, StoreError};

use super::dashboard_cache::Cached;
use super::params::{int, pg_date, text};
use super::{PostgresStore, Sql, Value, rows};

/// Every count and the top services of one env (`$1`) on day `$2`, in one statement, without
/// a scan of the env's items: the counts from `backlog_counts` (one row per service, status
/// and priority, kept by the schema's triggers in every write's transaction), the overdue count
/// and overdue P0 count from `backlog_due_counts` (live items per due date and priority, kept
/// by the same triggers: a sum over the env's past due dates); `$3` caps `top_services`. The columns as [`dashboard_counts`] decodes them.
const DASHBOARD_COUNTS_SQL: &str = r#"WITH c AS (
    SELECT service, status, priority, n FROM backlog_counts WHERE env = $1 AND n <> 0
), late AS (
    SELECT coalesce(sum(n), 0) AS overdue, coalesce(sum(n) FILTER (WHERE priority = 'P0'), 0) AS overdue_p0
      FROM backlog_due_counts
     WHERE env = $1 AND due_date < $2::date
)
SELECT coalesce(sum(n), 0)::int8,
       coalesce(sum(n) FILTER (WHERE status = 'open'), 0)::int8,
       coalesce(sum(n) FILTER (WHERE status = 'in_progress'), 0)::int8,
       coalesce(sum(n) FILTER (WHERE status = 'blocked'), 0)::int8,
       coalesce(sum(n) FILTER (WHERE status = 'done'), 0)::int8,
       coalesce(sum(n) FILTER (WHERE status = 'canceled'), 0)::int8,
       coalesce(sum(n) FILTER (WHERE priority = 'P0'), 0)::int8,
       coalesce(sum(n) FILTER (WHERE priority = 'P1'), 0)::int8,
       coalesce(sum(n) FILTER (WHERE priority = 'P2'), 0)::int8,
       coalesce(sum(n) FILTER (WHERE priority = 'P3'), 0)::int8,
       (SELECT overdue FROM late)::int8,
       (SELECT overdue_p0 FROM late)::int8,
       (SELECT coalesce(json_agg(json_build_array(service, live) ORDER BY live DESC, service COLLATE "C"), '[]')::text
          FROM (SELECT service, sum(n)::int8 AS live FROM c WHERE status NOT IN ('done', 'canceled')
                 GROUP BY service HAVING sum(n) > 0
                 ORDER BY live DESC, service COLLATE "C" LIMIT $3) top)
  FROM c"#;
/// Ids of every overdue P0 item of env `$1` on day `$2`, in overdue order, as a JSON array;
/// needed only when the overdue page does not already hold all of them. The live P0 index
/// (schema v4) holds exactly these rows in this order; its predicate is spelled the same
/// here so the planner can use it (the aggregate takes the rows as the subquery sorts them).
const DASHBOARD_P0_SQL: &str = r#"SELECT coalesce(json_agg(id), '[]')::text
  FROM (SELECT id FROM backlog_items
         WHERE env = $1 AND priority = 'P0' AND status NOT IN ('done', 'canceled')
           AND due_date < $2::date
         ORDER BY due_date, id COLLATE "C") p0"#;
/// The first `$3` overdue items of env `$1` on day `$2`, by due_date, priority, id.
const DASHBOARD_OVERDUE_SQL: &str = concat!(
    "SELECT ",
    item_columns!(""),
    " FROM backlog_items WHERE env = $1 AND status NOT IN ('done', 'canceled') AND due_date < $2::date",
    r#" ORDER BY due_date, priority COLLATE "C", id COLLATE "C" LIMIT $3"#
);

/// The server's snapshot as text: which transactions have committed. It changes with every
/// commit (and abort) on the server, in any database, and never takes an earlier value again,
/// so an answer computed after reading it is still the answer while it reads the same.
const SNAPSHOT_SQL: &str = "SELECT pg_current_snapshot()::text";

impl<S: Sql> PostgresStore<S> {
    /// At most four statements, none of which scans the env's items: for a read-only call
    /// the server's snapshot ([`SNAPSHOT_SQL`]) — and nothing more when it is the one this
    /// store's last dashboard was computed after, for the same env, day and limits: that
    /// answer again ([`Cached`]); then every count and the top services
    /// ([`DASHBOARD_COUNTS_SQL`]); the overdue page ([`DASHBOARD_OVERDUE_SQL`]) when something
    /// is overdue; the overdue P0 ids ([`DASHBOARD_P0_SQL`]) only when some of them fall
    /// beyond that page. Equal to the default computation
    /// ([`BacklogStore::dashboard`]'s default).
    pub(super) fn counted_dashboard(
        &mut self,
        env: &str,
        today: &str,
        policy: &Policy,
    ) -> Result<Dashboard, StoreError> {
        let day = pg_date(today).ok_or_else(|| {
            StoreError::Internal(format!("today {today:?} is not a YYYY-MM-DD date"))
        })?;
        if env.contains('\0') {
            // Nothing stored can have this env.
            let counts = DashboardCounts::default();
            return Ok(Dashboard::from_counts(
                env,
                self.backend(),
                counts,
                Vec::new(),
                policy,
            ));
        }
        // A read-only call answers from the last dashboard while nothing has committed since
        // (a write call's own uncommitted rows would not show in the snapshot: it computes).
        let snapshot = match self.row_locks {
            true => None,
            false => Some(self.snapshot()?),
        };
        let key = (
            env.to_owned(),
            today.to_owned(),
            policy.dashboard.top_services,
            policy.dashboard.overdue_limit,
        );
        if let Some(c) = &self.dashboard
            && Some(&c.snapshot) == snapshot.as_ref()
            && c.key == key
        {
            let (counts, overdue) = (c.counts.clone(), c.overdue.clone());
            return Ok(Dashboard::from_counts(
                env,
                self.backend(),
                counts,
                overdue,
                policy,
            ));
        }
        let top = int(usize::try_from(policy.dashboard.top_services).unwrap_or(usize::MAX));
        let r = self.query(DASHBOARD_COUNTS_SQL, &[text(env), day.clone(), top])?;
        let row = r.rows.first().ok_or_else(|| {
            StoreError::Internal("postgres: the dashboard counts returned no row".into())
        })?;
        let (mut counts, overdue_p0) = dashboard_counts(row)?;
        let limit = usize::try_from(policy.dashboard.overdue_limit).unwrap_or(usize::MAX);
        let overdue: Vec<Item> = match counts.overdue_count > 0 && limit > 0 {
            true => {
                let r = self.query(DASHBOARD_OVERDUE_SQL, &[text(env), day.clone(), int(limit)])?;
                r.rows
                    .iter()
                    .map(|row| rows::item(row))
                    .collect::<Result<_, _>>()?
            }
            false => Vec::new(),
        };
        // The page is a prefix of the overdue order, so its P0 items are the first overdue
        // P0 ids; when it holds as many as there are, it holds them all.
        counts.overdue_p0 = overdue
            .iter()
            .filter(|i| i.priority == Priority::P0)
            .map(|i| i.id.clone())
            .collect();
        if counts.overdue_p0.len() < overdue_p0 {
            let r = self.query(DASHBOARD_P0_SQL, &[text(env), day])?;
            let row = r.rows.first().ok_or_else(|| {
                StoreError::Internal("postgres: the overdue P0 ids returned no row".into())
            })?;
            counts.overdue_p0 = rows::Row::new("dashboard", row).json("overdue_p0")?;
        }
        self.dashboard = snapshot.map(|snapshot| Cached {
            snapshot,
            key,
            counts: counts.clone(),
            overdue: overdue.clone(),
        });
        Ok(Dashboard::from_counts(
            env,
            self.backend(),
            counts,
            overdue,
            policy,
        ))
    }

    /// [`SNAPSHOT_SQL`].
    fn snapshot(&mut self) -> Result<String, StoreError> {
        let r = self.query(SNAPSHOT_SQL, &[])?;
        let row = r.rows.first().ok_or_else(|| {
            StoreError::Internal("postgres: the snapshot query returned no row".into())
        })?;
        rows::Row::new("snapshot", row).string("pg_current_snapshot")
    }
}

/// Decodes the row of [`DASHBOARD_COUNTS_SQL`]: the counts (with `overdue` and
/// `overdue_p0` left empty: the store fills them) and the number of overdue P0 items.
fn dashboard_counts(row: &[Value]) -> Result<(DashboardCounts, usize), StoreError> {
    let mut r = rows::Row::new("dashboard", row);
    let total = r.count("total")?;
    let status_counts = StatusCounts {
        open: r.count("open")?,
        in_progress: r.count("in_progress")?,
        blocked: r.count("blocked")?,
        done: r.count("done")?,
        canceled: r.count("canceled")?,
    };
    let priority_counts = PriorityCounts {
        p0: r.count("P0")?,
        p1: r.count("P1")?,
        p2: r.count("P2")?,
        p3: r.count("P3")?,
    };
    let overdue_count = r.count("overdue_count")?;
    let overdue_p0 = r.count("overdue_p0")?;
    let top: Vec<(String, usize)> = r.json("top_services")?;
    let counts = DashboardCounts {
        total,
        status_counts,
        priority_counts,
        overdue_count,
        overdue: Vec::new(),
        overdue_p0: Vec::new(),
        top_services: top
            .into_iter()
            .map(|(service, count)| ServiceCount { service, count })
            .collect(),
    };
    Ok((counts, overdue_p0))
}
