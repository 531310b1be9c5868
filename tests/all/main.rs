//! End-to-end suites over the real `backlog-bridge` binary and real wasm components.
//! One test binary; one module per feature; `util` holds the temp-dir harness.

mod util;
// The throwaway PostgreSQL 15 cluster of this test binary.
mod pg;

// Every backlog_tool action and error code through the component.
mod actions;
// Generation, dashboard, cleanup and policy through the host.
mod governance;
// The on-disk component cache.
mod cache;
// Exit codes and streams of the command line.
mod cli;
// kill -9 during writes, concurrent writer processes.
mod durability;
// Sandboxing: read-only grants, escapes, time and memory limits.
mod sandbox;
// The typed per-action WIT interfaces agree with the generic `call`.
mod parity;
// `migrate`: schema, idempotence, dry run, JSONL import, redaction.
mod migrate;
// The Postgres capability: grants, read-only escapes, transactions per call, values, limits.
mod pg_sandbox;
// The action suite on the postgres and auto backends.
mod backends;
// The scheduler: cron render/check, run-job, exactly-once runs, time limits.
mod scheduler;
// The router over loopback: auth, RBAC per route, statuses, concurrency, SIGTERM.
mod http;
// The router's limits: connections, timeouts, the browser guard (with headless Chromium),
// key hygiene, readiness.
mod router;
// The read-only review page at /ui in headless Chromium, its headers and guard.
mod ui;
// Three `serve --scheduler` replicas on one Postgres: exactly-once jobs, leases, outages.
mod drill;
// Item limits, list paging, reserved keys, batch --agent, symlinks, host filesystem errors.
mod limits;
// The MCP face: the official Python client over stdio and HTTP, Origin/auth/OAuth paths.
mod mcp;
// The operator's side: output formats, explain, completions, ops and deploy files.
mod ops;
// The API description: /openapi.json, ops/openapi.json, schemathesis over the real serve.
mod openapi;
// The invariants of ARCHITECTURE.md the source tree shows (module cycles, who gives guests
// what, who enters them, file sizes).
mod house;
// "An accepted config can be used": generated RBAC, policy and plugin configs, every action.
mod configs;
// The model-based state-machine test: random action sequences on every backend against the
// pure reference model in tests/model/.
mod model_seq;
// JSONL crash property: any cut of the files gives the acknowledged writes before it.
mod torn;
// Concurrency property: two CLI processes on one JSONL dir or one database end in a state
// some serial order of their operations gives (checked against the model).
mod concurrency;
// The audit trail's edges: schema refusals on the MCP face, the trail turned off.
mod audit;
// Change control: pinned components, key files, config check.
mod change;
// Change control: reloading the config without a restart.
mod reload;
// Isolation between callers: the remembering component over every face, the pool's bounds.
mod isolation;
// The JSONL index checkpoint: cold processes answer from it as from the files.
mod checkpoint;
