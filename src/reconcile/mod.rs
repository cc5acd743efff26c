//! Drift reconciliation: compares every tenant's live accounts with its tenant file and reports
//! each difference with what was expected, what was found, its severity and the fix. The report
//! is built here from plain data (pure); `cli` runs the observation and remediation through
//! [`crate::apply::Engine::run_tenant`] (see `run.rs`) and stores the report in the state bucket.

pub mod run;

use std::collections::BTreeSet;

use serde::Serialize;

use crate::desired::DesiredTenant;
use crate::observe::{AccountObservation, AccountSummary, ObservedAccount, ObservedTenant, ResourceDrift};
use crate::plan::{Change, ManualChange, Refusal, RefusalKind, Step, TenantPlan};
use crate::tenant::{tags, Environment};

/// Version of the report document; bumped on any incompatible change.
pub const REPORT_SCHEMA: &str = "tenantry.reconcile/v1";

/// How serious a drift item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The tenant's isolation or an account itself is at stake.
    Critical,
    /// A guardrail (OU, SCP, stack) is missing or changed.
    High,
    /// Metadata or versions differ.
    Medium,
    /// Leftovers that do no harm.
    Low,
}

/// What kind of difference a [`DriftItem`] is; in JSON its stable snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// No account for the environment.
    AccountMissing,
    /// The account is not in its OU.
    AccountMoved,
    /// A tag has another value.
    TagChanged,
    /// A tag is missing.
    TagMissing,
    /// A tag tenantry set is no longer in the file.
    TagUnexpected,
    /// An SCP does not exist.
    ScpMissing,
    /// An SCP's content differs.
    ScpModified,
    /// An SCP is not attached.
    ScpDetached,
    /// A tenantry SCP the account does not need is attached (or recorded and left over).
    ScpUnexpected,
    /// Another tenant's or environment's SCP is attached.
    ScpOtherTenant,
    /// A stack does not exist.
    StackMissing,
    /// A stack runs an older version.
    StackOutdated,
    /// A stack's template or resources changed out of band.
    StackModified,
    /// A stack is in a failed state.
    StackFailed,
    /// A stack tenantry deployed is no longer in the file.
    StackUnexpected,
    /// The account was refused by the blast-radius guard.
    AccountRefused,
    /// The account is not ACTIVE.
    AccountNotActive,
    /// The account is still being created.
    AccountCreating,
    /// An SCP tenantry did not make is attached.
    ScpForeign,
    /// Another operation is running on a stack.
    StackBusy,
    /// The state bucket does not record the account.
    StateMissing,
    /// The root email differs from the file.
    AccountEmailDiffers,
    /// The account name differs from the file.
    AccountNameDiffers,
}

impl DriftKind {
    /// The stable snake_case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftKind::AccountMissing => "account_missing",
            DriftKind::AccountMoved => "account_moved",
            DriftKind::TagChanged => "tag_changed",
            DriftKind::TagMissing => "tag_missing",
            DriftKind::TagUnexpected => "tag_unexpected",
            DriftKind::ScpMissing => "scp_missing",
            DriftKind::ScpModified => "scp_modified",
            DriftKind::ScpDetached => "scp_detached",
            DriftKind::ScpUnexpected => "scp_unexpected",
            DriftKind::ScpOtherTenant => "scp_other_tenant",
            DriftKind::StackMissing => "stack_missing",
            DriftKind::StackOutdated => "stack_outdated",
            DriftKind::StackModified => "stack_modified",
            DriftKind::StackFailed => "stack_failed",
            DriftKind::StackUnexpected => "stack_unexpected",
            DriftKind::AccountRefused => "account_refused",
            DriftKind::AccountNotActive => "account_not_active",
            DriftKind::AccountCreating => "account_creating",
            DriftKind::ScpForeign => "scp_foreign",
            DriftKind::StackBusy => "stack_busy",
            DriftKind::StateMissing => "state_missing",
            DriftKind::AccountEmailDiffers => "account_email_differs",
            DriftKind::AccountNameDiffers => "account_name_differs",
        }
    }
}

