//! Blueprint parameter declarations: `blueprints/<name>.toml` lists the parameters a blueprint
//! takes, their types, limits and defaults, so that `validate` catches a misspelt or mistyped
//! parameter before anything is rendered or deployed. Pure.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The declared parameters of one blueprint, by name.
pub type ParamSpecs = BTreeMap<String, ParamSpec>;

/// One declared parameter.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    /// `integer`, `string` or `boolean`.
    #[serde(rename = "type")]
    pub kind: ParamType,
    /// What the parameter is for.
    #[serde(default)]
    pub description: String,
    /// Value used when the tenant file does not set it; without one the parameter is required.
    #[serde(default)]
    pub default: Option<toml::Value>,
    /// Smallest allowed integer.
    #[serde(default)]
    pub minimum: Option<i64>,
    /// Largest allowed integer.
    #[serde(default)]
    pub maximum: Option<i64>,
    /// The only values allowed.
    #[serde(default)]
    pub allowed: Option<Vec<toml::Value>>,
    /// Longest allowed string, in characters.
    #[serde(default)]
    pub max_length: Option<usize>,
}

/// Parameter types.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// A TOML integer.
    Integer,
    /// A TOML string.
    String,
    /// A TOML boolean.
    Boolean,
}

/// Checks one value against its declaration; `Err` says what is wrong.
pub fn check_value(spec: &ParamSpec, value: &toml::Value) -> Result<(), String> {
    match (spec.kind, value) {
        (ParamType::Integer, toml::Value::Integer(i)) => {
            if let Some(min) = spec.minimum.filter(|m| i < m) {
                return Err(format!("{i} is below the minimum {min}"));
            }
            if let Some(max) = spec.maximum.filter(|m| i > m) {
                return Err(format!("{i} is above the maximum {max}"));
            }
        }
        (ParamType::String, toml::Value::String(s)) => {
            if let Some(max) = spec.max_length.filter(|m| s.chars().count() > *m) {
                return Err(format!("longer than {max} characters"));
            }
        }
        (ParamType::Boolean, toml::Value::Boolean(_)) => {}
        (kind, v) => return Err(format!("expected {}, found {} `{v}`", kind_name(kind), v.type_str())),
    }
    if let Some(allowed) = &spec.allowed {
        if !allowed.contains(value) {
            let list: Vec<String> = allowed.iter().map(ToString::to_string).collect();
            return Err(format!("`{value}` is not one of the allowed values: {}", list.join(", ")));
        }
    }
    Ok(())
}

fn kind_name(k: ParamType) -> &'static str {
    match k {
        ParamType::Integer => "an integer",
        ParamType::String => "a string",
        ParamType::Boolean => "a boolean",
    }
}

/// The parameters to render with: the tenant's values plus the declared defaults.
pub fn with_defaults(specs: Option<&ParamSpecs>, given: &toml::Table) -> toml::Table {
    let mut out = given.clone();
    for (name, spec) in specs.into_iter().flatten() {
        if let (false, Some(d)) = (out.contains_key(name), &spec.default) {
            out.insert(name.clone(), d.clone());
        }
    }
    out
}

/// Checks CloudFormation stack parameters given for a workload (`[workloads.<w>.<environment>]`)
/// against the `Parameters` section of its rendered template: each must be declared, and within
/// the declaration's `AllowedValues`, `MinValue`/`MaxValue` (a `Number`), `MinLength`/`MaxLength`
/// and `AllowedPattern`; a declared parameter without `Default` must be given. `Environment` is
/// tenantry's (the environment's name) and is never taken from the file. Returns
/// `(parameter, problem)` pairs; a key of `""` is about the whole table.
pub fn check_stack_parameters(template: &serde_json::Value, given: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let declared = template["Parameters"].as_object().cloned().unwrap_or_default();
    for (key, value) in given {
        if key == STACK_ENVIRONMENT {
            out.push((key.clone(), "`Environment` is set by tenantry to the environment's name; remove it".into()));
            continue;
        }
        let Some(decl) = declared.get(key) else {
            let names: Vec<&str> = declared.keys().map(String::as_str).filter(|k| *k != STACK_ENVIRONMENT).collect();
            out.push((
                key.clone(),
                format!("the workload's template declares no parameter `{key}` (it declares: {})", names.join(", ")),
            ));
            continue;
        };
        if let Err(why) = check_stack_value(decl, value) {
            out.push((key.clone(), why));
        }
    }
    for (key, decl) in &declared {
        if key != STACK_ENVIRONMENT && decl.get("Default").is_none() && !given.contains_key(key) {
            out.push((
                String::new(),
                format!("missing stack parameter `{key}`: the template declares it without a Default"),
            ));
        }
    }
    out
}

