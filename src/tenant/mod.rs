//! Tenant files (`tenants/<id>.toml`) → the desired model. Pure: reads the files, never AWS.
//!
//! A tenant file declares the tenant's two member accounts, `production` and `staging` (the
//! digital twin where coding agents iterate). `load` parses every file, checks every rule and
//! returns *all* problems at once, each pointing at file, line and field.

mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use validate::{load, valid_policy_file_name, valid_tenant_id, LoadedTenants};

/// The two accounts every tenant has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// The client's production account.
    Production,
    /// The digital-twin staging account where agents iterate until their work converges.
    Staging,
}

impl Environment {
    /// Both environments, production first.
    pub const ALL: [Environment; 2] = [Environment::Production, Environment::Staging];

    /// The environment named `s` as in tags, state and files (`production`, `staging`).
    pub fn from_name(s: &str) -> Option<Environment> {
        Environment::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// The environment's name as used in tags, state and files.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Production => "production",
            Environment::Staging => "staging",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What reconcile does with drift for this tenant by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DriftMode {
    /// Report drift only.
    #[default]
    Report,
    /// Report and fix drift.
    Remediate,
}

/// The `source` of the SCP a suspended tenant's accounts carry (not a file in `policies/`, and
/// reserved there; its name is content-addressed like the others':
/// `tenantry-quarantine-<digest prefix>`).
pub const QUARANTINE_POLICY_SOURCE: &str = "quarantine";

/// Where a tenant is in its life as a client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Lifecycle {
    /// Managed as the file says.
    #[default]
    Active,
    /// Frozen: both accounts sit in `quarantine_ou` (of `tenantry.toml`) with an SCP that denies
    /// everything to every principal but tenantry's access role; stacks and data stay;
    /// `stage`, `promote` and `rollback` are refused. Setting `active` again puts the accounts
    /// back in their OUs and detaches that SCP.
    Suspended,
}

impl Lifecycle {
    /// Whether this is `active` (the default).
    pub fn is_active(&self) -> bool {
        *self == Lifecycle::Active
    }

    /// The value as written in tenant files.
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Active => "active",
            Lifecycle::Suspended => "suspended",
        }
    }
}

/// The contents of one tenant file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[schemars(deny_unknown_fields)]
pub struct TenantSpec {
    /// Tenant id: a slug of lowercase letters, digits and `-`; must equal the file's stem.
    pub id: String,
    /// Display name of the client.
    pub name: String,
    /// Default reconcile behaviour for drift.
    #[serde(default)]
    pub drift: DriftMode,
    /// `active` (the default) or `suspended`: a suspended tenant's accounts are moved to the
    /// quarantine OU with an SCP that denies everything to all but tenantry's access role.
    #[serde(default)]
    pub lifecycle: Lifecycle,
    /// The production account.
    pub production: AccountSpec,
    /// The digital-twin staging account.
    pub staging: AccountSpec,
    /// Workloads promoted from staging to production (`tenantry stage` / `promote`): name → spec.
    #[serde(default)]
    pub workloads: BTreeMap<String, WorkloadSpec>,
    /// When a staged release may go to production.
    #[serde(default)]
    pub promotion: PromotionPolicy,
}

/// A workload: a blueprint rendered once into a release artifact that staging proves and
/// production receives byte for byte.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[schemars(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Name of a file in `blueprints/` (without `.json`).
    pub blueprint: String,
    /// Blueprint parameters, rendered into the artifact (the same in both environments; part of
    /// the release digest).
    #[serde(default)]
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub parameters: toml::Table,
    /// CloudFormation stack parameters in production (the template's `Parameters`): the
    /// environment's settings, not part of the artifact.
    #[serde(default)]
    pub production: BTreeMap<String, String>,
    /// CloudFormation stack parameters in staging.
    #[serde(default)]
    pub staging: BTreeMap<String, String>,
}

impl WorkloadSpec {
    /// The stack parameters of one environment.
    pub fn stack_parameters(&self, env: Environment) -> &BTreeMap<String, String> {
        match env {
            Environment::Production => &self.production,
            Environment::Staging => &self.staging,
        }
    }
}

/// Who decides that a converged release goes to production.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Approval {
    /// Every promotion needs `--approve` or `tenantry approve`.
    #[default]
    Manual,
    /// Low-risk promotions go on their own; high-risk ones still need approval.
    Auto,
}

