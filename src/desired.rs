//! The desired state of a tenant: what its accounts should look like, fully rendered. Pure: a
//! function of the tenant file, `tenantry.toml`, the templates and the management account id.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;

use crate::config::OrgSettings;
use crate::guard::{Claim, Claims};
use crate::render::{Kind, RenderFailure, Renderer};
use crate::state::AccountRecord;
use crate::tenant::{tags, Environment, Lifecycle, Tenant};

/// Everything tenantry wants to be true for one tenant.
#[derive(Debug, Clone, Serialize)]
pub struct DesiredTenant {
    /// Tenant id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// What reconcile does with drift by default.
    pub drift: crate::tenant::DriftMode,
    /// `active` or `suspended`: a suspended tenant's accounts are desired in the quarantine OU
    /// with the [`QUARANTINE_POLICY_SOURCE`] SCP.
    pub lifecycle: Lifecycle,
    /// Production first, then staging.
    pub accounts: Vec<DesiredAccount>,
    /// The emails and account names every tenant file declares (shared by all tenants of a run):
    /// the guard refuses an account another tenant's file declares.
    #[serde(skip)]
    pub claims: std::sync::Arc<Claims>,
    /// `home_region` of `tenantry.toml`: where the tenant's stacks are.
    pub home_region: String,
}

impl DesiredTenant {
    /// Every rendered SCP of both environments (one shared by both appears twice).
    pub fn policies(&self) -> impl Iterator<Item = &DesiredPolicy> {
        self.accounts.iter().flat_map(|a| &a.policies)
    }

    /// The rendered SCP named `name`, of either environment (the name is the document's).
    pub fn policy(&self, name: &str) -> Option<&DesiredPolicy> {
        self.policies().find(|p| p.name == name)
    }

    /// The desired account of one environment.
    pub fn account(&self, env: Environment) -> &DesiredAccount {
        self.accounts.iter().find(|a| a.environment == env).expect("both environments are built")
    }

    /// What the guard checks an account against for `env`: this tenant environment, the account
    /// state records, the file's email and account name, the emails `record` kept, and every
    /// tenant file's claims.
    pub fn claim<'a>(&'a self, env: Environment, record: Option<&'a AccountRecord>) -> Claim<'a> {
        let want = self.account(env);
        let mut recorded_emails = Vec::new();
        if let Some(r) = record {
            recorded_emails.extend(std::iter::once(r.email.as_str()).filter(|e| !e.is_empty()));
            recorded_emails.extend(r.declared_emails.iter().map(String::as_str));
        }
        Claim {
            tenant: &self.id,
            environment: env,
            recorded: record.and_then(|r| r.account_id.as_deref()),
            file_email: &want.email,
            file_name: &want.account_name,
            recorded_emails,
            home_region: &self.home_region,
            claims: &self.claims,
        }
    }
}

/// One member account as it should be.
#[derive(Debug, Clone, Serialize)]
pub struct DesiredAccount {
    /// Which of the tenant's accounts this is.
    pub environment: Environment,
    /// Root user email.
    pub email: String,
    /// Account name passed to `CreateAccount`.
    pub account_name: String,
    /// Full OU path (with `ou_root`) the account must sit in.
    pub ou_path: String,
    /// Every tag the account must carry, tenantry's own included.
    pub tags: BTreeMap<String, String>,
    /// SCPs to create and attach, in file order.
    pub policies: Vec<DesiredPolicy>,
    /// Stacks to deploy, in dependency order (baseline first).
    pub stacks: Vec<DesiredStack>,
}

/// A rendered SCP for one account. SCPs are content-addressed: every account whose rendered
/// document is the same shares one policy, named after the document's digest.
#[derive(Debug, Clone, Serialize)]
pub struct DesiredPolicy {
    /// Name of the policy file in `policies/`.
    pub source: String,
    /// Organizations policy name: `tenantry-<source>-<first 16 hex digits of digest>`
    /// ([`policy_name`]).
    pub name: String,
    /// Minified policy document.
    #[serde(skip)]
    pub content: String,
    /// sha256 of `content`.
    pub digest: String,
}

/// A rendered blueprint for one account.
#[derive(Debug, Clone, Serialize)]
pub struct DesiredStack {
    /// Name of the blueprint file in `blueprints/`.
    pub blueprint: String,
    /// CloudFormation stack name: `tenantry-<blueprint>`.
    pub stack_name: String,
    /// The rendered template.
    #[serde(skip)]
    pub template: String,
    /// sha256 of `template`: the stack's version, kept in its `tenantry:version` tag.
    pub version: String,
}

/// A rendering problem, with the tenant-file field it belongs to.
#[derive(Debug)]
pub struct FieldError {
    /// Dotted path of the field in the tenant file, e.g. `staging.blueprints.agent-pipeline`.
    pub field: String,
    /// What failed.
    pub failure: RenderFailure,
}

