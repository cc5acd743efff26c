//! Drift assessment and the orphan check on plain data: no network, no AWS. The fixtures are
//! the planner's (an in-sync tenant `acme` with its two accounts).

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::observe::AccountObservation;
use crate::plan::tests::{desired, in_sync, observed_with};

/// The kinds of the drift items of `observed`, as `assess` finds them after planning.
fn kinds(observed: &ObservedTenant) -> (Vec<DriftKind>, usize) {
    let d = desired();
    let plan = crate::plan::tenant(&d, observed);
    let (items, not_run) = assess(&d, observed, &plan);
    let mut kinds: Vec<DriftKind> = items.iter().map(|i| i.kind).collect();
    kinds.sort_by_key(|k| k.as_str());
    kinds.dedup();
    (kinds, not_run.len())
}

#[test]
fn each_out_of_band_change_is_one_kind_of_drift() {
    use DriftKind::*;
    type Edit = fn(Environment, &mut ObservedAccount);
    let cases: Vec<(&str, Edit, Vec<DriftKind>, usize)> = vec![
        ("in sync", |_, _| {}, vec![], 0),
        (
            "moved to another OU",
            |env, a| {
                if env == Environment::Production {
                    a.parent_id = "ou-elsewhere".into();
                    a.parent_path = Some("Elsewhere".into());
                }
            },
            vec![AccountMoved],
            0,
        ),
        (
            "a tag changed",
            |env, a| {
                if env == Environment::Staging {
                    a.tags.insert("cost-center".into(), "cc-9".into());
                }
            },
            vec![TagChanged],
            0,
        ),
        (
            "a tag removed",
            |env, a| {
                if env == Environment::Staging {
                    a.tags.remove("cost-center");
                }
            },
            vec![TagMissing],
            0,
        ),
        (
            "an SCP detached",
            |env, a| {
                if env == Environment::Production {
                    a.attached.retain(|_, n| n == "FullAWSAccess");
                }
            },
            vec![ScpDetached],
            0,
        ),
        (
            "a stack deleted",
            |env, a| {
                if env == Environment::Production {
                    a.stacks.clear();
                }
            },
            vec![StackMissing],
            0,
        ),
        (
            "a stack busy",
            |env, a| {
                if env == Environment::Production {
                    a.stacks.values_mut().for_each(|s| s.status = "UPDATE_IN_PROGRESS".into());
                }
            },
            vec![StackBusy],
            0,
        ),
        (
            "an SCP that is not tenantry's attached",
            |env, a| {
                if env == Environment::Production {
                    a.attached.insert("p-x".into(), "SomeoneElses".into());
                }
            },
            vec![ScpForeign],
            0,
        ),
        (
            "drift detection not supported",
            |env, a| {
                if env == Environment::Production {
                    a.stacks
                        .values_mut()
                        .for_each(|s| s.resource_drift = ResourceDrift::Unsupported("not implemented".into()));
                }
            },
            vec![],
            1,
        ),
        (
            "a suspended account",
            |env, a| {
                if env == Environment::Production {
                    a.account.status = "SUSPENDED".into();
                }
            },
            vec![AccountNotActive],
            0,
        ),
    ];
    for (what, edit, want, not_run) in cases {
        let observed = observed_with(&desired(), edit);
        assert_eq!(kinds(&observed), (want, not_run), "{what}");
    }
}

#[test]
fn missing_refused_and_creating_accounts_are_reported() {
    use DriftKind::*;
    let d = desired();
    let with = |obs: AccountObservation| {
        let mut accounts = BTreeMap::new();
        accounts.insert(Environment::Production, obs);
        accounts.insert(Environment::Staging, AccountObservation::Found(Box::new(in_sync(&d, Environment::Staging))));
        ObservedTenant { tenant: "acme".into(), accounts, scps: crate::plan::tests::existing_scps(&d) }
    };
    let missing = kinds(&with(AccountObservation::Missing)).0;
    assert!(missing.contains(&AccountMissing), "{missing:?}");
    let refused =
        kinds(&with(AccountObservation::Refused { account_id: Some("1".into()), reason: "tagged as globex".into() })).0;
    assert_eq!(refused, vec![AccountRefused]);
    let creating = kinds(&with(AccountObservation::Creating { request_id: "car-1".into() })).0;
    assert!(creating.contains(&AccountCreating), "{creating:?}");
    assert!(!creating.contains(&AccountMissing), "a creation under way is not a missing account: {creating:?}");
}

#[test]
fn remediable_items_name_the_step_that_fixes_them() {
    let d = desired();
    let observed = observed_with(&d, |env, a| {
        if env == Environment::Staging {
            a.tags.insert("cost-center".into(), "cc-9".into());
        }
    });
    let plan = crate::plan::tenant(&d, &observed);
    let (items, _) = assess(&d, &observed, &plan);
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert!(item.remediable);
    assert_eq!(item.environment, Some(Environment::Staging));
    assert_eq!((item.expected.as_str(), item.found.as_str()), ("cc-1", "cc-9"));
    assert!(item.action.starts_with("tag account 222: cost-center"), "{}", item.action);
}

#[test]
fn orphans_are_tagged_accounts_no_tenant_file_accounts_for() {
    let d = desired();
    let account = |id: &str, email: &str| AccountSummary {
        id: id.into(),
        name: format!("account {id}"),
        email: email.into(),
        status: "ACTIVE".into(),
    };
    let tagged = |tenant: &str| {
        BTreeMap::from([
            (tags::TENANT.to_string(), tenant.to_string()),
            (tags::ENVIRONMENT.to_string(), "production".to_string()),
        ])
    };
    let accounts = vec![
        // Claimed by this run: not an orphan.
        (account("1", "x@example.com"), tagged("acme")),
        // Carries the email acme's file gives it: not an orphan.
        (account("2", "production@example.com"), tagged("acme")),
        // Tagged as acme's, but acme's accounts are others.
        (account("3", "other@example.com"), tagged("acme")),
        // Tagged as a tenant with no file.
        (account("4", "gone@example.com"), tagged("initech")),
        // Not tagged: not tenantry's business.
        (account("5", "free@example.com"), BTreeMap::new()),
    ];
    let claimed = BTreeSet::from(["1".to_string()]);
    let found = orphans(&accounts, std::slice::from_ref(&d), &claimed);
    let got: Vec<(&str, &str)> = found.iter().map(|o| (o.account_id.as_str(), o.tenant_tag.as_str())).collect();
    assert_eq!(got, [("3", "acme"), ("4", "initech")]);
    assert!(found[0].reason.contains("that tenant's accounts are others"), "{}", found[0].reason);
    assert!(found[1].reason.contains("has no tenant file"), "{}", found[1].reason);
}

#[test]
fn a_report_that_could_not_be_stored_exits_1() {
    let mut r = Report::new("run".into(), "2026-11-30T00:00:00Z".into(), "2026-11-30T00:00:01Z".into(), vec![], vec![]);
    assert_eq!(r.exit_code(), 0);
    r.store_error = Some("s3:PutObject failed: AccessDenied".into());
    assert_eq!(r.exit_code(), 1);
}
