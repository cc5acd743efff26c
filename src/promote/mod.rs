//! Promotion from the digital-twin staging account to production.
//!
//! A **release** is one workload's blueprint rendered once (the *artifact*) with its parameters,
//! identified by the sha256 of both. `stage` stores the artifact in the state bucket
//! (content-addressed, `artifacts/<tenant>/<digest>.json`) and deploys it into staging through a change
//! set; checks report **evidence** against the digest; a release is **converged** when every gate
//! passes; `promote` deploys the stored artifact, verified again, into production through a
//! change set, after a risk classification decides whether a human must approve. Every step is an
//! append-only record in the **ledger** (`ledger/<tenant>/...`, written with `If-None-Match: *`).
//!
//! This module is the pure part: releases, ledger records, gates and risk, all on plain data and
//! unit-tested without AWS. `run.rs` does the I/O.

pub mod run;
#[cfg(test)]
mod tests;

use crate::aws::types::StackStatus;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::aws::cfn::ResourceChange;
use crate::render::{Kind, RenderFailure, Renderer};
pub use crate::state::ledger::{
    artifact_key, release_digest, LedgerKind, LedgerRecord, Release, ARTIFACT_SCHEMA, LEDGER_SCHEMA,
};
use crate::tenant::{PromotionPolicy, Tenant};

/// The stack a workload runs as, in both accounts.
pub fn workload_stack(workload: &str) -> String {
    format!("{}{workload}", crate::aws::cfn::WORKLOAD_STACK_PREFIX)
}

/// Rendering is promotion's: the stored form is [`crate::state::ledger`]'s.
impl Release {
    /// Renders `workload` of `tenant`. The context holds only what is the same in both
    /// environments (tenant, workload, parameters, home region, management account id), so the
    /// artifact is too; environment settings go in as stack parameters.
    pub fn render(
        tenant: &Tenant,
        workload: &str,
        renderer: &Renderer,
        home_region: &str,
        management_account_id: &str,
    ) -> Result<Release, RenderFailure> {
        let spec = tenant.spec.workloads.get(workload).ok_or_else(|| RenderFailure::Unknown {
            kind: "workload",
            name: workload.into(),
            known: tenant.spec.workloads.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        let params = crate::params::with_defaults(renderer.params(&spec.blueprint), &spec.parameters);
        let parameters = serde_json::to_value(&params).unwrap_or_default();
        let ctx = serde_json::json!({
            "tenant": { "id": tenant.spec.id, "name": tenant.spec.name },
            "workload": workload,
            "home_region": home_region,
            "management_account_id": management_account_id,
            "params": parameters,
        });
        let rendered = renderer.render(Kind::Blueprint, &spec.blueprint, &ctx)?;
        let digest = release_digest(&rendered.body, &parameters);
        Ok(Release {
            schema: ARTIFACT_SCHEMA.into(),
            tenant: tenant.spec.id.clone(),
            workload: workload.into(),
            blueprint: spec.blueprint.clone(),
            parameters,
            template: rendered.body,
            digest,
        })
    }
}

/// The first 12 characters of a digest, for display (of anything else read as one: its first
/// 12 characters, never cut inside one).
pub fn short(digest: &str) -> &str {
    let end = digest.char_indices().nth(12).map_or(digest.len(), |(i, _)| i);
    &digest[..end]
}

/// A check result for a release, from the ledger or from the staging evidence bucket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Evidence {
    /// Check name, e.g. `tests`.
    pub check: String,
    /// Release digest it is about.
    pub release: String,
    /// Passed or not.
    pub pass: bool,
    /// When storage received it (RFC 3339): the ledger record's or the S3 object's
    /// `LastModified`, never a time the reporter chose.
    pub at: String,
    /// Link to the run, if given.
    pub url: Option<String>,
    /// Free text.
    pub note: Option<String>,
    /// Who or what reported it.
    pub source: String,
    /// Its position in the ledger (ordered by the bucket's clock, then the writer's), for ledger
    /// records; `None` for objects in the evidence bucket.
    #[serde(default)]
    pub seq: Option<usize>,
}

/// Reads a verdict object of the staging evidence bucket. Its key says what it is about:
/// `verdicts/<release digest>/<check>.json`, and only the key counts, because the agent
/// pipeline's IAM policies let each agent role write only its own checks' keys (the reviewer
/// `tests.json` and `review.json`, the security auditor `security-audit.json`). The body is
/// `{"result": "pass"|"fail", "check"?, "release"?, "url"?, "note"?}`; a `check` or `release` in
/// the body that disagrees with the key makes the object count for nothing. `at` is the object's
/// `LastModified`, `source` where it was read. Errors: why the object is ignored.
pub fn verdict(key: &str, body: &serde_json::Value, at: String, source: String) -> Result<Evidence, String> {
    let parts: Vec<&str> = key.split('/').collect();
    let malformed = || "not of the form verdicts/<release>/<check>.json".to_string();
    let [_, release, file] = parts[..] else { return Err(malformed()) };
    let Some(check) = file.strip_suffix(".json").filter(|c| !c.is_empty() && !release.is_empty()) else {
        return Err(malformed());
    };
    for (field, from_key) in [("check", check), ("release", release)] {
        if let Some(v) = body.get(field).filter(|v| !v.is_null()) {
            if v.as_str() != Some(from_key) {
                return Err(format!(
                    "its body says {field} {v}, its key {from_key}: only the key counts, and they must agree"
                ));
            }
        }
    }
    let pass = match body["result"].as_str() {
        Some("pass") => true,
        Some("fail") => false,
        _ => return Err("`result` is neither \"pass\" nor \"fail\"".into()),
    };
    Ok(Evidence {
        check: check.into(),
        release: release.into(),
        pass,
        at,
        url: body["url"].as_str().map(str::to_string),
        note: body["note"].as_str().map(str::to_string),
        source,
        seq: None,
    })
}

/// One gate of convergence.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Gate {
    /// `staged`, `stack`, `drift`, `check:<name>`, `soak`, `parity`.
    pub gate: String,
    /// Whether it passed.
    pub pass: bool,
    /// Why, readably.
    pub detail: String,
}

