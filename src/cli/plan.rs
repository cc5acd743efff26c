//! `tenantry plan`: every tenant observed read-only and planned; the plan shown, as JSON, or saved
//! to a file for `apply FILE`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Result;
use futures::stream::{self, StreamExt};
use serde::Serialize;

use super::render::print_plan;
use super::{plan_file, Output};
use crate::apply::{Engine, StateLocationChanged};
use crate::desired::DesiredTenant;
use crate::observe::{ObservedTenant, OrgOverview};
use crate::plan::saved::{self, SavedPlan};
use crate::plan::{self, Plan};

/// OU paths the tenants need → whether each exists.
pub(super) async fn ou_existence(
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

/// The content-addressed SCPs the tenants want, by name, each as found: through the run's
/// index, read once per run (see [`crate::observe::OrgIndex::shared_scp`]); without one,
/// `ListPolicies` and a `DescribePolicy` for each. And the content-addressed SCPs no tenant of
/// the run wants that are attached to nothing (`ListPolicies`, once per run through the index,
/// and `ListTargetsForPolicy` for each such SCP).
pub(super) async fn scp_existence(
    engine: &Engine,
    overview: Option<&OrgOverview>,
    tenants: &[DesiredTenant],
) -> Result<plan::OrgScps> {
    let mut out: BTreeMap<String, plan::WantedScp> = BTreeMap::new();
    for p in tenants.iter().flat_map(DesiredTenant::policies) {
        match out.get_mut(&p.name) {
            Some(w) => w.accounts += 1,
            None => {
                out.insert(p.name.clone(), plan::WantedScp { policy: p.clone(), accounts: 1, found: None });
            }
        }
    }
    if overview.is_none() {
        return Ok(plan::OrgScps { wanted: out, unused: BTreeMap::new() });
    }
    let c = &engine.ctx.clients.org;
    let listing = match engine.index() {
        Some(index) => index.scps(c).await?.clone(),
        None => crate::aws::org::scps(c).await?,
    };
    for (name, w) in out.iter_mut() {
        w.found = match engine.index() {
            Some(index) => index.shared_scp(c, name, None).await?,
            None => crate::observe::index::read_scp(c, name, listing.get(name).map(String::as_str)).await?,
        };
    }
    let mut unused = BTreeMap::new();
    for (name, id) in &listing {
        let shared = crate::desired::shared_policy_parts(name).is_some();
        if shared && !out.contains_key(name) && !crate::aws::org::attached_anywhere(c, id).await? {
            unused.insert(name.clone(), id.clone());
        }
    }
    Ok(plan::OrgScps { wanted: out, unused })
}

/// Why observing one tenant failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ObserveError {
    /// The state location changed: it concerns the whole run, not one tenant.
    #[error(transparent)]
    LocationChanged(StateLocationChanged),
    /// Reading state or observing failed.
    #[error(transparent)]
    Failed(#[from] crate::apply::Error),
}

/// Observes every tenant read-only, in parallel (bounded by `read_concurrency`), and turns each
/// observation into `keep(desired, observed)` at once (so a caller that needs less than the
/// whole observation does not hold every tenant's). A failure on one tenant is kept as that
/// tenant's error. Sorted by tenant id.
pub(super) async fn observe_each<T>(
    engine: &Engine,
    overview: Option<&OrgOverview>,
    tenants: &[DesiredTenant],
    keep: impl Fn(&DesiredTenant, ObservedTenant) -> T,
) -> Vec<(String, Result<T, ObserveError>)> {
    let store = &engine.ctx.store;
    let keep = &keep;
    // Every account's attached SCPs are listed for the run (see `listed_attachments`) when the
    // tenants observed hold a good share of the organization's accounts (a quarter or more: the
    // listing's pages grow with the organization, the per-account reads with the tenants) and
    // any of them has an account already; started at once rather than when the first tenant
    // asks. A failure here is left to that tenant, which asks again and reports it.
    let index = engine.index().filter(|_| overview.is_some());
    let listed = index.as_deref().is_some_and(|index| {
        let emails = tenants.iter().flat_map(|d| d.accounts.iter().map(|a| a.email.as_str()));
        let declared: usize = tenants.iter().map(|d| d.accounts.len()).sum();
        4 * declared >= index.accounts().count() && emails.into_iter().any(|e| index.account_by_email(e).is_some())
    });
    let prefetch = async {
        if let Some(index) = index.as_deref().filter(|_| listed) {
            let _ = index.attachments(&engine.ctx.clients.org).await;
        }
    };
    let observe = stream::iter(tenants)
        .map(|d| async move {
            let r = crate::metrics::for_tenant(&d.id, async {
                let mut observer = engine.observer(overview);
                observer.listed_attachments = listed;
                // The state record and the tags of the accounts the file's emails name, at once.
                let (tracked, tags) = futures::join!(store.read(&d.id), observer.declared_accounts_tags(d));
                let tracked = tracked.map_err(crate::apply::Error::from)?;
                let tags = tags.map_err(crate::apply::Error::from)?;
                let observed =
                    observer.tenant_with_tags(d, &tracked.record, &tags).await.map_err(crate::apply::Error::from)?;
                match engine.ctx.state_location_changed(&observed).await? {
                    Some(changed) => Err(ObserveError::LocationChanged(changed)),
                    None => Ok(keep(d, observed)),
                }
            })
            .await;
            (d.id.clone(), r)
        })
        .buffer_unordered(engine.ctx.settings.read_concurrency)
        .collect::<Vec<(String, Result<T, ObserveError>)>>();
    let ((), mut results) = futures::join!(prefetch, observe);
    results.sort_by(|a, b| a.0.cmp(&b.0));
    results
}

#[derive(Serialize)]
struct PlanReport<'a> {
    changes: bool,
    /// Differences apply cannot make (each tenant's `manual`): `plan` exits 2 for them too.
    manual_differences: bool,
    /// Tenants whose file was removed (`plan.orphaned`): `plan` exits 2 for them too.
    orphans: bool,
    plan: &'a Plan,
    errors: BTreeMap<String, String>,
    /// AWS requests this run made.
    api_calls: crate::metrics::ApiCalls,
}

