//! The plan as a value: what `plan --out FILE` saves and `apply FILE` carries out, the observed
//! facts each step depends on, and the staleness check that refuses a plan whose inputs or facts
//! changed since it was made (like Terraform's saved plans). Pure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{OrgStep, Plan, Step, TenantPlan};
use crate::observe::{AccountObservation, ObservedTenant};
use crate::render::sha256_hex;

/// Version of the saved plan format; a file of another version is refused.
pub const FORMAT_VERSION: u32 = 1;

/// The observed facts a tenant's plan was made from: `"<environment>: <subject>"` → value, e.g.
/// `"production: parent"` → `"ou-ab12-cdef3456"`, `"staging: stack tenantry-acme-baseline"` →
/// `"UPDATE_COMPLETE version 3f2a… template 9c1e…"`. Template and policy contents appear as
/// their sha256.
pub type Facts = BTreeMap<String, String>;

/// A plan saved to a file by `tenantry plan --out FILE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPlan {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Version of tenantry that made it.
    pub tenantry_version: String,
    /// When it was made (RFC 3339, UTC).
    pub created_at: String,
    /// The management account it was made against.
    pub management_account_id: String,
    /// The state bucket it read.
    pub state_bucket: String,
    /// Every input file (`tenantry.toml`, tenant files, blueprints, policies) → sha256 of its
    /// bytes, keyed `config`, `tenants/<file>`, `blueprints/<file>`, `policies/<file>`.
    pub inputs: BTreeMap<String, String>,
    /// The plan, with each tenant's facts.
    pub plan: Plan,
}

/// Why a saved or shown plan may not be carried out: each item names one thing that changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stale {
    /// What changed, one line each.
    pub changes: Vec<String>,
}

impl std::fmt::Display for Stale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the plan is stale (nothing of it was carried out): {}; run `tenantry plan` again",
            self.changes.join("; ")
        )
    }
}

impl std::error::Error for Stale {}

/// The facts of one observation (see [`Facts`]).
pub fn facts(observed: &ObservedTenant) -> Facts {
    let mut facts = Facts::new();
    for (env, obs) in &observed.accounts {
        let mut put = |subject: String, value: String| {
            facts.insert(format!("{env}: {subject}"), value);
        };
        match obs {
            AccountObservation::Missing => put("account".into(), "missing".into()),
            AccountObservation::Creating { request_id } => put("account".into(), format!("creating {request_id}")),
            AccountObservation::Refused { account_id, .. } => {
                put("account".into(), format!("refused {}", account_id.as_deref().unwrap_or("-")))
            }
            AccountObservation::Found(found) => {
                let a = &found.account;
                put("account".into(), format!("{} {} {} <{}>", a.id, a.status, a.name, a.email));
                put("parent".into(), found.parent_id.clone());
                for (k, v) in &found.tags {
                    put(format!("tag {k}"), v.clone());
                }
                for (id, name) in &found.attached {
                    put(format!("attached {id}"), name.clone());
                }
                for (name, id) in &found.detached_scps {
                    put(format!("scp {name}"), format!("{id} detached"));
                }
                for (name, s) in &found.stacks {
                    let template = s.template_body.as_deref().map(|b| short(&sha256_hex(b.as_bytes())).to_string());
                    put(
                        format!("stack {name}"),
                        format!(
                            "{} version {} template {}",
                            s.status,
                            s.version.as_deref().map(short).unwrap_or("-"),
                            template.as_deref().unwrap_or("-")
                        ),
                    );
                }
            }
        }
    }
    facts
}

fn short(v: &str) -> &str {
    &v[..v.len().min(12)]
}

impl Step {
    /// Whether this step depends on the fact `key` (see [`Facts`]): facts of the account of its
    /// environment (its status, parent and tags) for every step of an environment; the SCPs
    /// attached to it for policy steps; its stack for stack steps.
    pub fn depends_on(&self, key: &str) -> bool {
        use super::Change::*;
        let Some(subject) = key.strip_prefix(&format!("{}: ", self.environment)) else { return false };
        let account = subject == "account" || subject == "parent" || subject.starts_with("tag ");
        match &self.change {
            CreatePolicy { name, .. }
            | UpdatePolicy { name, .. }
            | AttachPolicy { name, .. }
            | RemovePolicy { name, .. }
            | DetachForeignPolicy { name, .. } => {
                account || subject.starts_with("attached ") || subject == format!("scp {name}")
            }
            CreateStack { stack, .. }
            | UpdateStack { stack, .. }
            | RedeployStack { stack, .. }
            | RecoverStack { stack, .. }
            | DeleteStack { stack, .. }
            | RecreateStack { stack, .. } => {
                subject == "account" || subject == "parent" || subject == format!("stack {stack}")
            }
            _ => account,
        }
    }
}