/// The tags tenantry puts on everything it manages for a tenant environment (accounts, SCPs,
/// stacks): `tenantry:tenant`, `tenantry:environment`, `tenantry:managed-by`.
pub fn managed_tags(tenant_id: &str, env: Environment) -> BTreeMap<String, String> {
    BTreeMap::from([
        (tags::TENANT.to_string(), tenant_id.to_string()),
        (tags::ENVIRONMENT.to_string(), env.to_string()),
        (tags::MANAGED_BY.to_string(), "tenantry".to_string()),
    ])
}

pub use crate::tenant::POLICY_DIGEST_DIGITS;

/// The name of the SCP holding the document of policy file `source` whose sha256 (hex) is
/// `digest`: `tenantry-<source>-<first 16 hex digits>`. The same document gets the same name
/// for every tenant, so one SCP serves every account that renders it identically; another
/// document gets another SCP, so no tenant's change alters a policy another tenant uses.
pub fn policy_name(source: &str, digest: &str) -> String {
    format!("tenantry-{source}-{}", &digest[..POLICY_DIGEST_DIGITS.min(digest.len())])
}

/// The policy file of a content-addressed SCP name ([`policy_name`]) and the digest prefix it
/// carries; `None` for any other name, the per-account names of earlier versions included (a
/// `production` or `staging` part: policy file names may have none, see
/// [`crate::tenant::valid_policy_file_name`]).
pub fn shared_policy_parts(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("tenantry-")?;
    if rest.split('-').any(|part| part == "production" || part == "staging") {
        return None;
    }
    let (source, hex) = rest.rsplit_once('-')?;
    let is_digest =
        hex.len() == POLICY_DIGEST_DIGITS && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (is_digest && !source.is_empty()).then_some((source, hex))
}

/// The name prefix of the per-account SCPs earlier versions created, one per policy file and
/// account: `tenantry-<tenant>-<environment>-`. `apply` replaces them by shared ones.
pub fn legacy_policy_prefix(tenant_id: &str, env: Environment) -> String {
    format!("tenantry-{tenant_id}-{env}-")
}

/// The tags of a content-addressed SCP: tenantry's mark, the policy file and the full digest
/// (no tenant: the policy is every tenant's whose document it is).
pub fn policy_tags(source: &str, digest: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (tags::MANAGED_BY.to_string(), "tenantry".to_string()),
        (tags::POLICY_FILE.to_string(), source.to_string()),
        (tags::POLICY_SHA256.to_string(), digest.to_string()),
    ])
}

/// The name of the stack a blueprint is deployed as.
pub fn stack_name(blueprint: &str) -> String {
    format!("tenantry-{blueprint}")
}

/// The handlebars context for one account's templates. `params` are the blueprint's parameters
/// from the tenant file (empty for policies).
pub fn render_context(
    tenant: &Tenant,
    env: Environment,
    settings: &OrgSettings,
    management_account_id: &str,
    tags: &BTreeMap<String, String>,
    params: &toml::Table,
) -> serde_json::Value {
    let spec = tenant.spec.account(env);
    json!({
        "tenant": { "id": tenant.spec.id, "name": tenant.spec.name },
        "environment": env.as_str(),
        "account": {
            "email": spec.email,
            "name": tenant.account_name(env),
            "ou_path": settings.full_ou_path(&spec.ou),
        },
        "allowed_regions": spec.allowed_regions,
        "home_region": settings.home_region,
        "management_account_id": management_account_id,
        "tenantry": { "access_role": settings.access_role, "management_role": settings.management_role },
        "tags": tags,
        "params": serde_json::to_value(params).unwrap_or_default(),
    })
}

