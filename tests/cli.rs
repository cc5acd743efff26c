//! The command line's own edges, against a real emulator where AWS is involved: a closed pipe,
//! usage errors and their exit code, a tenant named twice, editor files in `tenants/`, JSON errors
//! with `--output json`, and the leases' rules (a far-future expiry, a malformed lease, `stage`
//! under another process's lease).

mod common;

use common::{Aws, Emulator, Workspace};

/// An endpoint nothing listens on: the usage errors below must not even get that far.
const NO_AWS: &str = "http://127.0.0.1:9";

#[test]
fn usage_errors_exit_64_never_2() {
    let ws = Workspace::new();
    for args in [
        &["plan", "--output", "yaml"][..],
        &["plan", "--no-such-flag"],
        &["--shard", "2/2", "plan"],
        &["reconcile", "--interval", "5m"],
        &["reconcile", "--watch", "--interval", "0s"],
        &["promote", "--all", "--wave-size", "0"],
        &["evidence", "acme", "abcdef12", "--check", "tests", "--result", "maybe"],
    ] {
        let run = ws.run(NO_AWS, args);
        assert_eq!(run.code, 64, "{args:?}: {run:?}");
    }
    let help = ws.run(NO_AWS, &["--help"]);
    assert_eq!(help.code, 0, "{help:?}");
}

