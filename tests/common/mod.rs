//! Test harness: starts a real AWS emulator process per test (moto by default, ministack with
//! `TENANTRY_EMULATOR=ministack`, LocalStack with moto for Organizations with
//! `TENANTRY_EMULATOR=localstack`) on a free loopback port, runs the real `tenantry` binary against
//! it in a scratch copy of the repository's example files, and reads the results back with the AWS
//! SDK directly. No mocks.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;

/// Root of the repository (where Cargo.toml is).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Which emulator the suite runs against.
pub fn emulator_kind() -> String {
    std::env::var("TENANTRY_EMULATOR").unwrap_or_else(|_| "moto".into())
}

/// A running emulator, its processes killed on drop.
pub struct Emulator {
    child: Child,
    /// moto serving Organizations beside LocalStack (LocalStack's community edition has none).
    organizations: Option<Child>,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// `moto`, `ministack` or `localstack`.
    pub kind: String,
}

/// Endpoint → its Organizations endpoint, for emulators that serve Organizations elsewhere: read
/// by [`Workspace::command`] (which passes `AWS_ENDPOINT_URL_ORGANIZATIONS`), [`Aws::new`] and
/// [`FaultProxy`] (which routes Organizations requests there).
static ORGANIZATIONS_ENDPOINTS: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

/// The Organizations endpoint of `endpoint`, when an emulator serves Organizations elsewhere.
pub fn organizations_endpoint(endpoint: &str) -> Option<String> {
    ORGANIZATIONS_ENDPOINTS.lock().unwrap().get(endpoint).cloned()
}

/// A child process of an emulator: `program` with `args` and `env`, logging to
/// `tenantry-emulator-<port>.log` in the temp directory, in a process group of its own (so that
/// whatever it starts is stopped with it).
fn spawn_emulator(program: &Path, args: &[&str], env: &[(&str, String)], port: u16) -> Child {
    use std::os::unix::process::CommandExt;
    let log = std::fs::File::create(std::env::temp_dir().join(format!("tenantry-emulator-{port}.log"))).unwrap();
    let mut cmd = Command::new(program);
    cmd.args(args).env_remove("MOTO_ACCOUNT_ID").process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(log.try_clone().unwrap()).stderr(log).stdin(Stdio::null()).spawn().expect("start emulator")
}

/// Starts the installed moto on a free port as account `account` (`MOTO_ACCOUNT_ID`) and waits
/// until it answers; returns it and its endpoint.
fn start_moto(account: &str) -> (Child, String) {
    let port = free_port();
    let mut child = spawn_emulator(
        &repo().join("localstack/.venv-moto/bin/moto_server"),
        &["-H", "127.0.0.1", "-p", &port.to_string()],
        &[("MOTO_ACCOUNT_ID", account.to_string())],
        port,
    );
    assert!(wait_until_answering(&mut child, port), "moto as {account} did not start");
    (child, format!("http://127.0.0.1:{port}"))
}

