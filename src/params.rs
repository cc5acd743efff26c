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
