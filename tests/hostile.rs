//! Hostile input, without any AWS: generated tenant files and template values.
//!
//! - The tenant-file loader (TOML parsing, validation, rendering, diagnostics) never panics on
//!   `TENANTRY_FUZZ_CASES` (default 50,000) generated files: mutations of the example tenants
//!   and token soup.
//! - Rendering never panics on as many generated contexts (100,000 generated inputs in all), and whatever a value contains (quotes,
//!   `}}`, newlines, `!Ref`, backslashes, any Unicode), the rendered template or policy has the
//!   same structure as with a plain value: the same keys, array lengths and value types.
//! - Values written into a tenant file either are refused with a diagnostic naming the field, or
//!   render to documents of the same structure, including the JSON documents nested in strings.
//! - Oversize policies and templates are reported, never sent.

use std::cell::Cell;
use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

use tenantry::config::OrgSettings;
use tenantry::desired;
use tenantry::render::{Kind, RenderFailure, Renderer};
use tenantry::tenant as validate;
use tenantry::tenant::Environment;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn cases() -> u32 {
    std::env::var("TENANTRY_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(50_000)
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config { cases, failure_persistence: None, max_shrink_iters: 2_000, ..Config::default() })
}

fn renderer() -> Renderer {
    Renderer::load(&repo().join("blueprints"), &repo().join("policies")).expect("the example templates load")
}

/// Text that means something to TOML, JSON, YAML or handlebars.
fn hostile_text() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("\\".to_string()),
        Just("\n".to_string()),
        Just("\r\n".to_string()),
        Just("}}".to_string()),
        Just("{{".to_string()),
        Just("{{{tenant.id}}}".to_string()),
        Just("{{#each tags}}".to_string()),
        Just("!Ref AWS::AccountId".to_string()),
        Just("${AWS::AccountId}".to_string()),
        Just("\", \"Effect\": \"Allow".to_string()),
        Just("\"}, {\"Effect\": \"Allow\", \"Action\": \"*\"".to_string()),
        Just("]]}".to_string()),
        Just("- !GetAtt x.y\n  key: value".to_string()),
        Just("\u{0}".to_string()),
        Just("\u{2028}".to_string()),
        Just("é€😀".to_string()),
        "[a-zA-Z0-9 ]{0,8}",
        any::<String>(),
    ];
    prop::collection::vec(fragment, 1..6).prop_map(|v| v.concat())
}

/// Whether `a` and `b` have the same structure: the same object keys, array lengths and value
/// types. Strings that hold a JSON object or array in `a` (documents nested in a template, such as
/// an SSM parameter's value) must hold one of the same structure in `b` when `deep`.
fn same_shape(a: &Value, b: &Value, deep: bool, at: &str) -> Result<(), String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            if !x.keys().eq(y.keys()) {
                return Err(format!(
                    "{at}: keys {:?} became {:?}",
                    x.keys().collect::<Vec<_>>(),
                    y.keys().collect::<Vec<_>>()
                ));
            }
            for (k, v) in x {
                same_shape(v, &y[k], deep, &format!("{at}.{k}"))?;
            }
            Ok(())
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Err(format!("{at}: {} elements became {}", x.len(), y.len()));
            }
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                same_shape(v, w, deep, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        (Value::String(s), Value::String(t)) => {
            if deep {
                if let Ok(inner @ (Value::Object(_) | Value::Array(_))) = serde_json::from_str::<Value>(s) {
                    let other =
                        serde_json::from_str::<Value>(t).map_err(|e| format!("{at}: nested JSON broke: {e}"))?;
                    return same_shape(&inner, &other, deep, &format!("{at}<json>"));
                }
            }
            Ok(())
        }
        (Value::Number(_), Value::Number(_)) | (Value::Bool(_), Value::Bool(_)) | (Value::Null, Value::Null) => Ok(()),
        _ => Err(format!("{at}: {a} became {b}")),
    }
}

/// Replaces every string of `v` (not object keys) with the next of `values`, cycling.
fn replace_strings(v: &Value, values: &[String], next: &mut usize) -> Value {
    match v {
        Value::String(_) => {
            let s = values[*next % values.len()].clone();
            *next += 1;
            Value::String(s)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| replace_strings(x, values, next)).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, x)| (k.clone(), replace_strings(x, values, next))).collect())
        }
        other => other.clone(),
    }
}

/// Loads a tenants directory holding one file with `text`, and formats every diagnostic (the
/// line and column arithmetic runs on the generated text).
fn load_one(dir: &Path, text: &str, settings: &OrgSettings, renderer: &Renderer) -> validate::LoadedTenants {
    std::fs::write(dir.join("fuzz.toml"), text).unwrap();
    let loaded = validate::load(dir, settings, renderer);
    for d in &loaded.errors {
        let _ = d.to_string();
    }
    loaded
}