/// Stops an emulator process and its process group.
fn stop_emulator(child: &mut Child) {
    // `--` before the negative id: procps-ng's kill reads `kill -KILL -123` as `kill(-1, SIGKILL)`,
    // which is every process there is.
    let _ = Command::new("kill").args(["-s", "KILL", "--", &format!("-{}", child.id())]).status();
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits up to 60 s for `port` to answer HTTP; false when `child` exited first or time ran out.
fn wait_until_answering(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if answers(port) {
            return true;
        }
        if let Ok(Some(_)) = child.try_wait() {
            return false; // port taken meanwhile
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

impl Emulator {
    /// Installs (once) and starts the selected emulator on a free port; waits until it answers.
    pub fn start() -> Emulator {
        let kind = emulator_kind();
        static INSTALLED: OnceLock<()> = OnceLock::new();
        INSTALLED.get_or_init(|| {
            let st = Command::new("bash")
                .arg(repo().join("localstack/install.sh"))
                .arg(&kind)
                .status()
                .expect("run localstack/install.sh");
            assert!(st.success(), "localstack/install.sh {kind} failed");
        });
        let venv = |name: &str| repo().join(format!("localstack/.venv-{name}/bin"));
        for _attempt in 0..5 {
            let port = free_port();
            let p = port.to_string();
            let mut child = match kind.as_str() {
                "moto" => spawn_emulator(&venv("moto").join("moto_server"), &["-H", "127.0.0.1", "-p", &p], &[], port),
                "ministack" => spawn_emulator(
                    &venv("ministack").join("ministack"),
                    &[],
                    &[("GATEWAY_PORT", p.clone()), ("BIND_HOST", "127.0.0.1".into())],
                    port,
                ),
                // As localstack/start.sh does: LocalStack on the host, data in a scratch directory.
                "localstack" => {
                    let root = std::env::temp_dir().join(format!("tenantry-localstack-{port}"));
                    let _ = std::fs::remove_dir_all(&root);
                    std::fs::create_dir_all(&root).unwrap();
                    spawn_emulator(
                        &venv("localstack").join("python"),
                        &["-m", "localstack.runtime.main"],
                        &[
                            ("GATEWAY_LISTEN", format!("127.0.0.1:{port}")),
                            ("OVERRIDE_IN_DOCKER", "0".into()),
                            ("FILESYSTEM_ROOT", root.display().to_string()),
                            ("DISABLE_EVENTS", "1".into()),
                            ("SKIP_SSL_CERT_DOWNLOAD", "1".into()),
                        ],
                        port,
                    )
                }
                other => panic!("unknown TENANTRY_EMULATOR={other} (moto|ministack|localstack)"),
            };
            if !wait_until_answering(&mut child, port) {
                stop_emulator(&mut child);
                continue;
            }
            let endpoint = format!("http://127.0.0.1:{port}");
            let mut emu = Emulator { child, organizations: None, endpoint, kind };
            if emu.kind == "localstack" {
                // moto for Organizations, as the account LocalStack uses for the access key `test`.
                let (moto, org_endpoint) = start_moto("000000000000");
                ORGANIZATIONS_ENDPOINTS.lock().unwrap().insert(emu.endpoint.clone(), org_endpoint);
                emu.organizations = Some(moto);
            }
            return emu;
        }
        panic!("emulator {kind} did not start");
    }

    /// A moto of its own (whatever the suite's emulator), whose default account is `account`:
    /// for a test that needs an Organizations endpoint that disagrees with the emulator's STS.
    pub fn start_moto_as(account: &str) -> Emulator {
        let st = Command::new("bash").arg(repo().join("localstack/install.sh")).arg("moto").status().unwrap();
        assert!(st.success(), "localstack/install.sh moto failed");
        let (child, endpoint) = start_moto(account);
        Emulator { child, organizations: None, endpoint, kind: "moto".into() }
    }

    /// The management account id the emulator uses.
    pub fn management_account_id(&self) -> &'static str {
        if self.kind == "moto" {
            "123456789012"
        } else {
            "000000000000"
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        ORGANIZATIONS_ENDPOINTS.lock().unwrap().remove(&self.endpoint);
        stop_emulator(&mut self.child);
        if let Some(moto) = &mut self.organizations {
            stop_emulator(moto);
        }
    }
}

/// Whether the emulator gives a stack the `Tags` of an `UpdateStack`. LocalStack 4.13 does not:
/// a stack keeps the tags it was created with (a change set's tags are applied), so tenantry's
/// version tag stays behind after apply updates a stack, and the next plan shows the update again.
pub fn update_stack_applies_tags() -> bool {
    emulator_kind() != "localstack"
}

/// Whether a stack operation is finished when the request that started it is answered (moto,
/// ministack), rather than going on afterwards as on AWS (LocalStack, 0.07-2 s).
pub fn stack_operations_finish_at_once() -> bool {
    emulator_kind() != "localstack"
}

/// Which emulator serves Organizations in this suite: `moto` (also beside LocalStack) or
/// `ministack`. Tests of Organizations behaviour one emulator lacks ask this, not the suite's kind.
pub fn organizations_kind() -> &'static str {
    if emulator_kind() == "ministack" {
        "ministack"
    } else {
        "moto"
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 12];
    matches!(s.read(&mut buf), Ok(n) if n >= 4 && &buf[..4] == b"HTTP")
}

/// The checks the example tenants' promotion policy requires before production.
pub const CHECKS: [&str; 3] = ["tests", "review", "security-audit"];

/// Asserts that `output` (a command's stdout and stderr) shows no credential: none of `secrets`
/// in clear, no STS answer or signed header, and every credential field of the SDK's debug output
/// (`secret_access_key`, `session_token`) redacted. `what` names the command in the panic.
/// Returns how many redacted credential fields it saw.
pub fn assert_no_credentials(output: &str, secrets: &[&str], what: &str) -> usize {
    for secret in secrets {
        assert!(!output.contains(secret), "`{what}` printed a secret ({} characters)", secret.len());
    }
    for needle in ["<SecretAccessKey>", "<SessionToken>", "x-amz-security-token", "SecretAccessKey\":"] {
        assert!(!output.contains(needle), "`{what}` printed `{needle}`");
    }
    static FIELD: OnceLock<regex::Regex> = OnceLock::new();
    let field =
        FIELD.get_or_init(|| regex::Regex::new(r#"(secret_access_key|session_token):\s*\\?"([^"\\]*)"#).unwrap());
    let mut redacted = 0;
    for m in field.captures_iter(output) {
        assert!(m[2].starts_with("** redacted"), "`{what}` printed a credential field unredacted: {}", &m[0]);
        redacted += 1;
    }
    redacted
}

/// A scratch copy of the repository's tenantry.toml, tenants/, policies/ and blueprints/.
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    /// Copies the example files.
    pub fn new() -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["tenants", "policies", "blueprints"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
            for e in std::fs::read_dir(repo().join(sub)).unwrap() {
                let p = e.unwrap().path();
                std::fs::copy(&p, dir.path().join(sub).join(p.file_name().unwrap())).unwrap();
            }
        }
        std::fs::copy(repo().join("tenantry.toml"), dir.path().join("tenantry.toml")).unwrap();
        Workspace { dir }
    }

    /// The workspace directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file relative to the workspace.
    pub fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.path().join(rel), text).unwrap();
    }

    /// Writes `tenants/<id>.toml`: acme's file under another id, name and emails.
    pub fn copy_of_acme(&self, id: &str) {
        let text = self
            .read("tenants/acme.toml")
            .replace("id = \"acme\"", &format!("id = \"{id}\""))
            .replace("aws+acme-", &format!("aws+{id}-"))
            .replace("Acme Corp", &format!("Tenant {id}"));
        self.write(&format!("tenants/{id}.toml"), &text);
    }

    /// Writes `tenants/<id>.toml`: globex's file (which names its accounts) under another id,
    /// account names and emails.
    pub fn copy_of_globex(&self, id: &str) {
        let text = self
            .read("tenants/globex.toml")
            .replace("id = \"globex\"", &format!("id = \"{id}\""))
            .replace("globex-prod@", &format!("{id}-prod@"))
            .replace("globex-staging@", &format!("{id}-staging@"))
            .replace("Globex Production", &format!("{id} Production"))
            .replace("Globex Staging", &format!("{id} Staging"));
        self.write(&format!("tenants/{id}.toml"), &text);
    }

    /// Reads a file relative to the workspace.
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap()
    }

    /// A `tenantry` command in this workspace, pointed at `endpoint` with test credentials.
    pub fn command(&self, endpoint: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tenantry"));
        c.current_dir(self.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("TENANTRY_LOG", "tenantry=info,warn")
            .stdin(Stdio::null());
        if let Some(org) = organizations_endpoint(endpoint) {
            c.env("AWS_ENDPOINT_URL_ORGANIZATIONS", org);
        }
        c
    }

    /// Starts `tenantry ARGS` with its stdout and stderr piped, for a test that signals it,
    /// reads it as it runs, or runs another process beside it.
    pub fn spawn(&self, endpoint: &str, args: &[&str]) -> std::process::Child {
        self.command(endpoint).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start tenantry")
    }

    /// Runs `tenantry ARGS` to completion.
    pub fn run(&self, endpoint: &str, args: &[&str]) -> Run {
        let out = self.command(endpoint).args(args).output().expect("run tenantry");
        Run::from(out)
    }

    /// Runs `tenantry ARGS` to completion through a [`FaultProxy`] in front of `upstream`, with
    /// `rules` seeded by `seed`. Returns the run and the proxy's log (one line per request, one
    /// starting with `FAULT` per injected fault), read after the proxy has stopped; empty when
    /// the command sent no request (callers that expect requests assert that the log has lines).
    pub fn run_through_proxy(
        &self,
        upstream: &str,
        rules: &serde_json::Value,
        seed: u64,
        args: &[&str],
    ) -> (Run, String) {
        static LOGS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = LOGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = self.path().join(format!("proxy-{n}.log"));
        let proxy = FaultProxy::start_seeded(upstream, rules, Some(&log), seed);
        let run = Run::from(self.command(&proxy.endpoint).args(args).output().expect("run tenantry"));
        drop(proxy);
        (run, std::fs::read_to_string(&log).unwrap_or_default())
    }

    /// Starts `tenantry ARGS` through a logging proxy with `rules`, sends SIGTERM once the proxy log
    /// shows `signal_at`, and returns the run, the proxy log and how long the run took after the
    /// signal.
    pub fn signalled_during(
        &self,
        upstream: &str,
        rules: serde_json::Value,
        signal_at: &str,
        args: &[&str],
    ) -> (Run, String, std::time::Duration) {
        let log = self.path().join(format!(
            "wait-{}-{}.log",
            args[0],
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        let proxy = FaultProxy::start_logged(upstream, &rules, Some(&log));
        let child = self.spawn(&proxy.endpoint, args);
        let started = std::time::Instant::now();
        while !std::fs::read_to_string(&log).unwrap_or_default().contains(signal_at) {
            assert!(started.elapsed() < std::time::Duration::from_secs(120), "{signal_at} never sent");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert!(std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success());
        let signalled = std::time::Instant::now();
        let run = Run::from(child.wait_with_output().unwrap());
        let took = signalled.elapsed();
        drop(proxy);
        (run, std::fs::read_to_string(&log).unwrap_or_default(), took)
    }

    /// `tenantry stage TENANT --output json`, asserted to succeed. Returns the staged release's
    /// digest.
    pub fn stage(&self, endpoint: &str, tenant: &str) -> String {
        let run = self.run(endpoint, &["stage", tenant, "--output", "json"]);
        assert_eq!(run.code, 0, "{run:?}");
        let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        doc[0]["release"].as_str().unwrap().to_string()
    }

    /// `tenantry evidence TENANT DIGEST --check CHECK --result RESULT --url ...`, asserted to
    /// succeed.
    pub fn evidence(&self, endpoint: &str, tenant: &str, digest: &str, check: &str, result: &str) {
        let run = self.run(
            endpoint,
            &[
                "evidence",
                tenant,
                &digest[..12],
                "--check",
                check,
                "--result",
                result,
                "--url",
                "https://ci.example.com/1",
            ],
        );
        assert_eq!(run.code, 0, "{run:?}");
    }

    /// Every check the example tenants' promotion policy requires ([`CHECKS`]), passed.
    pub fn pass_all_checks(&self, endpoint: &str, tenant: &str, digest: &str) {
        for check in CHECKS {
            self.evidence(endpoint, tenant, digest, check, "pass");
        }
    }
}

/// Requests in a proxy log that act in or on `account`: assuming a role in it, or changing it
/// through Organizations (reads such as ListTagsForResource are how the guard looks, and are
/// allowed). Each line cut to 200 characters.
pub fn touches(log: &str, account: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(account))
        .filter(|l| {
            let op = l.split_whitespace().nth(2).unwrap_or("");
            op == "sts:AssumeRole"
                || [
                    "organizations:Tag",
                    "organizations:Untag",
                    "organizations:Move",
                    "organizations:Attach",
                    "organizations:Detach",
                    "organizations:Close",
                    "organizations:Remove",
                ]
                .iter()
                .any(|w| op.starts_with(w))
        })
        .map(|l| l.chars().take(200).collect())
        .collect()
}

/// A finished `tenantry` run.
pub struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into(),
            stderr: String::from_utf8_lossy(&o.stderr).into(),
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}", self.code, self.stdout, self.stderr)
    }
}

