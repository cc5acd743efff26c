//! Running reconcile: one cycle over the tenants (observe with drift detection, assess,
//! optionally remediate, store the report), and the watch loop that repeats cycles with jitter,
//! per-tenant error backoff and graceful stop. This part does I/O through
//! [`Engine::run_tenant`] and the state store.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};

use super::{assess, orphans, Remediation, Report, TenantReport, TenantStatus};
use crate::apply::{Engine, RunMode};
use crate::aws::{org, Error as AwsError};
use crate::desired::DesiredTenant;
use crate::observe::{AccountObservation, OrgOverview};
use crate::state::now_rfc3339;
use crate::tenant::DriftMode;

/// What to do with drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemediatePolicy {
    /// Each tenant file's `drift` setting decides.
    PerTenant,
    /// Fix every tenant (`--remediate`).
    All,
    /// Fix none (`--report-only`).
    None,
}

impl RemediatePolicy {
    fn applies_to(self, d: &DesiredTenant) -> bool {
        match self {
            RemediatePolicy::All => true,
            RemediatePolicy::None => false,
            RemediatePolicy::PerTenant => d.drift == DriftMode::Remediate,
        }
    }
}

/// One reconcile cycle over `tenants`. Orphans are looked for when `all_tenants` (every tenant
/// file) is given: an account tagged as a tenant's is that tenant's when it was found for it in
/// this cycle or carries the email its tenant file gives. The report is stored in the state bucket when `store`.
pub async fn cycle(
    engine: &Engine,
    overview: &OrgOverview,
    tenants: &[&DesiredTenant],
    all_tenants: Option<&[DesiredTenant]>,
    policy: RemediatePolicy,
    store_report: bool,
) -> Result<Report, AwsError> {
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let started_at = now_rfc3339();
    let results: Vec<(TenantReport, BTreeSet<String>)> = stream::iter(tenants.iter().copied())
        .map(|d| tenant(engine, overview, d, policy.applies_to(d)))
        .buffer_unordered(engine.ctx.settings.concurrency)
        .collect()
        .await;
    let mut claimed = BTreeSet::new();
    let mut reports = Vec::new();
    for (r, ids) in results {
        claimed.extend(ids);
        reports.push(r);
    }
    let orphan_list = match all_tenants {
        Some(all) => find_orphans(engine, overview, all, &claimed).await?,
        None => Vec::new(),
    };
    let mut report = Report::new(run_id, started_at, now_rfc3339(), reports, orphan_list);
    if store_report {
        store(engine, &mut report).await;
    }
    Ok(report)
}

/// Reconciles one tenant; returns its report and the account ids found for it.
async fn tenant(
    engine: &Engine,
    overview: &OrgOverview,
    d: &DesiredTenant,
    remediate: bool,
) -> (TenantReport, BTreeSet<String>) {
    let mode = RunMode {
        command: "reconcile",
        lease_wait: Duration::ZERO,
        detect_drift: true,
        execute: remediate,
        stop_on_signal: false,
    };
    let outcome = engine.run_tenant(d, overview, mode, None).await;
    let mut report = TenantReport {
        tenant: d.id.clone(),
        status: TenantStatus::Error,
        items: Vec::new(),
        checks_not_run: Vec::new(),
        remediation: Remediation::NotRequested,
        error: outcome.error.as_ref().map(ToString::to_string),
    };
    let mut ids = BTreeSet::new();
    let (Some(observed), Some(plan)) = (&outcome.observed, &outcome.plan) else {
        if outcome.skipped_busy {
            report.status = TenantStatus::Skipped;
        }
        return (report, ids);
    };
    for obs in observed.accounts.values() {
        match obs {
            AccountObservation::Found(f) => {
                ids.insert(f.account.id.clone());
            }
            AccountObservation::Refused { account_id: Some(id), .. } => {
                ids.insert(id.clone());
            }
            _ => {}
        }
    }
    let (items, not_run) = assess(d, observed, plan);
    report.status = match (items.is_empty(), not_run.is_empty()) {
        (false, _) => TenantStatus::Drift,
        (true, true) => TenantStatus::InSync,
        (true, false) => TenantStatus::NoDriftFound,
    };
    report.remediation = if !remediate {
        Remediation::NotRequested
    } else if plan.steps.is_empty() && plan.refusals.is_empty() {
        Remediation::NothingToDo
    } else if let Some(e) = &outcome.error {
        if plan.refusals.is_empty() {
            report.status = TenantStatus::Error;
        }
        Remediation::Failed { reason: e.to_string() }
    } else {
        Remediation::Applied { steps: outcome.applied.clone() }
    };
    if report.status != TenantStatus::Error {
        report.error = None;
    }
    report.items = items;
    report.checks_not_run = not_run;
    (report, ids)
}

