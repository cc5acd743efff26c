//! The I/O of promotion: `stage`, `evidence`, `converged`, `promote` (one tenant or waves),
//! `approve`, `rollback`, `history`. Member accounts are reached only through
//! [`MemberSession`]s of the tenant being worked on, after the blast-radius guard.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::{
    classify, gates, ledger_truth, rollback_target, short, workload_stack, Evidence, Gate, GateInputs, LedgerKind,
    LedgerRecord, LedgerTruth, Release, Risk, Running, StagingStack,
};
use crate::apply::Context;
use crate::aws::cfn::{self, ResourceChange};
use crate::aws::member::{MemberSession, VerifiedAccount};
use crate::aws::types::{ObservedStack, StackStatus};
use crate::desired::DesiredTenant;
use crate::observe::ResourceDrift;
use crate::render::Renderer;
use crate::tenant::{tags, Approval, Environment, Tenant};

/// Why a stage, promotion, rollback or ledger command failed. Gates that refuse are no error:
/// they are a [`Promotion`] with status `Refused` or `NeedsApproval`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// What apply can fail with too, through the same adapters, state store and guard: an AWS
    /// call, the state store (the ledger, an artifact, the lease), a member session, a change
    /// set or stack operation, a stop signal, rebuilding a tenant's record.
    #[error(transparent)]
    Apply(#[from] crate::apply::Error),
    /// A workload's release could not be rendered.
    #[error("{}: workloads.{workload}: {error}", file.display())]
    Render {
        /// The tenant file.
        file: std::path::PathBuf,
        /// The workload.
        workload: String,
        /// Why.
        error: Box<crate::render::RenderFailure>,
    },
    /// What was asked cannot be done as things are (named, with what to do).
    #[error("{0}")]
    Refused(String),
}

/// The failures promotion shares with apply become [`Error::Apply`].
macro_rules! shared_with_apply {
    ($($from:ty),*) => {$(
        impl From<$from> for Error {
            fn from(e: $from) -> Error {
                Error::Apply(e.into())
            }
        }
    )*};
}
shared_with_apply!(
    crate::aws::Error,
    crate::state::Error,
    crate::aws::member::SessionError,
    cfn::StackError,
    crate::shutdown::Stopped
);

/// Results of promotion.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Refuses with a formatted reason ([`Error::Refused`]).
macro_rules! refuse {
    ($($arg:tt)*) => {
        return Err(Error::Refused(format!($($arg)*)))
    };
}

/// What promotion needs from the run.
pub struct Promoter<'a> {
    /// Clients, settings, state store: what apply uses too.
    pub ctx: &'a Context,
    /// Blueprints, to render releases.
    pub renderer: &'a Renderer,
    /// The caller's ARN, recorded as `by` in the ledger.
    pub caller: &'a str,
    /// The desired state of every tenant of the run (the guard's claims; rebuilding state).
    pub desired: &'a [DesiredTenant],
    /// Tenants whose lease this run holds (see [`Promoter::leased`]).
    pub held: std::sync::Mutex<BTreeMap<String, crate::state::LeaseGuard>>,
    /// Set once the state bucket was made sure of in this run (it is checked once, not before
    /// every ledger record and artifact).
    pub bucket_ready: tokio::sync::OnceCell<()>,
}

/// The outcome of staging one workload.
#[derive(Debug, Serialize)]
pub struct Staged {
    /// Workload.
    pub workload: String,
    /// Release digest.
    pub release: String,
    /// `staged`, or `unchanged` when staging already ran it.
    pub status: String,
    /// The change set's resource changes.
    pub changes: Vec<ResourceChange>,
}

/// The gates of one release.
#[derive(Debug, Serialize)]
pub struct Convergence {
    /// Tenant id.
    pub tenant: String,
    /// Workload.
    pub workload: String,
    /// Release digest.
    pub release: String,
    /// Whether every gate passed.
    pub converged: bool,
    /// Each gate.
    pub gates: Vec<Gate>,
    /// What the production stack runs, read from it, and whether the ledger agrees (nothing is
    /// written by `converged`).
    pub production: LedgerTruth,
}

/// How a promotion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PromotionStatus {
    /// Production now runs the release.
    Promoted,
    /// Production already ran it.
    Unchanged,
    /// `--dry-run`: checked and previewed, nothing executed.
    DryRun,
    /// A gate failed.
    Refused,
    /// High risk or manual policy, and no approval.
    NeedsApproval,
    /// The production deploy failed; `stack_status` says what production was left in
    /// (UPDATE_ROLLBACK_COMPLETE: back at the previous release).
    Failed,
}

/// The outcome of promoting (or rolling back) one workload of one tenant.
#[derive(Debug, Serialize)]
pub struct Promotion {
    /// Tenant id.
    pub tenant: String,
    /// Workload.
    pub workload: String,
    /// Release digest.
    pub release: String,
    /// What production ran before.
    pub previous_release: Option<String>,
    /// How it ended.
    pub status: PromotionStatus,
    /// The gates (empty for a rollback, which goes back to a release production already ran).
    pub gates: Vec<Gate>,
    /// The production change set's changes.
    pub changes: Vec<ResourceChange>,
    /// Its risk.
    pub risk: Option<Risk>,
    /// Why it is high risk.
    pub risk_reasons: Vec<String>,
    /// What failed.
    pub error: Option<String>,
    /// A rollback to an earlier release rather than a promotion.
    pub rollback: bool,
    /// The production stack's status after a failed deploy.
    pub stack_status: Option<StackStatus>,
    /// What the production stack ran before (read from the stack: `GetTemplate` matched byte for
    /// byte against the tenant's stored artifacts; `previous_release` is its release), what the
    /// ledger said, and the records appended because the ledger lacked them (in a dry run: the
    /// records that would be). In JSON flattened: `running`, `ledger_release`, `ledger_mismatch`,
    /// `recovered`, each `null` (`[]`) when production was not read.
    #[serde(flatten, serialize_with = "LedgerTruth::serialize_flat")]
    pub truth: Option<LedgerTruth>,
    pub recovered_written: bool,
}

impl Promotion {
    /// A promotion of `release` that has not got anywhere yet (status `Refused`, no error).
    pub fn new(tenant: &str, workload: &str, release: &str) -> Promotion {
        Promotion {
            tenant: tenant.into(),
            workload: workload.into(),
            release: release.into(),
            previous_release: None,
            status: PromotionStatus::Refused,
            gates: Vec::new(),
            changes: Vec::new(),
            risk: None,
            risk_reasons: Vec::new(),
            error: None,
            rollback: false,
            stack_status: None,
            truth: None,
            recovered_written: false,
        }
    }