/// SDK clients for reading (and, to simulate out-of-band changes, writing) the emulator directly.
pub struct Aws {
    /// SDK config with the management account's test credentials.
    pub sdk: aws_config::SdkConfig,
    /// Organizations.
    pub org: aws_sdk_organizations::Client,
    /// S3 (path style).
    pub s3: aws_sdk_s3::Client,
    /// STS.
    pub sts: aws_sdk_sts::Client,
}

impl Aws {
    /// Clients against `endpoint` as the management account.
    pub async fn new(endpoint: &str) -> Aws {
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .load()
            .await;
        let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
        let mut org = aws_sdk_organizations::config::Builder::from(&sdk);
        if let Some(endpoint) = organizations_endpoint(endpoint) {
            org = org.endpoint_url(endpoint);
        }
        let org = aws_sdk_organizations::Client::from_conf(org.build());
        Aws { org, sts: aws_sdk_sts::Client::new(&sdk), s3, sdk }
    }

    /// The one account tagged for `tenant` and `env`; panics unless there is exactly one.
    pub async fn only_account(&self, tenant: &str, env: &str) -> String {
        let all = self.tenant_accounts().await;
        let ids = all.get(&(tenant.to_string(), env.to_string())).cloned().unwrap_or_default();
        assert_eq!(ids.len(), 1, "{tenant}/{env}: {ids:?}");
        ids[0].clone()
    }