/// Accounts tagged as some tenant's that none of `all` accounts for (`ListAccounts`, then
/// `ListTagsForResource` for each account not already claimed).
async fn find_orphans(
    engine: &Engine,
    overview: &OrgOverview,
    all: &[DesiredTenant],
    claimed: &BTreeSet<String>,
) -> Result<Vec<super::Orphan>, AwsError> {
    let c = &engine.ctx.clients.org;
    let mut tagged = Vec::new();
    let accounts = match engine.index() {
        Some(i) => i.accounts().cloned().collect::<Vec<_>>(),
        None => org::list_accounts(c).await?,
    };
    for a in accounts {
        if claimed.contains(&a.id) || a.id == overview.management_account_id {
            continue;
        }
        let tags = org::tags(c, &a.id).await?;
        tagged.push((a, tags));
    }
    Ok(orphans(&tagged, all, claimed))
}

/// Runs until SIGINT/SIGTERM. Every tenant is its own task (at most `concurrency` at once): it is
/// due again `interval` (±10% jitter) after a successful check; a tenant that fails is retried
/// after 5 s, 10 s, 20 s, ... (at most four intervals), and a slow or failing tenant never holds
/// up the others. Finished tenants are reported together (with the orphan check) whenever no
/// tenant is in flight or an interval has passed since the last report (with the orphan check
/// when `check_orphans`: only when `tenants` are all the tenant files). A stop signal lets the
/// tenants in flight finish, reports them, then returns. `on_report` sees every report.
pub async fn watch(
    engine: &Engine,
    tenants: &[DesiredTenant],
    check_orphans: bool,
    policy: RemediatePolicy,
    interval: Duration,
    mut on_report: impl FnMut(&Report),
) {
    use futures::stream::FuturesUnordered;
    let mut due: BTreeMap<String, Instant> = tenants.iter().map(|d| (d.id.clone(), Instant::now())).collect();
    let mut failures: BTreeMap<String, u32> = BTreeMap::new();
    let mut running: BTreeSet<String> = BTreeSet::new();
    let mut inflight = FuturesUnordered::new();
    let mut finished: Vec<(TenantReport, BTreeSet<String>)> = Vec::new();
    let mut started_at = now_rfc3339();
    let mut last_report = Instant::now();
    let mut overview: Option<(std::sync::Arc<OrgOverview>, Instant)> = None;
    let mut index_at: Option<Instant> = None;
    let mut reports = 0u64;
    loop {
        let stopping = crate::shutdown::requested();
        if stopping && inflight.is_empty() && finished.is_empty() {
            break;
        }
        // Start the tenants that are due, up to the concurrency bound.
        if !stopping {
            let now = Instant::now();
            let ready: Vec<&DesiredTenant> = tenants
                .iter()
                .filter(|d| due[&d.id] <= now && !running.contains(&d.id))
                .take(engine.ctx.settings.concurrency.saturating_sub(running.len()))
                .collect();
            if !ready.is_empty() {
                refresh_organization(engine, tenants, interval, &mut overview, &mut index_at).await;
                match &overview {
                    Some((o, _)) => {
                        for d in ready {
                            running.insert(d.id.clone());
                            let o = o.clone();
                            let remediate = policy.applies_to(d);
                            inflight.push(async move { tenant(engine, &o, d, remediate).await });
                        }
                    }
                    None => {
                        for d in ready {
                            due.insert(d.id.clone(), Instant::now() + error_backoff(1, interval));
                        }
                    }
                }
            }
        }
        // Wait for a tenant to finish, or a short tick to start the next due ones.
        tokio::select! {
            Some((report, ids)) = inflight.next(), if !inflight.is_empty() => {
                running.remove(&report.tenant);
                due.insert(report.tenant.clone(), Instant::now() + next_check(&report, &mut failures, interval));
                finished.push((report, ids));
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        let flush = !finished.is_empty() && (inflight.is_empty() || last_report.elapsed() >= interval);
        if flush {
            let batch = std::mem::take(&mut finished);
            let organization = overview.as_ref().map(|(o, _)| o.as_ref()).filter(|_| check_orphans);
            let since = std::mem::replace(&mut started_at, now_rfc3339());
            let mut report = batch_report(engine, tenants, organization, batch, since).await;
            store(engine, &mut report).await;
            on_report(&report);
            reports += 1;
            last_report = Instant::now();
        }
    }
    tracing::info!(reports, "stopped by signal after finishing the tenants in flight");
}

/// Reads the organization again when it is an interval old (or was never read), and lists it
/// again ([`Engine::load_index`]) when the index is half an interval old, so that two checks of
/// one tenant (at least 0.9 intervals apart) never share one. Failures are logged: the tenants
/// wait (no organization) or are looked up one by one (no index).
async fn refresh_organization(
    engine: &Engine,
    tenants: &[DesiredTenant],
    interval: Duration,
    overview: &mut Option<(std::sync::Arc<OrgOverview>, Instant)>,
    index_at: &mut Option<Instant>,
) {
    if overview.as_ref().is_none_or(|(_, at)| at.elapsed() >= interval) {
        match engine.ctx.organization().await {
            Ok(Some(o)) => *overview = Some((std::sync::Arc::new(o), Instant::now())),
            Ok(None) => tracing::error!("no organization yet: run `tenantry apply` first"),
            Err(e) => tracing::error!("cannot read the organization: {e:#}"),
        }
    }
    if let Some((o, _)) = overview {
        if index_at.is_none_or(|at: Instant| at.elapsed() >= interval / 2) {
            if let Err(e) = engine.load_index(o, tenants).await {
                tracing::warn!("cannot list the organization, looking accounts up one by one: {e:#}");
                *engine.index.write().unwrap_or_else(|p| p.into_inner()) = None;
            }
            *index_at = Some(Instant::now());
        }
    }
}

/// When a tenant that just finished is checked again: an interval later (jittered), or after an
/// error back-off that grows with its failures in a row.
fn next_check(report: &TenantReport, failures: &mut BTreeMap<String, u32>, interval: Duration) -> Duration {
    if report.status == TenantStatus::Error {
        let n = failures.entry(report.tenant.clone()).or_default();
        *n += 1;
        error_backoff(*n, interval)
    } else {
        failures.remove(&report.tenant);
        jittered(interval)
    }
}

/// A report of the tenants finished since the last one (`since`), with the orphan check when
/// `organization` is given.
async fn batch_report(
    engine: &Engine,
    tenants: &[DesiredTenant],
    organization: Option<&OrgOverview>,
    batch: Vec<(TenantReport, BTreeSet<String>)>,
    since: String,
) -> Report {
    let claimed: BTreeSet<String> = batch.iter().flat_map(|(_, ids)| ids.iter().cloned()).collect();
    let orphan_list = match organization {
        Some(o) => find_orphans(engine, o, tenants, &claimed).await.unwrap_or_else(|e| {
            tracing::warn!("orphan check failed: {e:#}");
            Vec::new()
        }),
        None => Vec::new(),
    };
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    Report::new(run_id, since, now_rfc3339(), batch.into_iter().map(|(r, _)| r).collect(), orphan_list)
}

/// Stores a report in the state bucket and records where.
async fn store(engine: &Engine, report: &mut Report) {
    let stored = async {
        // Not marked as the state location here: a report is no proof that state is whole.
        engine.ctx.store.ensure_bucket(&engine.ctx.settings.home_region).await?;
        let body = serde_json::to_vec_pretty(&*report)?;
        engine.ctx.store.put_report(&report.run_id, &report.started_at, body).await
    }
    .await;
    match stored {
        Ok(at) => report.stored_at = Some(at),
        Err(e) => {
            tracing::error!("could not store the report: {e:#}");
            report.store_error = Some(format!("{e:#}"));
        }
    }
}

/// `interval` ±10%.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(0.9 + 0.2 * fastrand::f64())
}

/// 5 s × 2^(n-1), at most four intervals (and at least 5 s).
fn error_backoff(n: u32, interval: Duration) -> Duration {
    let grown = Duration::from_secs(5).saturating_mul(1u32 << (n.saturating_sub(1)).min(16));
    grown.min(interval.saturating_mul(4).max(Duration::from_secs(5)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_backoff_grows_and_is_capped() {
        let i = Duration::from_secs(60);
        assert_eq!(error_backoff(1, i), Duration::from_secs(5));
        assert_eq!(error_backoff(2, i), Duration::from_secs(10));
        assert_eq!(error_backoff(4, i), Duration::from_secs(40));
        assert_eq!(error_backoff(10, i), Duration::from_secs(240));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..100 {
            let j = jittered(Duration::from_secs(100));
            assert!(j >= Duration::from_secs(90) && j <= Duration::from_secs(110), "{j:?}");
        }
    }
}
