//! The organization-wide listings one run shares across all its tenants, so that the number of
//! Organizations calls grows with the number of pages, not with tenants × accounts:
//!
//! - every account (`ListAccounts`, 20 per page), to find recorded accounts and adopt accounts by
//!   email without a `DescribeAccount` per account;
//! - the OUs on the tenants' OU paths (`ListOrganizationalUnitsForParent` for each parent on the
//!   way), and the accounts in each of those OUs (`ListAccountsForParent`), which gives every
//!   correctly placed account's parent without a `ListParents` per account (listed in the
//!   background while the tenants' first reads go on: only placement needs it);
//! - the `CreateAccount` requests in progress (`ListCreateAccountStatus`), loaded only when some
//!   tenant has an account that is neither recorded nor found;
//! - for reads outside a lease (`plan`, `status`), every account's directly attached SCPs:
//!   `ListTargetsForPolicy` (all pages) of every SCP `ListPolicies` lists, instead of a
//!   `ListPoliciesForTarget` per account;
//! - the content-addressed SCPs the tenants want (`DescribePolicy` once per distinct policy per
//!   run, through the id it is attached with; `ListPolicies` only for one attached nowhere seen).
//!
//! An index is a snapshot: what it does not know (an account created after it was taken, an
//! account outside the tenants' OUs) the observer asks AWS directly. It is never used to decide
//! that an account is missing when state shows that a `CreateAccount` was started for it (see
//! [`crate::state::AccountRecord::create_started_at`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use crate::aws::Error;

/// Results of the index: its listings are Organizations calls.
type Result<T, E = Error> = std::result::Result<T, E>;
use aws_sdk_organizations::Client;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::OnceCell;

use super::{AccountSummary, CreateRequest, OrgOverview, PolicyDocument};
use crate::aws::org;
use crate::guard::Claims;
use crate::state::StateStore;
use crate::tenant::Environment;

/// The parent of every account in `ous` (account → OU id): `ListAccountsForParent` (all pages)
/// for each, up to 8 OUs at once.
async fn list_parents(c: Client, ous: Vec<String>) -> Result<BTreeMap<String, String>> {
    let listed: Vec<(String, Vec<String>)> = futures::stream::iter(ous)
        .map(|ou| {
            let c = c.clone();
            async move { org::accounts_for_parent(&c, &ou).await.map(|a| (ou, a)) }
        })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    let mut parents = BTreeMap::new();
    for (ou, accounts) in listed {
        for account in accounts {
            parents.insert(account, ou.clone());
        }
    }
    Ok(parents)
}

/// One content-addressed SCP looked up (or to be looked up) by this run.
type ScpCell = Arc<OnceCell<Option<PolicyDocument>>>;

/// The account ids earlier versions of one tenant's state record name, read once per run.
type EarlierCell = Arc<OnceCell<BTreeMap<Environment, String>>>;

/// The task listing the parents of the accounts in the tenants' OUs (account → OU id).
type ParentsListing = tokio::task::JoinHandle<Result<BTreeMap<String, String>>>;

/// Organization-wide listings for one run (see the module documentation).
#[derive(Debug)]
pub struct OrgIndex {
    accounts: BTreeMap<String, AccountSummary>,
    /// Account → OU id, for the accounts in `parent_ous`; see [`OrgIndex::parent`].
    parents: OnceCell<BTreeMap<String, String>>,
    /// The listing of `parents`, started by [`OrgIndex::load`].
    parents_listing: Mutex<Option<ParentsListing>>,
    /// The ids of the OUs on the tenants' OU paths that exist.
    parent_ous: Vec<String>,
    ous: Mutex<BTreeMap<String, String>>,
    creating: OnceCell<Vec<CreateRequest>>,
    tags: OnceCell<BTreeMap<String, BTreeMap<String, String>>>,
    scps: OnceCell<BTreeMap<String, String>>,
    attachments: OnceCell<BTreeMap<String, BTreeMap<String, String>>>,
    shared_scps: Mutex<BTreeMap<String, ScpCell>>,
    unmarked: OnceCell<BTreeSet<String>>,
    earlier: Mutex<BTreeMap<String, EarlierCell>>,
}

