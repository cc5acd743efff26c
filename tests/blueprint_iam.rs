//! Separation of duties in the agent pipeline, checked on the rendered template: no emulator
//! enforces IAM, so what each agent role may write is read from the policy documents themselves.
//! A verdict counts only for the check its key names (`verdicts/<release>/<check>.json`), so a
//! role that may put an object under a check's key may pass that check: each role may write only
//! its own checks' keys.

use std::collections::BTreeMap;

use serde_json::Value;
use tenantry::config::OrgSettings;
use tenantry::render::Renderer;
use tenantry::tenant::Environment;

fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The rendered agent-pipeline template of the example tenant acme.
fn pipeline() -> Value {
    let renderer = Renderer::load(&repo().join("blueprints"), &repo().join("policies")).unwrap();
    let settings = OrgSettings::default();
    let loaded = tenantry::tenant::load(&repo().join("tenants"), &settings, &renderer);
    assert!(loaded.errors.is_empty());
    let acme = loaded.tenants.iter().find(|t| t.spec.id == "acme").unwrap();
    let desired = tenantry::desired::build(acme, &settings, &renderer, "123456789012").unwrap();
    let stack = desired.account(Environment::Staging).stacks.iter().find(|s| s.blueprint == "agent-pipeline").unwrap();
    serde_json::from_str(&stack.template).unwrap()
}

/// Resources (as written in the template) a role's inline policies allow `s3:PutObject` on.
fn put_resources(role: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for policy in role["Properties"]["Policies"].as_array().into_iter().flatten() {
        for st in policy["PolicyDocument"]["Statement"].as_array().into_iter().flatten() {
            let actions: Vec<&str> = match &st["Action"] {
                Value::String(a) => vec![a.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            if st["Effect"] != "Allow"
                || !actions.iter().any(|a| a.starts_with("s3:PutObject") || *a == "s3:*" || *a == "*")
            {
                continue;
            }
            let resources: Vec<Value> = match &st["Resource"] {
                Value::Array(r) => r.clone(),
                r => vec![r.clone()],
            };
            out.extend(
                resources.iter().map(|r| r["Fn::Sub"].as_str().map(str::to_string).unwrap_or_else(|| r.to_string())),
            );
        }
    }
    out
}

#[test]
fn each_agent_role_may_write_only_its_own_checks_verdicts() {
    let t = pipeline();
    let wanted: BTreeMap<&str, Vec<&str>> = BTreeMap::from([
        ("tenantry-agent-implementer", vec![]),
        ("tenantry-agent-reviewer", vec!["tests", "review"]),
        ("tenantry-agent-security-auditor", vec!["security-audit"]),
        ("tenantry-agent-docs-writer", vec![]),
    ]);
    let mut seen = 0;
    for (logical, res) in t["Resources"].as_object().unwrap() {
        if res["Type"] != "AWS::IAM::Role" {
            continue;
        }
        let name = res["Properties"]["RoleName"].as_str().unwrap_or_default();
        let Some(checks) = wanted.get(name) else { continue };
        seen += 1;
        let verdicts: Vec<String> = put_resources(res)
            .into_iter()
            .filter(|r| {
                r.contains("/verdicts/")
                    || r.ends_with("/*")
                        && !r.contains("/artifacts/")
                        && !r.contains("/evidence/")
                        && !r.contains("/docs/")
            })
            .collect();
        let expected: Vec<String> =
            checks.iter().map(|c| format!("${{EvidenceBucket.Arn}}/verdicts/*/{c}.json")).collect();
        assert_eq!(verdicts, expected, "{logical} ({name}) may put objects under verdicts/ only for its own checks");
    }
    assert_eq!(seen, wanted.len(), "every agent role was found in the template");
}