#[test]
fn editor_files_in_the_tenants_directory_are_not_tenants() {
    let ws = Workspace::new();
    std::os::unix::fs::symlink("user@host.12345:1700000000", ws.path().join("tenants/.#acme.toml")).unwrap();
    ws.write("tenants/.acme.toml", "this is = not [ a tenant");
    let run = ws.run(NO_AWS, &["validate"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("2 tenant(s) valid: acme, globex"), "{run:?}");
}

#[test]
fn a_failing_command_with_json_output_still_prints_json() {
    let ws = Workspace::new();
    ws.write("tenants/acme.toml", &ws.read("tenants/acme.toml").replace("ou = \"Tenants/Production\"", "ou = 7"));
    let run = ws.run(NO_AWS, &["plan", "--output", "json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let doc: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("stdout is JSON ({e}): {run:?}"));
    assert!(doc["error"].as_str().unwrap().contains("error(s) in the input files"), "{doc}");
    assert!(doc["diagnostics"][0].as_str().unwrap().contains("production.ou"), "{doc}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_pipe_and_a_tenant_named_twice() {
    let emu = Emulator::start();
    let ws = Workspace::new();
    let apply = ws.run(&emu.endpoint, &["apply", "acme", "acme", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    assert_eq!(
        apply.stdout.matches("tenant acme:").count(),
        2,
        "the plan and the summary name acme once each: {apply:?}"
    );
    let mut child = ws.spawn(&emu.endpoint, &["status"]);
    // The reader goes away at once: every line tenantry writes meets a closed pipe.
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "no panic on a closed pipe: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn leases_a_far_future_expiry_a_malformed_lease_and_stage_under_another_processs_lease() {
    let emu = Emulator::start();
    let ws = Workspace::new();
    assert_eq!(ws.run(&emu.endpoint, &["apply", "--auto-approve"]).code, 0);
    let aws = Aws::new(&emu.endpoint).await;
    let bucket = Aws::state_bucket(&emu);
    let put = |key: &'static str, body: String| {
        let (s3, bucket) = (aws.s3.clone(), bucket.clone());
        async move { s3.put_object().bucket(bucket).key(key).body(body.into_bytes().into()).send().await.unwrap() }
    };
    let config = ws.read("tenantry.toml");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();

    // A lease of another host claiming ten years: honoured for one lease_ttl_seconds (here 30 s, the least allowed)
    // after it was written, then taken over.
    assert!(config.contains("lease_ttl_seconds = 900") && !config.contains("lease_wait_seconds"));
    let leases = |ttl: u64, wait: u64| {
        format!(
            "{}\nlease_wait_seconds = {wait}\n",
            config.replace("lease_ttl_seconds = 900", &format!("lease_ttl_seconds = {ttl}"))
        )
    };
    ws.write("tenantry.toml", &leases(30, 300));
    put(
        "leases/acme.json",
        serde_json::json!({"holder": "elsewhere:1:x", "tenant": "acme", "expires_at": now + 315_360_000}).to_string(),
    )
    .await;
    ws.write(
        "tenants/acme.toml",
        &ws.read("tenants/acme.toml").replace("cost-center = \"cc-1001\"", "cost-center = \"cc-1002\""),
    );
    let started = std::time::Instant::now();
    let apply = ws.run(&emu.endpoint, &["apply", "acme", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(120),
        "not held for its claimed ten years: {:?}",
        started.elapsed()
    );

    // A malformed lease names its key.
    put("leases/acme.json", "not a lease".into()).await;
    ws.write(
        "tenants/acme.toml",
        &ws.read("tenants/acme.toml").replace("cost-center = \"cc-1002\"", "cost-center = \"cc-1003\""),
    );
    let run = ws.run(&emu.endpoint, &["apply", "acme", "--auto-approve"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        format!("{}{}", run.stdout, run.stderr)
            .contains(&format!("s3://{bucket}/leases/acme.json is not a tenantry lease")),
        "{run:?}"
    );

    // `stage` waits for another process's lease like apply does, and gives up after the wait.
    ws.write("tenantry.toml", &leases(600, 2));
    put(
        "leases/acme.json",
        serde_json::json!({"holder": "elsewhere:1:x", "tenant": "acme", "expires_at": now + 600}).to_string(),
    )
    .await;
    let stage = ws.run(&emu.endpoint, &["stage", "acme"]);
    assert_eq!(stage.code, 1, "{stage:?}");
    assert!(stage.stderr.contains("is being worked on by elsewhere:1:x"), "{stage:?}");
    let history = ws.run(&emu.endpoint, &["history", "acme"]);
    assert!(!history.stdout.contains("staged"), "nothing was staged: {history:?}");
}

/// Starts `tenantry ARGS` through a logging proxy that holds every `action` request `ms`
/// milliseconds, sends SIGTERM once `after` has passed, and returns the run and the proxy's log.
fn stopped_by_signal(
    emu: &Emulator,
    ws: &Workspace,
    action: &str,
    ms: u64,
    after: std::time::Duration,
    args: &[&str],
) -> (common::Run, String) {
    let log = ws.path().join(format!("signal-{}.log", args[0]));
    let rules = serde_json::json!([{"action": action, "fault": "latency", "ms": ms}]);
    let proxy = common::FaultProxy::start_logged(&emu.endpoint, &rules, Some(&log));
    let child = ws.spawn(&proxy.endpoint, args);
    std::thread::sleep(after);
    let killed = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let run = common::Run::from(child.wait_with_output().unwrap());
    drop(proxy);
    (run, std::fs::read_to_string(&log).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_stop_signal_starts_no_new_account_creation_nor_change_set() {
    let emu = Emulator::start();
    let ws = Workspace::new();
    // apply: with globex onboarded, the signal arrives while the organization is being listed,
    // before anything of acme exists.
    assert_eq!(ws.run(&emu.endpoint, &["apply", "globex", "--auto-approve"]).code, 0);
    let (run, log) = stopped_by_signal(
        &emu,
        &ws,
        "ListAccounts",
        3000,
        std::time::Duration::from_millis(1500),
        &["apply", "--auto-approve"],
    );
    assert_ne!(run.code, 0, "{run:?}");
    assert!(log.lines().any(|l| l.contains("ListAccounts")), "the proxy saw the run: {log}");
    for op in [
        "organizations:CreateAccount",
        "organizations:CreatePolicy",
        "organizations:MoveAccount",
        "cloudformation:CreateStack",
    ] {
        assert!(!log.contains(op), "{op} sent after the stop signal:\n{log}\n{run:?}");
    }
    assert!(run.stderr.contains("stopped by signal before"), "{run:?}");

    // stage: the signal arrives while the staging role is being assumed, before any change set.
    assert_eq!(ws.run(&emu.endpoint, &["apply", "--auto-approve"]).code, 0);
    let (run, log) =
        stopped_by_signal(&emu, &ws, "AssumeRole", 3000, std::time::Duration::from_millis(1500), &["stage", "acme"]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(log.lines().any(|l| l.contains("AssumeRole")), "the proxy saw the run: {log}");
    assert!(
        !log.contains("CreateChangeSet") && !log.contains("ExecuteChangeSet"),
        "a change set after the stop signal:\n{log}"
    );
    // (The role's answer is held back; the stop ends that wait, or the next boundary refuses.)
    assert!(
        run.stderr.contains("stopped by signal before") || run.stderr.contains("stopped by signal while waiting for"),
        "{run:?}"
    );
    let history = ws.run(&emu.endpoint, &["history", "acme"]);
    assert!(!history.stdout.contains("staged"), "{history:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_signal_ends_every_wait_within_a_bounded_time() {
    let emu = Emulator::start();
    let ws = Workspace::new();
    assert_eq!(ws.run(&emu.endpoint, &["apply", "acme", "--auto-approve"]).code, 0);
    // A role that is not assumable yet: tenantry retries AssumeRole for up to
    // assume_role_timeout_seconds (300 s by default).
    let rules = serde_json::json!([{"service": "sts", "action": "AssumeRole", "fault": "error", "status": 403, "code": "AccessDenied"}]);
    let (run, _, took) = ws.signalled_during(&emu.endpoint, rules, "sts:AssumeRole", &["stage", "acme"]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("stopped by signal while waiting for") && run.stderr.contains("assumable"), "{run:?}");
    assert!(took < std::time::Duration::from_secs(5), "the wait for the role ended {took:?} after the signal: {run:?}");
    // A change set that takes long to be ready (each DescribeChangeSet held 30 s): the wait
    // ends, nothing is executed.
    let rules = serde_json::json!([{"service": "cloudformation", "action": "DescribeChangeSet", "fault": "latency", "ms": 30000}]);
    let (run, log, took) =
        ws.signalled_during(&emu.endpoint, rules, "cloudformation:DescribeChangeSet", &["stage", "acme"]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("stopped by signal while waiting for change set"), "{run:?}");
    assert!(
        took < std::time::Duration::from_secs(5),
        "the wait for the change set ended {took:?} after the signal: {run:?}"
    );
    assert!(!log.contains("ExecuteChangeSet"), "nothing executed after the signal:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn suspended_state_bucket_versioning_is_reported_and_enabled_again() {
    if common::emulator_kind() == "moto" {
        // moto answers GetBucketVersioning with a `GetBucketVersioningResponse` root element,
        // which the SDK cannot read, so tenantry cannot see "Suspended" there: not run on moto.
        eprintln!("not run on moto: its GetBucketVersioning answer is not one the AWS SDK can read");
        return;
    }
    let emu = Emulator::start();
    let ws = Workspace::new();
    assert_eq!(ws.run(&emu.endpoint, &["apply", "--auto-approve"]).code, 0);
    let aws = Aws::new(&emu.endpoint).await;
    let bucket = Aws::state_bucket(&emu);
    let suspended = aws_sdk_s3::types::VersioningConfiguration::builder()
        .status(aws_sdk_s3::types::BucketVersioningStatus::Suspended)
        .build();
    aws.s3.put_bucket_versioning().bucket(&bucket).versioning_configuration(suspended).send().await.unwrap();
    ws.write(
        "tenants/acme.toml",
        &ws.read("tenants/acme.toml").replace("cost-center = \"cc-1001\"", "cost-center = \"cc-1002\""),
    );
    let apply = ws.run(&emu.endpoint, &["apply", "acme", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(apply.stderr.contains("was suspended; enabled again"), "{apply:?}");
    let v = aws.s3.get_bucket_versioning().bucket(&bucket).send().await.unwrap();
    assert_eq!(v.status, Some(aws_sdk_s3::types::BucketVersioningStatus::Enabled));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_conditional_write_over_an_object_deleted_since_it_was_read_is_a_write_conflict() {
    // A lease released by its holder between another process's read and its takeover: S3 answers
    // the `If-Match` write with 404 NoSuchKey, which is a lost race like a 412, not an error.
    let emu = Emulator::start();
    let ws = Workspace::new();
    assert_eq!(ws.run(&emu.endpoint, &["apply", "acme"]).code, 0);
    let aws = Aws::new(&emu.endpoint).await;
    let bucket = Aws::state_bucket(&emu);
    let store = tenantry::state::StateStore::new(aws.s3.clone(), bucket.clone());
    let mut tracked = store.read("acme").await.unwrap();
    assert!(tracked.etag.is_some(), "acme has a record");
    aws.s3.delete_object().bucket(&bucket).key("tenants/acme.json").send().await.unwrap();
    let err = store.write(&mut tracked).await.expect_err("the object changed since it was read");
    assert!(matches!(err, tenantry::state::Error::WriteConflict(_)), "{err:#}");
}
