//! Gates, risk and rollback on plain data.

use std::collections::BTreeMap;

use super::*;
use crate::tenant::PromotionPolicy;

const D: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const OTHER: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn policy() -> PromotionPolicy {
    PromotionPolicy {
        required_checks: vec!["tests".into(), "review".into()],
        soak: Some("10m".into()),
        ..Default::default()
    }
}

fn ev(check: &str, release: &str, pass: bool, at: &str) -> Evidence {
    Evidence {
        check: check.into(),
        release: release.into(),
        pass,
        at: at.into(),
        url: None,
        note: None,
        source: "test".into(),
        seq: None,
    }
}

fn staging_ok() -> StagingStack {
    StagingStack {
        status: "UPDATE_COMPLETE".into(),
        release: None,
        template_matches: true,
        in_sync: Ok(true),
        drifted: vec![],
    }
}

fn parity_ok() -> BTreeMap<String, (Option<String>, String)> {
    BTreeMap::from([
        ("production".to_string(), (Some("p1".to_string()), "p1".to_string())),
        ("staging".to_string(), (Some("s1".to_string()), "s1".to_string())),
    ])
}

fn failing(
    evidence: &[Evidence],
    staging: Option<StagingStack>,
    now: &str,
    baseline: BTreeMap<String, (Option<String>, String)>,
) -> Vec<String> {
    let p = policy();
    let g = gates(&GateInputs {
        digest: D,
        staged_at: Some("2026-01-01T00:00:00Z"),
        staging,
        evidence,
        policy: &p,
        now,
        baseline,
    });
    g.into_iter().filter(|g| !g.pass).map(|g| g.gate).collect()
}

const LATER: &str = "2026-01-01T01:00:00Z";

fn passing() -> Vec<Evidence> {
    vec![ev("tests", D, true, "2026-01-01T00:01:00Z"), ev("review", D, true, "2026-01-01T00:02:00Z")]
}

#[test]
fn all_gates_pass_when_converged() {
    assert!(failing(&passing(), Some(staging_ok()), LATER, parity_ok()).is_empty());
}

#[test]
fn each_gate_refuses_on_its_own() {
    // missing check
    assert_eq!(failing(&passing()[..1], Some(staging_ok()), LATER, parity_ok()), ["check:review"]);
    // a later failing result overrides an earlier pass
    let mut e = passing();
    e.push(ev("tests", D, false, "2026-01-01T00:03:00Z"));
    assert_eq!(failing(&e, Some(staging_ok()), LATER, parity_ok()), ["check:tests"]);
    // an earlier failure is overridden by a later pass
    let mut e = passing();
    e.insert(0, ev("tests", D, false, "2026-01-01T00:00:30Z"));
    assert!(failing(&e, Some(staging_ok()), LATER, parity_ok()).is_empty());
    // passed for another digest only
    let e = vec![ev("tests", OTHER, true, "2026-01-01T00:01:00Z"), ev("review", D, true, "2026-01-01T00:02:00Z")];
    assert_eq!(failing(&e, Some(staging_ok()), LATER, parity_ok()), ["check:tests"]);
    // soak not over (staged at 00:00, soak 10 min)
    assert_eq!(failing(&passing(), Some(staging_ok()), "2026-01-01T00:05:00Z", parity_ok()), ["soak"]);
    // staging stack failed: its creation rolled back, or its update to this release rolled back
    // (so it runs the previous template)
    let s = StagingStack { status: "ROLLBACK_COMPLETE".into(), ..staging_ok() };
    assert_eq!(failing(&passing(), Some(s), LATER, parity_ok()), ["stack"]);
    let s = StagingStack { status: "UPDATE_ROLLBACK_COMPLETE".into(), template_matches: false, ..staging_ok() };
    assert_eq!(failing(&passing(), Some(s), LATER, parity_ok()), ["stack"]);
    // a later release's update rolled back: the stack still runs this one, stably
    let s = StagingStack { status: "UPDATE_ROLLBACK_COMPLETE".into(), ..staging_ok() };
    assert!(failing(&passing(), Some(s), LATER, parity_ok()).is_empty());
    // staging runs another template
    let s = StagingStack { release: Some(OTHER.into()), template_matches: false, ..staging_ok() };
    assert_eq!(failing(&passing(), Some(s), LATER, parity_ok()), ["stack"]);
    // staging drifted
    let s = StagingStack { in_sync: Ok(false), drifted: vec!["Queue MODIFIED".into()], ..staging_ok() };
    assert_eq!(failing(&passing(), Some(s), LATER, parity_ok()), ["drift"]);
    // drift the backend cannot detect does not block, and says so
    let s = StagingStack { in_sync: Err("not supported".into()), ..staging_ok() };
    assert!(failing(&passing(), Some(s), LATER, parity_ok()).is_empty());
    // parity broken
    let mut b = parity_ok();
    b.insert("production".into(), (Some("p0".into()), "p1".into()));
    assert_eq!(failing(&passing(), Some(staging_ok()), LATER, b), ["parity"]);
    // no staging stack
    assert_eq!(failing(&passing(), None, LATER, parity_ok()), ["stack"]);
}

