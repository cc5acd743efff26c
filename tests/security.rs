//! Security across every command, against a real emulator:
//!
//! - with debug logging (text and JSON), no command prints the secret access key or the session
//!   token it was given, nor any credential field unredacted;
//! - with two tenants' state swapped, an account's tenant tag forged, or both forged together
//!   (another tenant's account tagged and recorded as this tenant's), every command that works
//!   on member accounts refuses, and a proxy log shows that no command (those that only read the
//!   ledger included) assumed a role in, or changed, the protected account.

mod common;

use common::{Aws, Emulator, Run, Workspace};

const SECRET: &str = "tenantrySECRETkey0123456789abcdefXYZ";
const TOKEN: &str = "tenantrySESSIONtoken0123456789abcdefXYZ";

/// Stages acme's workload with `max_receive_count` and passes every check; returns the digest.
fn stage_and_pass(emu: &Emulator, ws: &Workspace, max_receive_count: u32) -> String {
    let text = ws.read("tenants/acme.toml");
    let start = text.find("max_receive_count = ").unwrap();
    let end = start + text[start..].find('\n').unwrap();
    ws.write(
        "tenants/acme.toml",
        &format!("{}max_receive_count = {max_receive_count}{}", &text[..start], &text[end..]),
    );
    let digest = ws.stage(&emu.endpoint, "acme");
    ws.pass_all_checks(&emu.endpoint, "acme", &digest);
    digest
}

