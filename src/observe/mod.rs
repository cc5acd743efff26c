//! Observed state: what AWS says, as plain data. The functions here only read (`Describe*`,
//! `List*`, `AssumeRole` to read stacks); they never change anything.

pub mod index;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::aws::cfn::StackError;
use crate::aws::member::{MemberSession, SessionError, VerifiedAccount};
pub use crate::aws::org::failure_hint;
pub use crate::aws::types::{
    AccountStatus, AccountSummary, CreateRequest, CreateRequestState, DriftedResource, ObservedStack, OrgOverview,
    ResourceDrift,
};
use crate::aws::{cfn, org, Clients};
use crate::config::OrgSettings;
use crate::desired::DesiredTenant;
use crate::guard::{Claim, LiveAccount};
use crate::state::TenantRecord;
use crate::tenant::Environment;
pub use index::OrgIndex;

/// Why observing a tenant failed. (The guard refusing an account is no error: it is an
/// [`AccountObservation::Refused`].)
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An Organizations or CloudFormation read failed.
    #[error(transparent)]
    Aws(#[from] crate::aws::Error),
    /// A session in a member account could not be had (to read its stacks).
    #[error(transparent)]
    Session(#[from] SessionError),
    /// Drift detection failed, timed out, or was stopped.
    #[error(transparent)]
    Stack(#[from] StackError),
    /// The history of a tenant's state record could not be read.
    #[error(transparent)]
    State(#[from] Box<crate::state::Error>),
}

/// Results of observation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A tenant's account as found, with everything the planner compares.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ObservedAccount {
    /// The account.
    pub account: AccountSummary,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// Id of its parent (root or OU).
    pub parent_id: String,
    /// Path of its parent when it is not the desired OU (`""` for the root), for display.
    pub parent_path: Option<String>,
    /// Tag keys tenantry set on it in earlier runs (from state): a key among them that the
    /// tenant file no longer lists is removed.
    pub recorded_tag_keys: std::collections::BTreeSet<String>,
    /// Id of the OU it should be in, if that OU exists.
    pub desired_ou_id: Option<String>,
    /// SCPs attached directly, policy id → name.
    pub attached: BTreeMap<String, String>,
    /// tenantry SCPs that state records as attached to this account, that the tenant file no
    /// longer wants, and that are not attached (detached out of band, or by a run that stopped
    /// before deleting them) but still exist under that name: name → id.
    pub detached_scps: BTreeMap<String, String>,
    /// The account's `tenantry-*` stacks.
    pub stacks: BTreeMap<String, ObservedStack>,
    /// Whether it was found through state (`Recorded`) or by email and tags (`Adopted`).
    pub found_by: FoundBy,
}

/// How an account was found.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FoundBy {
    /// State records its id.
    Recorded,
    /// Found in the organization by its email, carrying this tenant's tags.
    Adopted,
    /// The create request recorded in state succeeded.
    CreateRequest,
    /// Found, with no account recorded and none with the file's email, by what else identifies
    /// the tenant environment: its account name, an email state recorded, or its tenantry tags.
    Identity,
}

/// What was found for one environment of a tenant.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AccountObservation {
    /// No account and no create request: it must be created.
    Missing,
    /// A `CreateAccount` request is still running.
    Creating {
        /// Its id.
        request_id: String,
    },
    /// The account exists and passed the blast-radius guard.
    Found(Box<ObservedAccount>),
    /// Something is in the way; tenantry will not touch it.
    Refused {
        /// The account concerned, if one was found.
        account_id: Option<String>,
        /// What and why, with what to do.
        reason: String,
    },
}

/// What [`Observer::locate`] found for an environment: an account and how, or an observation
/// that ends the look (missing, being created, refused).
enum Located {
    Account(AccountSummary, FoundBy),
    Not(AccountObservation),
}

/// Everything observed for one tenant.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ObservedTenant {
    /// Tenant id.
    pub tenant: String,
    /// One entry per environment.
    pub accounts: BTreeMap<Environment, AccountObservation>,
    /// The content-addressed SCPs the tenant file wants (both environments), by name: the
    /// policy and its document, or `None` when it does not exist. They are the organization's,
    /// shared with every tenant whose document is the same.
    pub scps: BTreeMap<String, Option<PolicyDocument>>,
}

impl ObservedTenant {
    /// The observation as it will be once the organization's steps have run: every SCP the
    /// tenant wants exists with the document it should have (`apply` creates and restores
    /// content-addressed SCPs as organization steps, before any tenant's).
    pub fn after_organization_steps(mut self, desired: &DesiredTenant) -> ObservedTenant {
        for p in desired.policies() {
            let id = self.scps.get(&p.name).cloned().flatten().map(|d| d.policy_id).unwrap_or_default();
            self.scps.insert(p.name.clone(), Some(PolicyDocument { policy_id: id, content: p.content.clone() }));
        }
        self
    }
}

