//! The planner: a pure function of desired state and observed state that lists the steps that
//! would make them equal, like `terraform plan`. No I/O here; unit-tested on plain data.

pub mod saved;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::aws::types::StackStatus;
use crate::desired::{DesiredAccount, DesiredPolicy, DesiredTenant};
use crate::observe::{
    AccountObservation, FoundBy, ObservedAccount, ObservedTenant, OrgOverview, PolicyDocument, ResourceDrift,
};
use crate::tenant::{tags, Environment, Lifecycle};

/// One change on the organization itself, made before any tenant's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum OrgStep {
    /// `CreateOrganization` with all features.
    CreateOrganization,
    /// `EnablePolicyType SERVICE_CONTROL_POLICY` on the root.
    EnableServiceControlPolicies,
    /// `CreateOrganizationalUnit` for each missing segment of `path`.
    CreateOu {
        /// Full OU path.
        path: String,
    },
    /// `CreatePolicy`: a content-addressed SCP some account needs that does not exist yet.
    CreatePolicy {
        /// Policy name, `tenantry-<source>-<digest prefix>`.
        name: String,
        /// Source file in `policies/`.
        source: String,
        /// sha256 of the document.
        digest: String,
        /// How many of the run's accounts want it.
        accounts: usize,
    },
    /// `UpdatePolicy` back to the document its name is the digest of: it was changed out of
    /// band. Every account it is attached to wants exactly that document.
    RestorePolicy {
        /// Policy name.
        name: String,
        /// Policy id.
        policy_id: String,
        /// sha256 of the document it must hold.
        digest: String,
    },
    /// `DeletePolicy`: a content-addressed SCP attached to nothing that no tenant of the run
    /// wants (left by a run that stopped between a detach and the delete, or created for a plan
    /// that was then refused). Organizations refuses to delete a policy attached meanwhile, and
    /// tenantry then leaves it.
    DeletePolicy {
        /// Policy name.
        name: String,
        /// Policy id.
        policy_id: String,
    },
}

impl OrgStep {
    /// `+`, `~` or `-`: what the step does, as the plan's summary counts it.
    pub fn symbol(&self) -> &'static str {
        match self {
            OrgStep::RestorePolicy { .. } => "~",
            OrgStep::DeletePolicy { .. } => "-",
            _ => "+",
        }
    }
}

impl fmt::Display for OrgStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrgStep::CreateOrganization => write!(f, "+ create organization (all features)"),
            OrgStep::EnableServiceControlPolicies => write!(f, "+ enable service control policies on the root"),
            OrgStep::CreateOu { path } => write!(f, "+ create OU {path}"),
            OrgStep::CreatePolicy { name, source, digest, accounts } => write!(
                f,
                "+ create SCP {name} from {} (sha256 {}; for {accounts} account{})",
                policy_origin(source),
                short(digest),
                if *accounts == 1 { "" } else { "s" }
            ),
            OrgStep::RestorePolicy { name, policy_id, digest } => write!(
                f,
                "~ restore SCP {name} ({policy_id}) to its document (sha256 {}): it was changed out of band",
                short(digest)
            ),
            OrgStep::DeletePolicy { name, policy_id } => {
                write!(f, "- delete SCP {name} ({policy_id}): attached to nothing, and no tenant renders its document")
            }
        }
    }
}

/// One change `apply` would make in one of a tenant's accounts: the account's environment and
/// the change. In JSON flat, as `{"action": "create_stack", "stack": ..., "environment": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// What changes.
    #[serde(flatten)]
    pub change: Change,
    /// The account's environment.
    pub environment: Environment,
}

impl Step {
    /// `change` in the account of `environment`.
    pub fn new(environment: Environment, change: Change) -> Step {
        Step { change, environment }
    }
}