impl OrgIndex {
    /// Lists the organization once: `ListAccounts` (all pages), then for each OU on `ou_paths`
    /// (full paths, `a/b/c`) `ListOrganizationalUnitsForParent` along the way; and starts
    /// `ListAccountsForParent` (all pages) for the OUs that exist, in a task of its own whose
    /// result [`Self::parent`] waits for. Errors are the calls' errors (the last listing's are
    /// [`Self::parent`]'s).
    pub async fn load(c: &Client, overview: &OrgOverview, ou_paths: &BTreeSet<String>) -> Result<OrgIndex> {
        // The account listing's pages and the OUs' are independent: one goes on while the other
        // waits for its answers.
        let (accounts, ous) = futures::try_join!(
            async { Ok(org::list_accounts(c).await?.into_iter().map(|a| (a.id.clone(), a)).collect()) },
            Self::load_ous(c, overview, ou_paths)
        )?;
        let parent_ous: Vec<String> = ou_paths.iter().filter_map(|path| ous.get(path).cloned()).collect();
        let listing = tokio::spawn(crate::metrics::for_tenant("-", list_parents(c.clone(), parent_ous.clone())));
        Ok(OrgIndex {
            accounts,
            parents: OnceCell::new(),
            parents_listing: Mutex::new(Some(listing)),
            parent_ous,
            ous: Mutex::new(ous),
            creating: OnceCell::new(),
            tags: OnceCell::new(),
            scps: OnceCell::new(),
            attachments: OnceCell::new(),
            shared_scps: Mutex::new(BTreeMap::new()),
            unmarked: OnceCell::new(),
            earlier: Mutex::new(BTreeMap::new()),
        })
    }

    /// The OUs on `ou_paths` that exist (path → id): `ListOrganizationalUnitsForParent` along
    /// each path.
    async fn load_ous(
        c: &Client,
        overview: &OrgOverview,
        ou_paths: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, String>> {
        let mut ous = BTreeMap::new();
        let mut children: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for path in ou_paths {
            let mut parent = overview.root_id.clone();
            let mut so_far = String::new();
            for seg in path.split('/') {
                if !children.contains_key(&parent) {
                    children.insert(parent.clone(), org::child_ous(c, &parent).await?);
                }
                let Some(id) = children[&parent].get(seg).cloned() else { break };
                so_far = if so_far.is_empty() { seg.to_string() } else { format!("{so_far}/{seg}") };
                ous.insert(so_far.clone(), id.clone());
                parent = id;
            }
        }
        Ok(ous)
    }

    /// The account with this id, if it was in the listing.
    pub fn account(&self, id: &str) -> Option<&AccountSummary> {
        self.accounts.get(id)
    }

    /// The account with this root email (compared case-insensitively), if it was in the listing.
    pub fn account_by_email(&self, email: &str) -> Option<&AccountSummary> {
        self.accounts.values().find(|a| a.email.eq_ignore_ascii_case(email))
    }

    /// Every account in the listing.
    pub fn accounts(&self) -> impl Iterator<Item = &AccountSummary> {
        self.accounts.values()
    }

    /// The parent of an account that sat in one of the tenants' OUs when they were listed
    /// (`None` for any other account). Waits for the listing [`Self::load`] started, whose
    /// error goes to the first caller; lists again (`ListAccountsForParent`) for a later caller
    /// after a failure, or when that listing's task ended without an answer. Errors are the
    /// listing's.
    pub async fn parent(&self, c: &Client, account_id: &str) -> Result<Option<&str>> {
        let parents = self
            .parents
            .get_or_try_init(|| async {
                let started = self.parents_listing.lock().unwrap_or_else(|p| p.into_inner()).take();
                match started {
                    Some(listing) => match listing.await {
                        Ok(listed) => listed,
                        Err(_) => list_parents(c.clone(), self.parent_ous.clone()).await,
                    },
                    None => list_parents(c.clone(), self.parent_ous.clone()).await,
                }
            })
            .await?;
        Ok(parents.get(account_id).map(String::as_str))
    }

    /// The id of the OU at `path`, if it existed or was created by this run.
    pub fn ou(&self, path: &str) -> Option<String> {
        self.ous.lock().unwrap_or_else(|p| p.into_inner()).get(path).cloned()
    }

    /// The path of an OU id, if it is one of the indexed OUs.
    pub fn ou_path(&self, id: &str) -> Option<String> {
        self.ous
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(_, v)| v.as_str() == id)
            .map(|(k, _)| k.clone())
    }