/// What the staging stack runs, as read for the gates.
#[derive(Debug, Clone, PartialEq)]
pub struct StagingStack {
    /// Stack status.
    pub status: StackStatus,
    /// What it runs when that is not the release looked at: read from its template
    /// ([`Running::describe`] text), e.g. "release 24785d…" or "a template that is no stored
    /// release".
    pub release: Option<String>,
    /// Whether the template it runs equals the artifact byte for byte.
    pub template_matches: bool,
    /// Drift detection: `Some(true)` in sync, `Some(false)` drifted (with what), `None` the
    /// backend could not tell (and why).
    pub in_sync: Result<bool, String>,
    /// Drifted resources, when drifted.
    pub drifted: Vec<String>,
}

/// Everything the gates look at, as plain data.
#[derive(Debug, Clone)]
pub struct GateInputs<'a> {
    /// The release.
    pub digest: &'a str,
    /// When it was last staged (RFC 3339), if ever.
    pub staged_at: Option<&'a str>,
    /// The staging workload stack, if it exists.
    pub staging: Option<StagingStack>,
    /// Every evidence record of the tenant (all releases), any order.
    pub evidence: &'a [Evidence],
    /// The tenant's promotion policy.
    pub policy: &'a PromotionPolicy,
    /// Now (RFC 3339).
    pub now: &'a str,
    /// Baseline parity: per environment, (the stack's version tag, the version tenantry renders).
    pub baseline: BTreeMap<String, (Option<String>, String)>,
}

fn parse_time(t: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
}

