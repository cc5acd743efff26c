//! Crash safety and concurrent controllers.
//!
//! - tenantry is killed with SIGKILL at seeded points of an onboarding — by
//!   `localstack/faultproxy.py`, on the Kth request of an operation (the Nth request of a
//!   calibration onboarding, counted by operation so that the point stays in the same phase as
//!   the organization grows), either before the request reaches the emulator or after it was
//!   carried out with its answer lost — and re-run: every
//!   run converges, with no duplicate account and a state record that always parses. One point
//!   is always the first `CreateAccount` carried out with its answer lost.
//!   `TENANTRY_CRASH_POINTS` (default 8; 30 for the full set) and `TENANTRY_CRASH_SEED` choose
//!   the points.
//! - Three processes apply every tenant at the same moment: one account per tenant environment,
//!   and the state bucket's versions of each record carry the serials 1, 2, 3, ... (every write
//!   built on the one before; none lost).

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use common::{Aws, Emulator, FaultProxy, Workspace};

const ENVS: [&str; 2] = ["production", "staging"];

/// The `service:Operation` of each request line of a faultproxy log, in order.
fn operations(log: &str) -> Vec<String> {
    requests(log).into_iter().map(|(service, action)| format!("{service}:{action}")).collect()
}

/// The service and operation of each request line of a faultproxy log, in order, as its rules
/// name them (S3: `<METHOD> <bucket>`).
fn requests(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter(|l| !l.starts_with("FAULT"))
        .filter_map(|l| {
            let mut fields = l.split_whitespace().skip(2);
            let (service, action) = fields.next()?.split_once(':')?;
            let action = match service {
                "s3" => format!("{action} {}", fields.next().unwrap_or("")),
                _ => action.to_string(),
            };
            Some((service.to_string(), action))
        })
        .collect()
}

