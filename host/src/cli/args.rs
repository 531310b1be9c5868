//! The command line as clap reads it: [`Args`] and its subcommands (`--help`, the man page and
//! the shell completions are generated from these definitions).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::output::Format;

/// Engineering Backlog Bridge: sandboxed backlog tools behind RBAC.
#[derive(Parser, Debug)]
#[command(name = "backlog-bridge", version)]
pub(super) struct Args {
    /// Directory holding rbac_tools_matrix.yml, plugins.yml and backlog_policy.yml.
    #[arg(
        long,
        global = true,
        env = "BACKLOG_BRIDGE_CONFIG_DIR",
        default_value = "config"
    )]
    pub(super) config_dir: PathBuf,
    /// Operations directory: backlog/ (JSONL store), reports/, cron/, task_registry.yml.
    #[arg(
        long,
        global = true,
        env = "BACKLOG_BRIDGE_OPS_DIR",
        default_value = "ops"
    )]
    pub(super) ops_dir: PathBuf,
    /// The audit trail's directory (default: <ops-dir>/audit); `off` writes no trail.
    #[arg(long, global = true, env = "BACKLOG_BRIDGE_AUDIT_DIR")]
    pub(super) audit_dir: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub(super) log_format: LogFormat,
    /// Output of call, plugins, scheduler status, migrate and explain (default: table on a
    /// terminal, JSON otherwise).
    #[arg(short = 'o', long, global = true, value_enum)]
    pub(super) output: Option<Format>,
    /// More log lines on stderr (-v info, -vv debug); RUST_LOG overrides. Default: warn, and
    /// info for the long-running `serve` and `scheduler`.
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub(super) verbose: u8,
    #[command(subcommand)]
    pub(super) command: Command,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub(super) enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub(super) enum Command {
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
    Serve(ServeArgs),
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
    /// The audit trail: `audit verify` checks its hash chain, `audit show` prints lines.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Checks the configuration: `config check`.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
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
pub(super) enum CronCommand {
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
pub(super) enum SchedulerCommand {
    /// Each job's last run, outcome and next due time, as JSON.
    Status,
}

#[derive(Subcommand, Debug)]
pub(super) enum AuditCommand {
    /// Walks the chain over every file; exit 0 intact, 1 naming the file and line of the first
    /// break (an edited, removed or reordered line).
    Verify,
    /// The lines that match every filter, oldest first.
    Show {
        /// From this time (RFC 3339) or day (YYYY-MM-DD, UTC) on.
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        actor: Option<String>,
        #[arg(long)]
        tool: Option<String>,
        #[arg(long)]
        action: Option<String>,
        /// allow or deny.
        #[arg(long)]
        decision: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum ConfigCommand {
    /// Validates the config dir (matrix, policy, plugins with their pins and components, key
    /// variables and files) and the ops dir's task registry with the errors a start gives,
    /// every one of them; starts nothing. Exit 0 good, 2 otherwise.
    Check,
}

#[derive(Subcommand, Debug)]
pub(super) enum PluginsCommand {
    /// Every registered tool and its actions, as JSON (the /v1/tools shape).
    List,
    /// What one component file exports, as JSON.
    Inspect { file: PathBuf },
}

// The options of `serve` (its help text is the variant's, above).
#[derive(clap::Args, Debug)]
pub(super) struct ServeArgs {
    /// Address to listen on (port 0: a free port, logged at start).
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub(super) listen: std::net::SocketAddr,
    /// Calls admitted at once (running or waiting for a worker); beyond → 503.
    #[arg(long, default_value_t = 64)]
    pub(super) max_in_flight: usize,
    /// Guest calls running at once.
    #[arg(long, default_value_t = 4)]
    pub(super) workers: usize,
    /// Agent whose read-only `list` calls compute the overdue gauges of /metrics.
    #[arg(long, default_value = "viewer")]
    pub(super) metrics_agent: String,
    /// Envs the overdue gauges of /metrics cover (comma-separated).
    #[arg(long, default_value = "prod,staging,dev", value_delimiter = ',')]
    pub(super) metrics_envs: Vec<String>,
    /// Also run the governance scheduler in this process (claims every run; see
    /// `scheduler`). Stops with the router.
    #[arg(long)]
    pub(super) scheduler: bool,
    /// Lets requests without an `Authorization` header act as agent NAME (for the MCP
    /// conformance runner, which sends no key). Refused unless --listen is a loopback
    /// address. A wrong key is still 401.
    #[arg(long, value_name = "NAME")]
    pub(super) anonymous_agent: Option<String>,
    /// Client connections open at once (lowered to fit the open-files limit); beyond,
    /// new connections are closed at once.
    #[arg(long, default_value_t = 4096)]
    pub(super) max_connections: usize,
    /// Seconds a connection has to send a complete request head, after opening or after
    /// its previous response (also ends idle kept-alive connections).
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub(super) header_timeout: u64,
    /// Seconds without a byte either way (no call running) before a connection, or a
    /// stalled request body, is dropped.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub(super) idle_timeout: u64,
    /// Failed logins (401) allowed per client address and minute; beyond → 429.
    #[arg(long, value_name = "N", default_value_t = 60)]
    pub(super) auth_failures_per_minute: u32,
    /// A browser Origin allowed besides loopback ones, exactly as sent
    /// (`https://console.example.com`); repeatable.
    #[arg(long, value_name = "ORIGIN")]
    pub(super) allowed_origin: Vec<String>,
    /// A `Host` name served besides loopback ones (`name` or `name:port`); repeatable.
    #[arg(long, value_name = "HOST")]
    pub(super) allowed_host: Vec<String>,
    /// Open /mcp sessions one agent may hold; beyond → 503.
    #[arg(long, default_value_t = 64)]
    pub(super) mcp_max_sessions_per_agent: usize,
    /// Open /mcp sessions in total; beyond → 503.
    #[arg(long, default_value_t = 1024)]
    pub(super) mcp_max_sessions: usize,
    /// Seconds without a request after which an /mcp session is closed.
    #[arg(long, default_value_t = 300)]
    pub(super) mcp_session_idle_s: u64,
    /// Seconds after its initialize after which an /mcp session is closed, however busy.
    #[arg(long, default_value_t = 28_800)]
    pub(super) mcp_session_lifetime_s: u64,
}
