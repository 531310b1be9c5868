//! Two stages: [`Args`] is the raw clap input; [`Settings`] is what the rest of the program
//! reads, built once from flags and environment.

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use backlog_bridge::caps::pg::Dsn;
use backlog_bridge::{Bridge, CallRequest, Settings, ToolError, bridge, migrate};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

/// Engineering Backlog Bridge: sandboxed backlog tools behind RBAC.
#[derive(Parser, Debug)]
#[command(name = "backlog-bridge", version)]
struct Args {
    /// Directory holding rbac_tools_matrix.yml, plugins.yml and backlog_policy.yml.
    #[arg(long, global = true, default_value = "config")]
    config_dir: PathBuf,
    /// Operations directory: backlog/ (JSONL store), reports/, cron/, task_registry.yml.
    #[arg(long, global = true, default_value = "ops")]
    ops_dir: PathBuf,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
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
        /// Agent for lines that name none.
        #[arg(long, default_value = "operator")]
        agent: String,
    },
    /// MCP server on stdio: every action the agent may call, as an MCP tool. stdio carries no
    /// credentials: whoever launches the server names the agent. Exit 2: no or unknown agent.
    Mcp {
        /// The agent to act as (RBAC and grants apply as over HTTP).
        #[arg(long, env = "BACKLOG_BRIDGE_AGENT")]
        agent: Option<String>,
    },
    /// Registered tools and actions.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Creates or completes the Postgres schema (idempotent, one transaction) and optionally
    /// imports a JSONL store; prints a JSON summary. Exit 2: no or invalid DSN, unreadable
    /// JSONL directory; 3: cannot connect; 1: the migration failed (nothing changed).
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
enum PluginsCommand {
    /// Every registered tool and its actions, as JSON (the /v1/tools shape).
    List,
    /// What one component file exports, as JSON.
    Inspect { file: PathBuf },
}

/// A failure that decides the exit code.
enum Failure {
    Tool(ToolError),
    Config(anyhow::Error),
    /// A message for stderr and the exit code to leave with.
    Exit(u8, anyhow::Error),
}

pub fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    init_logging(args.log_format);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Tool(e)) => {
            println!("{}", e.to_json());
            ExitCode::from(1)
        }
        Err(Failure::Config(e)) => {
            eprintln!("backlog-bridge: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Exit(code, e)) => {
            eprintln!("backlog-bridge: {e:#}");
            ExitCode::from(code)
        }
    }
}

fn run(args: Args) -> Result<(), Failure> {
    if let Command::Migrate {
        dsn,
        dry_run,
        import_jsonl,
    } = args.command
    {
        return run_migrate(dsn.as_deref(), dry_run, import_jsonl);
    }
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
            println!("{result}");
            Ok(())
        }
        Command::Batch { agent } => {
            let bridge = load(settings, &agent)?;
            batch(&bridge, &agent).map_err(Failure::Config)
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
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            Ok(())
        }
        Command::Migrate { .. } => unreachable!("handled before settings are read"),
    }
}

/// `migrate`: needs only a DSN, not the config files.
fn run_migrate(
    dsn: Option<&str>,
    dry_run: bool,
    import_jsonl: Option<PathBuf>,
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
    if dry_run {
        print!("{sql}");
    }
    println!("{}", serde_json::to_string(&summary).unwrap_or_default());
    Ok(())
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

fn batch(bridge: &Bridge, default_agent: &str) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line.context("reading stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let out = match batch_line(bridge, default_agent, &line) {
            Ok(v) | Err(v) => v,
        };
        writeln!(stdout, "{out}")?;
        stdout.flush()?;
    }
    Ok(())
}

fn batch_line(bridge: &Bridge, default_agent: &str, line: &str) -> Result<Value, Value> {
    let invalid = |m: String| ToolError::new(backlog_bridge::Code::InvalidInput, m).to_json();
    let req: Value = serde_json::from_str(line).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let field = |k: &str| req.get(k).and_then(Value::as_str);
    let (Some(tool), Some(action)) = (field("tool"), field("action")) else {
        return Err(invalid("each line needs string `tool` and `action`".into()));
    };
    let agent = field("agent").unwrap_or(default_agent);
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

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}