fn change(action: &str, ty: &str, replacement: &str) -> ResourceChange {
    ResourceChange {
        action: action.into(),
        logical_id: "R".into(),
        resource_type: ty.into(),
        replacement: replacement.into(),
        scope: vec![],
    }
}

#[test]
fn risk_classification() {
    let p = PromotionPolicy { high_risk_resource_types: vec!["AWS::RDS::*".into()], ..Default::default() };
    assert_eq!(classify(&[change("Modify", "AWS::SQS::Queue", "False")], &p).0, Risk::Low);
    assert_eq!(classify(&[change("Add", "AWS::SQS::Queue", "")], &p).0, Risk::Low);
    assert_eq!(classify(&[change("Modify", "AWS::SQS::Queue", "True")], &p).0, Risk::High);
    assert_eq!(classify(&[change("Modify", "AWS::SQS::Queue", "Conditional")], &p).0, Risk::High);
    assert_eq!(classify(&[change("Remove", "AWS::SQS::Queue", "")], &p).0, Risk::High);
    assert_eq!(classify(&[change("Add", "AWS::IAM::Role", "")], &p).0, Risk::High);
    assert_eq!(classify(&[change("Modify", "AWS::KMS::Key", "False")], &p).0, Risk::High);
    assert_eq!(classify(&[change("Add", "AWS::SQS::QueuePolicy", "")], &p).0, Risk::High);
    let (risk, why) = classify(&[change("Modify", "AWS::RDS::DBInstance", "False")], &p);
    assert_eq!(risk, Risk::High);
    assert!(why[0].contains("AWS::RDS::*"), "{why:?}");
}

#[test]
fn digest_covers_template_and_parameters() {
    let p1 = serde_json::json!({"a": 1});
    let p2 = serde_json::json!({"a": 2});
    assert_ne!(release_digest("{}", &p1), release_digest("{}", &p2));
    assert_ne!(release_digest("{}", &p1), release_digest("{ }", &p1));
    assert_eq!(release_digest("{}", &p1), release_digest("{}", &p1));
    let r = Release {
        schema: ARTIFACT_SCHEMA.into(),
        tenant: "t".into(),
        workload: "w".into(),
        blueprint: "b".into(),
        parameters: p1.clone(),
        template: "{}".into(),
        digest: release_digest("{}", &p1),
    };
    assert!(r.verify());
    assert!(!Release { template: "{ }".into(), ..r }.verify());
}

fn rec(kind: LedgerKind, release: &str) -> LedgerRecord {
    LedgerRecord {
        schema: LEDGER_SCHEMA.into(),
        id: "x".into(),
        kind,
        tenant: "t".into(),
        workload: Some("w".into()),
        release: release.into(),
        at: "2026-01-01T00:00:00.000000000Z".into(),
        by: "me".into(),
        detail: serde_json::Value::Null,
        stored_at: String::new(),
    }
}

