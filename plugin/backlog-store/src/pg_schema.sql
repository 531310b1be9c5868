-- backlog-bridge Postgres schema, version 4 (docs/storage.md). Idempotent: every statement can run
-- again on a migrated database, and a database of an older version is completed to version 4.
-- `backlog-bridge migrate` runs these statements in order, in one transaction, and records the
-- version.
CREATE TABLE IF NOT EXISTS backlog_schema_version (
    version    INTEGER PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS backlog_items (
    id            TEXT PRIMARY KEY,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    env           TEXT NOT NULL,
    service       TEXT NOT NULL,
    category      TEXT NOT NULL,
    title         TEXT NOT NULL,
    description   TEXT NOT NULL DEFAULT '',
    priority      TEXT NOT NULL CONSTRAINT backlog_items_priority_check CHECK (priority IN ('P0', 'P1', 'P2', 'P3')),
    status        TEXT NOT NULL CONSTRAINT backlog_items_status_check CHECK (status IN ('open', 'in_progress', 'blocked', 'done', 'canceled')),
    owner         TEXT NOT NULL,
    due_date      DATE NOT NULL,
    source        TEXT NOT NULL CONSTRAINT backlog_items_source_check CHECK (source IN ('digest', 'risk', 'pressure', 'manual')),
    dedupe_key    TEXT NOT NULL CONSTRAINT backlog_items_dedupe_key_key UNIQUE,
    evidence_refs JSONB NOT NULL DEFAULT '{}'::jsonb,
    tags          JSONB NOT NULL DEFAULT '[]'::jsonb,
    meta          JSONB NOT NULL DEFAULT '{}'::jsonb
);
CREATE TABLE IF NOT EXISTS backlog_events (
    id      TEXT PRIMARY KEY,
    item_id TEXT NOT NULL REFERENCES backlog_items (id) ON DELETE CASCADE,
    ts      TIMESTAMPTZ NOT NULL,
    type    TEXT NOT NULL CONSTRAINT backlog_events_type_check CHECK (type IN ('created', 'updated', 'status_changed', 'commented', 'owner_changed')),
    actor   TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    meta    JSONB NOT NULL DEFAULT '{}'::jsonb,
    -- Append order: events are returned oldest first by (seq).
    seq     BIGSERIAL NOT NULL
);
CREATE INDEX IF NOT EXISTS backlog_items_env_status_idx ON backlog_items (env, status);
CREATE INDEX IF NOT EXISTS backlog_items_service_idx ON backlog_items (service);
CREATE INDEX IF NOT EXISTS backlog_items_due_date_idx ON backlog_items (due_date);
CREATE INDEX IF NOT EXISTS backlog_items_owner_idx ON backlog_items (owner);
CREATE INDEX IF NOT EXISTS backlog_items_category_idx ON backlog_items (category);
CREATE INDEX IF NOT EXISTS backlog_events_item_id_idx ON backlog_events (item_id, seq);
-- Beyond the seven (see docs/storage.md): covers every column the dashboard counts, so they come from
-- one index-only scan of the env's entries instead of the heap (a query plan, not a
-- contract: running `migrate` again adds it to a database migrated before).
CREATE INDEX IF NOT EXISTS backlog_items_dashboard_idx ON backlog_items (env, service, status, priority, due_date);
CREATE INDEX IF NOT EXISTS backlog_events_ts_idx ON backlog_events (ts);
CREATE TABLE IF NOT EXISTS scheduler_runs (
    job_id           TEXT NOT NULL,
    scheduled_minute TIMESTAMPTZ NOT NULL,
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    outcome          TEXT NOT NULL CONSTRAINT scheduler_runs_outcome_check CHECK (outcome IN ('running', 'ok', 'failed', 'skipped', 'timeout', 'missed')),
    error            TEXT,
    PRIMARY KEY (job_id, scheduled_minute)
);
-- The scheduler's leases (additive: `migrate` adds them to a table created before): who holds
-- a running claim, until when, and which attempt it is (2 = the one retry of a retryable job
-- whose scheduler died).
ALTER TABLE scheduler_runs ADD COLUMN IF NOT EXISTS lease_until TIMESTAMPTZ;
ALTER TABLE scheduler_runs ADD COLUMN IF NOT EXISTS owner TEXT;
ALTER TABLE scheduler_runs ADD COLUMN IF NOT EXISTS attempt INTEGER NOT NULL DEFAULT 1;
INSERT INTO backlog_schema_version (version) VALUES (1) ON CONFLICT (version) DO NOTHING;
-- Version 2: the dashboard without a scan. `backlog_counts` holds how many items each (env,
-- service, status, priority) has; statement triggers on `backlog_items` keep it exact in the
-- transaction of every write (whoever writes: the store, `migrate`'s import, an operator's
-- SQL), one row per group touched, so a writer adds no statement and no round trip. The
-- overdue count and page come from the partial index of live items by due date.
CREATE TABLE IF NOT EXISTS backlog_counts (
    env      TEXT NOT NULL,
    service  TEXT NOT NULL,
    status   TEXT NOT NULL,
    priority TEXT NOT NULL,
    n        BIGINT NOT NULL,
    PRIMARY KEY (env, service, status, priority)
);
-- Version 3: `backlog_due_counts` holds how many live items (not done or canceled) each (env,
-- due_date, priority) has, kept by the same triggers, so the overdue count of an env is a sum
-- over its due dates before today, not a count of its overdue items.
CREATE TABLE IF NOT EXISTS backlog_due_counts (
    env      TEXT NOT NULL,
    due_date DATE NOT NULL,
    priority TEXT NOT NULL,
    n        BIGINT NOT NULL,
    PRIMARY KEY (env, due_date, priority)
);
CREATE OR REPLACE FUNCTION backlog_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM backlog_counts;
        DELETE FROM backlog_due_counts;
        RETURN NULL;
    END IF;
    -- Rows in key order, counts before due counts: concurrent writers lock the counts they
    -- share in one order.
    IF TG_OP = 'INSERT' THEN
        INSERT INTO backlog_counts AS c (env, service, status, priority, n)
        SELECT env, service, status, priority, count(*) FROM backlog_new_rows
         GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        ON CONFLICT (env, service, status, priority) DO UPDATE SET n = c.n + EXCLUDED.n;
        INSERT INTO backlog_due_counts AS c (env, due_date, priority, n)
        SELECT env, due_date, priority, count(*) FROM backlog_new_rows
         WHERE status NOT IN ('done', 'canceled')
         GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (env, due_date, priority) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO backlog_counts AS c (env, service, status, priority, n)
        SELECT env, service, status, priority, -count(*) FROM backlog_old_rows
         GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        ON CONFLICT (env, service, status, priority) DO UPDATE SET n = c.n + EXCLUDED.n;
        INSERT INTO backlog_due_counts AS c (env, due_date, priority, n)
        SELECT env, due_date, priority, -count(*) FROM backlog_old_rows
         WHERE status NOT IN ('done', 'canceled')
         GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (env, due_date, priority) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSE
        INSERT INTO backlog_counts AS c (env, service, status, priority, n)
        SELECT env, service, status, priority, sum(d) FROM (
            SELECT env, service, status, priority, 1 AS d FROM backlog_new_rows
            UNION ALL
            SELECT env, service, status, priority, -1 FROM backlog_old_rows) moved
         GROUP BY 1, 2, 3, 4 HAVING sum(d) <> 0 ORDER BY 1, 2, 3, 4
        ON CONFLICT (env, service, status, priority) DO UPDATE SET n = c.n + EXCLUDED.n;
        INSERT INTO backlog_due_counts AS c (env, due_date, priority, n)
        SELECT env, due_date, priority, sum(d) FROM (
            SELECT env, due_date, priority, 1 AS d FROM backlog_new_rows
             WHERE status NOT IN ('done', 'canceled')
            UNION ALL
            SELECT env, due_date, priority, -1 FROM backlog_old_rows
             WHERE status NOT IN ('done', 'canceled')) moved
         GROUP BY 1, 2, 3 HAVING sum(d) <> 0 ORDER BY 1, 2, 3
        ON CONFLICT (env, due_date, priority) DO UPDATE SET n = c.n + EXCLUDED.n;
    END IF;
    RETURN NULL;