/// The stack parameter tenantry sets to the environment's name when a template declares it.
pub const STACK_ENVIRONMENT: &str = "Environment";

fn check_stack_value(decl: &serde_json::Value, value: &str) -> Result<(), String> {
    let number = |v: &serde_json::Value| v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok()));
    if let Some(allowed) = decl["AllowedValues"].as_array() {
        let strings: Vec<String> =
            allowed.iter().map(|a| a.as_str().map(str::to_string).unwrap_or_else(|| a.to_string())).collect();
        if !strings.iter().any(|a| a == value) {
            return Err(format!("`{value}` is not among the allowed values: {}", strings.join(", ")));
        }
    }
    if decl["Type"] == "Number" {
        let n: f64 =
            value.parse().map_err(|_| format!("`{value}` is not a number (the parameter's Type is Number)"))?;
        if let Some(min) = number(&decl["MinValue"]).filter(|min| n < *min) {
            return Err(format!("{value} is below the MinValue {min}"));
        }
        if let Some(max) = number(&decl["MaxValue"]).filter(|max| n > *max) {
            return Err(format!("{value} is above the MaxValue {max}"));
        }
    }
    let len = value.chars().count() as f64;
    if let Some(min) = number(&decl["MinLength"]).filter(|min| len < *min) {
        return Err(format!("`{value}` is shorter than the MinLength {min}"));
    }
    if let Some(max) = number(&decl["MaxLength"]).filter(|max| len > *max) {
        return Err(format!("`{value}` is longer than the MaxLength {max}"));
    }
    if let Some(pattern) = decl["AllowedPattern"].as_str() {
        // CloudFormation matches the whole value.
        if let Ok(re) = regex::Regex::new(&format!("^(?:{pattern})$")) {
            if !re.is_match(value) {
                return Err(format!("`{value}` does not match the AllowedPattern {pattern}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod stack_tests {
    use super::*;

    #[test]
    fn stack_parameters_are_checked_against_the_template() {
        let t = serde_json::json!({"Parameters": {
            "Environment": {"Type": "String", "AllowedValues": ["production", "staging"]},
            "Timeout": {"Type": "Number", "Default": 30, "MinValue": 0, "MaxValue": 43200},
            "Size": {"Type": "String", "AllowedValues": ["s", "m"]},
            "Name": {"Type": "String", "MaxLength": 4, "AllowedPattern": "[a-z]+"}
        }});
        let given = |pairs: &[(&str, &str)]| {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()
        };
        assert!(check_stack_parameters(&t, &given(&[("Size", "s"), ("Name", "ab"), ("Timeout", "60")])).is_empty());
        let problems = |pairs: &[(&str, &str)]| {
            check_stack_parameters(&t, &given(pairs))
                .into_iter()
                .map(|(k, m)| format!("{k}: {m}"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert!(problems(&[("Size", "s"), ("Name", "ab"), ("Environment", "staging")])
            .contains("Environment: `Environment` is set by tenantry"));
        assert!(problems(&[("Size", "s"), ("Name", "ab"), ("Timeout", "50000")]).contains("above the MaxValue 43200"));
        assert!(problems(&[("Size", "s"), ("Name", "ab"), ("Timeout", "-1")]).contains("below the MinValue 0"));
        assert!(problems(&[("Size", "s"), ("Name", "ab"), ("Timeout", "soon")]).contains("not a number"));
        assert!(problems(&[("Size", "xl"), ("Name", "ab")]).contains("not among the allowed values: s, m"));
        assert!(problems(&[("Size", "s"), ("Name", "abcde")]).contains("longer than the MaxLength 4"));
        assert!(problems(&[("Size", "s"), ("Name", "AB")]).contains("does not match the AllowedPattern"));
        assert!(problems(&[("Size", "s"), ("Name", "ab"), ("Other", "1")]).contains("declares no parameter `Other`"));
        assert!(problems(&[("Name", "ab")]).contains("missing stack parameter `Size`"));
    }
}
