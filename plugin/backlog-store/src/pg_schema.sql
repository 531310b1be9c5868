-- backlog-bridge Postgres schema, version 1 (docs/storage.md). Idempotent: every statement can run
-- again on a migrated database. `backlog-bridge migrate` runs these statements in order, in
-- one transaction, and records the version.
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
