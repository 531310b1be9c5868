//! The browser guard: one check, in front of every route of `serve` (REST, `/v1/tools*`,
//! `/mcp`, `/metrics`, the status routes), that keeps web pages from driving the bridge
//! through the user's browser.
//!
//! A browser marks what it sends: `Origin` on every cross-origin request and every POST,
//! `Sec-Fetch-Site` on everything, and a "simple" request (no CORS preflight) can only carry
//! `text/plain`, `application/x-www-form-urlencoded` or `multipart/form-data`. So, in order:
//! 1. **Origin**: present and neither loopback nor in `--allowed-origin` → 403.
//! 2. **Sec-Fetch-Site: cross-site** → 403 unless the request's `Origin` passes rule 1 (a
//!    cross-site `<script src>` or `<img>` GET carries no Origin at all).
//! 3. **Host** (DNS rebinding: a page whose name now resolves to 127.0.0.1 sends its own name
//!    in `Host`): on a loopback listener, or whenever `--allowed-host` is given, `Host` must be
//!    a loopback name/address or one of the allowed names → 403.
//! 4. **Content-Type**: a POST (PUT, PATCH) that carries a `Content-Type` or any browser
//!    marker (`Origin`, `Sec-Fetch-*`) must be `application/json` → 415. That is the type a
//!    page cannot send without a preflight this server never grants; every form and every
//!    `fetch` with a string body carries a type, and a cross-origin `fetch` always `Origin`.
//!    (A client that is no browser and sends no type, e.g. `curl -X POST` without a body,
//!    passes; its body is still parsed as JSON.)
//!
//! Requests without browser headers (curl, agents, SDKs, the scheduler) pass rules 1–2 and 4
//! untouched; rule 3 only asks for the `Host` any HTTP/1.1 client sends for the address it
//! dialled.
//!
//! Must not: read the body; depend on authentication (a keyed request from a hostile page is
//! refused the same way: the key may be the browser's own, e.g. from a local extension).

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, Method, StatusCode, header};
use serde_json::{Value, json};

/// What the guard accepts besides loopback.
#[derive(Debug, Clone, Default)]
pub struct BrowserPolicy {
    /// Origins allowed besides loopback ones, exactly as browsers send them
    /// (`https://console.example.com`). `null` only when listed.
    pub allowed_origins: Vec<String>,
    /// `Host` values accepted besides loopback ones (with a port: only that port).
    pub allowed_hosts: Vec<String>,
    /// Whether `Host` is checked (rule 3).
    pub check_host: bool,
}

/// Why the guard refused a request: the status and the error object.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: StatusCode,
    pub body: Value,
}

impl Refusal {
    fn forbidden(message: String) -> Refusal {
        Refusal {
            status: StatusCode::FORBIDDEN,
            body: crate::error::ToolError::new(crate::error::Code::Forbidden, message).to_json(),
        }
    }

    /// The message, for the log.
    pub fn message(&self) -> &str {
        self.body["error"].as_str().unwrap_or_default()
    }
}

impl BrowserPolicy {
    /// The policy of a listener: `Host` is checked on loopback (where rebinding is the
    /// attack), with an anonymous agent, or when names are configured.
    pub fn new(
        listen: SocketAddr,
        anonymous: bool,
        allowed_origins: Vec<String>,
        allowed_hosts: Vec<String>,
    ) -> BrowserPolicy {
        BrowserPolicy {
            check_host: listen.ip().is_loopback() || anonymous || !allowed_hosts.is_empty(),
            allowed_origins,
            allowed_hosts,
        }
    }