    /// Accounts tagged `tenantry:tenant`, as (tenant, environment) → account ids.
    pub async fn tenant_accounts(&self) -> BTreeMap<(String, String), Vec<String>> {
        let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for a in self.accounts().await {
            let tags = self.tags(&a.0).await;
            if let (Some(t), Some(e)) = (tags.get("tenantry:tenant"), tags.get("tenantry:environment")) {
                out.entry((t.clone(), e.clone())).or_default().push(a.0.clone());
            }
        }
        out
    }

    /// Asserts that `tenant` has exactly one account tagged for each environment (one listing
    /// for both); `what` starts the panic message.
    pub async fn assert_one_account_each(&self, tenant: &str, what: &str) {
        let accounts = self.tenant_accounts().await;
        for env in ["production", "staging"] {
            let ids = accounts.get(&(tenant.to_string(), env.to_string())).cloned().unwrap_or_default();
            assert_eq!(ids.len(), 1, "{what}: {tenant}/{env}: exactly one account, found {ids:?}");
        }
    }

    /// Every account: (id, email, status).
    pub async fn accounts(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        let mut pages = self.org.list_accounts().into_paginator().send();
        while let Some(p) = pages.next().await {
            for a in p.unwrap().accounts.unwrap_or_default() {
                out.push((
                    a.id.unwrap_or_default(),
                    a.email.unwrap_or_default(),
                    a.status.map(|s| s.as_str().to_string()).unwrap_or_default(),
                ));
            }
        }
        out
    }

