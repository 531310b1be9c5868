//! The API description: `GET /openapi.json` of the real `serve` equals the committed
//! `ops/openapi.json` (written by `backlog-bridge openapi`), and schemathesis
//! (`tests/openapi/schemathesis.sh`, pinned, in a throwaway venv) finds no 5xx and no response
//! outside the document over every operation, with the operator's key.
//!
//! The venv is built under the test binary's temp dir; without python3 or the package index
//! this test fails, it never skips.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::http::{OPERATOR_KEY, Server, env};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
}

#[test]
fn openapi_document_is_committed_and_schemathesis_finds_no_mismatch() {
    let env = env();
    // Schemathesis tests missing and wrong keys too: room for them, so the per-address
    // failed-login limit does not turn the rest of the run into 429s.
    let server = Server::start(&env, &["--auth-failures-per-minute", "1000000"]);

    let served = server.get("/openapi.json", None).ok();
    assert_eq!(served["openapi"], "3.1.0");
    let committed_path = repo().join("ops/openapi.json");
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(&committed_path).expect("read ops/openapi.json"),
    )
    .expect("ops/openapi.json is JSON");
    assert!(
        committed == served,
        "ops/openapi.json differs from GET /openapi.json: regenerate it with \
         `backlog-bridge openapi > ops/openapi.json`"
    );
    // The CLI prints the same document.
    let printed = env.cmd().arg("openapi").output().expect("run openapi");
    assert!(printed.status.success(), "{printed:?}");
    let printed: Value = serde_json::from_slice(&printed.stdout).expect("openapi prints JSON");
    assert_eq!(printed, served);
    // Every REST route is described, each /v1 route with the bearer scheme.
    let paths = served["paths"].as_object().expect("paths");
    for p in [
        "/v1/tools/execute",
        "/v1/tools",
        "/v1/explain",
        "/v1/backlog/dashboard",
        "/v1/backlog/generate/weekly",
        "/v1/backlog/generate/daily",
        "/v1/backlog/items",
        "/v1/backlog/items/{id}",
        "/v1/backlog/items/{id}/events",
        "/v1/backlog/items/{id}/status",
        "/v1/backlog/items/{id}/comments",
        "/v1/backlog/cleanup",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ] {
        let ops = paths
            .get(p)
            .unwrap_or_else(|| panic!("{p} is not described"));
        for (method, op) in ops.as_object().expect("operations") {
            let bearer = op["security"] == serde_json::json!([{"bearer": []}]);
            assert_eq!(bearer, p.starts_with("/v1/"), "{method} {p}: {op}");
            assert!(op["responses"]["200"].is_object(), "{method} {p}");
        }
    }
    // The params are the component's own schema (GET /v1/tools serves the same).
    let tools = server.get("/v1/tools", Some(OPERATOR_KEY)).ok();
    let create = tools["tools"][0]["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .find(|a| a["name"] == "create")
        .expect("create")["params_schema"]
        .clone();
    let body = &served["paths"]["/v1/backlog/items"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    assert_eq!(body["properties"], create["properties"]);
    assert_eq!(body["required"], create["required"]);

    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("schemathesis-venv");
    let out = Command::new(repo().join("tests/openapi/schemathesis.sh"))
        .arg(&server.base)
        .arg(&venv)
        .env("KEY", OPERATOR_KEY)
        .output()
        .expect("run tests/openapi/schemathesis.sh");
    assert!(
        out.status.success(),
        "schemathesis failed ({}):\n{}\n{}\nserver log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
}