    /// Records an OU this run created (or found) at `path`.
    pub fn insert_ou(&self, path: &str, id: &str) {
        self.ous.lock().unwrap_or_else(|p| p.into_inner()).insert(path.to_string(), id.to_string());
    }

    /// The tags of every listed account but `management` (`ListTagsForResource` each), listed on
    /// first use: only a run about to create an account needs them (to find one the tenant
    /// environment already has under another email or name).
    pub async fn account_tags(
        &self,
        c: &Client,
        management: &str,
    ) -> Result<&BTreeMap<String, BTreeMap<String, String>>> {
        self.tags.get_or_try_init(|| tags_of(c, self.accounts.keys(), management)).await
    }

    /// Every SCP of the organization, name → id (`ListPolicies`), listed on first use (like
    /// [`OrgIndex::account_tags`], only before an account would be created).
    pub async fn scps(&self, c: &Client) -> Result<&BTreeMap<String, String>> {
        self.scps.get_or_try_init(|| org::scps(c)).await
    }

    /// The SCPs attached directly to an account of the listing (policy id → name), from one
    /// listing per run of every SCP's targets (`ListPolicies` through [`Self::scps`], then
    /// `ListTargetsForPolicy`, all pages, for each, at most 8 at once; a policy deleted
    /// meanwhile has none), counted as the run's requests (`-`), not a tenant's. `None` for an
    /// account the listing does not hold: ask it directly. A snapshot of the run's start: only
    /// for reads that change nothing.
    pub async fn attached_scps(&self, c: &Client, account_id: &str) -> Result<Option<BTreeMap<String, String>>> {
        if !self.accounts.contains_key(account_id) {
            return Ok(None);
        }
        Ok(Some(self.attachments(c).await?.get(account_id).cloned().unwrap_or_default()))
    }

    /// Every account's directly attached SCPs, account id → (policy id → name): the listing
    /// behind [`Self::attached_scps`], made once per run.
    pub async fn attachments(&self, c: &Client) -> Result<&BTreeMap<String, BTreeMap<String, String>>> {
        self.attachments
            .get_or_try_init(|| {
                crate::metrics::for_tenant("-", async {
                    let scps = self.scps(c).await?;
                    let targets: Vec<(&String, &String, Vec<String>)> = futures::stream::iter(scps.iter())
                        .map(|(name, id)| async move {
                            match org::policy_account_targets(c, id).await {
                                Ok(accounts) => Ok((name, id, accounts)),
                                Err(e) if e.kind == crate::aws::ErrorKind::NotFound => Ok((name, id, Vec::new())),
                                Err(e) => Err(e),
                            }
                        })
                        .buffer_unordered(8)
                        .try_collect()
                        .await?;
                    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
                    for (name, id, accounts) in targets {
                        for account in accounts {
                            out.entry(account).or_default().insert(id.clone(), name.clone());
                        }
                    }
                    Ok::<_, Error>(out)
                })
            })
            .await
    }

    /// The content-addressed SCP `name` and its document, or `None` when there is none: read once
    /// per run whichever tenant asks first (`DescribePolicy` on `attached_id`, the id it is
    /// attached to some account with, else on the id `ListPolicies` gives).
    pub async fn shared_scp(
        &self,
        c: &Client,
        name: &str,
        attached_id: Option<&str>,
    ) -> Result<Option<PolicyDocument>> {
        let cell =
            self.shared_scps.lock().unwrap_or_else(|p| p.into_inner()).entry(name.to_string()).or_default().clone();
        let found = cell
            .get_or_try_init(|| async {
                let id = match attached_id {
                    Some(id) => Some(id.to_string()),
                    None => self.scps(c).await?.get(name).cloned(),
                };
                read_scp(c, name, id.as_deref()).await
            })
            .await?;
        Ok(found.clone())
    }

    /// Accounts that carry a content-addressed tenantry SCP, whose root email no tenant file
    /// declares and that are not the recorded account of the tenant their tags name
    /// ([`unmarked_tenantry_accounts`]), listed on first use like [`OrgIndex::account_tags`].
    pub async fn unmarked_tenantry_accounts(
        &self,
        c: &Client,
        claims: &Claims,
        store: Option<&StateStore>,
    ) -> std::result::Result<&BTreeSet<String>, super::Error> {
        let tags = self.account_tags(c, &claims.management_account_id).await?;
        self.unmarked
            .get_or_try_init(|| unmarked_tenantry_accounts(c, self.accounts.values(), tags, claims, store))
            .await
    }