/// Builds the desired state of `tenant`. Every rendering problem is returned, not only the first.
pub fn build(
    tenant: &Tenant,
    settings: &OrgSettings,
    renderer: &Renderer,
    management_account_id: &str,
) -> Result<DesiredTenant, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut accounts = Vec::new();
    for env in Environment::ALL {
        let spec = tenant.spec.account(env);
        let mut account_tags = spec.tags.clone();
        account_tags.extend(managed_tags(&tenant.spec.id, env));
        account_tags.insert(tags::HOME_REGION.to_string(), settings.home_region.clone());
        let empty = toml::Table::new();
        let policy_ctx = render_context(tenant, env, settings, management_account_id, &account_tags, &empty);
        let mut policies = Vec::new();
        for (i, source) in spec.policies.iter().enumerate() {
            match renderer.render(Kind::Policy, source, &policy_ctx) {
                Ok(r) => policies.push(DesiredPolicy {
                    source: source.clone(),
                    name: policy_name(source, &r.digest),
                    content: r.body,
                    digest: r.digest,
                }),
                Err(failure) => errors.push(FieldError { field: format!("{env}.policies.{i}"), failure }),
            }
        }
        let mut stacks = Vec::new();
        for (blueprint, params) in ordered_blueprints(&spec.blueprints) {
            let params = crate::params::with_defaults(renderer.params(blueprint), params);
            let ctx = render_context(tenant, env, settings, management_account_id, &account_tags, &params);
            match renderer.render(Kind::Blueprint, blueprint, &ctx) {
                Ok(r) => stacks.push(DesiredStack {
                    blueprint: blueprint.clone(),
                    stack_name: stack_name(blueprint),
                    template: r.body,
                    version: r.digest,
                }),
                Err(failure) => errors.push(FieldError { field: format!("{env}.blueprints.{blueprint}"), failure }),
            }
        }
        let ou_path = match tenant.spec.lifecycle {
            Lifecycle::Active => settings.full_ou_path(&spec.ou),
            Lifecycle::Suspended => {
                policies.push(quarantine_policy(settings));
                settings.full_ou_path(&settings.quarantine_ou)
            }
        };
        accounts.push(DesiredAccount {
            environment: env,
            email: spec.email.clone(),
            account_name: tenant.account_name(env),
            ou_path,
            tags: account_tags,
            policies,
            stacks,
        });
    }
    if errors.is_empty() {
        Ok(DesiredTenant {
            id: tenant.spec.id.clone(),
            name: tenant.spec.name.clone(),
            drift: tenant.spec.drift,
            lifecycle: tenant.spec.lifecycle,
            accounts,
            claims: Default::default(),
            home_region: settings.home_region.clone(),
        })
    } else {
        Err(errors)
    }
}

pub use crate::tenant::QUARANTINE_POLICY_SOURCE;

/// The SCP of a suspended tenant's accounts: every action denied to every principal but
/// tenantry's access role (`access_role`, through which it keeps the accounts and their stacks;
/// the `protect-tenantry` policy keeps others from changing that role while the tenant is
/// active). Not tenantry's management role: SCPs never apply to the management account, and a
/// role of that name in a member account would be anyone's. The same document for every
/// suspended tenant, so one policy serves them all.
pub fn quarantine_policy(settings: &OrgSettings) -> DesiredPolicy {
    let document = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "TenantrySuspended",
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {"ArnNotLike": {"aws:PrincipalArn": [
                format!("arn:*:iam::*:role/{}", settings.access_role),
            ]}}
        }]
    });
    let content = document.to_string();
    let digest = crate::render::sha256_hex(content.as_bytes());
    DesiredPolicy {
        source: QUARANTINE_POLICY_SOURCE.to_string(),
        name: policy_name(QUARANTINE_POLICY_SOURCE, &digest),
        content,
        digest,
    }
}

/// Blueprints in deployment order: `baseline` first, the rest by name.
fn ordered_blueprints(map: &BTreeMap<String, toml::Table>) -> Vec<(&String, &toml::Table)> {
    let mut v: Vec<_> = map.iter().collect();
    v.sort_by_key(|(name, _)| (name.as_str() != "baseline", (*name).clone()));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quarantine_scp_denies_everything_to_all_but_tenantrys_access_role() {
        let settings =
            OrgSettings { access_role: "Access".into(), management_role: "tenantry-mgmt".into(), ..Default::default() };
        let p = quarantine_policy(&settings);
        let doc: serde_json::Value = serde_json::from_str(&p.content).unwrap();
        assert_eq!(
            doc["Statement"],
            json!([{
                "Sid": "TenantrySuspended",
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": {"ArnNotLike": {"aws:PrincipalArn": [
                    "arn:*:iam::*:role/Access"
                ]}}
            }])
        );
        assert_eq!(p.name, policy_name(QUARANTINE_POLICY_SOURCE, &p.digest));
        assert_eq!(shared_policy_parts(&p.name).map(|(source, _)| source), Some(QUARANTINE_POLICY_SOURCE));
        assert_eq!(quarantine_policy(&settings).digest, p.digest, "one document, one SCP for every suspended tenant");
    }

    #[test]
    fn a_content_addressed_scp_name_is_told_from_every_other_name() {
        let digest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let name = policy_name("deny-leave-organization", digest);
        assert_eq!(name, "tenantry-deny-leave-organization-0123456789abcdef");
        assert_eq!(shared_policy_parts(&name), Some(("deny-leave-organization", "0123456789abcdef")));
        for other in [
            "tenantry-acme-production-deny-leave-organization", // per-account, earlier versions
            "tenantry-acme-staging-deny-0123456789abcdef",      // per-account, of a digest-like file
            "tenantry-deny-0123456789ABCDEF",                   // not lower-case hex
            "tenantry-deny-0123456789abcde",                    // 15 digits
            "tenantry--0123456789abcdef",                       // no file name
            "FullAWSAccess",
            "team-deny-0123456789abcdef",
        ] {
            assert_eq!(shared_policy_parts(other), None, "{other}");
        }
    }
}