    /// Accounts whose email equals `email` (case-insensitively).
    pub async fn accounts_with_email(&self, email: &str) -> Vec<String> {
        self.accounts().await.into_iter().filter(|a| a.1.eq_ignore_ascii_case(email)).map(|a| a.0).collect()
    }

    /// Tags of an account.
    pub async fn tags(&self, id: &str) -> BTreeMap<String, String> {
        let out = self.org.list_tags_for_resource().resource_id(id).send().await.unwrap();
        out.tags.unwrap_or_default().into_iter().map(|t| (t.key, t.value)).collect()
    }

    /// The OU path of an account's parent ("" for the root).
    pub async fn ou_path(&self, id: &str) -> String {
        let mut parts = Vec::new();
        let mut child = id.to_string();
        loop {
            let p = self.org.list_parents().child_id(&child).send().await.unwrap();
            let parent = p.parents.unwrap_or_default().remove(0);
            if parent.r#type.as_ref().map(|t| t.as_str()) == Some("ROOT") {
                break;
            }
            let pid = parent.id.unwrap();
            let ou = self.org.describe_organizational_unit().organizational_unit_id(&pid).send().await.unwrap();
            parts.push(ou.organizational_unit.unwrap().name.unwrap());
            child = pid;
        }
        parts.reverse();
        parts.join("/")
    }

    /// Names of the SCPs attached directly to an account.
    pub async fn attached_scps(&self, id: &str) -> Vec<String> {
        let out = self
            .org
            .list_policies_for_target()
            .target_id(id)
            .filter(aws_sdk_organizations::types::PolicyType::ServiceControlPolicy)
            .send()
            .await
            .unwrap();
        let mut v: Vec<String> = out.policies.unwrap_or_default().into_iter().filter_map(|p| p.name).collect();
        v.sort();
        v
    }

    /// Every SCP of the organization whose name starts with `tenantry-`, name → id.
    pub async fn tenantry_scps(&self) -> BTreeMap<String, String> {
        self.scps().await.into_iter().filter(|(name, _)| name.starts_with("tenantry-")).collect()
    }

    /// Every SCP of the organization, name → id.
    pub async fn scps(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut pages = self
            .org
            .list_policies()
            .filter(aws_sdk_organizations::types::PolicyType::ServiceControlPolicy)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for p in page.unwrap().policies.unwrap_or_default() {
                if let (Some(name), Some(id)) = (p.name, p.id) {
                    out.insert(name, id);
                }
            }
        }
        out
    }

    /// Creates the SCP `name` with `content` and `tags` (key, value), as an earlier version of
    /// tenantry or someone else would; returns its id.
    pub async fn create_scp(&self, name: &str, content: &str, tags: &[(&str, &str)]) -> String {
        let tags =
            tags.iter().map(|(k, v)| aws_sdk_organizations::types::Tag::builder().key(*k).value(*v).build().unwrap());
        let created = self
            .org
            .create_policy()
            .name(name)
            .description("Managed by tenantry; do not edit by hand")
            .r#type(aws_sdk_organizations::types::PolicyType::ServiceControlPolicy)
            .content(content)
            .set_tags(Some(tags.collect()))
            .send()
            .await
            .unwrap();
        created.policy().unwrap().policy_summary().unwrap().id().unwrap().to_string()
    }

    /// The content-addressed SCP for policy file `file` attached to account `id`
    /// (`tenantry-<file>-<16 hex digits>`); panics unless there is exactly one.
    pub async fn attached_scp_for(&self, id: &str, file: &str) -> String {
        let found: Vec<String> = self.attached_scps(id).await.into_iter().filter(|n| is_scp_of_file(n, file)).collect();
        assert_eq!(found.len(), 1, "one SCP of policies/{file}.json attached to {id}: {found:?}");
        found[0].clone()
    }

    /// CloudFormation in a member account (assumes OrganizationAccountAccessRole).
    pub async fn member_cfn(&self, account_id: &str) -> aws_sdk_cloudformation::Client {
        aws_sdk_cloudformation::Client::new(&self.member_config(account_id).await)
    }

    /// SDK config with credentials of a member account (assumes OrganizationAccountAccessRole).
    pub async fn member_config(&self, account_id: &str) -> aws_config::SdkConfig {
        let out = self
            .sts
            .assume_role()
            .role_arn(format!("arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole"))
            .role_session_name("tenantry-test")
            .send()
            .await
            .unwrap();
        let c = out.credentials.unwrap();
        self.sdk
            .to_builder()
            .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                c.access_key_id,
                c.secret_access_key,
                Some(c.session_token),
                None,
                "test",
            )))
            .build()
    }

    /// Stacks in a member account: name → (status, tags).
    pub async fn stacks(&self, account_id: &str) -> BTreeMap<String, (String, BTreeMap<String, String>)> {
        let cfn = self.member_cfn(account_id).await;
        let out = cfn.describe_stacks().send().await.unwrap();
        out.stacks
            .unwrap_or_default()
            .into_iter()
            .map(|s| {
                let tags =
                    s.tags().iter().filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string()))).collect();
                (
                    s.stack_name().unwrap_or_default().to_string(),
                    (s.stack_status().map(|x| x.as_str().to_string()).unwrap_or_default(), tags),
                )
            })
            .collect()
    }

    /// The state bucket tenantry uses against this emulator.
    pub fn state_bucket(emu: &Emulator) -> String {
        format!("tenantry-state-{}-us-east-1", emu.management_account_id())
    }

    /// Every stored version of a state object (`ListObjectVersions`, then `GetObject` by version
    /// id), parsed; delete markers are skipped.
    pub async fn state_versions(&self, bucket: &str, key: &str) -> Vec<serde_json::Value> {
        let listed = self.s3.list_object_versions().bucket(bucket).prefix(key).send().await.unwrap();
        let mut out = Vec::new();
        for v in listed.versions() {
            if v.key() != Some(key) {
                continue;
            }
            let got =
                self.s3.get_object().bucket(bucket).key(key).version_id(v.version_id().unwrap()).send().await.unwrap();
            let bytes = got.body.collect().await.unwrap().into_bytes();
            out.push(
                serde_json::from_slice(&bytes)
                    .unwrap_or_else(|e| panic!("version {:?} of {key} is not JSON: {e}", v.version_id())),
            );
        }
        out
    }

    /// Deletes every version and delete marker of `key`: its history is gone too.
    pub async fn delete_all_versions(&self, bucket: &str, key: &str) {
        let listed = self.s3.list_object_versions().bucket(bucket).prefix(key).send().await.unwrap();
        let versions = listed.versions().iter().filter(|v| v.key() == Some(key)).filter_map(|v| v.version_id());
        let markers = listed.delete_markers().iter().filter(|m| m.key() == Some(key)).filter_map(|m| m.version_id());
        for version in versions.chain(markers) {
            self.s3.delete_object().bucket(bucket).key(key).version_id(version).send().await.unwrap();
        }
    }

    /// A state object from the state bucket, parsed.
    pub async fn state_object(&self, bucket: &str, key: &str) -> Option<serde_json::Value> {
        let out = self.s3.get_object().bucket(bucket).key(key).send().await.ok()?;
        let bytes = out.body.collect().await.unwrap().into_bytes();
        serde_json::from_slice(&bytes).ok()
    }
}