/// The result that counts for `check` on `release`: the latest by the storage's clock, compared
/// to the whole second (the precision S3 gives). Within the last second, ledger records keep the
/// ledger's order, and any failure from the evidence bucket wins (its order against the ledger
/// cannot be known).
pub fn latest_result<'e>(evidence: &'e [Evidence], check: &str, release: &str) -> Option<&'e Evidence> {
    let mine: Vec<&Evidence> = evidence.iter().filter(|e| e.check == check && e.release == release).collect();
    let second = |e: &Evidence| parse_time(&e.at).map(|t| t.unix_timestamp());
    let last = mine.iter().map(|e| second(e)).max()?;
    let in_last: Vec<&Evidence> = mine.into_iter().filter(|e| second(e) == last).collect();
    if let Some(fail) = in_last.iter().find(|e| e.seq.is_none() && !e.pass) {
        return Some(fail);
    }
    in_last.iter().filter(|e| e.seq.is_some()).max_by_key(|e| e.seq).or(in_last.first()).copied()
}

fn seconds_between(from: &str, to: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    let a = time::OffsetDateTime::parse(from, &Rfc3339).ok()?;
    let b = time::OffsetDateTime::parse(to, &Rfc3339).ok()?;
    Some((b - a).whole_seconds())
}

/// Evaluates every gate. A release is converged when all pass.
pub fn gates(i: &GateInputs<'_>) -> Vec<Gate> {
    let mut out = Vec::new();
    let d = short(i.digest);
    out.push(match i.staged_at {
        Some(at) => Gate { gate: "staged".into(), pass: true, detail: format!("release {d} staged at {at}") },
        None => Gate {
            gate: "staged".into(),
            pass: false,
            detail: format!("release {d} was never staged: run `tenantry stage`"),
        },
    });
    match &i.staging {
        None => out.push(Gate {
            gate: "stack".into(),
            pass: false,
            detail: "the staging workload stack does not exist".into(),
        }),
        Some(s) => {
            // UPDATE_ROLLBACK_COMPLETE is stable too: a later update failed and the stack was
            // rolled back to what it ran before, which the template comparison then shows.
            let complete = s.status.runs_a_template();
            // What the stack runs is its template: equal to the artifact byte for byte.
            let runs = s.template_matches;
            let detail = if !runs {
                format!(
                    "the staging stack's template differs from the artifact of release {d}: staging runs {}",
                    s.release.as_deref().unwrap_or("something else")
                )
            } else if !complete {
                format!("the staging stack is {}", s.status)
            } else {
                format!("staging runs release {d}, {}", s.status)
            };
            out.push(Gate { gate: "stack".into(), pass: runs && complete, detail });
            out.push(match &s.in_sync {
                Ok(true) => Gate { gate: "drift".into(), pass: true, detail: "no drift in staging".into() },
                Ok(false) => Gate {
                    gate: "drift".into(),
                    pass: false,
                    detail: format!("staging drifted: {}", s.drifted.join(", ")),
                },
                Err(why) => Gate {
                    gate: "drift".into(),
                    pass: true,
                    detail: format!("not checked: {why} (the backend cannot tell)"),
                },
            });
        }
    }
    for check in &i.policy.required_checks {
        let gate = format!("check:{check}");
        out.push(match latest_result(i.evidence, check, i.digest) {
            Some(e) if e.pass => Gate {
                gate,
                pass: true,
                detail: format!(
                    "passed at {} ({}){}",
                    e.at,
                    e.source,
                    e.url.as_deref().map(|u| format!(" {u}")).unwrap_or_default()
                ),
            },
            Some(e) => Gate {
                gate,
                pass: false,
                detail: format!(
                    "failed at {} ({}){}{}",
                    e.at,
                    e.source,
                    e.note.as_deref().map(|n| format!(": {n}")).unwrap_or_default(),
                    e.url.as_deref().map(|u| format!(" {u}")).unwrap_or_default()
                ),
            },
            None => {
                let other: Vec<&str> =
                    i.evidence.iter().filter(|e| &e.check == check && e.pass).map(|e| short(&e.release)).collect();
                let detail = if other.is_empty() {
                    format!("no result for release {d}")
                } else {
                    format!("no result for release {d} (passed only for other releases: {})", other.join(", "))
                };
                Gate { gate, pass: false, detail }
            }
        });
    }
    let soak = i.policy.soak_seconds() as i64;
    out.push(match i.staged_at.and_then(|at| seconds_between(at, i.now)) {
        Some(elapsed) if elapsed >= soak => {
            Gate { gate: "soak".into(), pass: true, detail: format!("staged {elapsed} s ago (soak {soak} s)") }
        }
        Some(elapsed) => Gate {
            gate: "soak".into(),
            pass: false,
            detail: format!("staged {elapsed} s ago; the soak time is {soak} s ({} s to go)", soak - elapsed),
        },
        None => Gate { gate: "soak".into(), pass: false, detail: "not staged".into() },
    });
    let broken: Vec<String> = i
        .baseline
        .iter()
        .filter(|(_, (running, want))| running.as_deref() != Some(want.as_str()))
        .map(|(env, (running, want))| {
            format!("{env} runs {} (wanted {})", running.as_deref().map(short).unwrap_or("nothing"), short(want))
        })
        .collect();
    out.push(if broken.is_empty() && !i.baseline.is_empty() {
        Gate { gate: "parity".into(), pass: true, detail: "production and staging run the current baseline".into() }
    } else if i.baseline.is_empty() {
        Gate { gate: "parity".into(), pass: false, detail: "no baseline found".into() }
    } else {
        Gate {
            gate: "parity".into(),
            pass: false,
            detail: format!("the twins differ: {} (run `tenantry apply`)", broken.join("; ")),
        }
    });
    out
}