#[test]
fn rollback_goes_to_the_release_before_the_current_one() {
    let a = rec(LedgerKind::Promoted, "A");
    let b = rec(LedgerKind::Promoted, "B");
    let staged = rec(LedgerKind::Staged, "C");
    let failed = rec(LedgerKind::PromotionFailed, "C");
    assert_eq!(rollback_target(&[&a]), None);
    assert_eq!(rollback_target(&[&a, &b, &staged, &failed]), Some("A".into()));
    // A, B, C promoted; rollbacks go to B, then A, never forward again.
    let c = rec(LedgerKind::Promoted, "C");
    let back_b = rec(LedgerKind::RolledBack, "B");
    let back_a = rec(LedgerKind::RolledBack, "A");
    assert_eq!(rollback_target(&[&a, &b, &c]), Some("B".into()));
    assert_eq!(rollback_target(&[&a, &b, &c, &back_b]), Some("A".into()));
    assert_eq!(rollback_target(&[&a, &b, &c, &back_b, &back_a]), None);
    assert_eq!(current_release(&[&a, &b, &c, &back_b]), Some("B".into()));
}

#[test]
fn an_approval_is_used_up_by_the_next_change_of_production() {
    let a = rec(LedgerKind::Promoted, "A");
    let ok_b = rec(LedgerKind::Approval, "B");
    let b = rec(LedgerKind::Promoted, "B");
    let c = rec(LedgerKind::Promoted, "C");
    let params = BTreeMap::from([("X".to_string(), "1".to_string())]);
    let mut ok_b = ok_b;
    ok_b.detail = serde_json::json!({ "production_parameters": params });
    assert!(approved(&[&a, &ok_b], "B", &params));
    assert!(!approved(&[&ok_b, &a], "B", &params), "approved before production last changed");
    assert!(!approved(&[&a, &ok_b, &b, &c], "B", &params), "a rollback to B needs a new approval");
    assert!(!approved(&[&a, &ok_b], "C", &params));
    let changed = BTreeMap::from([("X".to_string(), "2".to_string())]);
    assert!(!approved(&[&a, &ok_b], "B", &changed), "the production parameters changed since the approval");
}

#[test]
fn later_failure_wins_and_ties_go_to_the_failure() {
    let p = policy();
    let staged = Some("2026-01-01T00:00:00Z");
    let gate = |e: &[Evidence]| {
        let g = gates(&GateInputs {
            digest: D,
            staged_at: staged,
            staging: Some(staging_ok()),
            evidence: e,
            policy: &p,
            now: LATER,
            baseline: parity_ok(),
        });
        g.into_iter().find(|g| g.gate == "check:tests").unwrap().pass
    };
    let review = ev("review", D, true, "2026-01-01T00:00:01Z");
    // Different precisions: a failure at .94 s is later than a pass at the whole second.
    assert!(!gate(&[
        ev("tests", D, true, "2026-01-01T00:05:35Z"),
        ev("tests", D, false, "2026-01-01T00:05:35.94Z"),
        review.clone()
    ]));
    // The same instant: the failure wins.
    assert!(!gate(&[
        ev("tests", D, false, "2026-01-01T00:05:35Z"),
        ev("tests", D, true, "2026-01-01T00:05:35Z"),
        review.clone()
    ]));
    assert!(gate(&[
        ev("tests", D, false, "2026-01-01T00:05:35Z"),
        ev("tests", D, true, "2026-01-01T00:05:36Z"),
        review.clone()
    ]));
    // Two ledger records in the same second keep the ledger's order: a pass right after a
    // failure counts.
    let ledger = |pass: bool, seq: usize| Evidence { seq: Some(seq), ..ev("tests", D, pass, "2026-01-01T00:05:35Z") };
    assert!(gate(&[ledger(false, 1), ledger(true, 2), review.clone()]));
    assert!(!gate(&[ledger(true, 1), ledger(false, 2), review.clone()]));
    // ... but a failure from the bucket in that second still wins.
    assert!(!gate(&[ledger(false, 1), ledger(true, 2), ev("tests", D, false, "2026-01-01T00:05:35Z"), review]));
}

