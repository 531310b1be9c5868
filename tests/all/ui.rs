//! The read-only review page at `/ui` in a real headless Chromium: it shows the counts the
//! API's dashboard gives, lists the overdue items, has no control that writes and sends only
//! GET requests; its answers carry the CSP and framing headers; the browser guard covers it.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::http::{OPERATOR_KEY, Server, VIEWER_KEY, env};
use crate::router::chromium;
use crate::util::Env;

/// A few items in prod (two overdue, one P0; one done) and one in staging, created through
/// the CLI (the clock is 2026-11-27).
fn seed(env: &Env) -> Vec<String> {
    let mut overdue = Vec::new();
    for (service, priority, due, title) in [
        ("gw", "P0", "2026-11-20", "TLS certificate expires"),
        ("api", "P1", "2026-11-02", "Rotate the signing key"),
        ("api", "P2", "2026-12-30", "Refactor the retry loop"),
        ("api", "P3", "2026-11-01", "Old cleanup, already done"),
    ] {
        let item = env.ok(
            "create",
            json!({"env": "prod", "service": service, "category": "security", "title": title,
                   "priority": priority, "due_date": due}),
        );
        let id = item["id"].as_str().expect("id").to_owned();
        if priority == "P3" {
            env.ok("set_status", json!({"id": id, "status": "done"}));
        } else if due < "2026-11-27" {
            overdue.push(id);
        }
    }
    env.ok(
        "create",
        json!({"env": "staging", "service": "db", "category": "refactor", "title": "staging"}),
    );
    overdue
}

/// The `<tr …>` start tag of the row that shows item `id` in the DOM, if any.
fn row_tag<'a>(dom: &'a str, id: &str) -> Option<&'a str> {
    let at = dom.find(&format!("<tr data-id=\"{id}\""))?;
    let end = dom[at..].find('>')?;
    Some(&dom[at..at + end])
}

#[test]
fn the_review_page_shows_the_dashboard_in_headless_chromium() {
    let env = env();
    let overdue = seed(&env);
    let server = Server::start(&env, &[]);
    let dash = server
        .get("/v1/backlog/dashboard?env=prod", Some(VIEWER_KEY))
        .ok();
    assert_eq!(dash["overdue_count"], 2, "{dash}");

    // The key through the URL fragment, as automation passes it.
    let url = format!("{}/ui#key={VIEWER_KEY}", server.base);
    let dom = chromium(&["--dump-dom"], &url);
    assert!(dom.contains("<body data-state=\"ready\">"), "{dom}");
    let shown = |id: &str| -> Option<String> {
        let at = dom.find(&format!("id=\"{id}\""))?;
        let rest = &dom[at..];
        let start = rest.find('>')? + 1;
        let end = rest.find('<')?;
        Some(rest[start..end].to_owned())
    };
    for kind in ["status", "priority"] {
        let counts = dash[format!("{kind}_counts")]
            .as_object()
            .expect("counts")
            .clone();
        assert!(!counts.is_empty());
        for (k, v) in counts {
            assert_eq!(
                shown(&format!("prod-{kind}-{k}")),
                Some(v.to_string()),
                "{kind} {k}: {dom}"
            );
        }
    }
    assert_eq!(shown("prod-total"), Some(dash["total"].to_string()));
    assert_eq!(
        shown("prod-overdue-count"),
        Some(dash["overdue_count"].to_string())
    );
    for id in &overdue {
        let tag = row_tag(&dom, id).unwrap_or_else(|| panic!("{id} is not listed: {dom}"));
        assert!(tag.contains("data-overdue=\"true\""), "{tag}");
    }
    // Top services, the page alert, the weekly plot, one service's items with their events.
    for s in dash["top_services"].as_array().expect("top_services") {
        let service = s["service"].as_str().expect("service");
        assert!(dom.contains(&format!(">{service}</a>")), "{service}: {dom}");
    }
    assert!(dom.contains("data-level=\"page\""), "{dom}");
    assert!(dom.contains("data-series=\"open\""), "{dom}");
    assert!(dom.contains("data-series=\"overdue\""), "{dom}");
    assert!(dom.contains("<tr data-events-of="), "{dom}");
    assert!(dom.contains("created by operator"), "{dom}");
    // No control that writes: no form, no button; the one input is the (hidden) key field.
    for tag in ["<form", "<button", "<textarea", "<select"] {
        assert!(!dom.contains(tag), "{tag} in {dom}");
    }
    assert_eq!(dom.matches("<input").count(), 1, "{dom}");
    assert!(dom.contains("<section id=\"login\" hidden"), "{dom}");
    assert!(!dom.contains(VIEWER_KEY), "the key is in the DOM: {dom}");

    // What the page sent: GETs as the viewer, and nothing else reached an API route.
    let log = server.log_when(|log| log.contains("path=\"/v1/backlog/items/"));
    let api_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("http request") && l.contains("path=\"/v1/"))
        .collect();
    let page_lines: Vec<&&str> = api_lines
        .iter()
        .filter(|l| l.contains("agent=\"viewer\""))
        .collect();
    assert!(page_lines.len() >= 4, "{log}");
    for line in &api_lines {
        assert!(line.contains("method=GET"), "{line}");
    }
    // The served script has no way to write: no other method anywhere in it.
    let js = server.get("/ui/app.js", None);
    assert_eq!(js.status, 200);
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        assert!(!js.body.contains(method), "{method} in app.js");
    }
    assert_eq!(
        js.body.matches("method:").count(),
        js.body.matches("method: \"GET\"").count()
    );
    assert!(!js.body.contains("document.cookie"));

    // Without a key the page asks for one (and shows no data).
    let dom = chromium(&["--dump-dom"], &format!("{}/ui", server.base));
    assert!(dom.contains("<body data-state=\"login\">"), "{dom}");
    assert!(dom.contains("<main id=\"main\" hidden"), "{dom}");

    // The screenshot, kept as the test's artifact.
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .to_path_buf();
    let shot = target.join("ui-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &[
            "--hide-scrollbars",
            "--window-size=1280,1600",
            &format!("--screenshot={}", shot.display()),
        ],
        &url,
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    assert!(
        png.len() > 20_000,
        "a blank screenshot? {} bytes",
        png.len()
    );
}

