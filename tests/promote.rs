//! Promotion end to end against a real emulator: stage a workload release into staging, report
//! evidence, check convergence, promote to production through a change set, roll back; each
//! gate refusing on its own; approval of high-risk changes; a failed production deploy; waves.

mod common;

use common::{Aws, Emulator, FaultProxy, Run, Workspace};
use serde_json::Value;

const STACK: &str = "tenantry-wl-orders";

struct Fixture {
    emu: Emulator,
    ws: Workspace,
    aws: Aws,
}

/// The example tenants onboarded, with acme's soak time set to `soak`.
async fn onboarded(soak: &str, globex_workload: bool) -> Fixture {
    let emu = Emulator::start();
    let ws = Workspace::new();
    let acme = ws.read("tenants/acme.toml");
    assert!(acme.contains("soak = \"30m\""), "the example tenant declares a soak time");
    ws.write("tenants/acme.toml", &acme.replace("soak = \"30m\"", &format!("soak = \"{soak}\"")));
    if globex_workload {
        let workloads = &acme[acme.find("[workloads.orders]").unwrap()..];
        let globex = ws.read("tenants/globex.toml");
        ws.write("tenants/globex.toml", &format!("{globex}\n{}", workloads.replace("soak = \"30m\"", "soak = \"0s\"")));
    }
    let apply = ws.run(&emu.endpoint, &["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    let aws = Aws::new(&emu.endpoint).await;
    Fixture { emu, ws, aws }
}

impl Fixture {
    fn run(&self, args: &[&str]) -> Run {
        self.ws.run(&self.emu.endpoint, args)
    }

    /// Runs `tenantry ARGS` through a fault proxy with `rules`, where a `kill` rule SIGKILLs
    /// this process. Returns whether it was killed, and its output.
    fn run_killed(&self, mut rules: Value, args: &[&str]) -> (bool, Run) {
        use std::io::Write;
        use std::os::unix::process::ExitStatusExt;
        let pid_file = self.ws.path().join(format!("tenantry-{}.pid", std::process::id()));
        for r in rules.as_array_mut().unwrap() {
            if r["fault"] == "kill" {
                r["pid_file"] = Value::String(pid_file.display().to_string());
            }
        }
        let proxy = FaultProxy::start(&self.emu.endpoint, &rules);
        let child = self.ws.spawn(&proxy.endpoint, args);
        write!(std::fs::File::create(&pid_file).unwrap(), "{}", child.id()).unwrap();
        let out = child.wait_with_output().unwrap();
        let _ = std::fs::remove_file(&pid_file);
        (out.status.signal() == Some(9), Run::from(out))
    }

    /// Waits (at most 30 s) until the workload stack in `env` is not in progress: an emulator may
    /// carry out a change set in the background after the process that asked for it died.
    async fn settled(&self, tenant: &str, env: &str) {
        for _ in 0..60 {
            if self.workload(tenant, env).await.is_some_and(|(st, _, _)| !st.ends_with("_IN_PROGRESS")) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }

    /// The release the ledger's last `promoted` or `rolled_back` record of the workload names.
    fn ledger_current(&self, tenant: &str) -> Option<String> {
        self.ledger(tenant)
            .iter()
            .rev()
            .find(|r| matches!(r["kind"].as_str(), Some("promoted" | "rolled_back")))
            .map(|r| r["release"].as_str().unwrap().to_string())
    }

    /// Stages a new release of acme (a new `max_receive_count`) and passes its checks.
    fn release(&self, max_receive_count: u32) -> String {
        self.set_parameters("acme", &format!("max_receive_count = {max_receive_count}\n"));
        let d = self.stage("acme");
        self.pass_all("acme", &d);
        d
    }

    /// `tenantry stage TENANT`; returns the release digest.
    fn stage(&self, tenant: &str) -> String {
        self.ws.stage(&self.emu.endpoint, tenant)
    }

    fn evidence(&self, tenant: &str, digest: &str, check: &str, result: &str) {
        self.ws.evidence(&self.emu.endpoint, tenant, digest, check, result)
    }

    fn pass_all(&self, tenant: &str, digest: &str) {
        self.ws.pass_all_checks(&self.emu.endpoint, tenant, digest)
    }

    /// Changes acme's workload parameters (the `[workloads.orders.parameters]` table).
    fn set_parameters(&self, tenant: &str, params: &str) {
        let path = format!("tenants/{tenant}.toml");
        let text = self.ws.read(&path);
        let start = text.find("[workloads.orders.parameters]").unwrap();
        let end = start + text[start..].find("\n\n").unwrap();
        self.ws.write(&path, &format!("{}[workloads.orders.parameters]\n{params}{}", &text[..start], &text[end..]));
    }

    fn set_soak(&self, soak: &str) {
        let text = self.ws.read("tenants/acme.toml");
        let start = text.find("soak = ").unwrap();
        let end = start + text[start..].find('\n').unwrap();
        self.ws.write("tenants/acme.toml", &format!("{}soak = \"{soak}\"{}", &text[..start], &text[end..]));
    }

    async fn account(&self, tenant: &str, env: &str) -> String {
        let all = self.aws.tenant_accounts().await;
        let ids = &all[&(tenant.to_string(), env.to_string())];
        assert_eq!(ids.len(), 1, "{ids:?}");
        ids[0].clone()
    }

    /// The workload stack in an account: (status, release tag, template), if it is there.
    async fn workload(&self, tenant: &str, env: &str) -> Option<(String, Option<String>, String)> {
        let cfn = self.aws.member_cfn(&self.account(tenant, env).await).await;
        let out = cfn.describe_stacks().stack_name(STACK).send().await.ok()?;
        let s = out.stacks().first()?.clone();
        let status = s.stack_status().map(|x| x.as_str().to_string()).unwrap_or_default();
        if matches!(status.as_str(), "DELETE_COMPLETE" | "REVIEW_IN_PROGRESS") {
            return None;
        }
        let release =
            s.tags().iter().find(|t| t.key() == Some("tenantry:release")).and_then(|t| t.value().map(str::to_string));
        let body = cfn.get_template().stack_name(STACK).send().await.unwrap().template_body.unwrap_or_default();
        Some((status, release, body))
    }

    /// Writes a verdict object into the tenant's staging evidence bucket, as the agent
    /// pipeline's roles do (`verdicts/<digest>/<check>.json`); returns the bucket name.
    async fn verdict(&self, tenant: &str, digest: &str, check: &str, body: &str) -> String {
        let staging_conf = self.aws.member_config(&self.account(tenant, "staging").await).await;
        let outputs = aws_sdk_cloudformation::Client::new(&staging_conf)
            .describe_stacks()
            .stack_name("tenantry-agent-pipeline")
            .send()
            .await
            .unwrap();
        let bucket = outputs.stacks()[0]
            .outputs()
            .iter()
            .find(|o| o.output_key() == Some("EvidenceBucketName"))
            .and_then(|o| o.output_value())
            .expect("the agent pipeline names its evidence bucket")
            .to_string();
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&staging_conf).force_path_style(true).build(),
        );
        s3.put_object()
            .bucket(&bucket)
            .key(format!("verdicts/{digest}/{check}.json"))
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
        bucket
    }

    /// The stored artifact's template.
    async fn artifact(&self, tenant: &str, digest: &str) -> String {
        let a = self
            .aws
            .state_object(&Aws::state_bucket(&self.emu), &format!("artifacts/{tenant}/{digest}.json"))
            .await
            .expect("artifact stored");
        assert_eq!(a["digest"], digest);
        a["template"].as_str().unwrap().to_string()
    }

    /// The tenant's ledger records, oldest first (`history --output json`).
    fn ledger(&self, tenant: &str) -> Vec<Value> {
        let run = self.run(&["history", tenant, "--output", "json"]);
        assert_eq!(run.code, 0, "{run:?}");
        let doc: Value = serde_json::from_str(&run.stdout).unwrap();
        doc["records"].as_array().unwrap().clone()
    }

    /// The kinds of the tenant's promotion records, oldest first (the `applied` records of
    /// `apply` and `reconcile` left out: they name no release).
    fn ledger_kinds(&self, tenant: &str) -> Vec<String> {
        self.ledger(tenant)
            .iter()
            .filter(|r| r["kind"] != "applied")
            .map(|r| {
                for f in ["release", "at", "by", "id"] {
                    assert!(r[f].as_str().is_some_and(|s| !s.is_empty()), "ledger record lacks {f}: {r}");
                }
                r["kind"].as_str().unwrap().to_string()
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn whole_cycle_then_dry_run_rollback_ledger_and_no_reach_into_other_tenants() {
    // globex has the same workload, staged, so that there is something of globex's to reach.
    let f = onboarded("0s", true).await;
    f.stage("globex");
    let d1 = f.stage("acme");
    let (status, release, body) = f.workload("acme", "staging").await.expect("staged into staging");
    assert!(status.ends_with("_COMPLETE"), "{status}");
    assert_eq!(release.as_deref(), Some(d1.as_str()));
    assert_eq!(body, f.artifact("acme", &d1).await, "staging runs the stored artifact");
    assert!(f.workload("acme", "production").await.is_none(), "staging only");

    let conv = f.run(&["converged", "acme"]);
    assert_eq!(conv.code, 2, "no evidence yet: {conv:?}");
    assert!(conv.stdout.contains("[FAIL] check:tests"), "{conv:?}");
    // Two checks through `tenantry evidence`; the security audit as the agent pipeline's
    // auditor writes it: a JSON object under verdicts/<digest>/ in the staging evidence bucket.
    f.evidence("acme", &d1, "tests", "pass");
    f.evidence("acme", &d1, "review", "pass");
    // The reviewer's own key, claiming the security audit in its body, counts for nothing: only
    // the key names the check (and the reviewer role may write only its own checks' keys).
    f.verdict("acme", &d1, "review", r#"{"check": "security-audit", "result": "pass"}"#).await;
    let conv = f.run(&["converged", "acme"]);
    assert_eq!(conv.code, 2, "a forged security audit does not pass the gate: {conv:?}");
    assert!(conv.stdout.contains("[FAIL] check:security-audit"), "{conv:?}");
    let bucket = f
        .verdict(
            "acme",
            &d1,
            "security-audit",
            r#"{"check": "security-audit", "result": "pass", "url": "https://ci.example.com/audit/1"}"#,
        )
        .await;
    let conv = f.run(&["converged", "acme"]);
    assert_eq!(conv.code, 0, "{conv:?}");
    assert!(conv.stdout.contains("CONVERGED"), "{conv:?}");
    let audit = conv.stdout.lines().find(|l| l.contains("check:security-audit")).unwrap();
    assert!(
        audit.contains(&format!("s3://{bucket}/verdicts/{d1}/security-audit.json")),
        "read from the bucket: {audit}"
    );

    // --dry-run previews the change set and changes nothing.
    let ledger_before = f.ledger_kinds("acme");
    let dry = f.run(&["promote", "acme", "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(
        dry.stdout.contains("Add") && dry.stdout.contains("AWS::SQS::Queue") && dry.stdout.contains("dry run"),
        "{dry:?}"
    );
    assert!(f.workload("acme", "production").await.is_none(), "a dry run creates nothing in production");
    assert_eq!(f.ledger_kinds("acme"), ledger_before, "a dry run writes no ledger record");

    // Promote through a proxy that records every STS and Organizations request: only acme's
    // accounts are reached.
    let log = f.ws.path().join("requests.log");
    let proxy = FaultProxy::start_logged(&f.emu.endpoint, &serde_json::json!([]), Some(&log));
    let out =
        f.ws.command(&f.emu.endpoint)
            .env("AWS_ENDPOINT_URL_STS", &proxy.endpoint)
            .env("AWS_ENDPOINT_URL_ORGANIZATIONS", &proxy.endpoint)
            .args(["promote", "acme"])
            .output()
            .unwrap();
    let promote = Run::from(out);
    assert_eq!(promote.code, 0, "{promote:?}");
    assert!(promote.stdout.contains("promoted"), "{promote:?}");
    let requests = std::fs::read_to_string(&log).unwrap();
    for env in ["production", "staging"] {
        let acme = f.account("acme", env).await;
        assert!(requests.contains(&acme), "the log records acme's {env} account {acme}");
        let globex = f.account("globex", env).await;
        assert!(!requests.contains(&globex), "promoting acme reached globex's {env} account {globex}:\n{requests}");
    }
    assert!(!requests.contains("globex"), "promoting acme mentioned globex:\n{requests}");
    drop(proxy);

    let (status, release, body) = f.workload("acme", "production").await.expect("promoted");
    assert_eq!(status, "CREATE_COMPLETE");
    assert_eq!(release.as_deref(), Some(d1.as_str()));
    assert_eq!(body, f.artifact("acme", &d1).await, "production runs the staged artifact byte for byte");
    assert!(f.workload("globex", "production").await.is_none());

    // A second release, then a rollback to the first.
    f.set_parameters("acme", "max_receive_count = 7\n");
    let d2 = f.stage("acme");
    assert_ne!(d1, d2);
    f.pass_all("acme", &d2);
    let promote = f.run(&["promote", "acme"]);
    assert_eq!(promote.code, 0, "{promote:?}");
    // (What a stack runs is checked by its template; moto does not update stack tags on a
    // change set's execution, so the release tag is checked only after the stack's creation.)
    let (_, _, body) = f.workload("acme", "production").await.unwrap();
    assert_eq!(body, f.artifact("acme", &d2).await);
    let again = f.run(&["promote", "acme"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("already runs this release"), "{again:?}");

    let rollback = f.run(&["rollback", "acme"]);
    assert_eq!(rollback.code, 0, "{rollback:?}");
    assert!(rollback.stdout.contains("rolled back"), "{rollback:?}");
    let (status, _, body) = f.workload("acme", "production").await.unwrap();
    assert!(status.ends_with("_COMPLETE"), "{status}");
    assert_eq!(body, f.artifact("acme", &d1).await, "rollback puts the first release back");

    let kinds = f.ledger_kinds("acme");
    for k in ["staged", "evidence", "promoted", "rolled_back"] {
        assert!(kinds.contains(&k.to_string()), "ledger lacks {k}: {kinds:?}");
    }
    assert_eq!(kinds.iter().filter(|k| *k == "staged").count(), 2);
    assert_eq!(
        kinds.iter().filter(|k| *k == "evidence").count(),
        5,
        "two for the first release (one came from the bucket), three for the second"
    );
    assert_eq!(kinds.iter().filter(|k| *k == "promoted").count(), 2);

    // Ledger records cannot be overwritten: tenantry writes them with If-None-Match: *.
    let bucket = Aws::state_bucket(&f.emu);
    let listed = f.aws.s3.list_objects_v2().bucket(&bucket).prefix("ledger/acme/").send().await.unwrap();
    let key = listed.contents()[0].key().unwrap().to_string();
    let before = f.aws.state_object(&bucket, &key).await.unwrap();
    let store = tenantry::state::StateStore::new(f.aws.s3.clone(), bucket.clone());
    let err = store
        .put_new(&key, b"{\"forged\": true}".to_vec())
        .await
        .expect_err("an existing ledger record must not be overwritten");
    assert!(matches!(err, tenantry::state::Error::WriteConflict(_)), "{err:#}");
    assert_eq!(f.aws.state_object(&bucket, &key).await.unwrap(), before, "the record is unchanged");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_gate_refuses_promotion_on_its_own() {
    let f = onboarded("0s", false).await;
    let d1 = f.stage("acme");
    let refused = |gate: &str, why: &str| {
        let run = f.run(&["promote", "acme"]);
        assert_eq!(run.code, 2, "refused on {gate}: {run:?}");
        assert!(run.stdout.contains("REFUSED"), "{run:?}");
        let line = run
            .stdout
            .lines()
            .find(|l| l.contains(&format!("[FAIL] {gate}")))
            .unwrap_or_else(|| panic!("no failing {gate} gate: {run:?}"));
        assert!(line.contains(why), "{gate} says why ({why}): {line}");
        let failing = run.stdout.lines().filter(|l| l.contains("[FAIL]")).count();
        assert_eq!(failing, 1, "only {gate} fails: {run:?}");
    };

    // A required check without a result.
    f.evidence("acme", &d1, "tests", "pass");
    f.evidence("acme", &d1, "review", "pass");
    refused("check:security-audit", "no result");
    // A failing check; a later failure overrides an earlier pass.
    f.evidence("acme", &d1, "security-audit", "pass");
    f.evidence("acme", &d1, "tests", "fail");
    refused("check:tests", "failed at");
    f.evidence("acme", &d1, "tests", "pass");
    // A verdict object claiming a time in the future does not outrank a later failure: results
    // are ordered by when tenantry's storage received them.
    f.verdict("acme", &d1, "review", r#"{"check": "review", "result": "pass", "at": "2099-01-01T00:00:00Z"}"#).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    f.evidence("acme", &d1, "review", "fail");
    refused("check:review", "failed at");
    f.evidence("acme", &d1, "review", "pass");
    assert!(f.workload("acme", "production").await.is_none(), "nothing reached production");

    // Checks that passed for another release do not count for a new one.
    f.set_parameters("acme", "max_receive_count = 9\n");
    let d2 = f.stage("acme");
    f.evidence("acme", &d2, "tests", "pass");
    f.evidence("acme", &d2, "review", "pass");
    refused("check:security-audit", "passed only for other releases");
    f.evidence("acme", &d2, "security-audit", "pass");

    // Soak time not over.
    f.set_soak("1h");
    refused("soak", "to go");
    // ... even when the stager's clock was two hours behind: the `staged` record claims an `at`
    // long past, but the soak counts from when the state bucket stored it, on the bucket's clock.
    let bucket = Aws::state_bucket(&f.emu);
    let listed = f.aws.s3.list_objects_v2().bucket(&bucket).prefix("ledger/acme/").send().await.unwrap();
    let mut staged_key = None;
    for o in listed.contents() {
        let key = o.key().unwrap().to_string();
        if let Some(doc) = f.aws.state_object(&bucket, &key).await {
            if doc["kind"] == "staged" && doc["release"] == d2.as_str() {
                staged_key = Some((key, doc));
            }
        }
    }
    let (key, mut doc) = staged_key.expect("the staged record of d2");
    doc["at"] = serde_json::json!("2000-01-01T00:00:00.000000000Z");
    f.aws
        .s3
        .put_object()
        .bucket(&bucket)
        .key(&key)
        .body(serde_json::to_vec(&doc).unwrap().into())
        .send()
        .await
        .unwrap();
    refused("soak", "to go");
    f.set_soak("0s");

    // The staging stack no longer runs the release (its template changed out of band).
    let staging = f.aws.member_cfn(&f.account("acme", "staging").await).await;
    let artifact = f.artifact("acme", &d2).await;
    assert!(artifact.contains("\"maxReceiveCount\": 9"), "{artifact}");
    let tampered = artifact.replace("\"maxReceiveCount\": 9", "\"maxReceiveCount\": 3");
    staging
        .update_stack()
        .stack_name(STACK)
        .template_body(tampered)
        .parameters(
            aws_sdk_cloudformation::types::Parameter::builder()
                .parameter_key("Environment")
                .use_previous_value(true)
                .build(),
        )
        .parameters(
            aws_sdk_cloudformation::types::Parameter::builder()
                .parameter_key("VisibilityTimeoutSeconds")
                .use_previous_value(true)
                .build(),
        )
        .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityNamedIam)
        .send()
        .await
        .unwrap();
    for _ in 0..50 {
        let s = staging.describe_stacks().stack_name(STACK).send().await.unwrap();
        if !s.stacks()[0].stack_status().unwrap().as_str().ends_with("IN_PROGRESS") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    refused("stack", "template differs from the artifact");
    // Staging again puts the release back.
    assert_eq!(f.stage("acme"), d2);

    if common::emulator_kind() == "localstack" {
        // LocalStack's CloudFormation takes a bucket whose name is already held, so this deploy
        // does not fail there: the failed staging deploy is checked on moto and ministack.
        eprintln!("LocalStack: a taken bucket name does not fail a stack; failed staging deploy not checked here");
    } else {
        // A release whose staging deploy fails (a bucket name it needs is taken) is never recorded
        // as staged, so it cannot be promoted.
        f.set_parameters("acme", "max_receive_count = 9\narchive_bucket = true\n");
        let staging_id = f.account("acme", "staging").await;
        let squatted = format!("acme-orders-archive-{staging_id}-staging");
        f.aws.s3.create_bucket().bucket(&squatted).send().await.unwrap();
        let failed = f.run(&["stage", "acme"]);
        assert_eq!(failed.code, 1, "the staging deploy fails: {failed:?}");
        // (ministack rolls the stack back, with only a stack-level failure event; moto fails
        // ExecuteChangeSet itself with the bucket error.)
        assert!(
            failed.stderr.contains("UPDATE_ROLLBACK_COMPLETE") || failed.stderr.contains("BucketAlreadyExists"),
            "the failure is reported: {failed:?}"
        );
        let digests = f.run(&["history", "acme", "--output", "json"]);
        let d3 = f
            .aws
            .s3
            .list_objects_v2()
            .bucket(Aws::state_bucket(&f.emu))
            .prefix("artifacts/acme/")
            .send()
            .await
            .unwrap();
        let d3 = d3
            .contents()
            .iter()
            .filter_map(|o| o.key()?.strip_prefix("artifacts/acme/")?.strip_suffix(".json").map(str::to_string))
            .find(|d| *d != d1 && *d != d2)
            .expect("the failed release's artifact is stored");
        assert!(!digests.stdout.contains(&d3), "a failed stage is not in the ledger as staged");
        f.pass_all("acme", &d3);
        let run = f.run(&["promote", "acme", "--release", &d3[..12]]);
        assert_eq!(run.code, 2, "{run:?}");
        assert!(run.stdout.contains("[FAIL] staged") && run.stdout.contains("never staged"), "{run:?}");
        f.aws.s3.delete_bucket().bucket(&squatted).send().await.unwrap();
        f.set_parameters("acme", "max_receive_count = 9\n");
        assert_eq!(f.stage("acme"), d2);
    }

    // Twin parity: production's baseline no longer runs the current version.
    if !common::update_stack_applies_tags() {
        eprintln!("LocalStack: a stack's version tag cannot be changed out of band there; parity checked on moto and ministack");
        return;
    }
    let prod = f.aws.member_cfn(&f.account("acme", "production").await).await;
    let baseline = prod.describe_stacks().stack_name("tenantry-baseline").send().await.unwrap();
    let mut tags: Vec<aws_sdk_cloudformation::types::Tag> = baseline.stacks()[0].tags().to_vec();
    for t in tags.iter_mut() {
        if t.key() == Some("tenantry:version") {
            *t = aws_sdk_cloudformation::types::Tag::builder().key("tenantry:version").value("0".repeat(64)).build();
        }
    }
    prod.update_stack()
        .stack_name("tenantry-baseline")
        .use_previous_template(true)
        .set_tags(Some(tags))
        .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityNamedIam)
        .send()
        .await
        .unwrap();
    refused("parity", "the twins differ");
    assert!(f.workload("acme", "production").await.is_none(), "nothing reached production");
}

#[tokio::test(flavor = "multi_thread")]
async fn high_risk_needs_approval_and_a_failed_deploy_leaves_the_previous_release() {
    let f = onboarded("0s", false).await;
    let d1 = f.stage("acme");
    f.pass_all("acme", &d1);
    let first = f.run(&["promote", "acme"]);
    assert_eq!(first.code, 0, "low risk, approval auto: {first:?}");

    // The next release adds an IAM role: high risk, so it waits for approval.
    f.set_parameters("acme", "max_receive_count = 5\nworker_role = true\n");
    let d2 = f.stage("acme");
    f.pass_all("acme", &d2);
    let waiting = f.run(&["promote", "acme"]);
    assert_eq!(waiting.code, 2, "{waiting:?}");
    assert!(waiting.stdout.contains("WAITING FOR APPROVAL") && waiting.stdout.contains("risk: high"), "{waiting:?}");
    assert!(waiting.stdout.contains("AWS::IAM::Role"), "the preview names the role: {waiting:?}");
    let (_, _, body) = f.workload("acme", "production").await.unwrap();
    assert_eq!(body, f.artifact("acme", &d1).await, "production still runs the first release");
    let approve = f.run(&["approve", "acme", &d2[..12]]);
    assert_eq!(approve.code, 0, "{approve:?}");
    let approved = f.run(&["promote", "acme"]);
    assert_eq!(approved.code, 0, "approved with `tenantry approve`: {approved:?}");
    let (_, _, body) = f.workload("acme", "production").await.unwrap();
    assert_eq!(body, f.artifact("acme", &d2).await);

    if common::emulator_kind() == "localstack" {
        // LocalStack takes a bucket name that is already held (and ends a failed update in
        // ROLLBACK_COMPLETE rather than UPDATE_ROLLBACK_COMPLETE): the failed production deploy and
        // its rollback are checked on ministack (and the failure on moto).
        eprintln!("LocalStack: failed production deploy and rollback not checked here");
        return;
    }
    // The third release adds a bucket whose name someone already holds: the production deploy
    // fails, CloudFormation rolls back, production keeps the second release.
    f.set_parameters("acme", "max_receive_count = 5\nworker_role = true\narchive_bucket = true\n");
    let d3 = f.stage("acme");
    f.pass_all("acme", &d3);
    let prod_id = f.account("acme", "production").await;
    let squatted = format!("acme-orders-archive-{prod_id}-production");
    f.aws.s3.create_bucket().bucket(&squatted).send().await.unwrap();
    let failed = f.run(&["promote", "acme", "--approve"]);
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(failed.stdout.contains("FAILED"), "{failed:?}");
    assert!(failed.stdout.contains("ArchiveBucket"), "the failing resource's event is reported: {failed:?}");
    let (status, _, body) = f.workload("acme", "production").await.unwrap();
    if common::emulator_kind() == "moto" {
        // moto fails the update but does not roll a stack back (it shows UPDATE_COMPLETE with a
        // partial update): the rollback itself is checked on ministack.
        eprintln!("moto: CloudFormation rollback is not emulated (stack {status}); rollback checked on ministack only");
    } else {
        assert!(failed.stdout.contains("FAILED; CloudFormation rolled production back"), "{failed:?}");
        assert_eq!(status, "UPDATE_ROLLBACK_COMPLETE", "CloudFormation rolled back");
        assert_eq!(body, f.artifact("acme", &d2).await, "production keeps the second release's template");
    }
    let kinds = f.ledger_kinds("acme");
    assert!(kinds.contains(&"approval".to_string()) && kinds.contains(&"promotion_failed".to_string()), "{kinds:?}");

    // With the name free again, the approved release goes through.
    f.aws.s3.delete_bucket().bucket(&squatted).send().await.unwrap();
    let ok = f.run(&["promote", "acme"]);
    assert_eq!(ok.code, 0, "approved earlier, so no --approve needed: {ok:?}");
    let (_, _, body) = f.workload("acme", "production").await.unwrap();
    assert_eq!(body, f.artifact("acme", &d3).await);

    // Rollbacks walk back through what was promoted: d2, then d1, never forward. d2's approval
    // was used up when production moved on, so removing the bucket needs a new one.
    let back = f.run(&["rollback", "acme"]);
    assert_eq!(back.code, 2, "a high-risk rollback needs approval again: {back:?}");
    assert!(back.stdout.contains("WAITING FOR APPROVAL"), "{back:?}");
    let back = f.run(&["rollback", "acme", "--approve"]);
    assert_eq!(back.code, 0, "{back:?}");
    assert_eq!(f.workload("acme", "production").await.unwrap().2, f.artifact("acme", &d2).await);
    let back = f.run(&["rollback", "acme", "--approve"]);
    assert_eq!(back.code, 0, "{back:?}");
    assert_eq!(f.workload("acme", "production").await.unwrap().2, f.artifact("acme", &d1).await);
    let none = f.run(&["rollback", "acme", "--approve"]);
    assert_eq!(none.code, 2, "nothing before the first release: a refusal: {none:?}");
    assert!(none.stdout.contains("REFUSED") && none.stdout.contains("no earlier promoted release"), "{none:?}");
    assert_eq!(f.workload("acme", "production").await.unwrap().2, f.artifact("acme", &d1).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn promote_all_goes_in_waves_canaries_first_and_stops_at_the_first_failure() {
    let f = onboarded("0s", true).await;
    let acme = f.stage("acme");
    let globex = f.stage("globex");
    f.pass_all("acme", &acme);
    // globex, the canary, lacks its evidence: its wave fails and acme's wave never starts.
    let run = f.run(&["promote", "--all", "--canary", "globex", "--wave-size", "1"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stdout.contains("wave 1 of 2: globex"), "{run:?}");
    assert!(run.stdout.contains("stopped after wave 1") && run.stdout.contains("not promoted: acme"), "{run:?}");
    assert!(f.workload("acme", "production").await.is_none(), "acme's wave did not run");
    assert!(f.workload("globex", "production").await.is_none());

    f.pass_all("globex", &globex);
    let run = f.run(&["promote", "--all", "--canary", "globex", "--wave-size", "1"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(f.workload("acme", "production").await.is_some() && f.workload("globex", "production").await.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_promote_killed_after_executing_its_change_set_is_recorded_truthfully_by_the_next_run() {
    let f = onboarded("0s", false).await;
    let d1 = f.release(4);
    assert_eq!(f.run(&["promote", "acme"]).code, 0);
    let d2 = f.release(6);
    // Killed right after CloudFormation accepted ExecuteChangeSet (its answer never arrives).
    let (killed, run) = f.run_killed(
        serde_json::json!([{"service": "cloudformation", "action": "ExecuteChangeSet", "fault": "kill", "when": "after"}]),
        &["promote", "acme"],
    );
    assert!(killed, "the kill point was reached: {run:?}");
    f.settled("acme", "production").await;
    assert_eq!(
        f.workload("acme", "production").await.unwrap().2,
        f.artifact("acme", &d2).await,
        "the change set was executed"
    );
    assert_eq!(
        f.ledger_current("acme").as_deref(),
        Some(d1.as_str()),
        "the killed run recorded nothing after executing"
    );

    // Every read that depends on it says what production runs, and that the ledger disagrees.
    let history = f.run(&["history", "acme"]);
    assert!(
        history.stdout.contains(&format!("runs release {}", &d2[..12])) && history.stdout.contains("LEDGER MISMATCH"),
        "{history:?}"
    );
    let dry = f.run(&["rollback", "acme", "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(
        dry.stdout.contains(&format!("release {}", &d1[..12]))
            && dry.stdout.contains(&format!("production runs release {}", &d2[..12])),
        "the rollback goes from d2 back to d1: {dry:?}"
    );
    assert_eq!(f.ledger_current("acme").as_deref(), Some(d1.as_str()), "a dry run writes nothing");

    // The next promotion records what happened, as what the killed run intended, and does
    // not claim a change it did not make.
    let again = f.run(&["promote", "acme"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("already runs this release"), "{again:?}");
    assert!(again.stdout.contains("ledger: recorded promoted"), "{again:?}");
    let ledger = f.ledger("acme");
    let mine: Vec<&Value> = ledger.iter().filter(|r| r["release"] == d2.as_str() && r["kind"] == "promoted").collect();
    assert_eq!(mine.len(), 1, "one promoted record for d2: {ledger:#?}");
    assert_eq!(mine[0]["detail"]["recovered"], true, "{:#}", mine[0]);
    let intent = ledger
        .iter()
        .find(|r| r["kind"] == "executing" && r["release"] == d2.as_str())
        .expect("the intent was recorded before executing");
    assert_eq!(mine[0]["detail"]["intent"], intent["id"], "the recovered record answers the intent");
    assert!(
        !ledger.iter().any(|r| r["detail"]["note"].as_str().is_some_and(|n| n.contains("nothing executed"))),
        "{ledger:#?}"
    );
    let history = f.run(&["history", "acme"]);
    assert!(!history.stdout.contains("LEDGER MISMATCH"), "{history:?}");

    // A rollback killed the same way is recorded as a rollback: the next one goes further back,
    // never forward again.
    let d3 = f.release(8);
    assert_eq!(f.run(&["promote", "acme"]).code, 0);
    let (killed, run) = f.run_killed(
        serde_json::json!([{"service": "cloudformation", "action": "ExecuteChangeSet", "fault": "kill", "when": "after"}]),
        &["rollback", "acme"],
    );
    assert!(killed, "{run:?}");
    f.settled("acme", "production").await;
    assert_eq!(f.workload("acme", "production").await.unwrap().2, f.artifact("acme", &d2).await);
    assert_eq!(f.ledger_current("acme").as_deref(), Some(d3.as_str()));
    let back = f.run(&["rollback", "acme"]);
    assert_eq!(back.code, 0, "{back:?}");
    assert!(back.stdout.contains("ledger: recorded rolled_back"), "{back:?}");
    assert_eq!(
        f.workload("acme", "production").await.unwrap().2,
        f.artifact("acme", &d1).await,
        "the next rollback goes from d2 to d1"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delayed_ledger_write_a_second_process_and_a_deleted_record_cannot_make_the_ledger_lie() {
    let f = onboarded("0s", false).await;
    let d1 = f.release(4);
    assert_eq!(f.run(&["promote", "acme"]).code, 0);
    let c = f.release(6);
    // Release C's `promoted` record is held 8 s on its way to S3 (latency), while a second
    // process stages and promotes release D.
    let proxy = FaultProxy::start(
        &f.emu.endpoint,
        &serde_json::json!([{"service": "s3", "contains": "\"kind\": \"promoted\"", "fault": "latency", "ms": 8000}]),
    );
    let first = f.ws.spawn(&proxy.endpoint, &["promote", "acme"]);
    // Wait until C runs in production (the first process is then writing its record).
    let want = f.artifact("acme", &c).await;
    for _ in 0..120 {
        if f.workload("acme", "production").await.is_some_and(|(_, _, body)| body == want) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let d = f.release(8);
    let second = f.run(&["promote", "acme"]);
    let first = Run::from(first.wait_with_output().unwrap());
    drop(proxy);
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(second.code, 0, "{second:?}");
    assert_eq!(f.workload("acme", "production").await.unwrap().2, f.artifact("acme", &d).await, "production runs D");
    assert_eq!(f.ledger_current("acme").as_deref(), Some(d.as_str()), "and the ledger says so");

    // A rollback goes from D to C, and really changes production.
    let back = f.run(&["rollback", "acme"]);
    assert_eq!(back.code, 0, "{back:?}");
    assert_eq!(f.workload("acme", "production").await.unwrap().2, want, "production runs C again");
    let ledger = f.ledger("acme");
    let last = ledger.iter().rev().find(|r| r["kind"] == "rolled_back").unwrap();
    assert_eq!(last["release"], c.as_str());
    assert!(
        last["detail"]["changes"].as_array().is_some_and(|c| !c.is_empty()),
        "a rollback records the change it made: {last:#}"
    );

    // The latest `promoted` record deleted out of band: every reader says what production runs.
    let bucket = Aws::state_bucket(&f.emu);
    let listed = f.aws.s3.list_objects_v2().bucket(&bucket).prefix("ledger/acme/").send().await.unwrap();
    for o in listed.contents() {
        let key = o.key().unwrap();
        if key.contains("-rolled_back-") {
            f.aws.s3.delete_object().bucket(&bucket).key(key).send().await.unwrap();
        }
    }
    assert_eq!(f.ledger_current("acme").as_deref(), Some(d.as_str()), "the ledger now says D");
    let dry = f.run(&["rollback", "acme", "--dry-run"]);
    assert!(
        dry.stdout.contains("LEDGER MISMATCH") && dry.stdout.contains(&format!("production runs release {}", &c[..12])),
        "{dry:?}"
    );
    assert!(
        dry.stdout.contains(&format!("release {}", &d1[..12])),
        "from C, a rollback goes back to what was promoted before C: {dry:?}"
    );
    let conv = f.run(&["converged", "acme"]);
    assert!(conv.stdout.contains("LEDGER MISMATCH"), "{conv:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_promotions_at_once_execute_one_change_set() {
    let f = onboarded("0s", false).await;
    let d1 = f.release(4);
    assert_eq!(f.run(&["promote", "acme"]).code, 0);
    let d2 = f.release(6);
    // Each ExecuteChangeSet held 3 s, so that both runs would have previewed before either
    // executes if nothing kept them apart.
    let proxy = FaultProxy::start(
        &f.emu.endpoint,
        &serde_json::json!([{"service": "cloudformation", "action": "ExecuteChangeSet", "fault": "latency", "ms": 3000}]),
    );
    let spawn = || f.ws.spawn(&proxy.endpoint, &["promote", "acme", "--approve"]);
    let (a, b) = (spawn(), spawn());
    let (a, b) = (Run::from(a.wait_with_output().unwrap()), Run::from(b.wait_with_output().unwrap()));
    drop(proxy);
    assert_eq!((a.code, b.code), (0, 0), "{a:?}\n{b:?}");
    let promoted = [&a, &b].iter().filter(|r| r.stdout.contains("promoted: production runs this release")).count();
    let unchanged = [&a, &b].iter().filter(|r| r.stdout.contains("already runs this release")).count();
    assert_eq!((promoted, unchanged), (1, 1), "one executed, the other found it done:\n{a:?}\n{b:?}");
    let ledger = f.ledger("acme");
    assert_eq!(
        ledger.iter().filter(|r| r["kind"] == "promoted" && r["release"] == d2.as_str()).count(),
        1,
        "{ledger:#?}"
    );
    assert_eq!(
        ledger.iter().filter(|r| r["kind"] == "executing" && r["release"] == d2.as_str()).count(),
        1,
        "one change set executed"
    );
    assert_ne!(d1, d2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_promotion_whose_change_set_was_not_carried_out_leaves_nothing_behind() {
    let f = onboarded("0s", false).await;
    let d1 = f.release(4);
    // CloudFormation refuses to execute the first production change set: the stack it created
    // for review never ran anything.
    let refuse = serde_json::json!([{"service": "cloudformation", "action": "ExecuteChangeSet", "fault": "error", "status": 400, "code": "InvalidChangeSetStatus", "message": "injected"}]);
    let (run, log) = f.ws.run_through_proxy(&f.emu.endpoint, &refuse, 1, &["promote", "acme"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("FAILED") && log.contains("FAULT error cloudformation:ExecuteChangeSet"), "{run:?}");
    let cfn = f.aws.member_cfn(&f.account("acme", "production").await).await;
    let left = cfn
        .describe_stacks()
        .stack_name(STACK)
        .send()
        .await
        .ok()
        .and_then(|o| o.stacks().first().and_then(|s| s.stack_status().map(|x| x.as_str().to_string())));
    assert!(
        left.is_none() || left.as_deref() == Some("DELETE_COMPLETE"),
        "the empty stack is removed, not left in {left:?}"
    );
    let ledger = f.ledger("acme");
    let failed = ledger.iter().find(|r| r["kind"] == "promotion_failed").expect("the failure is recorded");
    let intent = ledger.iter().find(|r| r["kind"] == "executing").expect("the intent was recorded");
    assert_eq!(failed["detail"]["intent"], intent["id"]);
    // The rerun promotes at once (no wait on a stack left behind).
    let started = std::time::Instant::now();
    let ok = f.run(&["promote", "acme"]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(120), "took {:?}", started.elapsed());
    assert_eq!(f.workload("acme", "production").await.unwrap().2, f.artifact("acme", &d1).await);
    assert!(!ok.stdout.contains("LEDGER MISMATCH"), "{ok:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stage_killed_after_executing_its_change_set_is_recorded_by_the_next_stage() {
    let f = onboarded("0s", false).await;
    let d1 = f.release(4);
    f.set_parameters("acme", "max_receive_count = 6\n");
    let (killed, run) = f.run_killed(
        serde_json::json!([{"service": "cloudformation", "action": "ExecuteChangeSet", "fault": "kill", "when": "after"}]),
        &["stage", "acme"],
    );
    assert!(killed, "{run:?}");
    f.settled("acme", "staging").await;
    let staged: Vec<String> = f
        .ledger("acme")
        .iter()
        .filter(|r| r["kind"] == "staged")
        .map(|r| r["release"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(staged, std::slice::from_ref(&d1), "the killed stage recorded nothing");
    // Staging runs the new release; the next stage finds it there and records it.
    let again = f.run(&["stage", "acme"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("staged (recovered)"), "{again:?}");
    let d2 =
        f.ledger("acme").iter().rev().find(|r| r["kind"] == "staged").unwrap()["release"].as_str().unwrap().to_string();
    assert_ne!(d2, d1);
    assert_eq!(
        f.workload("acme", "staging").await.unwrap().2,
        f.artifact("acme", &d2).await,
        "the recorded release is what staging runs"
    );
    let once_more = f.run(&["stage", "acme"]);
    assert!(
        once_more.stdout.contains("unchanged") && !once_more.stdout.contains("recovered"),
        "recorded once: {once_more:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_signal_during_a_production_change_is_recorded_as_what_production_shows() {
    let f = onboarded("0s", false).await;
    // A first promotion stopped while its change set is being made ready (each
    // DescribeChangeSet held 30 s): nothing executed, and the rerun promotes at once.
    let d1 = f.release(4);
    let hold = |action: &str, ms: u64| serde_json::json!([{"service": "cloudformation", "action": action, "fault": "latency", "ms": ms}]);
    let (run, log, took) = f.ws.signalled_during(
        &f.emu.endpoint,
        hold("DescribeChangeSet", 30000),
        "cloudformation:DescribeChangeSet",
        &["promote", "acme"],
    );
    assert_ne!(run.code, 0, "{run:?}");
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    assert!(!log.contains("ExecuteChangeSet"), "{log}");
    let started = std::time::Instant::now();
    let ok = f.run(&["promote", "acme"]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(120), "took {:?}", started.elapsed());
    assert_eq!(f.workload("acme", "production").await.unwrap().2, f.artifact("acme", &d1).await);

    // A promotion and a rollback stopped while ExecuteChangeSet is in flight (held 3 s): the
    // change is made, and recorded as made, with its intent.
    let d2 = f.release(6);
    let (run, _, _) = f.ws.signalled_during(
        &f.emu.endpoint,
        hold("ExecuteChangeSet", 3000),
        "cloudformation:ExecuteChangeSet",
        &["promote", "acme"],
    );
    f.settled("acme", "production").await;
    assert_eq!(f.workload("acme", "production").await.unwrap().2, f.artifact("acme", &d2).await, "{run:?}");
    let after = f.run(&["promote", "acme"]);
    if common::stack_operations_finish_at_once() {
        // The stopped run saw the stack finished and recorded the outcome itself.
        assert!(
            after.stdout.contains("already runs this release") && !after.stdout.contains("LEDGER MISMATCH"),
            "{run:?}\n{after:?}"
        );
    } else {
        // As on AWS, the stack was still updating when the stopped run looked: it left the intent
        // open, and this run records the outcome from the production stack, saying why.
        assert!(run.stdout.contains("is recorded by the next `tenantry promote`"), "{run:?}");
        assert!(
            after.stdout.contains("already runs this release")
                && after.stdout.contains("recorded promoted")
                && after.stdout.contains("had no outcome record (its run stopped before writing one"),
            "{run:?}\n{after:?}"
        );
    }
    let ledger = f.ledger("acme");
    assert!(
        !ledger.iter().any(|r| r["kind"] == "promotion_failed"),
        "no failure recorded for a change that was made: {ledger:#?}"
    );
    let d3 = f.release(8);
    assert_eq!(f.run(&["promote", "acme"]).code, 0);
    let (run, _, _) = f.ws.signalled_during(
        &f.emu.endpoint,
        hold("ExecuteChangeSet", 3000),
        "cloudformation:ExecuteChangeSet",
        &["rollback", "acme"],
    );
    f.settled("acme", "production").await;
    assert_eq!(
        f.workload("acme", "production").await.unwrap().2,
        f.artifact("acme", &d2).await,
        "rolled back to d2: {run:?}"
    );
    let back = f.run(&["rollback", "acme"]);
    assert_eq!(back.code, 0, "{back:?}");
    assert_eq!(
        f.workload("acme", "production").await.unwrap().2,
        f.artifact("acme", &d1).await,
        "the next rollback goes further back, never forward to d3: {back:?}"
    );
    assert_ne!(d3, d2);
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_reset_on_the_production_change_and_its_records_leave_one_truthful_record_each() {
    let f = onboarded("0s", false).await;
    let d1 = f.release(4);
    // The first ExecuteChangeSet and the first upload of the `executing` and of the `promoted`
    // record lose their connection before they reach the emulator; the SDK sends them again.
    let rules = serde_json::json!([
        {"service": "cloudformation", "action": "ExecuteChangeSet", "fault": "reset", "times": 1},
        {"service": "s3", "contains": "\"kind\": \"executing\"", "fault": "reset", "times": 1},
        {"service": "s3", "contains": "\"kind\": \"promoted\"", "fault": "reset", "times": 1},
    ]);
    let (run, log) = f.ws.run_through_proxy(&f.emu.endpoint, &rules, 1, &["promote", "acme"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(log.lines().filter(|l| l.starts_with("FAULT reset")).count(), 3, "every reset was injected:\n{log}");
    assert_eq!(f.workload("acme", "production").await.unwrap().2, f.artifact("acme", &d1).await);
    let ledger = f.ledger("acme");
    let of =
        |kind: &str| ledger.iter().filter(|r| r["kind"] == kind && r["release"] == d1.as_str()).collect::<Vec<_>>();
    let (intents, promoted) = (of("executing"), of("promoted"));
    assert_eq!((intents.len(), promoted.len()), (1, 1), "{ledger:#?}");
    assert_eq!(promoted[0]["detail"]["intent"], intents[0]["id"]);
    let history = f.run(&["history", "acme"]);
    assert!(!history.stdout.contains("LEDGER MISMATCH"), "{history:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_promote_killed_before_executing_leaves_an_intent_that_is_reported_and_answered() {
    let f = onboarded("0s", false).await;
    let d1 = f.release(4);
    assert_eq!(f.run(&["promote", "acme"]).code, 0);
    let d2 = f.release(6);
    let (killed, run) = f.run_killed(
        serde_json::json!([{"service": "cloudformation", "action": "ExecuteChangeSet", "fault": "kill", "when": "before"}]),
        &["promote", "acme"],
    );
    assert!(killed, "{run:?}");
    assert_eq!(f.workload("acme", "production").await.unwrap().2, f.artifact("acme", &d1).await, "nothing executed");
    let intent = f
        .ledger("acme")
        .into_iter()
        .find(|r| r["kind"] == "executing" && r["release"] == d2.as_str())
        .expect("the intent");
    let change_set = intent["detail"]["change_set"].as_str().unwrap().to_string();
    // Reported by the readers, written by none of them.
    for args in [["converged", "acme"], ["history", "acme"]] {
        let r = f.run(&args);
        assert!(r.stdout.contains("LEDGER MISMATCH") && r.stdout.contains("without an outcome"), "{r:?}");
    }
    // The next promotion answers it (not carried out), removes its change set, and promotes.
    let next = f.run(&["promote", "acme"]);
    assert_eq!(next.code, 0, "{next:?}");
    assert!(next.stdout.contains("ledger: recorded promotion_failed"), "{next:?}");
    let failed = f.ledger("acme").into_iter().find(|r| r["kind"] == "promotion_failed").expect("recorded");
    assert_eq!(failed["detail"]["intent"], intent["id"]);
    let cfn = f.aws.member_cfn(&f.account("acme", "production").await).await;
    let sets = cfn.list_change_sets().stack_name(STACK).send().await.unwrap();
    assert!(
        !sets.summaries().iter().any(|c| c.change_set_name() == Some(change_set.as_str())),
        "the unexecuted change set is gone"
    );
    assert_eq!(f.workload("acme", "production").await.unwrap().2, f.artifact("acme", &d2).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn production_put_back_outside_tenantry_is_recorded_as_such_and_never_makes_a_rollback_go_forward() {
    let f = onboarded("0s", false).await;
    let a = f.release(4);
    assert_eq!(f.run(&["promote", "acme"]).code, 0);
    f.release(6);
    assert_eq!(f.run(&["promote", "acme"]).code, 0);
    let c = f.release(8);
    assert_eq!(f.run(&["promote", "acme"]).code, 0);
    // Someone puts production back on A's template (a stored release) outside tenantry.
    let cfn = f.aws.member_cfn(&f.account("acme", "production").await).await;
    let stack = cfn.describe_stacks().stack_name(STACK).send().await.unwrap();
    let params: Vec<aws_sdk_cloudformation::types::Parameter> = stack.stacks()[0]
        .parameters()
        .iter()
        .map(|p| {
            aws_sdk_cloudformation::types::Parameter::builder()
                .parameter_key(p.parameter_key().unwrap())
                .use_previous_value(true)
                .build()
        })
        .collect();
    cfn.update_stack()
        .stack_name(STACK)
        .template_body(f.artifact("acme", &a).await)
        .set_parameters(Some(params))
        .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityNamedIam)
        .send()
        .await
        .unwrap();
    f.settled("acme", "production").await;
    assert_eq!(f.workload("acme", "production").await.unwrap().2, f.artifact("acme", &a).await);
    // Production went back to A: recorded as a rollback to A, so there is nothing earlier to go
    // back to (never forward to B).
    let back = f.run(&["rollback", "acme"]);
    assert_eq!(back.code, 2, "{back:?}");
    assert!(back.stdout.contains("LEDGER MISMATCH") && back.stdout.contains("no earlier promoted release"), "{back:?}");
    assert_eq!(f.workload("acme", "production").await.unwrap().2, f.artifact("acme", &a).await, "nothing executed");
    // Promoting C over a change made outside tenantry is not routine: it needs approval.
    let again = f.run(&["promote", "acme"]);
    assert_eq!(again.code, 2, "{again:?}");
    assert!(
        again.stdout.contains("WAITING FOR APPROVAL")
            && again.stdout.contains("without a record of tenantry executing it"),
        "{again:?}"
    );
    assert_eq!(f.run(&["promote", "acme", "--approve"]).code, 0);
    assert_eq!(f.workload("acme", "production").await.unwrap().2, f.artifact("acme", &c).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_promotion_whose_lease_renewal_hangs_executes_nothing() {
    let f = onboarded("0s", false).await;
    let settings = f.ws.read("tenantry.toml");
    assert!(settings.contains("lease_ttl_seconds = 900"));
    f.ws.write("tenantry.toml", &settings.replace("lease_ttl_seconds = 900", "lease_ttl_seconds = 30"));
    let d1 = f.release(4);
    // Every lease renewal is held 35 s (renewals go every 10 s; another process may take the
    // lease 30 s after the last write the bucket saw), and the production change set takes 25 s
    // to be created: by then the lease cannot be trusted.
    let rules = serde_json::json!([
        {"service": "s3", "contains": "expires_at", "nth": [2, 3, 4, 5, 6], "fault": "latency", "ms": 35000},
        {"service": "cloudformation", "action": "CreateChangeSet", "fault": "latency", "ms": 25000},
    ]);
    let (run, log) = f.ws.run_through_proxy(&f.emu.endpoint, &rules, 1, &["promote", "acme"]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("last renewed"), "{run:?}");
    assert!(!log.contains("cloudformation:ExecuteChangeSet"), "nothing executed without the lease:\n{log}");
    assert!(f.workload("acme", "production").await.is_none());
    let failed = f
        .ledger("acme")
        .into_iter()
        .find(|r| r["kind"] == "promotion_failed" && r["release"] == d1.as_str())
        .expect("the intent is answered");
    assert_eq!(failed["detail"]["note"], "not executed");
}

/// Puts `body` at `key` in the state bucket, as anyone with write access to it could.
async fn put_state_object(f: &Fixture, key: &str, body: Vec<u8>) {
    f.aws.s3.put_object().bucket(Aws::state_bucket(&f.emu)).key(key).body(body.into()).send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn artifacts_and_ledger_records_copied_from_another_tenant_are_refused_or_ignored() {
    let f = onboarded("0s", true).await;
    let acme = f.stage("acme");
    let globex = f.stage("globex");
    let bucket = Aws::state_bucket(&f.emu);

    // Globex's artifact copied under acme's key is refused, and said to be globex's.
    let theirs = f.aws.state_object(&bucket, &format!("artifacts/globex/{globex}.json")).await.unwrap();
    put_state_object(&f, &format!("artifacts/acme/{globex}.json"), serde_json::to_vec(&theirs).unwrap()).await;
    let run = f.run(&["evidence", "acme", &globex, "--check", "tests", "--result", "pass"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("is a release of tenant globex"), "{run:?}");

    // A key that extends acme's digest does not make the full digest ambiguous.
    put_state_object(&f, &format!("artifacts/acme/{acme}00.json"), b"{}".to_vec()).await;
    let run = f.run(&["evidence", "acme", &acme, "--check", "tests", "--result", "pass"]);
    assert_eq!(run.code, 0, "{run:?}");

    // A record naming globex under acme's ledger is not acme's: history leaves it out.
    let mut forged = f.ledger("globex").into_iter().find(|r| r["kind"] == "staged").unwrap();
    forged["kind"] = "promoted".into();
    forged.as_object_mut().unwrap().remove("stored_at");
    let key = format!("ledger/acme/{}-promoted-forged000001.json", forged["at"].as_str().unwrap());
    put_state_object(&f, &key, serde_json::to_vec(&forged).unwrap()).await;
    let records = f.ledger("acme");
    assert!(records.iter().all(|r| r["tenant"] == "acme"), "{records:#?}");
    assert!(records.iter().all(|r| r["release"] != globex.as_str()), "{records:#?}");
}