/// The promotion policy of a tenant: the gates a release passes before production.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[schemars(deny_unknown_fields)]
pub struct PromotionPolicy {
    /// Checks that must have a passing result for the release digest (e.g. `tests`, `review`,
    /// `security-audit`).
    #[serde(default)]
    pub required_checks: Vec<String>,
    /// How long a release must have been staged before promotion, e.g. `30m`, `2h` (default 0).
    #[serde(default)]
    pub soak: Option<String>,
    /// `manual` (default) or `auto`.
    #[serde(default)]
    pub approval: Approval,
    /// Resource types whose change makes a promotion high risk, besides replacements, removals
    /// and IAM, KMS and policy resources; `*` matches any suffix (e.g. `AWS::RDS::*`).
    #[serde(default)]
    pub high_risk_resource_types: Vec<String>,
}

impl PromotionPolicy {
    /// The soak time in seconds (0 when unset or unparsable; validation reports the latter).
    pub fn soak_seconds(&self) -> u64 {
        self.soak.as_deref().and_then(|s| humantime::parse_duration(s).ok()).map_or(0, |d| d.as_secs())
    }
}

impl TenantSpec {
    /// The account spec of one environment.
    pub fn account(&self, env: Environment) -> &AccountSpec {
        match env {
            Environment::Production => &self.production,
            Environment::Staging => &self.staging,
        }
    }

    /// The account name used for `CreateAccount`: `<env>.account_name`, else `<name> (<env>)`.
    pub fn account_name(&self, env: Environment) -> String {
        self.account(env).account_name.clone().unwrap_or_else(|| format!("{} ({})", self.name, env))
    }

    /// The field a diagnostic about the account name points at: `<env>.account_name` when it is
    /// set, else `name` (from which the default is made).
    pub fn account_name_field(&self, env: Environment) -> String {
        if self.account(env).account_name.is_some() {
            format!("{env}.account_name")
        } else {
            "name".to_string()
        }
    }
}

/// One member account of a tenant.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[schemars(deny_unknown_fields)]
pub struct AccountSpec {
    /// Root user email of the account; unique across all tenants (compared case-insensitively).
    pub email: String,
    /// Account name (at most 50 characters). Default: `<name> (<environment>)`.
    #[serde(default)]
    pub account_name: Option<String>,
    /// OU path under the organization root (plus `ou_root`), e.g. `Tenants/Production`.
    pub ou: String,
    /// Regions the account may use; enforced by the `region-allowlist` SCP.
    pub allowed_regions: Vec<String>,
    /// Tags on the account, besides tenantry's own `tenantry:*` tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Service control policies to attach: names of files in `policies/` (without `.json`).
    #[serde(default)]
    pub policies: Vec<String>,
    /// Blueprints to deploy: name of a file in `blueprints/` → its parameters.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Map<String, serde_json::Value>>")]
    pub blueprints: BTreeMap<String, toml::Table>,
}

/// A loaded tenant: its spec and where it came from.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The parsed file.
    pub spec: TenantSpec,
    /// The file it was read from.
    pub path: PathBuf,
}

impl Tenant {
    /// The account name used for `CreateAccount` ([`TenantSpec::account_name`]).
    pub fn account_name(&self, env: Environment) -> String {
        self.spec.account_name(env)
    }
}

/// How many hex digits of a policy document's sha256 name its SCP (64 bits: two different
/// documents of one organization never share a name).
pub const POLICY_DIGEST_DIGITS: usize = 16;

/// Tag keys tenantry sets on the accounts, stacks and SCPs it manages.
pub mod tags {
    /// The tenant id.
    pub const TENANT: &str = "tenantry:tenant";
    /// `production` or `staging`.
    pub const ENVIRONMENT: &str = "tenantry:environment";
    /// Always `tenantry`.
    pub const MANAGED_BY: &str = "tenantry:managed-by";
    /// Account tag: the region tenantry deploys the account's stacks in (`home_region`). A
    /// `home_region` that differs from it is refused: the stacks are there.
    pub const HOME_REGION: &str = "tenantry:home-region";
    /// Stack tag: the sha256 of the rendered template.
    pub const VERSION: &str = "tenantry:version";
    /// Stack tag: the blueprint name.
    pub const BLUEPRINT: &str = "tenantry:blueprint";
    /// Stack tag: when reconcile last redeployed the stack to revert drift (RFC 3339).
    pub const REDEPLOYED_AT: &str = "tenantry:redeployed-at";
    /// Workload stack tag: the workload name.
    pub const WORKLOAD: &str = "tenantry:workload";
    /// Workload stack tag: the release digest the stack runs.
    pub const RELEASE: &str = "tenantry:release";
    /// SCP tag: the policy file in `policies/` the document was rendered from.
    pub const POLICY_FILE: &str = "tenantry:policy-file";
    /// SCP tag: the sha256 of the document (its name carries the first 16 hex digits).
    pub const POLICY_SHA256: &str = "tenantry:sha256";
}
