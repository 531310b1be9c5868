//! The production shape, proven over the real binary: three `serve --scheduler` replicas (each
//! with its own ops directory and JSONL fallback, `auto` backend) on one Postgres database,
//! one clock file they all read (`BACKLOG_BRIDGE_NOW_FILE`) that the drill moves minute by
//! minute, a load of mixed calls spread over all three with the agents' keys.
//!
//! Shown: every job runs exactly once per scheduled minute across the replicas; a Postgres
//! restart during the load loses no acknowledged write and every replica returns to
//! `postgres` by itself; the final state equals a sequential replay of the acknowledged
//! writes; `kill -9` of the replica holding a running job → its lease expires and another
//! replica records it and, the job being `retryable`, runs it again once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::backends::{moved, poll, set_clock};
use crate::http::{OPERATOR_KEY, Server, VIEWER_KEY};
use crate::pg::TestDb;
use crate::util::Env;

const REPLICAS: usize = 3;
const CLIENTS: usize = 3;

/// Jobs: one due every minute, one long (the hostile tool's `spin`, 10 s limit) and
/// retryable at 10:05.
const REGISTRY: &str = "jobs:
  - { id: every_minute, schedule: '* * * * *', tool: backlog_tool, action: cleanup, params: { dry_run: true } }
  - { id: slow_retryable, schedule: '5 10 * * *', tool: hostile, action: spin, agent: operator, retryable: true }
";

fn minute(m: u32) -> String {
    format!("2026-11-27T10:{m:02}:00Z")
}

/// One replica's installation: shipped config plus the hostile tool (spin limit 10 s), the
/// drill's registry, `auto` on `db`, the shared clock file.
fn replica_env(db: &TestDb, clock: &std::path::Path) -> Env {
    let env = crate::http::env()
        .with_hostile()
        .with_postgres(db)
        .var("BACKLOG_BACKEND", "auto")
        .var("BACKLOG_PG_RETRY_SECONDS", "1")
        .var("BACKLOG_BRIDGE_NOW_FILE", clock.to_str().unwrap());
    let matrix_path = env.config.join("rbac_tools_matrix.yml");
    let matrix = std::fs::read_to_string(&matrix_path).unwrap();
    let spin = "spin:          { entitlements: [tools.backlog.read], timeout_s: 1 }";
    assert!(matrix.contains(spin));
    std::fs::write(
        &matrix_path,
        matrix.replace(
            spin,
            "spin:          { entitlements: [tools.backlog.read], timeout_s: 10 }",
        ),
    )
    .unwrap();
    std::fs::write(env.ops.join("task_registry.yml"), REGISTRY).unwrap();
    env
}

/// The recorded outcome of (job, minute), once it is no longer `running`.
fn finished(db: &TestDb, job: &str, at: &str) -> String {
    poll(Duration::from_secs(60), &format!("{job} at {at}"), || {
        let o = db.scalar(&format!(
            "coalesce((SELECT outcome FROM scheduler_runs WHERE job_id = '{job}' AND \
             scheduled_minute = '{at}'), 'none')"
        ));
        (o != "none" && o != "running").then_some(o)
    })
}

/// The recorded error of (job, minute), for failure messages.
fn run_error(db: &TestDb, job: &str, at: &str) -> String {
    db.scalar(&format!(
        "coalesce((SELECT error FROM scheduler_runs WHERE job_id = '{job}' AND \
         scheduled_minute = '{at}'), '')"
    ))
}

/// Moves the shared clock to 10:`m` and waits until `every_minute` of that minute ran.
fn step(db: &TestDb, clock: &std::path::Path, m: u32) {
    set_clock(clock, &minute(m));
    let outcome = finished(db, "every_minute", &minute(m));
    assert_eq!(
        outcome,
        "ok",
        "every_minute at 10:{m:02}: {}",
        run_error(db, "every_minute", &minute(m))
    );
}

/// One client's acknowledged writes, as the item each should have produced.
#[derive(Debug, Clone)]
struct Expected {
    id: String,
    title: String,
    status: String,
    owner: Option<String>,
    events: Vec<String>,
    /// A write to it ended with an unknown outcome (see [`UNKNOWN`]): its fields and events
    /// may or may not include that write, so only its existence is checked, and the client
    /// writes to it no more.
    uncertain: bool,
}

/// What a client learns of one call.
enum Outcome {
    /// 200: acknowledged.
    Done(Value),
    /// A definite refusal: nothing was written.
    Refused,
    /// The host could not learn whether Postgres committed (its answer says so), or the
    /// answer never arrived: the write may or may not be in the database.
    Unknown,
}