#[test]
fn the_tenant_file_loader_never_panics_on_generated_files() {
    let renderer = renderer();
    let settings = OrgSettings::default();
    let dir = tempfile::tempdir().unwrap();
    let seeds: Vec<String> = ["acme", "globex"]
        .iter()
        .map(|t| {
            std::fs::read_to_string(repo().join(format!("tenants/{t}.toml")))
                .unwrap()
                .replace(&format!("id = \"{t}\""), "id = \"fuzz\"")
        })
        .collect();
    // A mutation: at a position (a fraction of the text), delete some characters and insert some.
    let mutation = (0.0..1.0f64, 0usize..12, hostile_text());
    let mutated = (0..seeds.len(), prop::collection::vec(mutation, 1..4)).prop_map(move |(i, edits)| {
        let mut text: Vec<char> = seeds[i].chars().collect();
        for (at, delete, insert) in edits {
            let at = ((text.len() as f64) * at) as usize;
            let end = (at + delete).min(text.len());
            text.splice(at..end, insert.chars());
        }
        text.into_iter().collect::<String>()
    });
    let soup = prop::collection::vec(
        prop_oneof![
            Just("[production]\n".to_string()),
            Just("[staging.blueprints.baseline]\n".to_string()),
            Just("[workloads.orders]\n".to_string()),
            Just("[promotion]\n".to_string()),
            Just("id = \"fuzz\"\n".to_string()),
            Just("email = ".to_string()),
            Just("policies = [".to_string()),
            Just("soak = \"".to_string()),
            Just("\"\"\"".to_string()),
            Just("= ".to_string()),
            Just(".".to_string()),
            "[a-z_]{1,12}",
            "[0-9]{1,20}",
            hostile_text(),
        ],
        0..40,
    )
    .prop_map(|v| v.concat());
    let (loaded, refused) = (Cell::new(0u32), Cell::new(0u32));
    let total = cases();
    runner(total)
        .run(&prop_oneof![3 => mutated, 1 => soup], |text| {
            let out = load_one(dir.path(), &text, &settings, &renderer);
            if out.tenants.is_empty() {
                prop_assert!(!out.errors.is_empty(), "a file that does not load must say why:\n{text}");
                refused.set(refused.get() + 1);
            } else {
                loaded.set(loaded.get() + 1);
            }
            Ok(())
        })
        .unwrap();
    eprintln!(
        "hostile: {total} generated tenant files, {} refused with diagnostics, {} loaded; no panic",
        refused.get(),
        loaded.get()
    );
    assert!(refused.get() > 0 && loaded.get() > 0, "the generator reaches both outcomes");
}

#[test]
fn rendered_documents_keep_their_structure_whatever_the_values_contain() {
    let renderer = renderer();
    let settings = OrgSettings::default();
    let loaded = validate::load(&repo().join("tenants"), &settings, &renderer);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let acme = loaded.tenants.iter().find(|t| t.spec.id == "acme").unwrap();
    // The example's contexts for each environment, with every blueprint's parameters.
    let mut documents: Vec<(Kind, String, Value)> = Vec::new();
    for env in Environment::ALL {
        let spec = acme.spec.account(env);
        let mut tags = spec.tags.clone();
        tags.extend(desired::managed_tags("acme", env));
        for p in renderer.names(Kind::Policy) {
            let ctx = desired::render_context(acme, env, &settings, "123456789012", &tags, &toml::Table::new());
            documents.push((Kind::Policy, p, ctx));
        }
        for b in renderer.names(Kind::Blueprint) {
            let given = spec.blueprints.get(&b).cloned().unwrap_or_default();
            let params = tenantry::params::with_defaults(renderer.params(&b), &given);
            let mut ctx = desired::render_context(acme, env, &settings, "123456789012", &tags, &params);
            ctx["workload"] = Value::String("orders".into());
            if renderer.render(Kind::Blueprint, &b, &ctx).is_ok() {
                documents.push((Kind::Blueprint, b, ctx));
            }
        }
    }
    let benign: Vec<Value> = documents
        .iter()
        .map(|(kind, name, ctx)| serde_json::from_str(&renderer.render(*kind, name, ctx).unwrap().body).unwrap())
        .collect();
    let total = cases();
    let too_large = Cell::new(0u32);
    runner(total)
        .run(&(0..documents.len(), prop::collection::vec(hostile_text(), 1..8)), |(i, values)| {
            let (kind, name, ctx) = &documents[i];
            let hostile = replace_strings(ctx, &values, &mut 0);
            match renderer.render(*kind, name, &hostile) {
                Ok(r) => {
                    let doc: Value = serde_json::from_str(&r.body)
                        .map_err(|e| TestCaseError::fail(format!("{name}: not JSON: {e}")))?;
                    // The outer document, for any value. (Documents nested in strings are checked
                    // from tenant files below: the ids they embed are validated.)
                    same_shape(&benign[i], &doc, false, name).map_err(TestCaseError::fail)?;
                }
                Err(RenderFailure::TooLarge { .. }) => too_large.set(too_large.get() + 1),
                Err(e) => return Err(TestCaseError::fail(format!("{name}: {e}"))),
            }
            Ok(())
        })
        .unwrap();
    eprintln!("hostile: {total} renderings with generated values, same structure every time ({} over the AWS size limit, refused)", too_large.get());
}

