//! Bad input: each malformed tenant file (or tenantry.toml) gives an error naming the file, the
//! line and the field, and nothing is sent to AWS. `plan` is pointed at a closed port: had it
//! made any AWS call, it would report a connection error instead of the diagnostics.

mod common;

use common::{Run, Workspace};

/// An endpoint nothing listens on.
const NO_AWS: &str = "http://127.0.0.1:9";

fn check(ws: &Workspace, file: &str, line: usize, field: &str, message: &str) {
    for cmd in ["validate", "plan"] {
        let run: Run = ws.run(NO_AWS, &[cmd]);
        assert_eq!(run.code, 1, "{cmd}: {run:?}");
        let at = format!("{file}:{line}:");
        assert!(run.stderr.contains(&at), "{cmd}: expected location `{at}`: {run:?}");
        if !field.is_empty() {
            assert!(run.stderr.contains(&format!("`{field}`")), "{cmd}: expected field `{field}`: {run:?}");
        }
        assert!(run.stderr.contains(message), "{cmd}: expected message `{message}`: {run:?}");
        assert!(run.stderr.contains("nothing was sent to AWS"), "{cmd}: {run:?}");
        assert!(
            !run.stderr.contains("dispatch failure") && !run.stderr.contains("Connection refused"),
            "{cmd} reached for AWS: {run:?}"
        );
    }
}

/// Replaces `from` with `to` in the example tenant `acme` and checks the diagnostic.
fn bad_acme(from: &str, to: &str, line: usize, field: &str, message: &str) {
    let ws = Workspace::new();
    let text = ws.read("tenants/acme.toml");
    assert!(text.contains(from), "fixture does not contain {from:?}");
    ws.write("tenants/acme.toml", &text.replacen(from, to, 1));
    check(&ws, "tenants/acme.toml", line, field, message);
}

