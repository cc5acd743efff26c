//! End-to-end onboarding against a real emulator process (see tests/common): the real binary,
//! the real AWS wire protocol, results read back with the AWS SDK.

mod common;

use common::{Aws, Emulator, Workspace};

const ENVS: [&str; 2] = ["production", "staging"];
const TENANTS: [&str; 2] = ["acme", "globex"];

fn email(tenant: &str, env: &str) -> &'static str {
    match (tenant, env) {
        ("acme", "production") => "aws+acme-production@example.com",
        ("acme", "staging") => "aws+acme-staging@example.com",
        ("globex", "production") => "cloud+globex-prod@example.org",
        ("globex", "staging") => "cloud+globex-staging@example.org",
        _ => unreachable!(),
    }
}

fn state_bucket(emu: &Emulator) -> String {
    format!("tenantry-state-{}-us-east-1", emu.management_account_id())
}

/// The one account of a tenant environment; fails on zero or several.
async fn only_account(aws: &Aws, tenant: &str, env: &str) -> String {
    let ids = aws.accounts_with_email(email(tenant, env)).await;
    assert_eq!(ids.len(), 1, "{tenant}/{env}: expected exactly one account, found {ids:?}");
    ids[0].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn onboarding_creates_four_accounts_with_ou_tags_scps_and_stacks_then_converges() {
    let emu = Emulator::start();
    let ws = Workspace::new();
    let aws = Aws::new(&emu.endpoint).await;
    // Without an organization (moto starts with none) the management account appears with it.
    let before = aws.accounts().await.len().max(1);

    let plan = ws.run(&emu.endpoint, &["plan", "--output", "json"]);
    assert_eq!(plan.code, 2, "plan before onboarding must report changes: {plan:?}");
    let doc: serde_json::Value = serde_json::from_str(&plan.stdout).expect("plan --output json is JSON");
    assert_eq!(doc["changes"], true);
    assert_eq!(doc["plan"]["tenants"].as_array().unwrap().len(), 2);

    let apply = ws.run(&emu.endpoint, &["apply"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    assert_eq!(aws.accounts().await.len(), before + 4, "exactly four member accounts are created");

    for tenant in TENANTS {
        let record = aws
            .state_object(&state_bucket(&emu), &format!("tenants/{tenant}.json"))
            .await
            .expect("state record written");
        for env in ENVS {
            let id = only_account(&aws, tenant, env).await;
            // OU
            let want_ou = if env == "production" { "Tenants/Production" } else { "Tenants/Staging" };
            assert_eq!(aws.ou_path(&id).await, want_ou, "{tenant}/{env} OU");
            // tags
            let tags = aws.tags(&id).await;
            assert_eq!(tags.get("tenantry:tenant").map(String::as_str), Some(tenant));
            assert_eq!(tags.get("tenantry:environment").map(String::as_str), Some(env));
            assert_eq!(tags.get("tenantry:managed-by").map(String::as_str), Some("tenantry"));
            assert!(tags.contains_key("cost-center"), "tenant file tags are set: {tags:?}");
            // SCPs
            let scps = aws.attached_scps(&id).await;
            for p in ["deny-leave-organization", "protect-tenantry", "region-allowlist"] {
                assert!(
                    scps.iter().filter(|n| common::is_scp_of_file(n, p)).count() == 1,
                    "the SCP of {p} attached to {id}: {scps:?}"
                );
            }
            // stacks, each in its own account
            let stacks = aws.stacks(&id).await;
            let mut names: Vec<&String> = stacks.keys().collect();
            names.sort();
            let want: Vec<&str> = if env == "staging" {
                vec!["tenantry-agent-pipeline", "tenantry-baseline"]
            } else {
                vec!["tenantry-baseline"]
            };
            assert_eq!(names, want, "{tenant}/{env} stacks");
            for (name, (status, stags)) in &stacks {
                assert_eq!(status, "CREATE_COMPLETE", "{name} in {id}");
                assert_eq!(stags.get("tenantry:tenant").map(String::as_str), Some(tenant));
                let version = stags.get("tenantry:version").expect("version tag");
                assert_eq!(version.len(), 64, "sha256 hex version: {version}");
                assert_eq!(
                    record["accounts"][env]["stacks"][name]["version"].as_str(),
                    Some(version.as_str()),
                    "state records the deployed version"
                );
            }
            assert_eq!(record["accounts"][env]["account_id"].as_str(), Some(id.as_str()));
        }
    }

    // The state bucket is private, encrypted and versioned.
    let bucket = state_bucket(&emu);
    // Versioning, shown by the record's earlier versions being kept (moto's GetBucketVersioning
    // reply does not parse in the Rust SDK).
    let versions = aws.s3.list_object_versions().bucket(&bucket).prefix("tenants/acme.json").send().await.unwrap();
    assert!(versions.versions().len() > 1, "state writes are versioned: {versions:?}");
    let pab = aws.s3.get_public_access_block().bucket(&bucket).send().await.unwrap();
    let c = pab.public_access_block_configuration().unwrap();
    assert_eq!(
        (c.block_public_acls(), c.ignore_public_acls(), c.block_public_policy(), c.restrict_public_buckets()),
        (Some(true), Some(true), Some(true), Some(true))
    );
    let enc = aws.s3.get_bucket_encryption().bucket(&bucket).send().await.unwrap();
    assert!(enc.server_side_encryption_configuration().is_some());

    // A second apply creates nothing; plan then exits 0.
    let again = ws.run(&emu.endpoint, &["apply"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        again.stdout.contains("tenant acme: in sync") && again.stdout.contains("tenant globex: in sync"),
        "{again:?}"
    );
    assert!(again.stdout.contains("No changes."), "{again:?}");
    assert_eq!(aws.accounts().await.len(), before + 4, "the second apply creates no account");
    let plan = ws.run(&emu.endpoint, &["plan"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(plan.stdout.contains("No changes"), "{plan:?}");

    // The no-op plan makes the documented minimum of AWS requests per tenant (docs/scale.md), and
    // the organization is listed once for the run, not once per tenant or account.
    let plan = ws.run(&emu.endpoint, &["plan", "--output", "json"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    let calls: serde_json::Value =
        serde_json::from_str::<serde_json::Value>(&plan.stdout).unwrap()["api_calls"].clone();
    let minimum = serde_json::json!({
        "s3:GetObject": 1,
        "organizations:ListTagsForResource": 2,
        "sts:AssumeRole": 2,
        "cloudformation:DescribeStacks": 2,
    });
    // No `GetCallerIdentity` with a member session's credentials either: the account in the
    // ARNs of the stacks `DescribeStacks` answers (signed with them) shows the account they act in.
    // No `GetTemplate`: each stack still reports the last change state recorded when tenantry
    // created it, so nothing can have changed its template since.
    // Each SCP's document is read once per run, by whichever tenant asks first: five SCPs
    // (two files render alike for everyone, the region allow-list three ways).
    let mut describes = 0;
    for tenant in TENANTS {
        let mut by_tenant = calls["by_tenant"][tenant].clone();
        let own = by_tenant.as_object_mut().unwrap().remove("organizations:DescribePolicy");
        describes += own.map(|n| n.as_u64().unwrap()).unwrap_or(0);
        assert_eq!(by_tenant, minimum, "{tenant}'s requests in a no-op plan: {calls:#}");
    }
    assert_eq!(calls["by_operation"]["organizations:DescribePolicy"]["requests"], 5, "{calls:#}");
    assert_eq!(describes, 5, "{calls:#}");
    let run_level = calls["by_tenant"]["-"].as_object().expect("run-level requests");
    // No `ListPoliciesForTarget` per account either: the SCPs attached to every account come
    // from the run's one `ListTargetsForPolicy` per SCP of the organization (the five and
    // FullAWSAccess).
    let scps = aws.scps().await.len() as u64;
    assert_eq!(calls["by_operation"]["organizations:ListTargetsForPolicy"]["requests"], scps, "{calls:#}");
    assert_eq!(run_level["organizations:ListTargetsForPolicy"], scps, "{calls:#}");
    for op in ["organizations:DescribeAccount", "organizations:ListParents"] {
        assert!(!calls["by_operation"].as_object().unwrap().contains_key(op), "no {op} in a no-op plan: {calls:#}");
    }
    // One `ListPolicies` for the run: SCPs attached to nothing that no tenant wants are deleted.
    assert_eq!(calls["by_operation"]["organizations:ListPolicies"]["requests"], 1, "{calls:#}");
    assert_eq!(run_level["organizations:ListPolicies"], 1, "{calls:#}");
    assert!(
        run_level.values().map(|v| v.as_u64().unwrap()).sum::<u64>() <= 13 + scps,
        "run-level listings stay a handful: {run_level:?}"
    );
    // That listing sees an SCP detached out of band as well as asking per account would.
    let acme_production = aws.only_account("acme", "production").await;
    let (name, id) = aws.tenantry_scps().await.into_iter().find(|(n, _)| n.contains("deny-leave")).unwrap();
    aws.org.detach_policy().policy_id(&id).target_id(&acme_production).send().await.unwrap();
    let plan = ws.run(&emu.endpoint, &["plan"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(plan.stdout.contains(&format!("attach SCP {name}")), "{plan:?}");
    let fixed = ws.run(&emu.endpoint, &["apply", "--auto-approve"]);
    assert_eq!(fixed.code, 0, "{fixed:?}");
    assert!(aws.attached_scps(&acme_production).await.contains(&name), "{fixed:?}");

    // status shows both accounts of each tenant.
    let status = ws.run(&emu.endpoint, &["status", "--output", "json"]);
    assert_eq!(status.code, 0, "{status:?}");
    let rows: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 4);
    assert!(rows.as_array().unwrap().iter().all(|r| r["account_status"] == "ACTIVE"));
}

#[tokio::test(flavor = "multi_thread")]
async fn changed_tenant_file_is_planned_and_applied() {
    let emu = Emulator::start();
    let ws = Workspace::new();
    assert_eq!(ws.run(&emu.endpoint, &["apply", "acme"]).code, 0);
    let text = ws
        .read("tenants/acme.toml")
        .replace("cc-1001", "cc-9999")
        .replace("log_retention_days = 365", "log_retention_days = 180");
    ws.write("tenants/acme.toml", &text);

    let plan = ws.run(&emu.endpoint, &["plan", "acme"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(plan.stdout.contains("cost-center: \"cc-1001\" -> \"cc-9999\""), "{plan:?}");
    assert!(plan.stdout.contains("production: update stack tenantry-baseline"), "{plan:?}");
    assert!(!plan.stdout.contains("create account"), "{plan:?}");

    let apply = ws.run(&emu.endpoint, &["apply", "acme"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    let aws = Aws::new(&emu.endpoint).await;
    let id = only_account(&aws, "acme", "production").await;
    assert_eq!(aws.tags(&id).await.get("cost-center").map(String::as_str), Some("cc-9999"));
    let after = ws.run(&emu.endpoint, &["plan", "acme"]);
    if common::update_stack_applies_tags() {
        assert_eq!(after.code, 0, "{after:?}");
        return;
    }
    // LocalStack updated the stack but kept its old tags: the plan still wants the stack updates
    // (the version tag is behind), and nothing else.
    assert_eq!(aws.stacks(&id).await["tenantry-baseline"].0, "UPDATE_COMPLETE");
    let changes: Vec<&str> = after.stdout.lines().filter(|l| l.trim_start().starts_with(['+', '~', '-'])).collect();
    assert!(!changes.is_empty() && changes.iter().all(|l| l.contains("update stack tenantry-baseline")), "{after:?}");
    eprintln!("LocalStack keeps a stack's tags on UpdateStack: the plan after the update still shows it ({changes:?})");
}

async fn crash_then_resume(point: &str) {
    let emu = Emulator::start();
    let ws = Workspace::new();
    let aws = Aws::new(&emu.endpoint).await;
    let crashed = ws.command(&emu.endpoint).args(["apply", "acme"]).env("TENANTRY_CRASH_AT", point).output().unwrap();
    assert!(!crashed.status.success(), "the run must die at {point}");
    let created = aws.accounts_with_email(email("acme", "production")).await.len();
    assert!(created <= 1, "at most one account after the crash, found {created}");

    let resumed = ws.run(&emu.endpoint, &["apply", "acme"]);
    assert_eq!(resumed.code, 0, "{resumed:?}");
    for env in ENVS {
        only_account(&aws, "acme", env).await;
    }
    let plan = ws.run(&emu.endpoint, &["plan", "acme"]);
    assert_eq!(plan.code, 0, "{plan:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_killed_right_after_create_account_resumes_without_duplicate() {
    crash_then_resume("after-create-account").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_killed_after_recording_the_request_resumes_without_duplicate() {
    crash_then_resume("after-record-request").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_concurrent_applies_on_one_tenant_share_it_through_the_lease() {
    let emu = Emulator::start();
    let ws = Workspace::new();
    let a = ws.spawn(&emu.endpoint, &["apply", "acme"]);
    let b = ws.spawn(&emu.endpoint, &["apply", "acme"]);
    let (a, b): (common::Run, common::Run) =
        (a.wait_with_output().unwrap().into(), b.wait_with_output().unwrap().into());
    assert_eq!((a.code, b.code), (0, 0), "{a:?}\n{b:?}");
    let waited = [&a, &b].iter().filter(|r| r.stderr.contains("waiting for lease")).count();
    assert_eq!(waited, 1, "exactly one process waits for the other's lease:\n{a:?}\n{b:?}");
    let aws = Aws::new(&emu.endpoint).await;
    for env in ENVS {
        only_account(&aws, "acme", env).await;
    }
    let plan = ws.run(&emu.endpoint, &["plan", "acme"]);
    assert_eq!(plan.code, 0, "{plan:?}\n--- first apply ---\n{a:?}\n--- second apply ---\n{b:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn account_whose_tag_names_another_tenant_is_refused() {
    let emu = Emulator::start();
    let ws = Workspace::new();
    assert_eq!(ws.run(&emu.endpoint, &["apply"]).code, 0);
    let aws = Aws::new(&emu.endpoint).await;
    let acme_prod = only_account(&aws, "acme", "production").await;
    let stacks_before = aws.stacks(&acme_prod).await;

    // Someone re-tags acme's production account as globex's.
    aws.org
        .tag_resource()
        .resource_id(&acme_prod)
        .tags(aws_sdk_organizations::types::Tag::builder().key("tenantry:tenant").value("globex").build().unwrap())
        .send()
        .await
        .unwrap();
    // and changes acme's file so that apply would otherwise touch the account.
    let text = ws.read("tenants/acme.toml").replace("cc-1001", "cc-7777");
    ws.write("tenants/acme.toml", &text);

    for cmd in ["plan", "apply"] {
        let run = ws.run(&emu.endpoint, &[cmd, "acme"]);
        assert_eq!(run.code, 1, "{cmd} must refuse: {run:?}");
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(all.contains(&format!("refusing to touch account {acme_prod}")), "{cmd}: {run:?}");
        assert!(all.contains("tenantry:tenant=globex"), "{cmd}: {run:?}");
    }
    let tags = aws.tags(&acme_prod).await;
    assert_eq!(tags.get("cost-center").map(String::as_str), Some("cc-1001"), "the refused account was not touched");
    assert_eq!(aws.stacks(&acme_prod).await, stacks_before);
}

#[tokio::test(flavor = "multi_thread")]
async fn state_pointing_at_another_tenants_account_is_refused() {
    let emu = Emulator::start();
    let ws = Workspace::new();
    assert_eq!(ws.run(&emu.endpoint, &["apply"]).code, 0);
    let aws = Aws::new(&emu.endpoint).await;
    let globex_prod = only_account(&aws, "globex", "production").await;
    let bucket = state_bucket(&emu);
    let mut record = aws.state_object(&bucket, "tenants/acme.json").await.unwrap();
    record["accounts"]["production"]["account_id"] = serde_json::json!(globex_prod);
    aws.s3
        .put_object()
        .bucket(&bucket)
        .key("tenants/acme.json")
        .body(serde_json::to_vec(&record).unwrap().into())
        .send()
        .await
        .unwrap();
    let globex_tags = aws.tags(&globex_prod).await;

    let run = ws.run(&emu.endpoint, &["apply", "acme"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains(&format!("refusing to touch account {globex_prod} for tenant `acme`")), "{run:?}");
    assert_eq!(aws.tags(&globex_prod).await, globex_tags, "globex's account was not touched");
}

#[tokio::test(flavor = "multi_thread")]
async fn existing_account_with_the_tenants_email_but_no_tags_is_not_adopted() {
    let emu = Emulator::start();
    let ws = Workspace::new();
    let aws = Aws::new(&emu.endpoint).await;
    // The organization must exist first (moto starts without one).
    assert_eq!(ws.run(&emu.endpoint, &["apply", "globex"]).code, 0);
    aws.org.create_account().email(email("acme", "production")).account_name("someone else's").send().await.unwrap();
    let run = ws.run(&emu.endpoint, &["apply", "acme"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("is not tagged as this tenant's"), "{run:?}");
    assert_eq!(aws.accounts_with_email(email("acme", "production")).await.len(), 1, "no second account");
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_and_session_tokens_never_reach_logs_or_output() {
    let emu = Emulator::start();
    let ws = Workspace::new();
    const SECRET: &str = "tenantrySECRETkey0123456789abcdefXYZ";
    let run: common::Run = ws
        .command(&emu.endpoint)
        .args(["--log-format", "json", "apply", "acme"])
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("TENANTRY_LOG", "debug")
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 0, "{run:?}");
    let all = format!("{}{}", run.stdout, run.stderr);
    // The secret never appears, nor STS answers or signed request headers; the SDK's own debug
    // output of credentials shows field names only with redacted values.
    let seen = common::assert_no_credentials(&all, &[SECRET], "apply acme");
    assert!(seen > 0, "debug logging shows the credentials' fields (redacted); the check above ran on them");
    let lines: Vec<&str> = run.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("--log-format json line is not JSON ({e}): {line}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_removed_from_the_tenant_file_are_removed_from_the_account() {
    let emu = Emulator::start();
    let ws = Workspace::new();
    assert_eq!(ws.run(&emu.endpoint, &["apply", "acme"]).code, 0);
    let aws = Aws::new(&emu.endpoint).await;
    let prod = only_account(&aws, "acme", "production").await;
    let staging = only_account(&aws, "acme", "staging").await;
    // Someone else's tag on the account must survive.
    aws.org
        .tag_resource()
        .resource_id(&prod)
        .tags(aws_sdk_organizations::types::Tag::builder().key("owner").value("finance").build().unwrap())
        .send()
        .await
        .unwrap();

    let text = ws.read("tenants/acme.toml");
    let cut = text.find("[staging.blueprints.agent-pipeline]").unwrap();
    let text =
        text[..cut].replace("data-classification = \"confidential\"\n", "").replacen(", \"protect-tenantry\"]", "]", 1);
    ws.write("tenants/acme.toml", &text);

    let plan = ws.run(&emu.endpoint, &["plan", "acme", "--output", "json"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    let doc: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let actions: Vec<&str> =
        doc["plan"]["tenants"][0]["steps"].as_array().unwrap().iter().map(|s| s["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["untag_account", "remove_policy", "delete_stack"], "{plan:?}");

    let apply = ws.run(&emu.endpoint, &["apply", "acme", "--output", "json"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    let report: serde_json::Value =
        serde_json::from_str(&apply.stdout).expect("apply --output json is one JSON document");
    assert_eq!(report["tenants"][0]["applied"].as_array().unwrap().len(), 3);

    let tags = aws.tags(&prod).await;
    assert!(!tags.contains_key("data-classification"), "{tags:?}");
    assert_eq!(tags.get("owner").map(String::as_str), Some("finance"), "tags set by others are kept");
    let protect = aws.attached_scp_for(&staging, "protect-tenantry").await;
    assert!(!aws.attached_scps(&prod).await.iter().any(|n| common::is_scp_of_file(n, "protect-tenantry")));
    assert!(aws.tenantry_scps().await.contains_key(&protect), "staging still uses the shared SCP: it is kept");
    let stacks = aws.stacks(&staging).await;
    assert!(
        !stacks.contains_key("tenantry-agent-pipeline") || stacks["tenantry-agent-pipeline"].0 == "DELETE_COMPLETE",
        "{stacks:?}"
    );
    assert_eq!(ws.run(&emu.endpoint, &["plan", "acme"]).code, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_shards_together_cover_every_tenant_exactly_once() {
    let emu = Emulator::start();
    let ws = Workspace::new();
    for i in 0..8 {
        ws.copy_of_globex(&format!("t{i}"));
    }
    let all: std::collections::BTreeSet<String> =
        ["acme", "globex"].iter().map(|s| s.to_string()).chain((0..8).map(|i| format!("t{i}"))).collect();
    // Both shards at the same moment, as two replicas would run.
    let spawn = |shard: &str| ws.spawn(&emu.endpoint, &["plan", "--output", "json", "--shard", shard]);
    let (a, b) = (spawn("0/2"), spawn("1/2"));
    let mut seen: Vec<String> = Vec::new();
    for child in [a, b] {
        let run: common::Run = child.wait_with_output().unwrap().into();
        assert_eq!(run.code, 2, "{run:?}");
        let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        let ids: Vec<String> = doc["plan"]["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["tenant"].as_str().unwrap().to_string())
            .collect();
        assert!(!ids.is_empty() && ids.len() < all.len(), "each shard takes a part: {ids:?}");
        seen.extend(ids);
    }
    seen.sort();
    assert_eq!(seen, all.into_iter().collect::<Vec<_>>(), "every tenant exactly once across the two shards");
}

/// A blueprint that renders to more than CloudFormation's 51,200-byte inline limit is uploaded to
/// a private bucket in the member account and deployed by `TemplateURL`; a plan afterwards has no
/// changes, and `validate` refuses one over the 1 MB `TemplateURL` limit.
#[tokio::test(flavor = "multi_thread")]
async fn a_template_over_the_inline_limit_is_deployed_through_s3() {
    let emu = Emulator::start();
    let ws = Workspace::new();
    let padding = "x".repeat(60_000);
    let large = format!(
        r#"{{"AWSTemplateFormatVersion": "2010-09-09", "Description": "large blueprint for {{{{tenant.id}}}}", "Metadata": {{"Padding": "{padding}"}}, "Resources": {{"Queue": {{"Type": "AWS::SQS::Queue", "Properties": {{"QueueName": "{{{{tenant.id}}}}-large"}}}}}}}}"#
    );
    ws.write("blueprints/large.json", &large);
    let acme = ws.read("tenants/acme.toml");
    ws.write(
        "tenants/acme.toml",
        &acme.replace("[staging.blueprints.baseline]", "[staging.blueprints.large]\n\n[staging.blueprints.baseline]"),
    );
    let (run, text) =
        ws.run_through_proxy(&emu.endpoint, &serde_json::json!([]), 1, &["apply", "acme", "--auto-approve"]);
    assert_eq!(run.code, 0, "{run:?}");
    let create = text
        .lines()
        .find(|l| l.contains("cloudformation:CreateStack") && l.contains("StackName=tenantry-large"))
        .expect("the large stack was created");
    assert!(
        create.contains("TemplateURL=") && !create.contains("TemplateBody="),
        "passed by URL: {}",
        &create[..create.len().min(300)]
    );
    let aws = Aws::new(&emu.endpoint).await;
    let staging = only_account(&aws, "acme", "staging").await;
    let stacks = aws.stacks(&staging).await;
    assert_eq!(stacks.get("tenantry-large").map(|s| s.0.as_str()), Some("CREATE_COMPLETE"), "{stacks:?}");
    // The bucket it went through is the account's own, private and encrypted.
    let conf = aws.member_config(&staging).await;
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&conf).force_path_style(true).build());
    let bucket = format!("tenantry-templates-{staging}-us-east-1");
    let pab =
        s3.get_public_access_block().bucket(&bucket).send().await.unwrap().public_access_block_configuration.unwrap();
    assert_eq!(
        (pab.block_public_acls, pab.ignore_public_acls, pab.block_public_policy, pab.restrict_public_buckets),
        (Some(true), Some(true), Some(true), Some(true))
    );
    let enc = s3.get_bucket_encryption().bucket(&bucket).send().await.unwrap();
    let algo = enc.server_side_encryption_configuration.unwrap().rules[0]
        .apply_server_side_encryption_by_default
        .clone()
        .unwrap()
        .sse_algorithm;
    assert_eq!(algo.as_str(), "AES256");
    let plan = ws.run(&emu.endpoint, &["plan", "acme"]);
    assert_eq!(plan.code, 0, "{plan:?}");

    ws.write("blueprints/large.json", &large.replace(&padding, &"x".repeat(1_100_000)));
    let validate = ws.run(&emu.endpoint, &["validate"]);
    assert_eq!(validate.code, 1, "{validate:?}");
    assert!(validate.stderr.contains("large.json") && validate.stderr.contains("1048576"), "{validate:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn onboarding_completes_for_any_concurrency_and_account_creation_bound() {
    // A tenant used to take one creation slot per account, holding the first while it waited
    // for the second: with `concurrency` above `account_creation_concurrency` (or that bound at
    // 1), tenants held every slot and waited on each other forever.
    let emu = Emulator::start();
    let aws = Aws::new(&emu.endpoint).await;
    for (i, (concurrency, slots, tenants)) in [(1, 1, 1), (2, 1, 2), (3, 2, 3), (6, 5, 6)].into_iter().enumerate() {
        let ws = Workspace::new();
        let acme = ws.read("tenants/acme.toml");
        for t in ["acme", "globex"] {
            std::fs::remove_file(ws.path().join(format!("tenants/{t}.toml"))).unwrap();
        }
        let ids: Vec<String> = (0..tenants).map(|j| format!("c{i}t{j}")).collect();
        for id in &ids {
            let text = acme
                .replace("id = \"acme\"", &format!("id = \"{id}\""))
                .replace("aws+acme-", &format!("aws+{id}-"))
                .replace("Acme Corp", &format!("Tenant {id}"));
            ws.write(&format!("tenants/{id}.toml"), &text);
        }
        let settings = ws.read("tenantry.toml");
        assert!(settings.contains("\nconcurrency = 16\n") && settings.contains("\naccount_creation_concurrency = 5\n"));
        ws.write(
            "tenantry.toml",
            &settings.replace("\nconcurrency = 16\n", &format!("\nconcurrency = {concurrency}\n")).replace(
                "\naccount_creation_concurrency = 5\n",
                &format!("\naccount_creation_concurrency = {slots}\n"),
            ),
        );
        let mut child = ws.spawn(&emu.endpoint, &["apply", "--auto-approve"]);
        let started = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > std::time::Duration::from_secs(300) {
                let _ = child.kill();
                panic!("concurrency {concurrency}, account_creation_concurrency {slots}, {tenants} tenant(s): apply did not finish in 300 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let run = common::Run::from(child.wait_with_output().unwrap());
        assert_eq!(run.code, 0, "concurrency {concurrency}, account_creation_concurrency {slots}: {run:?}");
        let all = aws.tenant_accounts().await;
        for id in &ids {
            for env in ["production", "staging"] {
                assert_eq!(all.get(&(id.clone(), env.to_string())).map(Vec::len), Some(1), "{id} {env}");
            }
        }
        eprintln!("concurrency {concurrency}, account_creation_concurrency {slots}, {tenants} tenant(s): onboarded in {:.1} s", started.elapsed().as_secs_f64());
    }
}