/// How risky a production change set is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    /// No replacement, removal, IAM/KMS/policy change or resource type the tenant marks.
    Low,
    /// Needs approval.
    High,
}

fn type_matches(pattern: &str, resource_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => resource_type.starts_with(prefix),
        None => pattern == resource_type,
    }
}

/// Classifies a change set: high risk for replacements (`True` or `Conditional`), removals,
/// IAM, KMS and policy resources, and resource types the tenant's policy marks. Returns the
/// reasons.
pub fn classify(changes: &[ResourceChange], policy: &PromotionPolicy) -> (Risk, Vec<String>) {
    let mut reasons = Vec::new();
    for c in changes {
        let what = format!("{} {} ({})", c.action, c.logical_id, c.resource_type);
        if c.action == "Remove" {
            reasons.push(format!("{what}: removal"));
        } else if matches!(c.replacement.as_str(), "True" | "Conditional") {
            reasons.push(format!("{what}: replacement {}", c.replacement));
        }
        if c.resource_type.starts_with("AWS::IAM::")
            || c.resource_type.starts_with("AWS::KMS::")
            || c.resource_type.ends_with("Policy")
        {
            reasons.push(format!("{what}: IAM, KMS or policy change"));
        }
        if let Some(p) = policy.high_risk_resource_types.iter().find(|p| type_matches(p, &c.resource_type)) {
            reasons.push(format!("{what}: marked high risk by the tenant's promotion policy ({p})"));
        }
    }
    (if reasons.is_empty() { Risk::Low } else { Risk::High }, reasons)
}

/// The release a rollback goes back to. Promotions form a stack: a promotion pushes its release,
/// a rollback pops the current one; the target is the release below the top. So A, B, C promoted
/// then two rollbacks go to B, then A, never forward again. `history` holds one workload's
/// records, oldest first; `None` when there is nothing below the top.
pub fn rollback_target(history: &[&LedgerRecord]) -> Option<String> {
    let stack = promotion_stack(history);
    stack.len().checked_sub(2).map(|i| stack[i].to_string())
}

