//! `migrate`: the Postgres schema and the JSONL import.

use std::path::PathBuf;

use backlog_bridge::caps::pg::Dsn;
use backlog_bridge::migrate;

use crate::exit::Failure;
use crate::output::{self, Format, Kind, emit};

/// `migrate`: needs only a DSN, not the config files.
pub(super) fn run(
    dsn: Option<&str>,
    dry_run: bool,
    import_jsonl: Option<PathBuf>,
    format: Format,
) -> Result<(), Failure> {
    let var = |k: &str| std::env::var(k).ok();
    let Some(dsn) = Dsn::resolve(dsn, var) else {
        return Err(Failure::Config(anyhow::anyhow!(
            "migrate needs a Postgres DSN: pass --dsn or set BACKLOG_POSTGRES_DSN (or POSTGRES_DSN)"
        )));
    };
    let options = migrate::Options {
        dsn,
        dry_run,
        import_jsonl,
    };
    let (summary, sql) =
        migrate::run(&options).map_err(|e| Failure::Exit(e.exit_code(), e.into()))?;
    let summary = serde_json::to_value(&summary).unwrap_or_default();
    if dry_run {
        // stdout is the SQL alone (`| psql -f -`); the summary is for the person.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            output::render(&summary, Kind::Plain, Format::Json, false).as_bytes(),
        );
        return emit(&sql);
    }
    emit(&output::render(&summary, Kind::Plain, format, false))
}
