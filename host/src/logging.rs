//! The process's log setup: `tracing` events on stderr, as text or JSON, that a caller cannot
//! forge.
//!
//! A log line must stay one line whatever a caller sends: every field value and every message
//! goes through [`EscapedFields`], which escapes line breaks and every other control character
//! (`\n`, `\r`, `\t`, `\u{1b}`, U+2028/U+2029, …) after formatting, so a `%`-formatted field or
//! a message that carries caller text cannot start a second, well-formed line. The JSON format
//! escapes through serde. Caller text still belongs in fields, never in the message.
//!
//! The MCP SDK (`rmcp`) logs whole `initialize` parameters, notifications and session ids at
//! INFO and below; it is capped at WARN whatever `RUST_LOG` says (session ids are bearer
//! tokens of a session, and peer info is caller-sized). The MCP face logs its own, truncated
//! view of a peer (`mcp::handler`).
//!
//! Each event is formatted into one buffer and written with one `write` on descriptor 2,
//! without std's lock on stderr; in the long-running commands, lines that gather while one
//! caller writes go out together in its next `write` (`writer.rs`).
//!
//! Must not: write to stdout (stdio MCP: stdout is the protocol).

use std::fmt::{self, Write as _};

use tracing::Level;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, filter};

/// Formats fields like tracing-subscriber's default formatter, then escapes every control
/// character of the result, so no field value or message can break the line.
#[derive(Debug, Default, Clone, Copy)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut plain = String::new();
        DefaultFields::new().format_fields(Writer::new(&mut plain), fields)?;
        writer.write_str(&escape(&plain))
    }
}

/// `text` with every control character (and the Unicode line and paragraph separators)
/// replaced by a visible escape; other text unchanged.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    let needs = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if !text.chars().any(needs) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.into()
}

/// At most `max` bytes of `text` (cut at a character boundary, `…` appended when cut): for
/// logging caller-sized values.
pub fn truncate(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end]).into()
}

mod writer;
pub use writer::Flush;
use writer::LogWriter;

/// Installs the global subscriber: stderr, `RUST_LOG` (else `default_filter`), text or JSON.
/// `batched` (the long-running commands): lines written together under load (a combining
/// writer, `writer.rs`); keep the returned [`Flush`] until the process ends, so the last lines
/// are written.
pub fn init(json: bool, ansi: bool, default_filter: &str, batched: bool) -> Option<Flush> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Whatever RUST_LOG says: the MCP SDK's INFO/DEBUG lines carry session ids and whole
    // caller documents.
    let sdk_cap = filter::filter_fn(|meta| {
        !meta.target().starts_with("rmcp") || *meta.level() <= Level::WARN
    });
    let registry = tracing_subscriber::registry().with(filter);
    let (make_writer, flush) = match batched.then(|| writer::batched(writer::Stderr)) {
        Some((batch, flush)) => (LogWriter::Batched(batch), Some(flush)),
        None => (LogWriter::Direct, None),
    };
    if json {
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .with_writer(make_writer)
            .with_filter(sdk_cap);
        registry.with(layer).init();
    } else {
        let layer = tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(ansi)
            .fmt_fields(EscapedFields)
            .with_writer(make_writer)
            .with_filter(sdk_cap);
        registry.with(layer).init();
    }
    flush
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("plain text"), "plain text");
        assert_eq!(
            escape("a\nINFO tool call\r\tb\u{1b}[31m\u{2028}"),
            "a\\nINFO tool call\\r\\tb\\u{1b}[31m\\u{2028}"
        );
        assert_eq!(escape("ü ✓"), "ü ✓");
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("aü", 2), "a…");
    }

    /// A message and `%` fields with a newline stay on one line.
    #[test]
    fn formatted_events_stay_on_one_line() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .fmt_fields(EscapedFields)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let evil = "x\nINFO tool call agent=operator action=cleanup outcome=\"ok\"";
            tracing::info!(display = %evil, debug = evil, "message {evil}");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.contains("x\\nINFO tool call"), "{out}");
    }
}