/// The stack of promoted releases that [`rollback_target`] walks, bottom first.
pub fn promotion_stack<'r>(history: &[&'r LedgerRecord]) -> Vec<&'r str> {
    let mut stack: Vec<&str> = Vec::new();
    for r in history {
        match r.kind {
            LedgerKind::Promoted if stack.last() != Some(&r.release.as_str()) => stack.push(&r.release),
            LedgerKind::RolledBack => {
                match stack[..stack.len().saturating_sub(1)].iter().rposition(|s| *s == r.release) {
                    // Back to a release below the top: what was promoted after it is off the stack
                    // (one level for a rollback, more when production went back further).
                    Some(i) => stack.truncate(i + 1),
                    // Back to a release the stack does not hold (older ledgers): it becomes the top.
                    None if stack.last() != Some(&r.release.as_str()) => stack.push(&r.release),
                    None => {}
                }
            }
            _ => {}
        }
    }
    stack
}

/// What a workload stack runs, read from the stack itself (never from the ledger).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Running {
    /// No stack, or one that never ran a template (`REVIEW_IN_PROGRESS`, `ROLLBACK_COMPLETE`,
    /// `DELETE_COMPLETE`).
    Absent,
    /// The stack's template (`GetTemplate`) is this release's artifact, byte for byte.
    Release {
        /// Release digest.
        release: String,
        /// Stack status.
        stack_status: StackStatus,
    },
    /// The stack runs a template that is no stored release of the tenant (changed outside
    /// tenantry, or its artifact is gone).
    Unknown {
        /// Its `tenantry:release` tag, if any.
        tag: Option<String>,
        /// Stack status.
        stack_status: StackStatus,
    },
    /// An operation is in progress (`*_IN_PROGRESS`): what it will run is not known yet.
    Busy {
        /// Stack status.
        stack_status: StackStatus,
    },
}

impl Running {
    /// The release, when the stack runs a known one.
    pub fn release(&self) -> Option<&str> {
        match self {
            Running::Release { release, .. } => Some(release),
            _ => None,
        }
    }

    /// The stack's status, when there is a stack that ran something.
    pub fn stack_status(&self) -> Option<&StackStatus> {
        match self {
            Running::Release { stack_status, .. }
            | Running::Unknown { stack_status, .. }
            | Running::Busy { stack_status } => Some(stack_status),
            Running::Absent => None,
        }
    }

    /// Readably, for messages.
    pub fn describe(&self) -> String {
        match self {
            Running::Absent => "no workload stack".into(),
            Running::Release { release, .. } => format!("release {}", short(release)),
            Running::Unknown { tag, .. } => format!(
                "a template that is no stored release of this tenant (its release tag: {})",
                tag.as_deref().map(short).unwrap_or("none")
            ),
            Running::Busy { stack_status } => format!("a stack operation in progress ({stack_status})"),
        }
    }
}

/// A ledger record to write because the ledger lacks the outcome of a change production shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recovery {
    /// `promoted`, `rolled_back` or `promotion_failed`.
    pub kind: LedgerKind,
    /// Release digest.
    pub release: String,
    /// The `executing` record it is the outcome of, if any.
    pub intent: Option<String>,
    /// Why, readably (also stored in the record's `detail.note`).
    pub note: String,
}

/// The ledger against the production stack, for one workload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LedgerTruth {
    /// What the stack runs.
    pub running: Running,
    /// What the ledger's last promotion or rollback says it runs.
    pub ledger_release: Option<String>,
    /// Records to append so that the ledger tells what happened (JSON: `recovered`).
    #[serde(rename = "recovered")]
    pub recover: Vec<Recovery>,
    /// The ledger and the stack disagree (before recovery), readably (JSON: `ledger_mismatch`).
    #[serde(rename = "ledger_mismatch")]
    pub mismatch: Option<String>,
}

impl LedgerTruth {
    /// Serializes `truth` flattened into the struct that holds it, with the same keys when
    /// production was not read (`None`): `running`, `ledger_release` and `ledger_mismatch` `null`,
    /// `recovered` `[]`. Errors: those of the serializer.
    pub fn serialize_flat<S: serde::Serializer>(truth: &Option<LedgerTruth>, s: S) -> Result<S::Ok, S::Error> {
        /// The keys of an unread [`LedgerTruth`].
        #[derive(Serialize)]
        struct Unread {
            running: Option<Running>,
            ledger_release: Option<String>,
            recovered: [Recovery; 0],
            ledger_mismatch: Option<String>,
        }
        match truth {
            Some(t) => t.serialize(s),
            None => Unread { running: None, ledger_release: None, recovered: [], ledger_mismatch: None }.serialize(s),
        }
    }
}

