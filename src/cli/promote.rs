//! The promotion commands' output and exit codes.

use anyhow::{bail, Context, Result};

use super::args::{CheckResult, Command, Output, ProductionChange};
use crate::desired::DesiredTenant;
use crate::promote::run::{waves, workloads, Promoter, Promotion, PromotionStatus};
use crate::promote::{short, Gate};
use crate::tenant::{Lifecycle, Tenant};

fn find<'a>(tenants: &'a [Tenant], desired: &'a [DesiredTenant], id: &str) -> Result<(&'a Tenant, &'a DesiredTenant)> {
    let t = tenants.iter().find(|t| t.spec.id == id).with_context(|| {
        format!(
            "no tenant `{id}` (known: {})",
            tenants.iter().map(|t| t.spec.id.as_str()).collect::<Vec<_>>().join(", ")
        )
    })?;
    let d = desired.iter().find(|d| d.id == id).context("tenant not built")?;
    Ok((t, d))
}

/// Refuses `command` for a suspended tenant: nothing is deployed to its accounts until its file
/// says `lifecycle = "active"` again.
fn refuse_suspended(t: &Tenant, command: &str) -> Result<()> {
    if t.spec.lifecycle == Lifecycle::Suspended {
        bail!(
            "tenant {0} is suspended (lifecycle = \"suspended\" in {1}): `{command}` is refused; set lifecycle = \"active\" and run `tenantry apply {0}` first",
            t.spec.id,
            t.path.display()
        );
    }
    Ok(())
}

fn print_gates(gates: &[Gate]) {
    for g in gates {
        crate::out!("  [{}] {:<22} {}", if g.pass { "pass" } else { "FAIL" }, g.gate, g.detail);
    }
}

