#!/usr/bin/env python3
"""tenantry benchmark: onboarding, no-op plan and full reconcile of N synthetic tenants against a
fresh embedded emulator. Run it through `bench/run` (which builds the release binary first).

For each N it starts a new emulator (localstack/start.sh on a free port), generates N tenant files
(t0001..tNNNN, distinct ids and emails, shaped like tenants/acme.toml), measures the emulator's own
request ceiling, then runs, in order:

  onboard    tenantry apply --auto-approve --output json   (from nothing: organization, OUs,
             2N accounts, one SCP per distinct document (six here, whatever N), baseline in 2N
             accounts, agent pipeline in N; the SCPs are counted afterwards)
  plan       tenantry plan --output json                   (no-op: must exit 0)
  reconcile  tenantry reconcile --report-only --output json (live reads and drift detection)

and records for each: wall seconds, tenantry's CPU seconds and peak RSS (wait4), the emulator's
CPU seconds (/proc), and tenantry's own count of AWS requests (`api_calls` in its JSON output:
total, per tenant, by operation). One JSON file per run goes to bench/results/, and a table is
printed. Only the Python standard library is used, but for counting the SCPs (boto3 from the
moto virtualenv that localstack/install.sh makes).
"""

import argparse
import datetime
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Production allow-lists vary among tenants as they would among clients: the region allow-list
# renders one document per distinct list, shared by every account with that list.
PRODUCTION_REGIONS = ['"us-east-1", "eu-west-1"', '"us-east-1", "eu-central-1"', '"us-east-1", "us-west-2"']


def tenant_file(i, width):
    t = f"t{i:0{width}d}"
    regions = PRODUCTION_REGIONS[i % len(PRODUCTION_REGIONS)]
    return f'''# Synthetic benchmark tenant.
id = "{t}"
name = "Bench tenant {i}"
drift = "report"

[production]
email = "aws+{t}-production@example.com"
ou = "Tenants/Production"
allowed_regions = [{regions}]
policies = ["deny-leave-organization", "region-allowlist", "protect-tenantry"]

[production.tags]
cost-center = "cc-{i:04d}"
data-classification = "confidential"

[production.blueprints.baseline]
log_retention_days = 365

[staging]
email = "aws+{t}-staging@example.com"
ou = "Tenants/Staging"
allowed_regions = ["us-east-1"]
policies = ["deny-leave-organization", "region-allowlist", "protect-tenantry"]

[staging.tags]
cost-center = "cc-{i:04d}"
data-classification = "synthetic"

[staging.blueprints.baseline]
log_retention_days = 30

[staging.blueprints.agent-pipeline]
max_iterations = 8
'''


def equal_work_tenant_file(i, width):
    """The work of the peer comparison in docs/scale.md: two accounts in two OUs with tags, one
    deny-leave SCP, and the same small stack (an S3 bucket and an SSM parameter) in each."""
    t = f"t{i:0{width}d}"
    return f'''# Synthetic benchmark tenant (equal work).
id = "{t}"
name = "Bench tenant {i}"
drift = "report"

[production]
email = "aws+{t}-production@example.com"
ou = "Tenants/Production"
allowed_regions = ["us-east-1"]
policies = ["deny-leave-organization"]

[production.tags]
cost-center = "cc-{i:04d}"

[production.blueprints.baseline]

[staging]
email = "aws+{t}-staging@example.com"
ou = "Tenants/Staging"
allowed_regions = ["us-east-1"]
policies = ["deny-leave-organization"]

[staging.tags]
cost-center = "cc-{i:04d}"

[staging.blueprints.baseline]
'''


EQUAL_WORK_STACK = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Description": "bench --equal-work: an S3 bucket and an SSM parameter",
    "Resources": {
        "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "bench-{{tenant.id}}-{{environment}}"}},
        "Parameter": {"Type": "AWS::SSM::Parameter",
                      "Properties": {"Name": "/bench/tenant", "Type": "String", "Value": "{{tenant.id}}"}},
    },
}