/// `executing` records of `history` whose outcome was never recorded (no record names them in
/// `detail.intent`) and that came after the last `promoted` or `rolled_back` record (an older
/// one was overtaken by a later change of production), oldest first.
pub fn pending_intents<'r>(history: &[&'r LedgerRecord]) -> Vec<&'r LedgerRecord> {
    let answered: std::collections::BTreeSet<&str> =
        history.iter().filter_map(|r| r.detail.get("intent").and_then(|v| v.as_str())).collect();
    let since = history
        .iter()
        .rposition(|r| matches!(r.kind, LedgerKind::Promoted | LedgerKind::RolledBack))
        .map_or(0, |i| i + 1);
    history[since..]
        .iter()
        .copied()
        .filter(|r| r.kind == LedgerKind::Executing && !answered.contains(r.id.as_str()))
        .collect()
}

/// Compares one workload's ledger (`history`, oldest first) with what its production stack runs,
/// and says which records would make the ledger true. Only a difference is ever recorded:
/// - production runs release R and the ledger's last promotion or rollback is not R: R's
///   outcome is recovered, as the kind of the latest pending intent for R (a run that died
///   after executing its change set); without one, as `rolled_back` when R is below the top of
///   the promotion stack (production went back to it: a rollback whose records were lost), else
///   as `promoted` (a record lost, or a deploy of a stored release outside tenantry);
/// - every pending intent for another release: `promotion_failed` (production does not run it),
///   unless production is busy or runs an unknown template (then it stays pending).
///
/// Nothing is recovered while the stack is busy; a stack that runs no release, or an unknown
/// template, while the ledger names one is a mismatch that no record can fix.
pub fn ledger_truth(history: &[&LedgerRecord], running: &Running) -> LedgerTruth {
    let ledger_release = current_release(history);
    let pending = pending_intents(history);
    let mut recover = Vec::new();
    let mut mismatch = None;
    let said = ledger_release.as_deref().map(|r| format!("release {}", short(r))).unwrap_or_else(|| "nothing".into());
    match running {
        Running::Busy { .. } => {}
        Running::Release { release, .. } => {
            if ledger_release.as_deref() != Some(release) {
                mismatch = Some(format!("the ledger says production runs {said}; the production stack runs release {} (its template is that artifact byte for byte)", short(release)));
                let stack = promotion_stack(history);
                let failed = failed_here(history, release);
                recover.push(match pending.iter().rev().find(|i| &i.release == release) {
                    Some(i) => Recovery {
                        kind: intended_kind(i),
                        release: release.clone(),
                        intent: Some(i.id.clone()),
                        note: format!(
                            "production runs this release; the `executing` record of change set {} had no outcome record (its run stopped before writing one, or the record was lost)",
                            i.detail["change_set"].as_str().unwrap_or("?")
                        ),
                    },
                    // Its change set was executed by tenantry and recorded as failed, yet the stack
                    // runs its template (an update that failed without being rolled back).
                    None if failed.is_some() => {
                        let i = failed.expect("checked");
                        Recovery {
                            kind: intended_kind(i),
                            release: release.clone(),
                            intent: Some(i.id.clone()),
                            note: format!(
                                "production runs this release although change set {} was recorded as failed (the stack shows its template)",
                                i.detail["change_set"].as_str().unwrap_or("?")
                            ),
                        }
                    }
                    None if stack.len() >= 2 && stack[..stack.len() - 1].contains(&release.as_str()) => Recovery {
                        kind: LedgerKind::RolledBack,
                        release: release.clone(),
                        intent: None,
                        note: "production runs this earlier release again, and the ledger had no record of going back to it (a record lost, or a change outside tenantry)".into(),
                    },
                    None => Recovery {
                        kind: LedgerKind::Promoted,
                        release: release.clone(),
                        intent: None,
                        note: "production runs this release, and the ledger had no record of it (a record lost, or a deploy outside tenantry)".into(),
                    },
                });
            }
            for i in pending.iter().filter(|i| &i.release != release) {
                recover.push(failed_intent(i, running));
            }
        }
        Running::Absent => {
            if let Some(r) = &ledger_release {
                mismatch = Some(format!(
                    "the ledger says production runs release {}; production has no workload stack",
                    short(r)
                ));
            }
            for i in &pending {
                recover.push(failed_intent(i, running));
            }
        }
        Running::Unknown { .. } => {
            mismatch = Some(format!(
                "the ledger says production runs {said}; the production stack runs {}",
                running.describe()
            ));
        }
    }
    let unfinished: Vec<String> = recover
        .iter()
        .filter(|r| r.kind == LedgerKind::PromotionFailed)
        .map(|r| format!("release {} (intent {})", short(&r.release), r.intent.as_deref().unwrap_or("?")))
        .collect();
    if mismatch.is_none() && !unfinished.is_empty() {
        mismatch = Some(format!(
            "`executing` record(s) without an outcome: {}; production runs {}, so they were not carried out",
            unfinished.join(", "),
            running.describe()
        ));
    }
    LedgerTruth { running: running.clone(), ledger_release, recover, mismatch }
}