#[test]
fn waves_put_canaries_first_then_chunks() {
    use crate::tenant::Tenant;
    let t = |id: &str| {
        Tenant {
        spec: toml::from_str(&format!(
            "id = \"{id}\"\nname = \"x\"\n[production]\nemail = \"a@b.co\"\nou = \"X\"\nallowed_regions = [\"us-east-1\"]\n[staging]\nemail = \"c@b.co\"\nou = \"X\"\nallowed_regions = [\"us-east-1\"]\n"
        ))
        .unwrap(),
        path: "x".into(),
    }
    };
    let all = [t("a"), t("b"), t("c"), t("d"), t("e")];
    let refs: Vec<&Tenant> = all.iter().collect();
    let w = super::run::waves(&refs, &["d".to_string()], 2);
    let ids: Vec<Vec<&str>> = w.iter().map(|w| w.iter().map(|t| t.spec.id.as_str()).collect()).collect();
    assert_eq!(ids, vec![vec!["d"], vec!["a", "b"], vec!["c", "e"]]);
}

#[test]
fn a_verdict_counts_only_for_the_check_and_release_its_key_names() {
    let at = || "2026-11-30T00:00:00Z".to_string();
    let src = || "s3://b/k".to_string();
    let ok = super::verdict("verdicts/abc/security-audit.json", &serde_json::json!({"result": "pass"}), at(), src())
        .unwrap();
    assert_eq!((ok.check.as_str(), ok.release.as_str(), ok.pass), ("security-audit", "abc", true));
    // The reviewer's key with the security auditor's check in the body counts for nothing.
    let forged = super::verdict(
        "verdicts/abc/review.json",
        &serde_json::json!({"check": "security-audit", "result": "pass"}),
        at(),
        src(),
    );
    assert!(forged.unwrap_err().contains("only the key counts"));
    let other_release = super::verdict(
        "verdicts/abc/review.json",
        &serde_json::json!({"release": "def", "result": "pass"}),
        at(),
        src(),
    );
    assert!(other_release.is_err());
    for key in [
        "verdicts/abc/x/security-audit.json",
        "verdicts/security-audit.json",
        "verdicts/abc/.json",
        "verdicts/abc/review.txt",
    ] {
        assert!(super::verdict(key, &serde_json::json!({"result": "pass"}), at(), src()).is_err(), "{key}");
    }
    assert!(super::verdict("verdicts/abc/review.json", &serde_json::json!({"result": "maybe"}), at(), src()).is_err());
}

fn intent(id: &str, release: &str, as_kind: &str) -> LedgerRecord {
    let mut r = rec(LedgerKind::Executing, release);
    r.id = id.into();
    r.detail = serde_json::json!({ "as": as_kind, "change_set": format!("cs-{id}") });
    r
}

fn outcome(kind: LedgerKind, release: &str, intent: &str) -> LedgerRecord {
    let mut r = rec(kind, release);
    r.detail = serde_json::json!({ "intent": intent });
    r
}

fn runs(release: &str) -> Running {
    Running::Release { release: release.into(), stack_status: "UPDATE_COMPLETE".into() }
}

#[test]
fn the_ledger_agrees_with_production_when_every_intent_has_its_outcome() {
    let (i1, a) = (intent("i1", "A", "promoted"), outcome(LedgerKind::Promoted, "A", "i1"));
    let t = ledger_truth(&[&i1, &a], &runs("A"));
    assert_eq!(t.mismatch, None);
    assert!(t.recover.is_empty(), "{:?}", t.recover);
    assert_eq!(t.ledger_release.as_deref(), Some("A"));
}