/// What a [`Step`] changes, and the AWS calls it makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Change {
    /// `CreateAccount`, then poll `DescribeCreateAccountStatus`.
    CreateAccount {
        /// Root email.
        email: String,
        /// Account name.
        account_name: String,
    },
    /// Poll a `CreateAccount` request that is already running.
    AwaitAccount {
        /// Request id.
        request_id: String,
    },
    /// Write the account's id to state: it was found by observation (by its email, its request,
    /// or what else identifies the tenant environment) but state did not record it, e.g. after the
    /// state object was lost. No AWS call; the account passed the guard.
    RecordAccount {
        /// Account id.
        account_id: String,
        /// How it was found.
        found_by: FoundBy,
    },
    /// `MoveAccount` into the desired OU.
    MoveAccount {
        /// Account id; `None` until created.
        account_id: Option<String>,
        /// Current parent id; `None` for a new account (the root).
        from_parent_id: Option<String>,
        /// Current parent's OU path (`""` for the root), when known.
        from_path: Option<String>,
        /// Destination OU path.
        to_ou_path: String,
    },
    /// `TagResource` with the tags that are missing or differ.
    TagAccount {
        /// Account id.
        account_id: String,
        /// Tags to set: key → (found, wanted).
        tags: BTreeMap<String, (Option<String>, String)>,
    },
    /// `UntagResource`: tags tenantry set earlier that the tenant file no longer lists.
    UntagAccount {
        /// Account id.
        account_id: String,
        /// Keys to remove, with the values found.
        tags: BTreeMap<String, String>,
    },
    /// `CreatePolicy` for a content-addressed SCP the account needs that does not exist (in
    /// `reconcile`; `apply` creates them as organization steps).
    CreatePolicy {
        /// Policy name.
        name: String,
        /// Source file in `policies/`.
        source: String,
        /// sha256 of the content.
        digest: String,
    },
    /// `UpdatePolicy` back to the document a content-addressed SCP's name is the digest of: it
    /// was changed out of band (in `reconcile`; `apply` restores them as organization steps).
    UpdatePolicy {
        /// Policy name.
        name: String,
        /// Policy id.
        policy_id: String,
        /// sha256 of the new content.
        digest: String,
    },
    /// `AttachPolicy` to the account.
    AttachPolicy {
        /// Policy name.
        name: String,
    },
    /// `DetachPolicy` (if attached), then `DeletePolicy` unless another account still has it
    /// attached (Organizations refuses to delete a policy in use, and tenantry leaves it): a
    /// tenantry SCP the account no longer needs, because the tenant file no longer lists the
    /// policy file, its document changed (another content-addressed SCP replaces it), or it is
    /// a per-account SCP of an earlier version.
    RemovePolicy {
        /// Policy name.
        name: String,
        /// Policy id.
        policy_id: String,
        /// Whether it is attached to the account now.
        attached: bool,
        /// The SCP that takes its place, when one does (attached before this one is detached,
        /// unless the account has no free SCP slot for both).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replaced_by: Option<String>,
        /// The account has no free SCP slot for both: this one is detached before its
        /// replacement is attached, and for that moment the account is without the policy
        /// file's SCP.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        no_free_slot: bool,
    },
    /// `DetachPolicy`: an SCP of another tenant or environment (named
    /// `tenantry-<tenant>-<environment>-*`) attached to this account. It is detached only, never
    /// deleted: it belongs to someone else.
    DetachForeignPolicy {
        /// Policy name.
        name: String,
        /// Policy id.
        policy_id: String,
    },
    /// `CreateStack` from the rendered blueprint.
    CreateStack {
        /// Stack name.
        stack: String,
        /// Blueprint.
        blueprint: String,
        /// sha256 of the template.
        version: String,
    },
    /// `UpdateStack` to the rendered blueprint.
    UpdateStack {
        /// Stack name.
        stack: String,
        /// Blueprint.
        blueprint: String,
        /// Version found (its `tenantry:version` tag).
        from_version: Option<String>,
        /// Version wanted.
        version: String,
    },
    /// `UpdateStack` with the rendered template and a fresh `tenantry:redeployed-at` stack tag,
    /// so CloudFormation re-applies every resource: the stack runs another template than its
    /// version tag says, or its resources drifted.
    RedeployStack {
        /// Stack name.
        stack: String,
        /// Blueprint.
        blueprint: String,
        /// Version wanted.
        version: String,
        /// What was found.
        cause: String,
    },
    /// `ContinueUpdateRollback`, then `UpdateStack`: the stack is stuck in UPDATE_ROLLBACK_FAILED,
    /// where CloudFormation accepts no update until the rollback is finished.
    RecoverStack {
        /// Stack name.
        stack: String,
        /// Blueprint.
        blueprint: String,
        /// Version wanted.
        version: String,
    },
    /// `DeleteStack`: a stack tenantry deployed from a blueprint the tenant file no longer lists.
    /// Resources with `DeletionPolicy: Retain` (the buckets) are kept.
    DeleteStack {
        /// Stack name.
        stack: String,
        /// Blueprint it was deployed from.
        blueprint: String,
    },
    /// `DeleteStack` then `CreateStack`: the stack never reached a usable state (e.g.
    /// ROLLBACK_COMPLETE after a failed create), which CloudFormation cannot update.
    RecreateStack {
        /// Stack name.
        stack: String,
        /// Blueprint.
        blueprint: String,
        /// Status found.
        status: String,
        /// Version wanted.
        version: String,
    },
}

impl Change {
    /// `+` create, `~` change, `-` remove, `-/+` replace, `…` wait: as in Terraform's plan.
    pub fn symbol(&self) -> &'static str {
        use Change::*;
        match self {
            CreateAccount { .. } | CreatePolicy { .. } | CreateStack { .. } | AttachPolicy { .. } => "+",
            RemovePolicy { .. } | UntagAccount { .. } | DeleteStack { .. } | DetachForeignPolicy { .. } => "-",
            RecreateStack { .. } => "-/+",
            AwaitAccount { .. } => "…",
            _ => "~",
        }
    }
}