/// Asserts one account per environment of `tenant`, found by email and by tag, and that the
/// state record names exactly those accounts.
async fn assert_onboarded_once(aws: &Aws, bucket: &str, tenant: &str, context: &str) {
    let by_tag = aws.tenant_accounts().await;
    let record = aws
        .state_object(bucket, &format!("tenants/{tenant}.json"))
        .await
        .unwrap_or_else(|| panic!("{context}: state record"));
    for env in ENVS {
        let by_email = aws.accounts_with_email(&format!("aws+{tenant}-{env}@example.com")).await;
        assert_eq!(
            by_email.len(),
            1,
            "{context}: {tenant}/{env}: exactly one account with its email, found {by_email:?}"
        );
        let tagged = by_tag.get(&(tenant.to_string(), env.to_string())).cloned().unwrap_or_default();
        assert_eq!(tagged, by_email, "{context}: {tenant}/{env}: the account carries the tenant's tags");
        assert_eq!(
            record["accounts"][env]["account_id"].as_str(),
            Some(by_email[0].as_str()),
            "{context}: {tenant}/{env}: state matches the organization"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_seeded_points_of_onboarding_always_resumes_to_one_account_per_environment() {
    let points: usize = std::env::var("TENANTRY_CRASH_POINTS").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    let seed: u64 = std::env::var("TENANTRY_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20261126);
    let emu = Emulator::start();
    let ws = Workspace::new();
    let aws = Aws::new(&emu.endpoint).await;
    let bucket = Aws::state_bucket(&emu);

    // Calibration: the first onboarding creates the state bucket and the OUs; the second is what
    // every crashed run does, and its request count bounds the kill points.
    ws.copy_of_acme("calib1");
    assert_eq!(ws.run(&emu.endpoint, &["apply", "calib1", "--auto-approve"]).code, 0);
    ws.copy_of_acme("calib2");
    let calib_log = ws.path().join("calib.log");
    let proxy = FaultProxy::start_logged(&emu.endpoint, &serde_json::json!([]), Some(&calib_log));
    let run = ws.run(&proxy.endpoint, &["apply", "calib2", "--auto-approve"]);
    assert_eq!(run.code, 0, "{run:?}");
    drop(proxy);
    let calibration = operations(&std::fs::read_to_string(&calib_log).unwrap());
    let calibrated = requests(&std::fs::read_to_string(&calib_log).unwrap());
    // The last requests (waiter polls, the final state write, the lease release) vary from run
    // to run; points are drawn from the first 90 %.
    eprintln!("crash: one onboarding, request by request: {}", calibration.join(" "));
    let reach = calibration.len() * 9 / 10;
    // Always: the first CreateAccount answered but its answer lost (the SDK or the next run might
    // send it again), then seeded points.
    let create =
        1 + calibration.iter().position(|op| op == "organizations:CreateAccount").expect("onboarding creates accounts");
    let mut candidates: Vec<(usize, &str)> =
        (1..=reach).flat_map(|n| [(n, "before"), (n, "after")]).filter(|c| *c != (create, "after")).collect();
    let mut rng = fastrand::Rng::with_seed(seed);
    rng.shuffle(&mut candidates);
    candidates.truncate(points.saturating_sub(1));
    candidates.push((create, "after"));
    candidates.sort();

    let mut killed_at = Vec::new();
    for (i, (nth, when)) in candidates.iter().enumerate() {
        let tenant = format!("crash{i:02}");
        ws.copy_of_acme(&tenant);
        let pid_file = ws.path().join(format!("{tenant}.pid"));
        let log = ws.path().join(format!("{tenant}.log"));
        // The same operation's same occurrence as in the calibration: every tenant before this
        // one adds accounts that the organization-wide listings read, so "the Nth request"
        // would drift into them.
        let (service, action) = &calibrated[nth - 1];
        let kth = calibrated[..*nth].iter().filter(|r| *r == &calibrated[nth - 1]).count();
        let rules = serde_json::json!([{"service": service, "action": action, "nth": [kth], "fault": "kill", "when": when, "pid_file": pid_file}]);
        let proxy = FaultProxy::start_logged(&emu.endpoint, &rules, Some(&log));
        let child = ws
            .command(&proxy.endpoint)
            .args(["apply", &tenant, "--auto-approve"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut f = std::fs::File::create(&pid_file).unwrap();
        write!(f, "{}", child.id()).unwrap();
        drop(f);
        let status = child.wait_with_output().unwrap().status;
        drop(proxy);
        let op = format!("{service}:{action} #{kth}");
        let context = format!("kill {when} {op} (request {nth} of the calibration) of {tenant}");
        if status.signal() == Some(9) {
            killed_at.push(format!("{nth} {when} {op}"));
        } else {
            assert!(status.success(), "{context}: a run that was not killed succeeds: {status:?}");
        }

        // Never corrupt: whatever the kill left is a complete, valid record (or none).
        let raw = aws.s3.get_object().bucket(&bucket).key(format!("tenants/{tenant}.json")).send().await;
        if let Ok(out) = raw {
            let bytes = out.body.collect().await.unwrap().into_bytes();
            let record: tenantry::state::TenantRecord = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{context}: state record does not parse: {e}"));
            assert_eq!(record.tenant, tenant, "{context}");
        }
        for env in ENVS {
            let n = aws.accounts_with_email(&format!("aws+{tenant}-{env}@example.com")).await.len();
            assert!(n <= 1, "{context}: {env}: at most one account after the kill, found {n}");
        }

        let resumed = ws.run(&emu.endpoint, &["apply", &tenant, "--auto-approve"]);
        assert_eq!(resumed.code, 0, "{context}: the next run converges: {resumed:?}");
        assert_onboarded_once(&aws, &bucket, &tenant, &context).await;
        let plan = ws.run(&emu.endpoint, &["plan", &tenant]);
        assert_eq!(plan.code, 0, "{context}: nothing left to do: {plan:?}");
    }
    eprintln!(
        "crash: seed {seed}: {} of {} points killed tenantry (onboarding = {} requests); each resumed in one run:\n  {}",
        killed_at.len(),
        candidates.len(),
        calibration.len(),
        killed_at.join("\n  ")
    );
    assert!(killed_at.len() + 1 >= candidates.len(), "the kill points were reached: {killed_at:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn three_processes_applying_every_tenant_at_once_lose_no_state_write_and_duplicate_nothing() {
    let emu = Emulator::start();
    let ws = Workspace::new();
    std::fs::remove_file(ws.path().join("tenants/globex.toml")).unwrap();
    let mut tenants = vec!["acme".to_string()];
    for id in ["tenant01", "tenant02", "tenant03"] {
        ws.copy_of_acme(id);
        tenants.push(id.to_string());
    }
    let children: Vec<_> = (0..3)
        .map(|_| {
            ws.command(&emu.endpoint)
                .args(["apply", "--auto-approve"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let runs: Vec<common::Run> = children.into_iter().map(|c| c.wait_with_output().unwrap().into()).collect();
    for run in &runs {
        assert_eq!(run.code, 0, "every process ends well: {run:?}");
    }
    let waited = runs.iter().filter(|r| r.stderr.contains("waiting for lease")).count();
    assert!(waited >= 1, "the processes overlapped: at least one waited for a lease another held");

    let aws = Aws::new(&emu.endpoint).await;
    let bucket = Aws::state_bucket(&emu);
    let mut versions_per_tenant = BTreeMap::new();
    for t in &tenants {
        assert_onboarded_once(&aws, &bucket, t, "three processes").await;
        let versions = aws.state_versions(&bucket, &format!("tenants/{t}.json")).await;
        let mut by_serial: BTreeMap<u64, &serde_json::Value> = BTreeMap::new();
        for v in &versions {
            let serial = v["serial"].as_u64().unwrap_or_else(|| panic!("{t}: a version without serial: {v}"));
            assert!(
                by_serial.insert(serial, v).is_none(),
                "{t}: two writes built on the same version (serial {serial}): a lost write"
            );
        }
        let serials: Vec<u64> = by_serial.keys().copied().collect();
        assert_eq!(
            serials,
            (1..=versions.len() as u64).collect::<Vec<_>>(),
            "{t}: every version builds on the previous one"
        );
        // What one write learned (an account id) is never dropped by a later one.
        for (serial, v) in &by_serial {
            if let Some(next) = by_serial.get(&(serial + 1)) {
                for env in ENVS {
                    if let Some(id) = v["accounts"][env]["account_id"].as_str() {
                        assert_eq!(
                            next["accounts"][env]["account_id"].as_str(),
                            Some(id),
                            "{t}/{env}: serial {} keeps the account of serial {serial}",
                            serial + 1
                        );
                    }
                }
            }
        }
        versions_per_tenant.insert(t.clone(), versions.len());
    }
    eprintln!("three processes: {waited} of 3 waited for a lease; state versions per tenant: {versions_per_tenant:?}");
    let plan = ws.run(&emu.endpoint, &["plan"]);
    assert_eq!(plan.code, 0, "{plan:?}");
}