/// The words of the `unavailable` answer for a commit whose outcome the host cannot know.
const UNKNOWN: &str = "whether its writes were saved is unknown";

/// The items of one client: those its acknowledged writes produced, and the titles of its
/// creates whose outcome is unknown (each may or may not exist).
struct Produced {
    items: Vec<Expected>,
    maybe_titles: Vec<String>,
}

fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// `POST /v1/tools/execute`; `Some(result)` only for a 200 (an acknowledged call).
fn execute(
    agent: &ureq::Agent,
    base: &str,
    key: &str,
    action: &str,
    params: Value,
) -> Option<Value> {
    match call(agent, base, key, action, params) {
        Outcome::Done(v) => Some(v),
        Outcome::Refused | Outcome::Unknown => None,
    }
}

/// `POST /v1/tools/execute` and what the answer tells about the write.
fn call(agent: &ureq::Agent, base: &str, key: &str, action: &str, params: Value) -> Outcome {
    let mut body = json!({"tool": "backlog_tool", "action": action});
    for (k, v) in params.as_object().unwrap() {
        body[k] = v.clone();
    }
    let Ok(mut resp) = agent
        .post(&format!("{base}/v1/tools/execute"))
        .header("Authorization", format!("Bearer {key}"))
        .header("Content-Type", "application/json")
        .send(body.to_string())
    else {
        return Outcome::Unknown;
    };
    let status = resp.status().as_u16();
    let Ok(text) = resp.body_mut().read_to_string() else {
        return Outcome::Unknown;
    };
    match status {
        200 => Outcome::Done(serde_json::from_str(&text).unwrap()),
        _ if text.contains(UNKNOWN) => Outcome::Unknown,
        _ => Outcome::Refused,
    }
}

/// Client `c`: creates its own items and changes only them (so the acknowledged writes of
/// each item come from one client, in order), spread round-robin over the replicas, plus
/// reads; until `stop`. Returns the items its acknowledged writes produced.
fn client(
    c: usize,
    bases: Vec<String>,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
) -> Produced {
    let agent = http();
    let mut own: Vec<Expected> = Vec::new();
    let mut maybe_titles = Vec::new();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let base = &bases[(c + i) % bases.len()];
        let pick = (i / 5) % own.len().max(1);
        let target = own.get_mut(pick).filter(|e| !e.uncertain);
        match (i % 5, target) {
            (0, _) | (_, None) => {
                let title = format!("client {c} item {i}");
                let params = json!({"env":"prod","service":format!("drill-{c}"),"category":"refactor","title": title});
                match call(&agent, base, OPERATOR_KEY, "create", params) {
                    Outcome::Done(item) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                        own.push(Expected {
                            id: item["id"].as_str().unwrap().to_owned(),
                            title,
                            status: "open".into(),
                            owner: None,
                            events: vec!["created".into()],
                            uncertain: false,
                        });
                    }
                    Outcome::Unknown => maybe_titles.push(title),
                    Outcome::Refused => {}
                }
            }
            (1, Some(e)) => {
                let next = match e.status.as_str() {
                    "open" | "blocked" => "in_progress",
                    _ => "blocked",
                };
                let params = json!({"id": e.id, "status": next});
                match call(&agent, base, OPERATOR_KEY, "set_status", params) {
                    Outcome::Done(_) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                        e.status = next.into();
                        e.events.push("status_changed".into());
                    }
                    Outcome::Unknown => e.uncertain = true,
                    Outcome::Refused => {}
                }
            }
            (2, Some(e)) => {
                let params = json!({"id": e.id, "message": format!("note {i}")});
                match call(&agent, base, OPERATOR_KEY, "add_comment", params) {
                    Outcome::Done(_) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                        e.events.push("commented".into());
                    }
                    Outcome::Unknown => e.uncertain = true,
                    Outcome::Refused => {}
                }
            }
            (3, Some(e)) => {
                let owner = format!("team-{c}-{i}");
                let params = json!({"id": e.id, "owner": owner});
                match call(&agent, base, OPERATOR_KEY, "upsert", params) {
                    Outcome::Done(out) => {
                        assert_eq!(out["action"], "updated", "{out}");
                        acked.fetch_add(1, Ordering::Relaxed);
                        e.owner = Some(owner);
                        e.events.push("owner_changed".into());
                    }
                    Outcome::Unknown => e.uncertain = true,
                    Outcome::Refused => {}
                }
            }
            (_, Some(e)) => {
                // Reads: any answer will do (503 while a fallback does not hold the item).
                let _ = execute(&agent, base, VIEWER_KEY, "get", json!({"id": e.id}));
                let _ = execute(
                    &agent,
                    base,
                    VIEWER_KEY,
                    "list",
                    json!({"env": "prod", "limit": 5}),
                );
            }
        }
        i += 1;
    }
    Produced {
        items: own,
        maybe_titles,
    }
}