/// Where an SCP's document comes from, as plans say it: its file in `policies/`, or tenantry's
/// own quarantine document.
fn policy_origin(source: &str) -> String {
    if source == crate::tenant::QUARANTINE_POLICY_SOURCE {
        "tenantry's quarantine document (deny all but tenantry's access role)".to_string()
    } else {
        format!("policies/{source}.json")
    }
}

fn short(v: &str) -> &str {
    &v[..v.len().min(12)]
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.change.symbol(), self.environment, self.change)
    }
}

/// What the change does, without its symbol and environment: the text after
/// `<symbol> <environment>: ` in its [`Step`]'s form.
impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Change::*;
        match self {
            CreateAccount { email, account_name, .. } => {
                write!(f, "create account \"{account_name}\" <{email}>")
            }
            AwaitAccount { request_id, .. } => {
                write!(f, "wait for account creation {request_id}")
            }
            RecordAccount { account_id, found_by, .. } => write!(
                f,
                "record account {account_id} in state (state did not hold it; found {})",
                match found_by {
                    FoundBy::Recorded => "in state",
                    FoundBy::Adopted => "by its email",
                    FoundBy::CreateRequest => "through its CreateAccount request",
                    FoundBy::Identity => "by its name or tags",
                }
            ),
            MoveAccount { account_id, from_parent_id, from_path, to_ou_path, .. } => write!(
                f,
                "move account {} from {} to OU {to_ou_path}",
                account_id.as_deref().unwrap_or("(known after apply)"),
                match (from_path.as_deref(), from_parent_id.as_deref()) {
                    (Some(""), _) | (None, None) => "the root".to_string(),
                    (Some(p), Some(id)) => format!("OU {p} ({id})"),
                    (Some(p), None) => format!("OU {p}"),
                    (None, Some(id)) => id.to_string(),
                }
            ),
            TagAccount { account_id, tags, .. } => {
                let changes: Vec<String> = tags
                    .iter()
                    .map(|(k, (old, new))| match old {
                        Some(o) => format!("{k}: \"{o}\" -> \"{new}\""),
                        None => format!("{k}: (none) -> \"{new}\""),
                    })
                    .collect();
                write!(f, "tag account {account_id}: {}", changes.join(", "))
            }
            UntagAccount { account_id, tags, .. } => {
                let keys: Vec<String> = tags.iter().map(|(k, v)| format!("{k} (was \"{v}\")")).collect();
                write!(f, "remove tags from account {account_id}: {} (no longer in the tenant file)", keys.join(", "))
            }
            CreatePolicy { name, source, digest, .. } => {
                write!(f, "create SCP {name} from {} (sha256 {})", policy_origin(source), short(digest))
            }
            UpdatePolicy { name, policy_id, digest, .. } => write!(
                f,
                "restore SCP {name} ({policy_id}) to its document (sha256 {}): it was changed out of band",
                short(digest)
            ),
            AttachPolicy { name, .. } => write!(f, "attach SCP {name}"),
            RemovePolicy { name, policy_id, attached, replaced_by, no_free_slot } => {
                let shared = crate::desired::shared_policy_parts(name).is_some();
                let why = match replaced_by {
                    Some(new) if *no_free_slot => format!(
                        "replaced by {new}, which is attached right after (no free SCP slot for both: for that moment the account is without this policy file's SCP)"
                    ),
                    Some(new) => format!("replaced by {new}, attached just before"),
                    None if shared => "the tenant file does not ask for it here".to_string(),
                    None => "a per-account SCP of an earlier tenantry, no longer in the tenant file".to_string(),
                };
                match (shared, *attached) {
                    (true, true) => write!(f, "detach SCP {name} ({policy_id}), deleted if no other account uses it: {why}"),
                    (true, false) => write!(f, "delete SCP {name} ({policy_id}) if no account uses it: {why}"),
                    (false, true) => write!(f, "detach and delete SCP {name} ({policy_id}): {why}"),
                    (false, false) => write!(f, "delete SCP {name} ({policy_id}): {why}"),
                }
            }
            DetachForeignPolicy { name, policy_id, .. } => write!(
                f,
                "detach SCP {name} ({policy_id}): another tenant's or environment's policy (it is left in place, not deleted)"
            ),
            DeleteStack { stack, blueprint, .. } => write!(
                f,
                "delete stack {stack} (blueprint {blueprint} is no longer in the tenant file; retained resources are kept)"
            ),
            CreateStack { stack, blueprint, version, .. } => {
                write!(f, "create stack {stack} from blueprints/{blueprint}.json (version {})", short(version))
            }
            UpdateStack { stack, from_version, version, .. } => write!(
                f,
                "update stack {stack}: template (blueprint or parameters) changed, version {} -> {}",
                from_version.as_deref().map(short).unwrap_or("(untagged)"),
                short(version)
            ),
            RedeployStack { stack, version, cause, .. } => write!(
                f,
                "redeploy stack {stack} at version {}: {cause}",
                short(version)
            ),
            RecoverStack { stack, version, .. } => write!(
                f,
                "recover stack {stack} from UPDATE_ROLLBACK_FAILED (continue the rollback), then update it to version {}",
                short(version)
            ),
            RecreateStack { stack, status, version, .. } => write!(
                f,
                "replace stack {stack} (found {status}, which cannot be updated) with version {}",
                short(version)
            ),
        }
    }
}

