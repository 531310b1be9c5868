//! `cron render` and `cron check`: the registry's cron file, written or compared.

use anyhow::Context as _;
use backlog_bridge::config::rbac::Matrix;
use backlog_bridge::{Settings, scheduler};
use scheduler_core::cronfile;
use serde_json::json;

use super::args::CronCommand;
use crate::exit::Failure;
use crate::output::emit_line;

/// `cron render` / `cron check`: need the registry and the matrix, no plugins.
pub(super) fn run(settings: &Settings, command: CronCommand) -> Result<(), Failure> {
    let matrix = Matrix::load(&settings.config_dir).map_err(|e| Failure::Config(e.into()))?;
    let catalog = scheduler::catalog(&matrix, |_| true);
    let (registry, _) =
        scheduler::load_registry(&settings.ops_dir, &catalog).map_err(Failure::Config)?;
    let default_file = settings.ops_dir.join("cron").join("jobs.cron");
    match command {
        CronCommand::Render => {
            let text = cronfile::render(&registry, &cronfile::Header::default());
            if let Some(dir) = default_file.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))
                    .map_err(Failure::Config)?;
            }
            std::fs::write(&default_file, text)
                .with_context(|| format!("cannot write {}", default_file.display()))
                .map_err(Failure::Config)?;
            emit_line(
                &json!({"file": default_file.display().to_string(), "jobs": registry.jobs.len()})
                    .to_string(),
            )
        }
        CronCommand::Check { file } => {
            let file = file.unwrap_or(default_file);
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))
                .map_err(Failure::Config)?;
            let drifts = cronfile::check(&registry, &text);
            let names: Vec<String> = drifts.iter().map(ToString::to_string).collect();
            for d in &names {
                eprintln!("backlog-bridge: {}: {d}", file.display());
            }
            emit_line(
                &json!({"file": file.display().to_string(), "in_sync": names.is_empty(), "drifts": names})
                    .to_string(),
            )?;
            if names.is_empty() {
                Ok(())
            } else {
                Err(Failure::Quiet(1))
            }
        }
    }
}