/// Tenant-file values with template syntax: refused with a diagnostic naming the field, or
/// rendered into documents of the same structure, nested JSON included.
#[test]
fn tenant_file_values_with_template_syntax_are_refused_or_cannot_change_structure() {
    let renderer = renderer();
    let settings = OrgSettings::default();
    let dir = tempfile::tempdir().unwrap();
    let acme =
        std::fs::read_to_string(repo().join("tenants/acme.toml")).unwrap().replace("id = \"acme\"", "id = \"fuzz\"");
    let build = |text: &str| -> Result<Vec<Value>, Vec<String>> {
        let out = load_one(dir.path(), text, &settings, &renderer);
        if !out.errors.is_empty() {
            return Err(out.errors.iter().map(|d| d.to_string()).collect());
        }
        let desired = desired::build(&out.tenants[0], &settings, &renderer, "123456789012")
            .map_err(|e| vec![format!("{} errors", e.len())])?;
        let mut docs = Vec::new();
        for a in &desired.accounts {
            docs.extend(a.policies.iter().map(|p| serde_json::from_str(&p.content).unwrap()));
            docs.extend(a.stacks.iter().map(|s| serde_json::from_str(&s.template).unwrap()));
        }
        let release =
            tenantry::promote::Release::render(&out.tenants[0], "orders", &renderer, "us-east-1", "123456789012")
                .unwrap();
        docs.push(serde_json::from_str(&release.template).unwrap());
        Ok(docs)
    };
    let benign = build(&acme).expect("the example loads");
    let fields: [(&str, &str); 5] = [
        ("name", "name = \"Acme Corp\""),
        ("production.tags.cost-center", "cost-center = \"cc-1001\""),
        ("production.email", "email = \"aws+acme-production@example.com\""),
        ("production.ou", "ou = \"Tenants/Production\""),
        ("staging.tags.data-classification", "data-classification = \"synthetic\""),
    ];
    let total = cases() / 10;
    let (refused, rendered) = (Cell::new(0u32), Cell::new(0u32));
    runner(total)
        .run(&(0..fields.len(), hostile_text()), |(f, value)| {
            let (field, line) = fields[f];
            let key = line.split(" = ").next().unwrap();
            let quoted = toml::Value::String(value.clone()).to_string();
            let text = acme.replacen(line, &format!("{key} = {quoted}"), 1);
            match build(&text) {
                Ok(docs) => {
                    rendered.set(rendered.get() + 1);
                    prop_assert_eq!(docs.len(), benign.len());
                    for (a, b) in benign.iter().zip(&docs) {
                        same_shape(a, b, true, field).map_err(TestCaseError::fail)?;
                    }
                }
                Err(diags) => {
                    refused.set(refused.get() + 1);
                    let leaf = field.rsplit('.').next().unwrap();
                    prop_assert!(diags.iter().any(|d| d.contains(leaf)), "the refusal names `{field}`: {diags:?}");
                }
            }
            Ok(())
        })
        .unwrap();
    eprintln!("hostile: {total} tenant files with template syntax in {} fields: {} rendered with the same structure, {} refused naming the field", fields.len(), rendered.get(), refused.get());
    assert!(rendered.get() > 0, "some hostile values are legal and render");
}

#[test]
fn an_oversize_service_control_policy_is_refused_with_its_size_and_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    let actions: Vec<String> = (0..400).map(|i| format!("\"ec2:Action{i:04}\"")).collect();
    let policy = format!("{{\"Version\": \"2012-10-17\", \"Statement\": [{{\"Effect\": \"Deny\", \"Action\": [{}], \"Resource\": \"*\"}}]}}", actions.join(", "));
    std::fs::write(dir.path().join("policies/big.json"), &policy).unwrap();
    let r = Renderer::load(&repo().join("blueprints"), &dir.path().join("policies")).unwrap();
    match r.render(Kind::Policy, "big", &serde_json::json!({})) {
        Err(e @ RenderFailure::TooLarge { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("big.json") && msg.contains("5120") && msg.contains("characters"), "{msg}");
        }
        other => panic!("a policy over 5,120 characters must be refused: {other:?}"),
    }
}