impl std::fmt::Display for DriftKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One difference between a tenant file and its live accounts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftItem {
    /// Environment concerned (none for tenant-wide items).
    pub environment: Option<Environment>,
    /// What kind of difference.
    pub kind: DriftKind,
    /// What it is about: `account 123456789012`, `stack tenantry-baseline`, ...
    pub resource: String,
    /// What the tenant file wants.
    pub expected: String,
    /// What is there.
    pub found: String,
    /// How serious it is.
    pub severity: Severity,
    /// What `--remediate` does about it, or why it cannot.
    pub action: String,
    /// Whether `--remediate` can fix it.
    pub remediable: bool,
}

/// A check that could not run; never counted as in sync.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckNotRun {
    /// Environment.
    pub environment: Environment,
    /// `resource_drift`.
    pub check: String,
    /// The stack it concerns.
    pub stack: String,
    /// Why, e.g. "DetectStackDrift is not supported by this endpoint".
    pub reason: String,
}

/// Drift state of one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    /// Every check ran and everything matches.
    InSync,
    /// Nothing differs, but some checks could not run (see `checks_not_run`): not "in sync".
    NoDriftFound,
    /// At least one drift item.
    Drift,
    /// The tenant could not be observed (or remediation failed).
    Error,
    /// Another process holds the tenant's lease; not checked this time.
    Skipped,
}

/// What remediation did for a tenant.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Remediation {
    /// Report only (the tenant's `drift = "report"`, or `--report-only`).
    NotRequested,
    /// Nothing to fix.
    NothingToDo,
    /// These steps were carried out.
    Applied {
        /// The steps.
        steps: Vec<Step>,
    },
    /// Refused or failed; the items stay.
    Failed {
        /// Why.
        reason: String,
    },
}

/// One tenant's part of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantReport {
    /// Tenant id.
    pub tenant: String,
    /// Overall state.
    pub status: TenantStatus,
    /// Differences found.
    pub items: Vec<DriftItem>,
    /// Checks that could not run.
    pub checks_not_run: Vec<CheckNotRun>,
    /// What remediation did.
    pub remediation: Remediation,
    /// The error, for status `error` or `skipped`.
    pub error: Option<String>,
}

/// An account tagged as a tenant's that no tenant file accounts for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Orphan {
    /// Account id.
    pub account_id: String,
    /// Account name.
    pub name: String,
    /// Root email.
    pub email: String,
    /// ACTIVE, SUSPENDED, ...
    pub status: String,
    /// Its `tenantry:tenant` tag.
    pub tenant_tag: String,
    /// Its `tenantry:environment` tag.
    pub environment_tag: Option<String>,
    /// Why it is an orphan, and what to do (tenantry never deletes accounts).
    pub reason: String,
}

/// Counts for the summary line.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Tenants reconciled.
    pub tenants: usize,
    /// Every check ran and nothing differs.
    pub in_sync: usize,
    /// Nothing differs but some checks could not run.
    pub no_drift_found: usize,
    /// With drift.
    pub drifted: usize,
    /// Failed.
    pub errors: usize,
    /// Skipped (lease held elsewhere).
    pub skipped: usize,
    /// Drift items in all.
    pub items: usize,
    /// Checks not run in all.
    pub checks_not_run: usize,
    /// Orphan accounts.
    pub orphans: usize,
}

/// The whole report of one reconcile run: stdout with `--output json`, and
/// `reports/<date>/<time>-<run id>.json` in the state bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// [`REPORT_SCHEMA`].
    pub schema: &'static str,
    /// Unique id of the run.
    pub run_id: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub finished_at: String,
    /// `in_sync`, `no_drift_found` (some checks could not run), `drift` or `error` (the worst
    /// tenant status; orphans count as drift).
    pub status: TenantStatus,
    /// Counts.
    pub summary: Summary,
    /// Per tenant, sorted by id.
    pub tenants: Vec<TenantReport>,
    /// Orphan accounts (only when every tenant was reconciled).
    pub orphans: Vec<Orphan>,
    /// Where the report was stored, if it was.
    pub stored_at: Option<String>,
    /// Why the report could not be stored in the state bucket: the run then exits 1, as a run
    /// whose record is lost must not pass for a clean one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_error: Option<String>,
    /// AWS requests this process made (one-shot runs with `--output json`; not in stored reports).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_calls: Option<crate::metrics::ApiCalls>,
}

