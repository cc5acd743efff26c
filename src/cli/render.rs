//! Text and JSON rendering of plans, apply outcomes and reconcile reports. Every line goes to
//! stdout through `out!`, so a closed pipe is not a panic.

use std::collections::BTreeMap;

use super::Output;
use crate::apply::TenantOutcome;
use crate::plan::{Plan, TenantPlan};
use crate::reconcile::{Remediation, Report, TenantStatus};

/// A command that fails with `--output json` still prints a JSON document on stdout:
/// `{"error": "...", "diagnostics": [...]}`, so that a consumer never parses an empty output.
/// A saved plan refused as stale as a whole (its input files, the organization's steps) adds
/// `"stale": true` and `"stale_changes"`, as a tenant refused as stale does in its outcome.
pub(super) fn print_json_error(error: &str, diagnostics: &[String], stale: Option<&crate::plan::saved::Stale>) {
    let mut doc = serde_json::json!({ "error": error, "diagnostics": diagnostics });
    if let Some(s) = stale {
        doc["stale"] = true.into();
        doc["stale_changes"] = serde_json::json!(s.changes);
    }
    crate::out!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
}

pub(super) fn print_plan(plan: &Plan, errors: &BTreeMap<String, String>) {
    if !plan.organization.is_empty() {
        crate::out!("organization:");
        for s in &plan.organization {
            crate::out!("  {s}");
        }
    }
    let mut counts = (0, 0, 0);
    let symbols = plan.organization.iter().map(|s| s.symbol());
    for t in &plan.tenants {
        print_tenant_plan(t);
    }
    for symbol in symbols.chain(plan.tenants.iter().flat_map(|t| t.steps.iter().map(|s| s.change.symbol()))) {
        match symbol {
            "+" => counts.0 += 1,
            "-" => counts.2 += 1,
            _ => counts.1 += 1,
        }
    }
    for (id, e) in errors {
        crate::out!("tenant {id}: error: {e}");
    }
    if plan.has_orphans() {
        crate::out!("\norphaned (the tenant file was removed):");
        for o in &plan.orphaned {
            crate::out!("  ! {o}");
        }
    }
    if plan.is_empty() && errors.is_empty() && !plan.has_refusals() && !plan.has_manual() && !plan.has_orphans() {
        crate::out!("No changes. The accounts match the tenant files.");
    } else if plan.is_empty() && errors.is_empty() && !plan.has_refusals() {
        crate::out!("\nNo changes for apply to make; the differences marked ! need a person.");
    } else {
        crate::out!("\nPlan: {} to add, {} to change, {} to remove.", counts.0, counts.1, counts.2);
    }
}

pub(super) fn print_tenant_plan(t: &TenantPlan) {
    let name = match t.lifecycle {
        crate::tenant::Lifecycle::Active => t.tenant.clone(),
        other => format!("{} ({})", t.tenant, other.as_str()),
    };
    if t.steps.is_empty() && t.refusals.is_empty() && t.manual.is_empty() {
        crate::out!("tenant {name}: in sync");
        return;
    }
    crate::out!("tenant {name}:");
    for s in &t.steps {
        crate::out!("  {s}");
    }
    for m in &t.manual {
        crate::out!("  {m}");
    }
    for r in &t.refusals {
        crate::out!("  ! refused: {r}");
    }
}

/// `apply`'s text summary: one line per tenant, the totals (the organization's steps carried out
/// included), and the differences left to a person.
pub(super) fn print_outcomes(outcomes: &[TenantOutcome], preview: &Plan, organization_steps: usize) {
    for o in outcomes {
        match &o.error {
            Some(e) => eprintln!("tenant {}: FAILED: {e}", o.tenant),
            None if o.applied.is_empty() => {
                crate::out!("tenant {}: nothing to apply (no changes in its plan)", o.tenant)
            }
            None => crate::out!("tenant {}: {} change(s) applied", o.tenant, o.applied.len()),
        }
    }
    let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
    let changed = outcomes.iter().filter(|o| o.error.is_none() && !o.applied.is_empty()).count();
    let organization = match organization_steps {
        0 => String::new(),
        n => format!("{n} organization step(s), "),
    };
    crate::out!(
        "\nApply complete: {organization}{changed} tenant(s) changed, {} with nothing to apply, {failed} failed.",
        outcomes.len() - failed - changed
    );
    let manual: usize = preview.tenants.iter().map(|t| t.manual.len()).sum();
    if manual > 0 {
        crate::out!("{manual} difference(s) marked ! above are left for a person: tenantry does not change root emails or account names.");
    }
}

/// Prints a reconcile report: text, or one JSON document.
pub(super) fn print_report(report: &Report, output: Output, one_line: bool) {
    if output == Output::Json {
        let json = if one_line { serde_json::to_string(report) } else { serde_json::to_string_pretty(report) };
        match json {
            Ok(j) => crate::out!("{j}"),
            Err(e) => eprintln!("error: cannot serialize the report: {e}"),
        }
        return;
    }
    for t in &report.tenants {
        match t.status {
            TenantStatus::InSync => crate::out!("tenant {}: in sync", t.tenant),
            TenantStatus::NoDriftFound => {
                crate::out!(
                    "tenant {}: no drift found, but {} check(s) could not run (not \"in sync\")",
                    t.tenant,
                    t.checks_not_run.len()
                )
            }
            TenantStatus::Drift => crate::out!("tenant {}: DRIFT ({} item(s))", t.tenant, t.items.len()),
            TenantStatus::Error => crate::out!("tenant {}: ERROR: {}", t.tenant, t.error.as_deref().unwrap_or("")),
            TenantStatus::Skipped => crate::out!("tenant {}: skipped: {}", t.tenant, t.error.as_deref().unwrap_or("")),
        }
        for i in &t.items {
            let env = i.environment.map(|e| format!("{e}: ")).unwrap_or_default();
            crate::out!(
                "  [{}] {env}{} ({}): expected {}, found {} -> {}",
                serde_json::to_value(i.severity).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
                i.resource,
                i.kind,
                i.expected,
                i.found,
                i.action
            );
        }
        for c in &t.checks_not_run {
            crate::out!(
                "  not checked: {}: stack {}: {}: {}",
                c.environment,
                c.stack,
                c.check.replace('_', " "),
                c.reason
            );
        }
        match &t.remediation {
            Remediation::Applied { steps } => crate::out!("  remediated: {} step(s) applied", steps.len()),
            Remediation::Failed { reason } => crate::out!("  remediation failed: {reason}"),
            Remediation::NotRequested if t.status == TenantStatus::Drift => {
                crate::out!("  (report only: run `tenantry reconcile --remediate` or set drift = \"remediate\" to fix)")
            }
            _ => {}
        }
    }
    for o in &report.orphans {
        crate::out!("orphan account {} \"{}\" <{}> {}: {}", o.account_id, o.name, o.email, o.status, o.reason);
    }
    let s = &report.summary;
    crate::out!(
        "\nReconcile {}: {} tenant(s): {} without drift, {} drifted, {} error(s), {} skipped; {} item(s), {} check(s) not run, {} orphan(s).{}",
        report.run_id,
        s.tenants,
        s.in_sync + s.no_drift_found,
        s.drifted,
        s.errors,
        s.skipped,
        s.items,
        s.checks_not_run,
        s.orphans,
        report.stored_at.as_deref().map(|a| format!(" Report: {a}")).unwrap_or_default()
    );
    if let Some(e) = &report.store_error {
        crate::out!("ERROR: the report could not be stored in the state bucket: {e}");
    }
}
