//! The command line's grammar (clap): global flags, commands and their arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// Start the embedded local AWS emulator (`localstack/start.sh`, 127.0.0.1:4566, or `PORT`)
    /// if it is not running, and talk to it with test credentials instead of AWS.
    #[arg(long, global = true)]
    pub local: bool,
    /// Which local emulator `--local` starts (only with `--local`): `moto` (one process,
    /// Organizations included), `ministack`, or `localstack` (LocalStack for every service but
    /// Organizations, which moto serves beside it on PORT+1). The environment variable `PORT`
    /// moves it from 127.0.0.1:4566. See `localstack/README.md`.
    #[arg(long, global = true, value_enum, default_value_t = Emulator::Moto, requires = "local")]
    pub emulator: Emulator,
    /// Work only on this process's share of the tenants: `K/N` (0-based), split by a stable hash
    /// of the tenant id, so N replicas together cover every tenant exactly once.
    #[arg(long, global = true, env = "TENANTRY_SHARD")]
    pub shard: Option<crate::shard::Shard>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The local emulators `--local` can start (`localstack/start.sh NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Emulator {
    /// moto: every API tenantry uses, Organizations included, in one process.
    Moto,
    /// ministack: change sets and drift detection closest to AWS; an organization exists already.
    Ministack,
    /// LocalStack community, with moto for Organizations.
    Localstack,
}

impl Emulator {
    /// The name `localstack/start.sh` takes.
    pub fn name(self) -> &'static str {
        match self {
            Emulator::Moto => "moto",
            Emulator::Ministack => "ministack",
            Emulator::Localstack => "localstack",
        }
    }
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
    /// Read live state and show what `apply` would do. Exit 0: no changes, 2: changes (or a
    /// difference for a person: a manual change, a tenant whose file was removed), 1: error.
    Plan {
        /// Tenants to plan (default: all).
        tenants: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Save the plan to this file (JSON, with the facts each step depends on and a digest of
        /// every input file), for `tenantry apply FILE`. Also accepted as `-out FILE`. A plan with
        /// errors or refusals is not saved.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Show the plan, then create and converge the tenants' accounts, SCPs and stacks.
    /// On a terminal it asks for confirmation unless --auto-approve. Exit 0: done, 1: error.
    #[command(alias = "onboard")]
    Apply {
        /// Tenants to apply (default: all), or one plan file saved by `plan --out`: exactly that
        /// plan is carried out, or refused as stale (exit 1, nothing changed) when an input file
        /// or a live fact one of its steps depends on changed since it was made.
        #[arg(value_name = "TENANT|PLAN_FILE")]
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
    /// already there, or --dry-run), 2: refused by a gate or waiting for approval, 1: error, a
    /// failed deploy (CloudFormation rolls production back; the output says the stack's status),
    /// or a suspended tenant.
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
        /// Which workloads, and how.
        #[command(flatten)]
        how: ProductionChange,
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
        /// Which workloads, and how.
        #[command(flatten)]
        how: ProductionChange,
    },
    /// The tenant's ledger: stages, evidence, approvals, promotions, rollbacks, and the steps
    /// `apply` and `reconcile --remediate` carried out (also for a tenant whose file is gone).
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

/// The options `promote` and `rollback` share: a change to production, per workload.
#[derive(Debug, Args)]
pub struct ProductionChange {
    /// Workload (default: every workload of the tenant).
    #[arg(long)]
    pub workload: Option<String>,
    /// Check the gates and preview the change set; execute nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Approve a change that needs approval (recorded in the ledger).
    #[arg(long)]
    pub approve: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
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
            | Command::History { output, .. } => Some(*output),
            Command::Promote { how, .. } | Command::Rollback { how, .. } => Some(how.output),
            _ => None,
        }
    }
}

/// Exit code of a command line that could not be parsed (unknown flag, invalid value): 64, as
/// `EX_USAGE` in sysexits.h. Distinct from 1 (error) and 2 (changes pending, drift, refused).
pub const EXIT_USAGE: u8 = 64;