impl Report {
    /// Assembles a report and computes its status and summary.
    pub fn new(
        run_id: String,
        started_at: String,
        finished_at: String,
        mut tenants: Vec<TenantReport>,
        orphans: Vec<Orphan>,
    ) -> Report {
        tenants.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        let count = |s: TenantStatus| tenants.iter().filter(|t| t.status == s).count();
        let summary = Summary {
            tenants: tenants.len(),
            in_sync: count(TenantStatus::InSync),
            no_drift_found: count(TenantStatus::NoDriftFound),
            drifted: count(TenantStatus::Drift),
            errors: count(TenantStatus::Error),
            skipped: count(TenantStatus::Skipped),
            items: tenants.iter().map(|t| t.items.len()).sum(),
            checks_not_run: tenants.iter().map(|t| t.checks_not_run.len()).sum(),
            orphans: orphans.len(),
        };
        let status = if summary.errors > 0 {
            TenantStatus::Error
        } else if summary.drifted > 0 || summary.orphans > 0 {
            TenantStatus::Drift
        } else if summary.checks_not_run > 0 || summary.skipped > 0 {
            TenantStatus::NoDriftFound
        } else {
            TenantStatus::InSync
        };
        Report {
            schema: REPORT_SCHEMA,
            run_id,
            started_at,
            finished_at,
            status,
            summary,
            tenants,
            orphans,
            stored_at: None,
            store_error: None,
            api_calls: None,
        }
    }

    /// Exit code: 0 in sync, 2 drift (or orphans), 1 any error.
    pub fn exit_code(&self) -> u8 {
        if self.store_error.is_some() {
            return 1;
        }
        match self.status {
            TenantStatus::InSync | TenantStatus::NoDriftFound | TenantStatus::Skipped => 0,
            TenantStatus::Drift => 2,
            TenantStatus::Error => 1,
        }
    }
}

/// The drift items and checks not run of one tenant, from what was observed and planned.
pub fn assess(
    desired: &DesiredTenant,
    observed: &ObservedTenant,
    plan: &TenantPlan,
) -> (Vec<DriftItem>, Vec<CheckNotRun>) {
    let mut items = Vec::new();
    let mut not_run = Vec::new();
    for (env, obs) in &observed.accounts {
        match obs {
            AccountObservation::Refused { account_id, reason } => items.push(DriftItem {
                environment: Some(*env),
                kind: DriftKind::AccountRefused,
                resource: account(account_id.as_deref()),
                expected: format!(
                    "an account tagged {}={} that state records for this tenant",
                    tags::TENANT,
                    desired.id
                ),
                found: reason.clone(),
                severity: Severity::Critical,
                action: "none: tenantry will not touch this account; investigate".into(),
                remediable: false,
            }),
            AccountObservation::Found(found) => found_items(*env, found, &mut items, &mut not_run),
            AccountObservation::Creating { request_id } => items.push(DriftItem {
                environment: Some(*env),
                kind: DriftKind::AccountCreating,
                resource: format!("create request {request_id}"),
                expected: "an ACTIVE account".into(),
                found: "CreateAccount still in progress".into(),
                severity: Severity::Medium,
                action: "wait for the account, then finish onboarding".into(),
                remediable: true,
            }),
            AccountObservation::Missing => {}
        }
    }
    items.extend(plan.steps.iter().flat_map(item_of));
    items.extend(plan.manual.iter().map(manual_item));
    items.extend(plan.refusals.iter().filter_map(busy_item));
    (items, not_run)
}

/// What an account that was found shows beyond the plan: not ACTIVE, SCPs that are not
/// tenantry's, and stacks whose drift could not be checked.
fn found_items(env: Environment, found: &ObservedAccount, items: &mut Vec<DriftItem>, not_run: &mut Vec<CheckNotRun>) {
    if found.account.status != crate::aws::types::AccountStatus::Active {
        items.push(DriftItem {
            environment: Some(env),
            kind: DriftKind::AccountNotActive,
            resource: account(Some(&found.account.id)),
            expected: "ACTIVE".into(),
            found: found.account.status.to_string(),
            severity: Severity::Critical,
            action: "none: tenantry never reopens, closes or replaces accounts; investigate".into(),
            remediable: false,
        });
    }
    for name in found.attached.values() {
        if !name.starts_with("tenantry-") && name != "FullAWSAccess" {
            items.push(DriftItem {
                environment: Some(env),
                kind: DriftKind::ScpForeign,
                resource: format!("SCP {name}"),
                expected: "only the tenant file's SCPs (and FullAWSAccess) attached to the account".into(),
                found: "attached".into(),
                severity: Severity::Low,
                action: "none: not tenantry's policy; review whether this account should carry it".into(),
                remediable: false,
            });
        }
    }
    for (name, stack) in &found.stacks {
        if let ResourceDrift::Unsupported(reason) = &stack.resource_drift {
            not_run.push(CheckNotRun {
                environment: env,
                check: "resource_drift".into(),
                stack: name.clone(),
                reason: reason.clone(),
            });
        }
    }
}