#[test]
fn a_run_that_died_after_executing_is_recorded_as_what_it_intended() {
    let (i1, a) = (intent("i1", "A", "promoted"), outcome(LedgerKind::Promoted, "A", "i1"));
    let i2 = intent("i2", "B", "promoted");
    let t = ledger_truth(&[&i1, &a, &i2], &runs("B"));
    assert!(t.mismatch.as_deref().is_some_and(|m| m.contains("release A")), "{t:?}");
    assert_eq!(t.recover.len(), 1);
    assert_eq!(
        (t.recover[0].kind, t.recover[0].release.as_str(), t.recover[0].intent.as_deref()),
        (LedgerKind::Promoted, "B", Some("i2"))
    );
    // A rollback that died after executing: recorded as a rollback, so the next rollback does
    // not go forward again.
    let i3 = intent("i3", "C", "promoted");
    let c = outcome(LedgerKind::Promoted, "C", "i3");
    let back = intent("i4", "A", "rolled_back");
    let b = outcome(LedgerKind::Promoted, "B", "i2");
    let t = ledger_truth(&[&i1, &a, &i2, &b, &i3, &c, &back], &runs("B"));
    // Production runs B, not A: the rollback to A was not carried out; B is below the top of
    // the promotion stack, so production went back to it.
    assert_eq!(
        t.recover.iter().map(|r| (r.kind, r.release.as_str())).collect::<Vec<_>>(),
        [(LedgerKind::RolledBack, "B"), (LedgerKind::PromotionFailed, "A")]
    );
    let back_b = intent("i5", "B", "rolled_back");
    let t = ledger_truth(&[&i1, &a, &i2, &b, &i3, &c, &back_b], &runs("B"));
    assert_eq!(
        t.recover.iter().map(|r| (r.kind, r.release.as_str())).collect::<Vec<_>>(),
        [(LedgerKind::RolledBack, "B")]
    );
    let mut with: Vec<LedgerRecord> =
        vec![i1.clone(), a.clone(), i2.clone(), b.clone(), i3.clone(), c.clone(), back_b.clone()];
    with.push(outcome(LedgerKind::RolledBack, "B", "i5"));
    let refs: Vec<&LedgerRecord> = with.iter().collect();
    assert_eq!(rollback_target(&refs), Some("A".into()), "after the recovered rollback to B, the next goes to A");
}

#[test]
fn a_lost_record_is_recovered_as_a_promotion_and_an_unknown_template_only_reported() {
    let a = rec(LedgerKind::Promoted, "A");
    let b = rec(LedgerKind::Promoted, "B");
    // B's record deleted: the ledger says A, production runs B.
    let t = ledger_truth(&[&a], &runs("B"));
    assert_eq!(
        t.recover.iter().map(|r| (r.kind, r.release.as_str(), r.intent.is_none())).collect::<Vec<_>>(),
        [(LedgerKind::Promoted, "B", true)]
    );
    let t =
        ledger_truth(&[&a, &b], &Running::Unknown { tag: Some("B".into()), stack_status: "UPDATE_COMPLETE".into() });
    assert!(t.recover.is_empty());
    assert!(t.mismatch.as_deref().is_some_and(|m| m.contains("no stored release")), "{t:?}");
    let t = ledger_truth(&[&a, &b], &Running::Absent);
    assert!(t.recover.is_empty() && t.mismatch.as_deref().is_some_and(|m| m.contains("no workload stack")), "{t:?}");
    // Busy: nothing is concluded, the intent stays open.
    let i = intent("i9", "C", "promoted");
    let t = ledger_truth(&[&a, &b, &i], &Running::Busy { stack_status: "UPDATE_IN_PROGRESS".into() });
    assert!(t.recover.is_empty() && t.mismatch.is_none(), "{t:?}");
    // An intent whose release production does not run failed.
    let t = ledger_truth(&[&a, &b, &i], &runs("B"));
    assert_eq!(
        t.recover.iter().map(|r| (r.kind, r.release.as_str())).collect::<Vec<_>>(),
        [(LedgerKind::PromotionFailed, "C")]
    );
    assert_eq!(pending_intents(&[&a, &b, &i, &outcome(LedgerKind::PromotionFailed, "C", "i9")]).len(), 0);
}