SMALL_STACK = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Description": "bench --small-stacks: one queue in place of the blueprint",
    "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
}


def workspace(n, small_stacks, equal_work=False, settings=None):
    ws = pathlib.Path(tempfile.mkdtemp(prefix=f"tenantry-bench-{n}-"))
    for name in ("tenantry.toml",):
        shutil.copy(ROOT / name, ws / name)
    if settings:
        # `--set key=value`: that top-level setting of the workspace's tenantry.toml replaced.
        toml = (ws / "tenantry.toml").read_text()
        for key, value in settings.items():
            line = f"{key} = {value}"
            toml, found = re.subn(rf"(?m)^{re.escape(key)}\s*=.*$", line, toml, count=1)
            if not found:
                # Top-level keys go before the first table.
                head, sep, rest = toml.partition("\n[")
                toml = f"{head.rstrip()}\n{line}\n{sep.lstrip()}{rest}" if sep else f"{toml.rstrip()}\n{line}\n"
        (ws / "tenantry.toml").write_text(toml)
    for d in ("blueprints", "policies"):
        shutil.copytree(ROOT / d, ws / d)
    if equal_work:
        for bp in (ws / "blueprints").iterdir():
            bp.unlink()
        (ws / "blueprints" / "baseline.json").write_text(json.dumps(EQUAL_WORK_STACK, indent=2))
        (ws / "blueprints" / "baseline.toml").write_text("# No parameters.\n")
    elif small_stacks:
        # Same tenants, accounts, SCPs and number of stacks; each stack is one SQS queue, as in
        # the peer comparison of issue 6 (account work plus one small stack per account).
        for bp in (ws / "blueprints").glob("*.json"):
            bp.write_text(json.dumps(SMALL_STACK, indent=2))
    os.symlink(ROOT / "localstack", ws / "localstack")
    (ws / "tenants").mkdir()
    width = max(4, len(str(n)))
    make = equal_work_tenant_file if equal_work else tenant_file
    for i in range(1, n + 1):
        (ws / "tenants" / f"t{i:0{width}d}.toml").write_text(make(i, width))
    return ws


SCP_COUNT = """
import json, sys, boto3
c = boto3.client("organizations", endpoint_url=sys.argv[1], region_name="us-east-1",
                 aws_access_key_id="test", aws_secret_access_key="test")
names = [p["Name"] for page in c.get_paginator("list_policies").paginate(Filter="SERVICE_CONTROL_POLICY")
         for p in page["Policies"]]
print(json.dumps({"total": len(names), "tenantry": sum(n.startswith("tenantry-") for n in names)}))
"""


