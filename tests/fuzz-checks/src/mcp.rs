//! MCP JSON-RPC messages as the host reads them: `mcp::wire::read` (an HTTP POST body) and the
//! stdio transport (`mcp::stdio`, one message per line). What a message then does needs a
//! loaded bridge (guest components), so the target stops where rmcp's dispatch begins.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use backlog_bridge::mcp::stdio;
use backlog_bridge::mcp::wire::{self, INVALID_REQUEST, PARSE_ERROR};
use rmcp::transport::Transport as _;
use serde_json::Value;

/// What the stdio transport writes to stdout.
#[derive(Clone, Default)]
pub(crate) struct Sink(pub(crate) Arc<Mutex<Vec<u8>>>);

impl tokio::io::AsyncWrite for Sink {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.lock().expect("sink").extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What one message must get: accepted (as a request with this id, or a notification or
/// response without one), or a JSON-RPC error with this code and id.
#[derive(Debug, PartialEq)]
enum Expect {
    Accepted(Option<Value>),
    Refused(i64, Value),
}

/// The answer owed to `bytes`, decided independently of `wire::read`'s own reasoning: not
/// JSON → parse error without id; JSON → either a JSON-RPC 2.0 message, or invalid request
/// echoing a string or number `id`.
fn expect(bytes: &[u8], accepted: bool) -> Expect {
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return Expect::Refused(PARSE_ERROR, Value::Null);
    };
    let id = match value.get("id") {
        Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
        _ => Value::Null,
    };
    if accepted {
        assert_eq!(
            value["jsonrpc"], "2.0",
            "accepted without jsonrpc 2.0: {value}"
        );
        Expect::Accepted((!id.is_null()).then_some(id))
    } else {
        Expect::Refused(INVALID_REQUEST, id)
    }
}

/// Whether two ids are the same value: equal strings, or equal numbers (`51e3` is `51000`,
/// as JSON-RPC clients compare them; an integer must be exact).
fn same_id(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ if x.is_f64() || y.is_f64() => x.as_f64() == y.as_f64(),
            _ => x == y,
        },
        (a, b) => a == b,
    }
}

/// What `wire::read` answered, in the same terms; an accepted message keeps its id.
fn answered(bytes: &[u8]) -> Expect {
    match wire::read(bytes) {
        Ok((message, value)) => {
            let printed = serde_json::to_value(&message).expect("a message prints");
            assert_eq!(printed["jsonrpc"], "2.0");
            assert!(
                same_id(printed.get("id"), value.get("id")),
                "id not kept: {value} → {printed}"
            );
            Expect::Accepted(value.get("id").cloned())
        }
        Err(refusal) => {
            let out = refusal.to_json();
            assert_eq!(out["jsonrpc"], "2.0");
            assert!(out["error"]["message"].is_string());
            assert!(out.get("result").is_none());
            Expect::Refused(
                out["error"]["code"].as_i64().expect("an integer code"),
                out["id"].clone(),
            )
        }
    }
}

/// One JSON-RPC message (an HTTP body), then the same bytes as stdio lines: any bytes get
/// either an accepted message whose id is kept, or a well-formed JSON-RPC error (parse error,
/// or invalid request echoing the id); over stdio every non-blank line gets exactly one of
/// them, in order, and nothing else is written.
pub fn check_mcp(data: &[u8]) {
    let got = answered(data);
    let accepted = matches!(got, Expect::Accepted(_));
    if let Expect::Accepted(Some(id)) = &got {
        assert!(id.is_string() || id.is_number(), "id {id}");
    }
    // A response or notification has no id to check; a refusal's must match.
    if !accepted || matches!(got, Expect::Accepted(Some(_))) {
        assert_eq!(
            got,
            expect(data, accepted),
            "{:?}",
            String::from_utf8_lossy(data)
        );
    }

    // The stdio transport over the same bytes.
    let lines: Vec<&[u8]> = data
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let sink = Sink::default();
    let received = rt.block_on(async {
        let (mut transport, writer) =
            stdio::transport(std::io::Cursor::new(data.to_vec()), sink.clone());
        let mut received = Vec::new();
        while let Some(m) = transport.receive().await {
            received.push(serde_json::to_value(&m).expect("a message prints"));
        }
        drop(transport);
        writer.await.expect("the writer task ends");
        received
    });
    let written = sink.0.lock().expect("sink").clone();
    let written = String::from_utf8(written).expect("stdout is UTF-8");
    let mut out = written.lines();
    let mut messages = received.iter();
    for line in lines {
        match answered(line) {
            Expect::Accepted(_) => {
                let m = messages.next().expect("an accepted line is received");
                let (want, _) = wire::read(line).expect("accepted");
                assert_eq!(*m, serde_json::to_value(&want).expect("prints"));
            }
            Expect::Refused(code, id) => {
                let l = out.next().expect("a refused line is answered");
                let v: Value = serde_json::from_str(l).expect("the answer is JSON");
                assert_eq!(
                    (v["error"]["code"].as_i64(), &v["id"]),
                    (Some(code), &id),
                    "{l}"
                );
            }
        }
    }
    assert!(
        messages.next().is_none(),
        "more messages than accepted lines"
    );
    assert!(
        out.next().is_none(),
        "more answers than refused lines: {written}"
    );
}
