//! The stdio transport: one JSON-RPC message per line on stdin, one per line on stdout.
//!
//! rmcp's own line codec skips a line it cannot decode without a word; this transport answers
//! every line: a message rmcp can serve goes to it, anything else gets its JSON-RPC error
//! (`wire::read`) on stdout and a WARN line on stderr. Lines longer than [`MAX_LINE_BYTES`]
//! are refused the same way (their rest is skipped) rather than buffered.
//!
//! One writer task owns stdout, so replies of concurrent calls and refusals never interleave
//! within a line.

use std::borrow::Cow;

use rmcp::RoleServer;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::Transport;
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::sync::mpsc;

use super::wire::{self, PARSE_ERROR, Refusal};

/// The longest line read: twice the params limit, like the HTTP face's body limit.
pub const MAX_LINE_BYTES: usize = 2 * crate::call::MAX_PARAMS_BYTES;

/// Lines queued for stdout.
const OUT_QUEUE: usize = 64;

/// The transport over any line reader and writer (stdin/stdout in production).
pub struct Lines<R> {
    reader: R,
    partial: Partial,
    out: mpsc::Sender<String>,
}

/// The transport and the task that writes its lines; await the task after the service ends
/// so the last replies are flushed.
pub fn transport<R, W>(reader: R, writer: W) -> (Lines<BufReader<R>>, tokio::task::JoinHandle<()>)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (out, mut rx) = mpsc::channel::<String>(OUT_QUEUE);
    let writer_task = tokio::spawn(async move {
        let mut writer = writer;
        while let Some(mut line) = rx.recv().await {
            line.push('\n');
            if writer.write_all(line.as_bytes()).await.is_err() || writer.flush().await.is_err() {
                tracing::debug!("mcp: stdout closed");
                return;
            }
        }
    });
    (
        Lines {
            reader: BufReader::new(reader),
            partial: Partial::default(),
            out,
        },
        writer_task,
    )
}

/// The line being read. It lives in the transport, not in the `receive` future: rmcp polls
/// `receive` inside a `select!` and may drop it between two chunks of a line, and the bytes
/// already consumed must not go with it (the next `receive` would start mid-message).
#[derive(Debug, Default)]
struct Partial {
    line: Vec<u8>,
    /// Bytes of the line seen so far (kept only while within the limit).
    seen: usize,
}

/// One line of at most `max` bytes (without its newline); `Ok(None)` at end of input;
/// `Err(len)` for a longer line, whose rest has been skipped. Cancel-safe: a dropped call
/// leaves what it read in `partial`, and the next call goes on from there.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    partial: &mut Partial,
    max: usize,
) -> std::io::Result<Option<Result<Vec<u8>, usize>>> {
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            let Partial { line, seen } = std::mem::take(partial);
            return Ok(if seen == 0 {
                None
            } else if seen > max {
                Some(Err(seen))
            } else {
                Some(Ok(line))
            });
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        partial.seen += chunk.len();
        if partial.seen <= max {
            partial.line.extend_from_slice(chunk);
        } else {
            partial.line = Vec::new();
        }
        let consumed = done.unwrap_or(buf.len());
        reader.consume(consumed);
        if done.is_some() {
            let Partial { line, seen } = std::mem::take(partial);
            return Ok(Some(if seen > max { Err(seen) } else { Ok(line) }));
        }
    }
}

/// Logs a refused line and queues its JSON-RPC error.
async fn refuse(out: &mpsc::Sender<String>, refusal: Refusal) {
    {
        tracing::warn!(
            via = "mcp-stdio",
            code = refusal.code,
            kind = refusal.kind(),
            reason = %crate::logging::truncate(&refusal.message, 200),
            "mcp: refused an unreadable message"
        );
    }
    let _ = out.send(refusal.to_json().to_string()).await;
}

impl<R> Transport<RoleServer> for Lines<R>
where
    R: AsyncBufRead + Unpin + Send + 'static,
{
    type Error = std::io::Error;

    fn name() -> Cow<'static, str> {
        "stdio-lines".into()
    }

    fn send(
        &mut self,
        item: ServerJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let out = self.out.clone();
        async move {
            let line = serde_json::to_string(&item).map_err(std::io::Error::other)?;
            out.send(line)
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "stdout closed"))
        }
    }

    async fn receive(&mut self) -> Option<ClientJsonRpcMessage> {
        loop {
            let line = match read_line(&mut self.reader, &mut self.partial, MAX_LINE_BYTES).await {
                Ok(None) => return None,
                Ok(Some(line)) => line,
                Err(e) => {
                    tracing::warn!(error = %e, "mcp: cannot read stdin");
                    return None;
                }
            };
            let line = match line {
                Ok(line) => line,
                Err(len) => {
                    refuse(&self.out, Refusal::new(
                        PARSE_ERROR,
                        format!("Parse error: the line is {len} bytes; the limit is {MAX_LINE_BYTES}"),
                        Value::Null,
                    ))
                    .await;
                    continue;
                }
            };
            let line = line.strip_suffix(b"\r").unwrap_or(&line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match wire::read(line) {
                Ok((message, _)) => return Some(message),
                Err(refusal) => refuse(&self.out, refusal).await,
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_cut_at_the_limit() {
        let input: &[u8] = b"short\n0123456789abc\nlast";
        let mut r = BufReader::with_capacity(4, input);
        let mut p = Partial::default();
        assert_eq!(
            read_line(&mut r, &mut p, 8).await.unwrap(),
            Some(Ok(b"short".to_vec()))
        );
        assert_eq!(read_line(&mut r, &mut p, 8).await.unwrap(), Some(Err(13)));
        assert_eq!(
            read_line(&mut r, &mut p, 8).await.unwrap(),
            Some(Ok(b"last".to_vec()))
        );
        assert_eq!(read_line(&mut r, &mut p, 8).await.unwrap(), None);
    }

    /// A read dropped mid-line (as rmcp's `select!` may) loses none of the line.
    #[tokio::test]
    async fn a_dropped_read_keeps_the_half_line() {
        use futures_util::FutureExt as _;
        let (mut client, server) = tokio::io::duplex(64);
        let mut r = BufReader::new(server);
        let mut p = Partial::default();
        client.write_all(b"{\"id\":").await.unwrap();
        assert!(read_line(&mut r, &mut p, 64).now_or_never().is_none());
        client.write_all(b"3}\n").await.unwrap();
        assert_eq!(
            read_line(&mut r, &mut p, 64).await.unwrap(),
            Some(Ok(b"{\"id\":3}".to_vec()))
        );
    }
}
