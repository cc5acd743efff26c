//! The executor: carries out a plan's steps through the AWS adapters, recording progress in the
//! state store as it goes so that a run killed at any point can be resumed.
//!
//! One call of [`Engine::apply_tenant`] is the reconcile loop of one tenant (kube-rs style):
//! take the tenant's lease, read state, observe, plan, execute, record. It is idempotent and can
//! be called any number of times.

mod context;

pub use context::Context;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::Semaphore;

use crate::aws::cfn::{self, Operation};
use crate::aws::member::{MemberSession, SessionError, VerifiedAccount};
use crate::aws::{org, OrMissing};
use crate::desired::{DesiredPolicy, DesiredTenant};
use crate::guard::LiveAccount;
use crate::observe::{
    failure_hint, AccountObservation, CreateRequestState, ObservedTenant, Observer, OrgIndex, OrgOverview,
    PolicyDocument,
};
use crate::plan::{self, Change, OrgStep, Step};
use crate::poll::Look;
use crate::progress::Progress;
use crate::state::{AccountRecord, Lease, Location, PolicyRecord, StackRecord, Tracked};
use crate::tenant::{tags, Environment};

/// Why applying a tenant's plan (or the organization's steps) failed. `TenantOutcome::error`
/// holds its text; decisions match on the variant.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An AWS call failed.
    #[error(transparent)]
    Aws(#[from] crate::aws::Error),
    /// Reading or writing state failed: a lost race, a lease held elsewhere or lost, ...
    #[error(transparent)]
    State(#[from] crate::state::Error),
    /// Observing the tenant failed.
    #[error(transparent)]
    Observe(#[from] crate::observe::Error),
    /// A member account could not be verified or reached; the guard refusing it is one case.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The guard refused an account this run created (checked on the run's own data).
    #[error(transparent)]
    Guard(#[from] crate::guard::Refusal),
    /// A stack operation failed, timed out or was stopped.
    #[error(transparent)]
    Stack(#[from] cfn::StackError),
    /// A `CreateAccount` request could not be sent, or was refused.
    #[error(transparent)]
    CreateAccount(#[from] org::CreateAccountFailure),
    /// A `CreateAccount` request ended `FAILED`.
    #[error(transparent)]
    CreateFailed(#[from] CreateFailed),
    /// A `CreateAccount` answer was lost and neither the account nor its request shows yet.
    #[error("{0}; nothing found yet; re-run: it looks for the account again before sending another request")]
    CreateUnanswered(org::CreateAccountUnanswered),
    /// A stop signal ended a wait.
    #[error(transparent)]
    Interrupted(#[from] crate::shutdown::Interrupted),
    /// A wait did not end in time.
    #[error(transparent)]
    TimedOut(#[from] crate::poll::TimedOut),
    /// The state bucket is a new location, yet tenantry's accounts exist.
    #[error(transparent)]
    StateLocationChanged(#[from] StateLocationChanged),
    /// The approved plan no longer holds.
    #[error(transparent)]
    Stale(#[from] plan::saved::Stale),
    /// The plan refuses the tenant (the guard, collisions, quotas, busy stacks).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Refused(Vec<plan::Refusal>),
    /// There is no organization (yet).
    #[error("there is no organization yet: run `tenantry apply` first")]
    NoOrganization,
    /// The organization's management account is not the account of these credentials.
    #[error(
        "these credentials are of account {caller}, but organization {organization} has management account {management}: \
         tenantry runs with credentials of the management account (check AWS_PROFILE, or that STS and Organizations are the same AWS)"
    )]
    NotManagementAccount {
        /// The account of the credentials (`GetCallerIdentity`).
        caller: String,
        /// The organization's id.
        organization: String,
        /// Its management account.
        management: String,
    },
    /// The account creation slots were closed (the run is ending).
    #[error("no account creation slot: {0}")]
    NoSlot(#[from] tokio::sync::AcquireError),
    /// A stop signal arrived between steps: the next one was not started.
    #[error(transparent)]
    Stopped(#[from] crate::shutdown::Stopped),
    /// The tenant was not applied because planning it failed (the planning error's text).
    #[error("not applied: planning it failed: {0}")]
    NotPlanned(String),
    /// What this run holds disagrees with the plan it carries out (named).
    #[error("{0}")]
    Inconsistent(String),
    /// A step failed: the tenant, the step, and why.
    #[error("{tenant}: {step}: {error}")]
    Step {
        /// Tenant id.
        tenant: String,
        /// The step, as the plan shows it.
        step: String,
        /// Why it failed.
        error: Box<Error>,
    },
}

impl Error {
    /// `self`, as the failure of `step` of `tenant`.
    fn in_step(self, tenant: &str, step: &dyn std::fmt::Display) -> Error {
        Error::Step { tenant: tenant.to_string(), step: step.to_string(), error: Box::new(self) }
    }
}

/// An outcome's error as its text (`null` when there is none).
fn error_text<S: serde::Serializer>(error: &Option<Error>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match error {
        Some(e) => s.collect_str(e),
        None => s.serialize_none(),
    }
}

/// Results of the executor.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything one run shares across tenants.
pub struct Engine {
    /// What apply shares with promotion: clients, settings, state store, state location.
    pub ctx: Context,
    /// Bounds the `CreateAccount` requests in flight (`account_creation_concurrency`).
    pub create_slots: Arc<Semaphore>,
    /// Progress display.
    pub progress: Progress,
    /// Print each step on stdout as it is carried out (text output).
    pub echo_steps: bool,
    /// The organization-wide listings, once [`Engine::load_index`] ran (once per one-shot run;
    /// once per interval in watch mode). Without one, every account is looked up on its own.
    pub index: std::sync::RwLock<Option<Arc<OrgIndex>>>,
}

/// What working on one tenant did.
#[derive(Debug, Default, serde::Serialize)]
pub struct TenantOutcome {
    /// Tenant id.
    pub tenant: String,
    /// Steps carried out, as shown in the plan.
    pub applied: Vec<Step>,
    /// The error that stopped it, if any (in JSON, its text).
    #[serde(serialize_with = "error_text")]
    pub error: Option<Error>,
    /// What was observed (under the lease), if observation finished.
    #[serde(skip)]
    pub observed: Option<ObservedTenant>,
    /// The plan made from it.
    #[serde(skip)]
    pub plan: Option<plan::TenantPlan>,
    /// Another process held the tenant's lease, so it was skipped.
    #[serde(skip)]
    pub skipped_busy: bool,
    /// The approved plan was refused as stale ([`plan::saved::Stale`]): nothing was changed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
    /// What made it stale, one item each (JSON only when stale).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stale_changes: Vec<String>,
    /// The tenant's account ids as the run left them (those it created included).
    #[serde(skip)]
    pub accounts: BTreeMap<Environment, String>,
    /// The step that was being carried out when the error came (it may have changed something).
    #[serde(skip)]
    pub failed_step: Option<Step>,
}

/// How [`Engine::run_tenant`] works on a tenant.
#[derive(Debug, Clone, Copy)]
pub struct RunMode {
    /// The command, as recorded in the ledger with the steps it carried out (`apply`,
    /// `reconcile`).
    pub command: &'static str,
    /// How long to wait for a lease another process holds; zero skips the tenant at once.
    pub lease_wait: Duration,
    /// Run CloudFormation drift detection on every stack.
    pub detect_drift: bool,
    /// Carry out the plan (false: observe and plan only).
    pub execute: bool,
    /// Stop at the next step boundary when a stop signal arrives (false: finish the tenant).
    pub stop_on_signal: bool,
}

impl Engine {
    /// Observer for this run.
    pub fn observer<'a>(&'a self, org: Option<&'a OrgOverview>) -> Observer<'a> {
        self.ctx.observer(org, self.index())
    }

    /// Lists the organization once for this run ([`OrgIndex::load`] over the OU paths of
    /// `tenants`); later observations use it. Attributed to the run (`-`), not to a tenant.
    pub async fn load_index(&self, overview: &OrgOverview, tenants: &[DesiredTenant]) -> Result<()> {
        let paths = tenants.iter().flat_map(|t| t.accounts.iter().map(|a| a.ou_path.clone())).collect();
        let index = crate::metrics::for_tenant("-", OrgIndex::load(&self.ctx.clients.org, overview, &paths)).await?;
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(index));
        Ok(())
    }

    /// The current organization index, if one was loaded.
    pub fn index(&self) -> Option<Arc<OrgIndex>> {
        self.index.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The mode of `apply`: wait for the lease, no drift detection, execute.
    pub fn apply_mode(&self) -> RunMode {
        RunMode {
            command: "apply",
            lease_wait: Duration::from_secs(self.ctx.settings.lease_wait_seconds),
            detect_drift: false,
            execute: true,
            stop_on_signal: true,
        }
    }

    /// Creates the organization (`CreateOrganization`, all features; one created meanwhile is
    /// taken) and returns it (`DescribeOrganization`, `ListRoots`) and whether this call created
    /// it. Errors:
    /// [`Error::NotManagementAccount`] when its management account is not the account of these
    /// credentials (`GetCallerIdentity`, read at the start of the run): tenantry then stops before
    /// it writes anything, the state bucket included.
    pub async fn create_organization(&self) -> Result<(OrgOverview, bool)> {
        crate::shutdown::check(format!("organization: {}", OrgStep::CreateOrganization))?;
        let created = org::create_organization(&self.ctx.clients.org).await?;
        let overview = org::overview(&self.ctx.clients.org).await?.ok_or(Error::NoOrganization)?;
        if overview.management_account_id != self.ctx.management_account_id {
            return Err(Error::NotManagementAccount {
                caller: self.ctx.management_account_id.clone(),
                organization: overview.organization_id,
                management: overview.management_account_id,
            });
        }
        if self.echo_steps && created {
            crate::out!("organization: {}", OrgStep::CreateOrganization);
        }
        Ok((overview, created))
    }

    /// Carries out organization-level steps and returns the organization afterwards. The
    /// documents of content-addressed SCPs are taken from `tenants`.
    pub async fn apply_organization(
        &self,
        steps: &[OrgStep],
        root: Option<&OrgOverview>,
        tenants: &[DesiredTenant],
    ) -> Result<OrgOverview> {
        let policy = |name: &str| {
            tenants
                .iter()
                .find_map(|t| t.policy(name))
                .ok_or_else(|| Error::Inconsistent(format!("SCP {name} is no tenant's")))
        };
        let mut overview = root.cloned();
        for step in steps {
            crate::shutdown::check(format!("organization: {step}"))?;
            match step {
                OrgStep::CreateOrganization => {
                    overview = Some(self.create_organization().await?.0);
                    continue; // echoed by create_organization
                }
                OrgStep::EnableServiceControlPolicies => {
                    let o = overview.as_ref().ok_or(Error::NoOrganization)?;
                    org::enable_scps(&self.ctx.clients.org, &o.root_id).await?;
                }
                OrgStep::CreateOu { path } => {
                    let o = overview.as_ref().ok_or(Error::NoOrganization)?;
                    self.ensure_ou(o, path).await?;
                }
                OrgStep::CreatePolicy { name, .. } => {
                    self.ensure_scp(policy(name)?).await?;
                }
                OrgStep::RestorePolicy { name, policy_id, .. } => {
                    self.restore_scp(policy(name)?, policy_id).await?;
                }
                OrgStep::DeletePolicy { name, policy_id } => {
                    if org::delete_policy(&self.ctx.clients.org, policy_id).await? == org::Deleted::InUse {
                        tracing::info!(policy = %policy_id, "SCP {name} was attached meanwhile: kept");
                    }
                    if let Some(i) = self.index() {
                        i.set_shared_scp(name, None);
                    }
                }
            }
            if self.echo_steps {
                crate::out!("organization: {step}");
            }
        }
        overview.ok_or(Error::NoOrganization)
    }

    /// Creates the content-addressed SCP `p` (`CreatePolicy`, tagged [`crate::desired::policy_tags`]);
    /// when it exists already (another run made it meanwhile), sets its document to `p`'s
    /// (`ListPolicies`, `UpdatePolicy`: its name says that is its document). Returns its id.
    pub async fn ensure_scp(&self, p: &DesiredPolicy) -> Result<String> {
        let tags = crate::desired::policy_tags(&p.source, &p.digest);
        let id = org::create_scp(&self.ctx.clients.org, &p.name, &p.content, &tags).await?;
        if let Some(i) = self.index() {
            i.set_shared_scp(&p.name, Some(PolicyDocument { policy_id: id.clone(), content: p.content.clone() }));
        }
        Ok(id)
    }

    /// Sets the content-addressed SCP `policy_id` back to `p`'s document (`UpdatePolicy`).
    pub async fn restore_scp(&self, p: &DesiredPolicy, policy_id: &str) -> Result<()> {
        org::update_scp(&self.ctx.clients.org, policy_id, &p.content).await?;
        if let Some(i) = self.index() {
            i.set_shared_scp(
                &p.name,
                Some(PolicyDocument { policy_id: policy_id.to_string(), content: p.content.clone() }),
            );
        }
        Ok(())
    }

    /// Creates every missing OU on `path`; returns the id of the last one.
    pub async fn ensure_ou(&self, overview: &OrgOverview, path: &str) -> Result<String> {
        if let Some(id) = self.index().and_then(|i| i.ou(path)) {
            return Ok(id);
        }
        let mut parent = overview.root_id.clone();
        let mut so_far = String::new();
        for seg in path.split('/') {
            so_far = if so_far.is_empty() { seg.to_string() } else { format!("{so_far}/{seg}") };
            if let Some(id) = self.index().and_then(|i| i.ou(&so_far)) {
                parent = id;
                continue;
            }
            parent = match org::child_ous(&self.ctx.clients.org, &parent).await?.remove(seg) {
                Some(id) => id,
                None => org::create_ou(&self.ctx.clients.org, &parent, seg).await?,
            };
            if let Some(i) = self.index() {
                i.insert_ou(&so_far, &parent);
            }
        }
        Ok(parent)
    }

    /// The run-wide form of [`Engine::check_state_location`], made before any command works on
    /// tenants: when the state bucket is a new location, no account of the organization may carry
    /// tenantry's tags (`ListTagsForResource` on every account, through the run's index when there
    /// is one; only ever on a new location, i.e. a first run). Errors: [`StateLocationChanged`].
    pub async fn check_new_location(&self, overview: Option<&OrgOverview>) -> Result<()> {
        let Some(overview) = overview else { return Ok(()) };
        if *self.ctx.location().await? != Location::New {
            return Ok(());
        }
        let c = &self.ctx.clients.org;
        let management = overview.management_account_id.as_str();
        let tags_by_account = match self.index() {
            Some(index) => index.account_tags(c, management).await?.clone(),
            None => {
                crate::observe::index::tags_of(c, org::list_accounts(c).await?.iter().map(|a| &a.id), management)
                    .await?
            }
        };
        let managed: Vec<String> = tags_by_account
            .iter()
            .filter(|(_, t)| t.get(tags::MANAGED_BY).map(String::as_str) == Some("tenantry"))
            .map(|(id, t)| {
                let tag = |k: &str| t.get(k).cloned().unwrap_or_else(|| "?".into());
                format!("{} {} {id}", tag(tags::TENANT), tag(tags::ENVIRONMENT))
            })
            .collect();
        if managed.is_empty() {
            return Ok(());
        }
        Err(StateLocationChanged { bucket: self.ctx.store.bucket().to_string(), accounts: managed }.into())
    }

    /// Applies one tenant's approved plan ([`Engine::run_tenant`] in [`Engine::apply_mode`]):
    /// under the lease the tenant is observed and planned again, and the approved plan is carried
    /// out only if nothing it depends on changed ([`plan::saved::check_tenant`]); otherwise the
    /// outcome is `stale` and nothing is changed.
    pub async fn apply_tenant(
        &self,
        desired: &DesiredTenant,
        overview: &OrgOverview,
        approved: &plan::TenantPlan,
    ) -> TenantOutcome {
        self.run_tenant(desired, overview, self.apply_mode(), Some(approved)).await
    }

    /// Reconciles one tenant: lease, read state, observe, plan, and (in `mode.execute`) execute
    /// and record. With `approved`, the plan made under the lease must match it (else the
    /// outcome is `stale`). Errors land in the outcome: the lease is held elsewhere past
    /// `mode.lease_wait` (or `skipped_busy` when that is zero), the plan has refusals
    /// (blast-radius guard, collisions), the approved plan is stale, or a step failed.
    pub async fn run_tenant(
        &self,
        desired: &DesiredTenant,
        overview: &OrgOverview,
        mode: RunMode,
        approved: Option<&plan::TenantPlan>,
    ) -> TenantOutcome {
        crate::metrics::for_tenant(&desired.id, async {
            let mut outcome = TenantOutcome { tenant: desired.id.clone(), ..Default::default() };
            let lease = self
                .ctx
                .store
                .acquire_lease(&desired.id, Duration::from_secs(self.ctx.settings.lease_ttl_seconds), mode.lease_wait)
                .await;
            let lease = match lease {
                Ok(l) => l,
                Err(e) => {
                    outcome.skipped_busy = mode.lease_wait.is_zero() && matches!(e, crate::state::Error::LeaseHeld(_));
                    outcome.error = Some(e.into());
                    return outcome;
                }
            };
            if let Err(e) = self.run_leased(desired, overview, &lease, mode, approved, &mut outcome).await {
                outcome.error = Some(e);
            }
            if !outcome.applied.is_empty() || outcome.failed_step.is_some() {
                if let Err(e) = self.record_applied(desired, mode.command, &outcome).await {
                    let e = Error::from(e);
                    tracing::error!(tenant = %desired.id, "could not record the steps carried out in the ledger: {e:#}");
                    outcome.error.get_or_insert(e);
                }
            }
            if let Err(e) = lease.release().await {
                tracing::warn!(tenant = %desired.id, "could not release lease (it will expire): {e:#}");
            }
            outcome
        })
        .await
    }

    /// Appends to the tenant's ledger the steps `outcome` carried out, by whom, with which
    /// command and for which lifecycle, and the step that failed and its error if one did (it
    /// may have changed something before failing) (one `PutObject` with
    /// `If-None-Match: *`; a [`LedgerKind::Applied`](crate::state::ledger::LedgerKind::Applied) record).
    async fn record_applied(
        &self,
        desired: &DesiredTenant,
        command: &str,
        outcome: &TenantOutcome,
    ) -> std::result::Result<(), crate::state::Error> {
        let tenant = desired.id.as_str();
        let detail = serde_json::json!({
            "command": command,
            "lifecycle": desired.lifecycle,
            "accounts": outcome.accounts,
            "steps": outcome.applied,
            "failed_step": outcome.failed_step,
            "error": outcome.error.as_ref().map(|e| format!("{e:#}")),
        });
        let rec = crate::state::ledger::LedgerRecord::new(
            tenant,
            crate::state::ledger::LedgerKind::Applied,
            None,
            "",
            &self.ctx.caller_arn,
            detail,
        );
        match self.ctx.store.append_record(&rec).await {
            // The key carries this record's random id: only an earlier attempt of this very
            // request (its answer lost, then retried) can have stored it.
            Err(crate::state::Error::WriteConflict(_)) => Ok(()),
            other => other,
        }
    }

    async fn run_leased(
        &self,
        desired: &DesiredTenant,
        overview: &OrgOverview,
        lease: &Lease,
        mode: RunMode,
        approved: Option<&plan::TenantPlan>,
        outcome: &mut TenantOutcome,
    ) -> Result<()> {
        let tracked = self.ctx.store.read(&desired.id).await?;
        let mut observer = self.observer(Some(overview));
        observer.detect_drift = mode.detect_drift;
        let observed = observer.tenant(desired, &tracked.record).await?;
        self.ctx.check_state_location(&observed).await?;
        let plan = plan::tenant(desired, &observed);
        outcome.observed = Some(observed.clone());
        outcome.plan = Some(plan.clone());
        if !mode.execute {
            return Ok(());
        }
        if !plan.refusals.is_empty() {
            return Err(Error::Refused(plan.refusals.clone()));
        }
        if let Some(stale) = approved.and_then(|a| plan::saved::check_tenant(a, &plan).err()) {
            outcome.stale = true;
            outcome.stale_changes = stale.changes.clone();
            return Err(stale.into());
        }
        let mut run = TenantRun::new(self, desired, overview, tracked, &observed, lease.guard());
        if let Err(e) = run.request_accounts(&plan, mode).await {
            outcome.failed_step =
                plan.steps.iter().find(|s| matches!(s.change, plan::Change::CreateAccount { .. })).cloned();
            outcome.accounts = run.account_ids.clone();
            return Err(e);
        }
        for step in &plan.steps {
            lease.check()?;
            if mode.stop_on_signal && crate::shutdown::requested() {
                run.save_after("a stop signal").await;
                return Err(crate::shutdown::Stopped { what: step.to_string() }.into());
            }
            if let Err(e) = run.execute(step).await {
                outcome.failed_step = Some(step.clone());
                outcome.accounts = run.account_ids.clone();
                run.save_after("a failed step").await;
                return Err(e.in_step(&desired.id, step));
            }
            if self.echo_steps {
                crate::out!("{}: {step}", desired.id);
            }
            outcome.applied.push(step.clone());
            outcome.accounts = run.account_ids.clone();
        }
        run.finish().await
    }
}

/// The working memory of one tenant's apply.
struct TenantRun<'a> {
    engine: &'a Engine,
    desired: &'a DesiredTenant,
    overview: &'a OrgOverview,
    tracked: Tracked,
    account_ids: BTreeMap<Environment, String>,
    parents: BTreeMap<Environment, String>,
    policy_ids: BTreeMap<String, String>,
    verified: BTreeMap<Environment, VerifiedAccount>,
    sessions: BTreeMap<Environment, MemberSession>,
    /// The record changed since it was last written. Records are written before and after
    /// `CreateAccount` (what a crash must not lose: the only way back to an account being created)
    /// and at the end of the run, or of a failed step; everything else a crash loses is found
    /// again by observation (accounts through their request id, SCPs through their attachment or
    /// `DuplicatePolicyException`, stacks by name).
    dirty: bool,
    /// Account creations requested and not yet awaited, with their creation slots.
    creating: BTreeMap<Environment, (String, tokio::sync::OwnedSemaphorePermit)>,
    /// Environments whose in-progress request was found by account name after a lost
    /// `CreateAccount` answer, not proven to be this run's request: the guard reads the live tags
    /// of the account it creates. (An account found by email is in `found_accounts`.)
    found_after_lost_answer: std::collections::BTreeSet<Environment>,
    /// Accounts found already created by email after a lost `CreateAccount` answer, not yet
    /// through the guard (nothing of them is in `account_ids` or state until it passes).
    found_accounts: BTreeMap<Environment, String>,
    /// The tenant's lease, checked right before `CreateAccount` is sent (a creation slot can
    /// take minutes to come free).
    lease: crate::state::LeaseGuard,
}

/// One `CreateAccount` to send: the environment, its email and name, and its creation slot when
/// one is held already.
struct AccountRequest<'r> {
    env: Environment,
    email: &'r str,
    account_name: &'r str,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl<'a> TenantRun<'a> {
    fn new(
        engine: &'a Engine,
        desired: &'a DesiredTenant,
        overview: &'a OrgOverview,
        tracked: Tracked,
        observed: &ObservedTenant,
        lease: crate::state::LeaseGuard,
    ) -> Self {
        let mut run = TenantRun {
            engine,
            desired,
            overview,
            tracked,
            account_ids: BTreeMap::new(),
            parents: BTreeMap::new(),
            policy_ids: BTreeMap::new(),
            verified: BTreeMap::new(),
            sessions: BTreeMap::new(),
            dirty: false,
            creating: BTreeMap::new(),
            found_after_lost_answer: Default::default(),
            found_accounts: BTreeMap::new(),
            lease,
        };
        for (env, obs) in &observed.accounts {
            if let AccountObservation::Found(found) = obs {
                run.remember_verified_templates(*env, found);
                run.account_ids.insert(*env, found.account.id.clone());
                run.parents.insert(*env, found.parent_id.clone());
                let detached = found.detached_scps.iter().map(|(name, id)| (id, name));
                for (id, name) in found.attached.iter().chain(detached) {
                    run.policy_ids.insert(name.clone(), id.clone());
                }
            }
        }
        for (name, doc) in &observed.scps {
            if let Some(doc) = doc.as_ref().filter(|d| !d.policy_id.is_empty()) {
                run.policy_ids.insert(name.clone(), doc.policy_id.clone());
            }
        }
        run
    }

    /// Records, for each stack whose template observation read (`GetTemplate`) and found to be
    /// the file's rendered one at the version its tag names, the stack's last change: later runs
    /// then skip that read while the stack reports the same time
    /// ([`crate::observe::template_known`]).
    fn remember_verified_templates(&mut self, env: Environment, found: &crate::observe::ObservedAccount) {
        let desired = self.desired;
        for want in &desired.account(env).stacks {
            let Some(stack) = found.stacks.get(&want.stack_name) else { continue };
            let verified = stack.status.is_complete()
                && !stack.status.needs_replacement()
                && stack.version.as_deref() == Some(want.version.as_str())
                && stack.changed_at.is_some()
                && stack.template_body.as_deref().is_some_and(|body| plan::same_json(body, &want.template));
            if !verified {
                continue;
            }
            let rec = self.record(env).stacks.entry(want.stack_name.clone()).or_default();
            if rec.changed_at != stack.changed_at || rec.stack_id != stack.stack_id || rec.version != want.version {
                *rec = StackRecord {
                    blueprint: want.blueprint.clone(),
                    version: want.version.clone(),
                    status: stack.status.to_string(),
                    stack_id: stack.stack_id.clone(),
                    changed_at: stack.changed_at.clone(),
                };
                self.dirty = true;
            }
        }
    }

    fn record(&mut self, env: Environment) -> &mut AccountRecord {
        let email = self.desired.account(env).email.clone();
        self.tracked.record.accounts.entry(env).or_insert_with(|| AccountRecord { email, ..Default::default() })
    }

    async fn save(&mut self) -> Result<()> {
        self.engine.ctx.store.write(&mut self.tracked).await?;
        self.dirty = false;
        Ok(())
    }

    /// Writes the record if it changed, before the run ends early (`why`); a failure is logged,
    /// not returned (the error that ends the run matters more).
    async fn save_after(&mut self, why: &str) {
        if let Err(save) = self.save_if_dirty().await {
            tracing::warn!(tenant = %self.desired.id, "could not record progress after {why}: {save:#}");
        }
    }

    /// Sends the plan's `CreateAccount` requests up front, so that AWS creates the accounts in
    /// parallel while the steps wait for them in order. Their creation slots are taken all at
    /// once when that many are free (as many as `account_creation_concurrency` allows), else one
    /// is waited for; never one while holding another: a tenant that held one slot and waited
    /// for a second could wait forever on tenants doing the same. Accounts beyond the slots
    /// taken are requested by their step, after the earlier ones were created and their slots
    /// given back.
    async fn request_accounts(&mut self, plan: &plan::TenantPlan, mode: RunMode) -> Result<()> {
        let creates =
            plan.steps.iter().filter(|s| matches!(s, Step { change: Change::CreateAccount { .. }, .. })).count();
        if creates == 0 {
            return Ok(());
        }
        let want = creates.min(self.engine.ctx.settings.account_creation_concurrency.max(1)) as u32;
        // All the slots wanted if they are free; else one, waited for (a slot left free while
        // tenants wait for two would leave AWS creating fewer accounts than it could).
        let taken = match self.engine.create_slots.clone().try_acquire_many_owned(want) {
            Ok(all) => all,
            Err(tokio::sync::TryAcquireError::Closed) => {
                return Err(Error::Inconsistent("creation slots closed".into()))
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                crate::shutdown::bounded(
                    "waiting for an account creation slot",
                    self.engine.create_slots.clone().acquire_owned(),
                )
                .await??
            }
        };
        let mut slots = Some(taken);
        let mut wanted = Vec::new();
        for step in &plan.steps {
            let Step { change: Change::CreateAccount { email, account_name }, environment } = step else { continue };
            let Some(mut held) = slots.take() else { break };
            let slot = held.split(1).expect("one of the slots taken");
            slots = (held.num_permits() > 0).then_some(held);
            wanted.push((step, AccountRequest { env: *environment, email, account_name, slot: Some(slot) }));
        }
        if mode.stop_on_signal {
            if let Some((step, _)) = wanted.first() {
                if let Err(stopped) = crate::shutdown::check(*step) {
                    self.save_after("a stop signal").await;
                    return Err(stopped.into());
                }
            }
        }
        let (steps, requests): (Vec<&Step>, Vec<AccountRequest<'_>>) = wanted.into_iter().unzip();
        let outcomes = match self.start_accounts(requests).await {
            Ok(outcomes) => outcomes,
            Err(e) => {
                self.save_after("a failed step").await;
                return Err(e.in_step(&self.desired.id, steps[0]));
            }
        };
        // The first failure in plan order; the others' requests are recorded and resumed.
        if let Some((step, e)) = steps.into_iter().zip(outcomes).find_map(|(step, r)| r.err().map(|e| (step, e))) {
            self.save_after("a failed step").await;
            return Err(e.in_step(&self.desired.id, step));
        }
        Ok(())
    }

    /// Writes the record if it changed since the last write.
    async fn save_if_dirty(&mut self) -> Result<()> {
        if self.dirty {
            self.save().await?;
        }
        Ok(())
    }

    /// Requests one account; see [`TenantRun::start_accounts`].
    async fn start_account(
        &mut self,
        env: Environment,
        email: &str,
        account_name: &str,
        slot: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<Option<String>> {
        let request = AccountRequest { env, email, account_name, slot };
        self.start_accounts(vec![request]).await?.pop().expect("one outcome per request")
    }

    /// Requests accounts (`CreateAccount`, all at once, each within
    /// `account_creation_concurrency`: its slot is held until the account exists) and records
    /// the requests: one state write before the calls, one after. Returns, per request in
    /// order, the request id to wait for, or `None` when the answer was lost and the account
    /// was found already created (it is recorded). A lost answer with nothing found is an
    /// error: the next run looks again before sending another request. The outer error is
    /// one for every request (a stop signal while waiting for a slot, a state write that
    /// failed).
    async fn start_accounts(&mut self, requests: Vec<AccountRequest<'_>>) -> Result<Vec<Result<Option<String>>>> {
        let mut ready = Vec::with_capacity(requests.len());
        for mut r in requests {
            // A slot taken here is taken while this tenant holds none (see the up-front requests).
            let slot = match r.slot.take() {
                Some(slot) => slot,
                None => {
                    crate::shutdown::bounded(
                        "waiting for an account creation slot",
                        self.engine.create_slots.clone().acquire_owned(),
                    )
                    .await??
                }
            };
            ready.push((r, slot));
        }
        // The slots may have taken long: the lease must still be held before anything is sent.
        self.lease.check()?;
        // Recorded before the calls: a run that finds this and no request id looks for the
        // account with fresh listings (a crash may fall between a call and the record).
        let started = crate::state::now_rfc3339();
        for (r, _) in &ready {
            self.record(r.env).create_started_at = Some(started.clone());
        }
        self.save().await?;
        let org = self.engine.ctx.clients.org.clone();
        let desired = self.desired;
        let sent = futures::future::join_all(
            ready.iter().map(|(r, _)| org::create_account(&org, r.email, r.account_name, &desired.account(r.env).tags)),
        )
        .await;
        crate::faults::crash_point("after-create-account");
        let mut outcomes = Vec::with_capacity(ready.len());
        let mut recorded = false;
        for ((r, slot), answer) in ready.into_iter().zip(sent) {
            let env = r.env;
            let outcome = match answer {
                Ok(request_id) => {
                    // Recorded before polling: a crash from here on resumes this request.
                    self.record(env).create_request_id = Some(request_id.clone());
                    recorded = true;
                    self.creating.insert(env, (request_id.clone(), slot));
                    Ok(Some(request_id))
                }
                Err(org::CreateAccountFailure::Unanswered(e)) => {
                    self.found_after_lost_create(env, r.email, r.account_name, e, slot).await
                }
                Err(e) => Err(e.into()),
            };
            outcomes.push(outcome);
        }
        if recorded {
            // Not recorded if this fails: the next run finds the requests by their start time.
            self.save().await?;
            crate::faults::crash_point("after-record-request");
        }
        Ok(outcomes)
    }

    /// After a `CreateAccount` whose answer was lost: looks for what it did.
    async fn found_after_lost_create(
        &mut self,
        env: Environment,
        email: &str,
        account_name: &str,
        e: org::CreateAccountUnanswered,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<Option<String>> {
        tracing::warn!(tenant = %self.desired.id, %env, "{e}");
        // Give a request that did arrive time to show in the listings.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let org = self.engine.ctx.clients.org.clone();
        match org::find_unanswered_create(&org, email, account_name).await? {
            Some(org::Created::Request(id)) => {
                // Found by account name: not recorded in state until the guard has
                // seen the account's tags (it could be another tenant's).
                tracing::warn!(tenant = %self.desired.id, %env, request = %id, "the lost CreateAccount was carried out; following its request");
                self.found_after_lost_answer.insert(env);
                self.creating.insert(env, (id.clone(), slot));
                Ok(Some(id))
            }
            Some(org::Created::Account(id)) => {
                // Likewise: bound in state only once the guard passes.
                tracing::warn!(tenant = %self.desired.id, %env, account = %id, "the lost CreateAccount was carried out; the account exists");
                self.found_accounts.insert(env, id);
                Ok(None)
            }
            None => Err(Error::CreateUnanswered(e)),
        }
    }

    /// The guard on live tags for `account_id`, found by email or by account name rather than
    /// through this tenant's own recorded request. Passing binds it in state; refusing leaves
    /// state as if it had never been found.
    async fn verify_found(&mut self, env: Environment, account_id: String) -> Result<()> {
        self.account_ids.insert(env, account_id.clone());
        match self.verify(env).await {
            Ok(_) => {
                self.record(env).account_id = Some(account_id);
                self.dirty = true;
                Ok(())
            }
            Err(e) => {
                self.account_ids.remove(&env);
                Err(e)
            }
        }
    }

    /// Binds an account this tenant's own recorded request created: in `account_ids` and state.
    fn bind_created(&mut self, env: Environment, account_id: String) {
        self.account_ids.insert(env, account_id.clone());
        self.record(env).account_id = Some(account_id);
        self.dirty = true;
    }

    fn account_id(&self, env: Environment) -> Result<String> {
        self.account_ids.get(&env).cloned().ok_or_else(|| Error::Inconsistent(format!("no {env} account id yet")))
    }

    /// The guard, run on live tags right before the account is touched.
    async fn verify(&mut self, env: Environment) -> Result<VerifiedAccount> {
        if let Some(v) = self.verified.get(&env) {
            return Ok(v.clone());
        }
        let id = self.account_id(env)?;
        let claim = self.desired.claim(env, self.tracked.record.accounts.get(&env));
        let v = VerifiedAccount::verify_live(&self.engine.ctx.clients.org, &claim, &id).await?;
        self.verified.insert(env, v.clone());
        Ok(v)
    }

    async fn session(&mut self, env: Environment) -> Result<MemberSession> {
        if let Some(s) = self.sessions.get(&env) {
            return Ok(s.clone());
        }
        let verified = self.verify(env).await?;
        let s = &self.engine.ctx.settings;
        let session = MemberSession::assume(
            &self.engine.ctx.clients,
            &verified,
            &s.access_role,
            &s.home_region,
            Duration::from_secs(s.assume_role_timeout_seconds),
        )
        .await?;
        self.sessions.insert(env, session.clone());
        Ok(session)
    }

    /// Carries out one step of the plan, through the guard for every account it touches.
    async fn execute(&mut self, step: &Step) -> Result<()> {
        match &step.change {
            // Bound already: its account was requested up front and waited for with an earlier
            // environment's (below).
            Change::CreateAccount { .. } if self.account_ids.contains_key(&step.environment) => {}
            Change::CreateAccount { email, account_name } => {
                self.create_account(step.environment, email, account_name).await?;
                // The tenant's other accounts requested up front were created at the same
                // time: they are waited for and bound now, which gives their creation slots
                // back at once rather than after this account's steps (its stacks can take
                // minutes while other tenants wait for a slot).
                let others: Vec<Environment> = self.creating.keys().copied().collect();
                for env in others {
                    let want = self.desired.account(env);
                    let (email, account_name) = (want.email.clone(), want.account_name.clone());
                    if let Err(e) = self.create_account(env, &email, &account_name).await {
                        let other = Step { change: Change::CreateAccount { email, account_name }, environment: env };
                        return Err(e.in_step(&self.desired.id, &other));
                    }
                }
            }
            Change::AwaitAccount { request_id } => self.await_request(step.environment, request_id).await?,
            Change::RecordAccount { account_id, .. } => {
                // Found by observation and passed the guard then; bound in state now.
                if self.account_ids.get(&step.environment) != Some(account_id) {
                    return Err(Error::Inconsistent(format!(
                        "{}: the plan records account {account_id}, but this run found another",
                        step.environment
                    )));
                }
                self.record(step.environment).account_id = Some(account_id.clone());
                self.dirty = true;
            }
            Change::MoveAccount { .. } | Change::TagAccount { .. } | Change::UntagAccount { .. } => {
                self.change_account(step).await?
            }
            Change::CreatePolicy { name, .. } => {
                let id = self.engine.ensure_scp(self.desired_policy(name)?).await?;
                self.policy_ids.insert(name.clone(), id);
            }
            Change::UpdatePolicy { name, policy_id, .. } => {
                self.engine.restore_scp(self.desired_policy(name)?, policy_id).await?;
            }
            Change::AttachPolicy { .. } | Change::RemovePolicy { .. } | Change::DetachForeignPolicy { .. } => {
                self.change_attachment(step).await?
            }
            Change::DeleteStack { stack, .. } => {
                let env = step.environment;
                let session = self.session(env).await?;
                let _wait = self.engine.progress.wait(format!(
                    "{}: {env}: deleting stack {stack} in account {}",
                    self.desired.id,
                    session.account.account_id()
                ));
                cfn::delete(&session.cfn, stack, self.engine.ctx.stack_wait()).await?;
                self.record(env).stacks.remove(stack);
                self.dirty = true;
            }
            Change::CreateStack { stack, .. }
            | Change::UpdateStack { stack, .. }
            | Change::RedeployStack { stack, .. }
            | Change::RecoverStack { stack, .. }
            | Change::RecreateStack { stack, .. } => self.deploy_stack(step, step.environment, stack).await?,
        }
        Ok(())
    }

    /// Moves, tags or untags an account (`MoveAccount`, `TagResource`, `UntagResource`), through
    /// the guard on its live tags.
    async fn change_account(&mut self, step: &Step) -> Result<()> {
        let org = self.engine.ctx.clients.org.clone();
        match &step.change {
            Change::MoveAccount { to_ou_path, .. } => {
                let env = step.environment;
                let v = self.verify(env).await?;
                let from = self.parents.get(&env).cloned().unwrap_or_else(|| self.overview.root_id.clone());
                let to = self.engine.ensure_ou(self.overview, to_ou_path).await?;
                if from != to {
                    org::move_account(&org, v.account_id(), &from, &to).await?;
                }
                self.parents.insert(env, to);
                self.record(env).ou_path = Some(to_ou_path.clone());
                self.dirty = true;
            }
            Change::TagAccount { tags, .. } => {
                let v = self.verify(step.environment).await?;
                let set: BTreeMap<String, String> = tags.iter().map(|(k, (_, v))| (k.clone(), v.clone())).collect();
                org::tag(&org, v.account_id(), &set).await?;
            }
            Change::UntagAccount { tags, .. } => {
                let env = step.environment;
                let v = self.verify(env).await?;
                let keys: Vec<String> = tags.keys().cloned().collect();
                org::untag(&org, v.account_id(), &keys).await?;
                let rec = self.record(env);
                for k in &keys {
                    rec.tag_keys.remove(k);
                }
                self.dirty = true;
            }
            _ => return Err(Error::Inconsistent(format!("not an account step: {step}"))),
        }
        Ok(())
    }

    /// Attaches, removes or detaches an SCP (`AttachPolicy`, `DetachPolicy` + `DeletePolicy`,
    /// `DetachPolicy`), through the guard on the account's live tags.
    async fn change_attachment(&mut self, step: &Step) -> Result<()> {
        let org = self.engine.ctx.clients.org.clone();
        match &step.change {
            Change::AttachPolicy { name } => {
                let env = step.environment;
                let v = self.verify(env).await?;
                let p = self.desired_policy(name)?;
                // An SCP not found when observed, or deleted since (another tenant's last detach),
                // is made (again): its name says its document.
                let mut id = match self.policy_ids.get(name) {
                    Some(id) => id.clone(),
                    None => self.engine.ensure_scp(p).await?,
                };
                let mut remade = false;
                while org::attach(&org, &id, v.account_id()).await? == org::Attached::NoSuchPolicy {
                    if remade {
                        return Err(Error::Inconsistent(format!(
                            "SCP {name} ({id}) vanished twice while being attached"
                        )));
                    }
                    id = self.engine.ensure_scp(p).await?;
                    remade = true;
                }
                self.policy_ids.insert(name.clone(), id.clone());
                let digest = p.digest.clone();
                self.record(env).policies.insert(name.clone(), PolicyRecord { policy_id: id, digest });
                self.dirty = true;
            }
            Change::RemovePolicy { name, policy_id, attached, .. } => {
                let env = step.environment;
                let v = self.verify(env).await?;
                if *attached {
                    org::detach(&org, policy_id, v.account_id()).await?;
                }
                if org::delete_policy(&org, policy_id).await? == org::Deleted::InUse {
                    tracing::info!(tenant = %self.desired.id, %env, policy = %policy_id, "SCP {name} is still attached elsewhere: kept");
                }
                self.policy_ids.remove(name);
                self.record(env).policies.remove(name);
                self.dirty = true;
            }
            Change::DetachForeignPolicy { policy_id, .. } => {
                let v = self.verify(step.environment).await?;
                org::detach(&org, policy_id, v.account_id()).await?;
            }
            _ => return Err(Error::Inconsistent(format!("not a policy attachment step: {step}"))),
        }
        Ok(())
    }

    /// `CreateAccount` (unless it was requested up front), waited for; a request that FAILED for
    /// a transient reason is sent again a bounded number of times. The account is bound in
    /// state: through the guard on the file's tags when this run's own request created it, on
    /// its live tags when it was found after a lost answer.
    async fn create_account(&mut self, env: Environment, email: &str, account_name: &str) -> Result<()> {
        let mut request_id = match self.creating.get(&env) {
            Some((id, _)) => Some(id.clone()),
            // Found already created after CreateAccount's answer was lost.
            None if self.found_accounts.contains_key(&env) => None,
            None => self.start_account(env, email, account_name, None).await?,
        };
        // A request that FAILED created no account. One that failed for a transient
        // reason is sent again, with backoff, a bounded number of times.
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(Duration::from_secs(2))
            .with_jitter()
            .with_max_times(CREATE_ACCOUNT_RETRIES)
            .build();
        let mut created = None;
        while let Some(rid) = request_id.clone() {
            match self.await_account(env, &rid).await {
                Ok(id) => {
                    created = Some(id);
                    break;
                }
                Err(e) => {
                    let transient = matches!(&e, Error::CreateFailed(f) if f.is_transient());
                    match delays.next().filter(|_| transient) {
                        Some(delay) => {
                            tracing::warn!(tenant = %self.desired.id, %env, "{e:#}; sending CreateAccount again in {} ms", delay.as_millis());
                            // The failed request's slot is kept for the next one (never
                            // given back and taken again while another is held).
                            let slot = self.creating.remove(&env).map(|(_, slot)| slot);
                            crate::shutdown::bounded(
                                format_args!("waiting to send CreateAccount again"),
                                tokio::time::sleep(delay),
                            )
                            .await?;
                            request_id = self.start_account(env, email, account_name, slot).await?;
                        }
                        None => return Err(e),
                    }
                }
            }
        }
        self.creating.remove(&env);
        match (created, self.found_accounts.remove(&env)) {
            (Some(id), _) if !self.found_after_lost_answer.contains(&env) => {
                // This run created the account, with the tenant's tags: the guard passes
                // by construction, so no live tag read is needed before the first step
                // touches it.
                let want = self.desired.account(env);
                let mut claim = self.desired.claim(env, self.tracked.record.accounts.get(&env));
                claim.recorded = Some(&id);
                let live = LiveAccount { id: &id, email: &want.email, name: &want.account_name, tags: &want.tags };
                let v = VerifiedAccount::verify(&claim, &live)?;
                self.bind_created(env, id);
                self.verified.insert(env, v);
            }
            // Found after a lost answer: the guard reads its live tags first.
            (Some(id), _) | (None, Some(id)) => self.verify_found(env, id).await?,
            (None, None) => return Err(Error::Inconsistent(format!("no {env} account was created or found"))),
        }
        Ok(())
    }

    /// Waits for a `CreateAccount` request found running and binds its account: at once when it
    /// is this tenant's recorded request, through the guard on live tags otherwise.
    async fn await_request(&mut self, env: Environment, request_id: &str) -> Result<()> {
        let id = self.await_account(env, request_id).await?;
        if self.record(env).create_request_id.as_deref() == Some(request_id) {
            self.bind_created(env, id);
        } else {
            // A request found by account name, not this tenant's recorded one: it may be
            // another tenant's. Its account is checked by the guard before anything of it
            // is recorded in state.
            self.verify_found(env, id).await?;
        }
        Ok(())
    }

    /// The tenant's rendered SCP named `name` (any environment's: the name is the document's).
    fn desired_policy(&self, name: &str) -> Result<&'a DesiredPolicy> {
        let desired: &'a DesiredTenant = self.desired;
        desired
            .policy(name)
            .ok_or_else(|| Error::Inconsistent(format!("SCP {name} is not in the tenant's desired state")))
    }

    /// Creates, updates, redeploys, recovers or replaces one stack from its rendered blueprint,
    /// and records its status (also when it failed).
    async fn deploy_stack(&mut self, step: &Step, env: Environment, stack: &str) -> Result<()> {
        let session = self.session(env).await?;
        let want = self
            .desired
            .account(env)
            .stacks
            .iter()
            .find(|s| s.stack_name == stack)
            .ok_or_else(|| Error::Inconsistent(format!("stack {stack} is not in the tenant's desired state")))?
            .clone();
        let mut stack_tags = crate::desired::managed_tags(&self.desired.id, env);
        stack_tags.insert(tags::BLUEPRINT.to_string(), want.blueprint.clone());
        stack_tags.insert(tags::VERSION.to_string(), want.version.clone());
        if let Change::RedeployStack { .. } = step.change {
            // A changed stack tag makes CloudFormation update every taggable resource.
            stack_tags.insert(tags::REDEPLOYED_AT.to_string(), crate::state::now_rfc3339());
        }
        let wait = self.engine.ctx.stack_wait();
        let _wait = self.engine.progress.wait(format!(
            "{}: {env}: {} stack {stack} in account {}",
            self.desired.id,
            match &step.change {
                Change::UpdateStack { .. } | Change::RedeployStack { .. } | Change::RecoverStack { .. } => "updating",
                _ => "creating",
            },
            session.account.account_id()
        ));
        let op = match &step.change {
            Change::UpdateStack { .. } | Change::RedeployStack { .. } => Operation::Update,
            Change::RecoverStack { .. } => {
                cfn::continue_rollback(&session.cfn, stack, wait).await?;
                Operation::Update
            }
            Change::RecreateStack { .. } => {
                cfn::delete(&session.cfn, stack, wait).await?;
                Operation::Create
            }
            _ => Operation::Create,
        };
        let source = cfn::template_source(&session, &want.template).await?;
        let result = cfn::deploy(&session.cfn, op, stack, &source, &stack_tags, wait).await;
        let (status, stack_id, mut changed_at) = match &result {
            Ok(s) => (s.status.to_string(), s.stack_id.clone(), s.changed_at.clone()),
            Err(_) => ("FAILED".to_string(), String::new(), None),
        };
        // The last change is recorded as tenantry's only once the stack is seen running the
        // template sent (`GetTemplate`, after the `DescribeStacks` that gave the time): the stack
        // waited for may be another's (replaced meanwhile, or found existing), and any change
        // after that time moves it.
        if changed_at.is_some() {
            let body = cfn::template_body(&session.cfn, stack).await.ok().flatten();
            if !body.is_some_and(|b| plan::same_json(&b, &want.template)) {
                changed_at = None;
            }
        }
        self.record(env).stacks.insert(
            stack.to_string(),
            StackRecord {
                blueprint: want.blueprint.clone(),
                version: want.version.clone(),
                status,
                stack_id,
                changed_at,
            },
        );
        self.dirty = true;
        result?;
        Ok(())
    }

    /// Polls `DescribeCreateAccountStatus` with exponential backoff until the request ends (at
    /// most `create_account_timeout_seconds`) and returns the created account's id. Nothing is
    /// recorded here: the caller binds the id ([`Self::bind_created`] for this tenant's own request,
    /// [`Self::verify_found`] for one found by name). A `FAILED` request is a [`CreateFailed`].
    async fn await_account(&mut self, env: Environment, request_id: &str) -> Result<String> {
        let org = self.engine.ctx.clients.org.clone();
        let _wait =
            self.engine.progress.wait(format!("{}: {env}: waiting for account creation {request_id}", self.desired.id));
        let status = crate::poll::until_done(
            format_args!("waiting for CreateAccount request {request_id}"),
            // At most 5 s apart: a creation slot is held until the account is seen created, and
            // with at most `account_creation_concurrency` in flight that is 1 request a second.
            (Duration::from_millis(500), Duration::from_secs(5)),
            Duration::from_secs(self.engine.ctx.settings.create_account_timeout_seconds),
            || async {
                let status = org::create_status(&org, request_id).await?.ok_or_else(|| {
                    Error::Inconsistent(format!(
                        "Organizations does not know CreateAccount request {request_id}; re-run to look for the account"
                    ))
                })?;
                Ok::<_, Error>(match status.state {
                    CreateRequestState::InProgress => Look::NotYet,
                    _ => Look::Done(status),
                })
            },
        )
        .await?;
        match status.state {
            CreateRequestState::Succeeded => {
                Ok(status.account_id.or_missing("organizations:DescribeCreateAccountStatus", "account id")?)
            }
            CreateRequestState::Failed(reason) => {
                Err(CreateFailed { request_id: request_id.to_string(), reason }.into())
            }
            CreateRequestState::InProgress => unreachable!("polling ends only on a final state"),
        }
    }

    async fn finish(&mut self) -> Result<()> {
        let before = self.tracked.record.clone();
        for want in &self.desired.accounts {
            let env = want.environment;
            if self.account_ids.contains_key(&env) {
                let rec = self.record(env);
                // An email the file declares is remembered, so that the account stays known by
                // it whatever the file says later.
                if !rec.email.eq_ignore_ascii_case(&want.email)
                    && !rec.declared_emails.iter().any(|e| e.eq_ignore_ascii_case(&want.email))
                {
                    rec.declared_emails.insert(want.email.clone());
                }
                rec.ou_path = Some(want.ou_path.clone());
                rec.tag_keys = want.tags.keys().cloned().collect();
                for s in &want.stacks {
                    rec.stacks.entry(s.stack_name.clone()).or_insert_with(|| StackRecord {
                        blueprint: s.blueprint.clone(),
                        version: s.version.clone(),
                        ..Default::default()
                    });
                }
            }
        }
        if self.dirty || self.tracked.record != before {
            self.save().await?;
        }
        Ok(())
    }
}

/// How many times a `CreateAccount` that FAILED for a transient reason is sent again in one run.
const CREATE_ACCOUNT_RETRIES: usize = 2;

/// A `CreateAccount` request ended `FAILED` (no account was created).
#[derive(Debug, thiserror::Error)]
#[error("CreateAccount request {request_id} failed: {reason}{}", failure_hint(reason))]
pub struct CreateFailed {
    /// The request id.
    pub request_id: String,
    /// The `FailureReason`.
    pub reason: String,
}

impl CreateFailed {
    /// Whether AWS reports the failure as transient (`CONCURRENT_ACCOUNT_MODIFICATION`,
    /// `INTERNAL_FAILURE`): sending the request again may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self.reason.as_str(), "CONCURRENT_ACCOUNT_MODIFICATION" | "INTERNAL_FAILURE")
    }
}

/// The state bucket holds no tenantry state, yet accounts tenantry created exist that it does not
/// record: the state location changed or the state was lost.
#[derive(Debug, thiserror::Error)]
#[error(
    "state bucket s3://{bucket} holds no tenantry state, but accounts tenantry created exist that it does not record ({}). \
     The state location changed (`state_bucket` or `home_region` in tenantry.toml) or the state was lost; going on would treat \
     them as unknown. Move the state: `tenantry state migrate --from <old bucket>`; or, if the old state is gone for good, make \
     this bucket the state location with `tenantry state init` (the accounts are then recorded from observation; only when \
     home_region is the one the stacks are in). See README, \"Moving the state\".",
    accounts.join(", ")
)]
pub struct StateLocationChanged {
    /// The state bucket this run uses.
    pub bucket: String,
    /// `tenant environment account-id` of each account found.
    pub accounts: Vec<String>,
}
