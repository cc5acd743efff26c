//! Loading every input without touching AWS: `tenantry.toml`, the blueprints and policies, and
//! the tenant files, each checked on its own and then rendered once (SCPs, stacks and workload
//! releases, with a placeholder account id), so that one run reports every problem of every
//! file, each pointing at its file, line and field.

use std::path::Path;

use crate::config::OrgSettings;
use crate::desired;
use crate::diag::{span_of, Diagnostic};
use crate::render::{RenderFailure, Renderer};
use crate::tenant::{self, Environment, Tenant};

/// Placeholder management account id used when rendering without AWS (validation).
pub const PLACEHOLDER_ACCOUNT_ID: &str = "000000000000";

/// Loaded, validated inputs.
pub struct Inputs {
    /// `tenantry.toml`.
    pub settings: OrgSettings,
    /// Blueprints and policies.
    pub renderer: Renderer,
    /// Every tenant whose file passed every check, sorted by id.
    pub tenants: Vec<Tenant>,
}

/// Loads `config`, the templates of `blueprints` and `policies`, and the tenant files of
/// `tenants`. Errors: every problem found, in file order (nothing is returned unless all passed).
pub fn load(config: &Path, tenants: &Path, blueprints: &Path, policies: &Path) -> Result<Inputs, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let settings = OrgSettings::load(config).unwrap_or_else(|e| {
        errors.extend(e);
        OrgSettings::default()
    });
    let renderer = match Renderer::load(blueprints, policies) {
        Ok(r) => r,
        Err(e) => {
            errors.extend(e);
            return Err(errors);
        }
    };
    let mut loaded = tenant::load(tenants, &settings, &renderer);
    errors.append(&mut loaded.errors);
    let mut passed = Vec::new();
    for t in loaded.tenants {
        let problems = render_problems(&t, &settings, &renderer);
        if problems.is_empty() {
            passed.push(t);
            continue;
        }
        let source = loaded.sources.get(&t.path).map(String::as_str).unwrap_or_default();
        for (field, msg) in problems {
            let parts: Vec<&str> = field.split('.').collect();
            errors.push(Diagnostic::at_span(&t.path, source, span_of(source, &parts), field, msg));
        }
    }
    if errors.is_empty() {
        Ok(Inputs { settings, renderer, tenants: passed })
    } else {
        Err(errors)
    }
}

/// Renders everything of a tenant once with a placeholder account id: catches undefined
/// variables, invalid JSON and oversize documents before any AWS call. Returns (field, problem)
/// pairs.
pub fn render_problems(tenant: &Tenant, settings: &OrgSettings, renderer: &Renderer) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if let Err(field_errors) = desired::build(tenant, settings, renderer, PLACEHOLDER_ACCOUNT_ID) {
        for fe in field_errors {
            let hint = match &fe.failure {
                RenderFailure::Template { .. } => format!(" (set it under [{}])", fe.field),
                _ => String::new(),
            };
            problems.push((fe.field, format!("cannot render: {}{hint}", fe.failure)));
        }
        return problems;
    }
    check_workload_releases(tenant, settings, renderer, &mut problems);
    problems
}

