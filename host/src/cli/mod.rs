//! The command line (`docs/cli.md`): [`args`] is the raw clap input; [`Settings`] is what the
//! rest of the program reads, built once from flags and environment. One module per command
//! family: `call` (`call`, `batch`), `serve`, `cron`, `migrate`; the rest is dispatched here.

mod args;
mod audit;
mod call;
mod cron;
mod load;
mod migrate;
mod serve;

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use backlog_bridge::{Bridge, Settings, http, scheduler};
use chrono::{DateTime, Utc};
use clap::{CommandFactory as _, Parser as _};
use serde_json::json;

use self::args::{Args, Command, ConfigCommand, LogFormat, PluginsCommand, SchedulerCommand};
use crate::output::{self, Format, Kind, emit, emit_line};
use crate::run_job::{self, Job};

use self::load::load;
pub(crate) use crate::exit::Failure;

pub fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    // The long-running commands keep their start-up and access lines at info; one-shot
    // commands print only warnings and errors unless asked (-v, RUST_LOG).
    let daemon = matches!(
        args.command,
        Command::Serve { .. } | Command::Scheduler { command: None, .. }
    );
    // Held to the end of `main`: the batched log's last lines are written when it drops.
    let _log = init_logging(args.log_format, args.verbose, daemon);
    let format = Format::resolve(args.output);
    match run(args, format) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Tool(e)) => {
            // The exit code is the tool's outcome, whether or not anyone still reads.
            let _ = emit(&output::render(&e.to_json(), Kind::Call(""), format, false));
            ExitCode::from(e.code.exit_code())
        }
        Err(Failure::Config(e)) => {
            warn_stderr(&e);
            ExitCode::from(2)
        }
        Err(Failure::Exit(code, e)) => {
            warn_stderr(&e);
            ExitCode::from(code)
        }
        Err(Failure::Quiet(code)) => ExitCode::from(code),
    }
}

/// The one error line on stderr (a closed stderr is not worth a panic).
fn warn_stderr(e: &anyhow::Error) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "backlog-bridge: {e:#}");
}