/// Tenants the state bucket records that no tenant file declares, with the accounts each
/// record names (read when the run started: [`crate::apply::Context::removed_tenants`]).
pub(super) fn orphaned_tenants(engine: &Engine) -> Vec<plan::OrphanedTenant> {
    engine
        .ctx
        .removed_tenants
        .iter()
        .map(|(id, record)| plan::OrphanedTenant {
            tenant: id.clone(),
            accounts: record.accounts.iter().map(|(env, a)| (*env, a.account_id.clone())).collect(),
        })
        .collect()
}

/// Observes every tenant and plans: the plan, and per-tenant errors. With `all` (the run
/// covers every tenant file), tenants whose file is gone are listed too
/// ([`orphaned_tenants`]).
pub(super) async fn compute_plan(
    engine: &Engine,
    overview: Option<&OrgOverview>,
    tenants: &[DesiredTenant],
    all: bool,
) -> Result<(Plan, BTreeMap<String, String>)> {
    let ous = ou_existence(engine, overview, tenants).await?;
    let mut plan = Plan { organization: Vec::new(), tenants: Vec::new(), orphaned: Vec::new() };
    let mut errors = BTreeMap::new();
    // Each tenant is planned as soon as it is observed; its observation (template bodies
    // included) is dropped then, so memory does not hold every tenant's observation at once.
    // Its plan takes the organization's steps (SCPs created or restored) as done.
    let results =
        observe_each(engine, overview, tenants, |d, observed| plan::tenant(d, &observed.after_organization_steps(d)))
            .await;
    for (id, r) in results {
        match r {
            Ok(p) => plan.tenants.push(p),
            // A changed state location concerns the whole run, not one tenant: nothing goes on.
            Err(ObserveError::LocationChanged(changed)) => return Err(changed.into()),
            Err(e) => {
                errors.insert(id, format!("{e:#}"));
            }
        }
    }
    // After the tenants: their observations have read the SCPs they want already.
    let scps = scp_existence(engine, overview, tenants).await?;
    plan.organization = plan::organization(overview, &ous, &scps);
    if all {
        plan.orphaned = orphaned_tenants(engine);
    }
    Ok((plan, errors))
}

/// Exit code of a plan: 0 no changes, 2 changes, 1 errors or refusals.
pub(super) fn plan_exit_code(plan: &Plan, errors: &BTreeMap<String, String>) -> u8 {
    if !errors.is_empty() || plan.has_refusals() {
        1
    } else if plan.is_empty() && !plan.has_manual() && !plan.has_orphans() {
        0
    } else {
        2
    }
}

/// `tenantry plan`; with `out` (the file and the input files' digests) the plan is saved there
/// too, unless it has errors or refusals.
pub(super) async fn cmd_plan(
    engine: &Engine,
    overview: Option<&OrgOverview>,
    tenants: &[DesiredTenant],
    all: bool,
    output: Output,
    out: Option<(&Path, BTreeMap<String, String>)>,
) -> Result<u8> {
    let (plan, errors) = compute_plan(engine, overview, tenants, all).await?;
    if let Some((path, inputs)) = out {
        if !errors.is_empty() || plan.has_refusals() {
            eprintln!("The plan has errors or refusals; it was not saved to {}.", path.display());
        } else {
            let saved = SavedPlan {
                format_version: saved::FORMAT_VERSION,
                tenantry_version: env!("CARGO_PKG_VERSION").to_string(),
                created_at: time::OffsetDateTime::now_utc()
                    .replace_nanosecond(0)
                    .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
                    .format(&time::format_description::well_known::Rfc3339)?,
                management_account_id: engine.ctx.management_account_id.clone(),
                state_bucket: engine.ctx.store.bucket().to_string(),
                inputs,
                plan: plan.clone(),
            };
            plan_file::write(path, &saved)?;
            eprintln!("Saved the plan to {0}. To carry out exactly this plan: tenantry apply {0}", path.display());
        }
    }
    match output {
        Output::Json => crate::out!(
            "{}",
            serde_json::to_string_pretty(&PlanReport {
                changes: !plan.is_empty(),
                manual_differences: plan.has_manual(),
                orphans: plan.has_orphans(),
                plan: &plan,
                errors: errors.clone(),
                api_calls: crate::metrics::api_calls()
            })?
        ),
        Output::Text => print_plan(&plan, &errors),
    }
    Ok(plan_exit_code(&plan, &errors))
}