/// Renders each workload's release (with a placeholder account id) and checks its stack
/// parameters against the template's `Parameters` ([`crate::params::check_stack_parameters`]).
fn check_workload_releases(
    tenant: &Tenant,
    settings: &OrgSettings,
    renderer: &Renderer,
    problems: &mut Vec<(String, String)>,
) {
    for (name, w) in &tenant.spec.workloads {
        let release = match crate::promote::Release::render(
            tenant,
            name,
            renderer,
            &settings.home_region,
            PLACEHOLDER_ACCOUNT_ID,
        ) {
            Ok(r) => r,
            Err(e) => {
                problems.push((format!("workloads.{name}"), format!("cannot render: {e}")));
                continue;
            }
        };
        let template: serde_json::Value = serde_json::from_str(&release.template).unwrap_or_default();
        for env in Environment::ALL {
            for (key, why) in crate::params::check_stack_parameters(&template, w.stack_parameters(env)) {
                let field = if key.is_empty() {
                    format!("workloads.{name}.{env}")
                } else {
                    format!("workloads.{name}.{env}.{key}")
                };
                problems.push((field, why));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;

    fn repo(sub: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(sub)
    }

    /// A copy of the example inputs with `tenants/acme.toml` edited by `edit`.
    fn with_acme(edit: impl Fn(&str) -> String) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tenants")).unwrap();
        for name in ["acme.toml", "globex.toml"] {
            let text = std::fs::read_to_string(repo("tenants").join(name)).unwrap();
            let text = if name == "acme.toml" { edit(&text) } else { text };
            std::fs::write(dir.path().join("tenants").join(name), text).unwrap();
        }
        dir
    }

    fn load_from(tenants: &Path) -> Result<Inputs, Vec<Diagnostic>> {
        load(&repo("tenantry.toml"), tenants, &repo("blueprints"), &repo("policies"))
    }

    #[test]
    fn the_example_inputs_load_and_render_into_the_desired_state() {
        let inputs = load_from(&repo("tenants")).unwrap_or_else(|e| panic!("{e:?}"));
        let ids: Vec<&str> = inputs.tenants.iter().map(|t| t.spec.id.as_str()).collect();
        assert_eq!(ids, ["acme", "globex"]);
        let acme = &inputs.tenants[0];
        let d = desired::build(acme, &inputs.settings, &inputs.renderer, "123456789012").unwrap();
        let cases: Vec<(Environment, Vec<&str>, Vec<&str>)> = vec![
            (
                Environment::Production,
                vec!["baseline"],
                vec!["deny-leave-organization", "protect-tenantry", "region-allowlist"],
            ),
            (
                Environment::Staging,
                vec!["agent-pipeline", "baseline"],
                vec!["deny-leave-organization", "protect-tenantry", "region-allowlist"],
            ),
        ];
        for (env, blueprints, policies) in cases {
            let a = d.account(env);
            let mut got: Vec<&str> = a.stacks.iter().map(|s| s.blueprint.as_str()).collect();
            got.sort();
            assert_eq!(got, blueprints, "{env}");
            // Content-addressed: `tenantry-<file>-<first 16 hex digits of the document's sha256>`.
            let mut names: Vec<String> = a.policies.iter().map(|p| p.name.clone()).collect();
            names.sort();
            let want: Vec<String> =
                a.policies.iter().map(|p| format!("tenantry-{}-{}", p.source, &p.digest[..16])).collect();
            let mut want = want;
            want.sort();
            assert_eq!(names, want, "{env}");
            let sources: Vec<&str> =
                names.iter().filter_map(|n| crate::desired::shared_policy_parts(n)).map(|(s, _)| s).collect();
            assert_eq!(sources, policies, "{env}");
            assert_eq!(a.tags.get("tenantry:tenant").map(String::as_str), Some("acme"), "{env}");
            assert_eq!(a.tags.get("tenantry:environment").map(String::as_str), Some(env.as_str()), "{env}");
            assert_eq!(a.account_name, format!("Acme Corp ({env})"));
            assert!(a.stacks.iter().all(|s| s.version.len() == 64), "versions are sha256 of the templates");
        }
    }

    /// What `desired::build` made of acme in one environment, part by part: each part's text or
    /// digest, so that two builds can be compared part for part.
    fn parts(d: &desired::DesiredTenant) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for a in &d.accounts {
            let env = a.environment;
            out.insert(format!("{env} email"), a.email.clone());
            out.insert(format!("{env} name"), a.account_name.clone());
            out.insert(format!("{env} ou"), a.ou_path.clone());
            out.insert(format!("{env} tags"), format!("{:?}", a.tags));
            for p in &a.policies {
                out.insert(format!("{env} policy {}", p.source), p.digest.clone());
            }
            for s in &a.stacks {
                out.insert(format!("{env} stack {}", s.blueprint), s.version.clone());
            }
        }
        out
    }

    #[test]
    fn each_tenant_file_change_changes_exactly_the_desired_parts_it_concerns() {
        let build = |edit: &dyn Fn(&str) -> String| {
            let dir = with_acme(edit);
            let inputs = load_from(&dir.path().join("tenants")).unwrap_or_else(|e| panic!("{e:?}"));
            let acme = inputs.tenants.iter().find(|t| t.spec.id == "acme").unwrap();
            parts(&desired::build(acme, &inputs.settings, &inputs.renderer, "123456789012").unwrap())
        };
        let before = build(&|t| t.to_string());
        // The text replaced in acme.toml, by what, and the parts of the desired state that change.
        #[rustfmt::skip]
        let cases: [(&str, &str, &[&str]); 7] = [
            ("log_retention_days = 365", "log_retention_days = 400", &["production stack baseline"]),
            ("message_retention_seconds = 345600", "message_retention_seconds = 86400", &["staging stack agent-pipeline"]),
            ("data-classification = \"confidential\"", "data-classification = \"secret\"", &["production tags"]),
            ("allowed_regions = [\"us-east-1\", \"eu-west-1\"]", "allowed_regions = [\"us-east-1\"]", &["production policy region-allowlist"]),
            ("ou = \"Tenants/Staging\"", "ou = \"Tenants/Twins\"", &["staging ou"]),
            ("aws+acme-production@example.com", "aws+acme-prod@example.com", &["production email"]),
            ("name = \"Acme Corp\"", "name = \"Acme Corporation\"", &["production name", "staging name", "production stack baseline", "staging stack baseline"]),
        ];
        for (from, to, want) in cases {
            let after = build(&|t: &str| {
                assert!(t.contains(from), "acme.toml has `{from}`");
                t.replacen(from, to, 1)
            });
            let changed: Vec<&str> =
                before.iter().filter(|(k, v)| after.get(*k) != Some(*v)).map(|(k, _)| k.as_str()).collect();
            let mut want = want.to_vec();
            want.sort_unstable();
            assert_eq!(changed, want, "`{from}` -> `{to}`");
        }
    }

    #[test]
    fn each_bad_tenant_file_is_one_diagnostic_naming_its_field_and_line() {
        const AGENT_PIPELINE: &str = "[production.blueprints.agent-pipeline]\nmax_iterations = 8\nmessage_retention_seconds = 345600\nlog_retention_days = 14\n\n[production.blueprints.baseline]";
        // What is wrong, the text replaced in acme.toml and by what, the field named, the message.
        #[rustfmt::skip]
        let cases = [
            ("bad email", "aws+acme-staging@example.com", "not-an-email", "staging.email", "not a valid email"),
            ("unknown field", "drift = \"report\"", "drift = \"report\"\ncolour = \"red\"", "colour", "unknown field"),
            ("unknown policy", "\"protect-tenantry\"", "\"no-such-policy\"", "production.policies.2", "unknown policy"),
            ("region outside allowed", "allowed_regions = [\"us-east-1\"]", "allowed_regions = [\"eu-west-1\"]", "staging.allowed_regions", "home region"),
            ("unknown blueprint parameter", "log_retention_days = 365", "log_retention_days = 365\nshoe_size = 9", "production.blueprints.baseline.shoe_size", "no parameter"),
            ("agent pipeline in production", "[production.blueprints.baseline]", AGENT_PIPELINE, "production.blueprints.agent-pipeline", "staging account only"),
            ("email of another tenant", "aws+acme-staging@example.com", "CLOUD+globex-prod@example.org", "production.email", "already used"),
            ("bad soak", "soak = \"30m\"", "soak = \"2M\"", "promotion.soak", "months"),
        ];
        for (what, from, to, field, message) in cases {
            let dir = with_acme(|t| t.replace(from, to));
            let errors = match load_from(&dir.path().join("tenants")) {
                Ok(_) => panic!("{what}: loaded"),
                Err(e) => e,
            };
            let hit = errors.iter().find(|d| d.field == field);
            let hit = hit.unwrap_or_else(|| panic!("{what}: no diagnostic for `{field}` in {errors:#?}"));
            assert!(hit.message.contains(message), "{what}: {}", hit.message);
            assert!(hit.line > 0, "{what}: points at a line");
            assert!(hit.file.ends_with("acme.toml") || field.ends_with("email"), "{what}: {}", hit.file.display());
        }
    }

    #[test]
    fn a_stack_parameter_the_rendered_release_does_not_declare_is_reported_at_its_field() {
        // Found only by rendering the workload's release: the spec checks cannot see it.
        let dir = with_acme(|t| {
            t.replace("VisibilityTimeoutSeconds = \"60\"", "VisibilityTimeoutSeconds = \"60\"\nNoSuchParameter = \"1\"")
        });
        let errors = load_from(&dir.path().join("tenants")).err().expect("an undeclared stack parameter fails");
        let field = "workloads.orders.production.NoSuchParameter";
        assert!(errors.iter().any(|d| d.field == field && d.line > 0), "{errors:#?}");
    }
}