/// The plan for one tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantPlan {
    /// Tenant id.
    pub tenant: String,
    /// The tenant file's `lifecycle` (omitted in JSON when `active`).
    #[serde(default, skip_serializing_if = "Lifecycle::is_active")]
    pub lifecycle: Lifecycle,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// Reasons tenantry refuses to act on this tenant (blast-radius guard, collisions). A tenant
    /// with refusals is not applied.
    pub refusals: Vec<Refusal>,
    /// Differences apply cannot make (an account's root email or name): shown, reported by
    /// reconcile, left to a person.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manual: Vec<ManualChange>,
    /// The observed facts the plan was made from ([`saved::facts`]); `apply` refuses the plan as
    /// stale when one that a step depends on changed.
    #[serde(default)]
    pub facts: saved::Facts,
}

/// Why tenantry will not act on a tenant environment. In JSON it is one string, as shown:
/// `"<environment>: <reason>"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub struct Refusal {
    /// The environment concerned (none for a refusal read back as text).
    pub environment: Option<Environment>,
    /// What kind of refusal.
    pub kind: RefusalKind,
    /// What and why, with what to do.
    pub reason: String,
}

/// Kinds of [`Refusal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefusalKind {
    /// The blast-radius guard, or a collision with another tenant's account, refused the account.
    Guard,
    /// The account is not ACTIVE (suspended, closing).
    AccountNotActive,
    /// The account would carry more SCPs than Organizations allows on one target.
    TooManyPolicies,
    /// Another operation is running on a stack.
    StackBusy {
        /// Stack name.
        stack: String,
        /// Its `*_IN_PROGRESS` status.
        status: String,
    },
    /// Read back from text (a saved plan): the kind is not kept.
    Other,
}

impl Refusal {
    /// A refusal of `kind` for `environment`.
    pub fn new(environment: Environment, kind: RefusalKind, reason: String) -> Refusal {
        Refusal { environment: Some(environment), kind, reason }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.environment {
            Some(env) => write!(f, "{env}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl From<Refusal> for String {
    fn from(r: Refusal) -> String {
        r.to_string()
    }
}

impl From<String> for Refusal {
    fn from(reason: String) -> Refusal {
        Refusal { environment: None, kind: RefusalKind::Other, reason }
    }
}

/// Which property of an account differs from the tenant file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountField {
    /// The root user's email.
    Email,
    /// The account name.
    Name,
}

/// A difference between an account and its tenant file that tenantry does not change itself:
/// Organizations has no call for an account's root email or name (the Account Management API's
/// `StartPrimaryEmailUpdate` needs a one-time password sent to the new address).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManualChange {
    /// Environment.
    pub environment: Environment,
    /// Account id.
    pub account_id: String,
    /// What differs.
    pub field: AccountField,
    /// What the account has.
    pub found: String,
    /// What the tenant file says.
    pub wanted: String,
}

impl ManualChange {
    /// What to do about it, without the environment: the text after `! <environment>: ` in its
    /// [`Display`](fmt::Display) form.
    pub fn action(&self) -> String {
        let Self { account_id, found, wanted, .. } = self;
        match self.field {
            AccountField::Email => format!(
                "account {account_id} has root email \"{found}\", the tenant file says \"{wanted}\": tenantry does not change root emails; change it as the account's root user (or with the Account Management API's StartPrimaryEmailUpdate), or set the file back. The account stays known by both emails."
            ),
            AccountField::Name => format!(
                "account {account_id} is named \"{found}\", the tenant file says \"{wanted}\": tenantry does not rename accounts; rename it (Account Management API PutAccountName, or the console), or set the file back."
            ),
        }
    }
}

impl fmt::Display for ManualChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "! {}: {}", self.environment, self.action())
    }
}

/// A whole plan: organization-level steps, then per-tenant steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Steps on the organization itself (organization, SCP type, OUs).
    pub organization: Vec<OrgStep>,
    /// One entry per tenant.
    pub tenants: Vec<TenantPlan>,
    /// Tenants the state bucket records and no tenant file declares (looked for only when a
    /// run covers every tenant): listed, never changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orphaned: Vec<OrphanedTenant>,
}

/// A tenant whose state record remains while its tenant file is gone. tenantry changes nothing
/// in its accounts: it neither manages them (no file says how) nor gives them to anyone else
/// (the record, the accounts' tags and SCPs still say whose they are).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrphanedTenant {
    /// Tenant id (the record's key, `tenants/<id>.json`).
    pub tenant: String,
    /// The accounts its record names, by environment: the account id, or none when only a
    /// `CreateAccount` was started.
    pub accounts: BTreeMap<Environment, Option<String>>,
}

