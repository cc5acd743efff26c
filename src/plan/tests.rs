//! Planner unit tests on plain data: no network, no AWS.

use std::collections::BTreeMap;

use super::*;
use crate::desired::{DesiredPolicy, DesiredStack};
use crate::observe::{AccountSummary, DriftedResource, FoundBy, ObservedStack};

pub(crate) fn desired() -> DesiredTenant {
    let account = |env: Environment, ou: &str, stacks: &[&str]| DesiredAccount {
        environment: env,
        email: format!("{env}@example.com"),
        account_name: format!("Acme ({env})"),
        ou_path: ou.into(),
        tags: BTreeMap::from([
            ("tenantry:tenant".to_string(), "acme".to_string()),
            ("tenantry:environment".to_string(), env.to_string()),
            ("tenantry:managed-by".to_string(), "tenantry".to_string()),
            ("cost-center".to_string(), "cc-1".to_string()),
        ]),
        policies: vec![policy("deny-leave", r#"{"Version":"2012-10-17","Statement":[]}"#)],
        stacks: stacks
            .iter()
            .map(|b| DesiredStack {
                blueprint: b.to_string(),
                stack_name: format!("tenantry-{b}"),
                template: "{}".into(),
                version: format!("v-{b}"),
            })
            .collect(),
    };
    DesiredTenant {
        id: "acme".into(),
        name: "Acme".into(),
        drift: crate::tenant::DriftMode::Report,
        lifecycle: crate::tenant::Lifecycle::Active,
        accounts: vec![
            account(Environment::Production, "Tenants/Production", &["baseline"]),
            account(Environment::Staging, "Tenants/Staging", &["baseline", "agent-pipeline"]),
        ],
        claims: Default::default(),
        home_region: "us-east-1".into(),
    }
}

/// A rendered policy of file `source` with document `content`, named by its digest.
pub(crate) fn policy(source: &str, content: &str) -> DesiredPolicy {
    let digest = crate::render::sha256_hex(content.as_bytes());
    DesiredPolicy {
        source: source.into(),
        name: crate::desired::policy_name(source, &digest),
        content: content.into(),
        digest,
    }
}

/// An observation in which `env`'s account matches `desired` exactly.
pub(crate) fn in_sync(d: &DesiredTenant, env: Environment) -> ObservedAccount {
    let want = d.account(env);
    ObservedAccount {
        account: AccountSummary {
            id: format!("{}", if env == Environment::Production { 111 } else { 222 }),
            name: want.account_name.clone(),
            email: want.email.clone(),
            status: "ACTIVE".into(),
        },
        tags: want.tags.clone(),
        parent_id: format!("ou-{env}"),
        parent_path: None,
        recorded_tag_keys: want.tags.keys().cloned().collect(),
        desired_ou_id: Some(format!("ou-{env}")),
        attached: want
            .policies
            .iter()
            .map(|p| (format!("p-{}", p.name), p.name.clone()))
            .chain([("p-FullAWSAccess".to_string(), "FullAWSAccess".to_string())])
            .collect(),
        detached_scps: BTreeMap::new(),
        stacks: want
            .stacks
            .iter()
            .map(|s| {
                (
                    s.stack_name.clone(),
                    ObservedStack {
                        name: s.stack_name.clone(),
                        stack_id: "arn".into(),
                        status: "CREATE_COMPLETE".into(),
                        version: Some(s.version.clone()),
                        tags: BTreeMap::from([
                            ("tenantry:tenant".to_string(), "acme".to_string()),
                            ("tenantry:environment".to_string(), env.to_string()),
                            ("tenantry:managed-by".to_string(), "tenantry".to_string()),
                            ("tenantry:blueprint".to_string(), s.blueprint.clone()),
                            ("tenantry:version".to_string(), s.version.clone()),
                        ]),
                        changed_at: None,
                        template_body: Some(s.template.clone()),
                        resource_drift: ResourceDrift::NotChecked,
                    },
                )
            })
            .collect(),
        found_by: FoundBy::Recorded,
    }
}

pub(crate) fn observed_with(d: &DesiredTenant, edit: impl Fn(Environment, &mut ObservedAccount)) -> ObservedTenant {
    let mut accounts = BTreeMap::new();
    for env in Environment::ALL {
        let mut a = in_sync(d, env);
        edit(env, &mut a);
        accounts.insert(env, AccountObservation::Found(Box::new(a)));
    }
    ObservedTenant { tenant: d.id.clone(), accounts, scps: existing_scps(d) }
}

/// Every SCP `d` wants, existing with its document, attached with id `p-<name>`.
pub(crate) fn existing_scps(d: &DesiredTenant) -> BTreeMap<String, Option<PolicyDocument>> {
    d.accounts
        .iter()
        .flat_map(|a| &a.policies)
        .map(|p| {
            (p.name.clone(), Some(PolicyDocument { policy_id: format!("p-{}", p.name), content: p.content.clone() }))
        })
        .collect()
}

/// The plan for [`desired`] when only `env`'s account differs from it, by `edit`.
fn plan_when(env: Environment, edit: impl Fn(&mut ObservedAccount)) -> TenantPlan {
    let d = desired();
    tenant(
        &d,
        &observed_with(&d, |e, a| {
            if e == env {
                edit(a)
            }
        }),
    )
}

fn prod_steps(plan: &TenantPlan) -> Vec<&Step> {
    plan.steps.iter().filter(|s| s.environment == Environment::Production).collect()
}

#[test]
fn nothing_observed_creates_both_accounts_and_everything_in_them() {
    let d = desired();
    let observed = ObservedTenant { tenant: "acme".into(), accounts: BTreeMap::new(), scps: BTreeMap::new() };
    let plan = tenant(&d, &observed);
    assert!(plan.refusals.is_empty());
    let kinds: Vec<String> =
        plan.steps.iter().map(|s| serde_json::to_value(s).unwrap()["action"].as_str().unwrap().to_string()).collect();
    assert_eq!(
        kinds,
        [
            "create_account",
            "move_account",
            "create_policy",
            "attach_policy",
            "create_stack",
            "create_account",
            "move_account",
            "attach_policy",
            "create_stack",
            "create_stack"
        ]
    );
    // baseline before the agent pipeline in staging
    let staging_stacks: Vec<&str> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            Step { change: Change::CreateStack { stack, .. }, environment: Environment::Staging } => {
                Some(stack.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(staging_stacks, ["tenantry-baseline", "tenantry-agent-pipeline"]);
}

#[test]
fn in_sync_tenant_has_an_empty_plan() {
    let d = desired();
    let plan = tenant(&d, &observed_with(&d, |_, _| {}));
    assert_eq!(plan.steps, vec![]);
    assert!(plan.refusals.is_empty());
}

#[test]
fn account_in_another_ou_is_moved_back() {
    let plan = plan_when(Environment::Production, |a| {
        a.parent_id = "ou-elsewhere".into();
    });
    assert_eq!(
        plan.steps,
        vec![Step {
            change: Change::MoveAccount {
                account_id: Some("111".into()),
                from_parent_id: Some("ou-elsewhere".into()),
                from_path: None,
                to_ou_path: "Tenants/Production".into()
            },
            environment: Environment::Production
        }]
    );
}

#[test]
fn changed_and_missing_tags_are_set_and_foreign_tags_are_left_alone() {
    let plan = plan_when(Environment::Staging, |a| {
        a.tags.insert("cost-center".into(), "cc-OLD".into());
        a.tags.remove("tenantry:environment");
        a.tags.insert("owner".into(), "someone".into());
    });
    let Step { change: Change::TagAccount { tags, .. }, .. } = &plan.steps[0] else { panic!("{:?}", plan.steps) };
    assert_eq!(plan.steps.len(), 1);
    assert_eq!(tags.len(), 2);
    assert_eq!(tags["cost-center"], (Some("cc-OLD".to_string()), "cc-1".to_string()));
    assert_eq!(tags["tenantry:environment"], (None, "staging".to_string()));
}

#[test]
fn shared_scp_content_is_compared_as_json_and_restored_when_changed_out_of_band() {
    let d = desired();
    let name = d.account(Environment::Production).policies[0].name.clone();
    let with_content = |content: &str| {
        let mut o = observed_with(&d, |_, _| {});
        o.scps.insert(name.clone(), Some(PolicyDocument { policy_id: "p-1".into(), content: content.into() }));
        o
    };
    // Same document, other whitespace: no change.
    let plan = tenant(&d, &with_content("{ \"Statement\": [], \"Version\": \"2012-10-17\" }"));
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    // Edited document: restored once, though both accounts use it.
    let tampered =
        with_content(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#);
    let plan = tenant(&d, &tampered);
    assert_eq!(
        plan.steps,
        vec![Step {
            change: Change::UpdatePolicy {
                name: name.clone(),
                policy_id: "p-1".into(),
                digest: d.accounts[0].policies[0].digest.clone()
            },
            environment: Environment::Production
        }]
    );
    // In apply's plan the organization's steps restore it: the tenant has nothing to do.
    assert!(tenant(&d, &tampered.after_organization_steps(&d)).steps.is_empty());
}

#[test]
fn stale_scps_go_first_and_a_replaced_one_only_after_its_replacement_is_attached() {
    let d = desired();
    let new = d.account(Environment::Production).policies[0].name.clone();
    let plan = plan_when(Environment::Production, |a| {
        a.attached.retain(|_, name| !name.starts_with("tenantry-"));
        // The file's per-account SCP of an earlier version, one of a file no longer listed,
        // another tenant's, and one state recorded that was detached out of band.
        a.attached.insert("p-legacy".into(), "tenantry-acme-production-deny-leave".into());
        a.attached.insert("p-old".into(), "tenantry-acme-production-retired".into());
        a.attached.insert("p-other".into(), "tenantry-globex-production-x".into());
        a.detached_scps.insert("tenantry-acme-production-orphan".into(), "p-orphan".into());
    });
    let prod = Environment::Production;
    assert_eq!(
        prod_steps(&plan),
        vec![
            &Step::new(
                prod,
                Change::RemovePolicy {
                    name: "tenantry-acme-production-retired".into(),
                    policy_id: "p-old".into(),
                    attached: true,
                    replaced_by: None,
                    no_free_slot: false
                }
            ),
            &Step::new(
                prod,
                Change::DetachForeignPolicy {
                    name: "tenantry-globex-production-x".into(),
                    policy_id: "p-other".into()
                }
            ),
            &Step::new(
                prod,
                Change::RemovePolicy {
                    name: "tenantry-acme-production-orphan".into(),
                    policy_id: "p-orphan".into(),
                    attached: false,
                    replaced_by: None,
                    no_free_slot: false
                }
            ),
            &Step::new(prod, Change::AttachPolicy { name: new.clone() }),
            &Step::new(
                prod,
                Change::RemovePolicy {
                    name: "tenantry-acme-production-deny-leave".into(),
                    policy_id: "p-legacy".into(),
                    attached: true,
                    replaced_by: Some(new.clone()),
                    no_free_slot: false
                }
            ),
        ]
    );
    let text: Vec<String> = plan.steps.iter().map(ToString::to_string).collect();
    assert!(
        text[4].ends_with(&format!(
            "detach and delete SCP tenantry-acme-production-deny-leave (p-legacy): replaced by {new}, attached just before"
        )),
        "{text:?}"
    );
}

#[test]
fn a_changed_document_gets_its_own_scp_and_leaves_the_other_environment_alone() {
    let mut d = desired();
    let old = d.account(Environment::Production).policies[0].name.clone();
    let observed = observed_with(&d, |_, _| {});
    let changed = policy(
        "deny-leave",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"s3:*","Resource":"*"}]}"#,
    );
    d.accounts[0].policies = vec![changed.clone()];
    let mut observed = observed;
    observed.scps = existing_scps(&d);
    observed.scps.insert(changed.name.clone(), None);
    let plan = tenant(&d, &observed);
    let prod = Environment::Production;
    assert_eq!(
        plan.steps,
        vec![
            Step::new(
                prod,
                Change::CreatePolicy {
                    name: changed.name.clone(),
                    source: "deny-leave".into(),
                    digest: changed.digest.clone()
                }
            ),
            Step::new(prod, Change::AttachPolicy { name: changed.name.clone() }),
            Step::new(
                prod,
                Change::RemovePolicy {
                    name: old.clone(),
                    policy_id: format!("p-{old}"),
                    attached: true,
                    replaced_by: Some(changed.name.clone()),
                    no_free_slot: false
                }
            ),
        ],
        "only production changes; staging keeps the SCP it shared"
    );
    assert_ne!(changed.name, old);
}

#[test]
fn without_a_free_slot_the_replaced_scp_goes_before_its_replacement() {
    let d = desired();
    let new = d.account(Environment::Production).policies[0].name.clone();
    let plan = plan_when(Environment::Production, |a| {
        a.attached.retain(|_, name| !name.starts_with("tenantry-"));
        for i in 0..3 {
            a.attached.insert(format!("p-x{i}"), format!("team-guardrail-{i}"));
        }
        a.attached.insert("p-legacy".into(), "tenantry-acme-production-deny-leave".into());
    });
    assert!(plan.refusals.is_empty(), "{:?}", plan.refusals);
    assert!(
        matches!(
            &prod_steps(&plan)[..],
            [Step { change: Change::RemovePolicy { replaced_by: Some(r), no_free_slot: true, .. }, .. }, Step { change: Change::AttachPolicy { name }, .. }]
                if *r == new && *name == new
        ),
        "{:?}",
        plan.steps
    );
    assert!(plan.steps[0].to_string().contains("no free SCP slot for both"), "{}", plan.steps[0]);
}

#[test]
fn tags_tenantry_set_earlier_but_no_longer_listed_are_removed() {
    let plan = plan_when(Environment::Production, |a| {
        a.recorded_tag_keys.insert("retired".into());
        a.tags.insert("retired".into(), "x".into());
        a.tags.insert("someone-elses".into(), "y".into());
    });
    assert_eq!(
        plan.steps,
        vec![Step {
            change: Change::UntagAccount {
                account_id: "111".into(),
                tags: BTreeMap::from([("retired".to_string(), "x".to_string())])
            },
            environment: Environment::Production
        }]
    );
}

#[test]
fn stack_of_a_blueprint_no_longer_listed_is_deleted_only_if_tenantry_made_it() {
    let d = desired();
    let stack = |name: &str, tags: &[(&str, &str)]| ObservedStack {
        name: name.into(),
        stack_id: "arn".into(),
        status: "CREATE_COMPLETE".into(),
        version: None,
        tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        changed_at: None,
        template_body: None,
        resource_drift: ResourceDrift::NotChecked,
    };
    let plan = tenant(
        &d,
        &observed_with(&d, |env, a| {
            if env == Environment::Production {
                a.stacks.insert(
                    "tenantry-old".into(),
                    stack("tenantry-old", &[("tenantry:managed-by", "tenantry"), ("tenantry:blueprint", "old")]),
                );
                a.stacks.insert("tenantry-handmade".into(), stack("tenantry-handmade", &[]));
            }
        }),
    );
    assert_eq!(
        plan.steps,
        vec![Step {
            change: Change::DeleteStack { stack: "tenantry-old".into(), blueprint: "old".into() },
            environment: Environment::Production
        }]
    );
}

#[test]
fn missing_policy_is_created_then_attached() {
    let d = desired();
    let mut observed = observed_with(&d, |env, a| {
        if env == Environment::Staging {
            a.attached.clear();
        }
    });
    for v in observed.scps.values_mut() {
        *v = None;
    }
    let plan = tenant(&d, &observed);
    assert_eq!(plan.steps.len(), 2, "{:?}", plan.steps);
    let kinds: Vec<_> = plan.steps.iter().map(|s| s.change.symbol()).collect();
    assert!(
        matches!(plan.steps[0], Step { change: Change::CreatePolicy { .. }, environment: Environment::Production })
            && matches!(plan.steps[1], Step { change: Change::AttachPolicy { .. }, .. }),
        "{:?}",
        plan.steps
    );
    assert_eq!(kinds, ["+", "+"]);
}

#[test]
fn stacks_are_created_updated_or_replaced_by_what_was_found() {
    let d = desired();
    let plan = tenant(
        &d,
        &observed_with(&d, |env, a| {
            if env == Environment::Staging {
                a.stacks.remove("tenantry-agent-pipeline");
                let b = a.stacks.get_mut("tenantry-baseline").unwrap();
                b.version = Some("old".into());
            } else {
                a.stacks.get_mut("tenantry-baseline").unwrap().status = "ROLLBACK_COMPLETE".into();
            }
        }),
    );
    assert_eq!(plan.steps.len(), 3, "{:?}", plan.steps);
    assert!(
        matches!(&plan.steps[0], Step { change: Change::RecreateStack { status, .. }, environment: Environment::Production } if status == "ROLLBACK_COMPLETE")
    );
    assert!(
        matches!(&plan.steps[1], Step { change: Change::UpdateStack { from_version: Some(v), version, .. }, .. } if v == "old" && version == "v-baseline")
    );
    assert!(
        matches!(&plan.steps[2], Step { change: Change::CreateStack { stack, .. }, .. } if stack == "tenantry-agent-pipeline")
    );
}

#[test]
fn refused_account_yields_a_refusal_and_no_steps_for_it() {
    let d = desired();
    let mut observed = observed_with(&d, |_, _| {});
    observed.accounts.insert(
        Environment::Production,
        AccountObservation::Refused { account_id: Some("111".into()), reason: "tagged as globex".into() },
    );
    let plan = tenant(&d, &observed);
    assert_eq!(
        plan.refusals.iter().map(ToString::to_string).collect::<Vec<_>>(),
        vec!["production: tagged as globex".to_string()]
    );
    assert!(prod_steps(&plan).is_empty());
}

#[test]
fn suspended_account_is_refused() {
    let plan = plan_when(Environment::Staging, |a| {
        a.account.status = "SUSPENDED".into();
    });
    assert_eq!(plan.refusals.len(), 1);
    assert!(plan.refusals[0].to_string().contains("SUSPENDED"));
}

#[test]
fn creation_in_progress_is_awaited_not_repeated() {
    let d = desired();
    let mut observed = observed_with(&d, |_, _| {});
    observed.accounts.insert(Environment::Staging, AccountObservation::Creating { request_id: "car-1".into() });
    let plan = tenant(&d, &observed);
    assert!(!plan.steps.iter().any(|s| matches!(s, Step { change: Change::CreateAccount { .. }, .. })));
    assert_eq!(
        plan.steps[0],
        Step { change: Change::AwaitAccount { request_id: "car-1".into() }, environment: Environment::Staging }
    );
}

#[test]
fn organization_steps_create_what_is_missing() {
    let ous = BTreeMap::from([("Tenants/Production".to_string(), true), ("Tenants/Staging".to_string(), false)]);
    assert_eq!(
        organization(None, &ous, &OrgScps::default()),
        vec![
            OrgStep::CreateOrganization,
            OrgStep::EnableServiceControlPolicies,
            OrgStep::CreateOu { path: "Tenants/Staging".into() }
        ]
    );
    let mut o = OrgOverview {
        organization_id: "o-1".into(),
        management_account_id: "1".into(),
        all_features: true,
        root_id: "r-1".into(),
        scp_enabled: false,
    };
    assert_eq!(
        organization(Some(&o), &BTreeMap::new(), &OrgScps::default()),
        vec![OrgStep::EnableServiceControlPolicies]
    );
    o.scp_enabled = true;
    assert!(organization(Some(&o), &BTreeMap::new(), &OrgScps::default()).is_empty());
    // Content-addressed SCPs: created when missing, restored when changed, else left alone.
    let p = policy("deny-leave", r#"{"Version":"2012-10-17","Statement":[]}"#);
    let q = policy("region", r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny"}]}"#);
    let r = policy("protect", r#"{"Statement":[]}"#);
    let doc = |id: &str, content: &str| Some(PolicyDocument { policy_id: id.into(), content: content.into() });
    let wanted = BTreeMap::from([
        (p.name.clone(), WantedScp { policy: p.clone(), accounts: 4, found: None }),
        (
            q.name.clone(),
            WantedScp { policy: q.clone(), accounts: 1, found: doc("p-q", r#"{"Statement":"tampered"}"#) },
        ),
        (r.name.clone(), WantedScp { policy: r.clone(), accounts: 2, found: doc("p-r", r#"{ "Statement": [] }"#) }),
    ]);
    let unused = BTreeMap::from([("tenantry-deny-leave-0123456789abcdef".to_string(), "p-old".to_string())]);
    let steps = organization(Some(&o), &BTreeMap::new(), &OrgScps { wanted, unused });
    assert_eq!(steps.len(), 3, "{steps:?}");
    assert_eq!(
        steps[2],
        OrgStep::DeletePolicy { name: "tenantry-deny-leave-0123456789abcdef".into(), policy_id: "p-old".into() }
    );
    let symbols: Vec<&str> = steps.iter().map(OrgStep::symbol).collect();
    assert_eq!(symbols, ["+", "~", "-"]);
    assert!(steps.contains(&OrgStep::CreatePolicy {
        name: p.name.clone(),
        source: "deny-leave".into(),
        digest: p.digest.clone(),
        accounts: 4
    }));
    assert!(steps.contains(&OrgStep::RestorePolicy {
        name: q.name.clone(),
        policy_id: "p-q".into(),
        digest: q.digest.clone()
    }));
    assert!(steps.iter().any(|s| s
        .to_string()
        .starts_with(&format!("+ create SCP {} from policies/deny-leave.json (sha256 ", p.name))));
}

#[test]
fn plan_json_names_each_action() {
    let step = OrgStep::CreateOu { path: "A/B".into() };
    assert_eq!(serde_json::to_value(&step).unwrap(), serde_json::json!({"action": "create_ou", "path": "A/B"}));
}

#[test]
fn stack_whose_template_was_changed_out_of_band_is_redeployed_even_with_the_right_version_tag() {
    let plan = plan_when(Environment::Production, |a| {
        a.stacks.get_mut("tenantry-baseline").unwrap().template_body = Some(r#"{"Resources": {"X": {}}}"#.into());
    });
    assert!(
        matches!(&plan.steps[..], [Step { change: Change::RedeployStack { cause, .. }, .. }] if cause.contains("changed outside tenantry")),
        "{:?}",
        plan.steps
    );
}

#[test]
fn same_template_with_other_whitespace_is_in_sync() {
    let d = desired();
    let plan = tenant(
        &d,
        &observed_with(&d, |_, a| {
            for s in a.stacks.values_mut() {
                s.template_body = Some("{ }".into());
            }
        }),
    );
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
}

#[test]
fn resource_drift_is_reverted_by_a_redeploy_and_unsupported_detection_plans_nothing() {
    let d = desired();
    let plan = tenant(
        &d,
        &observed_with(&d, |env, a| {
            let s = a.stacks.get_mut("tenantry-baseline").unwrap();
            s.resource_drift = if env == Environment::Staging {
                ResourceDrift::Drifted(vec![DriftedResource {
                    logical_id: "Bucket".into(),
                    resource_type: "AWS::S3::Bucket".into(),
                    status: "MODIFIED".into(),
                    differences: vec![],
                }])
            } else {
                ResourceDrift::Unsupported("not implemented".into())
            };
        }),
    );
    assert_eq!(plan.steps.len(), 1, "{:?}", plan.steps);
    assert!(
        matches!(&plan.steps[0], Step { change: Change::RedeployStack { cause, .. }, environment: Environment::Staging } if cause.contains("Bucket MODIFIED"))
    );
}

#[test]
fn stack_whose_tenantry_tags_were_changed_is_redeployed() {
    let plan = plan_when(Environment::Production, |a| {
        let s = a.stacks.get_mut("tenantry-baseline").unwrap();
        s.tags.insert("tenantry:tenant".into(), "evil".into());
        s.tags.remove("tenantry:managed-by");
        s.tags.insert("owner".into(), "mallory".into());
    });
    assert!(
        matches!(&plan.steps[..], [Step { change: Change::RedeployStack { cause, .. }, .. }] if cause.contains("tenantry:tenant: evil (wanted acme)") && cause.contains("tenantry:managed-by: (absent)")),
        "{:?}",
        plan.steps
    );
}

#[test]
fn stuck_rollback_is_recovered_and_a_busy_stack_is_left_alone() {
    let d = desired();
    let plan = tenant(
        &d,
        &observed_with(&d, |env, a| {
            let s = a.stacks.get_mut("tenantry-baseline").unwrap();
            s.status =
                if env == Environment::Production { "UPDATE_ROLLBACK_FAILED" } else { "UPDATE_IN_PROGRESS" }.into();
        }),
    );
    assert_eq!(
        plan.steps,
        vec![Step {
            change: Change::RecoverStack {
                stack: "tenantry-baseline".into(),
                blueprint: "baseline".into(),
                version: "v-baseline".into()
            },
            environment: Environment::Production
        }]
    );
    assert_eq!(plan.refusals.len(), 1);
    assert!(
        plan.refusals[0].to_string().starts_with("staging: stack tenantry-baseline is UPDATE_IN_PROGRESS"),
        "{:?}",
        plan.refusals
    );
}

#[test]
fn an_account_state_did_not_record_is_recorded_first() {
    let d = desired();
    for found_by in [FoundBy::Adopted, FoundBy::CreateRequest, FoundBy::Identity] {
        let p = tenant(
            &d,
            &observed_with(&d, |env, a| {
                if env == Environment::Staging {
                    a.found_by = found_by;
                }
            }),
        );
        assert_eq!(
            p.steps,
            vec![Step {
                change: Change::RecordAccount { account_id: "222".into(), found_by },
                environment: Environment::Staging
            }],
            "{found_by:?}"
        );
        assert!(p.steps[0].to_string().contains("record account 222 in state"));
    }
}

#[test]
fn a_changed_email_or_name_is_a_manual_difference_not_a_step() {
    let d = desired();
    let p = tenant(
        &d,
        &observed_with(&d, |env, a| {
            if env == Environment::Production {
                a.account.email = "old@example.com".into();
                a.account.name = "Old name".into();
            }
        }),
    );
    assert!(p.steps.is_empty(), "{:?}", p.steps);
    assert_eq!(p.manual.len(), 2);
    assert_eq!(
        (p.manual[0].field, p.manual[0].found.as_str(), p.manual[0].wanted.as_str()),
        (AccountField::Email, "old@example.com", "production@example.com")
    );
    assert_eq!(p.manual[1].field, AccountField::Name);
    // Case alone is no difference: AWS compares emails case-insensitively.
    let p = tenant(
        &d,
        &observed_with(&d, |env, a| {
            if env == Environment::Production {
                a.account.email = "PRODUCTION@example.com".into();
            }
        }),
    );
    assert!(p.manual.is_empty());
}

#[test]
fn the_scp_quota_per_target_is_checked_before_attaching() {
    let d = desired();
    // Four other SCPs attached (not tenantry's), plus FullAWSAccess: attaching one more would be six.
    let plan = tenant(
        &d,
        &observed_with(&d, |env, a| {
            if env == Environment::Production {
                a.attached.retain(|_, name| !name.starts_with("tenantry-"));
                for i in 0..4 {
                    a.attached.insert(format!("p-x{i}"), format!("team-guardrail-{i}"));
                }
            }
        }),
    );
    assert!(
        plan.refusals.iter().any(|r| r.to_string().contains("would carry 6 SCPs, over the Organizations limit of 5")),
        "{:?}",
        plan.refusals
    );
    // At the limit after detaching another tenant's SCP: allowed, the detach comes first.
    let plan = tenant(
        &d,
        &observed_with(&d, |env, a| {
            if env == Environment::Production {
                a.attached.retain(|_, name| !name.starts_with("tenantry-"));
                for i in 0..3 {
                    a.attached.insert(format!("p-x{i}"), format!("team-guardrail-{i}"));
                }
                a.attached.insert("p-g".into(), "tenantry-globex-staging-deny".into());
            }
        }),
    );
    assert!(plan.refusals.is_empty(), "{:?}", plan.refusals);
    assert!(
        matches!(
            prod_steps(&plan)[..],
            [Step { change: Change::DetachForeignPolicy { .. }, .. }, Step { change: Change::AttachPolicy { .. }, .. }]
        ),
        "{:?}",
        plan.steps
    );
}

#[test]
fn a_step_is_one_flat_json_object_with_its_action_and_environment() {
    let step = Step::new(Environment::Staging, Change::AttachPolicy { name: "tenantry-acme-staging-x".into() });
    let json = serde_json::to_value(&step).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"action": "attach_policy", "environment": "staging", "name": "tenantry-acme-staging-x"})
    );
    assert_eq!(serde_json::from_value::<Step>(json).unwrap(), step);
    let org = serde_json::to_value(OrgStep::CreateOu { path: "clients/acme".into() }).unwrap();
    assert_eq!(org, serde_json::json!({"action": "create_ou", "path": "clients/acme"}));
    assert_eq!(step.to_string(), "+ staging: attach SCP tenantry-acme-staging-x");
}