/// Every `scheduler: run` log line of `job` at `at`, across the replicas' logs.
fn run_lines(logs: &[String], job: &str, at: &str) -> usize {
    logs.iter()
        .flat_map(|l| l.lines())
        .filter(|l| l.contains("scheduler: run") && l.contains(job) && l.contains(at))
        .count()
}

#[test]
fn three_replicas_on_one_postgres_run_jobs_once_survive_a_restart_and_a_kill() {
    let cluster = crate::pg::PrivateCluster::start();
    let db = cluster.database();
    let clock_dir = tempfile::tempdir().unwrap();
    let clock = clock_dir.path().join("now");
    set_clock(&clock, &minute(0));
    let envs: Vec<Env> = (0..REPLICAS).map(|_| replica_env(&db, &clock)).collect();
    assert_eq!(envs[0].migrate(&[]).code, 0);
    let mut servers: Vec<Server> = envs
        .iter()
        .map(|env| Server::start(env, &["--scheduler"]))
        .collect();
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let outcome = finished(&db, "every_minute", &minute(0));
    assert_eq!(
        outcome,
        "ok",
        "{}",
        run_error(&db, "every_minute", &minute(0))
    );

    // The load, over all three replicas.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (bases, stop, acked) = (bases.clone(), stop.clone(), acked.clone());
            std::thread::spawn(move || client(c, bases, stop, acked))
        })
        .collect();
    step(&db, &clock, 1);
    poll(Duration::from_secs(60), "acknowledged writes", || {
        (acked.load(Ordering::Relaxed) >= 40).then_some(())
    });

    // Postgres restarts under the load.
    let before = acked.load(Ordering::Relaxed);
    cluster.pause();
    poll(
        Duration::from_secs(60),
        "writes acknowledged during the outage",
        || (acked.load(Ordering::Relaxed) >= before + 10).then_some(()),
    );
    cluster.resume();
    // Past the retry time every replica returns to Postgres by itself. The clock runs on with
    // real time inside minute 10:01 (whose job has run): the pool keeps a server it found hung
    // down for a few seconds, so a replica's first probe may fail and the next one succeed.
    let from = Instant::now();
    for s in &servers {
        poll(
            Duration::from_secs(55),
            "every replica back on postgres",
            || {
                set_clock(
                    &clock,
                    &moved(&minute(1), from.elapsed().min(Duration::from_secs(59))),
                );
                let r = s.get("/readyz", None);
                let body = (r.status == 200).then(|| r.json())?;
                (body == json!({"backend":"postgres","degraded":false,"pending_replay":0}))
                    .then_some(())
            },
        );
    }
    step(&db, &clock, 2);
    let after = acked.load(Ordering::Relaxed);
    poll(Duration::from_secs(60), "writes after the outage", || {
        (acked.load(Ordering::Relaxed) >= after + 20).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    let produced: Vec<Produced> = clients.into_iter().map(|h| h.join().unwrap()).collect();
    let expected: Vec<&Expected> = produced.iter().flat_map(|p| &p.items).collect();
    let maybe_titles: Vec<&String> = produced.iter().flat_map(|p| &p.maybe_titles).collect();
    // Journals written by the last calls of the outage are replayed by now too.
    for s in &servers {
        poll(Duration::from_secs(60), "nothing left to replay", || {
            let body = s.get("/readyz", None).json();
            (body["pending_replay"] == 0 && body["backend"] == "postgres").then_some(())
        });
    }

    assert!(
        servers
            .iter()
            .any(|s| s.log().contains("backlog_store: replayed")),
        "writes of the outage went through a JSONL fallback and were replayed"
    );

    // The final state is the sequential replay of the acknowledged writes, plus, for a write
    // whose outcome was unknown (the commit's answer was lost with the server), that write or
    // not: every item is acknowledged or the create of an unknown outcome, and every
    // acknowledged item is there.
    let rows = db.scalar(
        "SELECT coalesce(string_agg(id || chr(9) || title, chr(10) ORDER BY id), '') \
         FROM backlog_items",
    );
    let in_db: Vec<(&str, &str)> = rows.lines().filter_map(|l| l.split_once('\t')).collect();
    for (id, title) in &in_db {
        assert!(
            expected.iter().any(|e| e.id == *id) || maybe_titles.iter().any(|t| t == title),
            "item {id} ({title}) was never acknowledged nor of an unknown outcome"
        );
    }
    for e in &expected {
        assert!(in_db.iter().any(|(id, _)| *id == e.id), "{} is gone", e.id);
    }
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM backlog_events ev WHERE NOT EXISTS \
             (SELECT 1 FROM backlog_items i WHERE i.id = ev.item_id)"
        ),
        "0",
        "events of no item"
    );
    let agent = http();
    for e in expected.iter().filter(|e| !e.uncertain) {
        let got = execute(
            &agent,
            &bases[0],
            VIEWER_KEY,
            "get",
            json!({"id": e.id, "include_events": true}),
        )
        .unwrap_or_else(|| panic!("{} is gone", e.id));
        let item = if got.get("item").is_some() {
            &got["item"]
        } else {
            &got
        };
        assert_eq!(item["title"], e.title.as_str(), "{got}");
        assert_eq!(item["status"], e.status.as_str(), "{got}");
        if let Some(owner) = &e.owner {
            assert_eq!(item["owner"], owner.as_str(), "{got}");
        }
        let kinds: Vec<String> = got["events"]
            .as_array()
            .or_else(|| item["events"].as_array())
            .unwrap_or_else(|| panic!("no events: {got}"))
            .iter()
            .map(|ev| ev["type"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(kinds, e.events, "{}", e.id);
    }

    // kill -9 of the replica holding the long, retryable job.
    step(&db, &clock, 3);
    step(&db, &clock, 4);
    set_clock(&clock, &minute(5));
    let owner = poll(Duration::from_secs(60), "slow_retryable running", || {
        let o = db.scalar(&format!(
            "coalesce((SELECT owner FROM scheduler_runs WHERE job_id = 'slow_retryable' AND \
             scheduled_minute = '{}' AND outcome = 'running'), 'none')",
            minute(5)
        ));
        (o != "none").then_some(o)
    });
    let pid: i32 = owner.rsplit('/').next().unwrap().parse().unwrap();
    let victim = servers
        .iter()
        .position(|s| s.pid() == pid)
        .unwrap_or_else(|| panic!("no replica has pid {pid} ({owner})"));
    servers[victim].kill_hard();
    assert_eq!(finished(&db, "every_minute", &minute(5)), "ok");
    // Lease: 10 s + 30 s + 30 s from 10:05 → expired at 10:07.
    step(&db, &clock, 6);
    assert_eq!(
        db.scalar(&format!(
            "SELECT outcome FROM scheduler_runs WHERE job_id = 'slow_retryable' AND scheduled_minute = '{}'",
            minute(5)
        )),
        "running",
        "the lease holds until it expires"
    );
    step(&db, &clock, 7);
    let retried = finished(&db, "slow_retryable", &minute(5));
    assert_eq!(retried, "timeout", "the retry ran (and hit the 10 s limit)");
    let row = db.scalar(&format!(
        "SELECT attempt || ' ' || owner || ' ' || error FROM scheduler_runs WHERE \
         job_id = 'slow_retryable' AND scheduled_minute = '{}'",
        minute(5)
    ));
    assert!(row.starts_with("2 "), "{row}");
    let new_owner = db.scalar(&format!(
        "SELECT owner FROM scheduler_runs WHERE job_id = 'slow_retryable' AND scheduled_minute = '{}'",
        minute(5)
    ));
    assert_ne!(new_owner, owner, "another replica took it over: {row}");
    assert!(row.contains("scheduler died"), "{row}");

    // Exactly once per scheduled minute, across the replicas (rows and log lines).
    let logs: Vec<String> = servers.iter().map(|s| s.log()).collect();
    assert_eq!(
        db.scalar("SELECT count(*) FROM scheduler_runs WHERE job_id = 'every_minute'"),
        "8"
    );
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM scheduler_runs WHERE job_id = 'every_minute' AND outcome = 'ok'"
        ),
        "8"
    );
    let mut per_minute = BTreeMap::new();
    for m in 0..=7 {
        per_minute.insert(minute(m), run_lines(&logs, "every_minute", &minute(m)));
    }
    assert!(per_minute.values().all(|n| *n == 1), "{per_minute:?}");
    // The slow job: attempt 1 never finished (killed), attempt 2 once.
    assert_eq!(
        run_lines(&logs, "slow_retryable", &minute(5)),
        1,
        "{logs:?}"
    );
}