impl std::fmt::Display for OrphanedTenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tenant {}: its file tenants/{}.toml is gone; state records ", self.tenant, self.tenant)?;
        if self.accounts.is_empty() {
            write!(f, "no account")?;
        }
        for (i, (env, id)) in self.accounts.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            match id {
                Some(id) => write!(f, "{sep}{env} account {id}")?,
                None => write!(f, "{sep}{env} account (creation started, id unknown)")?,
            }
        }
        write!(
            f,
            ". Nothing is changed in them: restore the file (from version control) to manage them again. tenantry never moves, suspends or closes an account because its file is gone"
        )
    }
}

impl Plan {
    /// Whether applying would change nothing.
    pub fn is_empty(&self) -> bool {
        self.organization.is_empty() && self.tenants.iter().all(|t| t.steps.is_empty())
    }

    /// Whether any tenant is refused.
    pub fn has_refusals(&self) -> bool {
        self.tenants.iter().any(|t| !t.refusals.is_empty())
    }

    /// Whether any account differs from its file in a way apply cannot change.
    pub fn has_manual(&self) -> bool {
        self.tenants.iter().any(|t| !t.manual.is_empty())
    }

    /// Whether any tenant's file is gone while its state record remains.
    pub fn has_orphans(&self) -> bool {
        !self.orphaned.is_empty()
    }
}

/// The content-addressed SCPs as the organization's steps see them.
#[derive(Debug, Clone, Default)]
pub struct OrgScps {
    /// The ones the run's tenants want, by name.
    pub wanted: BTreeMap<String, WantedScp>,
    /// Content-addressed SCPs attached to nothing that no tenant of the run wants: name → id.
    pub unused: BTreeMap<String, String>,
}

/// A content-addressed SCP some tenant of the run wants, as found.
#[derive(Debug, Clone)]
pub struct WantedScp {
    /// The rendered policy (any of the identical ones).
    pub policy: DesiredPolicy,
    /// How many of the run's accounts want it.
    pub accounts: usize,
    /// The policy as found, if it exists.
    pub found: Option<PolicyDocument>,
}

/// Organization-level steps: the organization with all features and SCPs, every OU path some
/// tenant needs (`ou_exists`: full path → whether it exists), the content-addressed SCPs the
/// tenants want that do not exist or were changed out of band, and the ones attached to nothing
/// that no tenant wants (`scps`).
pub fn organization(org: Option<&OrgOverview>, ou_exists: &BTreeMap<String, bool>, scps: &OrgScps) -> Vec<OrgStep> {
    let mut steps = Vec::new();
    match org {
        None => {
            steps.push(OrgStep::CreateOrganization);
            steps.push(OrgStep::EnableServiceControlPolicies);
        }
        Some(o) if !o.scp_enabled => steps.push(OrgStep::EnableServiceControlPolicies),
        Some(_) => {}
    }
    for (path, exists) in ou_exists {
        if !exists {
            steps.push(OrgStep::CreateOu { path: path.clone() });
        }
    }
    for (name, w) in &scps.wanted {
        let p = &w.policy;
        match &w.found {
            None => steps.push(OrgStep::CreatePolicy {
                name: name.clone(),
                source: p.source.clone(),
                digest: p.digest.clone(),
                accounts: w.accounts,
            }),
            Some(doc) if !same_json(&doc.content, &p.content) => steps.push(OrgStep::RestorePolicy {
                name: name.clone(),
                policy_id: doc.policy_id.clone(),
                digest: p.digest.clone(),
            }),
            Some(_) => {}
        }
    }
    for (name, policy_id) in &scps.unused {
        steps.push(OrgStep::DeletePolicy { name: name.clone(), policy_id: policy_id.clone() });
    }
    steps
}

