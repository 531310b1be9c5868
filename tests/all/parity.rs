//! The typed per-action WIT interfaces and the generic `call` give the same results: the same
//! component instance is driven through both faces and the answers compared as JSON.

use backlog_bridge::grants::{Access, Grants};
use backlog_bridge::runtime::Runtime;
use backlog_bridge::runtime::sandbox::{HostState, Resources, new_store};
use serde_json::{Value, json};
use wasmtime::Store;
use wasmtime::component::{Component, HasSelf, Linker};

use crate::util::BACKLOG_TOOL_WASM;

mod typed {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "backlog-bridge:backlog/backlog-tool@0.2.0",
    });
}

use typed::BacklogTool;
use typed::backlog_bridge::backlog::model::{Event, Item, Priority, Source, Status};
use typed::backlog_bridge::tool::types::{CallContext, ToolError};
use typed::exports::backlog_bridge::backlog::{
    add_comment, cleanup, create_item, dashboard, generate, get_item, item_events, list_items,
    set_status, upsert_item,
};

impl typed::backlog_bridge::tool::types::Host for Shim {}
impl typed::backlog_bridge::backlog::model::Host for Shim {}

/// The parity run uses the JSONL backend: Postgres is not granted.
impl typed::backlog_bridge::pg::postgres::Host for Shim {
    fn execute(
        &mut self,
        _database: String,
        _statement: String,
        _params: Vec<typed::backlog_bridge::pg::postgres::DbValue>,
    ) -> Result<
        typed::backlog_bridge::pg::postgres::QueryResult,
        typed::backlog_bridge::pg::postgres::PgError,
    > {
        Err(typed::backlog_bridge::pg::postgres::PgError::NotGranted(
            "parity test".into(),
        ))
    }

    fn queue(
        &mut self,
        _database: String,
        _statement: String,
        _params: Vec<typed::backlog_bridge::pg::postgres::DbValue>,
    ) -> Result<(), typed::backlog_bridge::pg::postgres::PgError> {
        Err(typed::backlog_bridge::pg::postgres::PgError::NotGranted(
            "parity test".into(),
        ))
    }
}

/// The parity run uses the JSONL backend, whose lock the host holds: never asked for.
impl typed::backlog_bridge::store::dir_lock::Host for Shim {
    fn acquire(&mut self) -> Result<(), String> {
        Err("parity test".into())
    }
}

/// Local newtype so the test can implement its bindings' (empty) host traits.
struct Shim;

struct Harness {
    store: Store<HostState>,
    tool: BacklogTool,
    context: CallContext,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn new() -> Harness {
        let rt = Runtime::new().unwrap();
        let mut linker: Linker<HostState> = Linker::new(&rt.engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
        BacklogTool::add_to_linker::<_, HasSelf<Shim>>(&mut linker, |_| shim()).unwrap();
        let component = Component::from_file(&rt.engine, BACKLOG_TOOL_WASM).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let grants = Grants {
            backlog_dir: Access::ReadWrite,
            ..Grants::default()
        };
        let resources = Resources {
            backlog: Some(dir.path().to_owned()),
            ..Resources::default()
        };
        let mut store = new_store(&rt.engine, grants, &resources, 128 << 20).unwrap();
        store.set_epoch_deadline(u64::MAX / 2);
        let tool = BacklogTool::instantiate(&mut store, &component, &linker).unwrap();
        // The engine's epoch ticker stops with the runtime; keep deadlines irrelevant here.
        std::mem::forget(rt);
        let context = CallContext {
            actor: "operator".into(),
            request_id: "req_parity".into(),
            now: "2026-11-27T10:00:00Z".into(),
            config: Some(
                json!({"backend":"jsonl","backlog_dir":"/backlog","backlog_access":"read_write"})
                    .to_string(),
            ),
        };
        Harness {
            store,
            tool,
            context,
            _dir: dir,
        }
    }

    fn call(&mut self, action: &str, params: Value) -> Result<Value, (String, String)> {
        self.tool
            .backlog_bridge_tool_tool()
            .call_call(&mut self.store, action, &params.to_string(), &self.context)
            .unwrap()
            .map(|s| serde_json::from_str(&s).unwrap())
            .map_err(|e| (format!("{:?}", e.code), e.message))
    }
}

fn shim() -> &'static mut Shim {
    Box::leak(Box::new(Shim))
}

