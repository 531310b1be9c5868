//! The guest's log: stderr, which the host captures (a leaf).

/// Writes one line to stderr, which the host captures into its log. Never fails the call.
pub(crate) fn log(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}
