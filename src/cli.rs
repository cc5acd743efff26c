//! The command line: parses arguments, loads inputs, runs a command and maps the result to an
//! exit code (0 ok, 1 error, 2 changes pending for `plan`, like `terraform plan -detailed-exitcode`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::apply::{Engine, StateLocationChanged, TenantOutcome};
use crate::aws::{org, Clients};
use crate::config::OrgSettings;
use crate::desired::{self, DesiredTenant};
use crate::diag::{render_all, Diagnostic};
use crate::observe::{AccountObservation, ObservedTenant, OrgOverview};
use crate::plan::{self, Plan, TenantPlan};
use crate::progress::Progress;
use crate::reconcile::run::{self, RemediatePolicy};
use crate::reconcile::{Remediation, Report, TenantStatus};
use crate::render::Renderer;
use crate::state::StateStore;
use crate::tenant::{self, Environment, Tenant};

/// Gives every tenant its own production and digital-twin staging AWS accounts and keeps them in
/// their desired state.
#[derive(Debug, Parser)]
#[command(name = "tenantry", version, about, long_about = None)]
pub struct Cli {
    /// Organization-wide settings file.
    #[arg(long, global = true, default_value = "tenantry.toml", env = "TENANTRY_CONFIG")]
    pub config: PathBuf,
    /// Directory of tenant files (`<id>.toml`).
    #[arg(long, global = true, default_value = "tenants", env = "TENANTRY_TENANTS_DIR")]
    pub tenants_dir: PathBuf,
    /// Directory of blueprints (CloudFormation templates, handlebars).
    #[arg(long, global = true, default_value = "blueprints")]
    pub blueprints_dir: PathBuf,
    /// Directory of service control policies (handlebars).
    #[arg(long, global = true, default_value = "policies")]
    pub policies_dir: PathBuf,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Start the embedded local AWS emulator (`localstack/start.sh`, 127.0.0.1:4566) if it is not
    /// running, and talk to it with test credentials instead of AWS.
    #[arg(long, global = true)]
    pub local: bool,
    /// Work only on this process's share of the tenants: `K/N` (0-based), split by a stable hash
    /// of the tenant id, so N replicas together cover every tenant exactly once.
    #[arg(long, global = true, env = "TENANTRY_SHARD")]
    pub shard: Option<crate::shard::Shard>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Log line formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Output formats of plan, apply and status.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    /// Human-readable text.
    Text,
    /// A JSON document on stdout.
    Json,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check every tenant file and tenantry.toml without touching AWS; exit 1 on any error.
    Validate,
    /// Read live state and show what `apply` would do. Exit 0: no changes, 2: changes, 1: error.
    Plan {
        /// Tenants to plan (default: all).
        tenants: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Show the plan, then create and converge the tenants' accounts, SCPs and stacks.
    /// On a terminal it asks for confirmation unless --auto-approve. Exit 0: done, 1: error.
    #[command(alias = "onboard")]
    Apply {
        /// Tenants to apply (default: all).
        tenants: Vec<String>,
        /// Output format of the summary.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Do not ask for confirmation on a terminal.
        #[arg(long)]
        auto_approve: bool,
    },
    /// Show each tenant's accounts, OU, stack versions and statuses (read-only).
    Status {
        /// Tenants to show (default: all).
        tenants: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Compare every tenant's live accounts with its file (OU, tags, SCPs and their content,
    /// stacks, template digests, CloudFormation resource drift), report each difference, and fix
    /// it where asked. Exit 0: in sync, 2: drift found, 1: error.
    Reconcile {
        /// Tenants to reconcile (default: all; orphan accounts are looked for only then).
        tenants: Vec<String>,
        /// Fix the drift of every tenant (default: each tenant file's `drift` setting).
        #[arg(long, conflicts_with = "report_only")]
        remediate: bool,
        /// Fix nothing, whatever the tenant files say.
        #[arg(long)]
        report_only: bool,
        /// Output format: text, or the report as JSON (one document per cycle in watch mode).
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Run forever: reconcile each tenant every --interval, until SIGINT/SIGTERM.
        #[arg(long)]
        watch: bool,
        /// Time between checks of a tenant in watch mode, e.g. 30s, 15m, 1h.
        #[arg(long, default_value = "15m", value_parser = parse_interval, requires = "watch")]
        interval: std::time::Duration,
    },
    /// Render a workload's release, store the artifact, deploy it into the staging account
    /// through a change set, and record it as staged. Exit 0: staged (or already running), 1: error.
    Stage {
        /// Tenant id.
        tenant: String,
        /// Workload (default: every workload of the tenant).
        #[arg(long)]
        workload: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Record a check's result (tests, review, security audit, ...) for a release.
    Evidence {
        /// Tenant id.
        tenant: String,
        /// Release digest (or a unique prefix of at least 8 characters).
        release: String,
        /// Check name, as the promotion policy's `required_checks` lists it.
        #[arg(long)]
        check: String,
        /// The result.
        #[arg(long, value_enum)]
        result: CheckResult,
        /// Link to the run.
        #[arg(long)]
        url: Option<String>,
        /// Free text.
        #[arg(long)]
        note: Option<String>,
    },
    /// Show each gate of a workload's release (default: the latest staged). Exit 0: converged,
    /// 2: not converged, 1: error.
    Converged {
        /// Tenant id.
        tenant: String,
        /// Workload (default: every workload of the tenant).
        #[arg(long)]
        workload: Option<String>,
        /// Release digest or prefix (default: the workload's latest staged release).
        #[arg(long)]
        release: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Promote a converged release to production through a change set. Exit 0: promoted (or
    /// already there, or --dry-run), 2: refused by a gate or waiting for approval, 1: error or a
    /// failed deploy (CloudFormation rolls production back; the output says the stack's status).
    Promote {
        /// Tenant id (or --all).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        tenant: Option<String>,
        /// Every tenant with workloads, in waves; stops after the first wave with a failure.
        #[arg(long)]
        all: bool,
        /// Tenants per wave with --all.
        #[arg(long, default_value_t = 5, requires = "all", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
        wave_size: usize,
        /// Tenants promoted first, as a wave of their own, with --all.
        #[arg(long, requires = "all", num_args = 1..)]
        canary: Vec<String>,
        /// Release digest or prefix (default: the workload's latest staged release).
        #[arg(long, conflicts_with = "all")]
        release: Option<String>,
        /// Workload (default: every workload of the tenant).
        #[arg(long)]
        workload: Option<String>,
        /// Check the gates and preview the change set; execute nothing.
        #[arg(long)]
        dry_run: bool,
        /// Approve a promotion that needs approval (recorded in the ledger).
        #[arg(long)]
        approve: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Approve a release for production (recorded in the ledger); a later `promote` proceeds.
    Approve {
        /// Tenant id.
        tenant: String,
        /// Release digest or prefix.
        release: String,
    },
    /// Promote the release that production ran before the current one.
    Rollback {
        /// Tenant id.
        tenant: String,
        /// Workload (default: every workload of the tenant).
        #[arg(long)]
        workload: Option<String>,
        /// Preview only.
        #[arg(long)]
        dry_run: bool,
        /// Approve it if it needs approval.
        #[arg(long)]
        approve: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// The tenant's promotion ledger: stages, evidence, approvals, promotions, rollbacks.
    History {
        /// Tenant id.
        tenant: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Print the JSON schema of tenant files.
    Schema,
    /// Manage where tenantry keeps its state (the state bucket).
    State {
        /// What to do.
        #[command(subcommand)]
        action: StateCommand,
    },
}

/// `tenantry state` subcommands.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Copy the state (tenant records, ledger, release artifacts, reconcile reports) from another
    /// bucket into the configured state bucket, then mark it as the state location. Objects that
    /// exist in both with other content are left as they are and listed. Run it while no other
    /// tenantry process runs.
    Migrate {
        /// The bucket the state was in.
        #[arg(long)]
        from: String,
    },
    /// Make the configured state bucket the state location as it is (creating it if missing):
    /// for when the earlier state is lost for good. Accounts are then recorded from observation.
    Init,
}

/// `--interval`: a duration of at least one second (`0s` would check without pause).
fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < std::time::Duration::from_secs(1) {
        return Err(format!("`{s}` is shorter than 1s: watch mode would check without pause"));
    }
    Ok(d)
}

/// A check's result.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum CheckResult {
    /// Passed.
    Pass,
    /// Failed.
    Fail,
}

impl Command {
    /// The output format the command was asked for (`--output`), if it has one.
    pub fn output(&self) -> Option<Output> {
        match self {
            Command::Plan { output, .. }
            | Command::Apply { output, .. }
            | Command::Status { output, .. }
            | Command::Reconcile { output, .. }
            | Command::Stage { output, .. }
            | Command::Converged { output, .. }
            | Command::Promote { output, .. }
            | Command::Rollback { output, .. }
            | Command::History { output, .. } => Some(*output),
            _ => None,
        }
    }
}

/// Exit code of a command line that could not be parsed (unknown flag, invalid value): 64, as
/// `EX_USAGE` in sysexits.h. Distinct from 1 (error) and 2 (changes pending, drift, refused).
pub const EXIT_USAGE: u8 = 64;

/// A command that fails with `--output json` still prints a JSON document on stdout:
/// `{"error": "...", "diagnostics": [...]}`, so that a consumer never parses an empty output.
fn print_json_error(error: &str, diagnostics: &[String]) {
    let doc = serde_json::json!({ "error": error, "diagnostics": diagnostics });
    crate::out!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
}

/// Entry point: returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with 0; a usage error gets a code of its own, never
            // 2 (which means "changes pending" or "drift found").
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    init_logging(cli.log_format);
    let json = cli.command.output() == Some(Output::Json);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            if json {
                print_json_error(&format!("{e:#}"), &[]);
            }
            ExitCode::from(1)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TENANTRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("tenantry=info,warn"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Loaded, validated inputs.
struct Inputs {
    settings: OrgSettings,
    renderer: Renderer,
    tenants: Vec<Tenant>,
}

/// Loads tenantry.toml, templates and tenant files; every problem is printed at once.
fn load_inputs(cli: &Cli) -> Result<Inputs, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let settings = OrgSettings::load(&cli.config).unwrap_or_else(|e| {
        errors.extend(e);
        OrgSettings::default()
    });
    let renderer = match Renderer::load(&cli.blueprints_dir, &cli.policies_dir) {
        Ok(r) => r,
        Err(e) => {
            errors.extend(e);
            return Err(errors);
        }
    };
    let loaded = tenant::load(&cli.tenants_dir, &settings, &renderer);
    errors.extend(loaded.errors);
    if errors.is_empty() {
        Ok(Inputs { settings, renderer, tenants: loaded.tenants })
    } else {
        Err(errors)
    }
}

async fn run(cli: Cli) -> Result<u8> {
    if let Command::Schema = cli.command {
        let schema = schemars::schema_for!(tenant::TenantSpec);
        crate::out!("{}", serde_json::to_string_pretty(&schema)?);
        return Ok(0);
    }
    let inputs = match load_inputs(&cli) {
        Ok(i) => i,
        Err(diags) => {
            eprintln!("{}", render_all(&diags));
            eprintln!("\n{} error(s); nothing was sent to AWS", diags.len());
            if cli.command.output() == Some(Output::Json) {
                let each: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
                print_json_error(
                    &format!("{} error(s) in the input files; nothing was sent to AWS", diags.len()),
                    &each,
                );
            }
            return Ok(1);
        }
    };
    if inputs.tenants.is_empty() {
        eprintln!("error: no tenant files (*.toml) in {}", cli.tenants_dir.display());
        return Ok(1);
    }
    if let Command::Validate = cli.command {
        crate::out!(
            "{} tenant(s) valid: {}",
            inputs.tenants.len(),
            inputs.tenants.iter().map(|t| t.spec.id.as_str()).collect::<Vec<_>>().join(", ")
        );
        return Ok(0);
    }
    if cli.local {
        start_local_emulator(&cli.config)?;
    }
    crate::shutdown::listen();
    let clients = Clients::load(&inputs.settings).await?;
    let management_account_id = clients.management_account_id().await.context("who am I? (check AWS credentials)")?;
    let selected = select(
        &inputs.tenants,
        match &cli.command {
            Command::Plan { tenants, .. }
            | Command::Apply { tenants, .. }
            | Command::Status { tenants, .. }
            | Command::Reconcile { tenants, .. } => tenants,
            _ => &[][..],
        },
    )?;
    let selected: Vec<Tenant> = match cli.shard {
        Some(shard) => selected.into_iter().filter(|t| shard.contains(&t.spec.id)).collect(),
        None => selected,
    };
    // Every tenant file's emails and names, so that no tenant's run takes another's account.
    let claims = Arc::new(crate::guard::Claims::of(&inputs.tenants, &management_account_id));
    let mut desired_tenants = Vec::new();
    for t in &selected {
        let d = desired::build(t, &inputs.settings, &inputs.renderer, &management_account_id).map_err(|errs| {
            anyhow::anyhow!(
                "{}: {}",
                t.path.display(),
                errs.iter().map(|e| format!("{}: {}", e.field, e.failure)).collect::<Vec<_>>().join("; ")
            )
        })?;
        desired_tenants.push(DesiredTenant { claims: claims.clone(), ..d });
    }
    let bucket = inputs.settings.state_bucket_for(&management_account_id);
    let store = StateStore::new(clients.s3.clone(), bucket);
    let engine = Engine {
        clients: clients.clone(),
        settings: inputs.settings.clone(),
        store,
        create_slots: Arc::new(tokio::sync::Semaphore::new(inputs.settings.account_creation_concurrency)),
        progress: Progress::new(true),
        echo_steps: matches!(cli.command, Command::Apply { output: Output::Text, .. }),
        index: Default::default(),
        management_account_id: management_account_id.clone(),
        state_location: Default::default(),
    };
    let overview = org::overview(&engine.clients.org).await?;
    check_organization(overview.as_ref(), &management_account_id)?;
    if let Command::State { action } = &cli.command {
        return cmd_state(&engine, action).await;
    }
    if let crate::state::Location::Marked(m) = engine.location().await? {
        if m.home_region != engine.settings.home_region {
            bail!(
                "the state in s3://{} was started with home_region `{}`, and tenantry's stacks are there; tenantry.toml says `{}`. \
                 Set home_region back to `{}` (moving stacks to another region is not supported: it would create every stack again)",
                engine.store.bucket(),
                m.home_region,
                engine.settings.home_region,
                m.home_region
            );
        }
    }
    // One organization index for the run (watch mode makes one per interval; promotion reads
    // only the accounts of the tenant it works on).
    let listing = matches!(
        cli.command,
        Command::Plan { .. } | Command::Apply { .. } | Command::Status { .. } | Command::Reconcile { watch: false, .. }
    );
    if let (Some(o), true) = (&overview, listing) {
        engine.load_index(o, &desired_tenants).await?;
    }
    engine.check_new_location(overview.as_ref()).await?;
    match cli.command {
        Command::Plan { output, .. } => cmd_plan(&engine, overview.as_ref(), &desired_tenants, output).await,
        Command::Apply { output, auto_approve, .. } => {
            cmd_apply(&engine, overview.as_ref(), &desired_tenants, output, auto_approve).await
        }
        Command::Status { output, .. } => cmd_status(&engine, overview.as_ref(), &desired_tenants, output).await,
        Command::Reconcile { ref tenants, remediate, report_only, output, watch, interval } => {
            let policy = if remediate {
                RemediatePolicy::All
            } else if report_only {
                RemediatePolicy::None
            } else {
                RemediatePolicy::PerTenant
            };
            // Orphans are an organization-wide check: made only when every tenant is reconciled
            // by this process (no TENANT list, no --shard).
            let all = tenants.is_empty() && cli.shard.is_none();
            if watch {
                // One line per report in watch mode, for line-based log collectors.
                run::watch(&engine, &desired_tenants, all, policy, interval, |r| print_report(r, output, true)).await?;
                return Ok(0);
            }
            let Some(overview) = overview else {
                bail!("there is no organization yet: run `tenantry apply` first");
            };
            let selected: Vec<&DesiredTenant> = desired_tenants.iter().collect();
            let mut report =
                run::cycle(&engine, &overview, &selected, all.then_some(&desired_tenants[..]), policy, true).await?;
            report.api_calls = Some(crate::metrics::api_calls());
            print_report(&report, output, false);
            Ok(report.exit_code())
        }
        Command::Stage { .. }
        | Command::Evidence { .. }
        | Command::Converged { .. }
        | Command::Promote { .. }
        | Command::Approve { .. }
        | Command::Rollback { .. }
        | Command::History { .. } => {
            let caller = engine.clients.caller_arn().await?;
            let promoter = crate::promote::run::Promoter {
                engine: &engine,
                renderer: &inputs.renderer,
                management_account_id: &management_account_id,
                caller: &caller,
                desired: &desired_tenants,
                held: Default::default(),
                bucket_ready: Default::default(),
            };
            crate::promote::cli::run(&promoter, &selected, &desired_tenants, cli.command).await
        }
        Command::Validate | Command::Schema | Command::State { .. } => unreachable!("handled above"),
    }
}

/// `tenantry state init` and `tenantry state migrate`.
async fn cmd_state(engine: &Engine, action: &StateCommand) -> Result<u8> {
    let store = &engine.store;
    let home = &engine.settings.home_region;
    match action {
        StateCommand::Init => {
            engine.store.ensure_bucket(home).await?;
            engine.store.mark(&engine.management_account_id, home).await?;
            crate::out!("state location: s3://{} (home region {home}); accounts found that it does not record are recorded by the next `apply`", store.bucket());
            Ok(0)
        }
        StateCommand::Migrate { from } => {
            if from == store.bucket() {
                bail!("--from names the configured state bucket itself ({from})");
            }
            let source = StateStore::new(engine.clients.s3.clone(), from.clone());
            match source.location().await? {
                crate::state::Location::Marked(m) if &m.home_region != home => bail!(
                    "the state in s3://{from} belongs to home_region `{}`, where tenantry's stacks are; tenantry.toml says `{home}`. Set home_region = \"{}\" first",
                    m.home_region,
                    m.home_region
                ),
                crate::state::Location::New => bail!("s3://{from} holds no tenantry state (no marker, no tenant records)"),
                _ => {}
            }
            engine.store.ensure_bucket(home).await?;
            let (mut copied, mut same, mut conflicts) = (0, 0, Vec::new());
            for key in source.list_keys("").await? {
                // Leases belong to running processes; the marker is written anew below.
                if key.starts_with("leases/") || key == crate::state::MARKER_KEY {
                    continue;
                }
                let Some(body) = source.get_bytes(&key).await? else { continue };
                match store.get_bytes(&key).await? {
                    None => {
                        store.put_new(&key, body).await?;
                        copied += 1;
                    }
                    Some(existing) if existing == body => same += 1,
                    Some(_) => conflicts.push(key),
                }
            }
            crate::out!(
                "state: {copied} object(s) copied from s3://{from} to s3://{}, {same} already there",
                store.bucket()
            );
            if !conflicts.is_empty() {
                eprintln!(
                    "error: {} object(s) exist in both buckets with other content, left as they are: {}",
                    conflicts.len(),
                    conflicts.join(", ")
                );
                eprintln!("the destination was not marked as the state location; resolve them, then run `tenantry state migrate` again");
                return Ok(1);
            }
            engine.store.mark(&engine.management_account_id, home).await?;
            crate::out!("state location: s3://{} (home region {home})", store.bucket());
            Ok(0)
        }
    }
}

/// tenantry must run in the management account of an organization with all features.
fn check_organization(overview: Option<&OrgOverview>, caller: &str) -> Result<()> {
    let Some(o) = overview else { return Ok(()) };
    if !o.management_account_id.is_empty() && o.management_account_id != caller {
        bail!(
            "these credentials are of account {caller}, a member of organization {}; tenantry runs with credentials of its management account {} (check AWS_PROFILE)",
            o.organization_id,
            o.management_account_id
        );
    }
    if !o.all_features {
        bail!(
            "organization {} has consolidated billing features only; SCPs need all features. Enable them first (Organizations EnableAllFeatures; every member account must approve the handshake), then re-run",
            o.organization_id
        );
    }
    Ok(())
}

fn select(all: &[Tenant], names: &[String]) -> Result<Vec<Tenant>> {
    if names.is_empty() {
        return Ok(all.to_vec());
    }
    let mut out: Vec<Tenant> = Vec::new();
    for n in names {
        // A tenant named twice is worked on once.
        if out.iter().any(|t| &t.spec.id == n) {
            continue;
        }
        match all.iter().find(|t| &t.spec.id == n) {
            Some(t) => out.push(t.clone()),
            None => bail!(
                "no tenant `{n}` (known: {})",
                all.iter().map(|t| t.spec.id.as_str()).collect::<Vec<_>>().join(", ")
            ),
        }
    }
    Ok(out)
}

/// Lease name for organization-level steps (tenant ids cannot start with `_`).
const ORGANIZATION_LEASE: &str = "_organization";

/// Runs `localstack/start.sh` next to the config file and points the AWS SDK at it with test
/// credentials (never real ones: `--local` must not reach AWS).
fn start_local_emulator(config: &Path) -> Result<()> {
    let root = config.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let script = root.join("localstack/start.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed ({})", script.display(), out.status);
    }
    let endpoint = String::from_utf8_lossy(&out.stdout).trim().to_string();
    tracing::info!(%endpoint, "using the local emulator");
    // SAFETY of set_var: called before any other thread reads the environment (the SDK config is
    // loaded after this, on this task).
    std::env::set_var("AWS_ENDPOINT_URL", &endpoint);
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    std::env::remove_var("AWS_SESSION_TOKEN");
    std::env::remove_var("AWS_PROFILE");
    if std::env::var_os("AWS_REGION").is_none() {
        std::env::set_var("AWS_REGION", "us-east-1");
    }
    Ok(())
}

/// OU paths the tenants need → whether each exists.
async fn ou_existence(
    engine: &Engine,
    overview: Option<&OrgOverview>,
    tenants: &[DesiredTenant],
) -> Result<BTreeMap<String, bool>> {
    let paths: BTreeSet<String> = tenants.iter().flat_map(|t| t.accounts.iter().map(|a| a.ou_path.clone())).collect();
    let mut out = BTreeMap::new();
    for p in paths {
        let exists = match (overview, engine.index().and_then(|i| i.ou(&p))) {
            (_, Some(_)) => true,
            (Some(o), None) => engine.observer(Some(o)).find_ou(o, &p).await?.is_some(),
            (None, None) => false,
        };
        out.insert(p, exists);
    }
    Ok(out)
}

/// Observes every tenant read-only, in parallel (bounded by `concurrency`), and turns each
/// observation into `keep(desired, observed)` at once (so a caller that needs less than the
/// whole observation does not hold every tenant's). A failure on one tenant is kept as that
/// tenant's error. Sorted by tenant id.
async fn observe_each<T>(
    engine: &Engine,
    overview: Option<&OrgOverview>,
    tenants: &[DesiredTenant],
    keep: impl Fn(&DesiredTenant, ObservedTenant) -> T,
) -> Vec<(String, Result<T>)> {
    let store = &engine.store;
    let keep = &keep;
    let mut results: Vec<(String, Result<T>)> = stream::iter(tenants)
        .map(|d| async move {
            let r = crate::metrics::for_tenant(&d.id, async {
                let tracked = store.read(&d.id).await?;
                let observed = engine.observer(overview).tenant(d, &tracked.record).await?;
                engine.check_state_location(&observed).await?;
                Ok(keep(d, observed))
            })
            .await;
            (d.id.clone(), r)
        })
        .buffer_unordered(engine.settings.concurrency)
        .collect()
        .await;
    results.sort_by(|a, b| a.0.cmp(&b.0));
    results
}

#[derive(Serialize)]
struct PlanReport<'a> {
    changes: bool,
    /// Differences apply cannot make (each tenant's `manual`): `plan` exits 2 for them too.
    manual_differences: bool,
    plan: &'a Plan,
    errors: BTreeMap<String, String>,
    /// AWS requests this run made.
    api_calls: crate::metrics::ApiCalls,
}

/// Observes every tenant and plans: the plan, and per-tenant errors.
async fn compute_plan(
    engine: &Engine,
    overview: Option<&OrgOverview>,
    tenants: &[DesiredTenant],
) -> Result<(Plan, BTreeMap<String, String>)> {
    let ous = ou_existence(engine, overview, tenants).await?;
    let mut plan = Plan { organization: plan::organization(overview, &ous), tenants: Vec::new() };
    let mut errors = BTreeMap::new();
    // Each tenant is planned as soon as it is observed; its observation (template bodies
    // included) is dropped then, so memory does not hold every tenant's observation at once.
    let mut results = observe_each(engine, overview, tenants, |d, observed| plan::tenant(d, &observed)).await;
    // A changed state location concerns the whole run, not one tenant: nothing goes on.
    if let Some(i) = results.iter().position(|(_, r)| r.as_ref().is_err_and(|e| e.is::<StateLocationChanged>())) {
        return Err(results.swap_remove(i).1.expect_err("an error"));
    }
    for (id, r) in results {
        match r {
            Ok(p) => plan.tenants.push(p),
            Err(e) => {
                errors.insert(id, format!("{e:#}"));
            }
        }
    }
    Ok((plan, errors))
}

/// Exit code of a plan: 0 no changes, 2 changes, 1 errors or refusals.
fn plan_exit_code(plan: &Plan, errors: &BTreeMap<String, String>) -> u8 {
    if !errors.is_empty() || plan.has_refusals() {
        1
    } else if plan.is_empty() && !plan.has_manual() {
        0
    } else {
        2
    }
}

async fn cmd_plan(
    engine: &Engine,
    overview: Option<&OrgOverview>,
    tenants: &[DesiredTenant],
    output: Output,
) -> Result<u8> {
    let (plan, errors) = compute_plan(engine, overview, tenants).await?;
    match output {
        Output::Json => crate::out!(
            "{}",
            serde_json::to_string_pretty(&PlanReport {
                changes: !plan.is_empty(),
                manual_differences: plan.has_manual(),
                plan: &plan,
                errors: errors.clone(),
                api_calls: crate::metrics::api_calls()
            })?
        ),
        Output::Text => print_plan(&plan, &errors),
    }
    Ok(plan_exit_code(&plan, &errors))
}

fn print_plan(plan: &Plan, errors: &BTreeMap<String, String>) {
    if !plan.organization.is_empty() {
        crate::out!("organization:");
        for s in &plan.organization {
            crate::out!("  {s}");
        }
    }
    let mut counts = (plan.organization.iter().filter(|s| s.symbol() == "+").count(), 0, 0);
    for t in &plan.tenants {
        print_tenant_plan(t);
        for s in &t.steps {
            match s.symbol() {
                "+" => counts.0 += 1,
                "-" => counts.2 += 1,
                _ => counts.1 += 1,
            }
        }
    }
    for (id, e) in errors {
        crate::out!("tenant {id}: error: {e}");
    }
    if plan.is_empty() && errors.is_empty() && !plan.has_refusals() && !plan.has_manual() {
        crate::out!("No changes. The accounts match the tenant files.");
    } else if plan.is_empty() && errors.is_empty() && !plan.has_refusals() {
        crate::out!("\nNo changes for apply to make; the differences marked ! need a person.");
    } else {
        crate::out!("\nPlan: {} to add, {} to change, {} to remove.", counts.0, counts.1, counts.2);
    }
}

fn print_tenant_plan(t: &TenantPlan) {
    if t.steps.is_empty() && t.refusals.is_empty() && t.manual.is_empty() {
        crate::out!("tenant {}: in sync", t.tenant);
        return;
    }
    crate::out!("tenant {}:", t.tenant);
    for s in &t.steps {
        crate::out!("  {s}");
    }
    for m in &t.manual {
        crate::out!("  {m}");
    }
    for r in &t.refusals {
        crate::out!("  ! refused: {r}");
    }
}

#[derive(Serialize)]
struct ApplyReport {
    organization: Vec<plan::Step>,
    tenants: Vec<TenantOutcome>,
    /// AWS requests this run made (the preview included).
    api_calls: crate::metrics::ApiCalls,
}

async fn cmd_apply(
    engine: &Engine,
    overview: Option<&OrgOverview>,
    tenants: &[DesiredTenant],
    output: Output,
    auto_approve: bool,
) -> Result<u8> {
    // Like `terraform apply`: show the plan first; on a terminal, ask.
    let (preview, errors) = compute_plan(engine, overview, tenants).await?;
    if output == Output::Text {
        print_plan(&preview, &errors);
    }
    if preview.is_empty() && errors.is_empty() && !preview.has_refusals() && !preview.has_manual() {
        if output == Output::Json {
            crate::out!(
                "{}",
                serde_json::to_string_pretty(&ApplyReport {
                    organization: vec![],
                    tenants: vec![],
                    api_calls: crate::metrics::api_calls()
                })?
            );
        }
        return Ok(0);
    }
    use std::io::IsTerminal;
    if !auto_approve && std::io::stdin().is_terminal() && output == Output::Text {
        crate::out_nonl!("\nDo you want to perform these actions? Only 'yes' will be accepted: ");
        use std::io::Write;
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            crate::out!("Apply cancelled.");
            return Ok(1);
        }
        // The organization may have changed while the prompt waited: list it again.
        if let Some(o) = overview {
            engine.load_index(o, tenants).await?;
        }
    }
    // Tenants the preview found in sync are not worked on again. One with a manual difference
    // is: its state remembers the email the file now declares.
    let in_sync = |d: &&DesiredTenant| {
        preview
            .tenants
            .iter()
            .any(|t| t.tenant == d.id && t.steps.is_empty() && t.refusals.is_empty() && t.manual.is_empty())
    };
    let to_apply: Vec<&DesiredTenant> = tenants.iter().filter(|d| !in_sync(d)).collect();
    let skipped: Vec<TenantOutcome> =
        tenants.iter().filter(in_sync).map(|d| TenantOutcome { tenant: d.id.clone(), ..Default::default() }).collect();
    engine.ensure_state_bucket().await?;
    let org_steps = preview.organization.clone();
    // Organization steps (organization, SCP type, OUs) run under an organization-wide lease, so
    // that two processes never create the same OU twice (some endpoints allow duplicate names).
    let overview = if org_steps.is_empty() {
        engine.apply_organization(&org_steps, overview).await?
    } else {
        let s = &engine.settings;
        let lease = engine
            .store
            .acquire_lease(
                ORGANIZATION_LEASE,
                std::time::Duration::from_secs(s.lease_ttl_seconds),
                std::time::Duration::from_secs(s.lease_wait_seconds),
            )
            .await?;
        let applied = engine.apply_organization(&org_steps, overview).await;
        if let Err(e) = lease.release().await {
            tracing::warn!("could not release the organization lease (it will expire): {e:#}");
        }
        applied?
    };
    if engine.index().is_none() {
        engine.load_index(&overview, tenants).await?;
    }
    let overview = &overview;
    let mut outcomes: Vec<TenantOutcome> = stream::iter(to_apply)
        .map(|d| async move {
            // Only the outcome is reported: the observation (template bodies included) goes now.
            let mut o = engine.apply_tenant(d, overview).await;
            o.observed = None;
            o.plan = None;
            o
        })
        .buffer_unordered(engine.settings.concurrency)
        .collect()
        .await;
    outcomes.extend(skipped);
    outcomes.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
    match output {
        Output::Json => crate::out!(
            "{}",
            serde_json::to_string_pretty(&ApplyReport {
                organization: org_steps,
                tenants: outcomes,
                api_calls: crate::metrics::api_calls()
            })?
        ),
        Output::Text => {
            for o in &outcomes {
                match &o.error {
                    Some(e) => eprintln!("tenant {}: FAILED: {e}", o.tenant),
                    None if o.applied.is_empty() => crate::out!("tenant {}: no changes", o.tenant),
                    None => crate::out!("tenant {}: {} change(s) applied", o.tenant, o.applied.len()),
                }
            }
            crate::out!("\nApply complete: {} tenant(s) converged, {failed} failed.", tenants.len() - failed);
            let manual: usize = preview.tenants.iter().map(|t| t.manual.len()).sum();
            if manual > 0 {
                crate::out!("{manual} difference(s) marked ! above are left for a person: tenantry does not change root emails or account names.");
            }
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

#[derive(Serialize)]
struct StatusRow {
    tenant: String,
    environment: Environment,
    account_id: Option<String>,
    account_status: String,
    ou: String,
    stacks: Vec<StackStatus>,
    note: Option<String>,
}

#[derive(Serialize)]
struct StackStatus {
    stack: String,
    version: Option<String>,
    desired_version: String,
    status: String,
}

async fn cmd_status(
    engine: &Engine,
    overview: Option<&OrgOverview>,
    tenants: &[DesiredTenant],
    output: Output,
) -> Result<u8> {
    let mut rows = Vec::new();
    let mut failed = false;
    for (id, observed) in observe_each(engine, overview, tenants, |_, o| o).await {
        let d = tenants.iter().find(|t| t.id == id).expect("observed tenants are desired");
        let observed = match observed {
            Ok(o) => o,
            Err(e) => {
                failed = true;
                for a in &d.accounts {
                    rows.push(StatusRow {
                        tenant: id.clone(),
                        environment: a.environment,
                        account_id: None,
                        account_status: "ERROR".into(),
                        ou: String::new(),
                        stacks: vec![],
                        note: Some(format!("{e:#}")),
                    });
                }
                continue;
            }
        };
        for want in &d.accounts {
            let env = want.environment;
            let row = match observed.accounts.get(&env) {
                Some(AccountObservation::Found(f)) => StatusRow {
                    tenant: id.clone(),
                    environment: env,
                    account_id: Some(f.account.id.clone()),
                    account_status: f.account.status.clone(),
                    ou: if f.desired_ou_id.as_deref() == Some(f.parent_id.as_str()) {
                        want.ou_path.clone()
                    } else {
                        format!("{} (wanted {})", f.parent_id, want.ou_path)
                    },
                    stacks: want
                        .stacks
                        .iter()
                        .map(|s| {
                            let o = f.stacks.get(&s.stack_name);
                            StackStatus {
                                stack: s.stack_name.clone(),
                                version: o.and_then(|o| o.version.clone()),
                                desired_version: s.version.clone(),
                                status: o.map_or("MISSING".into(), |o| o.status.clone()),
                            }
                        })
                        .collect(),
                    note: None,
                },
                Some(AccountObservation::Creating { request_id }) => StatusRow {
                    tenant: id.clone(),
                    environment: env,
                    account_id: None,
                    account_status: "CREATING".into(),
                    ou: String::new(),
                    stacks: vec![],
                    note: Some(format!("CreateAccount request {request_id}")),
                },
                Some(AccountObservation::Refused { reason, account_id }) => {
                    failed = true;
                    StatusRow {
                        tenant: id.clone(),
                        environment: env,
                        account_id: account_id.clone(),
                        account_status: "REFUSED".into(),
                        ou: String::new(),
                        stacks: vec![],
                        note: Some(reason.clone()),
                    }
                }
                Some(AccountObservation::Missing) | None => StatusRow {
                    tenant: id.clone(),
                    environment: env,
                    account_id: None,
                    account_status: "MISSING".into(),
                    ou: String::new(),
                    stacks: vec![],
                    note: Some("not created yet: run `tenantry apply`".into()),
                },
            };
            rows.push(row);
        }
    }
    match output {
        Output::Json => crate::out!("{}", serde_json::to_string_pretty(&rows)?),
        Output::Text => {
            crate::out!("{:<20} {:<11} {:<13} {:<9} {:<24} STACKS", "TENANT", "ENV", "ACCOUNT", "STATUS", "OU");
            for r in &rows {
                let stacks = r
                    .stacks
                    .iter()
                    .map(|s| {
                        let v = s.version.as_deref().map_or("-", |v| &v[..v.len().min(12)]);
                        let mark =
                            if s.version.as_deref() == Some(s.desired_version.as_str()) { "" } else { " (outdated)" };
                        format!("{}@{v} {}{mark}", s.stack, s.status)
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                crate::out!(
                    "{:<20} {:<11} {:<13} {:<9} {:<24} {}{}",
                    r.tenant,
                    r.environment.as_str(),
                    r.account_id.as_deref().unwrap_or("-"),
                    r.account_status,
                    r.ou,
                    stacks,
                    r.note.as_deref().map(|n| format!(" — {n}")).unwrap_or_default()
                );
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// Prints a reconcile report: text, or one JSON document.
fn print_report(report: &Report, output: Output, one_line: bool) {
    if output == Output::Json {
        let json = if one_line { serde_json::to_string(report) } else { serde_json::to_string_pretty(report) };
        match json {
            Ok(j) => crate::out!("{j}"),
            Err(e) => eprintln!("error: cannot serialize the report: {e}"),
        }
        return;
    }
    for t in &report.tenants {
        match t.status {
            TenantStatus::InSync => crate::out!("tenant {}: in sync", t.tenant),
            TenantStatus::NoDriftFound => {
                crate::out!(
                    "tenant {}: no drift found, but {} check(s) could not run (not \"in sync\")",
                    t.tenant,
                    t.checks_not_run.len()
                )
            }
            TenantStatus::Drift => crate::out!("tenant {}: DRIFT ({} item(s))", t.tenant, t.items.len()),
            TenantStatus::Error => crate::out!("tenant {}: ERROR: {}", t.tenant, t.error.as_deref().unwrap_or("")),
            TenantStatus::Skipped => crate::out!("tenant {}: skipped: {}", t.tenant, t.error.as_deref().unwrap_or("")),
        }
        for i in &t.items {
            let env = i.environment.map(|e| format!("{e}: ")).unwrap_or_default();
            crate::out!(
                "  [{}] {env}{} ({}): expected {}, found {} -> {}",
                serde_json::to_value(i.severity).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
                i.resource,
                i.kind,
                i.expected,
                i.found,
                i.action
            );
        }
        for c in &t.checks_not_run {
            crate::out!(
                "  not checked: {}: stack {}: {}: {}",
                c.environment,
                c.stack,
                c.check.replace('_', " "),
                c.reason
            );
        }
        match &t.remediation {
            Remediation::Applied { steps } => crate::out!("  remediated: {} step(s) applied", steps.len()),
            Remediation::Failed { reason } => crate::out!("  remediation failed: {reason}"),
            Remediation::NotRequested if t.status == TenantStatus::Drift => {
                crate::out!("  (report only: run `tenantry reconcile --remediate` or set drift = \"remediate\" to fix)")
            }
            _ => {}
        }
    }
    for o in &report.orphans {
        crate::out!("orphan account {} \"{}\" <{}> {}: {}", o.account_id, o.name, o.email, o.status, o.reason);
    }
    let s = &report.summary;
    crate::out!(
        "\nReconcile {}: {} tenant(s): {} without drift, {} drifted, {} error(s), {} skipped; {} item(s), {} check(s) not run, {} orphan(s).{}",
        report.run_id,
        s.tenants,
        s.in_sync + s.no_drift_found,
        s.drifted,
        s.errors,
        s.skipped,
        s.items,
        s.checks_not_run,
        s.orphans,
        report.stored_at.as_deref().map(|a| format!(" Report: {a}")).unwrap_or_default()
    );
    if let Some(e) = &report.store_error {
        crate::out!("ERROR: the report could not be stored in the state bucket: {e}");
    }
}