/// The steps that bring one tenant's accounts to their desired state.
pub fn tenant(desired: &DesiredTenant, observed: &ObservedTenant) -> TenantPlan {
    let mut steps = Vec::new();
    let mut refusals = Vec::new();
    let mut manual = Vec::new();
    // Content-addressed SCPs this plan creates or restores (once, whichever account needs it first).
    let mut shared = BTreeSet::new();
    for want in &desired.accounts {
        let env = want.environment;
        match observed.accounts.get(&env).unwrap_or(&AccountObservation::Missing) {
            AccountObservation::Refused { reason, .. } => {
                refusals.push(Refusal::new(env, RefusalKind::Guard, reason.clone()))
            }
            AccountObservation::Missing => {
                steps.push(Step {
                    change: Change::CreateAccount {
                        email: want.email.clone(),
                        account_name: want.account_name.clone(),
                    },
                    environment: env,
                });
                new_account_steps(want, observed, &mut shared, &mut steps);
            }
            AccountObservation::Creating { request_id } => {
                steps.push(Step { change: Change::AwaitAccount { request_id: request_id.clone() }, environment: env });
                new_account_steps(want, observed, &mut shared, &mut steps);
            }
            AccountObservation::Found(found) => {
                if found.account.status != crate::aws::types::AccountStatus::Active {
                    refusals.push(Refusal::new(
                        env,
                        RefusalKind::AccountNotActive,
                        format!(
                            "account {} is {}; tenantry only works on ACTIVE accounts",
                            found.account.id, found.account.status
                        ),
                    ));
                    continue;
                }
                if found.found_by != FoundBy::Recorded {
                    steps.push(Step {
                        change: Change::RecordAccount {
                            account_id: found.account.id.clone(),
                            found_by: found.found_by,
                        },
                        environment: env,
                    });
                }
                let (account, id) = (&found.account, &found.account.id);
                if !account.email.eq_ignore_ascii_case(&want.email) {
                    let (found, wanted) = (account.email.clone(), want.email.clone());
                    manual.push(ManualChange {
                        environment: env,
                        account_id: id.clone(),
                        field: AccountField::Email,
                        found,
                        wanted,
                    });
                }
                if account.name != want.account_name {
                    let (found, wanted) = (account.name.clone(), want.account_name.clone());
                    manual.push(ManualChange {
                        environment: env,
                        account_id: id.clone(),
                        field: AccountField::Name,
                        found,
                        wanted,
                    });
                }
                let legacy = crate::desired::legacy_policy_prefix(&desired.id, env);
                existing_account_steps(want, found, &mut steps);
                policy_steps(want, found, &legacy, observed, &mut shared, &mut steps, &mut refusals);
                stack_steps(want, found, &mut steps, &mut refusals);
            }
        }
    }
    TenantPlan {
        tenant: desired.id.clone(),
        lifecycle: desired.lifecycle,
        steps,
        refusals,
        manual,
        facts: saved::facts(observed),
    }
}

/// Steps after creating an account: it starts in the root, carries its tags from `CreateAccount`.
fn new_account_steps(
    want: &DesiredAccount,
    observed: &ObservedTenant,
    shared: &mut BTreeSet<String>,
    steps: &mut Vec<Step>,
) {
    let env = want.environment;
    steps.push(Step {
        change: Change::MoveAccount {
            account_id: None,
            from_parent_id: None,
            from_path: Some(String::new()),
            to_ou_path: want.ou_path.clone(),
        },
        environment: env,
    });
    for p in &want.policies {
        steps.extend(shared_policy_step(p, observed, shared).map(|change| Step { change, environment: env }));
        steps.push(Step { change: Change::AttachPolicy { name: p.name.clone() }, environment: env });
    }
    for s in &want.stacks {
        steps.push(Step {
            change: Change::CreateStack {
                stack: s.stack_name.clone(),
                blueprint: s.blueprint.clone(),
                version: s.version.clone(),
            },
            environment: env,
        });
    }
}

/// The account steps of an existing account: its OU and tags.
fn existing_account_steps(want: &DesiredAccount, found: &ObservedAccount, steps: &mut Vec<Step>) {
    let env = want.environment;
    let id = &found.account.id;
    if found.desired_ou_id.as_deref() != Some(found.parent_id.as_str()) {
        steps.push(Step {
            change: Change::MoveAccount {
                account_id: Some(id.clone()),
                from_parent_id: Some(found.parent_id.clone()),
                from_path: found.parent_path.clone(),
                to_ou_path: want.ou_path.clone(),
            },
            environment: env,
        });
    }
    let tag_changes: BTreeMap<String, (Option<String>, String)> = want
        .tags
        .iter()
        .filter(|(k, v)| found.tags.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), (found.tags.get(k).cloned(), v.clone())))
        .collect();
    if !tag_changes.is_empty() {
        steps.push(Step { change: Change::TagAccount { account_id: id.clone(), tags: tag_changes }, environment: env });
    }
    let stale_tags: BTreeMap<String, String> = found
        .recorded_tag_keys
        .iter()
        .filter(|k| !want.tags.contains_key(*k))
        .filter_map(|k| found.tags.get(k).map(|v| (k.clone(), v.clone())))
        .collect();
    if !stale_tags.is_empty() {
        steps
            .push(Step { change: Change::UntagAccount { account_id: id.clone(), tags: stale_tags }, environment: env });
    }
}

/// `CreatePolicy` or `UpdatePolicy` (restore) for the content-addressed SCP `p` when the
/// observation shows it missing or changed, and no earlier step of the plan made it so.
fn shared_policy_step(p: &DesiredPolicy, observed: &ObservedTenant, shared: &mut BTreeSet<String>) -> Option<Change> {
    let change = match observed.scps.get(&p.name).and_then(Option::as_ref) {
        None => Change::CreatePolicy { name: p.name.clone(), source: p.source.clone(), digest: p.digest.clone() },
        Some(doc) if !same_json(&doc.content, &p.content) => {
            Change::UpdatePolicy { name: p.name.clone(), policy_id: doc.policy_id.clone(), digest: p.digest.clone() }
        }
        Some(_) => return None,
    };
    shared.insert(p.name.clone()).then_some(change)
}