/// What an `executing` record intended: `rolled_back` when its `detail.as` says so, else
/// `promoted`.
fn intended_kind(intent: &LedgerRecord) -> LedgerKind {
    if intent.detail.get("as").and_then(|v| v.as_str()) == Some("rolled_back") {
        LedgerKind::RolledBack
    } else {
        LedgerKind::Promoted
    }
}

/// The latest `executing` record for `release` whose outcome was recorded as `promotion_failed`.
fn failed_here<'r>(history: &[&'r LedgerRecord], release: &str) -> Option<&'r LedgerRecord> {
    history.iter().rev().copied().find(|i| {
        i.kind == LedgerKind::Executing
            && i.release == release
            && history.iter().any(|o| {
                o.kind == LedgerKind::PromotionFailed
                    && o.detail.get("intent").and_then(|v| v.as_str()) == Some(i.id.as_str())
            })
    })
}

fn failed_intent(intent: &LedgerRecord, running: &Running) -> Recovery {
    Recovery {
        kind: LedgerKind::PromotionFailed,
        release: intent.release.clone(),
        intent: Some(intent.id.clone()),
        note: format!(
            "change set {} was not carried out or was rolled back: production runs {}",
            intent.detail["change_set"].as_str().unwrap_or("?"),
            running.describe()
        ),
    }
}

/// The release production runs, as the ledger records it: the last promotion or rollback of the
/// workload (`history` oldest first).
pub fn current_release(history: &[&LedgerRecord]) -> Option<String> {
    history
        .iter()
        .rev()
        .find(|r| matches!(r.kind, LedgerKind::Promoted | LedgerKind::RolledBack))
        .map(|r| r.release.clone())
}

/// Whether an approval of `release` covers a promotion now: it was recorded after production last
/// changed (the last promotion or rollback of the workload), so it approved going from what
/// production runs now to `release`. An approval is used up by the next change of production.
///
/// An approval also names the production stack parameters it saw: it covers the promotion only if
/// they are still `parameters` (the parameters are not part of the release digest).
pub fn approved(history: &[&LedgerRecord], release: &str, parameters: &BTreeMap<String, String>) -> bool {
    let last_change = history.iter().rposition(|r| matches!(r.kind, LedgerKind::Promoted | LedgerKind::RolledBack));
    let params = serde_json::to_value(parameters).unwrap_or_default();
    history.iter().enumerate().any(|(i, r)| {
        r.kind == LedgerKind::Approval
            && r.release == release
            && last_change.is_none_or(|c| i > c)
            && r.detail.get("production_parameters") == Some(&params)
    })
}