fn item_json(i: &Item) -> Value {
    json!({
        "id": i.id, "created_at": i.created_at, "updated_at": i.updated_at, "env": i.env,
        "service": i.service, "category": i.category, "title": i.title,
        "description": i.description,
        "priority": match i.priority { Priority::P0 => "P0", Priority::P1 => "P1", Priority::P2 => "P2", Priority::P3 => "P3" },
        "status": match i.status { Status::Open => "open", Status::InProgress => "in_progress", Status::Blocked => "blocked", Status::Done => "done", Status::Canceled => "canceled" },
        "owner": i.owner, "due_date": i.due_date,
        "source": match i.source { Source::Digest => "digest", Source::Risk => "risk", Source::Pressure => "pressure", Source::Manual => "manual" },
        "dedupe_key": i.dedupe_key,
        "evidence_refs": i.evidence_refs.iter().map(|e| (e.kind.clone(), json!(e.ids))).collect::<serde_json::Map<_, _>>(),
        "tags": i.tags,
        "meta": serde_json::from_str::<Value>(&i.meta).unwrap(),
    })
}

fn event_json(e: &Event) -> Value {
    json!({"id": e.id, "item_id": e.item_id, "ts": e.ts, "type": e.kind, "actor": e.actor,
           "message": e.message, "meta": serde_json::from_str::<Value>(&e.meta).unwrap()})
}

fn err(e: ToolError) -> (String, String) {
    (format!("{:?}", e.code), e.message)
}

