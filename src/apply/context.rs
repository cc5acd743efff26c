//! What apply and promotion share: the management account's clients, `tenantry.toml`, the state
//! store and the state location. Both executors reach AWS only through it, the adapters in
//! `aws/`, and the guard ([`crate::aws::member::VerifiedAccount`]).

use std::sync::Arc;
use std::time::Duration;

use super::{Error, Result, StateLocationChanged};
use crate::aws::{org, Clients};
use crate::config::OrgSettings;
use crate::desired::DesiredTenant;
use crate::observe::{AccountObservation, ObservedTenant, Observer, OrgIndex, OrgOverview};
use crate::plan::{self, Change, Step};
use crate::state::{AccountRecord, Location, StateStore};
use crate::tenant::tags;

/// The part of a run that every executor shares.
pub struct Context {
    /// Management account clients.
    pub clients: Clients,
    /// `tenantry.toml`.
    pub settings: OrgSettings,
    /// State store.
    pub store: StateStore,
    /// The management account tenantry runs in.
    pub management_account_id: String,
    /// Who runs this command (STS `GetCallerIdentity`'s ARN): recorded in the ledger.
    pub caller_arn: String,
    /// The state records of tenants no tenant file declares (their file removed), by the id
    /// their key names, read when the run started.
    pub removed_tenants: Vec<(String, crate::state::TenantRecord)>,
    /// What the state bucket was as a state location when first asked in this run.
    pub state_location: tokio::sync::OnceCell<Location>,
}

impl Context {
    /// The organization and its root (`DescribeOrganization`, `ListRoots`); `None` when the
    /// management account is in no organization yet.
    pub async fn organization(&self) -> Result<Option<OrgOverview>> {
        Ok(org::overview(&self.clients.org).await?)
    }

    /// How to wait for one stack operation ([`Clients::stack_wait`]).
    pub fn stack_wait(&self) -> crate::aws::cfn::Wait {
        self.clients.stack_wait(&self.settings)
    }

    /// An observer for this run, with the organization-wide listings of `index` when there are
    /// (without, every account is looked up on its own).
    pub fn observer<'a>(&'a self, org: Option<&'a OrgOverview>, index: Option<Arc<OrgIndex>>) -> Observer<'a> {
        Observer {
            clients: &self.clients,
            settings: &self.settings,
            org,
            detect_drift: false,
            listed_attachments: false,
            index,
            store: Some(&self.store),
        }
    }

    /// Makes sure the state bucket exists, private, encrypted and versioned
    /// ([`StateStore::ensure_bucket`]), and marks a new state location as such
    /// ([`StateStore::mark`]; a bucket that holds records but no marker is left unmarked: only
    /// `tenantry state init` or `state migrate` mark it). Called before the first write of a run.
    pub async fn ensure_state_bucket(&self) -> Result<()> {
        self.store.ensure_bucket(&self.settings.home_region).await?;
        if *self.location().await? == Location::New {
            self.store.mark(&self.management_account_id, &self.settings.home_region).await?;
        }
        Ok(())
    }

    /// What the state bucket is as a state location, read once per run ([`StateStore::location`]).
    pub async fn location(&self) -> Result<&Location> {
        Ok(self.state_location.get_or_try_init(|| self.store.location()).await?)
    }

    /// Refuses to go on when the state bucket is a new location (no marker, no tenant records)
    /// but `observed` shows accounts tenantry created (tagged `tenantry:managed-by=tenantry`)
    /// that state does not record: the state location changed (`state_bucket` or `home_region`)
    /// or the bucket was lost, and going on would take an empty state for the truth. Errors:
    /// [`StateLocationChanged`], or the S3 error reading the location.
    pub async fn check_state_location(&self, observed: &ObservedTenant) -> Result<()> {
        match self.state_location_changed(observed).await? {
            Some(changed) => Err(changed.into()),
            None => Ok(()),
        }
    }