END
$fn$;
DROP TRIGGER IF EXISTS backlog_counts_insert ON backlog_items;
CREATE TRIGGER backlog_counts_insert AFTER INSERT ON backlog_items
    REFERENCING NEW TABLE AS backlog_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION backlog_counts_apply();
DROP TRIGGER IF EXISTS backlog_counts_update ON backlog_items;
CREATE TRIGGER backlog_counts_update AFTER UPDATE ON backlog_items
    REFERENCING OLD TABLE AS backlog_old_rows NEW TABLE AS backlog_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION backlog_counts_apply();
DROP TRIGGER IF EXISTS backlog_counts_delete ON backlog_items;
CREATE TRIGGER backlog_counts_delete AFTER DELETE ON backlog_items
    REFERENCING OLD TABLE AS backlog_old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION backlog_counts_apply();
DROP TRIGGER IF EXISTS backlog_counts_truncate ON backlog_items;
CREATE TRIGGER backlog_counts_truncate AFTER TRUNCATE ON backlog_items
    FOR EACH STATEMENT EXECUTE FUNCTION backlog_counts_apply();
-- The counts of the items already there, once: when this database reaches version 2 (the
-- triggers above already hold the table's lock, so no write slips in between).
INSERT INTO backlog_counts (env, service, status, priority, n)
SELECT env, service, status, priority, count(*) FROM backlog_items
 WHERE NOT EXISTS (SELECT 1 FROM backlog_schema_version WHERE version = 2)
 GROUP BY 1, 2, 3, 4
ON CONFLICT (env, service, status, priority) DO NOTHING;
-- Live items by due date, then priority and id in byte order (as the overdue list sorts them):
-- the overdue page and the overdue P0 ids of an env read this index only, in its order, and
-- stop at the page's end. (Version 2 had it without the byte order, which the planner could
-- not use for that sort: it read every overdue item of the env, or the items by due date.)
DROP INDEX IF EXISTS backlog_items_overdue_idx;
CREATE INDEX IF NOT EXISTS backlog_items_live_due_idx
    ON backlog_items (env, due_date, priority COLLATE "C", id COLLATE "C")
    WHERE status NOT IN ('done', 'canceled');