/// The SCP steps of an existing account. The SCPs it should not carry are removed first (the
/// policy files the tenant file no longer lists, another tenant environment's per-account SCPs),
/// so that the 5-per-account quota has room; then, policy file by policy file, the SCP it should
/// carry is attached and only then the one it replaces (an older document of the same file, or
/// the file's per-account SCP of an earlier version) detached, so that no moment finds the
/// account without the file's policy — unless the account has no free slot for both, when the
/// old one goes first.
fn policy_steps(
    want: &DesiredAccount,
    found: &ObservedAccount,
    legacy_prefix: &str,
    observed: &ObservedTenant,
    shared: &mut BTreeSet<String>,
    steps: &mut Vec<Step>,
    refusals: &mut Vec<Refusal>,
) {
    let env = want.environment;
    let id = &found.account.id;
    let wanted = |name: &str| want.policies.iter().any(|p| p.name == name);
    let source_wanted = |source: &str| want.policies.iter().find(|p| p.source == source);
    let attached_names: BTreeSet<&str> = found.attached.values().map(String::as_str).collect();
    let mut first: Vec<Change> = Vec::new();
    let mut replaced: BTreeMap<&str, Vec<Change>> = BTreeMap::new();
    for (policy_id, name) in &found.attached {
        if wanted(name) {
            continue;
        }
        let source = match crate::desired::shared_policy_parts(name) {
            Some((source, _)) => source,
            None => match name.strip_prefix(legacy_prefix) {
                Some(source) => source,
                None if is_legacy_policy_name(name) => {
                    first.push(Change::DetachForeignPolicy { name: name.clone(), policy_id: policy_id.clone() });
                    continue;
                }
                // FullAWSAccess, and any SCP tenantry did not make: not tenantry's to touch.
                None => continue,
            },
        };
        let remove = |replaced_by: Option<String>| Change::RemovePolicy {
            name: name.clone(),
            policy_id: policy_id.clone(),
            attached: true,
            replaced_by,
            no_free_slot: false,
        };
        match source_wanted(source) {
            Some(p) if !attached_names.contains(p.name.as_str()) => {
                replaced.entry(&p.source).or_default().push(remove(Some(p.name.clone())))
            }
            _ => first.push(remove(None)),
        }
    }
    for (name, policy_id) in &found.detached_scps {
        if !wanted(name) {
            first.push(Change::RemovePolicy {
                name: name.clone(),
                policy_id: policy_id.clone(),
                attached: false,
                replaced_by: None,
                no_free_slot: false,
            });
        }
    }
    let detaches = |c: &Change| match c {
        Change::RemovePolicy { attached, .. } => usize::from(*attached),
        _ => 1,
    };
    let mut count = found.attached.len() - first.iter().map(detaches).sum::<usize>();
    let mut peak = count;
    steps.extend(first.into_iter().map(|change| Step { change, environment: env }));
    for p in &want.policies {
        steps.extend(shared_policy_step(p, observed, shared).map(|change| Step { change, environment: env }));
        if attached_names.contains(p.name.as_str()) {
            continue;
        }
        let old = replaced.remove(p.source.as_str()).unwrap_or_default();
        let freed: usize = old.iter().map(detaches).sum();
        let attach = Step { change: Change::AttachPolicy { name: p.name.clone() }, environment: env };
        let old = old.into_iter().map(|change| Step { change, environment: env });
        if count + 1 > MAX_SCPS_PER_TARGET && freed > 0 {
            // No free slot: the old one must go before its replacement comes.
            let old = old.map(|mut s| {
                if let Change::RemovePolicy { no_free_slot, .. } = &mut s.change {
                    *no_free_slot = true;
                }
                s
            });
            steps.extend(old);
            steps.push(attach);
            count = count - freed + 1;
        } else {
            steps.push(attach);
            count += 1;
            peak = peak.max(count);
            steps.extend(old);
            count -= freed;
        }
        peak = peak.max(count);
    }
    if peak > MAX_SCPS_PER_TARGET {
        let mut names: Vec<&str> = found.attached.values().map(String::as_str).collect();
        names.sort_unstable();
        refusals.push(Refusal::new(
            env,
            RefusalKind::TooManyPolicies,
            format!(
                "account {id} would carry {peak} SCPs, over the Organizations limit of {MAX_SCPS_PER_TARGET} directly attached to one target (attached now: {}); list fewer policies in the tenant file, or detach the others",
                names.join(", ")
            ),
        ));
    }
}