def scp_count(endpoint):
    """SCPs of the organization after onboarding (ListPolicies through boto3 from the moto
    virtualenv, which any endpoint answers): all of them, and tenantry's."""
    python = ROOT / "localstack/.venv-moto/bin/python"
    out = subprocess.run([str(python), "-c", SCP_COUNT, endpoint], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        return {"error": out.stderr.strip()[-500:]}
    return json.loads(out.stdout)


def proc_cpu_seconds(pid):
    """utime + stime of a process and its waited-for children, in seconds."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(f) for f in fields[11:15]) / ticks


def ceiling(endpoint, threads, seconds=2.0):
    """Requests per second the emulator answers for the cheapest call (STS GetCallerIdentity, a
    form POST), from `threads` keep-alive connections of plain http.client (no SDK overhead)."""
    import http.client

    host, port = endpoint.split("//")[1].split(":")
    body = "Action=GetCallerIdentity&Version=2011-06-15"
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=0",
    }
    count = [0] * threads
    stop = time.monotonic() + seconds

    def worker(k):
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        while time.monotonic() < stop:
            conn.request("POST", "/", body, headers)
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                raise SystemExit(f"ceiling probe: HTTP {r.status}")
            count[k] += 1
        conn.close()

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return round(sum(count) / (time.monotonic() - t0), 1)


def run_phase(binary, ws, env, args, emulator_pid):
    cpu_before = proc_cpu_seconds(emulator_pid)
    t0 = time.monotonic()
    p = subprocess.Popen([str(binary), *args], cwd=ws, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = [], []
    readers = [
        threading.Thread(target=lambda: out.append(p.stdout.read())),
        threading.Thread(target=lambda: err.append(p.stderr.read())),
    ]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    for r in readers:
        r.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    cpu_after = proc_cpu_seconds(emulator_pid)
    stdout = out[0].decode()
    try:
        doc = json.loads(stdout)
    except json.JSONDecodeError:
        doc = None
    return {
        "command": "tenantry " + " ".join(args),
        "exit_code": p.returncode,
        "wall_seconds": round(wall, 3),
        "tenantry_cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
        "tenantry_peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "emulator_cpu_seconds": None if cpu_before is None or cpu_after is None else round(cpu_after - cpu_before, 3),
        "api_calls": (doc or {}).get("api_calls"),
        "stderr_tail": err[0].decode()[-2000:] if p.returncode not in (0,) else "",
        "document": doc,
    }


def summarize_calls(api, n):
    if not api:
        return {}
    by_tenant = api.get("by_tenant", {})
    run_level = sum(by_tenant.get("-", {}).values())
    tenant_total = api["total"] - run_level
    ops = {k: v["requests"] for k, v in sorted(api["by_operation"].items(), key=lambda kv: -kv[1]["requests"])}
    per_tenant_ops = {}
    for t, calls in by_tenant.items():
        if t == "-":
            continue
        for op, c in calls.items():
            per_tenant_ops[op] = per_tenant_ops.get(op, 0) + c
    return {
        "total": api["total"],
        "run_level": run_level,
        "per_tenant": round(tenant_total / n, 2),
        "per_tenant_by_operation": {k: round(v / n, 2) for k, v in sorted(per_tenant_ops.items())},
        "by_operation": ops,
        "seconds_by_operation": {k: v["seconds"] for k, v in api["by_operation"].items()},
    }


def git_commit():
    try:
        c = subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True).strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "src", "Cargo.toml", "Cargo.lock"], cwd=ROOT).returncode != 0
        return c + ("+dirty" if dirty else "")
    except Exception:
        return "unknown"


def latency_rules(model):
    """faultproxy rules of the real-latency model (see --rtt-ms and the options beside it)."""
    rules = []
    if model.get("org_rate"):
        rules.append({"service": "organizations", "fault": "rate_limit", "per_second": model["org_rate"]})
    if model.get("create_account_seconds"):
        rules.append({"action": "DescribeCreateAccountStatus", "fault": "create_slow", "seconds": model["create_account_seconds"]})
    if model.get("stack_seconds"):
        rules.append({"service": "cloudformation", "action": ["CreateStack", "UpdateStack", "DeleteStack"],
                      "fault": "stack_slow", "seconds": model["stack_seconds"]})
    return rules


def start_proxy(upstream, model):
    """localstack/faultproxy.py in front of the emulator, holding every request rtt_ms."""
    port = free_port()
    env = dict(os.environ, FAULTPROXY_RTT_MS=str(model.get("rtt_ms") or 0))
    p = subprocess.Popen([sys.executable, str(ROOT / "localstack/faultproxy.py"), str(port), upstream, json.dumps(latency_rules(model))],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if p.stdout.readline().strip() != "ready":
        raise SystemExit("faultproxy did not start")
    return p, f"http://127.0.0.1:{port}"


def floor_seconds(n, model, settings, scps_per_account=1):
    """The least time the real-latency model allows to onboard n equal-work tenants: every
    account's creation takes create_account_seconds, at most account_creation_concurrency (from
    the workspace's tenantry.toml) run at once, and after the last wave the account's stack takes
    stack_seconds; round trips, the organization's setup and poll pauses are not counted. A
    bound, not a prediction. With org_rate, also no faster than the Organizations requests each
    account needs at least (CreateAccount, one DescribeCreateAccountStatus, MoveAccount, and an
    AttachPolicy per SCP: `scps_per_account`) at that many a second."""
    accounts = 2 * n
    waves = -(-accounts // settings["account_creation_concurrency"])
    creation = waves * (model.get("create_account_seconds") or 0) + (model.get("stack_seconds") or 0)
    org_rate = model.get("org_rate")
    return max(creation, (3 + scps_per_account) * accounts / org_rate) if org_rate else creation


def bench(n, binary, emulator, keep, small_stacks=False, equal_work=False, model=None, repeat_plan=1, settings=None):
    model = {k: v for k, v in (model or {}).items() if v}
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env.update(
        PORT=str(port),
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_REGION="us-east-1",
        NO_COLOR="1",
    )
    for k in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "TENANTRY_CRASH_AT", "RUST_LOG"):
        env.pop(k, None)
    ws = workspace(n, small_stacks, equal_work, settings)
    subprocess.run(["bash", str(ROOT / "localstack/start.sh"), emulator], env=env, check=True, stdout=subprocess.DEVNULL)
    pid = int((ROOT / f"localstack/.run/emulator-{port}.pid").read_text())
    proxy = None
    run_env = env
    if model:
        proxy, proxied = start_proxy(endpoint, model)
        run_env = dict(env, AWS_ENDPOINT_URL=proxied)
    try:
        result = {
            "schema": "tenantry.bench/v1",
            "tenants": n,
            "emulator": emulator,
            "stacks": "equal work (one bucket and parameter per account, one SCP)" if equal_work
            else "small (one queue each)" if small_stacks else "blueprints/ as committed",
            "latency_model": model or None,
            "settings": settings or None,
            "commit": git_commit(),
            "binary": str(binary),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "machine": {"cpus": os.cpu_count(), "kernel": os.uname().release},
            "emulator_ceiling_rps": {"sts_get_caller_identity_1_conn": ceiling(endpoint, 1), "sts_get_caller_identity_4_conn": ceiling(endpoint, 4)},
            "phases": {},
        }
        phases = [
            ("onboard", ["apply", "--auto-approve", "--output", "json"], (0,)),
            ("plan", ["plan", "--output", "json"], (0,)),
            ("reconcile", ["reconcile", "--report-only", "--output", "json"], (0,)),
        ]
        result["phases"] = {}
        for name, args, ok in phases:
            r = run_phase(binary, ws, run_env, args, pid)
            if name == "plan" and repeat_plan > 1:
                # The no-op plan again (it changes nothing): the median of the runs, and each.
                runs = [r] + [run_phase(binary, ws, run_env, args, pid) for _ in range(repeat_plan - 1)]
                walls = [x["wall_seconds"] for x in runs]
                r = sorted(runs, key=lambda x: x["wall_seconds"])[len(runs) // 2]
                r["wall_seconds_each"] = walls
            doc = r.pop("document")
            r["ok"] = r["exit_code"] in ok
            r["calls"] = summarize_calls(r.pop("api_calls"), n)
            if name == "reconcile" and doc:
                r["reconcile_summary"] = doc.get("summary")
            if name == "onboard" and doc:
                r["tenants_failed"] = sum(1 for t in doc.get("tenants", []) if t.get("error"))
            if not r["ok"] and doc:
                # What went wrong, as tenantry reported it: the first few errors.
                r["errors"] = [str(t.get("error"))[:500] for t in doc.get("tenants", []) if t.get("error")][:5]
            if r["wall_seconds"] > 0 and r["calls"]:
                r["requests_per_second"] = round(r["calls"]["total"] / r["wall_seconds"], 1)
            result["phases"][name] = r
            if name == "onboard" and model.get("create_account_seconds"):
                import tomllib
                settings = {"account_creation_concurrency": 5, **tomllib.loads((ws / "tenantry.toml").read_text())}
                # The equal work's tenants name one policy file; the synthetic ones all three.
                scps = 1 if equal_work else len(list((ws / "policies").glob("*.json")))
                r["floor_seconds"] = floor_seconds(n, model, settings, scps)
            print(f"  N={n} {name}: {r['wall_seconds']} s, exit {r['exit_code']}, {r['calls'].get('total')} requests"
                  + (f" (each run: {r['wall_seconds_each']})" if "wall_seconds_each" in r else "")
                  + (f" (floor {r['floor_seconds']} s)" if "floor_seconds" in r else ""), file=sys.stderr)
            if name == "onboard":
                # Content-addressed SCPs: their number follows the distinct documents, not N.
                result["scps_after_onboarding"] = scp_count(endpoint)
                print(f"  N={n} SCPs after onboarding: {result['scps_after_onboarding']}", file=sys.stderr)
            if not r["ok"]:
                print(r["stderr_tail"], *r.get("errors", []), sep="\n", file=sys.stderr)
                break
        # The same probe on the now populated organization: how the emulator's own cost per
        # request grows with what it holds (2N accounts, a handful of SCPs, 3N stacks).
        result["emulator_ceiling_rps_after"] = {
            "sts_get_caller_identity_1_conn": ceiling(endpoint, 1),
            "sts_get_caller_identity_4_conn": ceiling(endpoint, 4),
        }
        return result
    finally:
        if proxy:
            proxy.terminate()
            proxy.wait()
        subprocess.run(["bash", str(ROOT / "localstack/stop.sh")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not keep:
            shutil.rmtree(ws, ignore_errors=True)


def table(results):
    head = f"{'emulator':<10} {'N':>5} {'phase':<10} {'wall s':>8} {'req':>7} {'req/tenant':>10} {'req/s':>7} {'tenantry cpu s':>14} {'emulator cpu s':>14} {'emu ms/req':>10} {'peak RSS MiB':>12} ok"
    lines = [head, "-" * len(head)]
    for r in results:
        if r.get("stacks", "").startswith("small"):
            lines.append("(--small-stacks: every blueprint replaced by one queue)")
        if r.get("stacks", "").startswith("equal"):
            lines.append("(--equal-work: one SCP, one stack of a bucket and a parameter per account)")
        if r.get("settings"):
            lines.append(f"(settings: {json.dumps(r['settings'])})")
        if r.get("latency_model"):
            floor = r['phases'].get('onboard', {}).get('floor_seconds')
            lines.append(f"(latency model: {json.dumps(r['latency_model'])}; onboarding floor "
                         + (f"{floor} s" if floor is not None else "n/a (no account creation time)") + ")")
        for name, p in r["phases"].items():
            c = p["calls"]
            lines.append(
                f"{r['emulator']:<10} {r['tenants']:>5} {name:<10} {p['wall_seconds']:>8.2f} {c.get('total', 0):>7} {c.get('per_tenant', 0):>10} "
                f"{p.get('requests_per_second', 0):>7} {p['tenantry_cpu_seconds']:>14.2f} {p['emulator_cpu_seconds'] or 0:>14.2f} "
                f"{1000 * (p['emulator_cpu_seconds'] or 0) / max(c.get('total', 1), 1):>10.2f} "
                f"{p['tenantry_peak_rss_mib']:>12.1f} {'yes' if p['ok'] else 'NO'}"
            )
        lines.append(f"{r['emulator']:<10} {r['tenants']:>5} emulator ceiling req/s (GetCallerIdentity, plain HTTP, 1 / 4 connections): "
                     f"empty {r['emulator_ceiling_rps']['sts_get_caller_identity_1_conn']} / {r['emulator_ceiling_rps']['sts_get_caller_identity_4_conn']}, "
                     f"after onboarding {r.get('emulator_ceiling_rps_after', {}).get('sts_get_caller_identity_1_conn')} / {r.get('emulator_ceiling_rps_after', {}).get('sts_get_caller_identity_4_conn')}")
        if "scps_after_onboarding" in r:
            s = r["scps_after_onboarding"]
            lines.append(f"{r['emulator']:<10} {r['tenants']:>5} SCPs after onboarding: {s.get('tenantry')} tenantry's of {s.get('total')} ({2 * r['tenants']} accounts)")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10,50,200", help="comma-separated tenant counts (default 10,50,200)")
    ap.add_argument("--large", action="store_true", help="also run N=1000")
    ap.add_argument("--emulator", default=os.environ.get("TENANTRY_EMULATOR", "moto"), choices=["moto", "ministack"])
    ap.add_argument("--binary", default=str(ROOT / "target/release/tenantry"))
    ap.add_argument("--keep", action="store_true", help="keep the generated workspaces")
    ap.add_argument("--small-stacks", action="store_true", help="replace every blueprint with a one-queue template (isolates tenantry's orchestration from the emulator's cost of big templates)")
    ap.add_argument("--equal-work", action="store_true", help="the peer comparison's work: per tenant two accounts in two OUs with tags, one deny-leave SCP, one stack (an S3 bucket and an SSM parameter) per account")
    ap.add_argument("--rtt-ms", type=float, default=0, help="real-latency model: hold every request this long (a round trip to AWS), through localstack/faultproxy.py")
    ap.add_argument("--create-account-seconds", type=float, default=0, help="real-latency model: CreateAccount stays IN_PROGRESS this long")
    ap.add_argument("--stack-seconds", type=float, default=0, help="real-latency model: each stack operation runs this long")
    ap.add_argument("--org-rate", type=float, default=0, help="real-latency model: Organizations answers at most this many requests per second (TooManyRequestsException beyond)")
    ap.add_argument("--repeat-plan", type=int, default=1, help="run the no-op plan this many times and report the median (each run's wall time is kept)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="replace a top-level setting of the workspace's tenantry.toml; VALUE is TOML (--set concurrency=1, --set home_region='\"eu-west-1\"'); repeatable, saved with the result and in its file name")
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    ap.add_argument("--table", nargs="+", metavar="RESULT", help="only print the table of saved result files")
    a = ap.parse_args()
    if a.table:
        rs = [json.loads(pathlib.Path(f).read_text()) for f in a.table]
        print(table(sorted(rs, key=lambda r: (r["emulator"], r.get("stacks", ""), r["tenants"]))))
        return
    settings = {}
    for kv in a.set:
        key, sep, value = kv.partition("=")
        if not sep or not re.fullmatch(r"[a-z_]+", key.strip()):
            raise SystemExit(f"--set {kv!r}: expected KEY=VALUE with a top-level setting name")
        settings[key.strip()] = value.strip()
    sizes = [int(s) for s in a.sizes.split(",") if s]
    if a.large:
        sizes.append(1000)
    binary = pathlib.Path(a.binary).resolve()
    if not binary.exists():
        raise SystemExit(f"{binary} does not exist: run bench/run (it builds it)")
    results = []
    for n in sizes:
        print(f"benchmark: N={n} on {a.emulator}", file=sys.stderr)
        model = {"rtt_ms": a.rtt_ms, "create_account_seconds": a.create_account_seconds,
                 "stack_seconds": a.stack_seconds, "org_rate": a.org_rate}
        r = bench(n, binary, a.emulator, a.keep, a.small_stacks, a.equal_work, model, a.repeat_plan, settings)
        results.append(r)
        if not a.no_save:
            RESULTS.mkdir(parents=True, exist_ok=True)
            variant = "-equal-work" if a.equal_work else "-small-stacks" if a.small_stacks else ""
            variant += "".join(f"-{k}{re.sub(r'[^A-Za-z0-9_.-]', '', v)}" for k, v in settings.items())
            if r.get("latency_model"):
                variant += "-latency-" + "-".join(f"{k}{v:g}" for k, v in r["latency_model"].items())
            name = f"{r['date'][:10]}-{r['commit'][:10]}-{a.emulator}{variant}-n{n}.json"
            (RESULTS / name).write_text(json.dumps(r, indent=2) + "\n")
            print(f"  wrote bench/results/{name}", file=sys.stderr)
    print(table(results))
    if any(not p["ok"] for r in results for p in r["phases"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