    /// The account ids earlier versions of `tenant`'s state record name
    /// ([`StateStore::earlier_account_ids`]), read once per run: a record's history only grows.
    pub async fn earlier_account_ids(
        &self,
        store: &StateStore,
        tenant: &str,
    ) -> std::result::Result<BTreeMap<Environment, String>, crate::state::Error> {
        let cell =
            self.earlier.lock().unwrap_or_else(|p| p.into_inner()).entry(tenant.to_string()).or_default().clone();
        Ok(cell.get_or_try_init(|| store.earlier_account_ids(tenant)).await?.clone())
    }

    /// Records what this run made of the content-addressed SCP `name` (created or restored).
    pub fn set_shared_scp(&self, name: &str, found: Option<PolicyDocument>) {
        let cell = Arc::new(OnceCell::new_with(Some(found)));
        self.shared_scps.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), cell);
    }

    /// `CreateAccount` requests in progress (`ListCreateAccountStatus`), listed on first use.
    pub async fn creating(&self, c: &Client) -> Result<&[CreateRequest]> {
        Ok(self.creating.get_or_try_init(|| org::in_progress_creates(c)).await?.as_slice())
    }
}

/// The tags of each of `accounts` but `management` (`ListTagsForResource` each), by account id.
pub async fn tags_of<'a>(
    c: &Client,
    accounts: impl IntoIterator<Item = &'a String>,
    management: &str,
) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
    let mut out = BTreeMap::new();
    for id in accounts.into_iter().filter(|id| id.as_str() != management) {
        out.insert(id.clone(), org::tags(c, id).await?);
    }
    Ok(out)
}

/// The SCP `id` if it is the one named `name` (`DescribePolicy`): names are unique, and an id
/// from state or a listing is trusted only as far as the policy it names. `None` without an id,
/// for no such policy, or for a policy of another name.
pub async fn read_scp(c: &Client, name: &str, id: Option<&str>) -> Result<Option<PolicyDocument>> {
    let Some(id) = id else { return Ok(None) };
    Ok(match org::policy(c, id).await? {
        Some((real_name, content)) if real_name == name => Some(PolicyDocument { policy_id: id.to_string(), content }),
        _ => None,
    })
}

/// Of `accounts`, those but the management account whose root email no tenant file declares
/// (`claims`) and that carry a content-addressed tenantry SCP (`ListPoliciesForTarget` on each
/// such account): a tenant's account that has lost what ties it to its file. Content-addressed
/// SCPs do not say whose it was, so such an account may be any tenant environment's that is
/// about to create one. Its tags (`tags`: account id → tags) count only together with state:
/// an account whose `tenantry:tenant`/`tenantry:environment` tags name a tenant environment
/// whose state record names this very account (`GetObject` of that record) is that tenant's,
/// whose file was removed — an orphan, not a candidate. A tag alone, which anyone may write,
/// never takes an account out.
pub async fn unmarked_tenantry_accounts<'a>(
    c: &Client,
    accounts: impl IntoIterator<Item = &'a AccountSummary>,
    tags: &BTreeMap<String, BTreeMap<String, String>>,
    claims: &Claims,
    store: Option<&StateStore>,
) -> std::result::Result<BTreeSet<String>, super::Error> {
    use crate::tenant::tags::{ENVIRONMENT, TENANT};
    let mut out = BTreeSet::new();
    let unclaimed = accounts
        .into_iter()
        .filter(|a| a.id != claims.management_account_id && !claims.emails.contains_key(&a.email.to_lowercase()));
    for a in unclaimed {
        let attached = org::attached_scps(c, &a.id).await?;
        if !attached.values().any(|name| crate::desired::shared_policy_parts(name).is_some()) {
            continue;
        }
        let t = tags.get(&a.id);
        let named = t.and_then(|t| Some((t.get(TENANT)?, Environment::from_name(t.get(ENVIRONMENT)?)?)));
        if let (Some((tenant, env)), Some(store)) = (named, store) {
            if crate::tenant::valid_tenant_id(tenant) {
                let record = store.read(tenant).await.map_err(Box::new)?.record;
                let recorded = record.accounts.get(&env).and_then(|r| r.account_id.as_deref());
                if recorded == Some(a.id.as_str()) {
                    continue;
                }
            }
        }
        out.insert(a.id.clone());
    }
    Ok(out)
}