/// A difference apply does not make (a root email, an account name).
fn manual_item(m: &ManualChange) -> DriftItem {
    let (kind, what) = match m.field {
        crate::plan::AccountField::Email => (DriftKind::AccountEmailDiffers, "root email"),
        crate::plan::AccountField::Name => (DriftKind::AccountNameDiffers, "account name"),
    };
    DriftItem {
        environment: Some(m.environment),
        kind,
        resource: format!("account {} {what}", m.account_id),
        expected: m.wanted.clone(),
        found: m.found.clone(),
        severity: Severity::Medium,
        action: m.action(),
        remediable: false,
    }
}

/// A stack another operation is working on: reported, left alone this time.
fn busy_item(r: &Refusal) -> Option<DriftItem> {
    let RefusalKind::StackBusy { stack, status } = &r.kind else { return None };
    Some(DriftItem {
        environment: r.environment,
        kind: DriftKind::StackBusy,
        resource: format!("stack {stack}"),
        expected: "a complete stack".into(),
        found: format!("{stack} is {status}"),
        severity: Severity::Medium,
        action: "none now: checked again next time".into(),
        remediable: false,
    })
}

fn account(id: Option<&str>) -> String {
    format!("account {}", id.unwrap_or("(unknown)"))
}

/// What one difference is: its kind, the resource, what the file wants, what is there, and how
/// serious it is.
type Difference = (DriftKind, String, String, String, Severity);

/// Drift items of one planned step: one per difference it makes good (one per tag for tag steps).
fn item_of(step: &Step) -> Vec<DriftItem> {
    differences(step)
        .into_iter()
        .map(|(kind, resource, expected, found, severity)| DriftItem {
            environment: Some(step.environment),
            kind,
            resource,
            expected,
            found,
            severity,
            action: step.change.to_string(),
            remediable: true,
        })
        .collect()
}

/// The differences a step makes good.
fn differences(step: &Step) -> Vec<Difference> {
    use DriftKind::*;
    use Severity::*;
    let one = |kind, resource: String, expected: &str, found: &str, severity| {
        vec![(kind, resource, expected.to_string(), found.to_string(), severity)]
    };
    match &step.change {
        Change::CreateAccount { email, .. } => {
            one(AccountMissing, format!("account <{email}>"), "an ACTIVE member account", "no account", Critical)
        }
        Change::RecordAccount { account_id, .. } => one(
            StateMissing,
            account(Some(account_id)),
            "recorded in the state bucket",
            "not recorded (state lost or never written)",
            Medium,
        ),
        Change::MoveAccount { account_id, from_path, from_parent_id, to_ou_path, .. } => {
            let from = match (from_path.as_deref(), from_parent_id.as_deref()) {
                (Some(""), _) | (None, None) => "the root".to_string(),
                (Some(p), _) => format!("OU {p}"),
                (None, Some(id)) => id.to_string(),
            };
            one(AccountMoved, account(account_id.as_deref()), &format!("OU {to_ou_path}"), &from, High)
        }
        Change::TagAccount { account_id, tags, .. } => tags
            .iter()
            .map(|(k, (old, new))| {
                let kind = if old.is_some() { TagChanged } else { TagMissing };
                let severity = if k.starts_with("tenantry:") { High } else { Medium };
                let found = old.clone().unwrap_or_else(|| "(absent)".into());
                (kind, format!("account {account_id} tag {k}"), new.clone(), found, severity)
            })
            .collect(),
        Change::UntagAccount { account_id, tags, .. } => tags
            .iter()
            .map(|(k, v)| (TagUnexpected, format!("account {account_id} tag {k}"), "(absent)".into(), v.clone(), Low))
            .collect(),
        Change::CreatePolicy { name, .. } => {
            one(ScpMissing, format!("SCP {name}"), "exists and is attached", "does not exist", High)
        }
        Change::UpdatePolicy { name, digest, .. } => {
            let expected = format!("content sha256 {}", &digest[..12.min(digest.len())]);
            one(ScpModified, format!("SCP {name}"), &expected, "other content", High)
        }
        Change::AttachPolicy { name, .. } => {
            one(ScpDetached, format!("SCP {name}"), "attached to the account", "not attached", High)
        }
        Change::RemovePolicy { name, attached, replaced_by, .. } => {
            let found = if *attached { "attached" } else { "exists" };
            let expected = match replaced_by {
                Some(new) => format!("replaced by {new} (the document the tenant file renders now)"),
                None => "not attached (the tenant file does not ask for it here)".to_string(),
            };
            one(ScpUnexpected, format!("SCP {name}"), &expected, found, Low)
        }
        Change::DetachForeignPolicy { name, .. } => one(
            ScpOtherTenant,
            format!("SCP {name}"),
            "only this tenant environment's tenantry SCPs attached",
            "attached",
            Critical,
        ),
        Change::CreateStack { .. }
        | Change::UpdateStack { .. }
        | Change::RedeployStack { .. }
        | Change::RecoverStack { .. }
        | Change::RecreateStack { .. }
        | Change::DeleteStack { .. } => stack_difference(step).into_iter().collect(),
        Change::AwaitAccount { .. } => vec![],
    }
}