INSERT INTO backlog_schema_version (version) VALUES (2) ON CONFLICT (version) DO NOTHING;
-- The due counts of the live items already there, once: when this database reaches version 3
-- (the triggers above hold the table's lock).
INSERT INTO backlog_due_counts (env, due_date, priority, n)
SELECT env, due_date, priority, count(*) FROM backlog_items
 WHERE status NOT IN ('done', 'canceled')
   AND NOT EXISTS (SELECT 1 FROM backlog_schema_version WHERE version = 3)
 GROUP BY 1, 2, 3
ON CONFLICT (env, due_date, priority) DO NOTHING;
INSERT INTO backlog_schema_version (version) VALUES (3) ON CONFLICT (version) DO NOTHING;
-- Version 4: the live P0 items by due date and id, for the dashboard's overdue P0 ids. The
-- live-due index has priority after due date, so that list read every live overdue item of
-- the env (all four priorities) to keep a quarter of them: 1.7-3 ms at 100k items against
-- 0.4-0.8 ms on this index.
CREATE INDEX IF NOT EXISTS backlog_items_live_p0_idx
    ON backlog_items (env, due_date, id COLLATE "C")
    WHERE priority = 'P0' AND status NOT IN ('done', 'canceled');
INSERT INTO backlog_schema_version (version) VALUES (4) ON CONFLICT (version) DO NOTHING;
