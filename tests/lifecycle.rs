//! The life of a client after onboarding, from its tenant file, against a real emulator:
//!
//! - `lifecycle = "suspended"`: both accounts move to the quarantine OU (created) and carry the
//!   quarantine SCP besides their own; stacks stay; `stage`, `promote` and `rollback` are
//!   refused; `reconcile` keeps it so; `active` again puts everything back in one apply; the
//!   tenant's ledger holds every step `apply` and `reconcile --remediate` carried out;
//! - a tenant file removed: `plan` and `apply` list its accounts as orphaned and change nothing
//!   (`tests/identity.rs`).

mod common;

use std::collections::BTreeMap;

use common::{Aws, Emulator, Workspace};

/// acme's two accounts, production first.
async fn acme_accounts(aws: &Aws) -> [String; 2] {
    [aws.only_account("acme", "production").await, aws.only_account("acme", "staging").await]
}

/// What an account is: its OU path, its SCPs, and its stacks (name → status and tags).
async fn shape(aws: &Aws, id: &str) -> (String, Vec<String>, BTreeMap<String, (String, BTreeMap<String, String>)>) {
    (aws.ou_path(id).await, aws.attached_scps(id).await, aws.stacks(id).await)
}

fn set_lifecycle(ws: &Workspace, value: &str) {
    let file = ws.read("tenants/acme.toml");
    let kept: Vec<&str> = file.lines().filter(|l| !l.starts_with("lifecycle =")).collect();
    let mut out = Vec::new();
    for line in kept {
        out.push(line.to_string());
        if line.starts_with("name =") {
            out.push(format!("lifecycle = \"{value}\""));
        }
    }
    ws.write("tenants/acme.toml", &(out.join("\n") + "\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_suspended_tenant_is_quarantined_kept_so_and_restored_in_one_apply() {
    let emu = Emulator::start();
    let ws = Workspace::new();
    let apply = ws.run(&emu.endpoint, &["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    let aws = Aws::new(&emu.endpoint).await;
    let acme = acme_accounts(&aws).await;
    let mut active = Vec::new();
    for id in &acme {
        active.push(shape(&aws, id).await);
    }
    let globex = [aws.only_account("globex", "production").await, aws.only_account("globex", "staging").await];
    let mut globex_before = Vec::new();
    for id in &globex {
        globex_before.push(shape(&aws, id).await);
    }

    // Suspend.
    set_lifecycle(&ws, "suspended");
    let plan = ws.run(&emu.endpoint, &["plan"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(plan.stdout.contains("+ create OU Quarantine"), "{plan:?}");
    assert!(plan.stdout.contains("tenant acme (suspended):"), "{plan:?}");
    assert!(plan.stdout.contains(&format!("move account {} from OU Tenants/Production", acme[0])), "{plan:?}");
    assert!(plan.stdout.contains("to OU Quarantine"), "{plan:?}");
    assert!(plan.stdout.contains("+ production: attach SCP tenantry-quarantine-"), "{plan:?}");
    assert!(plan.stdout.contains("tenant globex: in sync"), "{plan:?}");
    let apply = ws.run(&emu.endpoint, &["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    let quarantine_scp = aws
        .tenantry_scps()
        .await
        .into_keys()
        .find(|n| n.starts_with("tenantry-quarantine-"))
        .expect("the quarantine SCP was created");
    for (id, was) in acme.iter().zip(&active) {
        let (ou, scps, stacks) = shape(&aws, id).await;
        assert_eq!(ou, "Quarantine", "{id}");
        let mut expected = was.1.clone();
        expected.push(quarantine_scp.clone());
        expected.sort();
        assert_eq!(scps, expected, "{id}: its own SCPs stay, the quarantine SCP comes on top");
        assert_eq!(stacks, was.2, "{id}: stacks stay as they were");
    }
    let plan = ws.run(&emu.endpoint, &["plan"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(plan.stdout.contains("tenant acme (suspended): in sync"), "{plan:?}");

    // The ledger holds every step carried out, with the command and who ran it: the onboarding's
    // and the suspension's.
    let applied = |doc: &serde_json::Value| -> Vec<serde_json::Value> {
        doc["records"].as_array().unwrap().iter().filter(|r| r["kind"] == "applied").cloned().collect()
    };
    let history = ws.run(&emu.endpoint, &["history", "acme", "--output", "json"]);
    assert_eq!(history.code, 0, "{history:?}");
    let records = applied(&serde_json::from_str(&history.stdout).unwrap());
    assert_eq!(records.len(), 2, "{history:?}");
    let suspension = &records[1];
    assert_eq!(suspension["detail"]["command"], "apply", "{suspension:#}");
    assert_eq!(suspension["detail"]["lifecycle"], "suspended", "{suspension:#}");
    assert!(suspension["by"].as_str().is_some_and(|by| by.starts_with("arn:")), "{suspension:#}");
    let steps: Vec<&str> =
        suspension["detail"]["steps"].as_array().unwrap().iter().map(|s| s["action"].as_str().unwrap()).collect();
    assert_eq!(steps, ["move_account", "attach_policy", "move_account", "attach_policy"], "{suspension:#}");
    let onboarding = records[0]["detail"]["steps"].as_array().unwrap();
    assert!(onboarding.iter().any(|s| s["action"] == "create_account"), "{:#}", records[0]);
    let text = ws.run(&emu.endpoint, &["history", "acme"]);
    assert!(text.stdout.contains("applied") && text.stdout.contains("apply: 4 step(s)"), "{text:?}");
    assert!(text.stdout.contains(&format!("      ~ production: move account {}", acme[0])), "{text:?}");

    // Nothing is deployed to a suspended tenant.
    for args in [&["stage", "acme"][..], &["promote", "acme"][..], &["rollback", "acme"][..]] {
        let run = ws.run(&emu.endpoint, args);
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        assert!(run.stderr.contains("tenant acme is suspended"), "{args:?}: {run:?}");
    }

    // Reconcile keeps it so: an account moved out of quarantine is drift, moved back.
    let report = ws.run(&emu.endpoint, &["reconcile", "acme", "--report-only"]);
    assert_eq!(report.code, 0, "{report:?}");
    let root = aws.org.list_roots().send().await.unwrap().roots.unwrap().remove(0).id.unwrap();
    let parents = aws.org.list_parents().child_id(&acme[0]).send().await.unwrap();
    let quarantine_ou = parents.parents.unwrap().remove(0).id.unwrap();
    aws.org
        .move_account()
        .account_id(&acme[0])
        .source_parent_id(&quarantine_ou)
        .destination_parent_id(&root)
        .send()
        .await
        .unwrap();
    let report = ws.run(&emu.endpoint, &["reconcile", "acme", "--report-only"]);
    assert_eq!(report.code, 2, "an account out of quarantine is drift: {report:?}");
    let fixed = ws.run(&emu.endpoint, &["reconcile", "acme", "--remediate"]);
    assert_eq!(fixed.code, 2, "drift found (and fixed) exits 2: {fixed:?}");
    assert_eq!(aws.ou_path(&acme[0]).await, "Quarantine", "{fixed:?}");
    let report = ws.run(&emu.endpoint, &["reconcile", "acme", "--report-only"]);
    assert_eq!(report.code, 0, "{report:?}");
    let history = ws.run(&emu.endpoint, &["history", "acme", "--output", "json"]);
    let records = applied(&serde_json::from_str(&history.stdout).unwrap());
    assert_eq!(records.len(), 3, "the remediation is recorded too: {history:?}");
    assert_eq!(records[2]["detail"]["command"], "reconcile", "{:#}", records[2]);

    // Active again: back where they were, the quarantine SCP detached and deleted. Until apply
    // has done so, nothing is deployed to the accounts still quarantined.
    set_lifecycle(&ws, "active");
    for args in [&["stage", "acme"][..], &["promote", "acme"][..]] {
        let run = ws.run(&emu.endpoint, args);
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        assert!(
            run.stderr.contains(&format!("still carries the quarantine SCP {quarantine_scp}")),
            "{args:?}: {run:?}"
        );
    }
    let plan = ws.run(&emu.endpoint, &["plan"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(plan.stdout.contains("from OU Quarantine"), "{plan:?}");
    assert!(plan.stdout.contains(&format!("detach SCP {quarantine_scp}")), "{plan:?}");
    let apply = ws.run(&emu.endpoint, &["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    for (id, was) in acme.iter().zip(&active) {
        assert_eq!(&shape(&aws, id).await, was, "{id} is as it was before the suspension");
    }
    assert!(!aws.tenantry_scps().await.contains_key(&quarantine_scp), "the quarantine SCP is deleted once unused");
    let plan = ws.run(&emu.endpoint, &["plan"]);
    assert_eq!(plan.code, 0, "{plan:?}");

    // globex was never touched.
    for (id, was) in globex.iter().zip(&globex_before) {
        assert_eq!(&shape(&aws, id).await, was, "{id}");
    }
}

/// `validate` explains what lifecycle values there are, refuses a quarantine OU that overlaps a
/// tenant's OU, reserves the quarantine SCP's name, and keeps a slot for the quarantine SCP
/// when the tenant is suspended.
#[test]
fn lifecycle_values_are_checked_by_validate() {
    let ws = Workspace::new();
    set_lifecycle(&ws, "offboarding");
    let run = ws.run("http://127.0.0.1:9", &["validate"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("unknown variant `offboarding`, expected `active` or `suspended`"), "{run:?}");
    assert!(run.stderr.contains("tenants/acme.toml:"), "{run:?}");

    set_lifecycle(&ws, "suspended");
    let ok = ws.run("http://127.0.0.1:9", &["validate"]);
    assert_eq!(ok.code, 0, "{ok:?}");
    let settings = ws.read("tenantry.toml");
    ws.write("tenantry.toml", &settings.replace("quarantine_ou = \"Quarantine\"", "quarantine_ou = \"Tenants\""));
    let run = ws.run("http://127.0.0.1:9", &["validate"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("`Tenants/Production` overlaps quarantine_ou `Tenants`"), "{run:?}");
    ws.write("tenantry.toml", &settings);
    ws.write("policies/quarantine.json", r#"{"Version": "2012-10-17", "Statement": []}"#);
    let file = ws.read("tenants/acme.toml");
    let first = file.find("policies = [").unwrap();
    let edited = format!("{}policies = [\"quarantine\", {}", &file[..first], &file[first + "policies = [".len()..]);
    ws.write("tenants/acme.toml", &edited);
    let run = ws.run("http://127.0.0.1:9", &["validate"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("`quarantine` is reserved"), "{run:?}");
}
