//! How a command fails: the [`Failure`] that decides the exit code (`docs/cli.md`: 1 tool
//! error, 2 usage or configuration, 3 transport or authentication, or a code of its own).

use backlog_bridge::ToolError;

/// A failure that decides the exit code.
pub(crate) enum Failure {
    Tool(ToolError),
    Config(anyhow::Error),
    /// A message for stderr and the exit code to leave with.
    Exit(u8, anyhow::Error),
    /// Everything was already printed; leave with this code.
    Quiet(u8),
}
