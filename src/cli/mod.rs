//! The command line: parses arguments, loads inputs, runs a command and maps the result to an
//! exit code (0 ok, 1 error, 2 changes pending for `plan`, like `terraform plan -detailed-exitcode`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::apply::Engine;
use crate::aws::Clients;
use crate::desired::{self, DesiredTenant};
use crate::diag::{render_all, Diagnostic};
use crate::inputs::{self, Inputs};
use crate::observe::OrgOverview;
use crate::plan::saved::{self, SavedPlan};
use crate::progress::Progress;
use crate::reconcile::run::{self, RemediatePolicy};
use crate::state::StateStore;
use crate::tenant::{self, Tenant};

mod apply;
mod args;
mod plan;
mod plan_file;
mod promote;
mod render;
mod state;
mod status;

pub use args::{CheckResult, Cli, Command, LogFormat, Output, StateCommand, EXIT_USAGE};

/// Entry point: returns the process exit code.
pub fn main() -> ExitCode {
    // `-out FILE` as Terraform spells it is `--out FILE`.
    let args = std::env::args_os().map(|a| match a.to_str() {
        Some("-out") => "--out".into(),
        Some(s) if s.starts_with("-out=") => format!("-{s}").into(),
        _ => a,
    });
    let cli = match Cli::try_parse_from(args) {
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
                let stale = e.chain().find_map(|c| c.downcast_ref::<saved::Stale>());
                render::print_json_error(&format!("{e:#}"), &[], stale);
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

/// What every command that talks to AWS works with: the engine, the organization, the tenants
/// selected (their files and their desired state).
struct Session {
    engine: Engine,
    overview: Option<OrgOverview>,
    selected: Vec<Tenant>,
    desired: Vec<DesiredTenant>,
}

async fn run(cli: Cli) -> Result<u8> {
    if let Command::Schema = cli.command {
        let schema = schemars::schema_for!(tenant::TenantSpec);
        crate::out!("{}", serde_json::to_string_pretty(&schema)?);
        return Ok(0);
    }
    if let Some(code) = plan_file::refuse_ambiguous_names(&cli.command) {
        return Ok(code);
    }
    // The digests of the input files are taken before the files are loaded: a file changed in
    // between makes the saved plan stale, never approved with content it was not made from.
    let digests = plan_file::wants_digests(&cli.command).then(|| plan_file::input_digests(&cli));
    let inputs = match inputs::load(&cli.config, &cli.tenants_dir, &cli.blueprints_dir, &cli.policies_dir) {
        Ok(i) => i,
        Err(diags) => return Ok(report_input_errors(&cli, &diags)),
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
    // `apply FILE`: the saved plan, checked against the input files before anything is sent.
    let saved = match &cli.command {
        Command::Apply { tenants, .. } if tenants.iter().any(|t| plan_file::is_plan_file(t)) => {
            if tenants.len() > 1 || cli.shard.is_some() {
                eprintln!(
                    "error: `apply PLAN_FILE` takes no tenant names and no --shard: the plan file says what to apply"
                );
                return Ok(EXIT_USAGE);
            }
            let path = Path::new(&tenants[0]);
            let saved = plan_file::read(path)?;
            let now =
                digests.as_ref().expect("taken for `apply FILE`").as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
            if let Err(stale) = saved::check_inputs(&saved.inputs, now) {
                return Err(anyhow::Error::new(stale).context(path.display().to_string()));
            }
            Some(saved)
        }
        _ => None,
    };
    if cli.local {
        start_local_emulator(&cli.config, cli.emulator)?;
    }
    crate::shutdown::listen();
    let session = connect(&cli, &inputs, saved.as_ref()).await?;
    if let Command::State { action } = &cli.command {
        return state::cmd_state(&session.engine, action).await;
    }
    dispatch(cli, &inputs, session, saved, digests.and_then(Result::ok)).await
}

/// Prints every problem of the input files (and, with `--output json`, the JSON error
/// document); returns the exit code 1.
fn report_input_errors(cli: &Cli, diags: &[Diagnostic]) -> u8 {
    eprintln!("{}", render_all(diags));
    eprintln!("\n{} error(s); nothing was sent to AWS", diags.len());
    if cli.command.output() == Some(Output::Json) {
        let each: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        render::print_json_error(
            &format!("{} error(s) in the input files; nothing was sent to AWS", diags.len()),
            &each,
            None,
        );
    }
    1
}

/// Whether `plan` or `apply` covers every tenant file: no tenant (or saved plan file) named,
/// no `--shard`.
fn every_tenant(cli: &Cli) -> bool {
    let named = match &cli.command {
        Command::Plan { tenants, .. } | Command::Apply { tenants, .. } => !tenants.is_empty(),
        _ => true,
    };
    !named && cli.shard.is_none()
}

/// The tenants a command works on: the ones it names (or the saved plan's), else all; with
/// `--shard`, this process's share.
fn selection(cli: &Cli, inputs: &Inputs, saved: Option<&SavedPlan>) -> Result<Vec<Tenant>> {
    let planned: Vec<String> = saved.iter().flat_map(|s| s.plan.tenants.iter().map(|t| t.tenant.clone())).collect();
    let names = match &cli.command {
        Command::Apply { .. } if saved.is_some() => &planned,
        Command::Plan { tenants, .. }
        | Command::Apply { tenants, .. }
        | Command::Status { tenants, .. }
        | Command::Reconcile { tenants, .. } => tenants,
        _ => &[][..],
    };
    let selected = select(&inputs.tenants, names)?;
    Ok(match cli.shard {
        Some(shard) => selected.into_iter().filter(|t| shard.contains(&t.spec.id)).collect(),
        None => selected,
    })
}

/// Connects to AWS (`GetCallerIdentity` at the same time as `DescribeOrganization` and
/// `ListRoots`), checks that the credentials,
/// the state bucket and the organization are the ones expected (a saved plan's too), builds the
/// desired state of the selected tenants and, for commands that list the organization, loads
/// the run's index.
async fn connect(cli: &Cli, inputs: &Inputs, saved: Option<&SavedPlan>) -> Result<Session> {
    let clients = Clients::load(&inputs.settings).await?;
    // Both read-only; the organization is used only once the credentials' account is known.
    let (caller, overview) = tokio::join!(clients.caller(), crate::aws::org::overview(&clients.org));
    let caller = caller.context("who am I? (check AWS credentials)")?;
    let management_account_id = caller.account_id.clone();
    let selected = selection(cli, inputs, saved)?;
    if let Some(s) = saved.filter(|s| s.management_account_id != management_account_id) {
        bail!(
            "the plan was made for management account {}; these credentials are of {management_account_id}",
            s.management_account_id
        );
    }
    let bucket = inputs.settings.state_bucket_for(&management_account_id);
    let store = StateStore::new(clients.s3.clone(), bucket.clone());
    // Every tenant file's emails and names, and the accounts the state records of tenants whose
    // file is gone name, so that no tenant's run takes another's account.
    let declared: std::collections::BTreeSet<&str> = inputs.tenants.iter().map(|t| t.spec.id.as_str()).collect();
    let removed = store.records_without_file(&declared).await?;
    let mut claims = crate::guard::Claims::of(&inputs.tenants, &management_account_id);
    for (id, record) in &removed {
        for (env, a) in &record.accounts {
            if let Some(account_id) = &a.account_id {
                claims.add_recorded(id, *env, account_id);
            }
        }
    }
    let claims = Arc::new(claims);
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
    if let Some(s) = saved.filter(|s| s.state_bucket != bucket) {
        bail!("the plan was made with state bucket {}; tenantry.toml now gives {bucket}", s.state_bucket);
    }
    let ctx = crate::apply::Context {
        store,
        clients,
        removed_tenants: removed,
        settings: inputs.settings.clone(),
        management_account_id: management_account_id.clone(),
        caller_arn: caller.arn,
        state_location: Default::default(),
    };
    let engine = Engine {
        ctx,
        create_slots: Arc::new(tokio::sync::Semaphore::new(inputs.settings.account_creation_concurrency)),
        progress: Progress::new(true),
        echo_steps: matches!(cli.command, Command::Apply { output: Output::Text, .. }),
        index: Default::default(),
    };
    let overview = overview?;
    check_organization(overview.as_ref(), &management_account_id)?;
    if let Command::State { .. } = &cli.command {
        return Ok(Session { engine, overview, selected, desired: desired_tenants });
    }
    // One organization index for the run (watch mode makes one per interval; promotion reads
    // only the accounts of the tenant it works on), listed while the state location is read.
    let listing = matches!(
        cli.command,
        Command::Plan { .. } | Command::Apply { .. } | Command::Status { .. } | Command::Reconcile { watch: false, .. }
    );
    let (location, indexed) = tokio::join!(engine.ctx.location(), async {
        match (&overview, listing) {
            (Some(o), true) => engine.load_index(o, &desired_tenants).await,
            _ => Ok(()),
        }
    });
    if let crate::state::Location::Marked(m) = location? {
        if m.home_region != engine.ctx.settings.home_region {
            bail!(
                "the state in s3://{} was started with home_region `{}`, and tenantry's stacks are there; tenantry.toml says `{}`. \
                 Set home_region back to `{}` (moving stacks to another region is not supported: it would create every stack again)",
                engine.ctx.store.bucket(),
                m.home_region,
                engine.ctx.settings.home_region,
                m.home_region
            );
        }
    }
    indexed?;
    engine.check_new_location(overview.as_ref()).await?;
    Ok(Session { engine, overview, selected, desired: desired_tenants })
}

/// Runs a command that works on tenants.
async fn dispatch(
    cli: Cli,
    inputs: &Inputs,
    session: Session,
    saved: Option<SavedPlan>,
    digests: Option<BTreeMap<String, String>>,
) -> Result<u8> {
    let Session { engine, overview, selected, desired: desired_tenants } = session;
    match cli.command {
        Command::Plan { output, ref out, .. } => {
            let out = match out {
                Some(path) => Some((path.as_path(), digests.map_or_else(|| plan_file::input_digests(&cli), Ok)?)),
                None => None,
            };
            self::plan::cmd_plan(&engine, overview.as_ref(), &desired_tenants, every_tenant(&cli), output, out).await
        }
        Command::Apply { output, auto_approve, .. } => {
            apply::cmd_apply(
                &engine,
                overview.as_ref(),
                &desired_tenants,
                every_tenant(&cli),
                output,
                auto_approve,
                saved,
            )
            .await
        }
        Command::Status { output, .. } => status::run(&engine, overview.as_ref(), &desired_tenants, output).await,
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
                run::watch(&engine, &desired_tenants, all, policy, interval, |r| render::print_report(r, output, true))
                    .await;
                return Ok(0);
            }
            let Some(overview) = overview else {
                bail!("there is no organization yet: run `tenantry apply` first");
            };
            let selected: Vec<&DesiredTenant> = desired_tenants.iter().collect();
            let mut report =
                run::cycle(&engine, &overview, &selected, all.then_some(&desired_tenants[..]), policy, true).await?;
            report.api_calls = Some(crate::metrics::api_calls());
            render::print_report(&report, output, false);
            Ok(report.exit_code())
        }
        Command::Stage { .. }
        | Command::Evidence { .. }
        | Command::Converged { .. }
        | Command::Promote { .. }
        | Command::Approve { .. }
        | Command::Rollback { .. }
        | Command::History { .. } => {
            let caller = engine.ctx.caller_arn.clone();
            let promoter = crate::promote::run::Promoter {
                ctx: &engine.ctx,
                renderer: &inputs.renderer,
                caller: &caller,
                desired: &desired_tenants,
                held: Default::default(),
                bucket_ready: Default::default(),
            };
            promote::run(&promoter, &selected, &desired_tenants, cli.command).await
        }
        Command::Validate | Command::Schema | Command::State { .. } => unreachable!("handled before"),
    }
}

/// tenantry must run in the management account of an organization with all features.
fn check_organization(overview: Option<&OrgOverview>, caller: &str) -> Result<()> {
    let Some(o) = overview else { return Ok(()) };
    if !o.management_account_id.is_empty() && o.management_account_id != caller {
        bail!(
            "these credentials are of account {caller}, which is not the management account of organization {} (that is {}): tenantry runs with credentials of the management account (check AWS_PROFILE, or that STS and Organizations are the same AWS)",
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

/// Runs `localstack/start.sh EMULATOR` next to the config file and points the AWS SDK at the
/// endpoints it prints (`AWS_ENDPOINT_URL=…`, and `AWS_ENDPOINT_URL_ORGANIZATIONS=…` for
/// LocalStack) with test credentials (never real ones: `--local` must not reach AWS, so every
/// other `AWS_ENDPOINT_URL_*` of the environment is dropped).
fn start_local_emulator(config: &Path, emulator: args::Emulator) -> Result<()> {
    let root = config.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let script = root.join("localstack/start.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg(emulator.name())
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed ({})", script.display(), out.status);
    }
    let printed = String::from_utf8_lossy(&out.stdout);
    let endpoints: Vec<(&str, &str)> = printed
        .lines()
        .filter_map(|l| l.trim().split_once('='))
        .filter(|(k, _)| *k == "AWS_ENDPOINT_URL" || k.starts_with("AWS_ENDPOINT_URL_"))
        .collect();
    if let Some((k, v)) = endpoints.iter().find(|(_, v)| !crate::aws::is_local_endpoint(v)) {
        bail!(
            "{} printed {k}={v:?}, which is not a local endpoint: --local never talks to anything else",
            script.display()
        );
    }
    if !endpoints.iter().any(|(k, _)| *k == "AWS_ENDPOINT_URL") {
        bail!("{} printed no AWS_ENDPOINT_URL=… line: {printed:?}", script.display());
    }
    tracing::info!(emulator = emulator.name(), ?endpoints, "using the local emulator");
    // SAFETY of set_var: called before any other thread reads the environment (the SDK config is
    // loaded after this, on this task).
    let inherited: Vec<String> =
        std::env::vars().map(|(k, _)| k).filter(|k| k.starts_with("AWS_ENDPOINT_URL_")).collect();
    for k in inherited {
        std::env::remove_var(k);
    }
    for (k, v) in endpoints {
        std::env::set_var(k, v);
    }
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    std::env::remove_var("AWS_SESSION_TOKEN");
    std::env::remove_var("AWS_PROFILE");
    // Nothing from the profile files either (`ignore_configured_endpoint_urls`, `endpoint_url`,
    // `[services]`), and endpoints are never ignored.
    std::env::remove_var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
    std::env::set_var("AWS_CONFIG_FILE", "/dev/null");
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    if std::env::var_os("AWS_REGION").is_none() {
        std::env::set_var("AWS_REGION", "us-east-1");
    }
    Ok(())
}