    /// What [`Context::check_state_location`] refuses, as a value: `Some` when the state location
    /// changed. Errors: the S3 error reading the location.
    pub async fn state_location_changed(&self, observed: &ObservedTenant) -> Result<Option<StateLocationChanged>> {
        let unknown: Vec<String> = observed
            .accounts
            .iter()
            .filter_map(|(env, obs)| match obs {
                AccountObservation::Found(f)
                    if f.found_by != crate::observe::FoundBy::Recorded
                        && f.tags.get(tags::MANAGED_BY).map(String::as_str) == Some("tenantry") =>
                {
                    Some(format!("{} {env} {}", observed.tenant, f.account.id))
                }
                _ => None,
            })
            .collect();
        if unknown.is_empty() || *self.location().await? != Location::New {
            return Ok(None);
        }
        Ok(Some(StateLocationChanged { bucket: self.store.bucket().to_string(), accounts: unknown }))
    }

    /// Rebuilds a tenant's state record from observation when it does not record an account
    /// that exists (the state object was lost or deleted): under the tenant's lease, reads state,
    /// observes the tenant (every account through the guard), writes the ids of the accounts
    /// found, and says so on stderr. Returns the record. Errors: no organization, the lease is held
    /// past `lease_wait_seconds`, an account is refused by the guard, an AWS call failed.
    ///
    /// `lease_held`: the caller holds the tenant's lease already (it is then neither taken nor
    /// released here).
    pub async fn rebuild_record(
        &self,
        desired: &DesiredTenant,
        lease_held: bool,
    ) -> Result<crate::state::TenantRecord> {
        let overview = self.organization().await?.ok_or(Error::NoOrganization)?;
        let s = &self.settings;
        let lease = match lease_held {
            true => None,
            false => Some(
                self.store
                    .acquire_lease(
                        &desired.id,
                        Duration::from_secs(s.lease_ttl_seconds),
                        Duration::from_secs(s.lease_wait_seconds),
                    )
                    .await?,
            ),
        };
        let rebuilt = async {
            let mut tracked = self.store.read(&desired.id).await?;
            let observed = self.observer(Some(&overview), None).tenant(desired, &tracked.record).await?;
            self.check_state_location(&observed).await?;
            let plan = plan::tenant(desired, &observed);
            if !plan.refusals.is_empty() {
                return Err(Error::Refused(plan.refusals));
            }
            let mut found = Vec::new();
            for step in &plan.steps {
                let Step { change: Change::RecordAccount { account_id, .. }, environment } = step else { continue };
                let AccountObservation::Found(account) = &observed.accounts[environment] else { continue };
                let want = desired.account(*environment);
                let rec = tracked.record.accounts.entry(*environment).or_insert_with(|| AccountRecord { email: want.email.clone(), ..Default::default() });
                rec.account_id = Some(account_id.clone());
                // What apply records at its end, as far as observation tells: the file's tags the
                // account carries are taken as tenantry's (so that one the file drops later is
                // removed), and its OU when it is the file's.
                rec.tag_keys = want.tags.keys().filter(|k| account.tags.contains_key(*k)).cloned().collect();
                if account.desired_ou_id.as_deref() == Some(account.parent_id.as_str()) {
                    rec.ou_path = Some(want.ou_path.clone());
                }
                found.push(format!("{environment} {account_id}"));
            }
            if !found.is_empty() {
                self.store.write(&mut tracked).await?;
                eprintln!("state: tenant {} had no record of account(s) {}; rebuilt from observation in s3://{}/tenants/{}.json", desired.id, found.join(", "), self.store.bucket(), desired.id);
            }
            Ok(tracked.record)
        }
        .await;
        if let Some(Err(e)) = match lease {
            Some(l) => Some(l.release().await),
            None => None,
        } {
            tracing::warn!(tenant = %desired.id, "could not release lease (it will expire): {e:#}");
        }
        rebuilt
    }
}