    /// Rules 1–4 of the module documentation.
    pub fn check(&self, method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
        let origin = headers.get(header::ORIGIN).map(|o| o.to_str().ok());
        let origin_ok = origin.map(|o| o.is_some_and(|o| self.origin_allowed(o)));
        if origin_ok == Some(false) {
            return Err(Refusal::forbidden(format!(
                "Origin `{}` may not call this server: only loopback origins and --allowed-origin \
                 may (browser guard)",
                printable(origin.flatten().unwrap_or("<not text>"))
            )));
        }
        let site = headers.get("sec-fetch-site").map(|v| v.as_bytes());
        if site.is_some_and(|s| s.eq_ignore_ascii_case(b"cross-site")) && origin_ok != Some(true) {
            return Err(Refusal::forbidden(
                "a cross-site browser request (Sec-Fetch-Site: cross-site) without an allowed \
                 Origin is refused (browser guard)"
                    .to_owned(),
            ));
        }
        if self.check_host {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
            if !host.is_some_and(|h| self.host_allowed(h)) {
                let mut allowed = vec!["localhost", "127.0.0.1", "[::1]"];
                allowed.extend(self.allowed_hosts.iter().map(String::as_str));
                return Err(Refusal::forbidden(format!(
                    "Host `{}` is not served here (allowed: {}; more with --allowed-host); DNS \
                     rebinding protection",
                    printable(host.unwrap_or_default()),
                    allowed.join(", ")
                )));
            }
        }
        if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
            let content_type = headers.get(header::CONTENT_TYPE);
            let from_browser = origin.is_some()
                || site.is_some()
                || headers.contains_key("sec-fetch-mode")
                || headers.contains_key("sec-fetch-dest");
            let needs_json = content_type.is_some() || from_browser;
            if needs_json && !content_type.is_some_and(|t| is_json(t.as_bytes())) {
                return Err(Refusal {
                    status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    body: json!({
                        "error": format!(
                            "a {method} with a body must be sent as `Content-Type: application/json` \
                             (got `{}`)",
                            printable(content_type.and_then(|t| t.to_str().ok()).unwrap_or("none"))
                        ),
                        "code": "unsupported_media_type",
                    }),
                });
            }
        }
        Ok(())
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|o| o == origin) || origin_is_loopback(origin)
    }

    /// An allowed entry without port matches the name on any port; with a port, only that.
    fn host_allowed(&self, host: &str) -> bool {
        if host_is_loopback(host) {
            return true;
        }
        let (name, port) = split_authority(host);
        self.allowed_hosts.iter().any(|a| {
            let (a_name, a_port) = split_authority(a);
            a_name.eq_ignore_ascii_case(name) && (a_port.is_none() || a_port == port)
        })
    }
}

/// `application/json`, with or without parameters (`; charset=utf-8`), any case.
fn is_json(value: &[u8]) -> bool {
    let essence = value.split(|b| *b == b';').next().unwrap_or_default();
    essence
        .trim_ascii()
        .eq_ignore_ascii_case(b"application/json")
}

/// Caller text for a message: at most 100 characters, control characters escaped.
fn printable(text: &str) -> String {
    text.chars()
        .take(100)
        .flat_map(char::escape_debug)
        .collect::<String>()
}

/// Whether `scheme://host[:port]` names a loopback host.
pub fn origin_is_loopback(origin: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    if !matches!(scheme, "http" | "https") || rest.contains(['/', '@', '?', '#']) {
        return false;
    }
    host_is_loopback(rest)
}