    /// Whether it reached its goal (promoted, or nothing to do, or a clean dry run).
    pub fn ok(&self) -> bool {
        matches!(self.status, PromotionStatus::Promoted | PromotionStatus::Unchanged | PromotionStatus::DryRun)
    }

    fn with_truth(mut self, truth: &LedgerTruth, written: bool) -> Promotion {
        self.previous_release = truth.running.release().map(str::to_string);
        self.truth = Some(truth.clone());
        self.recovered_written = written;
        self
    }

    /// What production ran before, if it was read.
    pub fn running(&self) -> Option<&Running> {
        self.truth.as_ref().map(|t| &t.running)
    }
}

impl Promoter<'_> {
    fn wait(&self) -> cfn::Wait {
        self.ctx.stack_wait()
    }

    /// A session in one of `tenant`'s accounts: the account id from state (rebuilt from
    /// observation, and said so, when state has none: see [`Context::rebuild_record`]), its live
    /// tags, root email and name checked by the guard (`ListTagsForResource`, `DescribeAccount`),
    /// then `AssumeRole`.
    pub async fn session(&self, tenant: &Tenant, env: Environment) -> Result<MemberSession> {
        crate::shutdown::check(format!("{env}: a session in the account of {}", tenant.spec.id))?;
        let Some(desired) = self.desired.iter().find(|d| d.id == tenant.spec.id) else {
            refuse!("tenant {} is not among the tenants of this run", tenant.spec.id)
        };
        let mut record = self.ctx.store.read(&tenant.spec.id).await?.record;
        if record.accounts.get(&env).and_then(|r| r.account_id.as_ref()).is_none() {
            let held = self.held.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&tenant.spec.id);
            record = self.ctx.rebuild_record(desired, held).await?;
        }
        let rec = record.accounts.get(&env);
        let Some(id) = rec.and_then(|r| r.account_id.clone()) else {
            refuse!("tenant {} has no {env} account yet: run `tenantry apply` first", tenant.spec.id)
        };
        let claim = desired.claim(env, rec);
        let verified = VerifiedAccount::verify_live(&self.ctx.clients.org, &claim, &id).await?;
        let s = &self.ctx.settings;
        Ok(MemberSession::assume(
            &self.ctx.clients,
            &verified,
            &s.access_role,
            &s.home_region,
            Duration::from_secs(s.assume_role_timeout_seconds),
        )
        .await?)
    }

    /// Refuses to deploy into an account that still carries the quarantine SCP of a suspended
    /// tenant (`ListPoliciesForTarget`): a tenant file set back to `active` takes effect once
    /// `apply` has put the accounts back. Errors: [`Error::Refused`]; the call's.
    async fn refuse_quarantined(&self, tenant: &Tenant, session: &MemberSession) -> Result<()> {
        let id = session.account.account_id();
        let attached = crate::aws::org::attached_scps(&self.ctx.clients.org, id).await?;
        let prefix = format!("tenantry-{}-", crate::tenant::QUARANTINE_POLICY_SOURCE);
        if let Some(name) = attached.values().find(|name| name.starts_with(&prefix)) {
            refuse!(
                "account {id} of tenant {0} still carries the quarantine SCP {name} (the tenant was suspended): run `tenantry apply {0}` to put its accounts back first",
                tenant.spec.id
            )
        }
        Ok(())
    }

    /// Runs `work` under `tenant`'s lease, the one `apply` and `reconcile` take too, so that one
    /// process at a time changes a tenant's stacks: a stage, promotion or rollback waits for an
    /// apply of the same tenant (up to `lease_wait_seconds`), and the other way round. Errors:
    /// [`crate::state::LeaseHeld`] past the wait; `work`'s error.
    pub async fn leased<T>(&self, tenant: &str, work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        crate::shutdown::check(format!("taking the lease of tenant {tenant}"))?;
        let s = &self.ctx.settings;
        let lease = self
            .ctx
            .store
            .acquire_lease(tenant, Duration::from_secs(s.lease_ttl_seconds), Duration::from_secs(s.lease_wait_seconds))
            .await?;
        self.held.lock().unwrap_or_else(|p| p.into_inner()).insert(tenant.to_string(), lease.guard());
        let result = work.await;
        self.held.lock().unwrap_or_else(|p| p.into_inner()).remove(tenant);
        let lost = lease.check();
        if let Err(e) = lease.release().await {
            tracing::warn!(tenant, "could not release lease (it will expire): {e:#}");
        }
        let value = result?;
        lost?;
        Ok(value)
    }

    /// Errors if this run took `tenant`'s lease and has lost it since (no change may start).
    fn lease_held(&self, tenant: &str) -> Result<()> {
        let guard = self.held.lock().unwrap_or_else(|p| p.into_inner()).get(tenant).cloned();
        Ok(guard.map_or(Ok(()), |g| g.check())?)
    }

    /// Makes sure the state bucket exists, private, encrypted and versioned, once per run.
    async fn ensure_bucket(&self) -> Result<()> {
        self.bucket_ready.get_or_try_init(|| self.ctx.ensure_state_bucket()).await?;
        Ok(())
    }

    /// Stores a record in the tenant's ledger ([`crate::state::StateStore::append_record`]),
    /// the state bucket made sure of first.
    async fn store_record(&self, rec: &LedgerRecord) -> Result<()> {
        self.ensure_bucket().await?;
        Ok(self.ctx.store.append_record(rec).await?)
    }

    /// Appends a record to the tenant's ledger (`PutObject` with `If-None-Match: *`).
    pub async fn append(
        &self,
        tenant: &str,
        kind: LedgerKind,
        workload: Option<&str>,
        release: &str,
        detail: serde_json::Value,
    ) -> Result<LedgerRecord> {
        let rec = LedgerRecord::new(tenant, kind, workload, release, self.caller, detail);
        self.store_record(&rec).await?;
        Ok(rec)
    }

    /// What `workload`'s stack runs in the account of `session`, read from the stack
    /// (`DescribeStacks`, `GetTemplate`), never from the ledger: the release whose stored
    /// artifact's template is the stack's template byte for byte. The candidates are the
    /// `hint` (the release just deployed, if any), the stack's `tenantry:release` tag, then every
    /// release of the workload that `ledger` names, newest first (`GetObject` each until one
    /// matches). Errors: AWS calls failing, an artifact that cannot be read (one that does not
    /// exist is skipped).
    pub async fn running(
        &self,
        session: &MemberSession,
        tenant: &str,
        workload: &str,
        ledger: &[LedgerRecord],
        hint: Option<&str>,
    ) -> Result<Running> {
        let stack = workload_stack(workload);
        let Some(s) = cfn::describe(&session.cfn, &stack).await? else { return Ok(Running::Absent) };
        if s.status.is_empty() {
            return Ok(Running::Absent);
        }
        if s.status.is_in_progress() {
            return Ok(Running::Busy { stack_status: s.status });
        }
        let body = cfn::template_body(&session.cfn, &stack).await?.unwrap_or_default();
        let tag = s.tags.get(tags::RELEASE).cloned();
        let mut candidates: Vec<&str> = hint.into_iter().chain(tag.as_deref()).collect();
        for r in ledger.iter().rev().filter(|r| r.workload.as_deref() == Some(workload)) {
            if !candidates.contains(&r.release.as_str()) {
                candidates.push(&r.release);
            }
        }
        for digest in candidates {
            if digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()) {
                continue;
            }
            let a = match self.ctx.store.release(tenant, digest).await {
                Ok(a) => a,
                // Not stored, not valid, or not the release its key names: not a candidate.
                Err(crate::state::Error::Release(_) | crate::state::Error::Corrupt { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            if a.workload == workload && a.template == body {
                return Ok(Running::Release { release: digest.to_string(), stack_status: s.status });
            }
        }
        Ok(Running::Unknown { tag, stack_status: s.status })
    }

    /// Reads what production runs for `workload` ([`Promoter::running`]), compares it with the
    /// ledger ([`ledger_truth`]) and appends, when `write`, the records that make the ledger tell
    /// what happened (marked `"recovered": true`, said on stderr). The records are added to
    /// `ledger` either way, so that later decisions of the run see them. Call it only under the
    /// tenant's lease when `write`.
    pub async fn production_truth(
        &self,
        tenant: &str,
        workload: &str,
        prod: &MemberSession,
        ledger: &mut Vec<LedgerRecord>,
        write: bool,
    ) -> Result<LedgerTruth> {
        let running = self.running(prod, tenant, workload, ledger, None).await?;
        let history: Vec<&LedgerRecord> = ledger.iter().filter(|r| r.workload.as_deref() == Some(workload)).collect();
        let truth = ledger_truth(&history, &running);
        for r in &truth.recover {
            let detail = serde_json::json!({
                "recovered": true,
                "intent": r.intent,
                "note": r.note,
                "previous_release": truth.ledger_release,
                "changes": null,
                "stack_status": running.stack_status(),
            });
            let rec = LedgerRecord::new(tenant, r.kind, Some(workload), &r.release, self.caller, detail);
            if write {
                if let (LedgerKind::PromotionFailed, Some(intent)) = (r.kind, &r.intent) {
                    // Its change set was never carried out: nobody may execute it later.
                    let name = ledger
                        .iter()
                        .find(|i| &i.id == intent)
                        .and_then(|i| i.detail["change_set"].as_str().map(str::to_string));
                    if let Some(name) = name {
                        if let Err(e) = cfn::delete_change_set(&prod.cfn, &workload_stack(workload), &name).await {
                            tracing::warn!(
                                tenant,
                                workload,
                                change_set = name,
                                "could not delete the change set that was not carried out: {e:#}"
                            );
                        }
                    }
                }
                self.store_record(&rec).await?;
                eprintln!("ledger: tenant {tenant} workload {workload}: recorded {} ({})", rec.key(), r.note);
            }
            ledger.push(rec);
        }
        Ok(truth)
    }

    /// `tenantry stage`: renders each selected workload, stores the artifact, deploys it into
    /// staging through a change set, and records it as staged.
    pub async fn stage(&self, tenant: &Tenant, workload: Option<&str>) -> Result<Vec<Staged>> {
        let names = workloads(tenant, workload)?;
        let session = self.session(tenant, Environment::Staging).await?;
        self.refuse_quarantined(tenant, &session).await?;
        let mut ledger: Option<Vec<LedgerRecord>> = None;
        let mut out = Vec::new();
        for w in names {
            let release = Release::render(
                tenant,
                &w,
                self.renderer,
                &self.ctx.settings.home_region,
                &self.ctx.management_account_id,
            )
            .map_err(|error| Error::Render {
                file: tenant.path.clone(),
                workload: w.clone(),
                error: Box::new(error),
            })?;
            self.ensure_bucket().await?;
            self.ctx.store.store_release(&release).await?;
            let (status, changes) = self.deploy(&session, tenant, &release, Environment::Staging).await?;
            let status = if status == "deployed" {
                self.append(
                    &tenant.spec.id,
                    LedgerKind::Staged,
                    Some(&w),
                    &release.digest,
                    serde_json::json!({ "changes": changes }),
                )
                .await?;
                "staged".to_string()
            } else {
                // Staging already runs it. If the ledger's last `staged` record of the workload is
                // another release, a run died after executing the change set (or the record was
                // lost): record it now, read from the stack, so promotion sees what staging runs.
                let ledger = match &ledger {
                    Some(l) => l,
                    None => ledger.insert(self.ctx.store.ledger(&tenant.spec.id).await?),
                };
                let last = ledger
                    .iter()
                    .rev()
                    .find(|r| r.kind == LedgerKind::Staged && r.workload.as_deref() == Some(w.as_str()));
                let runs = self.running(&session, &tenant.spec.id, &w, ledger, Some(&release.digest)).await?;
                if last.map(|r| r.release.as_str()) != Some(release.digest.as_str())
                    && runs.release() == Some(release.digest.as_str())
                {
                    let note = "staging runs this release (its template is the artifact byte for byte), and the ledger had no record of it";
                    let rec = self
                        .append(
                            &tenant.spec.id,
                            LedgerKind::Staged,
                            Some(&w),
                            &release.digest,
                            serde_json::json!({ "changes": [], "recovered": true, "note": note }),
                        )
                        .await?;
                    eprintln!("ledger: tenant {} workload {w}: recorded {} ({note})", tenant.spec.id, rec.key());
                    "staged (recovered)".to_string()
                } else {
                    status
                }
            };
            out.push(Staged { workload: w, release: release.digest, status, changes });
        }
        Ok(out)
    }

    /// Creates, executes and waits for a change set deploying `release` in one account. Returns
    /// (`deployed` | `unchanged`, changes).
    async fn deploy(
        &self,
        session: &MemberSession,
        tenant: &Tenant,
        release: &Release,
        env: Environment,
    ) -> Result<(String, Vec<ResourceChange>)> {
        crate::shutdown::check(format!("{env}: change set for release {}", short(&release.digest)))?;
        let (preview, _) = self.preview(session, tenant, release, env, false).await?;
        if !preview.executable {
            cfn::delete_change_set(&session.cfn, &workload_stack(&release.workload), &preview.name).await?;
            return Ok(("unchanged".into(), Vec::new()));
        }
        let last_look = crate::shutdown::check(format!("{env}: executing change set {}", preview.name))
            .map_err(Error::from)
            .and_then(|()| self.lease_held(&tenant.spec.id));
        if let Err(why) = last_look {
            self.discard(session, &workload_stack(&release.workload), &preview).await?;
            return Err(why);
        }
        cfn::execute_change_set(
            &session.cfn,
            &workload_stack(&release.workload),
            &preview.name,
            preview.creates_stack,
            self.wait(),
        )
        .await?;
        Ok(("deployed".into(), preview.changes))
    }

    /// Creates the change set of `release` in `env` (not executed). Returns it and the release
    /// the stack ran before.
    async fn preview(
        &self,
        session: &MemberSession,
        tenant: &Tenant,
        release: &Release,
        env: Environment,
        dry_run: bool,
    ) -> Result<(cfn::ChangeSetPreview, Option<String>)> {
        let stack = workload_stack(&release.workload);
        let current = cfn::describe(&session.cfn, &stack).await?;
        let previous = current.as_ref().and_then(|s| s.tags.get(tags::RELEASE).cloned());
        let creates = self.prepare_stack(session, &stack, env, current.as_ref(), dry_run).await?;
        let spec = &tenant.spec.workloads[&release.workload];
        let params = stack_parameters(&release.template, spec.stack_parameters(env), env);
        let mut stack_tags = crate::desired::managed_tags(&tenant.spec.id, env);
        stack_tags.insert(tags::WORKLOAD.into(), release.workload.clone());
        stack_tags.insert(tags::RELEASE.into(), release.digest.clone());
        let name = format!("tenantry-{}-{}", short(&release.digest), &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let source = cfn::template_source(session, &release.template).await?;
        let request = cfn::ChangeSetRequest {
            stack: &stack,
            name: &name,
            creates_stack: creates,
            template: &source,
            parameters: &params,
            tags: &stack_tags,
        };
        let preview = match cfn::create_change_set(&session.cfn, &request, self.wait()).await {
            Ok(p) => p,
            Err(e) => {
                if matches!(e, cfn::StackError::Interrupted(_)) {
                    // Stopped while it was being made ready: it is never executed, so it goes
                    // (with the empty stack a CREATE change set made; its wait ends at once).
                    if let Err(left) = self.discard_named(session, &stack, &name, creates).await {
                        tracing::warn!(%env, stack, change_set = name, "could not remove the change set: {left:#}");
                    }
                }
                return Err(e.into());
            }
        };
        if let Some(why) = &preview.failed {
            if let Err(e) = self.discard(session, &stack, &preview).await {
                tracing::warn!(%env, stack, change_set = preview.name, "could not remove the failed change set: {e:#}");
            }
            refuse!("{env}: {why}");
        }
        Ok((preview, previous))
    }

    /// Makes a workload's stack ready for a change set: a stack that never got created
    /// (`ROLLBACK_COMPLETE`) or that an earlier attempt left empty (`REVIEW_IN_PROGRESS`) is
    /// deleted, as an operator would (never in a dry run); a failed or busy stack is refused.
    /// Returns whether the change set creates the stack.
    async fn prepare_stack(
        &self,
        session: &MemberSession,
        stack: &str,
        env: Environment,
        current: Option<&ObservedStack>,
        dry_run: bool,
    ) -> Result<bool> {
        if let Some(s) = current {
            match &s.status {
                // Never created, nothing left in it: CloudFormation cannot update it; it is
                // deleted and created again, as an operator would (never in a dry run).
                StackStatus::RollbackComplete if dry_run => refuse!(
                    "stack {stack} in {env} is ROLLBACK_COMPLETE (its creation failed): a promotion deletes it and creates it again; the dry run stops here"
                ),
                StackStatus::RollbackComplete => cfn::delete(&session.cfn, stack, self.wait()).await?,
                // An empty stack an earlier attempt created for review and never executed (a
                // stopped or killed run): it never ran anything; deleted, with its change sets,
                // and created afresh (never in a dry run).
                StackStatus::ReviewInProgress if dry_run => refuse!(
                    "stack {stack} in {env} is REVIEW_IN_PROGRESS (left by an earlier attempt that was never executed): a promotion deletes it first; the dry run stops here"
                ),
                StackStatus::ReviewInProgress => cfn::delete(&session.cfn, stack, self.wait()).await?,
                st if st.needs_replacement() || *st == StackStatus::UpdateRollbackFailed => refuse!(
                    "stack {stack} in {env} is {} and may still hold resources: resolve it (continue the rollback or delete it) before deploying",
                    s.status
                ),
                st if st.is_in_progress() => {
                    refuse!("stack {stack} in {env} is busy ({st}); try again when it settles")
                }
                _ => {}
            }
        }
        Ok(match current {
            None => true,
            Some(s) => s.status.is_empty(),
        })
    }

    /// Removes a change set that will not be executed (`DeleteChangeSet`) and, when it was to
    /// create the stack, the empty stack it left in `REVIEW_IN_PROGRESS` (`DeleteStack`, waiting
    /// at most `stack_timeout_seconds`), so that nothing of an attempt stays behind.
    async fn discard(&self, session: &MemberSession, stack: &str, preview: &cfn::ChangeSetPreview) -> Result<()> {
        self.discard_named(session, stack, &preview.name, preview.creates_stack).await
    }

    /// [`Promoter::discard`] by the change set's name, and whether it was to create the stack.
    async fn discard_named(&self, session: &MemberSession, stack: &str, name: &str, creates: bool) -> Result<()> {
        cfn::delete_change_set(&session.cfn, stack, name).await?;
        if creates
            && cfn::describe(&session.cfn, stack).await?.is_some_and(|s| s.status == StackStatus::ReviewInProgress)
        {
            cfn::delete(&session.cfn, stack, self.wait()).await?;
        }
        Ok(())
    }

    /// Evidence for a tenant's releases: `evidence` records of the ledger, and JSON objects under
    /// `verdicts/` in the staging evidence bucket (the agent pipeline's `EvidenceBucketName`
    /// output) read by [`super::verdict`]: `verdicts/<digest>/<check>.json`, the check and
    /// release taken from the key, timed by the object's `LastModified`.
    pub async fn evidence(&self, ledger: &[LedgerRecord], staging: &MemberSession) -> Result<Vec<Evidence>> {
        let mut out: Vec<Evidence> = ledger
            .iter()
            .enumerate()
            .filter(|(_, r)| r.kind == LedgerKind::Evidence)
            .map(|(seq, r)| Evidence {
                seq: Some(seq),
                check: r.detail["check"].as_str().unwrap_or_default().into(),
                release: r.release.clone(),
                pass: r.detail["result"] == "pass",
                at: if r.stored_at.is_empty() { r.at.clone() } else { r.stored_at.clone() },
                url: r.detail["url"].as_str().map(str::to_string),
                note: r.detail["note"].as_str().map(str::to_string),
                source: format!("ledger, {}", r.by),
            })
            .collect();
        let outputs = cfn::outputs(&staging.cfn, "tenantry-agent-pipeline").await?;
        let Some(bucket) = outputs.get("EvidenceBucketName") else { return Ok(out) };
        for obj in crate::aws::s3::objects_under(&staging.s3, bucket, "verdicts/").await? {
            let key = &obj.key;
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&obj.bytes) else {
                tracing::warn!(bucket, key, "evidence object is not JSON; ignored");
                continue;
            };
            // Ordered by when S3 received it, never by a time the object claims.
            match super::verdict(key, &v, obj.last_modified.clone(), format!("s3://{bucket}/{key}")) {
                Ok(e) => out.push(e),
                Err(why) => tracing::warn!(bucket, key, "verdict ignored: {why}"),
            }
        }
        Ok(out)
    }

    /// `tenantry evidence`: records a check result for a release.
    pub async fn record_evidence(
        &self,
        tenant: &Tenant,
        release: &str,
        check: &str,
        pass: bool,
        url: Option<&str>,
        note: Option<&str>,
    ) -> Result<LedgerRecord> {
        let digest = self.ctx.store.resolve_release(&tenant.spec.id, release).await?;
        let artifact = self.ctx.store.release(&tenant.spec.id, &digest).await?;
        if !tenant.spec.promotion.required_checks.iter().any(|c| c == check) {
            tracing::warn!(
                tenant = %tenant.spec.id,
                "check `{check}` is not among the promotion policy's required checks ({}); it is recorded but no gate reads it",
                tenant.spec.promotion.required_checks.join(", ")
            );
        }
        self.append(
            &tenant.spec.id,
            LedgerKind::Evidence,
            Some(&artifact.workload),
            &digest,
            serde_json::json!({ "check": check, "result": if pass { "pass" } else { "fail" }, "url": url, "note": note }),
        )
        .await
    }

    /// `tenantry approve`: records an approval of a release for production, with the production
    /// stack parameters the tenant file gives now (a later change of them needs a new approval).
    pub async fn approve(&self, tenant: &Tenant, release: &str) -> Result<LedgerRecord> {
        let digest = self.ctx.store.resolve_release(&tenant.spec.id, release).await?;
        let artifact = self.ctx.store.release(&tenant.spec.id, &digest).await?;
        let params = self.production_parameters(tenant, &artifact);
        self.append(
            &tenant.spec.id,
            LedgerKind::Approval,
            Some(&artifact.workload),
            &digest,
            serde_json::json!({ "via": "tenantry approve", "production_parameters": params }),
        )
        .await
    }

    /// The production stack parameters of a release's workload, as the tenant file gives them.
    fn production_parameters(&self, tenant: &Tenant, release: &Release) -> BTreeMap<String, String> {
        let given = tenant.spec.workloads.get(&release.workload).map(|w| w.production.clone()).unwrap_or_default();
        stack_parameters(&release.template, &given, Environment::Production)
    }

    /// The release to look at: the given one, else the workload's latest staged release.
    async fn pick(
        &self,
        tenant: &Tenant,
        workload: &str,
        release: Option<&str>,
        ledger: &[LedgerRecord],
    ) -> Result<String> {
        match release {
            Some(r) => Ok(self.ctx.store.resolve_release(&tenant.spec.id, r).await?),
            None => ledger
                .iter()
                .rev()
                .find(|r| r.kind == LedgerKind::Staged && r.workload.as_deref() == Some(workload))
                .map(|r| r.release.clone())
                .ok_or_else(|| {
                    Error::Refused(format!(
                        "workload {workload} of {} was never staged: run `tenantry stage {}`",
                        tenant.spec.id, tenant.spec.id
                    ))
                }),
        }
    }

    /// `tenantry converged`: every gate of a workload's release, and what production runs (read
    /// from its stack; a ledger that disagrees is reported, nothing is written).
    pub async fn converged(
        &self,
        tenant: &Tenant,
        desired: &DesiredTenant,
        workload: &str,
        release: Option<&str>,
    ) -> Result<Convergence> {
        let mut ledger = self.ctx.store.ledger(&tenant.spec.id).await?;
        let digest = self.pick(tenant, workload, release, &ledger).await?;
        let production = self.session(tenant, Environment::Production).await?;
        let truth = self.production_truth(&tenant.spec.id, workload, &production, &mut ledger, false).await?;
        self.gates_of(tenant, desired, workload, &digest, &ledger, &production, truth).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn gates_of(
        &self,
        tenant: &Tenant,
        desired: &DesiredTenant,
        workload: &str,
        digest: &str,
        ledger: &[LedgerRecord],
        production: &MemberSession,
        truth: LedgerTruth,
    ) -> Result<Convergence> {
        let digest = digest.to_string();
        let artifact = self.ctx.store.release(&tenant.spec.id, &digest).await?;
        let staging = self.session(tenant, Environment::Staging).await?;
        let stack = workload_stack(workload);
        let staging_stack = match cfn::describe(&staging.cfn, &stack).await? {
            Some(s) if s.status != StackStatus::ReviewInProgress => {
                let body = cfn::template_body(&staging.cfn, &stack).await?;
                let (in_sync, drifted) = if s.status.is_complete() {
                    match cfn::detect_drift(&staging.cfn, &stack, self.wait().timeout.min(Duration::from_secs(600)))
                        .await?
                    {
                        ResourceDrift::InSync => (Ok(true), Vec::new()),
                        ResourceDrift::Drifted(list) => {
                            (Ok(false), list.iter().map(|d| format!("{} {}", d.logical_id, d.status)).collect())
                        }
                        ResourceDrift::Unsupported(why) => (Err(why), Vec::new()),
                        ResourceDrift::NotChecked => (Err("not checked".to_string()), Vec::new()),
                    }
                } else {
                    (Err(format!("the stack is {}", s.status)), Vec::new())
                };
                let template_matches = body.as_deref() == Some(artifact.template.as_str());
                // Say what staging runs instead, read from its template (never from its tag).
                let release = if template_matches {
                    None
                } else {
                    Some(self.running(&staging, &tenant.spec.id, workload, ledger, None).await?.describe())
                };
                Some(StagingStack { status: s.status.clone(), release, template_matches, in_sync, drifted })
            }
            _ => None,
        };
        let evidence = self.evidence(ledger, &staging).await?;
        let mut baseline = BTreeMap::new();
        for (env, session) in [(Environment::Production, production), (Environment::Staging, &staging)] {
            if let Some(want) = desired.account(env).stacks.iter().find(|s| s.blueprint == "baseline") {
                let running = cfn::describe(&session.cfn, &want.stack_name).await?.and_then(|s| s.version);
                baseline.insert(env.to_string(), (running, want.version.clone()));
            }
        }
        // Both ends of the soak on the state bucket's clock: when it stored the `staged` record,
        // and now as it tells (never a writer's or this host's clock).
        let staged_at = ledger
            .iter()
            .rev()
            .find(|r| r.kind == LedgerKind::Staged && r.release == digest)
            .map(|r| r.stored_at.clone())
            .filter(|at| !at.is_empty());
        let now = self.ctx.store.now().await?;
        let g = gates(&GateInputs {
            digest: &digest,
            staged_at: staged_at.as_deref(),
            staging: staging_stack,
            evidence: &evidence,
            policy: &tenant.spec.promotion,
            now: &now,
            baseline,
        });
        Ok(Convergence {
            tenant: tenant.spec.id.clone(),
            workload: workload.into(),
            release: digest,
            converged: g.iter().all(|g| g.pass),
            gates: g,
            production: truth,
        })
    }

    /// `tenantry promote` for one workload: gates, the stored artifact verified, a production
    /// change set previewed and classified, approval, execution, ledger. The ledger is read once.
    pub async fn promote(
        &self,
        tenant: &Tenant,
        desired: &DesiredTenant,
        workload: &str,
        release: Option<&str>,
        dry_run: bool,
        approve: bool,
    ) -> Result<Promotion> {
        crate::shutdown::check(format!("promoting workload {workload} of {}", tenant.spec.id))?;
        let mut ledger = self.ctx.store.ledger(&tenant.spec.id).await?;
        let prod = self.session(tenant, Environment::Production).await?;
        self.refuse_quarantined(tenant, &prod).await?;
        let truth = self.production_truth(&tenant.spec.id, workload, &prod, &mut ledger, !dry_run).await?;
        let never_staged = release.is_none()
            && !ledger.iter().any(|r| r.kind == LedgerKind::Staged && r.workload.as_deref() == Some(workload));
        if never_staged {
            let mut p = Promotion::new(&tenant.spec.id, workload, "").with_truth(&truth, !dry_run);
            p.gates = vec![Gate {
                gate: "staged".into(),
                pass: false,
                detail: format!("workload {workload} was never staged: run `tenantry stage {}`", tenant.spec.id),
            }];
            p.error = Some("nothing to promote: no staged release".into());
            return Ok(p);
        }
        let digest = self.pick(tenant, workload, release, &ledger).await?;
        let conv = self.gates_of(tenant, desired, workload, &digest, &ledger, &prod, truth.clone()).await?;
        let mut p = Promotion::new(&tenant.spec.id, workload, &conv.release).with_truth(&truth, !dry_run);
        p.gates = conv.gates;
        if !conv.converged {
            p.status = PromotionStatus::Refused;
            let failing: Vec<String> =
                p.gates.iter().filter(|g| !g.pass).map(|g| format!("{}: {}", g.gate, g.detail)).collect();
            p.error = Some(format!("release {} is not converged: {}", short(&p.release), failing.join("; ")));
            return Ok(p);
        }
        let history: Vec<&LedgerRecord> = ledger.iter().filter(|r| r.workload.as_deref() == Some(workload)).collect();
        self.to_production(tenant, &prod, p, &history, dry_run, approve, LedgerKind::Promoted).await
    }

    /// `tenantry rollback`: promotes the release promoted before the one production runs
    /// (promotions form a stack; rollbacks never go forward). What production runs is read from
    /// its stack first, and the ledger is made to tell it (see [`Promoter::production_truth`]);
    /// a production stack that runs no stored release is refused. The convergence gates are not
    /// run again (production ran that release before), but a required check whose latest result
    /// for it is a failure refuses the rollback. Preview, risk and approval are as for a
    /// promotion.
    pub async fn rollback(&self, tenant: &Tenant, workload: &str, dry_run: bool, approve: bool) -> Result<Promotion> {
        crate::shutdown::check(format!("rolling back workload {workload} of {}", tenant.spec.id))?;
        let mut ledger = self.ctx.store.ledger(&tenant.spec.id).await?;
        let prod = self.session(tenant, Environment::Production).await?;
        self.refuse_quarantined(tenant, &prod).await?;
        let truth = self.production_truth(&tenant.spec.id, workload, &prod, &mut ledger, !dry_run).await?;
        let history: Vec<&LedgerRecord> = ledger.iter().filter(|r| r.workload.as_deref() == Some(workload)).collect();
        let Some(target) = rollback_target(&history) else {
            let mut p = Promotion::new(&tenant.spec.id, workload, "").with_truth(&truth, !dry_run);
            p.rollback = true;
            p.error = Some(format!(
                "workload {workload} of {} has no earlier promoted release to go back to",
                tenant.spec.id
            ));
            return Ok(p);
        };
        let mut p = Promotion::new(&tenant.spec.id, workload, &target).with_truth(&truth, !dry_run);
        p.rollback = true;
        if truth.running.release().is_none() {
            p.status = PromotionStatus::Refused;
            p.error = Some(format!(
                "production runs {}: a rollback goes back from a release production runs; promote a release instead",
                truth.running.describe()
            ));
            return Ok(p);
        }
        let staging = self.session(tenant, Environment::Staging).await?;
        let evidence = self.evidence(&ledger, &staging).await?;
        for check in &tenant.spec.promotion.required_checks {
            let failed = super::latest_result(&evidence, check, &target).is_some_and(|e| !e.pass);
            p.gates.push(Gate {
                gate: format!("check:{check}"),
                pass: !failed,
                detail: if failed {
                    format!("its latest result for release {} is a failure", short(&target))
                } else {
                    "no failing result".into()
                },
            });
        }
        if p.gates.iter().any(|g| !g.pass) {
            p.status = PromotionStatus::Refused;
            p.error = Some(format!(
                "release {} has a failing check since it was promoted; promote a fixed release instead",
                short(&target)
            ));
            return Ok(p);
        }
        self.to_production(tenant, &prod, p, &history, dry_run, approve, LedgerKind::RolledBack).await
    }

    /// Previews, classifies, approves, executes and records a change of production to
    /// `p.release`. An `executing` record is appended before `ExecuteChangeSet` and the outcome
    /// record names it, so a run that dies in between leaves an intent the next run resolves from
    /// what production runs. `p.previous_release` is what the production stack runs (read by
    /// the caller, never taken from the ledger).
    #[allow(clippy::too_many_arguments)]
    async fn to_production(
        &self,
        tenant: &Tenant,
        prod: &MemberSession,
        mut p: Promotion,
        history: &[&LedgerRecord],
        dry_run: bool,
        approve: bool,
        kind: LedgerKind,
    ) -> Result<Promotion> {
        crate::shutdown::check(format!("production: change set for release {}", short(&p.release)))?;
        if let Some(Running::Busy { stack_status }) = p.running() {
            refuse!(
                "the production stack {} is busy ({stack_status}); try again when it settles",
                workload_stack(&p.workload)
            );
        }
        let artifact = self.ctx.store.release(&tenant.spec.id, &p.release).await?;
        let stack = workload_stack(&p.workload);
        let (preview, _) = self.preview(prod, tenant, &artifact, Environment::Production, dry_run).await?;
        let previous = p.previous_release.clone();
        p.changes = preview.changes.clone();
        if !preview.executable {
            self.discard(prod, &stack, &preview).await?;
            if previous.as_deref() == Some(p.release.as_str()) {
                p.status = if dry_run { PromotionStatus::DryRun } else { PromotionStatus::Unchanged };
            } else {
                // Never a record of a change that was not made: production keeps what it runs.
                p.status = PromotionStatus::Refused;
                p.error = Some(format!(
                    "CloudFormation found nothing to change, but production runs {}, not release {}: nothing was executed or recorded",
                    p.running().map(Running::describe).unwrap_or_else(|| "nothing".into()),
                    short(&p.release)
                ));
            }
            return Ok(p);
        }
        let (risk, reasons) = risk_of(tenant, p.running(), history, &preview.changes);
        p.risk = Some(risk);
        p.risk_reasons = reasons;
        if dry_run {
            self.discard(prod, &stack, &preview).await?;
            p.status = PromotionStatus::DryRun;
            return Ok(p);
        }
        let needs_approval = risk == Risk::High || tenant.spec.promotion.approval == Approval::Manual;
        let prod_params = self.production_parameters(tenant, &artifact);
        let approved_before = super::approved(history, &p.release, &prod_params);
        if needs_approval && !approve && !approved_before {
            self.discard(prod, &stack, &preview).await?;
            p.status = PromotionStatus::NeedsApproval;
            p.error = Some(format!(
                "{} needs approval ({}): re-run with --approve, or run `tenantry approve {} {}`",
                short(&p.release),
                if risk == Risk::High { "high risk" } else { "the tenant's promotion policy is manual" },
                tenant.spec.id,
                short(&p.release)
            ));
            return Ok(p);
        }
        if approve && needs_approval && !approved_before {
            self.append(
                &tenant.spec.id,
                LedgerKind::Approval,
                Some(&p.workload),
                &p.release,
                serde_json::json!({ "via": "--approve", "from": previous, "production_parameters": prod_params }),
            )
            .await?;
        }
        self.execute(tenant, prod, p, &preview, kind, needs_approval).await
    }

    /// Carries out an approved production change set: the `executing` intent, a last look at the
    /// stop signal and the lease, `ExecuteChangeSet`, and the outcome record that names the
    /// intent (or, when the outcome is not known yet, an intent left open for the next run).
    async fn execute(
        &self,
        tenant: &Tenant,
        prod: &MemberSession,
        mut p: Promotion,
        preview: &cfn::ChangeSetPreview,
        kind: LedgerKind,
        needs_approval: bool,
    ) -> Result<Promotion> {
        let stack = workload_stack(&p.workload);
        let previous = p.previous_release.clone();
        if let Err(stopped) = crate::shutdown::check(format!("production: executing change set {}", preview.name)) {
            self.discard(prod, &stack, preview).await?;
            return Err(stopped.into());
        }
        let intent = self
            .append(
                &tenant.spec.id,
                LedgerKind::Executing,
                Some(&p.workload),
                &p.release,
                serde_json::json!({ "as": kind, "change_set": preview.name, "stack": stack, "previous_release": previous }),
            )
            .await?;
        // The last boundary, right before the change: a stop or a lost lease since the intent was
        // written means it is never executed, and the intent is answered at once.
        let last_look = crate::shutdown::check(format!("production: executing change set {}", preview.name))
            .map_err(Error::from)
            .and_then(|()| self.lease_held(&tenant.spec.id));
        if let Err(why) = last_look {
            self.discard(prod, &stack, preview).await?;
            self.append(
                &tenant.spec.id,
                LedgerKind::PromotionFailed,
                Some(&p.workload),
                &p.release,
                serde_json::json!({ "intent": intent.id, "previous_release": previous, "error": format!("{why:#}"), "note": "not executed" }),
            )
            .await?;
            return Err(why);
        }
        // The outcome record of a change that was made.
        let done = serde_json::json!({
            "intent": intent.id,
            "previous_release": previous,
            "previous_running": p.running(),
            "changes": p.changes,
            "risk": p.risk,
            "risk_reasons": p.risk_reasons,
            "approved": needs_approval,
            "gates": p.gates,
        });
        match cfn::execute_change_set(&prod.cfn, &stack, &preview.name, preview.creates_stack, self.wait()).await {
            Ok(_) => {
                p.status = PromotionStatus::Promoted;
                self.append(&tenant.spec.id, kind, Some(&p.workload), &p.release, done).await?;
            }
            Err(e @ cfn::StackError::Interrupted(_)) => {
                self.after_interrupted(tenant, prod, &mut p, preview, kind, done, e.into()).await?
            }
            Err(e) => self.after_failure(tenant, prod, &mut p, preview, &intent, e.into()).await?,
        }
        Ok(p)
    }

    /// After a stop cut the wait for a production change set short: what happened is what
    /// production shows. Done: recorded. Not done yet (or not readable now): the intent stays
    /// open and the next promotion or rollback records the outcome from the stack.
    #[allow(clippy::too_many_arguments)]
    async fn after_interrupted(
        &self,
        tenant: &Tenant,
        prod: &MemberSession,
        p: &mut Promotion,
        preview: &cfn::ChangeSetPreview,
        kind: LedgerKind,
        done: serde_json::Value,
        e: Error,
    ) -> Result<()> {
        // A stop cut the wait short: what happened is what production shows.
        match self.running(prod, &tenant.spec.id, &p.workload, &[], Some(&p.release)).await {
            Ok(Running::Release { release, stack_status }) if release == p.release => {
                p.status = PromotionStatus::Promoted;
                p.stack_status = Some(stack_status);
                let mut done = done;
                done["note"] = "the wait was ended by a stop signal; the stack shows the change made".into();
                self.append(&tenant.spec.id, kind, Some(&p.workload), &p.release, done).await?;
            }
            seen => {
                // Not done yet (or not readable now): the intent stays open and the next
                // promotion or rollback records the outcome from the stack.
                p.status = PromotionStatus::Failed;
                p.stack_status = seen.as_ref().ok().and_then(Running::stack_status).cloned();
                p.error = Some(format!(
                    "{e:#}; production runs {}: the outcome of change set {} is recorded by the next `tenantry promote` or `rollback`",
                    seen.as_ref().map(Running::describe).unwrap_or_else(|e| format!("(not readable: {e:#})")),
                    preview.name
                ));
            }
        }
        Ok(())
    }

    /// After a production change set failed: records `promotion_failed` with what production
    /// is left with, as CloudFormation reports it; a change set never carried out is removed;
    /// one still in progress leaves its intent open for the next run.
    async fn after_failure(
        &self,
        tenant: &Tenant,
        prod: &MemberSession,
        p: &mut Promotion,
        preview: &cfn::ChangeSetPreview,
        intent: &LedgerRecord,
        e: Error,
    ) -> Result<()> {
        let stack = workload_stack(&p.workload);
        let previous = p.previous_release.clone();
        p.status = PromotionStatus::Failed;
        // Say what production is left with, as CloudFormation reports it.
        let after = cfn::describe(&prod.cfn, &stack).await.ok().flatten().map(|s| s.status);
        p.stack_status = after.clone();
        p.error = Some(format!("{e:#}"));
        if after == Some(StackStatus::ReviewInProgress) {
            // The change set was never carried out (its stack was only ever reviewed):
            // nothing changed in production. Nothing of the attempt is left behind.
            if let Err(e) = self.discard(prod, &stack, preview).await {
                tracing::warn!(
                    stack,
                    change_set = preview.name,
                    "could not remove the change set that was not carried out: {e:#}"
                );
            }
            p.stack_status = cfn::describe(&prod.cfn, &stack).await.ok().flatten().map(|s| s.status);
        } else if after.as_ref().is_some_and(StackStatus::is_in_progress) {
            // Still going on in CloudFormation (a stop, or the wait timed out): its
            // outcome is not known yet. The intent stays open; the next promotion or
            // rollback records what production ends up running.
            p.error = Some(format!(
                "{e:#}; the production stack is still {}: its outcome is recorded by the next `tenantry promote` or `rollback` once it settles",
                after.as_ref().map(StackStatus::as_str).unwrap_or_default()
            ));
            return Ok(());
        }
        self.append(
            &tenant.spec.id,
            LedgerKind::PromotionFailed,
            Some(&p.workload),
            &p.release,
            serde_json::json!({ "intent": intent.id, "previous_release": previous, "error": p.error, "stack_status": after }),
        )
        .await?;
        Ok(())
    }
}

/// The risk of a production change: the change set's ([`classify`]), raised to high when
/// production runs something tenantry did not put there (an unknown template, or a stored
/// release no `executing` record names): overwriting that is never routine.
fn risk_of(
    tenant: &Tenant,
    running: Option<&Running>,
    history: &[&LedgerRecord],
    changes: &[ResourceChange],
) -> (Risk, Vec<String>) {
    let (mut risk, mut reasons) = classify(changes, &tenant.spec.promotion);
    if let Some(Running::Unknown { .. }) = running {
        // Someone changed production outside tenantry: overwriting that is never routine.
        risk = Risk::High;
        reasons.push(format!(
            "production runs {}: this change overwrites it",
            running.map(Running::describe).unwrap_or_default()
        ));
    } else if let Some(r) = history
        .iter()
        .rev()
        .find(|r| matches!(r.kind, LedgerKind::Promoted | LedgerKind::RolledBack))
        .filter(|r| r.detail["recovered"] == true && r.detail["intent"].is_null())
    {
        // Production's last change was to a stored release that no `executing` record of
        // tenantry names: a deploy outside tenantry (or records lost); overwriting it is not
        // routine either.
        risk = Risk::High;
        reasons.push(format!("production runs release {} without a record of tenantry executing it (changed outside tenantry, or records lost): this change overwrites it", short(&r.release)));
    }
    (risk, reasons)
}

/// The workloads to work on: the one named, else all of the tenant's.
pub fn workloads(tenant: &Tenant, only: Option<&str>) -> Result<Vec<String>> {
    match only {
        Some(w) if tenant.spec.workloads.contains_key(w) => Ok(vec![w.to_string()]),
        Some(w) => refuse!(
            "tenant {} has no workload `{w}` (it has: {})",
            tenant.spec.id,
            tenant.spec.workloads.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
        None if tenant.spec.workloads.is_empty() => {
            refuse!("tenant {} declares no workloads ([workloads.<name>] in {})", tenant.spec.id, tenant.path.display())
        }
        None => Ok(tenant.spec.workloads.keys().cloned().collect()),
    }
}

/// The stack parameters of an environment: the tenant file's, and `Environment` set to the
/// environment's name when the template declares it, whatever the file says (`validate` refuses
/// a file that sets it: a production stack must never be told it is staging).
pub fn stack_parameters(
    template: &str,
    given: &BTreeMap<String, String>,
    env: Environment,
) -> BTreeMap<String, String> {
    let mut out = given.clone();
    out.remove(crate::params::STACK_ENVIRONMENT);
    let declares_env = serde_json::from_str::<serde_json::Value>(template)
        .ok()
        .is_some_and(|t| t["Parameters"].get(crate::params::STACK_ENVIRONMENT).is_some());
    if declares_env {
        out.insert(crate::params::STACK_ENVIRONMENT.into(), env.to_string());
    }
    out
}

/// Orders tenants into promotion waves: the canaries first (one wave), then the others in
/// waves of `wave_size`, in the given order.
pub fn waves<'a>(tenants: &[&'a Tenant], canaries: &[String], wave_size: usize) -> Vec<Vec<&'a Tenant>> {
    let mut out = Vec::new();
    let first: Vec<&Tenant> = tenants.iter().copied().filter(|t| canaries.contains(&t.spec.id)).collect();
    if !first.is_empty() {
        out.push(first);
    }
    let rest: Vec<&Tenant> = tenants.iter().copied().filter(|t| !canaries.contains(&t.spec.id)).collect();
    for chunk in rest.chunks(wave_size.max(1)) {
        out.push(chunk.to_vec());
    }
    out
}
