//! Content-addressed SCPs against a real emulator: one SCP per distinct rendered document, shared
//! by every account that renders it; a tenant's change re-attaches that tenant's accounts only;
//! an SCP no account uses any more is deleted; the per-account SCPs of earlier versions are
//! replaced without a moment where an account lacks a policy file's SCP.

mod common;

use common::{is_scp_of_file, Aws, Emulator, Workspace};

const FILES: [&str; 3] = ["deny-leave-organization", "protect-tenantry", "region-allowlist"];

/// Each account of acme and globex, as (tenant/environment, account id).
async fn accounts(aws: &Aws) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for tenant in ["acme", "globex"] {
        for env in ["production", "staging"] {
            out.push((format!("{tenant}/{env}"), aws.only_account(tenant, env).await));
        }
    }
    out
}

/// The action names of the steps `apply --output json` carried out for its first tenant.
fn applied_actions(apply: &common::Run) -> Vec<String> {
    let doc: serde_json::Value = serde_json::from_str(&apply.stdout).expect("apply --output json is JSON");
    doc["tenants"][0]["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{} {}", s["action"].as_str().unwrap(), s["name"].as_str().unwrap_or("")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_with_identical_documents_share_one_scp_and_a_change_moves_only_its_tenant() {
    let emu = Emulator::start();
    let ws = Workspace::new();
    let aws = Aws::new(&emu.endpoint).await;
    let apply = ws.run(&emu.endpoint, &["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{apply:?}");

    // Four accounts, three policy files: deny-leave and protect-tenantry render the same for
    // everyone; region-allowlist renders three documents (acme production, acme staging, and
    // globex's two environments alike). Five SCPs, where one per account and file made twelve.
    let scps = aws.tenantry_scps().await;
    assert_eq!(scps.len(), 5, "one SCP per distinct document: {scps:?}");
    let all = accounts(&aws).await;
    for file in ["deny-leave-organization", "protect-tenantry"] {
        let mut names = Vec::new();
        for (_, id) in &all {
            names.push(aws.attached_scp_for(id, file).await);
        }
        names.dedup();
        assert_eq!(names.len(), 1, "every account shares the SCP of {file}: {names:?}");
    }
    let region = |i: usize| {
        let aws = &aws;
        let id = all[i].1.clone();
        async move { aws.attached_scp_for(&id, "region-allowlist").await }
    };
    let (acme_prod, acme_staging, globex_prod, globex_staging) =
        (region(0).await, region(1).await, region(2).await, region(3).await);
    assert_eq!(globex_prod, globex_staging, "globex's environments allow the same regions");
    assert!(acme_prod != acme_staging && acme_prod != globex_prod && acme_staging != globex_prod);
    let acme_before: Vec<Vec<String>> = {
        let mut v = Vec::new();
        for (_, id) in &all[..2] {
            v.push(aws.attached_scps(id).await);
        }
        v
    };

    // globex staging now allows what acme staging allows: it takes acme staging's SCP, which
    // exists already, and leaves its old one to globex production, which still uses it.
    let text = ws.read("tenants/globex.toml");
    let staging_at = text.find("[staging]").unwrap();
    let (head, tail) = text.split_at(staging_at);
    let tail =
        tail.replacen("allowed_regions = [\"us-east-1\", \"eu-central-1\"]", "allowed_regions = [\"us-east-1\"]", 1);
    ws.write("tenants/globex.toml", &format!("{head}{tail}"));
    let plan = ws.run(&emu.endpoint, &["plan", "globex"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(!plan.stdout.contains("create SCP"), "the document's SCP exists: {plan:?}");
    assert!(plan.stdout.contains(&format!("staging: attach SCP {acme_staging}")), "{plan:?}");
    let apply = ws.run(&emu.endpoint, &["apply", "globex", "--auto-approve", "--output", "json"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    assert_eq!(
        applied_actions(&apply),
        [format!("attach_policy {acme_staging}"), format!("remove_policy {globex_prod}")],
        "attached first, then the replaced one detached"
    );
    assert_eq!(aws.attached_scp_for(&all[3].1, "region-allowlist").await, acme_staging);
    assert_eq!(aws.attached_scp_for(&all[2].1, "region-allowlist").await, globex_prod);
    assert!(aws.tenantry_scps().await.contains_key(&globex_prod), "still used by globex production: kept");

    // globex production now allows what acme production allows: its old SCP has no account left
    // and is deleted.
    let text = ws.read("tenants/globex.toml").replacen(
        "allowed_regions = [\"us-east-1\", \"eu-central-1\"]",
        "allowed_regions = [\"us-east-1\", \"eu-west-1\"]",
        1,
    );
    ws.write("tenants/globex.toml", &text);
    let apply = ws.run(&emu.endpoint, &["apply", "globex", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    assert_eq!(aws.attached_scp_for(&all[2].1, "region-allowlist").await, acme_prod);
    let scps = aws.tenantry_scps().await;
    assert!(!scps.contains_key(&globex_prod), "an SCP no account uses is deleted: {scps:?}");
    assert_eq!(scps.len(), 4, "{scps:?}");

    // acme's accounts never moved: the same SCPs, by name and id, throughout.
    for (i, (who, id)) in all[..2].iter().enumerate() {
        assert_eq!(aws.attached_scps(id).await, acme_before[i], "{who}");
    }
    assert_eq!(ws.run(&emu.endpoint, &["plan"]).code, 0);

    // A content-addressed SCP attached to nothing that no tenant wants (as a run stopped between
    // a detach and the delete leaves one) is deleted by the next apply, as an organization step.
    let leftover = "tenantry-region-allowlist-0123456789abcdef";
    aws.create_scp(
        leftover,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"ec2:*","Resource":"*"}]}"#,
        &[],
    )
    .await;
    let plan = ws.run(&emu.endpoint, &["plan"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(plan.stdout.contains(&format!("- delete SCP {leftover}")), "{plan:?}");
    assert!(plan.stdout.contains("Plan: 0 to add, 0 to change, 1 to remove."), "{plan:?}");
    let apply = ws.run(&emu.endpoint, &["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(apply.stdout.contains("Apply complete: 1 organization step(s)"), "{apply:?}");
    assert!(!aws.tenantry_scps().await.contains_key(leftover));
    assert_eq!(ws.run(&emu.endpoint, &["plan"]).code, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn per_account_scps_of_earlier_versions_are_replaced_each_after_its_successor_is_attached() {
    let emu = Emulator::start();
    let ws = Workspace::new();
    let aws = Aws::new(&emu.endpoint).await;
    assert_eq!(ws.run(&emu.endpoint, &["apply", "acme", "--auto-approve"]).code, 0);

    // What an earlier version left: in each account, one SCP per policy file named
    // `tenantry-<tenant>-<environment>-<file>` with the tenant's tags, and no shared SCP.
    let mut legacy = Vec::new();
    for env in ["production", "staging"] {
        let id = aws.only_account("acme", env).await;
        for file in FILES {
            let shared = aws.attached_scp_for(&id, file).await;
            let shared_id = aws.tenantry_scps().await[&shared].clone();
            let doc = aws.org.describe_policy().policy_id(&shared_id).send().await.unwrap();
            let content = doc.policy().unwrap().content().unwrap().to_string();
            let name = format!("tenantry-acme-{env}-{file}");
            let tags =
                [("tenantry:tenant", "acme"), ("tenantry:environment", env), ("tenantry:managed-by", "tenantry")];
            let legacy_id = aws.create_scp(&name, &content, &tags).await;
            aws.org.attach_policy().policy_id(&legacy_id).target_id(&id).send().await.unwrap();
            aws.org.detach_policy().policy_id(&shared_id).target_id(&id).send().await.unwrap();
            legacy.push(name);
        }
    }
    for (name, id) in aws.tenantry_scps().await {
        if !name.starts_with("tenantry-acme-") {
            let _ = aws.org.delete_policy().policy_id(&id).send().await;
        }
    }
    assert_eq!(aws.tenantry_scps().await.len(), 6, "six per-account SCPs, nothing else");

    let plan = ws.run(&emu.endpoint, &["plan", "acme"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert_eq!(
        plan.stdout.matches("create SCP tenantry-").count(),
        4,
        "two shared files, two region documents: {plan:?}"
    );
    let apply = ws.run(&emu.endpoint, &["apply", "acme", "--auto-approve", "--output", "json"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    // Per account and policy file: the shared SCP attached, then the per-account one removed.
    let doc: serde_json::Value = serde_json::from_str(&apply.stdout).unwrap();
    let steps = doc["tenants"][0]["applied"].as_array().unwrap();
    for env in ["production", "staging"] {
        let actions: Vec<(String, String)> = steps
            .iter()
            .filter(|s| s["environment"] == env)
            .map(|s| (s["action"].as_str().unwrap().to_string(), s["name"].as_str().unwrap().to_string()))
            .collect();
        assert_eq!(actions.len(), 6, "{env}: {actions:?}");
        let mut files: Vec<&str> = Vec::new();
        for pair in actions.chunks(2) {
            let (attach, remove) = (&pair[0], &pair[1]);
            let file = FILES.iter().find(|f| is_scp_of_file(&attach.1, f)).expect("a shared SCP of a policy file");
            assert_eq!(attach.0, "attach_policy", "{env}: {actions:?}");
            assert_eq!(
                remove,
                &("remove_policy".to_string(), format!("tenantry-acme-{env}-{file}")),
                "{env}: {actions:?}"
            );
            files.push(file);
        }
        files.sort();
        assert_eq!(files, FILES, "each policy file once");
    }
    let scps = aws.tenantry_scps().await;
    assert!(legacy.iter().all(|n| !scps.contains_key(n)), "per-account SCPs deleted: {scps:?}");
    assert_eq!(scps.len(), 4, "{scps:?}");
    for env in ["production", "staging"] {
        let id = aws.only_account("acme", env).await;
        for file in FILES {
            aws.attached_scp_for(&id, file).await;
        }
    }
    assert_eq!(ws.run(&emu.endpoint, &["plan", "acme"]).code, 0);
}