fn print_promotion(p: &Promotion) {
    crate::out!(
        "tenant {} workload {}: {}{}",
        p.tenant,
        p.workload,
        match (p.release.is_empty(), p.rollback) {
            (true, true) => "nothing to roll back to".to_string(),
            (true, false) => "no release".to_string(),
            (false, true) => format!("rollback to release {}", short(&p.release)),
            (false, false) => format!("release {}", short(&p.release)),
        },
        match p.running() {
            Some(
                r @ (crate::promote::Running::Release { .. }
                | crate::promote::Running::Unknown { .. }
                | crate::promote::Running::Busy { .. }),
            ) => format!(" (production runs {})", r.describe()),
            _ => " (not in production yet)".into(),
        }
    );
    let truth = p.truth.as_ref();
    if let Some(m) = truth.and_then(|t| t.mismatch.as_ref()) {
        crate::out!("  LEDGER MISMATCH: {m}");
    }
    for r in truth.map(|t| t.recover.as_slice()).unwrap_or_default() {
        let kind = serde_json::to_value(r.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let verb = if p.recovered_written { "recorded" } else { "would record (nothing written in a dry run)" };
        crate::out!("  ledger: {verb} {kind} {} (recovered): {}", short(&r.release), r.note);
    }
    print_gates(&p.gates);
    if p.changes.is_empty() && p.risk.is_some() {
        crate::out!("  production change set: no resource changes (template, outputs or tags only)");
    }
    if !p.changes.is_empty() {
        crate::out!("  production change set:");
        for c in &p.changes {
            let replace = match c.replacement.as_str() {
                "True" => " (REPLACEMENT)",
                "Conditional" => " (may be replaced)",
                _ => "",
            };
            let scope = if c.scope.is_empty() { String::new() } else { format!(" [{}]", c.scope.join(", ")) };
            crate::out!("    {:<7} {:<28} {}{scope}{replace}", c.action, c.logical_id, c.resource_type);
        }
    }
    if let Some(risk) = p.risk {
        crate::out!(
            "  risk: {}",
            serde_json::to_value(risk).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
        );
        for r in &p.risk_reasons {
            crate::out!("    - {r}");
        }
    }
    let line = match p.status {
        PromotionStatus::Promoted if p.rollback => {
            "rolled back: production runs this earlier release again".to_string()
        }
        PromotionStatus::Promoted => "promoted: production runs this release".to_string(),
        PromotionStatus::Unchanged => "production already runs this release; nothing to do".to_string(),
        PromotionStatus::DryRun => "dry run: change set previewed and deleted; nothing executed".to_string(),
        PromotionStatus::Refused => format!("REFUSED: {}", p.error.as_deref().unwrap_or("")),
        PromotionStatus::NeedsApproval => format!("WAITING FOR APPROVAL: {}", p.error.as_deref().unwrap_or("")),
        PromotionStatus::Failed => match &p.stack_status {
            Some(crate::aws::types::StackStatus::UpdateRollbackComplete) => format!(
                "FAILED; CloudFormation rolled production back to {}: {}",
                p.previous_release.as_deref().map(short).unwrap_or("its previous release"),
                p.error.as_deref().unwrap_or("")
            ),
            Some(st) => format!(
                "FAILED; the production stack is {st}: check it before promoting again: {}",
                p.error.as_deref().unwrap_or("")
            ),
            None => format!("FAILED: {}", p.error.as_deref().unwrap_or("")),
        },
    };
    crate::out!("  {line}");
}

/// Exit code of promotions: 1 if any failed, else 2 if any was refused or waits for approval.
fn exit_code(ps: &[Promotion]) -> u8 {
    if ps.iter().any(|p| p.status == PromotionStatus::Failed) {
        1
    } else if ps.iter().any(|p| !p.ok()) {
        2
    } else {
        0
    }
}

fn emit<T: serde::Serialize>(output: Output, value: &T) -> Result<()> {
    if output == Output::Json {
        crate::out!("{}", serde_json::to_string_pretty(value)?);
    }
    Ok(())
}

/// Runs one promotion command; returns the exit code.
pub async fn run(p: &Promoter<'_>, tenants: &[Tenant], desired: &[DesiredTenant], command: Command) -> Result<u8> {
    match command {
        Command::Stage { tenant, workload, output } => {
            let (t, _) = find(tenants, desired, &tenant)?;
            refuse_suspended(t, "stage")?;
            stage(p, t, workload, output).await
        }
        Command::Evidence { tenant, release, check, result, url, note } => {
            let (t, _) = find(tenants, desired, &tenant)?;
            let rec = p
                .record_evidence(t, &release, &check, result == CheckResult::Pass, url.as_deref(), note.as_deref())
                .await?;
            crate::out!(
                "recorded: {check} {} for release {} ({})",
                if result == CheckResult::Pass { "pass" } else { "fail" },
                short(&rec.release),
                rec.key()
            );
            Ok(0)
        }
        Command::Approve { tenant, release } => {
            let (t, _) = find(tenants, desired, &tenant)?;
            let rec = p.approve(t, &release).await?;
            crate::out!("approved release {} of tenant {tenant} by {} ({})", short(&rec.release), rec.by, rec.key());
            Ok(0)
        }
        Command::Converged { tenant, workload, release, output } => {
            let (t, d) = find(tenants, desired, &tenant)?;
            converged(p, t, d, workload, release, output).await
        }
        Command::Promote { tenant, all, wave_size, canary, release, how } => {
            let output = how.output;
            let done = match tenant {
                Some(id) if !all => {
                    let (t, d) = find(tenants, desired, &id)?;
                    refuse_suspended(t, "promote")?;
                    promote_one(p, t, d, release.as_deref(), &how).await?
                }
                _ => promote_all(p, tenants, desired, &canary, wave_size, &how).await?,
            };
            emit(output, &done)?;
            Ok(exit_code(&done))
        }
        Command::Rollback { tenant, how } => {
            let (t, _) = find(tenants, desired, &tenant)?;
            refuse_suspended(t, "rollback")?;
            rollback(p, t, &how).await
        }
        Command::History { tenant, output } => match find(tenants, desired, &tenant) {
            Ok((t, _)) => history(p, t, output).await,
            // A tenant whose file is gone (offboarded, or removed) keeps its ledger.
            Err(e) => history_without_file(p, &tenant, output).await.map_err(|none| e.context(none)),
        },
        _ => bail!("not a promotion command"),
    }
}

/// `tenantry stage`.
async fn stage(p: &Promoter<'_>, t: &Tenant, workload: Option<String>, output: Output) -> Result<u8> {
    let tenant = &t.spec.id;
    let staged = p.leased(&t.spec.id, p.stage(t, workload.as_deref())).await?;
    if output == Output::Text {
        for s in &staged {
            crate::out!(
                "tenant {tenant} workload {}: release {} {} ({} change(s))",
                s.workload,
                s.release,
                s.status,
                s.changes.len()
            );
            for c in &s.changes {
                crate::out!("    {:<7} {:<28} {}", c.action, c.logical_id, c.resource_type);
            }
        }
    }
    emit(output, &staged)?;
    Ok(0)
}

/// `tenantry converged`: exit 0 when every release asked about is converged, else 2.
async fn converged(
    p: &Promoter<'_>,
    t: &Tenant,
    d: &DesiredTenant,
    workload: Option<String>,
    release: Option<String>,
    output: Output,
) -> Result<u8> {
    let tenant = &t.spec.id;
    let mut all = Vec::new();
    for w in workloads(t, workload.as_deref())? {
        let c = p.converged(t, d, &w, release.as_deref()).await?;
        if output == Output::Text {
            crate::out!(
                "tenant {tenant} workload {w}: release {} {}",
                short(&c.release),
                if c.converged { "CONVERGED" } else { "not converged" }
            );
            print_gates(&c.gates);
            crate::out!("  production runs {} (read from the stack)", c.production.running.describe());
            if let Some(m) = &c.production.mismatch {
                crate::out!("  LEDGER MISMATCH: {m} (the next `tenantry promote` or `rollback` records it)");
            }
        }
        all.push(c);
    }
    emit(output, &all)?;
    Ok(if all.iter().all(|c| c.converged) { 0 } else { 2 })
}

/// `tenantry promote TENANT`: each workload of one tenant, under its lease.
async fn promote_one(
    p: &Promoter<'_>,
    t: &Tenant,
    d: &DesiredTenant,
    release: Option<&str>,
    how: &ProductionChange,
) -> Result<Vec<Promotion>> {
    let mut done = Vec::new();
    let names = workloads(t, how.workload.as_deref())?;
    p.leased(&t.spec.id, async {
        for w in &names {
            let pr = p.promote(t, d, w, release, how.dry_run, how.approve).await?;
            if how.output == Output::Text {
                print_promotion(&pr);
            }
            done.push(pr);
        }
        Ok(())
    })
    .await?;
    Ok(done)
}

/// `tenantry promote --all`: every tenant with workloads, in waves (canaries first); stops after
/// the first wave in which a promotion did not succeed.
async fn promote_all(
    p: &Promoter<'_>,
    tenants: &[Tenant],
    desired: &[DesiredTenant],
    canary: &[String],
    wave_size: usize,
    how: &ProductionChange,
) -> Result<Vec<Promotion>> {
    let (workload, dry_run, approve, output) = (&how.workload, how.dry_run, how.approve, how.output);
    let mut done: Vec<Promotion> = Vec::new();
    let (with, suspended): (Vec<&Tenant>, Vec<&Tenant>) =
        tenants.iter().filter(|t| !t.spec.workloads.is_empty()).partition(|t| t.spec.lifecycle == Lifecycle::Active);
    for c in canary {
        if let Some(t) = suspended.iter().find(|t| &t.spec.id == c) {
            refuse_suspended(t, "promote")?;
        }
        if !with.iter().any(|t| &t.spec.id == c) {
            bail!("canary `{c}` is not a tenant with workloads");
        }
    }
    if !suspended.is_empty() {
        let ids: Vec<&str> = suspended.iter().map(|t| t.spec.id.as_str()).collect();
        tracing::warn!("not promoted, suspended (lifecycle = \"suspended\"): {}", ids.join(", "));
    }
    let plan = waves(&with, canary, wave_size);
    for (i, wave) in plan.iter().enumerate() {
        if output == Output::Text {
            crate::out!(
                "wave {} of {}: {}",
                i + 1,
                plan.len(),
                wave.iter().map(|t| t.spec.id.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
        let results = futures::future::join_all(wave.iter().map(|t| async {
            let d = desired.iter().find(|d| d.id == t.spec.id).expect("built");
            let names = workloads(t, workload.as_deref()).unwrap_or_default();
            let each = async {
                let mut out = Vec::new();
                for w in &names {
                    out.push(match p.promote(t, d, w, None, dry_run, approve).await {
                        Ok(pr) => pr,
                        Err(e) => failed(&t.spec.id, w, e),
                    });
                }
                Ok(out)
            };
            match p.leased(&t.spec.id, each).await {
                Ok(out) => out,
                Err(e) => vec![failed(&t.spec.id, names.first().map_or("-", String::as_str), e)],
            }
        }))
        .await;
        let wave_results: Vec<Promotion> = results.into_iter().flatten().collect();
        let stop = wave_results.iter().any(|r| !r.ok());
        if output == Output::Text {
            wave_results.iter().for_each(print_promotion);
        }
        done.extend(wave_results);
        if stop {
            let left: Vec<&str> = plan[i + 1..].iter().flatten().map(|t| t.spec.id.as_str()).collect();
            if output == Output::Text && !left.is_empty() {
                crate::out!(
                    "stopped after wave {}: a promotion did not succeed; not promoted: {}",
                    i + 1,
                    left.join(", ")
                );
            }
            break;
        }
    }
    Ok(done)
}

/// `tenantry rollback`.
async fn rollback(p: &Promoter<'_>, t: &Tenant, how: &ProductionChange) -> Result<u8> {
    let mut done = Vec::new();
    let names = workloads(t, how.workload.as_deref())?;
    p.leased(&t.spec.id, async {
        for w in &names {
            let pr = p.rollback(t, w, how.dry_run, how.approve).await?;
            if how.output == Output::Text {
                print_promotion(&pr);
            }
            done.push(pr);
        }
        Ok(())
    })
    .await?;
    emit(how.output, &done)?;
    Ok(exit_code(&done))
}

/// `tenantry history`: the ledger, and what production runs for each workload.
async fn history(p: &Promoter<'_>, t: &Tenant, output: Output) -> Result<u8> {
    let records = ledger_and_audit(p, &t.spec.id).await?;
    let production = production_of(p, t, &records).await;
    match output {
        Output::Json => crate::out!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "records": records, "production": production }))?
        ),
        Output::Text => print_history(&t.spec.id, &records, &production),
    }
    Ok(0)
}

