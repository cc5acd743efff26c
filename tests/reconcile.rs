//! Drift reconciliation end to end: onboard the example tenants against a real emulator, change
//! something out of band with the AWS SDK, then `reconcile` (exit 2 and the right item),
//! `reconcile --remediate` (fixed), and `reconcile` again (exit 0).

mod common;

use aws_sdk_organizations::types::{PolicyType, Tag};
use common::{Aws, Emulator, Run, Workspace};
use serde_json::Value;

struct Onboarded {
    emu: Emulator,
    ws: Workspace,
    aws: Aws,
}

async fn onboarded() -> Onboarded {
    let emu = Emulator::start();
    let ws = Workspace::new();
    let apply = ws.run(&emu.endpoint, &["apply"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    let aws = Aws::new(&emu.endpoint).await;
    Onboarded { emu, ws, aws }
}

impl Onboarded {
    async fn account(&self, tenant: &str, env: &str) -> String {
        let all = self.aws.tenant_accounts().await;
        let ids = &all[&(tenant.to_string(), env.to_string())];
        assert_eq!(ids.len(), 1, "{ids:?}");
        ids[0].clone()
    }

    fn reconcile(&self, extra: &[&str]) -> (Run, Value) {
        let mut args = vec!["reconcile", "--output", "json"];
        args.extend_from_slice(extra);
        let run = self.ws.run(&self.emu.endpoint, &args);
        let doc: Value =
            serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("report is not JSON ({e}): {run:?}"));
        (run, doc)
    }

    /// Drift is reported (exit 2, an item of `kind` for `tenant`), fixed by --remediate, and the
    /// next reconcile exits 0.
    fn expect_fixed(&self, tenant: &str, kind: &str) {
        let (run, doc) = self.reconcile(&["--report-only"]);
        assert_eq!(run.code, 2, "drift must exit 2: {run:?}");
        let t = tenant_report(&doc, tenant);
        assert_eq!(t["status"], "drift", "{t}");
        assert!(kinds(t).contains(&kind.to_string()), "expected a `{kind}` item: {t}");
        for i in t["items"].as_array().unwrap() {
            for field in ["expected", "found", "severity", "action", "resource"] {
                assert!(i[field].is_string() && !i[field].as_str().unwrap().is_empty(), "item lacks {field}: {i}");
            }
        }
        assert!(doc["stored_at"].as_str().unwrap().starts_with("s3://"), "the report is stored: {doc}");

        let (run, doc) = self.reconcile(&["--remediate"]);
        assert_eq!(run.code, 2, "the remediating run reports what it found: {run:?}");
        let t = tenant_report(&doc, tenant);
        assert_eq!(t["remediation"]["result"], "applied", "{t}");

        let (run, doc) = self.reconcile(&[]);
        assert_eq!(run.code, 0, "after remediation nothing differs: {run:?}");
        let t = tenant_report(&doc, tenant);
        assert!(t["items"].as_array().unwrap().is_empty(), "{t}");
    }
}

fn tenant_report<'a>(doc: &'a Value, tenant: &str) -> &'a Value {
    doc["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == tenant)
        .unwrap_or_else(|| panic!("no {tenant} in {doc}"))
}

fn kinds(t: &Value) -> Vec<String> {
    t["items"].as_array().unwrap().iter().map(|i| i["kind"].as_str().unwrap().to_string()).collect()
}