fn run(args: Args, format: Format) -> Result<(), Failure> {
    match args.command {
        Command::Migrate {
            dsn,
            dry_run,
            import_jsonl,
        } => return migrate::run(dsn.as_deref(), dry_run, import_jsonl, format),
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Args::command(), "backlog-bridge", &mut buf);
            return emit(&String::from_utf8_lossy(&buf));
        }
        Command::Man => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(Args::command())
                .render(&mut buf)
                .map_err(|e| Failure::Exit(1, e.into()))?;
            return emit(&String::from_utf8_lossy(&buf));
        }
        _ => {}
    }
    check_config_dir(&args.config_dir)?;
    let mut settings =
        Settings::from_env(args.config_dir, args.ops_dir).map_err(Failure::Config)?;
    if let Some(dir) = args.audit_dir {
        settings.audit_dir = dir;
    }
    match args.command {
        Command::Call {
            tool,
            action,
            params_json,
            agent,
        } => call::call(settings, &agent, &tool, &action, &params_json, format),
        Command::Explain {
            agent,
            tool,
            action,
        } => {
            let bridge = Bridge::load(settings).map_err(Failure::Config)?;
            let call = match (&tool, &action) {
                (Some(t), Some(a)) => Some((t.as_str(), a.as_str())),
                (None, None) => None,
                _ => {
                    return Err(Failure::Config(anyhow::anyhow!(
                        "explain takes AGENT, or AGENT TOOL ACTION"
                    )));
                }
            };
            let explanation = backlog_bridge::explain::explain(&bridge, &agent, call)
                .map_err(|e| Failure::Config(anyhow::anyhow!("{}", e.message)))?;
            match format {
                Format::Table => emit(&explanation.to_text()),
                _ => emit(&output::render(
                    &explanation.to_json(),
                    Kind::Plain,
                    format,
                    true,
                )),
            }
        }
        Command::Openapi => {
            let bridge = Bridge::load(settings).map_err(Failure::Config)?;
            let doc = http::openapi::document(&bridge);
            let text =
                serde_json::to_string_pretty(&doc).map_err(|e| Failure::Exit(1, e.into()))?;
            emit_line(&text)
        }
        Command::Batch { agent } => call::batch(settings, agent.as_deref()),
        Command::Serve(serve) => serve::run(settings, serve),
        Command::Mcp { agent } => {
            let Some(agent) = agent.filter(|a| !a.is_empty()) else {
                return Err(Failure::Config(anyhow::anyhow!(
                    "mcp needs an agent: pass --agent ID or set BACKLOG_BRIDGE_AGENT \
                     (agents are defined in config/rbac_tools_matrix.yml)"
                )));
            };
            let bridge = load(settings, &agent)?;
            backlog_bridge::mcp::run_stdio(bridge, &agent).map_err(|e| Failure::Exit(1, e.into()))
        }
        Command::Audit { command } => audit::run(&settings.audit_dir, command, format),
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            let summary = backlog_bridge::check::check(&settings, |k| std::env::var(k).ok())
                .map_err(|errors| Failure::Config(backlog_bridge::registry::join_errors(errors)))?;
            match format {
                Format::Table => {
                    let jobs = summary
                        .jobs
                        .map(|n| format!(", {n} registry jobs"))
                        .unwrap_or_default();
                    emit_line(&format!(
                        "config ok: {} ({} plugins, {} agents{jobs})",
                        summary.config_dir,
                        summary.plugins.len(),
                        summary.agents
                    ))
                }
                _ => emit(&output::render(&json!(summary), Kind::Plain, format, true)),
            }
        }
        Command::Plugins { command } => {
            let doc = match command {
                PluginsCommand::List => {
                    let bridge = Bridge::load(settings).map_err(Failure::Config)?;
                    let mut doc = bridge.tools_for(None);
                    let digests: std::collections::BTreeMap<&str, String> =
                        bridge.digests().collect();
                    for tool in doc["tools"].as_array_mut().into_iter().flatten() {
                        if let Some(d) = tool["name"].as_str().and_then(|n| digests.get(n)) {
                            tool["digest"] = json!(d);
                        }
                    }
                    doc
                }
                PluginsCommand::Inspect { file } => {
                    let info = backlog_bridge::registry::inspect(&settings, &file)
                        .map_err(Failure::Config)?;
                    json!({ "tools": [info] })
                }
            };
            emit(&output::render(&doc, Kind::Plugins, format, true))
        }
        Command::RunJob {
            job,
            tool,
            action,
            params_json,
            dry_run,
            router_url,
            local,
        } => {
            let what = match (job, tool, action) {
                (Some(id), _, _) => Job::Registry(id),
                (None, Some(tool), Some(action)) => Job::Adhoc {
                    tool,
                    action,
                    params: params_json.unwrap_or_else(|| "{}".into()),
                },
                _ => {
                    return Err(Failure::Config(anyhow::anyhow!(
                        "run-job needs --job ID or --tool T --action A"
                    )));
                }
            };
            run_job::run(settings, what, dry_run, router_url, local)
        }
        Command::Scheduler {
            command: Some(SchedulerCommand::Status),
            ..
        } => {
            let bridge = Bridge::load(settings).map_err(Failure::Config)?;
            let status = scheduler::status(&bridge).map_err(Failure::Config)?;
            emit(&output::render(
                &status,
                Kind::SchedulerStatus,
                format,
                true,
            ))
        }
        Command::Scheduler {
            command: None,
            from,
            until,
        } => {
            let clock = match (from, until) {
                (Some(f), Some(u)) => scheduler::Clock::Span {
                    from: parse_time("--from", &f)?,
                    until: parse_time("--until", &u)?,
                },
                _ => scheduler::Clock::Wall,
            };
            let daemon = matches!(clock, scheduler::Clock::Wall);
            // SIGHUP (the daemon only): reload between ticks, as `serve` does (handled before
            // the config is read, so a HUP never ends the process; one that comes meanwhile
            // reloads at the first tick).
            let hangup = Arc::new(AtomicBool::new(false));
            if daemon {
                signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hangup))
                    .map_err(|e| {
                        Failure::Config(anyhow::anyhow!("cannot handle signal SIGHUP: {e}"))
                    })?;
            }
            let bridge = Arc::new(Bridge::load(settings).map_err(Failure::Config)?);
            let audit_dir = bridge.settings.audit_dir.clone();
            if daemon {
                audit::lifecycle(&bridge, "start");
            }
            // SIGTERM/SIGINT: finish the job in hand, record it, stop (within a second when
            // idle) — a killed scheduler would leave its claimed run `running`.
            let stop = Arc::new(AtomicBool::new(false));
            for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
                signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(|e| {
                    Failure::Config(anyhow::anyhow!("cannot handle signal {signal}: {e}"))
                })?;
            }
            let reloader = backlog_bridge::reload::Reloader::new(Arc::new(
                backlog_bridge::registry::Live::new(bridge),
            ));
            let between = || {
                if hangup.swap(false, std::sync::atomic::Ordering::Relaxed) {
                    tracing::info!("scheduler: SIGHUP received: reloading the config");
                    let trigger = backlog_bridge::reload::Trigger::Signal;
                    // The outcome is logged and audited by the reload itself.
                    let _ = reloader.reload(&trigger, |_| Ok(()), |()| {});
                }
            };
            let summary = scheduler::run(reloader.live(), clock, &stop, &between);
            if daemon {
                audit::stopped(&audit_dir, summary.is_ok());
            }
            let summary = summary.map_err(Failure::Config)?;
            emit_line(&serde_json::to_string(&summary).unwrap_or_default())
        }
        Command::Cron { command } => cron::run(&settings, command),
        Command::Migrate { .. } | Command::Completions { .. } | Command::Man => {
            unreachable!("handled before settings are read")
        }
    }
}

