//! Two stages: [`Args`] is the raw clap input; [`Settings`] is what the rest of the program
//! reads, built once from flags and environment.

use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;
use backlog_bridge::caps::pg::Dsn;
use backlog_bridge::config::rbac::Matrix;
use backlog_bridge::{Bridge, CallRequest, Settings, ToolError, bridge, http, migrate, scheduler};
use chrono::{DateTime, Utc};
use clap::{CommandFactory as _, Parser, Subcommand, ValueEnum};
use scheduler_core::cronfile;
use serde_json::{Value, json};

use crate::output::{self, Format, Kind, emit, emit_line};

/// Engineering Backlog Bridge: sandboxed backlog tools behind RBAC.
#[derive(Parser, Debug)]
#[command(name = "backlog-bridge", version)]
struct Args {
    /// Directory holding rbac_tools_matrix.yml, plugins.yml and backlog_policy.yml.
    #[arg(
        long,
        global = true,
        env = "BACKLOG_BRIDGE_CONFIG_DIR",
        default_value = "config"
    )]
    config_dir: PathBuf,
    /// Operations directory: backlog/ (JSONL store), reports/, cron/, task_registry.yml.
    #[arg(
        long,
        global = true,
        env = "BACKLOG_BRIDGE_OPS_DIR",
        default_value = "ops"
    )]
    ops_dir: PathBuf,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Output of call, plugins, scheduler status, migrate and explain (default: table on a
    /// terminal, JSON otherwise).
    #[arg(short = 'o', long, global = true, value_enum)]
    output: Option<Format>,
    /// More log lines on stderr (-v info, -vv debug); RUST_LOG overrides. Default: warn, and
    /// info for the long-running `serve` and `scheduler`.
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// One tool call in-process, RBAC applied; prints the result (or error object) as JSON.
    Call {
        tool: String,
        action: String,
        /// The params object as JSON.
        #[arg(long, default_value = "{}")]
        params_json: String,
        /// The agent to act as (a trusted local entry point: no key needed).
        #[arg(long, default_value = "operator")]
        agent: String,
    },
    /// Many calls: one JSON object per stdin line, `{"tool","action","params"[,"agent"]}`;
    /// prints one result line each, in order.
    Batch {
        /// The agent every line acts as: a ceiling, not a default. A line naming another
        /// agent is refused `forbidden`. Without it, lines act as their own `agent`, else
        /// `operator`.
        #[arg(long)]
        agent: Option<String>,
    },
    /// Runs one governance job: a registry job (--job) or a tool call (--tool/--action).
    /// Exit 0 ok (also skipped), 1 tool error, 2 usage or configuration, 3 transport or
    /// authentication failure.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["job", "tool"])))]
    RunJob {
        /// A job id of ops/task_registry.yml.
        #[arg(long, conflicts_with_all = ["tool", "action", "params_json"])]
        job: Option<String>,
        /// Tool of a one-off job (acts as agent `scheduler`).
        #[arg(long, requires = "action")]
        tool: Option<String>,
        #[arg(long, requires = "tool")]
        action: Option<String>,
        /// The params object as JSON (one-off jobs).
        #[arg(long)]
        params_json: Option<String>,
        /// Print the exact request as JSON (key shown as ***) and send nothing.
        #[arg(long)]
        dry_run: bool,
        /// The router (default: ROUTER_URL, else http://localhost:8000).
        #[arg(long)]
        router_url: Option<String>,
        /// Call the tool in-process as the job's agent instead of over HTTP.
        #[arg(long, conflicts_with = "router_url")]
        local: bool,
    },
    /// Runs due jobs in-process: with --from/--until, every minute of that span (drills,
    /// tests); without, on the clock until killed. `scheduler status` reports.
    #[command(args_conflicts_with_subcommands = true)]
    Scheduler {
        #[command(subcommand)]
        command: Option<SchedulerCommand>,
        /// Start of the span (RFC 3339).
        #[arg(long, requires = "until")]
        from: Option<String>,
        /// End of the span, inclusive (RFC 3339).
        #[arg(long, requires = "from")]
        until: Option<String>,
    },
    /// The cron file of the registry's jobs.
    Cron {
        #[command(subcommand)]
        command: CronCommand,
    },
    /// The router: the HTTP API (see `docs/http-api.md`) until SIGTERM/SIGINT, which finishes the calls in
    /// flight before exiting. Agents log in with the keys in the variables the RBAC matrix
    /// names (`api_key_env`).
    Serve {
        /// Address to listen on (port 0: a free port, logged at start).
        #[arg(long, default_value = "127.0.0.1:8000")]
        listen: std::net::SocketAddr,
        /// Calls admitted at once (running or waiting for a worker); beyond → 503.
        #[arg(long, default_value_t = 64)]
        max_in_flight: usize,
        /// Guest calls running at once.
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// Agent whose read-only `list` calls compute the overdue gauges of /metrics.
        #[arg(long, default_value = "viewer")]
        metrics_agent: String,
        /// Envs the overdue gauges of /metrics cover (comma-separated).
        #[arg(long, default_value = "prod,staging,dev", value_delimiter = ',')]
        metrics_envs: Vec<String>,
        /// Also run the governance scheduler in this process (claims every run; see
        /// `scheduler`). Stops with the router.
        #[arg(long)]
        scheduler: bool,
        /// Lets requests without an `Authorization` header act as agent NAME (for the MCP
        /// conformance runner, which sends no key). Refused unless --listen is a loopback
        /// address. A wrong key is still 401.
        #[arg(long, value_name = "NAME")]
        anonymous_agent: Option<String>,
        /// Client connections open at once (lowered to fit the open-files limit); beyond,
        /// new connections are closed at once.
        #[arg(long, default_value_t = 4096)]
        max_connections: usize,
        /// Seconds a connection has to send a complete request head, after opening or after
        /// its previous response (also ends idle kept-alive connections).
        #[arg(long, value_name = "SECONDS", default_value_t = 30)]
        header_timeout: u64,
        /// Seconds without a byte either way (no call running) before a connection, or a
        /// stalled request body, is dropped.
        #[arg(long, value_name = "SECONDS", default_value_t = 60)]
        idle_timeout: u64,
        /// Failed logins (401) allowed per client address and minute; beyond → 429.
        #[arg(long, value_name = "N", default_value_t = 60)]
        auth_failures_per_minute: u32,
        /// A browser Origin allowed besides loopback ones, exactly as sent
        /// (`https://console.example.com`); repeatable.
        #[arg(long, value_name = "ORIGIN")]
        allowed_origin: Vec<String>,
        /// A `Host` name served besides loopback ones (`name` or `name:port`); repeatable.
        #[arg(long, value_name = "HOST")]
        allowed_host: Vec<String>,
        /// Open /mcp sessions one agent may hold; beyond → 503.
        #[arg(long, default_value_t = 64)]
        mcp_max_sessions_per_agent: usize,
        /// Open /mcp sessions in total; beyond → 503.
        #[arg(long, default_value_t = 1024)]
        mcp_max_sessions: usize,
        /// Seconds without a request after which an /mcp session is closed.
        #[arg(long, default_value_t = 300)]
        mcp_session_idle_s: u64,
        /// Seconds after its initialize after which an /mcp session is closed, however busy.
        #[arg(long, default_value_t = 28_800)]
        mcp_session_lifetime_s: u64,
    },
    /// MCP server on stdio: every action the agent may call, as an MCP tool. stdio carries no
    /// credentials: whoever launches the server names the agent. Exit 2: no or unknown agent.
    Mcp {
        /// The agent to act as (RBAC and grants apply as over HTTP).
        #[arg(long, env = "BACKLOG_BRIDGE_AGENT")]
        agent: Option<String>,
    },
    /// What AGENT may call and, with TOOL ACTION, whether that call would be allowed: the
    /// entitlements held or missing (with the matrix file and line) and the call's grants.
    /// Exit 2: unknown agent.
    Explain {
        agent: String,
        tool: Option<String>,
        #[arg(requires = "tool")]
        action: Option<String>,
    },
    /// Prints a shell completion script, e.g. `backlog-bridge completions bash >
    /// /etc/bash_completion.d/backlog-bridge`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Prints the OpenAPI 3.1 document `serve` answers at `/openapi.json` (the installed
    /// tools' schemas), e.g. `backlog-bridge openapi > ops/openapi.json`.
    Openapi,
    /// Prints the man page (roff), e.g. `backlog-bridge man > /usr/local/share/man/man1/backlog-bridge.1`.
    Man,
    /// Registered tools and actions.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Creates or completes the Postgres schema (idempotent, one transaction) and optionally
    /// imports a JSONL store; prints a summary. With --dry-run, stdout is the SQL alone (pipe
    /// it into `psql -f -`) and the summary goes to stderr. Exit 2: no or invalid DSN,
    /// unreadable JSONL directory; 3: cannot connect; 1: the migration failed (nothing
    /// changed).
    Migrate {
        /// Connection string; default BACKLOG_POSTGRES_DSN, else POSTGRES_DSN (prefer those:
        /// a flag is visible to other users of the machine). Printed only redacted.
        #[arg(long)]
        dsn: Option<String>,
        /// Print the SQL (and what would be imported) and change nothing; does not connect.
        #[arg(long)]
        dry_run: bool,
        /// Also copy this JSONL store directory (items.jsonl, events.jsonl) into Postgres, by
        /// id: newer items replace older, events are added once.
        #[arg(long, value_name = "DIR")]
        import_jsonl: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum CronCommand {
    /// Writes ops/cron/jobs.cron (an /etc/cron.d file) from ops/task_registry.yml.
    Render,
    /// Compares a cron file's job lines with the registry; names each drift; exit 1 on drift.
    Check {
        /// The file to check (default: ops/cron/jobs.cron), e.g. /etc/cron.d/daarion-governance.
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum SchedulerCommand {
    /// Each job's last run, outcome and next due time, as JSON.
    Status,
}

#[derive(Subcommand, Debug)]
enum PluginsCommand {
    /// Every registered tool and its actions, as JSON (the /v1/tools shape).
    List,
    /// What one component file exports, as JSON.
    Inspect { file: PathBuf },
}

use crate::run_job::{self, Job};

use crate::exit::Failure;

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
    init_logging(args.log_format, args.verbose, daemon);
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
        } => return run_migrate(dsn.as_deref(), dry_run, import_jsonl, format),
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
    let settings = Settings::from_env(args.config_dir, args.ops_dir).map_err(Failure::Config)?;
    match args.command {
        Command::Call {
            tool,
            action,
            params_json,
            agent,
        } => {
            let bridge = load(settings, &agent)?;
            let params = parse_params(&params_json).map_err(Failure::Tool)?;
            let result = bridge
                .call(&CallRequest {
                    agent: &agent,
                    tool: &tool,
                    action: &action,
                    params: &params,
                })
                .map_err(Failure::Tool)?;
            emit(&output::render(&result, Kind::Call(&action), format, false))
        }
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
        Command::Batch { agent } => {
            let bridge = load(settings, agent.as_deref().unwrap_or(DEFAULT_BATCH_AGENT))?;
            batch(&bridge, agent.as_deref())
        }
        Command::Serve {
            listen,
            max_in_flight,
            workers,
            metrics_agent,
            metrics_envs,
            scheduler,
            anonymous_agent,
            max_connections,
            header_timeout,
            idle_timeout,
            auth_failures_per_minute,
            allowed_origin,
            allowed_host,
            mcp_max_sessions_per_agent,
            mcp_max_sessions,
            mcp_session_idle_s,
            mcp_session_lifetime_s,
        } => {
            let bridge = load(settings, &metrics_agent)?;
            let mcp_sessions = backlog_bridge::mcp::SessionLimits {
                per_agent: mcp_max_sessions_per_agent,
                total: mcp_max_sessions,
                idle: std::time::Duration::from_secs(mcp_session_idle_s),
                lifetime: std::time::Duration::from_secs(mcp_session_lifetime_s),
            };
            let options = http::ServeOptions {
                listen,
                max_in_flight,
                workers,
                metrics_agent,
                metrics_envs,
                scheduler,
                anonymous_agent,
                max_connections,
                header_timeout: std::time::Duration::from_secs(header_timeout),
                idle_timeout: std::time::Duration::from_secs(idle_timeout),
                auth_failures_per_minute,
                allowed_origins: allowed_origin,
                allowed_hosts: allowed_host,
                mcp_sessions,
            };
            http::serve(bridge, options).map_err(|e| Failure::Config(e.into()))
        }
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
        Command::Plugins { command } => {
            let doc = match command {
                PluginsCommand::List => Bridge::load(settings)
                    .map_err(Failure::Config)?
                    .tools_for(None),
                PluginsCommand::Inspect { file } => {
                    let info = bridge::inspect(&settings, &file).map_err(Failure::Config)?;
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
            let bridge = Arc::new(Bridge::load(settings).map_err(Failure::Config)?);
            // SIGTERM/SIGINT: finish the job in hand, record it, stop (within a second when
            // idle) — a killed scheduler would leave its claimed run `running`.
            let stop = Arc::new(AtomicBool::new(false));
            for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
                signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(|e| {
                    Failure::Config(anyhow::anyhow!("cannot handle signal {signal}: {e}"))
                })?;
            }
            let summary = scheduler::run(bridge, clock, &stop).map_err(Failure::Config)?;
            emit_line(&serde_json::to_string(&summary).unwrap_or_default())
        }
        Command::Cron { command } => cron(&settings, command),
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

/// `cron render` / `cron check`: need the registry and the matrix, no plugins.
fn cron(settings: &Settings, command: CronCommand) -> Result<(), Failure> {
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

/// `migrate`: needs only a DSN, not the config files.
fn run_migrate(
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

/// Loads the bridge and checks that `agent` exists (an unknown agent is a usage error).
fn load(settings: Settings, agent: &str) -> Result<Bridge, Failure> {
    let bridge = Bridge::load(settings).map_err(Failure::Config)?;
    if bridge.matrix.agent(agent).is_none() {
        return Err(Failure::Config(anyhow::anyhow!(
            "unknown agent `{agent}` (agents are defined in {})",
            bridge.matrix.path.display()
        )));
    }
    Ok(bridge)
}

/// `--params-json` must be a JSON object; re-serialized compactly for the guest.
fn parse_params(text: &str) -> Result<String, ToolError> {
    let invalid = |m: String| ToolError::new(backlog_bridge::Code::InvalidInput, m);
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(Value::Object(map).to_string()),
        Ok(other) => Err(invalid(format!(
            "--params-json must be a JSON object, got {}",
            kind(&other)
        ))),
        Err(e) => Err(invalid(format!("--params-json is not valid JSON: {e}"))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The agent of `batch` lines that name none, when the process was started without `--agent`.
const DEFAULT_BATCH_AGENT: &str = "operator";

/// `batch`: `fixed` is the `--agent` the process was started with. When given, every line acts
/// as that agent and a line naming another one is refused (the flag is a ceiling: whoever
/// chose it decided what this process may do). Without it, a line may name its agent.
fn batch(bridge: &Bridge, fixed: Option<&str>) -> Result<(), Failure> {
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.context("reading stdin").map_err(Failure::Config)?;
        if line.trim().is_empty() {
            continue;
        }
        let out = match batch_line(bridge, fixed, &line) {
            Ok(v) | Err(v) => v,
        };
        emit_line(&out.to_string())?;
    }
    Ok(())
}

fn batch_line(bridge: &Bridge, fixed: Option<&str>, line: &str) -> Result<Value, Value> {
    let invalid = |m: String| ToolError::new(backlog_bridge::Code::InvalidInput, m).to_json();
    let req: Value = serde_json::from_str(line).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let field = |k: &str| req.get(k).and_then(Value::as_str);
    let (Some(tool), Some(action)) = (field("tool"), field("action")) else {
        return Err(invalid("each line needs string `tool` and `action`".into()));
    };
    let agent = match (fixed, req.get("agent")) {
        (_, Some(a)) if !a.is_string() && !a.is_null() => {
            return Err(invalid("`agent` must be a string".into()));
        }
        (Some(fixed), _) => match field("agent") {
            Some(named) if named != fixed => {
                return Err(ToolError::new(
                    backlog_bridge::Code::Forbidden,
                    format!(
                        "this batch was started with --agent {fixed}; a line may not act as \
                         another agent (it names `{}`)",
                        named.escape_debug()
                    ),
                )
                .to_json());
            }
            _ => fixed,
        },
        (None, _) => field("agent").unwrap_or(DEFAULT_BATCH_AGENT),
    };
    let params = req.get("params").cloned().unwrap_or_else(|| json!({}));
    bridge
        .call(&CallRequest {
            agent,
            tool,
            action,
            params: &params.to_string(),
        })
        .map_err(|e| e.to_json())
}

fn init_logging(format: LogFormat, verbose: u8, daemon: bool) {
    let default = match (verbose, daemon) {
        (0, false) => "warn",
        (0, true) | (1, _) => "info",
        _ => "debug",
    };
    // Colours only on a terminal: logs in files and pipes stay greppable (`status=403`).
    let ansi = std::io::stderr().is_terminal();
    backlog_bridge::logging::init(matches!(format, LogFormat::Json), ansi, default);
}