/// The example tenants onboarded and acme's soak time zero; two releases of its workload
/// promoted (so a rollback has somewhere to go) and a third staged with every check passed (so
/// a promotion has something to do). Returns the third release's digest.
async fn onboarded_and_staged(emu: &Emulator, ws: &Workspace) -> String {
    let acme = ws.read("tenants/acme.toml").replace("soak = \"30m\"", "soak = \"0s\"");
    ws.write("tenants/acme.toml", &acme);
    let apply = ws.run(&emu.endpoint, &["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    for n in [5, 6] {
        stage_and_pass(emu, ws, n);
        let promoted = ws.run(&emu.endpoint, &["promote", "acme", "--approve"]);
        assert_eq!(promoted.code, 0, "{promoted:?}");
    }
    stage_and_pass(emu, ws, 7)
}

/// Every command, with the arguments that make it do its work on acme.
fn every_command(digest: &str) -> Vec<Vec<String>> {
    let short = &digest[..12];
    [
        "validate",
        "schema",
        "plan acme",
        "status acme",
        "reconcile acme --report-only",
        "reconcile acme --remediate",
        "apply acme --auto-approve",
        "stage acme",
        "converged acme",
        &format!("evidence acme {short} --check tests --result pass"),
        "promote acme --dry-run",
        "promote acme --approve",
        &format!("approve acme {short}"),
        "rollback acme --dry-run",
        "history acme",
    ]
    .iter()
    .map(|c| c.split_whitespace().map(str::to_string).collect())
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn no_command_prints_a_secret_key_or_session_token_with_debug_logging() {
    let emu = Emulator::start();
    let ws = Workspace::new();
    let digest = onboarded_and_staged(&emu, &ws).await;
    let mut redacted_fields = 0;
    let mut lines = 0;
    for (i, args) in every_command(&digest).iter().enumerate() {
        let format = if i % 2 == 0 { "text" } else { "json" };
        let run: Run = ws
            .command(&emu.endpoint)
            .args(["--log-format", format])
            .args(args)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_SESSION_TOKEN", TOKEN)
            .env("TENANTRY_LOG", "debug")
            .output()
            .unwrap()
            .into();
        assert_eq!(run.code, 0, "{args:?} does its work: {run:?}");
        let all = format!("{}{}", run.stdout, run.stderr);
        lines += all.lines().count();
        redacted_fields += common::assert_no_credentials(&all, &[SECRET, TOKEN], &args.join(" "));
    }
    eprintln!("security: {} commands with debug logging, {lines} lines of output, {redacted_fields} credential fields shown redacted, none in clear", every_command(&digest).len());
    assert!(redacted_fields > 0, "debug logging reached the credential fields, so the check above ran on them");
}

/// Runs `args` through a logging proxy; returns the run and the requests it sent.
fn run_logged(emu: &Emulator, ws: &Workspace, args: &[String]) -> (Run, String) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ws.run_through_proxy(&emu.endpoint, &serde_json::json!([]), 1, &args)
}

/// The commands that work on acme's member accounts; each must refuse.
fn account_commands(digest: &str) -> Vec<Vec<String>> {
    every_command(digest)
        .into_iter()
        .filter(|c| !["validate", "schema", "evidence", "history", "approve"].contains(&c[0].as_str()))
        .collect()
}

/// Runs every command; those that work on member accounts must refuse, and none may touch a
/// `protected` account. Returns how many refused.
async fn assert_every_command_refuses(
    emu: &Emulator,
    ws: &Workspace,
    digest: &str,
    protected: &[String],
    case: &str,
) -> usize {
    let must_refuse = account_commands(digest);
    let mut refused = 0;
    for args in every_command(digest) {
        let what = args.join(" ");
        let (run, log) = run_logged(emu, ws, &args);
        if must_refuse.contains(&args) {
            let all = format!("{}{}", run.stdout, run.stderr);
            assert_ne!(run.code, 0, "{case}: `{what}` must not succeed: {run:?}");
            assert!(all.contains("refusing to touch account"), "{case}: `{what}` says why: {run:?}");
            refused += 1;
        }
        if !["validate", "schema"].contains(&args[0].as_str()) {
            assert!(
                log.lines().count() > 0,
                "{case}: `{what}` went through the proxy, so its log is not vacuously clean"
            );
        }
        for account in protected {
            let touched = common::touches(&log, account);
            assert!(touched.is_empty(), "{case}: `{what}` touched account {account}:\n{}", touched.join("\n"));
        }
    }
    refused
}

#[tokio::test(flavor = "multi_thread")]
async fn with_state_swapped_or_a_tag_forged_every_command_refuses_before_touching_the_account() {
    let emu = Emulator::start();
    let ws = Workspace::new();
    let digest = onboarded_and_staged(&emu, &ws).await;
    let aws = Aws::new(&emu.endpoint).await;
    let bucket = Aws::state_bucket(&emu);
    let accounts = aws.tenant_accounts().await;
    let id = |t: &str, e: &str| accounts[&(t.to_string(), e.to_string())][0].clone();
    let globex = vec![id("globex", "production"), id("globex", "staging")];
    let acme = vec![id("acme", "production"), id("acme", "staging")];

    // 1. acme's state names globex's accounts.
    let original = aws.state_object(&bucket, "tenants/acme.json").await.unwrap();
    let mut swapped = original.clone();
    swapped["accounts"]["production"]["account_id"] = serde_json::json!(globex[0]);
    swapped["accounts"]["staging"]["account_id"] = serde_json::json!(globex[1]);
    let put = |doc: serde_json::Value| {
        let (s3, bucket) = (aws.s3.clone(), bucket.clone());
        async move {
            s3.put_object()
                .bucket(bucket)
                .key("tenants/acme.json")
                .body(serde_json::to_vec(&doc).unwrap().into())
                .send()
                .await
                .unwrap()
        }
    };
    put(swapped).await;
    let swapped_refusals = assert_every_command_refuses(&emu, &ws, &digest, &globex, "swapped").await;
    put(original.clone()).await;

    // 2. Both forged at once: globex's staging account tagged as acme's, and acme's state naming
    // it. Tags and state agree; its root email (globex's, declared in tenants/globex.toml) is
    // what gives it away.
    let tag = |account: String, tenant: &'static str| {
        let org = aws.org.clone();
        async move {
            let t = aws_sdk_organizations::types::Tag::builder().key("tenantry:tenant").value(tenant).build().unwrap();
            org.tag_resource().resource_id(account).tags(t).send().await.unwrap();
        }
    };
    tag(globex[1].clone(), "acme").await;
    let mut forged = original.clone();
    forged["accounts"]["staging"]["account_id"] = serde_json::json!(globex[1]);
    put(forged).await;
    let both_refusals = assert_every_command_refuses(&emu, &ws, &digest, &globex[1..], "tags and state forged").await;
    put(original).await;
    tag(globex[1].clone(), "globex").await;

    // 3. acme's accounts tagged as globex's.
    for account in &acme {
        aws.org
            .tag_resource()
            .resource_id(account)
            .tags(aws_sdk_organizations::types::Tag::builder().key("tenantry:tenant").value("globex").build().unwrap())
            .send()
            .await
            .unwrap();
    }
    let forged_refusals = assert_every_command_refuses(&emu, &ws, &digest, &acme, "forged").await;
    eprintln!(
        "security: of {} commands, {swapped_refusals} refused swapped state, {both_refusals} forged tags and state together, and {forged_refusals} a forged tag; none touched the protected accounts",
        every_command(&digest).len()
    );
}