/// Checks a tenant's approved plan against the plan made again under its lease (the changes
/// named without the tenant, whose outcome carries them): stale when a
/// fact one of the approved steps depends on changed, or when the steps differ. Returns what
/// changed. A plan that now has nothing to do is never stale: carrying it out changes nothing
/// (another run made the changes meanwhile).
pub fn check_tenant(approved: &TenantPlan, now: &TenantPlan) -> Result<(), Stale> {
    if now.steps.is_empty() {
        return Ok(());
    }
    let mut changes = Vec::new();
    let keys: std::collections::BTreeSet<&String> = approved.facts.keys().chain(now.facts.keys()).collect();
    for key in keys {
        if !approved.steps.iter().any(|s| s.depends_on(key)) {
            continue;
        }
        let (was, is) = (approved.facts.get(key), now.facts.get(key));
        if was != is {
            let show = |v: Option<&String>| v.map(|v| format!("\"{v}\"")).unwrap_or_else(|| "(none)".into());
            changes.push(format!("{key} was {}, is now {}", show(was), show(is)));
        }
    }
    if changes.is_empty() && approved.steps != now.steps {
        changes.push(format!("the plan differs: {}", differences(&approved.steps, &now.steps)));
    }
    if changes.is_empty() {
        Ok(())
    } else {
        Err(Stale { changes })
    }
}

/// Checks organization steps: the approved ones against the ones made again (under the
/// organization's lease when there are any). Approved steps another run has made meanwhile are
/// simply not needed any more; a step needed now that was not approved makes the plan stale.
pub fn check_organization(approved: &[OrgStep], now: &[OrgStep]) -> Result<(), Stale> {
    if now.iter().all(|s| approved.contains(s)) {
        return Ok(());
    }
    Err(Stale { changes: vec![format!("organization: {}", differences(approved, now))] })
}

/// How two lists of steps differ, readably: each step approved that is `no longer` needed, each
/// needed `now also`, or the same steps in another order.
fn differences<T: PartialEq + std::fmt::Display>(approved: &[T], now: &[T]) -> String {
    let gone = approved.iter().filter(|s| !now.contains(s)).map(|s| format!("no longer: {s}"));
    let new = now.iter().filter(|s| !approved.contains(s)).map(|s| format!("now also: {s}"));
    let each: Vec<String> = gone.chain(new).collect();
    match each.is_empty() {
        true => "the same steps in another order".into(),
        false => each.join(", "),
    }
}