/// A tenant's promotion records and `applied` records together, in the bucket's order.
async fn ledger_and_audit(p: &Promoter<'_>, tenant: &str) -> Result<Vec<crate::promote::LedgerRecord>> {
    let (ledger, audit) = tokio::try_join!(p.ctx.store.ledger(tenant), p.ctx.store.audit(tenant))?;
    let mut records: Vec<_> = ledger.into_iter().chain(audit).collect();
    records.sort_by(|a, b| (&a.stored_at, &a.at).cmp(&(&b.stored_at, &b.at)));
    Ok(records)
}

/// `tenantry history` of a tenant no file declares: its ledger records, if it has any (what
/// production runs is not shown: without a file there is no workload to read). The error says
/// there are none.
async fn history_without_file(p: &Promoter<'_>, tenant: &str, output: Output) -> Result<u8> {
    if !crate::tenant::valid_tenant_id(tenant) {
        bail!("`{tenant}` is not a tenant id");
    }
    let records = ledger_and_audit(p, tenant).await?;
    if records.is_empty() {
        bail!("no ledger records of tenant `{tenant}` either");
    }
    match output {
        Output::Json => crate::out!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "records": records, "production": [] }))?
        ),
        Output::Text => {
            crate::out!("tenant {tenant}: no tenant file; its ledger:");
            print_history(tenant, &records, &[]);
        }
    }
    Ok(0)
}

