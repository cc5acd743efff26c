//! `tenantry apply`: carries out the plan that was shown (or saved), the organization's steps
//! under the organization's lease, each tenant's under its own.

use std::collections::BTreeMap;

use anyhow::Result;
use futures::stream::{self, StreamExt};
use serde::Serialize;

use super::plan::{compute_plan, ou_existence, scp_existence};
use super::render::{print_outcomes, print_plan};
use super::Output;
use crate::apply::{Engine, TenantOutcome};
use crate::desired::DesiredTenant;
use crate::observe::OrgOverview;
use crate::plan::saved::{self, SavedPlan};
use crate::plan::{self, Plan, TenantPlan};

/// Lease name for organization-level steps (tenant ids cannot start with `_`).
const ORGANIZATION_LEASE: &str = "_organization";

/// Carries out the approved organization steps (organization, SCP type, OUs) under the
/// organization-wide lease, so that two processes never create the same OU twice (some
/// endpoints allow duplicate names); refuses them as stale when the organization planned again
/// under the lease needs other steps. Returns the organization afterwards and the steps carried
/// out (none when another run made them meanwhile).
pub(super) async fn apply_organization(
    engine: &Engine,
    overview: Option<&OrgOverview>,
    tenants: &[DesiredTenant],
    approved: &[plan::OrgStep],
) -> Result<(OrgOverview, Vec<plan::OrgStep>)> {
    if approved.is_empty() {
        // Nothing approved for the organization: nothing may be needed either (an OU a tenant's
        // step moves an account into, deleted since the plan, makes the plan stale rather than
        // being created outside the organization's lease).
        let ous = ou_existence(engine, overview, tenants).await?;
        let scps = scp_existence(engine, overview, tenants).await?;
        saved::check_organization(approved, &plan::organization(overview, &ous, &scps))?;
        return Ok((engine.apply_organization(approved, overview, tenants).await?, Vec::new()));
    }
    let s = &engine.ctx.settings;
    let lease = engine
        .ctx
        .store
        .acquire_lease(
            ORGANIZATION_LEASE,
            std::time::Duration::from_secs(s.lease_ttl_seconds),
            std::time::Duration::from_secs(s.lease_wait_seconds),
        )
        .await?;
    let applied = async {
        let now = engine.ctx.organization().await?;
        let ous = ou_existence(engine, now.as_ref(), tenants).await?;
        let scps = scp_existence(engine, now.as_ref(), tenants).await?;
        let steps = plan::organization(now.as_ref(), &ous, &scps);
        saved::check_organization(approved, &steps)?;
        // The approved steps still needed (another run may have made some meanwhile).
        Ok((engine.apply_organization(&steps, now.as_ref(), tenants).await?, steps))
    }
    .await;
    if let Err(e) = lease.release().await {
        tracing::warn!("could not release the organization lease (it will expire): {e:#}");
    }
    applied
}

#[derive(Serialize)]
struct ApplyReport<'a> {
    organization: Vec<plan::OrgStep>,
    tenants: Vec<TenantOutcome>,
    /// Tenants whose file is gone while state records them: listed, not changed.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    orphaned: &'a [plan::OrphanedTenant],
    /// AWS requests this run made (the preview included).
    api_calls: crate::metrics::ApiCalls,
}