/// Whether an authority (`host[:port]`, `[v6][:port]`) is loopback.
fn host_is_loopback(authority: &str) -> bool {
    let (host, _) = split_authority(authority);
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `host[:port]` or `[v6][:port]` → host (without brackets) and port.
fn split_authority(authority: &str) -> (&str, Option<&str>) {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').unwrap_or((rest, ""));
        return (host, after.strip_prefix(':'));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => (host, Some(port)),
        _ => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn policy(origins: &[&str], hosts: &[&str]) -> BrowserPolicy {
        BrowserPolicy::new(
            "127.0.0.1:8000".parse().unwrap(),
            false,
            origins.iter().map(|s| s.to_string()).collect(),
            hosts.iter().map(|s| s.to_string()).collect(),
        )
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8000"));
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[track_caller]
    fn origin_row(origin: &str, allowed: &[&str], expect: bool) {
        let got = policy(allowed, &[]).check(&Method::GET, &headers(&[("origin", origin)]));
        assert_eq!(got.is_ok(), expect, "{origin}: {got:?}");
    }

    #[test]
    fn origins() {
        origin_row("http://localhost", &[], true);
        origin_row("http://localhost:6274", &[], true);
        origin_row("https://127.0.0.1:8000", &[], true);
        origin_row("http://127.1.2.3", &[], true);
        origin_row("http://[::1]:8000", &[], true);
        origin_row("http://LOCALHOST:1", &[], true);
        origin_row("http://evil.example", &[], false);
        origin_row("http://localhost.evil.example", &[], false);
        origin_row("http://127.0.0.1.evil.example", &[], false);
        origin_row("http://user@localhost", &[], false);
        origin_row("null", &[], false);
        origin_row("file://", &[], false);
        origin_row("http://10.0.0.1", &[], false);
        let console = "https://console.example.com";
        origin_row(console, &[console], true);
        origin_row("https://console.example.com:444", &[console], false);
        origin_row("null", &["null"], true);
    }

    #[track_caller]
    fn host_row(host: &str, allowed: &[&str], expect: bool) {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        let got = policy(&[], allowed).check(&Method::GET, &h);
        assert_eq!(got.is_ok(), expect, "{host}: {got:?}");
    }

    #[test]
    fn hosts() {
        host_row("127.0.0.1:8000", &[], true);
        host_row("localhost", &[], true);
        host_row("[::1]:8000", &[], true);
        host_row("evil.example:8000", &[], false);
        host_row("router", &["router:443"], false);
        host_row("router:443", &["router:443"], true);
        host_row("router:8443", &["router"], true);
        // No Host at all on a loopback listener.
        let got = policy(&[], &[]).check(&Method::GET, &HeaderMap::new());
        assert!(got.is_err());
        // A public listener without configured names does not check Host.
        let public = BrowserPolicy::new("0.0.0.0:80".parse().unwrap(), false, vec![], vec![]);
        assert!(public.check(&Method::GET, &HeaderMap::new()).is_ok());
    }

    #[test]
    fn cross_site_needs_an_allowed_origin() {
        let p = policy(&["https://console.example.com"], &[]);
        let cross = ("sec-fetch-site", "cross-site");
        assert!(p.check(&Method::GET, &headers(&[cross])).is_err());
        assert!(
            p.check(
                &Method::GET,
                &headers(&[cross, ("origin", "https://console.example.com")])
            )
            .is_ok()
        );
        assert!(
            p.check(&Method::GET, &headers(&[("sec-fetch-site", "same-origin")]))
                .is_ok()
        );
    }

    #[test]
    fn posts_from_browsers_or_with_a_body_must_be_json() {
        let p = policy(&[], &[]);
        let status = |pairs: &[(&'static str, &str)]| {
            p.check(&Method::POST, &headers(pairs))
                .err()
                .map(|r| r.status.as_u16())
        };
        assert_eq!(status(&[]), None, "curl -X POST without a body");
        assert_eq!(
            status(&[("content-length", "2")]),
            None,
            "no type, no browser"
        );
        assert_eq!(
            status(&[("content-type", "application/json; charset=UTF-8")]),
            None
        );
        assert_eq!(status(&[("content-type", "text/plain")]), Some(415));
        assert_eq!(
            status(&[("content-type", "application/x-www-form-urlencoded")]),
            Some(415)
        );
        assert_eq!(status(&[("origin", "http://localhost:3000")]), Some(415));
        assert_eq!(status(&[("sec-fetch-mode", "no-cors")]), Some(415));
        assert_eq!(
            p.check(&Method::GET, &headers(&[("content-type", "text/plain")]))
                .err(),
            None
        );
    }
}