#[test]
fn only_a_difference_is_recorded_and_a_lost_rollback_never_goes_forward() {
    let (a, b, c) = (rec(LedgerKind::Promoted, "A"), rec(LedgerKind::Promoted, "B"), rec(LedgerKind::Promoted, "C"));
    // A rollback from C to B whose records (intent and outcome) were both lost: production runs
    // B, which is below the top: recorded as a rollback, so the next rollback goes to A.
    let t = ledger_truth(&[&a, &b, &c], &runs("B"));
    assert_eq!(
        t.recover.iter().map(|r| (r.kind, r.release.as_str())).collect::<Vec<_>>(),
        [(LedgerKind::RolledBack, "B")]
    );
    let mut back = rec(LedgerKind::RolledBack, "B");
    back.detail = serde_json::json!({ "recovered": true });
    assert_eq!(rollback_target(&[&a, &b, &c, &back]), Some("A".into()));
    // The ledger and production agree: an `executing` record naming the running release (forged,
    // or one whose outcome was lost after the ledger caught up) changes nothing.
    let forged = intent("f1", "C", "promoted");
    let t = ledger_truth(&[&a, &b, &c, &forged], &runs("C"));
    assert!(t.recover.is_empty() && t.mismatch.is_none(), "{t:?}");
    // An intent older than the last change of production was overtaken by it: never concluded.
    let old = intent("o1", "X", "promoted");
    let t = ledger_truth(&[&a, &old, &b], &runs("B"));
    assert!(t.recover.is_empty(), "{t:?}");
}

#[test]
fn production_put_back_further_than_one_release_never_makes_a_rollback_go_forward() {
    let (a, b, c) = (rec(LedgerKind::Promoted, "A"), rec(LedgerKind::Promoted, "B"), rec(LedgerKind::Promoted, "C"));
    // Production was put back on A outside tenantry (A, B, C promoted): recovered as a rollback
    // to A, and there is nothing before A to go back to, never B.
    let t = ledger_truth(&[&a, &b, &c], &runs("A"));
    assert_eq!(
        t.recover.iter().map(|r| (r.kind, r.release.as_str())).collect::<Vec<_>>(),
        [(LedgerKind::RolledBack, "A")]
    );
    let back_a = rec(LedgerKind::RolledBack, "A");
    assert_eq!(promotion_stack(&[&a, &b, &c, &back_a]), ["A"]);
    assert_eq!(rollback_target(&[&a, &b, &c, &back_a]), None);
}

#[test]
fn a_promotion_has_the_same_json_keys_whether_production_was_read_or_not() {
    let unread = serde_json::to_value(run::Promotion::new("acme", "api", "")).unwrap();
    for key in ["running", "ledger_release", "ledger_mismatch"] {
        assert_eq!(unread[key], serde_json::Value::Null, "{key} in {unread:#}");
    }
    assert_eq!(unread["recovered"], serde_json::json!([]), "{unread:#}");
    let running = Running::Release { release: "A".into(), stack_status: StackStatus::UpdateComplete };
    let truth = ledger_truth(&[], &running);
    let read = serde_json::to_value(LedgerTruth::serialize_flat(&Some(truth), serde_json::value::Serializer).unwrap())
        .unwrap();
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    let mut promoted = keys(&unread);
    promoted.retain(|k| ["running", "ledger_release", "ledger_mismatch", "recovered"].contains(&k.as_str()));
    let mut flat = keys(&read);
    flat.sort();
    promoted.sort();
    assert_eq!(flat, promoted);
    assert_eq!(read["running"]["release"], "A", "{read:#}");
}
