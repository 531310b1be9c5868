//! The read-only review page at `/ui` (see `docs/http-api.md`, "The review page"): one HTML,
//! one script and one stylesheet compiled into the binary, no build step, nothing fetched
//! from anywhere else.
//!
//! The files hold no data: the page's script reads the backlog through the `GET` routes of
//! the API (`dashboard`, `items`, `items/{id}/events`) with the key the user typed (kept in
//! `sessionStorage`, sent as `Authorization: Bearer`, never a cookie), or without a key under
//! `--anonymous-agent`. So `/ui` needs no authentication itself; it passes the browser guard
//! like every route. Every answer carries a Content-Security-Policy that allows only the
//! page's own script and stylesheet (no inline script), `nosniff` and `X-Frame-Options: DENY`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::http::App;

const HTML: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");

/// The policy every `/ui` answer carries: only same-origin scripts, styles and fetches; no
/// inline script, no framing, no form targets, no plugins.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The `/ui` routes, merged into the router (so the browser guard and the access log apply).
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/ui", get(page))
        .route("/ui/", get(page))
        .route("/ui/app.js", get(script))
        .route("/ui/app.css", get(style))
}

/// `GET /ui`: the page, with the envs of `--metrics-envs` as its env tabs.
async fn page(State(app): State<Arc<App>>) -> Response {
    let envs = app
        .options
        .metrics_envs
        .iter()
        .map(|e| html_escape(e))
        .collect::<Vec<_>>()
        .join(",");
    asset(
        "text/html; charset=utf-8",
        HTML.replace("{{ENVS}}", &envs).into_bytes(),
    )
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT.as_bytes().to_vec())
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE.as_bytes().to_vec())
}

fn asset(content_type: &'static str, body: Vec<u8>) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Text for an HTML attribute value.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