/// An SCP as Organizations holds it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PolicyDocument {
    /// Policy id (`p-...`).
    pub policy_id: String,
    /// The document, as Organizations returns it.
    #[serde(skip)]
    pub content: String,
}

/// Read-only context shared by the observation of every tenant in one run.
pub struct Observer<'a> {
    /// Management clients.
    pub clients: &'a Clients,
    /// `tenantry.toml`.
    pub settings: &'a OrgSettings,
    /// The organization, if there is one.
    pub org: Option<&'a OrgOverview>,
    /// Run CloudFormation drift detection on every stack (reconcile).
    pub detect_drift: bool,
    /// The run's organization-wide listings; without it every account is looked up on its own.
    pub index: Option<std::sync::Arc<OrgIndex>>,
    /// Take each account's attached SCPs from the run's index (one listing of every SCP's
    /// targets) rather than asking per account (`ListPoliciesForTarget`). Only for reads that
    /// change nothing (`plan`, `status`): the index is the run's snapshot, while what a lease
    /// holder changes is read fresh under the lease.
    pub listed_attachments: bool,
    /// The state store, whose record history is the last place an account id of a tenant
    /// environment that lost every other mark is looked for.
    pub store: Option<&'a crate::state::StateStore>,
}

impl Observer<'_> {
    /// Observes one tenant: its accounts (found through `record`, else by email and tags), their
    /// OU, tags, SCPs and stacks. Only reads. Stacks are read through a [`MemberSession`], so only
    /// in accounts that passed the guard.
    pub async fn tenant(&self, desired: &DesiredTenant, record: &TenantRecord) -> Result<ObservedTenant> {
        self.tenant_with_tags(desired, record, &BTreeMap::new()).await
    }

    /// The live tags (`ListTagsForResource`) of the accounts the run's index holds under the
    /// emails `desired` declares, account id → tags, all at once: read while the tenant's state
    /// record is (it usually names the same accounts), for [`Observer::tenant_with_tags`]. Only
    /// reads; without an index, nothing.
    pub async fn declared_accounts_tags(
        &self,
        desired: &DesiredTenant,
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        let Some(index) = self.index.as_deref() else { return Ok(BTreeMap::new()) };
        let ids: std::collections::BTreeSet<String> =
            desired.accounts.iter().filter_map(|a| index.account_by_email(&a.email).map(|s| s.id.clone())).collect();
        let read = ids.into_iter().map(|id| async move { org::tags(&self.clients.org, &id).await.map(|t| (id, t)) });
        Ok(futures::future::try_join_all(read).await?.into_iter().collect())
    }

    /// [`Observer::tenant`], with the live tags of some accounts read already in this run
    /// (account id → tags, from [`Observer::declared_accounts_tags`]); the others are read here.
    pub async fn tenant_with_tags(
        &self,
        desired: &DesiredTenant,
        record: &TenantRecord,
        tags: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> Result<ObservedTenant> {
        let mut accounts = BTreeMap::new();
        if self.index.is_some() {
            // Both environments at once: with the run's index, nothing is listed per tenant.
            let each = desired.accounts.iter().map(|want| async move {
                let env = want.environment;
                let obs = self.account(desired, env, record.accounts.get(&env), &mut None, tags).await?;
                Ok::<_, Error>((env, obs))
            });
            accounts.extend(futures::future::try_join_all(each).await?);
        } else {
            let mut listing: Option<(Vec<AccountSummary>, Vec<CreateRequest>)> = None;
            for want in &desired.accounts {
                let env = want.environment;
                let obs = self.account(desired, env, record.accounts.get(&env), &mut listing, tags).await?;
                accounts.insert(env, obs);
            }
        }
        let scps = self.shared_scps(desired, &accounts).await?;
        Ok(ObservedTenant { tenant: desired.id.clone(), accounts, scps })
    }

    /// The content-addressed SCPs `desired` wants, name → the policy and its document (`None`:
    /// there is none). Through the run's index each is read once per run; the id it is attached
    /// to one of the tenant's accounts with saves a listing.
    async fn shared_scps(
        &self,
        desired: &DesiredTenant,
        accounts: &BTreeMap<Environment, AccountObservation>,
    ) -> Result<BTreeMap<String, Option<PolicyDocument>>> {
        let c = &self.clients.org;
        let attached: BTreeMap<&str, &str> = accounts
            .values()
            .filter_map(|o| match o {
                AccountObservation::Found(f) => Some(f.attached.iter().map(|(id, name)| (name.as_str(), id.as_str()))),
                _ => None,
            })
            .flatten()
            .collect();
        let mut listing: Option<BTreeMap<String, String>> = None;
        let mut out = BTreeMap::new();
        for p in desired.policies() {
            if out.contains_key(&p.name) || self.org.is_none() {
                out.entry(p.name.clone()).or_insert(None);
                continue;
            }
            let hint = attached.get(p.name.as_str()).copied();
            let found = match self.index.as_deref() {
                Some(index) => index.shared_scp(c, &p.name, hint).await?,
                None => {
                    let id = match hint {
                        Some(id) => Some(id.to_string()),
                        None => {
                            if listing.is_none() {
                                listing = Some(org::scps(c).await?);
                            }
                            listing.as_ref().and_then(|l| l.get(&p.name).cloned())
                        }
                    };
                    index::read_scp(c, &p.name, id.as_deref()).await?
                }
            };
            out.insert(p.name.clone(), found);
        }
        Ok(out)
    }

    /// One environment of a tenant: the account found for it ([`Observer::locate`]), passed
    /// through the guard, with its OU, tags (from `read_tags` when this run read them already),
    /// SCPs and stacks; or why it is missing, being created or refused.
    async fn account(
        &self,
        desired: &DesiredTenant,
        env: Environment,
        rec: Option<&crate::state::AccountRecord>,
        listing: &mut Option<(Vec<AccountSummary>, Vec<CreateRequest>)>,
        read_tags: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> Result<AccountObservation> {
        let Some(overview) = self.org else { return Ok(AccountObservation::Missing) };
        let (summary, found_by) = match self.locate(desired, env, rec, listing).await? {
            Located::Account(summary, found_by) => (summary, found_by),
            Located::Not(observation) => return Ok(observation),
        };
        let tags = match read_tags.get(&summary.id) {
            Some(tags) => tags.clone(),
            None => org::tags(&self.clients.org, &summary.id).await?,
        };
        let verified = match self.guard(desired, env, rec, &summary, &tags, found_by) {
            Ok(v) => v,
            Err(refused) => return Ok(refused),
        };
        if let Some(refused) = self.stacks_elsewhere(&summary, &tags, rec, found_by) {
            return Ok(refused);
        }
        // What Organizations says of the account and what its own stacks say are independent
        // reads (the session's into the member account, whose request rates are its own).
        let ((parent_id, parent_path, desired_ou_id), (attached, detached_scps), stacks) = futures::try_join!(
            self.placement(overview, &summary.id, &desired.account(env).ou_path),
            async {
                let listed = match self.index.as_deref().filter(|_| self.listed_attachments) {
                    Some(index) => index.attached_scps(&self.clients.org, &summary.id).await?,
                    None => None,
                };
                let attached = match listed {
                    Some(attached) => attached,
                    None => org::attached_scps(&self.clients.org, &summary.id).await?,
                };
                let detached_scps = self.detached_scps(desired, env, rec, &attached).await?;
                Ok((attached, detached_scps))
            },
            async {
                match summary.status == AccountStatus::Active {
                    true => self.stacks(&verified, rec).await,
                    false => Ok(BTreeMap::new()),
                }
            },
        )?;
        if let Some(refused) = self.region_unknown(&summary, &tags, found_by, &stacks) {
            return Ok(refused);
        }
        Ok(AccountObservation::Found(Box::new(ObservedAccount {
            account: summary,
            tags,
            parent_id,
            parent_path,
            recorded_tag_keys: rec.map(|r| r.tag_keys.clone()).unwrap_or_default(),
            desired_ou_id,
            attached,
            detached_scps,
            stacks,
            found_by,
        })))
    }

    /// Finds the account of a tenant environment, in this order: the account state records; the
    /// one its recorded `CreateAccount` request created (or `Creating` while it runs); the one
    /// with the file's email, or an in-progress request for the file's account name; else, before
    /// the plan may say "create", any account that is this environment's by its name, a recorded
    /// email, its tags or its SCPs ([`Observer::identity`]).
    async fn locate(
        &self,
        desired: &DesiredTenant,
        env: Environment,
        rec: Option<&crate::state::AccountRecord>,
        listing: &mut Option<(Vec<AccountSummary>, Vec<CreateRequest>)>,
    ) -> Result<Located> {
        let c = &self.clients.org;
        if let Some(id) = rec.and_then(|r| r.account_id.clone()) {
            let indexed = self.index.as_deref().and_then(|i| i.account(&id)).cloned();
            let summary = match indexed {
                Some(s) => Some(s),
                None => org::describe_account(c, &id).await?,
            };
            return Ok(match summary {
                Some(s) => Located::Account(s, FoundBy::Recorded),
                None => Located::Not(AccountObservation::Refused {
                    account_id: Some(id.clone()),
                    reason: format!("state records account {id}, which is not in the organization (closed or removed?); tenantry will not create a second account — investigate, then fix or delete the state record s3://<state bucket>/tenants/{}.json", desired.id),
                }),
            });
        }
        if let Some(located) = self.by_create_request(desired, env, rec).await? {
            return Ok(located);
        }
        let want = desired.account(env);
        // The run's index is a snapshot: it is trusted only when state shows no CreateAccount was
        // ever started for this account (one started by another process after the snapshot was
        // taken would be missing from it).
        let started = rec.is_some_and(|r| r.create_started_at.is_some());
        let (found, creating) = match self.index.as_deref().filter(|_| !started) {
            Some(index) => {
                let found = index.account_by_email(&want.email).cloned();
                let creating = match found {
                    Some(_) => None,
                    None => index
                        .creating(c)
                        .await?
                        .iter()
                        .find(|r| r.account_name == want.account_name)
                        .map(|r| r.request_id.clone()),
                };
                (found, creating)
            }
            None => {
                if listing.is_none() {
                    *listing = Some((org::list_accounts(c).await?, org::in_progress_creates(c).await?));
                }
                let (all, creating) = listing.as_ref().expect("just set");
                let found = all.iter().find(|a| a.email.eq_ignore_ascii_case(&want.email)).cloned();
                let creating =
                    creating.iter().find(|r| r.account_name == want.account_name).map(|r| r.request_id.clone());
                (found, creating)
            }
        };
        match (found, creating) {
            (Some(a), _) => Ok(Located::Account(a, FoundBy::Adopted)),
            (None, Some(request_id)) => Ok(Located::Not(AccountObservation::Creating { request_id })),
            (None, None) => self.identity(desired, env, rec, started || self.index.is_none()).await,
        }
    }

    /// The account the recorded `CreateAccount` request created, or `Creating` while it runs;
    /// `None` when there is no request, it is unknown to Organizations (expired after 90 days,
    /// or never carried out) or it failed (it created nothing).
    async fn by_create_request(
        &self,
        desired: &DesiredTenant,
        env: Environment,
        rec: Option<&crate::state::AccountRecord>,
    ) -> Result<Option<Located>> {
        let c = &self.clients.org;
        let Some(req) = rec.and_then(|r| r.create_request_id.as_deref()) else { return Ok(None) };
        let Some(status) = org::create_status(c, req).await? else {
            tracing::warn!(tenant = %desired.id, %env, request = req, "Organizations does not know the recorded CreateAccount request; looking for the account");
            return Ok(None);
        };
        match (&status.state, &status.account_id) {
            (CreateRequestState::InProgress, _) => {
                Ok(Some(Located::Not(AccountObservation::Creating { request_id: req.to_string() })))
            }
            (CreateRequestState::Succeeded, Some(id)) => {
                Ok(org::describe_account(c, id).await?.map(|s| Located::Account(s, FoundBy::CreateRequest)))
            }
            (CreateRequestState::Failed(reason), _) => {
                tracing::warn!(tenant = %desired.id, %env, request = req, "earlier CreateAccount failed: {reason}{}", failure_hint(reason));
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// Never a second account: with no account by state, request or email, looks for one this
    /// tenant environment already has under another email (the file changed, state was lost) by
    /// name, by an email state recorded, by its tenantry tags, by tenantry's SCPs on an account
    /// without tags, and last by the account id an earlier version of its state record names;
    /// `Missing` only when there is none and none of its per-account SCPs of earlier versions
    /// exist. Several candidates, or such SCPs without an account, are refused.
    async fn identity(
        &self,
        desired: &DesiredTenant,
        env: Environment,
        rec: Option<&crate::state::AccountRecord>,
        fresh: bool,
    ) -> Result<Located> {
        let claim = desired.claim(env, rec);
        let (mut found, own_scps) = self.identity_candidates(&claim, &desired.account(env).account_name, fresh).await?;
        let refused = |reason: String| Ok(Located::Not(AccountObservation::Refused { account_id: None, reason }));
        match found.len() {
            0 if own_scps.is_empty() => match self.recorded_earlier(desired, env).await? {
                Some(summary) => Ok(Located::Account(summary, FoundBy::Identity)),
                None => Ok(Located::Not(AccountObservation::Missing)),
            },
            0 => refused(format!(
                "no account of this tenant environment was found, but its SCPs exist ({}): its account was created once and has lost every mark of it (state, tags, name, email). tenantry will not create a second one: find the account and tag it {}={}, {}={env}; or, if it was closed for good, delete those SCPs",
                own_scps.join(", "),
                crate::tenant::tags::TENANT,
                desired.id,
                crate::tenant::tags::ENVIRONMENT
            )),
            1 => Ok(Located::Account(found.remove(0).0, FoundBy::Identity)),
            _ => {
                let list: Vec<String> =
                    found.iter().map(|(a, why)| format!("{} \"{}\" <{}> ({why})", a.id, a.name, a.email)).collect();
                refused(format!("several accounts could be this tenant environment's: {}; tenantry will neither create another nor pick one — close or retag the ones that are not, then re-run", list.join("; ")))
            }
        }
    }

    /// The account an earlier version of the tenant's state record names for `env`
    /// ([`crate::state::StateStore::earlier_account_ids`], once per run through the index), if
    /// it is still in the organization.
    async fn recorded_earlier(&self, desired: &DesiredTenant, env: Environment) -> Result<Option<AccountSummary>> {
        let Some(store) = self.store else { return Ok(None) };
        let earlier = match self.index.as_deref() {
            Some(index) => index.earlier_account_ids(store, &desired.id).await,
            None => store.earlier_account_ids(&desired.id).await,
        };
        let Some(id) = earlier.map_err(Box::new)?.remove(&env) else { return Ok(None) };
        if let Some(a) = self.index.as_deref().and_then(|i| i.account(&id)) {
            return Ok(Some(a.clone()));
        }
        Ok(org::describe_account(&self.clients.org, &id).await?)
    }

    /// The blast-radius guard on the account as found (its live tags, email and name): the
    /// verified account, or the refusal with what to do, which depends on how it was found.
    fn guard(
        &self,
        desired: &DesiredTenant,
        env: Environment,
        rec: Option<&crate::state::AccountRecord>,
        summary: &AccountSummary,
        tags: &BTreeMap<String, String>,
        found_by: FoundBy,
    ) -> Result<VerifiedAccount, AccountObservation> {
        let claim = desired.claim(env, rec);
        let live = LiveAccount { id: &summary.id, email: &summary.email, name: &summary.name, tags };
        VerifiedAccount::verify(&claim, &live).map_err(|refusal| {
            let want = desired.account(env);
            let (t, e) = (crate::tenant::tags::TENANT, crate::tenant::tags::ENVIRONMENT);
            let hint = match found_by {
                FoundBy::Adopted => format!("; an account with this tenant's email `{}` exists but is not tagged as this tenant's (or is not only this tenant's). To adopt it, tag it {t}={} and {e}={env}; otherwise change the email", want.email, desired.id),
                FoundBy::Identity => format!(
                    "; account \"{}\" <{}> looks like this tenant's {env} account (by its name, tags or SCPs), so tenantry will not create a second one. If it is, set {env}.email = \"{}\" in tenants/{}.toml (a root email is changed by the account's owner, e.g. with the Account Management API's StartPrimaryEmailUpdate, then in the file); if it is not, rename and retag it",
                    summary.name, summary.email, summary.email, desired.id
                ),
                _ => format!(
                    "; tenantry will not touch it. If it is this tenant's {env} account, make its tags ({t}={}, {e}={env}), root email and name agree with tenants/{}.toml; if it is not, correct or delete the state record tenants/{}.json in the state bucket (tenantry rebuilds a missing record from observation)",
                    desired.id, desired.id, desired.id
                ),
            };
            AccountObservation::Refused { account_id: Some(summary.id.clone()), reason: format!("{refusal}{hint}") }
        })
    }

    /// Refuses an account whose stacks are in another region than `home_region`: the region its
    /// tag names (checked by the guard) or, for an account from before that tag, the region of
    /// the stack ids state records. A changed home_region would look for them elsewhere and
    /// create them all again.
    fn stacks_elsewhere(
        &self,
        summary: &AccountSummary,
        tags: &BTreeMap<String, String>,
        rec: Option<&crate::state::AccountRecord>,
        found_by: FoundBy,
    ) -> Option<AccountObservation> {
        let stacks_region = match tags.contains_key(crate::tenant::tags::HOME_REGION) {
            true => None,
            false => rec
                .filter(|_| found_by == FoundBy::Recorded)
                .and_then(|r| r.stacks.values().find_map(|s| arn_region(&s.stack_id))),
        };
        let region = stacks_region.filter(|r| *r != self.settings.home_region)?;
        Some(AccountObservation::Refused {
            account_id: Some(summary.id.clone()),
            reason: format!(
                "account {}'s tenantry stacks are in region {region} (the stack ids state records), but tenantry.toml says home_region = \"{}\"; set home_region back to \"{region}\" (moving stacks to another region is not supported: it would create them all again)",
                summary.id,
                self.settings.home_region
            ),
        })
    }

    /// Where the account is: its parent's id, the parent's path when it is not the desired OU,
    /// and the desired OU's id if that OU exists (through the run's index where it has them).
    async fn placement(
        &self,
        overview: &OrgOverview,
        account_id: &str,
        ou_path: &str,
    ) -> Result<(String, Option<String>, Option<String>)> {
        let c = &self.clients.org;
        let indexed = match self.index.as_deref() {
            Some(i) => i.parent(c, account_id).await?.map(str::to_string),
            None => None,
        };
        let parent_id = match indexed {
            Some(p) => p,
            None => org::parent(c, account_id).await?,
        };
        let desired_ou_id = match self.index.as_deref().and_then(|i| i.ou(ou_path)) {
            Some(id) => Some(id),
            None => self.find_ou(overview, ou_path).await?,
        };
        let parent_path = if desired_ou_id.as_deref() == Some(parent_id.as_str()) {
            None
        } else {
            match self.index.as_deref().and_then(|i| i.ou_path(&parent_id)) {
                Some(p) => Some(p),
                None => Some(self.ou_path_of(overview, &parent_id).await?),
            }
        };
        Ok((parent_id, parent_path, desired_ou_id))
    }

    /// The tenantry SCPs state records for this account that it no longer wants, are not
    /// attached to it and still exist under their name (`DescribePolicy` each: state could name any policy id), name →
    /// id. Only names tenantry gives: content-addressed ones and this tenant environment's
    /// per-account ones of earlier versions.
    async fn detached_scps(
        &self,
        desired: &DesiredTenant,
        env: Environment,
        rec: Option<&crate::state::AccountRecord>,
        attached: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>> {
        let legacy = crate::desired::legacy_policy_prefix(&desired.id, env);
        let wanted = |name: &str| desired.account(env).policies.iter().any(|p| p.name == name);
        let mut out = BTreeMap::new();
        for (name, r) in rec.map(|r| &r.policies).into_iter().flatten() {
            let ours = crate::desired::shared_policy_parts(name).is_some() || name.starts_with(&legacy);
            if !ours || wanted(name) || attached.values().any(|n| n == name) {
                continue;
            }
            if let Some(doc) = index::read_scp(&self.clients.org, name, Some(&r.policy_id)).await? {
                out.insert(name.clone(), doc.policy_id);
            }
        }
        Ok(out)
    }

    /// The account's `tenantry-*` stacks with their templates (`GetTemplate`, all of the
    /// account's at once) and, in reconcile, their resource drift, read through a session in the
    /// verified account. A template is not read when `rec` shows tenantry deployed (or verified)
    /// this stack's template at the time the stack still reports as its last change
    /// ([`template_known`]). Without drift detection (nothing but reads) the stacks are read
    /// first, and nothing read is returned unless the account the session acts in is shown:
    /// by the account in every stack's ARN (the answer to `DescribeStacks`, signed with the
    /// session's credentials), or else by the session's check (`GetCallerIdentity`); with
    /// drift detection the check comes first (`DetectStackDrift` starts an operation).
    async fn stacks(
        &self,
        verified: &VerifiedAccount,
        rec: Option<&crate::state::AccountRecord>,
    ) -> Result<BTreeMap<String, ObservedStack>> {
        let retry_for = std::time::Duration::from_secs(self.settings.assume_role_timeout_seconds);
        let (role, region) = (&self.settings.access_role, &self.settings.home_region);
        if !self.detect_drift {
            let unchecked = MemberSession::assume_unchecked(self.clients, verified, role, region, retry_for).await?;
            let read = read_stacks(unchecked.cfn_for_reads(), rec).await;
            let shown =
                read.as_ref().is_ok_and(|stacks| unchecked.shown_by_arns(stacks.values().map(|s| s.stack_id.as_str())));
            if !shown {
                unchecked.check().await?;
            }
            return read;
        }
        let session = MemberSession::assume(self.clients, verified, role, region, retry_for).await?;
        let mut stacks = read_stacks(&session.cfn, rec).await?;
        for (name, stack) in stacks.iter_mut() {
            if stack.status.is_in_progress() || stack.status.is_deleted() {
                continue;
            }
            if !stack.status.is_complete() || stack.status.needs_replacement() {
                stack.resource_drift =
                    ResourceDrift::Unsupported(format!("not checked: the stack is {}", stack.status));
            } else {
                stack.resource_drift = cfn::detect_drift(
                    &session.cfn,
                    name,
                    std::time::Duration::from_secs(self.settings.stack_timeout_seconds.min(600)),
                )
                .await?;
            }
        }
        Ok(stacks)
    }

    /// Refuses an account tenantry created, found without state, that carries no home-region tag
    /// and no tenantry stack here: nothing tells where its stacks are, and creating them here
    /// could duplicate them in another region.
    fn region_unknown(
        &self,
        summary: &AccountSummary,
        tags: &BTreeMap<String, String>,
        found_by: FoundBy,
        stacks: &BTreeMap<String, ObservedStack>,
    ) -> Option<AccountObservation> {
        let managed = tags.get(crate::tenant::tags::MANAGED_BY).map(String::as_str) == Some("tenantry");
        let unknown = managed
            && found_by != FoundBy::Recorded
            && !tags.contains_key(crate::tenant::tags::HOME_REGION)
            && stacks.is_empty()
            && summary.status == AccountStatus::Active;
        unknown.then(|| AccountObservation::Refused {
            account_id: Some(summary.id.clone()),
            reason: format!(
                "account {} was created by tenantry but carries no {} tag, state does not record it, and it has no tenantry stack in {}: its stacks may be in another region. Tag it {}=<the region of its tenantry stacks> and re-run",
                summary.id,
                crate::tenant::tags::HOME_REGION,
                self.settings.home_region,
                crate::tenant::tags::HOME_REGION
            ),
        })
    }

    /// Accounts that may be `claim`'s tenant environment's although none carries the file's email:
    /// the account named `account_name`, any with an email `claim` knows, and any tagged with
    /// the tenant and environment (`ListTagsForResource` on every account of the organization, once
    /// per run through the index, or afresh when `fresh`), and any that carries one of the tenant
    /// environment's SCPs (`ListPolicies`, then `ListTargetsForPolicy` for each of its SCPs).
    /// Each comes with why it matched; also the names of the tenant environment's SCPs that
    /// exist, attached or not (proof that its account was created once).
    async fn identity_candidates(
        &self,
        claim: &Claim<'_>,
        account_name: &str,
        fresh: bool,
    ) -> Result<(Vec<(AccountSummary, &'static str)>, Vec<String>)> {
        let c = &self.clients.org;
        let management = self.org.map(|o| o.management_account_id.as_str()).unwrap_or_default();
        let (accounts, tags, scps, unmarked) = match self.index.as_deref().filter(|_| !fresh) {
            Some(index) => (
                index.accounts().cloned().collect::<Vec<_>>(),
                index.account_tags(c, management).await?.clone(),
                index.scps(c).await?.clone(),
                index.unmarked_tenantry_accounts(c, claim.claims, self.store).await?.clone(),
            ),
            None => {
                let accounts = org::list_accounts(c).await?;
                let tags = index::tags_of(c, accounts.iter().map(|a| &a.id), management).await?;
                let unmarked = index::unmarked_tenantry_accounts(c, &accounts, &tags, claim.claims, self.store).await?;
                (accounts, tags, org::scps(c).await?, unmarked)
            }
        };
        // Accounts carrying this tenant environment's per-account SCPs of earlier versions
        // (`tenantry-<tenant>-<env>-*`; content-addressed SCPs are no one tenant's).
        let prefix = crate::desired::legacy_policy_prefix(claim.tenant, claim.environment);
        let mut with_scps = std::collections::BTreeSet::new();
        let own_scps: Vec<String> = scps
            .keys()
            .filter(|name| name.starts_with(&prefix) && crate::desired::shared_policy_parts(name).is_none())
            .cloned()
            .collect();
        for name in &own_scps {
            with_scps.extend(org::policy_account_targets(c, &scps[name]).await?);
        }
        Ok((identity_matches(claim, account_name, &accounts, &tags, &with_scps, &unmarked), own_scps))
    }

    /// The path of an OU id (`""` for the root), walking up with `ListParents` and
    /// `DescribeOrganizationalUnit`.
    pub async fn ou_path_of(&self, overview: &OrgOverview, id: &str) -> Result<String> {
        let mut parts = Vec::new();
        let mut current = id.to_string();
        while current != overview.root_id && parts.len() < 6 {
            parts.push(org::ou_name(&self.clients.org, &current).await?);
            current = org::parent(&self.clients.org, &current).await?;
        }
        parts.reverse();
        Ok(parts.join("/"))
    }

    /// The id of the OU at `path` under the root, if every OU on the way exists.
    pub async fn find_ou(&self, overview: &OrgOverview, path: &str) -> Result<Option<String>> {
        let mut parent = overview.root_id.clone();
        for seg in path.split('/') {
            match org::child_ous(&self.clients.org, &parent).await?.remove(seg) {
                Some(id) => parent = id,
                None => return Ok(None),
            }
        }
        Ok(Some(parent))
    }
}

/// An account's `tenantry-*` stacks (`DescribeStacks`) with the templates not known from `rec`
/// (`GetTemplate`, all at once); see [`template_known`].
async fn read_stacks(
    cfn_client: &aws_sdk_cloudformation::Client,
    rec: Option<&crate::state::AccountRecord>,
) -> Result<BTreeMap<String, ObservedStack>> {
    let mut stacks = cfn::tenantry_stacks(cfn_client).await?;
    let reads = stacks.values().filter(|stack| {
        !(stack.status.is_in_progress()
            || stack.status.is_deleted()
            || template_known(stack, rec.and_then(|r| r.stacks.get(&stack.name))))
    });
    let bodies = futures::future::try_join_all(reads.map(|stack| async move {
        cfn::template_body(cfn_client, &stack.name).await.map(|body| (stack.name.clone(), body))
    }))
    .await?;
    for (name, body) in bodies {
        if let Some(stack) = stacks.get_mut(&name) {
            stack.template_body = body;
        }
    }
    Ok(stacks)
}

/// Whether the template `stack` runs is known without reading it: state (`rec`) records that
/// tenantry deployed, or read and verified, this stack (same stack id) at the version its
/// version tag names, and left it in the status it still has at the very `changed_at` it still
/// reports. Any later update of the stack, by anyone, moves its `LastUpdatedTime` (and takes a
/// stack that was only created out of `CREATE_COMPLETE`). Pure.
pub fn template_known(stack: &ObservedStack, rec: Option<&crate::state::StackRecord>) -> bool {
    rec.is_some_and(|r| {
        !r.stack_id.is_empty()
            && r.stack_id == stack.stack_id
            && stack.version.as_deref() == Some(r.version.as_str())
            && r.status == stack.status.to_string()
            && r.changed_at.is_some()
            && r.changed_at == stack.changed_at
    })
}

/// The region of a CloudFormation stack ARN (`arn:aws:cloudformation:<region>:...`), if it is one.
fn arn_region(arn: &str) -> Option<String> {
    let mut parts = arn.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("arn"), Some(_), Some("cloudformation"), Some(region)) if !region.is_empty() => Some(region.to_string()),
        _ => None,
    }
}

/// The accounts among `accounts` that identify as `claim`'s tenant environment (see
/// [`Observer::identity_candidates`]), each with why. Pure.
pub fn identity_matches(
    claim: &Claim<'_>,
    account_name: &str,
    accounts: &[AccountSummary],
    tags: &BTreeMap<String, BTreeMap<String, String>>,
    with_scps: &std::collections::BTreeSet<String>,
    unmarked: &std::collections::BTreeSet<String>,
) -> Vec<(AccountSummary, &'static str)> {
    use crate::tenant::tags::{ENVIRONMENT, TENANT};
    accounts
        .iter()
        .filter_map(|a| {
            let t = tags.get(&a.id);
            let why = if t.is_some_and(|t| {
                t.get(TENANT).map(String::as_str) == Some(claim.tenant)
                    && t.get(ENVIRONMENT).map(String::as_str) == Some(claim.environment.as_str())
            }) {
                "tagged as this tenant environment's"
            } else if a.name == account_name {
                "same account name"
            } else if claim.recorded_emails.iter().any(|e| e.eq_ignore_ascii_case(&a.email)) {
                "an email recorded for this tenant environment"
            } else if with_scps.contains(&a.id) {
                "carries this tenant environment's SCPs"
            } else if unmarked.contains(&a.id) {
                "carries tenantry's SCPs, and no tenant file declares its root email"
            } else {
                return None;
            };
            Some((a.clone(), why))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{arn_region, template_known, ObservedStack, ResourceDrift};
    use crate::state::StackRecord;

    #[test]
    fn a_template_is_known_only_while_the_stack_is_as_tenantry_left_it() {
        let stack = |status: &str, changed_at: Option<&str>| ObservedStack {
            name: "tenantry-baseline".into(),
            stack_id: "arn:aws:cloudformation:us-east-1:1:stack/tenantry-baseline/a".into(),
            status: status.into(),
            version: Some("v1".into()),
            tags: Default::default(),
            changed_at: changed_at.map(str::to_string),
            template_body: None,
            resource_drift: ResourceDrift::NotChecked,
        };
        let rec = StackRecord {
            blueprint: "baseline".into(),
            version: "v1".into(),
            status: "CREATE_COMPLETE".into(),
            stack_id: "arn:aws:cloudformation:us-east-1:1:stack/tenantry-baseline/a".into(),
            changed_at: Some("2026-12-05T01:00:00.123Z".into()),
        };
        let created = stack("CREATE_COMPLETE", Some("2026-12-05T01:00:00.123Z"));
        assert!(template_known(&created, Some(&rec)));
        assert!(!template_known(&created, None), "nothing recorded");
        // Updated since (by anyone): a later time, another status, or no time at all.
        assert!(!template_known(&stack("UPDATE_COMPLETE", Some("2026-12-05T02:00:00Z")), Some(&rec)));
        assert!(!template_known(&stack("UPDATE_COMPLETE", Some("2026-12-05T01:00:00.123Z")), Some(&rec)));
        assert!(!template_known(&stack("CREATE_COMPLETE", None), Some(&rec)));
        // Another stack of that name, another version tag, or a record without a time.
        let mut other = created.clone();
        other.stack_id = "arn:aws:cloudformation:us-east-1:1:stack/tenantry-baseline/b".into();
        assert!(!template_known(&other, Some(&rec)));
        let mut retagged = created.clone();
        retagged.version = Some("v2".into());
        assert!(!template_known(&retagged, Some(&rec)));
        assert!(!template_known(&created, Some(&StackRecord { changed_at: None, ..rec.clone() })));
        assert!(!template_known(&created, Some(&StackRecord { stack_id: String::new(), ..rec })));
    }

    #[test]
    fn the_region_of_a_stack_id() {
        assert_eq!(
            arn_region("arn:aws:cloudformation:eu-west-1:111122223333:stack/tenantry-baseline/abc").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            arn_region("arn:aws-us-gov:cloudformation:us-gov-west-1:1:stack/x/y").as_deref(),
            Some("us-gov-west-1")
        );
        assert_eq!(arn_region(""), None);
        assert_eq!(arn_region("arn:aws:s3:::bucket"), None);
    }
}