/// `localstack/faultproxy.py` in front of an emulator: forwards everything, except requests
/// matching `rules` (JSON), which get the rules' AWS errors. Killed on drop.
pub struct FaultProxy {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

impl FaultProxy {
    /// Starts the proxy in front of `upstream`.
    pub fn start(upstream: &str, rules: &serde_json::Value) -> FaultProxy {
        Self::start_logged(upstream, rules, None)
    }

    /// Like [`FaultProxy::start`], appending every request it sees to `log` (one line each).
    pub fn start_logged(upstream: &str, rules: &serde_json::Value, log: Option<&Path>) -> FaultProxy {
        Self::start_seeded(upstream, rules, log, 1)
    }

    /// Like [`FaultProxy::start_logged`], with the random faults seeded by `seed`.
    pub fn start_seeded(upstream: &str, rules: &serde_json::Value, log: Option<&Path>, seed: u64) -> FaultProxy {
        use std::io::BufRead;
        let port = free_port();
        let mut cmd = Command::new("python3");
        cmd.env("FAULTPROXY_SEED", seed.to_string());
        if let Some(org) = organizations_endpoint(upstream) {
            cmd.env("FAULTPROXY_ROUTE", serde_json::json!({ "organizations": org }).to_string());
        }
        if let Some(log) = log {
            cmd.env("FAULTPROXY_LOG", log);
        }
        let mut child = cmd
            .arg(repo().join("localstack/faultproxy.py"))
            .arg(port.to_string())
            .arg(upstream)
            .arg(rules.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start faultproxy.py");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "faultproxy did not start");
        FaultProxy { child, endpoint: format!("http://127.0.0.1:{port}") }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `name` is the content-addressed SCP name of policy file `file`:
/// `tenantry-<file>-<16 lower-case hex digits>`.
pub fn is_scp_of_file(name: &str, file: &str) -> bool {
    name.strip_prefix(&format!("tenantry-{file}-"))
        .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}