/// `--anonymous-agent viewer`: the page needs no key on loopback.
#[test]
fn the_review_page_works_with_the_anonymous_agent() {
    let env = env();
    let overdue = seed(&env);
    let server = Server::start(&env, &["--anonymous-agent", "viewer"]);
    let dash = server.get("/v1/backlog/dashboard?env=prod", None).ok();
    let dom = chromium(&["--dump-dom"], &format!("{}/ui", server.base));
    assert!(dom.contains("<body data-state=\"ready\">"), "{dom}");
    assert!(
        dom.contains(&format!("id=\"prod-total\" class=\"n\">{}<", dash["total"])),
        "{dom}"
    );
    for id in &overdue {
        assert!(row_tag(&dom, id).is_some(), "{id}: {dom}");
    }
}

#[test]
fn ui_answers_carry_the_csp_header_and_pass_the_browser_guard() {
    let env = env();
    let server = Server::start(&env, &[]);
    for (path, kind) in [
        ("/ui", "text/html"),
        ("/ui/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let r = server.get(path, None);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert!(
            r.header("content-type")
                .is_some_and(|t| t.starts_with(kind)),
            "{path}: {r:?}"
        );
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
    }
    // No inline script: every <script> loads /ui/app.js; nothing from elsewhere.
    let html = server.get("/ui", None).body;
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    assert!(html.contains("<script src=\"/ui/app.js\""), "{html}");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    assert!(html.contains("content=\"prod,staging,dev\""), "{html}");
    // The page is no write route: other methods are refused.
    let r = server.post("/ui", Some(OPERATOR_KEY), &json!({}));
    r.error(405, "method_not_allowed");
    // The browser guard applies to /ui like every route.
    let evil = ureq::get(format!("{}/ui", server.base))
        .header("Origin", "http://evil.example")
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .expect("request");
    assert_eq!(evil.status().as_u16(), 403);
    let text = evil.into_body().read_to_string().expect("body");
    let body: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(body["code"], "forbidden", "{body}");
}