/// Polls until a stack is no longer `*_IN_PROGRESS` (at most 20 s).
async fn wait_until_settled(cfn: &aws_sdk_cloudformation::Client, stack: &str) {
    for _ in 0..100 {
        let s = cfn.describe_stacks().stack_name(stack).send().await.unwrap();
        if !s.stacks()[0].stack_status().unwrap().as_str().ends_with("IN_PROGRESS") {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("stack {stack} still in progress after 20 s");
}

async fn policy_id(aws: &Aws, name: &str) -> String {
    let out = aws.org.list_policies().filter(PolicyType::ServiceControlPolicy).send().await.unwrap();
    out.policies().iter().find(|p| p.name() == Some(name)).and_then(|p| p.id()).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn in_sync_tenants_exit_0_and_unsupported_checks_are_not_called_in_sync() {
    let o = onboarded().await;
    let (run, doc) = o.reconcile(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(doc["schema"], "tenantry.reconcile/v1");
    for t in doc["tenants"].as_array().unwrap() {
        assert!(t["items"].as_array().unwrap().is_empty(), "{t}");
        let not_run = t["checks_not_run"].as_array().unwrap();
        if not_run.is_empty() {
            assert_eq!(t["status"], "in_sync", "{t}");
        } else {
            // e.g. moto: no DetectStackDrift. Said plainly, never "in sync".
            assert_eq!(t["status"], "no_drift_found", "{t}");
            assert!(
                not_run
                    .iter()
                    .all(|c| c["check"] == "resource_drift" && c["reason"].as_str().unwrap().contains("not supported")),
                "{t}"
            );
        }
    }
    let text = o.ws.run(&o.emu.endpoint, &["reconcile"]);
    assert_eq!(text.code, 0, "{text:?}");
    if o.emu.kind == "moto" {
        assert!(text.stdout.contains("resource drift: DetectStackDrift is not supported by this endpoint"), "{text:?}");
        assert!(!text.stdout.contains(": in sync"), "{text:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn account_moved_to_another_ou() {
    let o = onboarded().await;
    let id = o.account("acme", "production").await;
    let root = o.aws.org.list_roots().send().await.unwrap().roots().first().unwrap().id().unwrap().to_string();
    let sandbox = o.aws.org.create_organizational_unit().parent_id(&root).name("Sandbox").send().await.unwrap();
    let sandbox = sandbox.organizational_unit().unwrap().id().unwrap().to_string();
    let parent = o
        .aws
        .org
        .list_parents()
        .child_id(&id)
        .send()
        .await
        .unwrap()
        .parents()
        .first()
        .unwrap()
        .id()
        .unwrap()
        .to_string();
    o.aws
        .org
        .move_account()
        .account_id(&id)
        .source_parent_id(parent)
        .destination_parent_id(&sandbox)
        .send()
        .await
        .unwrap();
    o.expect_fixed("acme", "account_moved");
    assert_eq!(o.aws.ou_path(&id).await, "Tenants/Production");
}

#[tokio::test(flavor = "multi_thread")]
async fn scp_detached() {
    let o = onboarded().await;
    let id = o.account("acme", "production").await;
    let name = o.aws.attached_scp_for(&id, "region-allowlist").await;
    let p = policy_id(&o.aws, &name).await;
    o.aws.org.detach_policy().policy_id(&p).target_id(&id).send().await.unwrap();
    o.expect_fixed("acme", "scp_detached");
    assert!(o.aws.attached_scps(&id).await.contains(&name));
}

#[tokio::test(flavor = "multi_thread")]
async fn scp_content_edited() {
    let o = onboarded().await;
    // The deny-leave SCP every account shares: restored once, for everyone.
    let staging = o.account("globex", "staging").await;
    let p = policy_id(&o.aws, &o.aws.attached_scp_for(&staging, "deny-leave-organization").await).await;
    let allow_all = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
    o.aws.org.update_policy().policy_id(&p).content(allow_all).send().await.unwrap();
    // Every tenant that uses it reports it; whichever remediates first restores it for all (the
    // others then find nothing to do).
    let (run, doc) = o.reconcile(&["--report-only"]);
    assert_eq!(run.code, 2, "{run:?}");
    for tenant in ["acme", "globex"] {
        assert!(kinds(tenant_report(&doc, tenant)).contains(&"scp_modified".to_string()), "{tenant}: {doc}");
    }
    let (run, doc) = o.reconcile(&["--remediate"]);
    assert_eq!(run.code, 2, "{run:?}");
    let results: Vec<&Value> =
        ["acme", "globex"].iter().map(|t| &tenant_report(&doc, t)["remediation"]["result"]).collect();
    assert!(results.iter().any(|r| *r == "applied"), "{doc}");
    assert!(results.iter().all(|r| *r == "applied" || *r == "nothing_to_do"), "{doc}");
    let (run, _) = o.reconcile(&[]);
    assert_eq!(run.code, 0, "after remediation nothing differs: {run:?}");
    let content = o
        .aws
        .org
        .describe_policy()
        .policy_id(&p)
        .send()
        .await
        .unwrap()
        .policy()
        .unwrap()
        .content()
        .unwrap()
        .to_string();
    assert!(content.contains("organizations:LeaveOrganization"), "{content}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tag_changed_and_tag_removed() {
    let o = onboarded().await;
    let id = o.account("acme", "staging").await;
    o.aws
        .org
        .tag_resource()
        .resource_id(&id)
        .tags(Tag::builder().key("cost-center").value("stolen").build().unwrap())
        .send()
        .await
        .unwrap();
    o.aws.org.untag_resource().resource_id(&id).tag_keys("data-classification").send().await.unwrap();
    let (_, doc) = o.reconcile(&["--report-only"]);
    let k = kinds(tenant_report(&doc, "acme"));
    assert!(k.contains(&"tag_changed".to_string()) && k.contains(&"tag_missing".to_string()), "{k:?}");
    o.expect_fixed("acme", "tag_changed");
    let tags = o.aws.tags(&id).await;
    assert_eq!(tags.get("cost-center").map(String::as_str), Some("cc-1001"));
    assert_eq!(tags.get("data-classification").map(String::as_str), Some("synthetic"));
}

#[tokio::test(flavor = "multi_thread")]
async fn stack_deleted() {
    let o = onboarded().await;
    let id = o.account("globex", "production").await;
    let cfn = o.aws.member_cfn(&id).await;
    cfn.delete_stack().stack_name("tenantry-baseline").send().await.unwrap();
    o.expect_fixed("globex", "stack_missing");
    let stacks = o.aws.stacks(&id).await;
    assert_eq!(stacks["tenantry-baseline"].0, "CREATE_COMPLETE", "{stacks:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stack_updated_with_another_template() {
    let o = onboarded().await;
    let id = o.account("acme", "staging").await;
    let cfn = o.aws.member_cfn(&id).await;
    // Someone edits the agent pipeline's template (adds a queue of their own); the stack's
    // version tag still claims the tenant file's version, so only the template itself can tell.
    // Twice: once over the stack tenantry created, once over the stack tenantry just updated
    // back (state then records its update, and only the stack's LastUpdatedTime moves).
    for (logical_id, queue) in [("Rogue", "rogue-queue"), ("SecondRogue", "second-rogue-queue")] {
        let body =
            cfn.get_template().stack_name("tenantry-agent-pipeline").send().await.unwrap().template_body.unwrap();
        let mut template: Value = serde_json::from_str(&body).unwrap();
        template["Resources"][logical_id] =
            serde_json::json!({"Type": "AWS::SQS::Queue", "Properties": {"QueueName": queue}});
        cfn.update_stack()
            .stack_name("tenantry-agent-pipeline")
            .template_body(template.to_string())
            .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityNamedIam)
            .send()
            .await
            .unwrap();
        wait_until_settled(&cfn, "tenantry-agent-pipeline").await;
        o.expect_fixed("acme", "stack_modified");
        let body =
            cfn.get_template().stack_name("tenantry-agent-pipeline").send().await.unwrap().template_body.unwrap();
        assert!(body.contains("tenantry-agent-evidence") && !body.contains(queue), "the tenant's template is back");
        let stacks = o.aws.stacks(&id).await;
        assert_eq!(stacks["tenantry-agent-pipeline"].0, "UPDATE_COMPLETE", "{stacks:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn resource_changed_inside_a_stack() {
    let o = onboarded().await;
    let id = o.account("acme", "staging").await;
    // Change a resource of the agent pipeline directly, as a misbehaving agent run would.
    let ssm = aws_sdk_ssm::Client::new(&o.aws.member_config(&id).await);
    ssm.put_parameter()
        .name("/tenantry/pipeline/max-iterations")
        .value("999")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .unwrap();
    let (run, doc) = o.reconcile(&["--report-only"]);
    let t = tenant_report(&doc, "acme");
    let not_run: Vec<&Value> =
        t["checks_not_run"].as_array().unwrap().iter().filter(|c| c["stack"] == "tenantry-agent-pipeline").collect();
    if !not_run.is_empty() {
        // This backend cannot detect resource drift (moto): the check is reported as not run,
        // never as in sync, and nothing here can be claimed about the change.
        eprintln!("resource drift check NOT RUN on {}: {}", o.emu.kind, not_run[0]["reason"]);
        assert_ne!(t["status"], "in_sync", "{t}");
        assert!(run.code == 0 && t["status"] == "no_drift_found", "{run:?}");
        return;
    }
    assert!(kinds(t).contains(&"stack_modified".to_string()), "{t}");
    let item = t["items"].as_array().unwrap().iter().find(|i| i["kind"] == "stack_modified").unwrap();
    assert!(item["found"].as_str().unwrap().contains("resource drift"), "{item}");
    o.expect_fixed("acme", "stack_modified");
    let value = ssm.get_parameter().name("/tenantry/pipeline/max-iterations").send().await.unwrap();
    assert_eq!(value.parameter().unwrap().value(), Some("8"), "the redeploy put the parameter back");
}

#[tokio::test(flavor = "multi_thread")]
async fn orphan_account_with_tenantry_tags_is_reported_and_never_deleted() {
    let o = onboarded().await;
    let created = o
        .aws
        .org
        .create_account()
        .email("aws+ghost@example.com")
        .account_name("Ghost (production)")
        .tags(Tag::builder().key("tenantry:tenant").value("ghost").build().unwrap())
        .tags(Tag::builder().key("tenantry:environment").value("production").build().unwrap())
        .send()
        .await
        .unwrap();
    let request = created.create_account_status().unwrap().id().unwrap().to_string();
    let mut ghost = None;
    for _ in 0..50 {
        let s = o.aws.org.describe_create_account_status().create_account_request_id(&request).send().await.unwrap();
        if let Some(id) = s.create_account_status().and_then(|s| s.account_id()) {
            ghost = Some(id.to_string());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let ghost = ghost.expect("the orphan account exists");
    let (run, doc) = o.reconcile(&["--remediate"]);
    assert_eq!(run.code, 2, "{run:?}");
    let orphans = doc["orphans"].as_array().unwrap();
    assert_eq!(orphans.len(), 1, "{doc}");
    assert_eq!(orphans[0]["account_id"], ghost.as_str());
    assert!(orphans[0]["reason"].as_str().unwrap().contains("no tenant file"), "{doc}");
    assert!(
        o.aws.accounts().await.iter().any(|a| a.0 == ghost && a.2 == "ACTIVE"),
        "--remediate never deletes or closes an account"
    );
    // The operator's fix: untag it (or add tenants/ghost.toml). Then reconcile exits 0.
    o.aws.org.untag_resource().resource_id(&ghost).tag_keys("tenantry:tenant").send().await.unwrap();
    let (run, _) = o.reconcile(&[]);
    assert_eq!(run.code, 0, "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn suspended_account_is_reported_and_left_alone() {
    let o = onboarded().await;
    let id = o.account("globex", "staging").await;
    o.aws.org.close_account().account_id(&id).send().await.unwrap();
    let (run, doc) = o.reconcile(&["--remediate"]);
    assert_eq!(run.code, 2, "{run:?}");
    let t = tenant_report(&doc, "globex");
    assert!(kinds(t).contains(&"account_not_active".to_string()), "{t}");
    let item = t["items"].as_array().unwrap().iter().find(|i| i["kind"] == "account_not_active").unwrap();
    assert_eq!(item["remediable"], false);
    assert_eq!(item["severity"], "critical");
    assert_eq!(
        t["remediation"]["result"], "failed",
        "tenantry refuses to work on a tenant with a suspended account: {t}"
    );
    // The other tenant is still reconciled.
    assert!(tenant_report(&doc, "acme")["status"].as_str().unwrap() != "error", "{doc}");
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_mode_runs_cycles_and_stops_cleanly_on_sigterm() {
    use std::io::{BufRead, BufReader};
    let o = onboarded().await;
    let mut child = o.ws.spawn(&o.emu.endpoint, &["reconcile", "--watch", "--interval", "1s", "--report-only"]);
    let stdout = child.stdout.take().unwrap();
    // Count the cycles' summary lines; keep reading until the process ends.
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("Reconcile ") {
                let _ = tx.send(());
            }
        }
    });
    for _ in 0..2 {
        rx.recv_timeout(std::time::Duration::from_secs(120)).expect("a reconcile cycle finished");
    }
    let st = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    reader.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "stops cleanly: {}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stopped by signal"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No lease is left behind.
    let bucket = format!("tenantry-state-{}-us-east-1", o.emu.management_account_id());
    let leases = o.aws.s3.list_objects_v2().bucket(&bucket).prefix("leases/").send().await.unwrap();
    assert!(leases.contents().is_empty(), "leases released: {:?}", leases.contents());
}

#[tokio::test(flavor = "multi_thread")]
async fn tenant_whose_account_denies_assume_role_is_an_error_and_the_others_are_still_reconciled() {
    let o = onboarded().await;
    let acme_prod = o.account("acme", "production").await;
    // STS goes through a proxy that answers AssumeRole into acme's production account with
    // AccessDenied, as an account whose access role was deleted or changed would.
    let proxy = common::FaultProxy::start(
        &o.emu.endpoint,
        &serde_json::json!([{
            "action": "AssumeRole",
            "contains": format!("arn:aws:iam::{acme_prod}:role/"),
            "status": 403,
            "code": "AccessDenied",
            "message": "not authorized to perform sts:AssumeRole"
        }]),
    );
    // Give up on the denied role quickly (the default keeps retrying for new accounts).
    let settings =
        o.ws.read("tenantry.toml")
            .replace("lease_ttl_seconds = 900", "lease_ttl_seconds = 900\nassume_role_timeout_seconds = 2");
    o.ws.write("tenantry.toml", &settings);
    let run: Run =
        o.ws.command(&o.emu.endpoint)
            .args(["reconcile", "--output", "json"])
            .env("AWS_ENDPOINT_URL_STS", &proxy.endpoint)
            .output()
            .unwrap()
            .into();
    assert_eq!(run.code, 1, "an unreconcilable tenant exits 1: {run:?}");
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    let acme = tenant_report(&doc, "acme");
    assert_eq!(acme["status"], "error", "{acme}");
    assert!(acme["error"].as_str().unwrap().contains("AccessDenied"), "{acme}");
    let globex = tenant_report(&doc, "globex");
    assert_ne!(globex["status"], "error", "globex is still reconciled: {globex}");
    assert!(globex["items"].as_array().unwrap().is_empty(), "{globex}");
    assert!(
        doc["orphans"].as_array().unwrap().is_empty(),
        "acme's accounts are not orphans because acme failed: {doc}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stack_tags_changed_out_of_band() {
    if !common::update_stack_applies_tags() {
        // LocalStack answers a tags-only UpdateStack with "No updates are to be performed": a
        // stack's tags cannot be changed out of band there, nor put back.
        eprintln!("not run on {}: UpdateStack does not change a stack's tags there", common::emulator_kind());
        return;
    }
    let o = onboarded().await;
    let id = o.account("globex", "staging").await;
    let cfn = o.aws.member_cfn(&id).await;
    let body = cfn.get_template().stack_name("tenantry-baseline").send().await.unwrap().template_body.unwrap();
    let stack = cfn.describe_stacks().stack_name("tenantry-baseline").send().await.unwrap();
    let mut tags: Vec<aws_sdk_cloudformation::types::Tag> = stack.stacks()[0]
        .tags()
        .iter()
        .filter(|t| t.key() != Some("tenantry:managed-by") && t.key() != Some("tenantry:tenant"))
        .cloned()
        .collect();
    tags.push(aws_sdk_cloudformation::types::Tag::builder().key("tenantry:tenant").value("evil").build());
    cfn.update_stack()
        .stack_name("tenantry-baseline")
        .template_body(body)
        .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityNamedIam)
        .set_tags(Some(tags))
        .send()
        .await
        .unwrap();
    wait_until_settled(&cfn, "tenantry-baseline").await;
    let (_, doc) = o.reconcile(&["--report-only"]);
    let t = tenant_report(&doc, "globex");
    let item =
        t["items"].as_array().unwrap().iter().find(|i| i["kind"] == "stack_modified").unwrap_or_else(|| panic!("{t}"));
    assert!(item["found"].as_str().unwrap().contains("tenantry:tenant: evil"), "{item}");
    o.expect_fixed("globex", "stack_modified");
    let stacks = o.aws.stacks(&id).await;
    let tags = &stacks["tenantry-baseline"].1;
    assert_eq!(tags.get("tenantry:tenant").map(String::as_str), Some("globex"));
    assert_eq!(tags.get("tenantry:managed-by").map(String::as_str), Some("tenantry"));
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_mode_keeps_checking_other_tenants_while_one_is_stuck_retrying() {
    use std::io::{BufRead, BufReader};
    let o = onboarded().await;
    let acme_prod = o.account("acme", "production").await;
    let proxy = common::FaultProxy::start(
        &o.emu.endpoint,
        &serde_json::json!([{"action": "AssumeRole", "contains": format!("arn:aws:iam::{acme_prod}:role/"), "status": 403, "code": "AccessDenied"}]),
    );
    // acme keeps retrying its denied AssumeRole for 30 s.
    let settings =
        o.ws.read("tenantry.toml")
            .replace("lease_ttl_seconds = 900", "lease_ttl_seconds = 900\nassume_role_timeout_seconds = 30");
    o.ws.write("tenantry.toml", &settings);
    let started = std::time::Instant::now();
    let mut child =
        o.ws.command(&o.emu.endpoint)
            .args(["reconcile", "--watch", "--interval", "1s", "--report-only", "--output", "json"])
            .env("AWS_ENDPOINT_URL_STS", &proxy.endpoint)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let mut globex_checks = 0;
    let mut acme_done = false;
    while globex_checks < 3 {
        let report = rx.recv_timeout(std::time::Duration::from_secs(25)).expect("a report");
        for t in report["tenants"].as_array().unwrap() {
            match t["tenant"].as_str().unwrap() {
                "globex" => globex_checks += 1,
                "acme" => acme_done = true,
                _ => {}
            }
        }
    }
    let elapsed = started.elapsed();
    assert!(!acme_done || elapsed > std::time::Duration::from_secs(25), "acme was still stuck");
    assert!(
        elapsed < std::time::Duration::from_secs(25),
        "globex was checked 3 times in {elapsed:?} while acme was stuck"
    );
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let _ = child.wait();
    reader.join().unwrap();
}
