//! One account per tenant and environment, whatever happens to the files or the state, against a
//! real emulator:
//!
//! - an email changed in the tenant file is shown by `plan` and reported by `reconcile`; with the
//!   state object lost as well, no command creates a second account: the old one is found by its
//!   name and tags and refused (its email is not the file's), until the file is set back;
//! - a lost state object is rebuilt from observation by `apply`, and by `stage` on its own, and
//!   both say so;
//! - another tenant's SCP attached to a tenant's account is drift, detached on remediation;
//! - a changed state location (another `state_bucket`) is refused until the state is moved
//!   (`state migrate`) or the new bucket adopted (`state init`).

mod common;

use common::{Aws, Emulator, Workspace};

async fn delete_state(aws: &Aws, emu: &Emulator, tenant: &str) {
    aws.s3.delete_object().bucket(Aws::state_bucket(emu)).key(format!("tenants/{tenant}.json")).send().await.unwrap();
}

/// A fresh emulator with both example tenants onboarded, a workspace, and clients.
async fn onboarded() -> (Emulator, Workspace, Aws) {
    let emu = Emulator::start();
    let ws = Workspace::new();
    let apply = ws.run(&emu.endpoint, &["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    let aws = Aws::new(&emu.endpoint).await;
    (emu, ws, aws)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_email_changed_in_the_file_and_lost_state_never_make_a_second_account() {
    let (emu, ws, aws) = onboarded().await;
    let original = ws.read("tenants/acme.toml");
    ws.write(
        "tenants/acme.toml",
        &original.replace("aws+acme-production@example.com", "aws+acme-prod-new@example.com"),
    );

    // The difference is shown, not silently "No changes".
    let plan = ws.run(&emu.endpoint, &["plan", "acme"]);
    assert_eq!(plan.code, 2, "an email difference is pending: {plan:?}");
    assert!(plan.stdout.contains("has root email \"aws+acme-production@example.com\", the tenant file says \"aws+acme-prod-new@example.com\""), "{plan:?}");
    assert!(!plan.stdout.contains("create account"), "{plan:?}");
    let json = ws.run(&emu.endpoint, &["plan", "acme", "--output", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["plan"]["tenants"][0]["manual"][0]["field"], "email", "{doc}");
    let report = ws.run(&emu.endpoint, &["reconcile", "acme", "--report-only", "--output", "json"]);
    assert_eq!(report.code, 2, "{report:?}");
    let doc: serde_json::Value = serde_json::from_str(&report.stdout).unwrap();
    let kinds: Vec<&str> =
        doc["tenants"][0]["items"].as_array().unwrap().iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["account_email_differs"], "{doc}");

    // Now the state object is lost too: the old account is found by its name and tags, and
    // refused, because its root email is neither the file's nor one state (now gone) recorded.
    delete_state(&aws, &emu, "acme").await;
    let plan = ws.run(&emu.endpoint, &["plan", "acme"]);
    assert_eq!(plan.code, 1, "{plan:?}");
    assert!(!plan.stdout.contains("create account"), "no second account is planned: {plan:?}");
    assert!(plan.stdout.contains("looks like this tenant's production account"), "{plan:?}");
    let apply = ws.run(&emu.endpoint, &["apply", "acme", "--auto-approve"]);
    assert_eq!(apply.code, 1, "{apply:?}");
    aws.assert_one_account_each("acme", "after apply with a changed email and lost state").await;
    assert!(aws.accounts_with_email("aws+acme-prod-new@example.com").await.is_empty(), "no account with the new email");

    // The file set back: the accounts are found again and recorded, and the plan says so.
    ws.write("tenants/acme.toml", &original);
    let plan = ws.run(&emu.endpoint, &["plan", "acme"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(plan.stdout.contains("production: record account"), "{plan:?}");
    assert!(plan.stdout.contains("staging: record account"), "{plan:?}");
    assert!(!plan.stdout.contains("create account"), "{plan:?}");
    let apply = ws.run(&emu.endpoint, &["apply", "acme", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    let plan = ws.run(&emu.endpoint, &["plan"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    aws.assert_one_account_each("acme", "at the end").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_email_remembered_in_state_keeps_the_account_known_after_the_file_changes() {
    let (emu, ws, aws) = onboarded().await;
    let original = ws.read("tenants/acme.toml");
    // The file changes the email; apply records it as declared (the account keeps its own).
    ws.write("tenants/acme.toml", &original.replace("aws+acme-staging@example.com", "aws+acme-twin@example.com"));
    let apply = ws.run(&emu.endpoint, &["apply", "acme", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    let state = aws.state_object(&Aws::state_bucket(&emu), "tenants/acme.json").await.unwrap();
    assert_eq!(
        state["accounts"]["staging"]["declared_emails"],
        serde_json::json!(["aws+acme-twin@example.com"]),
        "{state}"
    );
    // Changed again: the account still passes the guard on the email it was created with.
    ws.write("tenants/acme.toml", &original.replace("aws+acme-staging@example.com", "aws+acme-twin2@example.com"));
    let plan = ws.run(&emu.endpoint, &["plan", "acme"]);
    assert_eq!(plan.code, 2, "only the manual difference: {plan:?}");
    assert!(!plan.stdout.contains("refus"), "{plan:?}");
    aws.assert_one_account_each("acme", "after two email changes").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_state_is_rebuilt_from_observation_and_said_so() {
    let (emu, ws, aws) = onboarded().await;
    let bucket = Aws::state_bucket(&emu);
    let before = aws.state_object(&bucket, "tenants/acme.json").await.unwrap();

    // `stage` on its own rebuilds it.
    delete_state(&aws, &emu, "acme").await;
    let stage = ws.run(&emu.endpoint, &["stage", "acme"]);
    assert_eq!(stage.code, 0, "{stage:?}");
    assert!(stage.stderr.contains("state: tenant acme had no record of account(s)"), "{stage:?}");
    let after = aws.state_object(&bucket, "tenants/acme.json").await.expect("state written back");
    for env in ["production", "staging"] {
        assert_eq!(after["accounts"][env]["account_id"], before["accounts"][env]["account_id"], "{env}");
    }

    // `plan` shows it and `apply` writes it back.
    delete_state(&aws, &emu, "acme").await;
    let plan = ws.run(&emu.endpoint, &["plan", "acme"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(plan.stdout.contains("record account"), "{plan:?}");
    let report = ws.run(&emu.endpoint, &["reconcile", "acme", "--report-only", "--output", "json"]);
    assert!(report.stdout.contains("\"state_missing\""), "{report:?}");
    let apply = ws.run(&emu.endpoint, &["apply", "acme", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(apply.stdout.contains("record account"), "{apply:?}");
    let after = aws.state_object(&bucket, "tenants/acme.json").await.expect("state written back");
    for env in ["production", "staging"] {
        assert_eq!(after["accounts"][env]["account_id"], before["accounts"][env]["account_id"], "{env}");
    }
    let plan = ws.run(&emu.endpoint, &["plan"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    aws.assert_one_account_each("acme", "at the end").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_state_location_is_refused_until_the_state_is_moved_or_adopted() {
    let (emu, ws, aws) = onboarded().await;
    let old = Aws::state_bucket(&emu);
    assert!(aws.state_object(&old, "tenantry-state.json").await.is_some(), "apply marks the state location");
    let config = ws.read("tenantry.toml");
    let stacks_before = aws.stacks(&aws.tenant_accounts().await[&("acme".to_string(), "staging".to_string())][0]).await;

    // Another state bucket: every command that works on the accounts refuses, and nothing is
    // created or marked there.
    ws.write(
        "tenantry.toml",
        &config.replace("# state_bucket = \"my-tenantry-state\"", "state_bucket = \"tenantry-moved-state\""),
    );
    for args in [&["plan"][..], &["apply", "--auto-approve"], &["reconcile", "--remediate"], &["stage", "acme"]] {
        let run = ws.run(&emu.endpoint, args);
        assert_ne!(run.code, 0, "{args:?}: {run:?}");
        assert!(
            run.stderr.contains("holds no tenantry state, but accounts tenantry created exist"),
            "{args:?}: {run:?}"
        );
        assert!(run.stderr.contains("tenantry state migrate --from"), "{args:?} says what to do: {run:?}");
    }
    assert!(aws.state_object("tenantry-moved-state", "tenantry-state.json").await.is_none(), "not marked");
    assert!(aws.state_object("tenantry-moved-state", "tenants/acme.json").await.is_none(), "no state written");
    let staging = aws.tenant_accounts().await[&("acme".to_string(), "staging".to_string())].clone();
    assert_eq!(staging.len(), 1);
    assert_eq!(
        aws.stacks(&staging[0]).await.keys().collect::<Vec<_>>(),
        stacks_before.keys().collect::<Vec<_>>(),
        "no stack created again"
    );

    // Moved: the records are copied and the plan is empty again.
    let migrate = ws.run(&emu.endpoint, &["state", "migrate", "--from", &old]);
    assert_eq!(migrate.code, 0, "{migrate:?}");
    assert!(aws.state_object("tenantry-moved-state", "tenantry-state.json").await.is_some());
    let plan = ws.run(&emu.endpoint, &["plan"]);
    assert_eq!(plan.code, 0, "{plan:?}");

    // The state lost for good: a fresh bucket adopted with `state init`, the accounts recorded
    // from observation.
    ws.write(
        "tenantry.toml",
        &config.replace("# state_bucket = \"my-tenantry-state\"", "state_bucket = \"tenantry-fresh-state\""),
    );
    assert_eq!(ws.run(&emu.endpoint, &["plan"]).code, 1);
    let init = ws.run(&emu.endpoint, &["state", "init"]);
    assert_eq!(init.code, 0, "{init:?}");
    let plan = ws.run(&emu.endpoint, &["plan"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert_eq!(plan.stdout.matches("record account").count(), 4, "{plan:?}");
    assert!(!plan.stdout.contains("create"), "{plan:?}");
    assert_eq!(ws.run(&emu.endpoint, &["apply", "--auto-approve"]).code, 0);
    assert_eq!(ws.run(&emu.endpoint, &["plan"]).code, 0);
    aws.assert_one_account_each("acme", "at the end").await;
    aws.assert_one_account_each("globex", "at the end").await;
}

/// The id of the SCP named `name` (`ListPolicies`).
async fn policy_id(aws: &Aws, name: &str) -> String {
    let out = aws
        .org
        .list_policies()
        .filter(aws_sdk_organizations::types::PolicyType::ServiceControlPolicy)
        .send()
        .await
        .unwrap();
    out.policies()
        .iter()
        .find(|p| p.name() == Some(name))
        .and_then(|p| p.id())
        .unwrap_or_else(|| panic!("no SCP {name}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn another_tenants_scp_on_an_account_is_drift_detached_and_the_quota_is_checked_first() {
    let (emu, ws, aws) = onboarded().await;
    let accounts = aws.tenant_accounts().await;
    let id = |t: &str, e: &str| accounts[&(t.to_string(), e.to_string())][0].clone();
    let (acme_staging, globex_staging) = (id("acme", "staging"), id("globex", "staging"));
    // globex's region allow-list (its own document: other regions than acme's) on acme's account.
    let foreign = aws.attached_scp_for(&globex_staging, "region-allowlist").await;
    assert_ne!(foreign, aws.attached_scp_for(&acme_staging, "region-allowlist").await);
    let foreign_id = policy_id(&aws, &foreign).await;
    aws.org.attach_policy().policy_id(&foreign_id).target_id(&acme_staging).send().await.unwrap();

    let plan = ws.run(&emu.endpoint, &["plan", "acme"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(plan.stdout.contains(&format!("staging: detach SCP {foreign}")), "{plan:?}");
    let report = ws.run(&emu.endpoint, &["reconcile", "acme", "--report-only", "--output", "json"]);
    assert_eq!(report.code, 2, "{report:?}");
    assert!(report.stdout.contains("\"scp_unexpected\""), "{report:?}");
    let fixed = ws.run(&emu.endpoint, &["reconcile", "acme", "--remediate"]);
    assert_eq!(fixed.code, 2, "drift was found (and fixed): {fixed:?}");
    assert!(!aws.attached_scps(&acme_staging).await.contains(&foreign), "detached from acme's account");
    assert!(aws.attached_scps(&globex_staging).await.contains(&foreign), "left in place on globex's, not deleted");
    assert_eq!(ws.run(&emu.endpoint, &["plan"]).code, 0);

    // The quota: with two other SCPs attached and one of acme's detached, attaching it again
    // would make six: refused by the plan, before any call.
    let mut extra = Vec::new();
    for i in 0..2 {
        let deny_ec2 = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"ec2:*","Resource":"*"}]}"#;
        extra.push(aws.create_scp(&format!("team-guardrail-{i}"), deny_ec2, &[]).await);
    }
    let own = policy_id(&aws, &aws.attached_scp_for(&acme_staging, "deny-leave-organization").await).await;
    aws.org.detach_policy().policy_id(&own).target_id(&acme_staging).send().await.unwrap();
    for p in &extra {
        aws.org.attach_policy().policy_id(p).target_id(&acme_staging).send().await.unwrap();
    }
    let plan = ws.run(&emu.endpoint, &["plan", "acme"]);
    assert_eq!(plan.code, 1, "{plan:?}");
    assert!(plan.stdout.contains("would carry 6 SCPs, over the Organizations limit of 5"), "{plan:?}");
}

/// Writes `doc` as a tenant's state object, as an adversary with write access to the bucket would.
async fn put_state(aws: &Aws, emu: &Emulator, tenant: &str, doc: &serde_json::Value) {
    let body = serde_json::to_vec(doc).unwrap();
    aws.s3
        .put_object()
        .bucket(Aws::state_bucket(emu))
        .key(format!("tenants/{tenant}.json"))
        .body(body.into())
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_state_alone_takes_no_untagged_account_nor_the_management_account() {
    let (emu, ws, aws) = onboarded().await;
    let bucket = Aws::state_bucket(&emu);
    // Some other business unit's account, untagged, in the same organization.
    aws.org
        .create_account()
        .email("shared-services@corp.example")
        .account_name("Shared Services")
        .send()
        .await
        .unwrap();
    let shared = aws.accounts_with_email("shared-services@corp.example").await.remove(0);
    let management = emu.management_account_id().to_string();
    for (tenant, env, victim, email) in [
        ("acme", "production", &shared, "shared-services@corp.example"),
        ("globex", "staging", &management, "master@example.com"),
    ] {
        let original = aws.state_object(&bucket, &format!("tenants/{tenant}.json")).await.unwrap();
        let mut forged = original.clone();
        forged["accounts"][env]["account_id"] = serde_json::json!(victim);
        forged["accounts"][env]["email"] = serde_json::json!(email);
        forged["accounts"][env]["declared_emails"] = serde_json::json!([email]);
        put_state(&aws, &emu, tenant, &forged).await;
        for args in [&["plan", tenant][..], &["apply", tenant, "--auto-approve"], &["stage", tenant]] {
            let (run, log) = ws.run_through_proxy(&emu.endpoint, &serde_json::json!([]), 1, args);
            // `stage` works in staging only: it must not touch the victim either way.
            if args[0] != "stage" {
                assert_ne!(run.code, 0, "{args:?} with {tenant}'s state naming {victim}: {run:?}");
                assert!(
                    format!("{}{}", run.stdout, run.stderr).contains("refusing to touch account"),
                    "{args:?}: {run:?}"
                );
            }
            assert!(log.lines().count() > 0);
            let touched = common::touches(&log, victim);
            assert!(touched.is_empty(), "{args:?} touched {victim}:\n{}", touched.join("\n"));
        }
        put_state(&aws, &emu, tenant, &original).await;
    }
    assert!(aws.tags(&shared).await.is_empty(), "the untagged account was left untagged");

    // Another tenant whose file moved its email on (so that no file claims the old one), its
    // account tagged as acme's, and acme's state naming it with its old email: the account's
    // name is globex's, so the forged recorded email counts for nothing. (A file cannot move
    // both email and name away from its account: one of the two must match, see the guard.)
    let globex_prod = aws.tenant_accounts().await[&("globex".to_string(), "production".to_string())][0].clone();
    let globex_file = ws.read("tenants/globex.toml");
    let old_email = aws.accounts().await.into_iter().find(|a| a.0 == globex_prod).unwrap().1;
    ws.write("tenants/globex.toml", &globex_file.replace(&old_email, "cloud+globex-prod-new@example.org"));
    assert_eq!(ws.run(&emu.endpoint, &["apply", "globex", "--auto-approve"]).code, 0);
    let t = aws_sdk_organizations::types::Tag::builder().key("tenantry:tenant").value("acme").build().unwrap();
    aws.org.tag_resource().resource_id(&globex_prod).tags(t).send().await.unwrap();
    let original = aws.state_object(&bucket, "tenants/acme.json").await.unwrap();
    let mut forged = original.clone();
    forged["accounts"]["production"]["account_id"] = serde_json::json!(globex_prod);
    forged["accounts"]["production"]["email"] = serde_json::json!(old_email);
    put_state(&aws, &emu, "acme", &forged).await;
    let (run, log) =
        ws.run_through_proxy(&emu.endpoint, &serde_json::json!([]), 1, &["apply", "acme", "--auto-approve"]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("is declared by tenant `globex`"), "{run:?}");
    let touched = common::touches(&log, &globex_prod);
    assert!(touched.is_empty(), "apply acme touched globex's account:\n{}", touched.join("\n"));
}

/// Unties acme's production account `id` from acme's file: its tenantry tags removed, and the
/// file's production email and account name changed.
async fn untie_acme_production(ws: &Workspace, aws: &Aws, id: &str) {
    let keys = ["tenantry:tenant", "tenantry:environment", "tenantry:managed-by", "tenantry:home-region"];
    aws.org
        .untag_resource()
        .resource_id(id)
        .set_tag_keys(Some(keys.iter().map(|k| k.to_string()).collect()))
        .send()
        .await
        .unwrap();
    let file = ws
        .read("tenants/acme.toml")
        .replace("aws+acme-production@example.com", "aws+acme-prod2@example.com")
        .replace("[production]\n", "[production]\naccount_name = \"Acme Corporation Prod\"\n");
    ws.write("tenants/acme.toml", &file);
}

/// `plan acme` refuses acme's old production account `old` and plans no new one; `apply acme`
/// fails and creates no account with the file's new email.
async fn assert_acme_production_not_duplicated(emu: &Emulator, ws: &Workspace, aws: &Aws, old: &str) {
    let plan = ws.run(&emu.endpoint, &["plan", "acme"]);
    assert_eq!(plan.code, 1, "{plan:?}");
    assert!(!plan.stdout.contains("production: create account"), "{plan:?}");
    assert!(plan.stdout.contains(&format!("refusing to touch account {old}")), "{plan:?}");
    assert_eq!(ws.run(&emu.endpoint, &["apply", "acme", "--auto-approve"]).code, 1);
    assert!(aws.accounts_with_email("aws+acme-prod2@example.com").await.is_empty(), "no second production account");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untagged_renamed_account_is_still_found_by_its_scps_and_never_duplicated() {
    let (emu, ws, aws) = onboarded().await;
    let old = aws.tenant_accounts().await[&("acme".to_string(), "production".to_string())][0].clone();
    // Everything that named the account changes: state lost, its tags removed, the file's email
    // and account name changed. Its tenantry SCPs still say whose it is.
    delete_state(&aws, &emu, "acme").await;
    untie_acme_production(&ws, &aws, &old).await;
    assert_acme_production_not_duplicated(&emu, &ws, &aws, &old).await;

    // Its SCPs detached too: the history of its state record still names the account.
    for name in aws.attached_scps(&old).await.into_iter().filter(|n| n.starts_with("tenantry-")) {
        let id = policy_id(&aws, &name).await;
        aws.org.detach_policy().policy_id(id).target_id(&old).send().await.unwrap();
    }
    assert_acme_production_not_duplicated(&emu, &ws, &aws, &old).await;

    // Per-account SCPs of earlier versions (`tenantry-<tenant>-<environment>-<file>`) that exist
    // without an account are proof too: with the record's history gone as well.
    let bucket = Aws::state_bucket(&emu);
    aws.delete_all_versions(&bucket, "tenants/acme.json").await;
    let legacy = "tenantry-acme-production-deny-leave-organization";
    let deny_leave = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"organizations:LeaveOrganization","Resource":"*"}]}"#;
    aws.create_scp(legacy, deny_leave, &[]).await;
    let plan = ws.run(&emu.endpoint, &["plan", "acme"]);
    assert_eq!(plan.code, 1, "{plan:?}");
    assert!(plan.stdout.contains("but its SCPs exist"), "{plan:?}");
    assert!(aws.accounts_with_email("aws+acme-prod2@example.com").await.is_empty(), "no second production account");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_that_lost_its_tags_but_carries_tenantry_scps_is_never_duplicated() {
    let (emu, ws, aws) = onboarded().await;
    let old = aws.tenant_accounts().await[&("acme".to_string(), "production".to_string())][0].clone();
    // The state bucket is gone for good (history included: another location, say), the account's
    // tags removed, and the file's email and account name changed. Only tenantry's SCPs on an
    // account no tenant's tags claim are left to say that it was a tenant's.
    let bucket = Aws::state_bucket(&emu);
    aws.delete_all_versions(&bucket, "tenants/acme.json").await;
    untie_acme_production(&ws, &aws, &old).await;
    assert_acme_production_not_duplicated(&emu, &ws, &aws, &old).await;

    // The same with its tenant tag forged to name a tenant no file declares: tags prove nothing.
    let globex = aws.tenant_accounts().await[&("globex".to_string(), "production".to_string())][0].clone();
    let ghost = aws_sdk_organizations::types::Tag::builder().key("tenantry:tenant").value("ghost").build().unwrap();
    aws.org.tag_resource().resource_id(&globex).tags(ghost).send().await.unwrap();
    aws.delete_all_versions(&bucket, "tenants/globex.json").await;
    let file = ws
        .read("tenants/globex.toml")
        .replace("cloud+globex-prod@example.org", "cloud+globex-prod2@example.org")
        .replace("account_name = \"Globex Production\"", "account_name = \"Globex Prod 2\"");
    ws.write("tenants/globex.toml", &file);
    let plan = ws.run(&emu.endpoint, &["plan", "globex"]);
    assert_eq!(plan.code, 1, "{plan:?}");
    // (acme's old account above, no file declaring its email now, is a candidate too.)
    assert!(!plan.stdout.contains("production: create account") && plan.stdout.contains(&globex), "{plan:?}");
    assert_eq!(ws.run(&emu.endpoint, &["apply", "globex", "--auto-approve"]).code, 1);
    assert!(aws.accounts_with_email("cloud+globex-prod2@example.org").await.is_empty(), "no second production account");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_scp_id_forged_in_state_never_redirects_a_write_to_another_policy() {
    let (emu, ws, aws) = onboarded().await;
    let bucket = Aws::state_bucket(&emu);
    let acme_prod = aws.tenant_accounts().await[&("acme".to_string(), "production".to_string())][0].clone();
    let globex_prod = aws.tenant_accounts().await[&("globex".to_string(), "production".to_string())][0].clone();
    let own = aws.attached_scp_for(&acme_prod, "region-allowlist").await;
    let own = own.as_str();
    let own_id = policy_id(&aws, own).await;
    let victim = policy_id(&aws, &aws.attached_scp_for(&globex_prod, "region-allowlist").await).await;
    // acme's region allowlist detached out of band, and acme's state pointing its name at globex's.
    aws.org.detach_policy().policy_id(&own_id).target_id(&acme_prod).send().await.unwrap();
    let mut forged = aws.state_object(&bucket, "tenants/acme.json").await.unwrap();
    forged["accounts"]["production"]["policies"][own]["policy_id"] = serde_json::json!(victim);
    put_state(&aws, &emu, "acme", &forged).await;
    let (run, log) =
        ws.run_through_proxy(&emu.endpoint, &serde_json::json!([]), 1, &["reconcile", "acme", "--remediate"]);
    assert!(log.lines().count() > 0);
    let on_victim: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains(&victim)
                && (l.contains("UpdatePolicy")
                    || l.contains("DeletePolicy")
                    || l.contains("AttachPolicy")
                    || l.contains("DetachPolicy"))
        })
        .collect();
    assert!(on_victim.is_empty(), "globex's SCP was changed through a forged id:\n{}\n{run:?}", on_victim.join("\n"));
    assert!(aws.attached_scps(&acme_prod).await.contains(&own.to_string()), "acme's own SCP attached again: {run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stage_and_untagged_accounts_found_without_state_respect_the_home_region() {
    let (emu, ws, aws) = onboarded().await;
    let bucket = Aws::state_bucket(&emu);
    aws.s3.delete_object().bucket(&bucket).key("tenantry-state.json").send().await.unwrap();
    let config = ws
        .read("tenantry.toml")
        .replace("home_region = \"us-east-1\"", "home_region = \"eu-west-1\"")
        .replace("# state_bucket = \"my-tenantry-state\"", &format!("state_bucket = \"{bucket}\""));
    ws.write("tenantry.toml", &config);
    allow_region(&ws, "eu-west-1");
    // stage goes through the same guard as apply.
    let stage = ws.run(&emu.endpoint, &["stage", "acme"]);
    assert_eq!(stage.code, 1, "{stage:?}");
    assert!(stage.stderr.contains("tenantry stacks are in region us-east-1"), "{stage:?}");
    // The tag removed and the state lost: nothing says where the stacks are, so nothing is made.
    delete_state(&aws, &emu, "acme").await;
    for env in ["production", "staging"] {
        let id = aws.tenant_accounts().await[&("acme".to_string(), env.to_string())][0].clone();
        aws.org.untag_resource().resource_id(&id).tag_keys("tenantry:home-region").send().await.unwrap();
    }
    let apply = ws.run(&emu.endpoint, &["apply", "acme", "--auto-approve"]);
    assert_eq!(apply.code, 1, "{apply:?}");
    assert!(!apply.stdout.contains("create stack"), "{apply:?}");
    assert!(apply.stdout.contains("carries no tenantry:home-region tag"), "{apply:?}");
}

/// Adds `region` to every `allowed_regions` of both example tenants.
fn allow_region(ws: &Workspace, region: &str) {
    for t in ["acme", "globex"] {
        let text: Vec<String> = ws
            .read(&format!("tenants/{t}.toml"))
            .lines()
            .map(|l| {
                if l.starts_with("allowed_regions") && !l.contains(region) {
                    l.replace(']', &format!(", \"{region}\"]"))
                } else {
                    l.to_string()
                }
            })
            .collect();
        ws.write(&format!("tenants/{t}.toml"), &(text.join("\n") + "\n"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_home_region_is_refused_per_account_even_without_the_marker() {
    let (emu, ws, aws) = onboarded().await;
    let bucket = Aws::state_bucket(&emu);
    // The marker deleted, the old bucket named explicitly, the home region changed.
    aws.s3.delete_object().bucket(&bucket).key("tenantry-state.json").send().await.unwrap();
    let config = ws
        .read("tenantry.toml")
        .replace("home_region = \"us-east-1\"", "home_region = \"eu-west-1\"")
        .replace("# state_bucket = \"my-tenantry-state\"", &format!("state_bucket = \"{bucket}\""));
    ws.write("tenantry.toml", &config);
    allow_region(&ws, "eu-west-1");
    assert_eq!(ws.run(&emu.endpoint, &["validate"]).code, 0);
    for args in [&["plan"][..], &["apply", "--auto-approve"]] {
        let run = ws.run(&emu.endpoint, args);
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        assert!(run.stdout.contains("tenantry stacks are in region us-east-1"), "{args:?}: {run:?}");
        assert!(!run.stdout.contains("create stack"), "{args:?}: {run:?}");
    }
    assert!(aws.state_object(&bucket, "tenantry-state.json").await.is_none(), "no marker written for the wrong region");
    // `state init` does not make it go through either.
    assert_eq!(ws.run(&emu.endpoint, &["state", "init"]).code, 0);
    let plan = ws.run(&emu.endpoint, &["plan"]);
    assert_eq!(plan.code, 1, "{plan:?}");
    assert!(plan.stdout.contains("set home_region back to \"us-east-1\""), "{plan:?}");
}

/// The one account of `tenant`'s `env`.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_session_that_lands_in_another_account_is_refused_before_any_use() {
    let (emu, ws, aws) = onboarded().await;
    let acme = aws.only_account("acme", "production").await;
    let globex = aws.only_account("globex", "production").await;
    let before = aws.stacks(&globex).await;
    // acme's baseline changes, so apply would update acme's production stack.
    let file = ws.read("tenants/acme.toml");
    ws.write("tenants/acme.toml", &file.replace("log_retention_days = 365", "log_retention_days = 400"));
    // STS answers AssumeRole into acme's production role with globex's production account, as a
    // confused endpoint would.
    let rules = serde_json::json!([{"service": "sts", "action": "AssumeRole", "contains": acme, "fault": "rewrite", "from": acme, "to": globex}]);
    let (run, log) = ws.run_through_proxy(&emu.endpoint, &rules, 1, &["apply", "acme", "--auto-approve"]);
    assert!(log.contains("FAULT rewrite sts:AssumeRole"), "the role was assumed through the proxy: {log}");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains(&format!("gave credentials of account {globex}")), "{run:?}");
    assert_eq!(aws.stacks(&globex).await, before, "globex's stacks are untouched");
}

/// An `AssumeRole` answer's `AssumedRoleUser` ARN is the word of the endpoint that handed out the
/// credentials, not proof: an answer that names the account asked for, with credentials of
/// another tenant's account, is refused by `GetCallerIdentity` asked with those credentials,
/// before anything is changed (`apply`) and before anything read is used (`plan`, whose reads
/// run while the check does). An answer without the ARN is accepted once the check passes.
#[tokio::test(flavor = "multi_thread")]
async fn an_assume_role_answer_naming_the_account_asked_for_is_not_taken_as_proof() {
    let (emu, ws, aws) = onboarded().await;
    let acme = aws.only_account("acme", "production").await;
    let globex = aws.only_account("globex", "production").await;
    let before = aws.stacks(&globex).await;
    let unnamed = serde_json::json!([{"service": "sts", "action": "AssumeRole", "fault": "rewrite",
        "answer_from": "AssumedRoleUser>", "answer_to": "SomethingElse>"}]);
    let (plan, log) = ws.run_through_proxy(&emu.endpoint, &unnamed, 1, &["plan", "acme"]);
    assert!(log.contains("FAULT rewrite sts:AssumeRole"), "{log}");
    assert_eq!(plan.code, 0, "an answer without AssumedRoleUser is fine once checked: {plan:?}");

    // globex's credentials, in an answer that names acme's account.
    let file = ws.read("tenants/acme.toml");
    ws.write("tenants/acme.toml", &file.replace("log_retention_days = 365", "log_retention_days = 400"));
    let forged = serde_json::json!([{"service": "sts", "action": "AssumeRole", "contains": acme, "fault": "rewrite",
        "from": acme, "to": globex, "answer_from": globex, "answer_to": acme}]);
    for args in [&["plan", "acme"][..], &["apply", "acme", "--auto-approve"][..]] {
        let (run, log) = ws.run_through_proxy(&emu.endpoint, &forged, 1, args);
        assert!(log.contains("FAULT rewrite sts:AssumeRole"), "{log}");
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(all.contains(&format!("gave credentials of account {globex}")), "{args:?}: {run:?}");
        assert!(!all.contains("update stack"), "{args:?}: nothing of globex's stack is shown as acme's: {run:?}");
    }
    assert_eq!(aws.stacks(&globex).await, before, "globex's stacks are untouched");
}

/// An `AssumeRole` answer whose credentials have already expired would be replaced at the
/// next request by credentials nobody checked (found in review: such an answer, then globex's
/// credentials in the renewal, had `apply acme` update globex's stack and `plan acme` show it
/// as acme's). It is refused.
#[tokio::test(flavor = "multi_thread")]
async fn an_assume_role_answer_already_expired_is_refused() {
    let (emu, ws, aws) = onboarded().await;
    let acme = aws.only_account("acme", "production").await;
    let globex = aws.only_account("globex", "production").await;
    let before = aws.stacks(&globex).await;
    let file = ws.read("tenants/acme.toml");
    ws.write("tenants/acme.toml", &file.replace("log_retention_days = 365", "log_retention_days = 400"));
    let expired = serde_json::json!([
        {"service": "sts", "action": "AssumeRole", "contains": acme, "nth": [2, 3, 4, 5, 6], "fault": "rewrite",
            "from": acme, "to": globex, "answer_from": globex, "answer_to": acme},
        {"service": "sts", "action": "AssumeRole", "contains": acme, "fault": "rewrite", "expire_in": -3600}]);
    for args in [&["plan", "acme"][..], &["apply", "acme", "--auto-approve"][..]] {
        let (run, log) = ws.run_through_proxy(&emu.endpoint, &expired, 1, args);
        assert!(log.contains("FAULT rewrite sts:AssumeRole"), "{log}");
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(
            all.contains(&format!("AssumeRole into account {acme} gave credentials that expire at")),
            "{args:?}: {run:?}"
        );
        assert!(!all.contains("update stack"), "{args:?}: {run:?}");
    }
    assert_eq!(aws.stacks(&globex).await, before, "globex's stacks are untouched");
}

/// A session that outlives its credentials (a stack operation longer than they last) assumes
/// the role again, and the new credentials are checked (`GetCallerIdentity` with them) before
/// any request uses them. Here acme's staging credentials last 62 s, its baseline update runs
/// for 90 s, and the renewal's `AssumeRole` is answered with globex's credentials under an ARN
/// naming acme: the renewal is refused, and globex's agent pipeline, which acme's would have
/// been updated next, is untouched. (About 60 s.)
#[tokio::test(flavor = "multi_thread")]
async fn credentials_renewed_during_a_long_apply_are_checked_before_use() {
    let (emu, ws, aws) = onboarded().await;
    let acme = aws.only_account("acme", "staging").await;
    let globex = aws.only_account("globex", "staging").await;
    let before = aws.stacks(&globex).await;
    let file = ws.read("tenants/acme.toml");
    let file = file
        .replace("log_retention_days = 30", "log_retention_days = 60")
        .replace("max_iterations = 8", "max_iterations = 9");
    ws.write("tenants/acme.toml", &file);
    // The staging account's first AssumeRole is the plan shown first, the second apply's
    // observation under the lease, the third the session for its changes, the fourth the renewal.
    let rules = serde_json::json!([
        {"service": "sts", "action": "AssumeRole", "contains": acme, "nth": [4, 5, 6, 7], "fault": "rewrite",
            "from": acme, "to": globex, "answer_from": globex, "answer_to": acme, "expire_in": 3600},
        {"service": "sts", "action": "AssumeRole", "contains": acme, "fault": "rewrite", "expire_in": 62},
        {"service": "cloudformation", "action": "UpdateStack", "contains": "tenantry-baseline", "fault": "stack_slow", "seconds": 90}]);
    let (run, log) = ws.run_through_proxy(&emu.endpoint, &rules, 1, &["apply", "acme", "--auto-approve"]);
    let renewals =
        log.lines().filter(|l| l.contains("sts:AssumeRole") && l.contains(&acme) && l.starts_with("POST")).count();
    assert!(renewals >= 4, "the role was assumed again during the stack wait: {log}");
    assert_eq!(run.code, 1, "{run:?}\n{log}");
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains(&format!("gave credentials of account {globex}")), "{run:?}");
    assert_eq!(aws.stacks(&globex).await, before, "globex's stacks are untouched");
    // The update was sent before the renewal failed: the ledger says so (found in review: a run
    // whose only step failed after changing something left no record).
    let history = ws.run(&emu.endpoint, &["history", "acme", "--output", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    let last = doc["records"].as_array().unwrap().iter().rev().find(|r| r["kind"] == "applied").unwrap().clone();
    assert_eq!(last["detail"]["failed_step"]["action"], "update_stack", "{last:#}");
    assert_eq!(last["detail"]["failed_step"]["stack"], "tenantry-baseline", "{last:#}");
    assert!(last["detail"]["error"].as_str().is_some_and(|e| e.contains("gave credentials of account")), "{last:#}");
}

/// Deletes acme's staging agent pipeline stack, then starts `apply acme` through a proxy that
/// holds its `CreateStack` for 4 seconds, and returns once that request is being held: the
/// proxy (keep it alive until the run ends), the running `apply` and the proxy's log.
async fn apply_with_agent_pipeline_creation_held(
    emu: &Emulator,
    ws: &Workspace,
    aws: &Aws,
    staging: &str,
) -> (common::FaultProxy, std::process::Child, std::path::PathBuf) {
    let cfn = aws.member_cfn(staging).await;
    cfn.delete_stack().stack_name("tenantry-agent-pipeline").send().await.unwrap();
    for _ in 0..100 {
        if aws.stacks(staging).await.get("tenantry-agent-pipeline").is_none_or(|(s, _)| s.starts_with("DELETE")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let log = ws.path().join("hold.log");
    let rules = serde_json::json!([{"service": "cloudformation", "action": "CreateStack", "contains": "tenantry-agent-pipeline", "fault": "latency", "ms": 4000}]);
    let proxy = common::FaultProxy::start_logged(&emu.endpoint, &rules, Some(&log));
    let child = ws.spawn(&proxy.endpoint, &["apply", "acme", "--auto-approve"]);
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("FAULT latency cloudformation:CreateStack") {
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "CreateStack never sent");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    (proxy, child, log)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stack_found_on_create_is_adopted_only_when_it_is_this_tenant_environments() {
    let (emu, ws, aws) = onboarded().await;
    let staging = aws.only_account("acme", "staging").await;
    let cfn = aws.member_cfn(&staging).await;
    // While its CreateStack is held, a stack of that name appears, tagged as globex's.
    let (proxy, child, log) = apply_with_agent_pipeline_creation_held(&emu, &ws, &aws, &staging).await;
    let tag = |k: &str, v: &str| aws_sdk_cloudformation::types::Tag::builder().key(k).value(v).build();
    cfn.create_stack()
        .stack_name("tenantry-agent-pipeline")
        .template_body(r#"{"Resources": {"H": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}}"#)
        .tags(tag("tenantry:tenant", "globex"))
        .tags(tag("tenantry:environment", "staging"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", std::fs::read_to_string(&log).unwrap_or_default()));
    let run = common::Run::from(child.wait_with_output().unwrap());
    drop(proxy);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("already exists and is not this tenant environment's (tenantry:tenant is globex)"),
        "{run:?}"
    );
}

/// A stack of this tenant environment's (its very tags) but with another template, made while
/// tenantry's own `CreateStack` is held, is waited for as tenantry's earlier attempt; its last
/// change is not recorded as tenantry's (its template is not the one sent), so the next `plan`
/// still reads the template and shows the difference.
#[tokio::test(flavor = "multi_thread")]
async fn a_stack_made_by_someone_else_while_tenantry_creates_it_is_never_taken_for_verified() {
    let (emu, ws, aws) = onboarded().await;
    let staging = aws.only_account("acme", "staging").await;
    let cfn = aws.member_cfn(&staging).await;
    let tags = aws.stacks(&staging).await["tenantry-agent-pipeline"].1.clone();
    let (proxy, child, log) = apply_with_agent_pipeline_creation_held(&emu, &ws, &aws, &staging).await;
    let mut create = cfn
        .create_stack()
        .stack_name("tenantry-agent-pipeline")
        .template_body(r#"{"Resources": {"Rogue": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}}"#);
    for (k, v) in &tags {
        create = create.tags(aws_sdk_cloudformation::types::Tag::builder().key(k).value(v).build());
    }
    create.send().await.unwrap_or_else(|e| panic!("{e:?}\n{}", std::fs::read_to_string(&log).unwrap_or_default()));
    let run = common::Run::from(child.wait_with_output().unwrap());
    drop(proxy);
    assert_eq!(run.code, 0, "tenantry waited for it as its own earlier attempt: {run:?}");
    let plan = ws.run(&emu.endpoint, &["plan", "acme"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(plan.stdout.contains("its template was changed outside tenantry"), "{plan:?}");
}

/// Credentials of one account and an Organizations endpoint that creates the organization for
/// another (a member account's credentials where no organization is visible yet, or an endpoint
/// whose STS and Organizations disagree): the first `apply` stops right after
/// `CreateOrganization`, before the state bucket (named after the credentials' account) or
/// anything else is made. Organizations here is a moto of its own whose account is
/// 111111111111; STS is the suite's emulator.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_organization_of_another_account_stops_apply_before_the_state_bucket() {
    let emu = Emulator::start();
    let other = Emulator::start_moto_as("111111111111");
    let ws = Workspace::new();
    let out = ws
        .command(&emu.endpoint)
        .env("AWS_ENDPOINT_URL_ORGANIZATIONS", &other.endpoint)
        .args(["apply", "--auto-approve"])
        .output()
        .unwrap();
    let run = common::Run::from(out);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains(&format!("these credentials are of account {}, but organization", emu.management_account_id()))
            && run.stderr.contains("has management account 111111111111"),
        "{run:?}"
    );
    let aws = Aws::new(&emu.endpoint).await;
    let bucket = Aws::state_bucket(&emu);
    assert!(aws.s3.head_bucket().bucket(&bucket).send().await.is_err(), "no state bucket {bucket} was created");
    let orgs = Aws::new(&other.endpoint).await;
    let accounts = orgs.accounts().await;
    assert_eq!(accounts.len(), 1, "no account was created: {accounts:?}");
    let ous = orgs.org.list_roots().send().await.unwrap();
    let root = ous.roots()[0].id().unwrap().to_string();
    let children = orgs.org.list_organizational_units_for_parent().parent_id(root).send().await.unwrap();
    assert!(children.organizational_units().is_empty(), "no OU was created");
}

/// A tenant file removed is never a silent "No changes": `plan` (exit 2) and `apply` list the
/// tenant's recorded accounts as orphaned and change nothing in them; `plan --output json`
/// carries them under `plan.orphaned`. A run for named tenants does not look for orphans.
#[tokio::test(flavor = "multi_thread")]
async fn a_removed_tenant_file_lists_its_accounts_as_orphaned_and_touches_nothing() {
    let (emu, ws, aws) = onboarded().await;
    let mut before = Vec::new();
    let mut ids = Vec::new();
    for env in ["production", "staging"] {
        let id = aws.only_account("globex", env).await;
        before.push((aws.ou_path(&id).await, aws.tags(&id).await, aws.attached_scps(&id).await, aws.stacks(&id).await));
        ids.push(id);
    }
    let globex_file = ws.read("tenants/globex.toml");
    std::fs::remove_file(ws.path().join("tenants/globex.toml")).unwrap();

    let plan = ws.run(&emu.endpoint, &["plan"]);
    assert_eq!(plan.code, 2, "an orphaned tenant is not 'No changes': {plan:?}");
    assert!(!plan.stdout.contains("No changes."), "{plan:?}");
    assert!(plan.stdout.contains("orphaned (the tenant file was removed):"), "{plan:?}");
    let line = format!(
        "! tenant globex: its file tenants/globex.toml is gone; state records production account {}, staging account {}.",
        ids[0], ids[1]
    );
    assert!(plan.stdout.contains(&line), "{line}\n{plan:?}");
    assert!(plan.stdout.contains("tenant acme: in sync"), "{plan:?}");

    let json = ws.run(&emu.endpoint, &["plan", "--output", "json"]);
    assert_eq!(json.code, 2, "{json:?}");
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["orphans"], true, "{doc:#}");
    assert_eq!(
        doc["plan"]["orphaned"],
        serde_json::json!([{"tenant": "globex", "accounts": {"production": ids[0], "staging": ids[1]}}]),
        "{doc:#}"
    );

    let named = ws.run(&emu.endpoint, &["plan", "acme"]);
    assert_eq!(named.code, 0, "a run for named tenants does not look for orphans: {named:?}");

    let apply = ws.run(&emu.endpoint, &["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(apply.stdout.contains(&line), "{apply:?}");
    let applied = ws.run(&emu.endpoint, &["apply", "--auto-approve", "--output", "json"]);
    assert_eq!(applied.code, 0, "{applied:?}");
    let doc: serde_json::Value = serde_json::from_str(&applied.stdout).unwrap();
    assert_eq!(doc["orphaned"][0]["tenant"], "globex", "{doc:#}");

    for (id, was) in ids.iter().zip(&before) {
        let now = (aws.ou_path(id).await, aws.tags(id).await, aws.attached_scps(id).await, aws.stacks(id).await);
        assert_eq!(&now, was, "globex's account {id} is untouched");
    }
    assert_eq!(aws.tenant_accounts().await.len(), 4, "no account created or lost");

    // Its ledger is still there to read.
    let history = ws.run(&emu.endpoint, &["history", "globex"]);
    assert_eq!(history.code, 0, "{history:?}");
    assert!(history.stdout.contains("tenant globex: no tenant file; its ledger:"), "{history:?}");
    assert!(history.stdout.contains("applied"), "the onboarding's record: {history:?}");
    let unknown = ws.run(&emu.endpoint, &["history", "initech"]);
    assert_eq!(unknown.code, 1, "{unknown:?}");
    assert!(unknown.stderr.contains("no ledger records of tenant `initech` either"), "{unknown:?}");

    // A new tenant file with globex's emails, and globex's accounts retagged for it (found in
    // review: the guard read other tenants' files and tags, not the records of removed ones,
    // and apply took both accounts and changed their stacks): refused.
    ws.write("tenants/initech.toml", &globex_file.replace("id = \"globex\"", "id = \"initech\""));
    for id in &ids {
        aws.org
            .tag_resource()
            .resource_id(id)
            .tags(aws_sdk_organizations::types::Tag::builder().key("tenantry:tenant").value("initech").build().unwrap())
            .send()
            .await
            .unwrap();
    }
    for args in [&["plan", "initech"][..], &["apply", "initech", "--auto-approve"][..]] {
        let run = ws.run(&emu.endpoint, args);
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(
            all.contains("the state of tenant `globex` (production), whose file tenants/globex.toml is gone"),
            "{args:?}: {run:?}"
        );
    }
    for (id, was) in ids.iter().zip(&before) {
        assert_eq!(aws.stacks(id).await, was.3, "globex's account {id} keeps its stacks");
    }
}