/// Checks a saved plan's inputs against the input files now: names each file added, removed
/// or changed since the plan was made.
pub fn check_inputs(saved: &BTreeMap<String, String>, now: &BTreeMap<String, String>) -> Result<(), Stale> {
    let mut changes = Vec::new();
    for (file, digest) in saved {
        match now.get(file) {
            None => changes.push(format!("{file} was removed")),
            Some(d) if d != digest => changes.push(format!("{file} changed")),
            Some(_) => {}
        }
    }
    for file in now.keys().filter(|f| !saved.contains_key(*f)) {
        changes.push(format!("{file} was added"));
    }
    if changes.is_empty() {
        Ok(())
    } else {
        Err(Stale { changes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Change;
    use crate::tenant::Environment;

    fn plan(steps: Vec<Step>, facts: &[(&str, &str)]) -> TenantPlan {
        TenantPlan {
            lifecycle: Default::default(),
            tenant: "acme".into(),
            steps,
            refusals: vec![],
            manual: vec![],
            facts: facts.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    fn tag_step() -> Step {
        Step {
            change: Change::TagAccount {
                account_id: "111111111111".into(),
                tags: [("owner".to_string(), (Some("a".to_string()), "b".to_string()))].into(),
            },
            environment: Environment::Production,
        }
    }

    #[test]
    fn a_fact_a_step_depends_on_that_changed_makes_the_plan_stale() {
        let approved = plan(vec![tag_step()], &[("production: tag owner", "a"), ("production: parent", "ou-1")]);
        for (key, value) in [("production: tag owner", "c"), ("production: parent", "ou-2")] {
            let mut now = approved.clone();
            now.facts.insert(key.into(), value.into());
            let stale = check_tenant(&approved, &now).unwrap_err();
            assert_eq!(stale.changes.len(), 1, "{stale}");
            assert!(stale.changes[0].contains(key), "{stale}");
        }
        let mut gone = approved.clone();
        gone.facts.remove("production: tag owner");
        assert!(check_tenant(&approved, &gone).unwrap_err().to_string().contains("is now (none)"));
    }

    #[test]
    fn facts_no_step_depends_on_may_change() {
        let approved = plan(
            vec![tag_step()],
            &[("production: tag owner", "a"), ("production: stack tenantry-baseline", "CREATE_COMPLETE v1")],
        );
        let mut now = approved.clone();
        now.facts.insert("production: stack tenantry-baseline".into(), "UPDATE_COMPLETE v2".into());
        now.facts.insert("staging: tag owner".into(), "z".into());
        assert_eq!(check_tenant(&approved, &now), Ok(()));
    }

    #[test]
    fn other_steps_under_the_same_facts_make_the_plan_stale() {
        let approved = plan(vec![tag_step()], &[]);
        let untag = Step {
            change: Change::UntagAccount {
                account_id: "111111111111".into(),
                tags: [("owner".to_string(), "a".to_string())].into(),
            },
            environment: Environment::Production,
        };
        let now = plan(vec![untag], &[]);
        let stale = check_tenant(&approved, &now).unwrap_err();
        assert!(stale.changes[0].contains("no longer: ~ production: tag account"), "{stale}");
        assert!(stale.changes[0].contains("now also: - production: remove tags"), "{stale}");
    }

    #[test]
    fn a_plan_with_nothing_left_to_do_is_not_stale() {
        let approved = plan(vec![tag_step()], &[("production: tag owner", "a")]);
        let done = plan(vec![], &[("production: tag owner", "b")]);
        assert_eq!(check_tenant(&approved, &done), Ok(()));
        assert_eq!(check_organization(&[OrgStep::CreateOrganization], &[]), Ok(()));
    }

    #[test]
    fn a_stack_step_depends_on_its_stack_only() {
        let step = Step {
            change: Change::UpdateStack {
                stack: "tenantry-baseline".into(),
                blueprint: "baseline".into(),
                from_version: None,
                version: "v2".into(),
            },
            environment: Environment::Staging,
        };
        assert!(step.depends_on("staging: stack tenantry-baseline"));
        assert!(step.depends_on("staging: account"));
        assert!(!step.depends_on("staging: stack tenantry-agent-pipeline"));
        assert!(!step.depends_on("production: stack tenantry-baseline"));
        assert!(!step.depends_on("staging: tag owner"));
    }

    #[test]
    fn every_input_file_added_removed_or_changed_is_named() {
        let saved: BTreeMap<String, String> = [("config", "1"), ("tenants/acme.toml", "2"), ("policies/x.json", "3")]
            .map(|(k, v)| (k.into(), v.into()))
            .into();
        let mut now = saved.clone();
        assert_eq!(check_inputs(&saved, &now), Ok(()));
        now.insert("tenants/acme.toml".into(), "9".into());
        now.remove("policies/x.json");
        now.insert("tenants/new.toml".into(), "4".into());
        let stale = check_inputs(&saved, &now).unwrap_err();
        assert_eq!(
            stale.changes,
            ["policies/x.json was removed", "tenants/acme.toml changed", "tenants/new.toml was added"]
        );
    }

    #[test]
    fn organization_steps_another_run_made_meanwhile_are_not_stale_but_new_ones_are() {
        let a = OrgStep::CreateOu { path: "A".into() };
        let b = OrgStep::CreateOu { path: "B".into() };
        let (both, just_a, just_b) = (vec![a.clone(), b.clone()], vec![a.clone()], vec![b.clone()]);
        assert!(check_organization(&both, &just_b).is_ok());
        assert!(check_organization(&just_a, &[]).is_ok());
        let stale = check_organization(&just_a, &both).unwrap_err();
        assert_eq!(stale.changes, ["organization: now also: + create OU B"]);
    }
}