/// The difference a stack step makes good.
fn stack_difference(step: &Step) -> Option<Difference> {
    use DriftKind::*;
    use Severity::*;
    let one = |kind, resource: String, expected: &str, found: &str, severity| {
        Some((kind, resource, expected.to_string(), found.to_string(), severity))
    };
    match &step.change {
        Change::CreateStack { stack, .. } => {
            one(StackMissing, format!("stack {stack}"), "deployed", "does not exist", High)
        }
        Change::UpdateStack { stack, from_version, version, .. } => {
            let found = format!("version {}", from_version.as_deref().unwrap_or("(untagged)"));
            one(StackOutdated, format!("stack {stack}"), &format!("version {version}"), &found, Medium)
        }
        Change::RedeployStack { stack, cause, version, .. } => {
            let expected = format!("template version {version}, resources as in the template");
            one(StackModified, format!("stack {stack}"), &expected, cause, High)
        }
        Change::RecoverStack { stack, .. } => {
            one(StackFailed, format!("stack {stack}"), "a complete stack", "UPDATE_ROLLBACK_FAILED", High)
        }
        Change::RecreateStack { stack, status, .. } => {
            one(StackFailed, format!("stack {stack}"), "a complete stack", status, High)
        }
        Change::DeleteStack { stack, .. } => {
            one(StackUnexpected, format!("stack {stack}"), "absent (not in the tenant file)", "deployed", Low)
        }
        _ => None,
    }
}

/// Accounts tagged `tenantry:tenant` that no tenant file accounts for: the tag names no tenant
/// file, or names a tenant whose account for that environment is another one.
pub fn orphans(
    accounts: &[(AccountSummary, std::collections::BTreeMap<String, String>)],
    tenants: &[DesiredTenant],
    claimed: &BTreeSet<String>,
) -> Vec<Orphan> {
    let tenant_ids: BTreeSet<String> = tenants.iter().map(|d| d.id.clone()).collect();
    let mut out = Vec::new();
    for (a, t) in accounts {
        let Some(tenant) = t.get(tags::TENANT) else { continue };
        // Found for its tenant in this run, or (when that tenant could not be observed or was
        // skipped) carrying the email the tenant file gives it.
        let owned_by_file = tenants
            .iter()
            .any(|d| &d.id == tenant && d.accounts.iter().any(|w| w.email.eq_ignore_ascii_case(&a.email)));
        if claimed.contains(&a.id) || owned_by_file {
            continue;
        }
        let reason = if tenant_ids.contains(tenant) {
            format!("tagged as tenant `{tenant}`'s, but that tenant's accounts are others; tenantry never deletes accounts: remove its tags or close it")
        } else {
            format!("tagged as tenant `{tenant}`, which has no tenant file; tenantry never deletes accounts: add tenants/{tenant}.toml to adopt it, or close it")
        };
        out.push(Orphan {
            account_id: a.id.clone(),
            name: a.name.clone(),
            email: a.email.clone(),
            status: a.status.to_string(),
            tenant_tag: tenant.clone(),
            environment_tag: t.get(tags::ENVIRONMENT).cloned(),
            reason,
        });
    }
    out
}

#[cfg(test)]
mod tests;