#[test]
fn typed_and_generic_faces_agree() {
    let mut h = Harness::new();
    let ctx = h.context.clone();

    // create (typed) == get (generic)
    let req = create_item::CreateRequest {
        env: "prod".into(),
        service: "gateway".into(),
        category: "refactor".into(),
        title: "Split".into(),
        description: Some("why".into()),
        priority: Some(Priority::P1),
        owner: None,
        due_date: None,
        dedupe_key: Some("k1".into()),
        evidence_refs: Some(vec![typed::backlog_bridge::backlog::model::Evidence {
            kind: "alerts".into(),
            ids: vec!["al_1".into()],
        }]),
        tags: Some(vec!["x".into()]),
        meta: Some(r#"{"a":1}"#.into()),
        source: None,
    };
    let created = h
        .tool
        .backlog_bridge_backlog_create_item()
        .call_create(&mut h.store, &req, &ctx)
        .unwrap()
        .unwrap();
    let id = created.id.clone();
    assert_eq!(
        h.call("get", json!({"id": id})).unwrap(),
        item_json(&created)
    );

    // create (generic) == get (typed)
    let generic = h
        .call(
            "create",
            json!({"env":"prod","service":"billing","category":"security","title":"Rotate"}),
        )
        .unwrap();
    let got = h
        .tool
        .backlog_bridge_backlog_get_item()
        .call_get(
            &mut h.store,
            &get_item::GetRequest {
                id: generic["id"].as_str().unwrap().into(),
                include_events: true,
            },
            &ctx,
        )
        .unwrap()
        .unwrap();
    assert_eq!(item_json(&got.item), generic);
    let generic_events = h.call("events", json!({"id": generic["id"]})).unwrap();
    assert_eq!(
        json!(
            got.events
                .unwrap()
                .iter()
                .map(event_json)
                .collect::<Vec<_>>()
        ),
        generic_events["events"]
    );

    // upsert unchanged through both faces
    let up = upsert_item::UpsertRequest {
        id: None,
        env: None,
        service: None,
        category: None,
        title: Some("Split".into()),
        description: None,
        priority: None,
        owner: None,
        due_date: None,
        dedupe_key: Some("k1".into()),
        evidence_refs: None,
        tags: None,
        meta: None,
        source: None,
    };
    let typed_up = h
        .tool
        .backlog_bridge_backlog_upsert_item()
        .call_upsert(&mut h.store, &up, &ctx)
        .unwrap()
        .unwrap();
    let generic_up = h
        .call("upsert", json!({"dedupe_key":"k1","title":"Split"}))
        .unwrap();
    assert!(matches!(
        typed_up.action,
        upsert_item::UpsertOutcome::Unchanged
    ));
    assert_eq!(generic_up["action"], "unchanged");
    assert_eq!(item_json(&typed_up.item), generic_up["item"]);

    // set_status (typed) == get (generic); add_comment (typed) == last event (generic)
    let moved = h
        .tool
        .backlog_bridge_backlog_set_status()
        .call_set_status(
            &mut h.store,
            &set_status::SetStatusRequest {
                id: id.clone(),
                status: Status::Blocked,
                comment: Some("waiting".into()),
            },
            &ctx,
        )
        .unwrap()
        .unwrap();
    assert_eq!(h.call("get", json!({"id": id})).unwrap(), item_json(&moved));
    let comment = h
        .tool
        .backlog_bridge_backlog_add_comment()
        .call_add_comment(
            &mut h.store,
            &add_comment::AddCommentRequest {
                id: id.clone(),
                message: "hi".into(),
            },
            &ctx,
        )
        .unwrap()
        .unwrap();
    let evs = h.call("events", json!({"id": id})).unwrap();
    assert_eq!(
        evs["events"].as_array().unwrap().last().unwrap(),
        &event_json(&comment)
    );
    let typed_evs = h
        .tool
        .backlog_bridge_backlog_item_events()
        .call_events(
            &mut h.store,
            &item_events::EventsRequest {
                id: id.clone(),
                limit: Some(2),
            },
            &ctx,
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        json!(typed_evs.iter().map(event_json).collect::<Vec<_>>()),
        h.call("events", json!({"id": id, "limit": 2})).unwrap()["events"]
    );

    // list through both faces
    let lr = list_items::ListRequest {
        env: Some("prod".into()),
        status: vec![Status::Open, Status::Blocked],
        priority: None,
        service: None,
        owner: None,
        category: None,
        due_before: None,
        overdue: Some(false),
        limit: Some(1),
        offset: None,
    };
    let tl = h
        .tool
        .backlog_bridge_backlog_list_items()
        .call_list(&mut h.store, &lr, &ctx)
        .unwrap()
        .unwrap();
    let gl = h
        .call(
            "list",
            json!({"env":"prod","status":["open","blocked"],"overdue":false,"limit":1}),
        )
        .unwrap();
    assert_eq!(
        json!({"items": tl.items.iter().map(item_json).collect::<Vec<_>>(), "total": tl.total, "next_offset": tl.next_offset}),
        gl
    );

    // dashboard, cleanup (dry run) and generation (no reports grant here: both refuse)
    let td = h
        .tool
        .backlog_bridge_backlog_dashboard()
        .call_dashboard(
            &mut h.store,
            &dashboard::DashboardRequest {
                env: Some("prod".into()),
            },
            &ctx,
        )
        .unwrap()
        .unwrap();
    let gd = h.call("dashboard", json!({"env":"prod"})).unwrap();
    let sc = &td.status_counts;
    let pc = &td.priority_counts;
    assert_eq!(
        json!({
            "env": td.env, "backend": td.backend, "generated_at": td.generated_at, "total": td.total,
            "status_counts": {"open": sc.open, "in_progress": sc.in_progress, "blocked": sc.blocked, "done": sc.done, "canceled": sc.canceled},
            "priority_counts": {"P0": pc.p0, "P1": pc.p1, "P2": pc.p2, "P3": pc.p3},
            "overdue_count": td.overdue_count,
            "overdue": td.overdue.iter().map(item_json).collect::<Vec<_>>(),
            "top_services": td.top_services.iter().map(|s| json!({"service": s.service, "count": s.count})).collect::<Vec<_>>(),
            "alerts": td.alerts.iter().map(|a| json!({"level": a.level, "target": a.target, "reason": a.reason})).collect::<Vec<_>>(),
        }),
        gd
    );
    let tc = h
        .tool
        .backlog_bridge_backlog_cleanup()
        .call_cleanup(
            &mut h.store,
            cleanup::CleanupRequest {
                retention_days: Some(0),
                dry_run: Some(true),
            },
            &ctx,
        )
        .unwrap()
        .unwrap();
    let mut gc = h
        .call("cleanup", json!({"retention_days": 0, "dry_run": true}))
        .unwrap();
    // The generic answer also names the items a dry run would delete; the typed interface
    // carries the count only.
    let would_delete = gc.as_object_mut().unwrap().remove("would_delete").unwrap();
    assert_eq!(would_delete.as_array().unwrap().len(), tc.deleted as usize);
    assert_eq!(
        json!({"deleted": tc.deleted, "dry_run": tc.dry_run, "cutoff": tc.cutoff}),
        gc
    );
    let tg = h
        .tool
        .backlog_bridge_backlog_generate()
        .call_auto_generate_weekly(&mut h.store, &generate::GenerateRequest { env: None }, &ctx)
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err(tg),
        h.call("auto_generate_weekly", json!({})).unwrap_err()
    );

    // errors agree too
    let typed_err = h
        .tool
        .backlog_bridge_backlog_get_item()
        .call_get(
            &mut h.store,
            &get_item::GetRequest {
                id: "bl_000000000000".into(),
                include_events: false,
            },
            &ctx,
        )
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err(typed_err),
        h.call("get", json!({"id":"bl_000000000000"})).unwrap_err()
    );
}