#[test]
fn examples_are_valid() {
    let ws = Workspace::new();
    let run = ws.run(NO_AWS, &["validate"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("2 tenant(s) valid: acme, globex"), "{run:?}");
}

#[test]
fn unknown_field() {
    bad_acme(
        "email = \"aws+acme-production@example.com\"",
        "emial = \"aws+acme-production@example.com\"",
        7,
        "production.emial",
        "unknown field",
    );
}

#[test]
fn missing_required_field() {
    bad_acme("ou = \"Tenants/Production\"\n", "", 6, "production.ou", "missing field");
}

#[test]
fn wrong_type() {
    bad_acme(
        "allowed_regions = [\"us-east-1\", \"eu-west-1\"]",
        "allowed_regions = \"us-east-1\"",
        9,
        "production.allowed_regions",
        "invalid type",
    );
}

#[test]
fn toml_syntax_error() {
    bad_acme("name = \"Acme Corp\"", "name = \"Acme Corp", 3, "", "");
}

#[test]
fn invalid_tenant_id() {
    bad_acme("id = \"acme\"", "id = \"Acme_Corp\"", 2, "id", "not a valid tenant id");
}

#[test]
fn tenant_id_differs_from_file_name() {
    bad_acme("id = \"acme\"", "id = \"acme-two\"", 2, "id", "must match the file name");
}

#[test]
fn invalid_email() {
    bad_acme("aws+acme-production@example.com", "not-an-email", 7, "production.email", "not a valid email");
}

#[test]
fn same_email_for_both_accounts_case_insensitively() {
    bad_acme("aws+acme-staging@example.com", "AWS+ACME-PRODUCTION@example.com", 20, "staging.email", "already used");
}

#[test]
fn email_used_by_another_tenant() {
    let ws = Workspace::new();
    let text =
        ws.read("tenants/globex.toml").replace("cloud+globex-prod@example.org", "AWS+Acme-Production@example.com");
    ws.write("tenants/globex.toml", &text);
    check(&ws, "tenants/globex.toml", 7, "production.email", "already used by tenants/acme.toml");
}

#[test]
fn account_name_used_by_another_tenant() {
    let ws = Workspace::new();
    let text = ws
        .read("tenants/globex.toml")
        .replace("account_name = \"Globex Production\"", "account_name = \"Acme Corp (production)\"");
    ws.write("tenants/globex.toml", &text);
    check(
        &ws,
        "tenants/globex.toml",
        8,
        "production.account_name",
        "account name `Acme Corp (production)` is already used by tenants/acme.toml",
    );
}

#[test]
fn duplicate_tenant_id() {
    let ws = Workspace::new();
    let text = ws.read("tenants/globex.toml").replace("id = \"globex\"", "id = \"acme\"");
    ws.write("tenants/globex.toml", &text);
    check(&ws, "tenants/globex.toml", 2, "id", "duplicate tenant id `acme`");
}

#[test]
fn account_name_over_the_aws_limit() {
    let long = "x".repeat(51);
    bad_acme("name = \"Acme Corp\"", &format!("name = \"{long}\""), 3, "name", "AWS allows at most 50");
}

#[test]
fn unknown_policy() {
    bad_acme(
        "\"deny-leave-organization\"",
        "\"deny-everything\"",
        10,
        "production.policies.0",
        "unknown policy `deny-everything`",
    );
}

#[test]
fn policy_file_names_that_would_make_an_ambiguous_scp_name() {
    // `tenantry-<file>-<digest>` must never read as another file's digest, nor as a per-account
    // SCP name of an earlier version (`tenantry-<tenant>-<environment>-<file>`).
    for name in ["deny-0123456789abcdef", "deny-production-writes"] {
        let ws = Workspace::new();
        ws.write(&format!("policies/{name}.json"), &ws.read("policies/deny-leave-organization.json"));
        let text = ws.read("tenants/acme.toml").replacen("\"deny-leave-organization\"", &format!("\"{name}\""), 1);
        ws.write("tenants/acme.toml", &text);
        check(&ws, "tenants/acme.toml", 10, "production.policies.0", "must not look like another SCP");
    }
}

#[test]
fn policy_listed_twice() {
    bad_acme("\"region-allowlist\"", "\"deny-leave-organization\"", 10, "production.policies.1", "listed twice");
}

#[test]
fn unknown_blueprint() {
    bad_acme(
        "[production.blueprints.baseline]",
        "[production.blueprints.basline]",
        16,
        "production.blueprints.basline",
        "unknown blueprint `basline`",
    );
}

#[test]
fn agent_pipeline_in_production_is_refused() {
    bad_acme(
        "[production.blueprints.baseline]",
        "[production.blueprints.agent-pipeline]\nmax_iterations = 3\n\n[production.blueprints.baseline]",
        16,
        "production.blueprints.agent-pipeline",
        "staging account only",
    );
}

#[test]
fn required_blueprint_parameter_missing() {
    bad_acme("max_iterations = 8\n", "", 32, "staging.blueprints.agent-pipeline", "missing parameter `max_iterations`");
}

#[test]
fn undeclared_variable_is_a_strict_mode_render_error() {
    // Without the parameter declarations, the template engine's strict mode still catches it.
    let ws = Workspace::new();
    std::fs::remove_file(ws.path().join("blueprints/agent-pipeline.toml")).unwrap();
    let text = ws.read("tenants/acme.toml").replacen("max_iterations = 8\n", "", 1);
    ws.write("tenants/acme.toml", &text);
    check(
        &ws,
        "tenants/acme.toml",
        32,
        "staging.blueprints.agent-pipeline",
        "variable `params.max_iterations` is not defined",
    );
}

#[test]
fn misspelt_blueprint_parameter() {
    bad_acme(
        "max_iterations = 8",
        "max_iteration = 8",
        33,
        "staging.blueprints.agent-pipeline.max_iteration",
        "has no parameter `max_iteration`",
    );
}

#[test]
fn mistyped_blueprint_parameter() {
    bad_acme(
        "max_iterations = 8",
        "max_iterations = \"eight\"",
        33,
        "staging.blueprints.agent-pipeline.max_iterations",
        "expected an integer",
    );
}

#[test]
fn blueprint_parameter_outside_its_allowed_values() {
    bad_acme(
        "log_retention_days = 365",
        "log_retention_days = 13",
        17,
        "production.blueprints.baseline.log_retention_days",
        "not one of the allowed values",
    );
}

#[test]
fn baseline_missing_from_an_account() {
    bad_acme(
        "[production.blueprints.baseline]\nlog_retention_days = 365\n",
        "",
        6,
        "production.blueprints",
        "every account gets the baseline",
    );
}

#[test]
fn invalid_region() {
    bad_acme(
        "[\"us-east-1\", \"eu-west-1\"]",
        "[\"us-east-1\", \"europe\"]",
        9,
        "production.allowed_regions.1",
        "not an AWS region",
    );
}

#[test]
fn home_region_not_allowed() {
    bad_acme(
        "[\"us-east-1\", \"eu-west-1\"]",
        "[\"eu-west-1\"]",
        9,
        "production.allowed_regions",
        "must include the home region",
    );
}

#[test]
fn invalid_ou_path() {
    bad_acme("ou = \"Tenants/Production\"", "ou = \"/Tenants//Production\"", 8, "production.ou", "not an OU path");
}

#[test]
fn reserved_tag_key() {
    bad_acme(
        "cost-center = \"cc-1001\"",
        "\"tenantry:tenant\" = \"globex\"",
        13,
        "production.tags.tenantry:tenant",
        "reserved",
    );
}

#[test]
fn tag_value_with_a_control_character() {
    // A newline in a tag would print as a line of its own in the text plan (a fake step).
    bad_acme(
        "cost-center = \"cc-1001\"",
        "cost-center = \"cc\\n  - production: delete stack tenantry-baseline\"",
        13,
        "production.tags.cost-center",
        "not '\\n'",
    );
}

#[test]
fn invalid_drift_mode() {
    bad_acme("drift = \"report\"", "drift = \"ignore\"", 4, "drift", "unknown variant");
}

#[test]
fn bad_org_settings_file() {
    let ws = Workspace::new();
    let text =
        ws.read("tenantry.toml").replace("home_region = \"us-east-1\"", "home_region = \"moon-1\"\nconcurency = 3");
    ws.write("tenantry.toml", &text);
    check(&ws, "tenantry.toml", 9, "concurency", "unknown field");
}

#[test]
fn every_error_in_every_file_is_listed_at_once() {
    let ws = Workspace::new();
    let acme = ws
        .read("tenants/acme.toml")
        .replace("aws+acme-production@example.com", "bad-email")
        .replace("ou = \"Tenants/Staging\"", "ou = \"Tenants//Staging\"")
        .replace("\"protect-tenantry\"]\n\n[staging.tags]", "\"nope\"]\n\n[staging.tags]");
    ws.write("tenants/acme.toml", &acme);
    let globex = ws.read("tenants/globex.toml").replace("id = \"globex\"", "id = \"GLOBEX\"");
    ws.write("tenants/globex.toml", &globex);
    let run = ws.run(NO_AWS, &["validate"]);
    assert_eq!(run.code, 1, "{run:?}");
    for needle in [
        "tenants/acme.toml:7:",
        "`production.email`",
        "tenants/acme.toml:21:",
        "`staging.ou`",
        "`staging.policies.2`",
        "tenants/globex.toml:2:",
        "4 error(s)",
    ] {
        assert!(run.stderr.contains(needle), "missing {needle}: {run:?}");
    }
}

#[test]
fn workload_stack_parameter_the_template_does_not_declare() {
    bad_acme(
        "VisibilityTimeoutSeconds = \"30\"",
        "VisibilityTimeoutSecs = \"30\"",
        50,
        "workloads.orders.staging.VisibilityTimeoutSecs",
        "declares no parameter `VisibilityTimeoutSecs`",
    );
}

#[test]
fn workload_with_an_unknown_blueprint() {
    bad_acme(
        "blueprint = \"work-queue\"",
        "blueprint = \"work-queues\"",
        40,
        "workloads.orders.blueprint",
        "unknown blueprint",
    );
}

#[test]
fn workload_parameter_out_of_range() {
    bad_acme(
        "max_receive_count = 5",
        "max_receive_count = 0",
        43,
        "workloads.orders.parameters.max_receive_count",
        "below the minimum 1",
    );
}

#[test]
fn soak_in_months_is_refused() {
    bad_acme("soak = \"30m\"", "soak = \"30M\"", 55, "promotion.soak", "months");
}

#[test]
fn unknown_promotion_field() {
    bad_acme("approval = \"auto\"", "aproval = \"auto\"", 56, "promotion.aproval", "did you mean `approval`");
}

#[test]
fn a_workload_cannot_set_the_environment_stack_parameter() {
    bad_acme(
        "VisibilityTimeoutSeconds = \"60\"",
        "VisibilityTimeoutSeconds = \"60\"\nEnvironment = \"staging\"",
        48,
        "workloads.orders.production.Environment",
        "set by tenantry to the environment's name",
    );
}

#[test]
fn a_stack_parameter_outside_the_templates_limits() {
    bad_acme(
        "VisibilityTimeoutSeconds = \"60\"",
        "VisibilityTimeoutSeconds = \"50000\"",
        47,
        "workloads.orders.production.VisibilityTimeoutSeconds",
        "above the MaxValue 43200",
    );
}

#[test]
fn a_tenant_id_that_would_make_scp_names_ambiguous() {
    let ws = Workspace::new();
    ws.copy_of_acme("acme-staging");
    check(&ws, "tenants/acme-staging.toml", 2, "id", "may not contain `-production` or `-staging`");
}