/// `tenantry apply`: shows the plan (or takes the saved one), asks on a terminal, and carries
/// out the plan that was shown or saved, tenant by tenant under each tenant's lease; a tenant
/// whose plan went stale meanwhile is refused, not re-planned.
pub(super) async fn cmd_apply(
    engine: &Engine,
    overview: Option<&OrgOverview>,
    tenants: &[DesiredTenant],
    all: bool,
    output: Output,
    auto_approve: bool,
    saved: Option<SavedPlan>,
) -> Result<u8> {
    // Like `terraform apply`: show the plan first; on a terminal, ask. A saved plan was shown
    // and approved when it was made.
    let from_file = saved.is_some();
    let (preview, errors) = match saved {
        Some(s) => (s.plan, BTreeMap::new()),
        None => compute_plan(engine, overview, tenants, all).await?,
    };
    if output == Output::Text && !from_file {
        print_plan(&preview, &errors);
    }
    if preview.is_empty() && errors.is_empty() && !preview.has_refusals() && !preview.has_manual() {
        match output {
            Output::Json => crate::out!(
                "{}",
                serde_json::to_string_pretty(&ApplyReport {
                    organization: vec![],
                    tenants: vec![],
                    orphaned: &preview.orphaned,
                    api_calls: crate::metrics::api_calls()
                })?
            ),
            Output::Text if from_file => crate::out!("No changes in the plan."),
            Output::Text => {}
        }
        return Ok(0);
    }
    use std::io::IsTerminal;
    if !from_file && !auto_approve && std::io::stdin().is_terminal() && output == Output::Text {
        if !confirmed()? {
            crate::out!("Apply cancelled.");
            return Ok(1);
        }
        // The organization may have changed while the prompt waited: list it again.
        if let Some(o) = overview {
            engine.load_index(o, tenants).await?;
        }
    }
    let (to_apply, skipped) = partition(tenants, &preview, &errors);
    // A new organization is created before the state bucket, which is named after the management
    // account: only the organization can say whether these credentials are its management
    // account's, and a refusal must leave no bucket behind. (Its other steps need the bucket,
    // for the organization's lease.)
    let create = plan::OrgStep::CreateOrganization;
    let created = match overview {
        None if preview.organization.contains(&create) => Some(engine.create_organization().await?),
        _ => None,
    };
    let overview = created.as_ref().map(|(o, _)| o).or(overview);
    let rest: Vec<plan::OrgStep> = preview.organization.iter().filter(|s| **s != create).cloned().collect();
    engine.ctx.ensure_state_bucket().await?;
    let (overview, mut org_steps) = apply_organization(engine, overview, tenants, &rest).await?;
    if created.is_some_and(|(_, by_this_run)| by_this_run) {
        org_steps.insert(0, create);
    }
    if engine.index().is_none() {
        engine.load_index(&overview, tenants).await?;
    }
    let overview = &overview;
    let mut outcomes: Vec<TenantOutcome> = stream::iter(to_apply)
        .map(|(d, approved)| async move {
            // Only the outcome is reported: the observation (template bodies included) goes now.
            let mut o = engine.apply_tenant(d, overview, approved).await;
            o.observed = None;
            o.plan = None;
            o
        })
        .buffer_unordered(engine.ctx.settings.concurrency)
        .collect()
        .await;
    outcomes.extend(skipped);
    outcomes.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
    match output {
        Output::Json => crate::out!(
            "{}",
            serde_json::to_string_pretty(&ApplyReport {
                organization: org_steps,
                tenants: outcomes,
                orphaned: &preview.orphaned,
                api_calls: crate::metrics::api_calls()
            })?
        ),
        Output::Text => print_outcomes(&outcomes, &preview, org_steps.len()),
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

/// Which tenants `apply` works on: those with an approved plan that changes something (one with
/// a manual difference too: its state remembers the email the file now declares). The others
/// are outcomes at once: in sync, or not applied because planning them failed.
pub(super) fn partition<'a>(
    tenants: &'a [DesiredTenant],
    preview: &'a Plan,
    errors: &BTreeMap<String, String>,
) -> (Vec<(&'a DesiredTenant, &'a TenantPlan)>, Vec<TenantOutcome>) {
    let approved: BTreeMap<&str, &TenantPlan> = preview.tenants.iter().map(|t| (t.tenant.as_str(), t)).collect();
    let in_sync = |t: &TenantPlan| t.steps.is_empty() && t.refusals.is_empty() && t.manual.is_empty();
    let to_apply =
        tenants.iter().filter_map(|d| approved.get(d.id.as_str()).filter(|t| !in_sync(t)).map(|t| (d, *t))).collect();
    let mut done: Vec<TenantOutcome> = tenants
        .iter()
        .filter(|d| approved.get(d.id.as_str()).is_some_and(|t| in_sync(t)))
        .map(|d| TenantOutcome { tenant: d.id.clone(), ..Default::default() })
        .collect();
    done.extend(errors.iter().map(|(id, e)| TenantOutcome {
        tenant: id.clone(),
        error: Some(crate::apply::Error::NotPlanned(e.clone())),
        ..Default::default()
    }));
    (to_apply, done)
}

/// Asks on the terminal, like `terraform apply`; only `yes` confirms.
fn confirmed() -> Result<bool> {
    use std::io::Write;
    crate::out_nonl!("\nDo you want to perform these actions? Only 'yes' will be accepted: ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}