/// The ledger as text, one line per record, then what production runs.
fn print_history(tenant: &str, records: &[crate::promote::LedgerRecord], production: &[ProductionRuns]) {
    if records.is_empty() {
        crate::out!("tenant {tenant}: no ledger records yet");
    }
    for r in records {
        let kind = serde_json::to_value(r.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        // Each line of the detail on its own, control characters shown as `?` (a record is
        // data from the state bucket: it must not print lines of its own making).
        let detail: Vec<String> = match r.kind {
            crate::promote::LedgerKind::Applied => record_detail(r).lines().map(printable).collect(),
            _ => vec![printable(&record_detail(r))],
        };
        crate::out!(
            "{}  {:<16} {:<10} {}  {}  by {}",
            printable(r.stored_at.trim_end_matches('Z')),
            kind,
            printable(r.workload.as_deref().unwrap_or("-")),
            printable(short(&r.release)),
            detail.first().map(String::as_str).unwrap_or(""),
            printable(&r.by)
        );
        for line in detail.iter().skip(1) {
            crate::out!("{line}");
        }
    }
    for w in production {
        crate::out!("{}", w.line());
    }
}

/// `s` with every control character (newlines, escapes) shown as `?`.
fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// What a ledger record's line says after its release, by kind: the lines our own format makes
/// (an `applied` record's steps); [`print_history`] makes each printable.
fn record_detail(r: &crate::promote::LedgerRecord) -> String {
    match r.kind {
        crate::promote::LedgerKind::Evidence => format!(
            "{} {}{}",
            r.detail["check"].as_str().unwrap_or(""),
            r.detail["result"].as_str().unwrap_or(""),
            r.detail["url"].as_str().map(|u| format!(" {u}")).unwrap_or_default()
        ),
        _ if r.detail["recovered"] == true => {
            format!("recovered: {}", r.detail["note"].as_str().unwrap_or(""))
        }
        crate::promote::LedgerKind::Executing => format!(
            "executing change set {} as {}",
            r.detail["change_set"].as_str().unwrap_or("?"),
            r.detail["as"].as_str().unwrap_or("?")
        ),
        crate::promote::LedgerKind::Promoted | crate::promote::LedgerKind::RolledBack => format!(
            "from {} ({} change(s), risk {})",
            match (r.detail["previous_release"].as_str(), r.detail["previous_running"]["state"].as_str()) {
                (Some(prev), _) => short(prev),
                (None, Some("unknown")) => "a template that was no stored release",
                _ => "nothing",
            },
            r.detail["changes"].as_array().map_or(0, Vec::len),
            r.detail["risk"].as_str().unwrap_or("-")
        ),
        crate::promote::LedgerKind::PromotionFailed => {
            r.detail["error"].as_str().unwrap_or("").lines().next().unwrap_or("").to_string()
        }
        crate::promote::LedgerKind::Staged => {
            format!("{} change(s)", r.detail["changes"].as_array().map_or(0, Vec::len))
        }
        crate::promote::LedgerKind::Approval => r.detail["via"].as_str().unwrap_or("").to_string(),
        crate::promote::LedgerKind::Applied => {
            let shown = |step: &serde_json::Value| match serde_json::from_value::<crate::plan::Step>(step.clone()) {
                Ok(s) => s.to_string(),
                Err(_) => step.to_string(),
            };
            let steps = r.detail["steps"].as_array().cloned().unwrap_or_default();
            let mut out =
                format!("{}: {} step(s)", printable(r.detail["command"].as_str().unwrap_or("?")), steps.len());
            if let Some(lifecycle) = r.detail["lifecycle"].as_str().filter(|l| *l != "active") {
                out.push_str(&format!(", tenant {}", printable(lifecycle)));
            }
            if let Some(accounts) = r.detail["accounts"].as_object().filter(|a| !a.is_empty()) {
                let list: Vec<String> = accounts
                    .iter()
                    .map(|(env, id)| printable(&format!("{env} {}", id.as_str().unwrap_or("?"))))
                    .collect();
                out.push_str(&format!(" (accounts: {})", list.join(", ")));
            }
            for step in &steps {
                out.push_str(&format!("\n      {}", printable(&shown(step))));
            }
            if let Some(e) = r.detail["error"].as_str() {
                let failed = match &r.detail["failed_step"] {
                    serde_json::Value::Null => String::new(),
                    step => format!(" at {}", printable(&shown(step))),
                };
                out.push_str(&format!("\n      failed{failed}: {}", printable(e.lines().next().unwrap_or(""))));
            }
            out
        }
    }
}

/// What production runs for one workload, as `history` shows it.
#[derive(serde::Serialize)]
struct ProductionRuns {
    workload: String,
    /// Read from the production stack, with what the ledger says and what the next `promote` or
    /// `rollback` records (nothing is written by `history`); `None` when it could not be read
    /// (`error` says why).
    #[serde(flatten, serialize_with = "crate::promote::LedgerTruth::serialize_flat")]
    truth: Option<crate::promote::LedgerTruth>,
    error: Option<String>,
}

impl ProductionRuns {
    /// A workload whose production stack could not be read, and why.
    fn unreadable(workload: String, e: &crate::promote::run::Error) -> ProductionRuns {
        ProductionRuns { workload, truth: None, error: Some(format!("{e:#}")) }
    }
}

impl ProductionRuns {
    fn line(&self) -> String {
        match (&self.truth, &self.error) {
            (Some(t), _) => format!(
                "production, workload {}: runs {} (read from the stack){}",
                self.workload,
                t.running.describe(),
                t.mismatch.as_deref().map(|m| format!("\n  LEDGER MISMATCH: {m}")).unwrap_or_default()
            ),
            (None, e) => format!("production, workload {}: not read: {}", self.workload, e.as_deref().unwrap_or("")),
        }
    }
}

/// What production runs for each workload of `t` (its file's and its ledger's), read from the
/// stacks; nothing is written.
async fn production_of(p: &Promoter<'_>, t: &Tenant, records: &[crate::promote::LedgerRecord]) -> Vec<ProductionRuns> {
    let mut names: std::collections::BTreeSet<String> = t.spec.workloads.keys().cloned().collect();
    names.extend(records.iter().filter_map(|r| r.workload.clone()));
    if names.is_empty() {
        return Vec::new();
    }
    let session = match p.session(t, crate::tenant::Environment::Production).await {
        Ok(s) => s,
        Err(e) => return names.into_iter().map(|w| ProductionRuns::unreadable(w, &e)).collect(),
    };
    let mut out = Vec::new();
    for w in names {
        let mut ledger = records.to_vec();
        out.push(match p.production_truth(&t.spec.id, &w, &session, &mut ledger, false).await {
            Ok(truth) => ProductionRuns { workload: w, truth: Some(truth), error: None },
            Err(e) => ProductionRuns::unreadable(w, &e),
        });
    }
    out
}

fn failed(tenant: &str, workload: &str, e: crate::promote::run::Error) -> Promotion {
    let mut p = Promotion::new(tenant, workload, "");
    p.status = PromotionStatus::Failed;
    p.error = Some(format!("{e:#}"));
    p
}