fn parse_time(flag: &str, s: &str) -> Result<DateTime<Utc>, Failure> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Failure::Config(anyhow::anyhow!("{flag} {s:?} is not an RFC 3339 time: {e}")))
}

/// The config directory must hold the RBAC matrix; say where it was looked for and how to
/// point elsewhere (the flag wins over the variable).
fn check_config_dir(dir: &std::path::Path) -> Result<(), Failure> {
    let file = dir.join(backlog_bridge::config::rbac::FILE);
    if file.is_file() {
        return Ok(());
    }
    let from = if std::env::var_os("BACKLOG_BRIDGE_CONFIG_DIR").is_some() {
        "--config-dir or BACKLOG_BRIDGE_CONFIG_DIR"
    } else {
        "--config-dir, else BACKLOG_BRIDGE_CONFIG_DIR, else ./config"
    };
    Err(Failure::Config(anyhow::anyhow!(
        "no configuration found: {} does not exist (the config dir `{}` comes from {from}). Pass \
         --config-dir DIR or set BACKLOG_BRIDGE_CONFIG_DIR to the directory holding \
         rbac_tools_matrix.yml, plugins.yml and backlog_policy.yml, and --ops-dir DIR or \
         BACKLOG_BRIDGE_OPS_DIR to the operator files (backlog/, reports/, task_registry.yml)",
        file.display(),
        dir.display()
    )))
}

fn init_logging(
    format: LogFormat,
    verbose: u8,
    daemon: bool,
) -> Option<backlog_bridge::logging::Flush> {
    let default = match (verbose, daemon) {
        (0, false) => "warn",
        (0, true) | (1, _) => "info",
        _ => "debug",
    };
    // Colours only on a terminal: logs in files and pipes stay greppable (`status=403`).
    let ansi = std::io::stderr().is_terminal();
    // The long-running commands batch their lines (`logging/writer.rs`).
    backlog_bridge::logging::init(matches!(format, LogFormat::Json), ansi, default, daemon)
}