/// The stack steps of an existing account.
fn stack_steps(want: &DesiredAccount, found: &ObservedAccount, steps: &mut Vec<Step>, refusals: &mut Vec<Refusal>) {
    let env = want.environment;
    for s in &want.stacks {
        match found.stacks.get(&s.stack_name) {
            None => steps.push(Step {
                change: Change::CreateStack {
                    stack: s.stack_name.clone(),
                    blueprint: s.blueprint.clone(),
                    version: s.version.clone(),
                },
                environment: env,
            }),
            Some(o) if o.status.is_in_progress() => refusals.push(Refusal::new(
                env,
                RefusalKind::StackBusy { stack: s.stack_name.clone(), status: o.status.to_string() },
                format!(
                    "stack {} is {}: another operation is running on it; run again when it has finished",
                    s.stack_name, o.status
                ),
            )),
            Some(o) if o.status == StackStatus::UpdateRollbackFailed => steps.push(Step {
                change: Change::RecoverStack {
                    stack: s.stack_name.clone(),
                    blueprint: s.blueprint.clone(),
                    version: s.version.clone(),
                },
                environment: env,
            }),
            Some(o) if o.status.needs_replacement() => steps.push(Step {
                change: Change::RecreateStack {
                    stack: s.stack_name.clone(),
                    blueprint: s.blueprint.clone(),
                    status: o.status.to_string(),
                    version: s.version.clone(),
                },
                environment: env,
            }),
            Some(o) if o.version.as_deref() != Some(s.version.as_str()) || !o.status.is_complete() => {
                steps.push(Step {
                    change: Change::UpdateStack {
                        stack: s.stack_name.clone(),
                        blueprint: s.blueprint.clone(),
                        from_version: o.version.clone(),
                        version: s.version.clone(),
                    },
                    environment: env,
                })
            }
            Some(o) => {
                let mut causes = Vec::new();
                if o.template_body.as_deref().is_some_and(|body| !same_json(body, &s.template)) {
                    causes.push("its template was changed outside tenantry".to_string());
                }
                let wanted_tags = [
                    (tags::TENANT, want.tags.get(tags::TENANT).map(String::as_str)),
                    (tags::ENVIRONMENT, want.tags.get(tags::ENVIRONMENT).map(String::as_str)),
                    (tags::MANAGED_BY, want.tags.get(tags::MANAGED_BY).map(String::as_str)),
                    (tags::BLUEPRINT, Some(s.blueprint.as_str())),
                ];
                let changed: Vec<String> = wanted_tags
                    .iter()
                    .filter(|(k, v)| o.tags.get(*k).map(String::as_str) != *v)
                    .map(|(k, v)| {
                        format!(
                            "{k}: {} (wanted {})",
                            o.tags.get(*k).map_or("(absent)", String::as_str),
                            v.unwrap_or("(absent)")
                        )
                    })
                    .collect();
                if !changed.is_empty() {
                    causes.push(format!("its tenantry tags were changed: {}", changed.join(", ")));
                }
                if let ResourceDrift::Drifted(resources) = &o.resource_drift {
                    let list: Vec<String> = resources
                        .iter()
                        .map(|r| {
                            if r.differences.is_empty() {
                                format!("{} {}", r.logical_id, r.status)
                            } else {
                                format!("{} {}: {}", r.logical_id, r.status, r.differences.join("; "))
                            }
                        })
                        .collect();
                    causes.push(format!("resource drift ({})", list.join(", ")));
                }
                if !causes.is_empty() {
                    steps.push(Step {
                        change: Change::RedeployStack {
                            stack: s.stack_name.clone(),
                            blueprint: s.blueprint.clone(),
                            version: s.version.clone(),
                            cause: causes.join("; "),
                        },
                        environment: env,
                    });
                }
            }
        }
    }
    for (name, o) in &found.stacks {
        let managed = o.tags.get(crate::tenant::tags::MANAGED_BY).map(String::as_str) == Some("tenantry");
        if let (true, Some(blueprint)) = (managed, o.tags.get(crate::tenant::tags::BLUEPRINT)) {
            if !want.stacks.iter().any(|s| &s.stack_name == name) && !o.status.is_deleted() {
                steps.push(Step {
                    change: Change::DeleteStack { stack: name.clone(), blueprint: blueprint.clone() },
                    environment: env,
                });
            }
        }
    }
}

/// How many SCPs Organizations lets be attached directly to one account, OU or root (a fixed
/// quota, not adjustable; `FullAWSAccess` counts).
pub const MAX_SCPS_PER_TARGET: usize = 5;

/// Whether `name` has the shape of the per-account SCPs earlier versions of tenantry made,
/// `tenantry-<tenant>-<environment>-<file>`, and not that of a content-addressed one.
pub fn is_legacy_policy_name(name: &str) -> bool {
    crate::desired::shared_policy_parts(name).is_none()
        && name
            .strip_prefix("tenantry-")
            .is_some_and(|rest| rest.contains("-production-") || rest.contains("-staging-"))
}

/// Stack statuses CloudFormation cannot update: the stack must be deleted and created again.
/// Whether two JSON documents are equal as values (whitespace and key order aside); other
/// text only when byte for byte equal.
pub fn same_json(a: &str, b: &str) -> bool {
    match (serde_json::from_str::<serde_json::Value>(a), serde_json::from_str::<serde_json::Value>(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}
