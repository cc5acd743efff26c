//! The blast-radius guard: decides whether an account may be touched on behalf of a tenant.
//! Pure: the caller supplies what state records and what the account's tags say.

use std::collections::BTreeMap;

use crate::tenant::{tags, Environment};

/// Why an account must not be touched for a tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refusing to touch account {account_id} for tenant `{tenant}` ({environment}): {reason}")]
pub struct Refusal {
    /// The tenant being worked on.
    pub tenant: String,
    /// Its environment.
    pub environment: Environment,
    /// The account that was about to be touched.
    pub account_id: String,
    /// What disagrees.
    pub reason: String,
}

/// Checks that `account_id` belongs to `tenant`/`env`: the account recorded in state (if any) must
/// be this one, and the account's `tenantry:tenant` and `tenantry:environment` tags must name this
/// tenant and environment. A missing tenant tag is accepted only for the account state records
/// whose root email is the tenant's (so that a removed tag can be put back).
pub fn check_ownership(
    tenant: &str,
    env: Environment,
    account_id: &str,
    recorded: Option<&str>,
    account_tags: &BTreeMap<String, String>,
    email_matches: bool,
) -> Result<(), Refusal> {
    let refuse = |reason: String| Refusal {
        tenant: tenant.to_string(),
        environment: env,
        account_id: account_id.to_string(),
        reason,
    };
    if let Some(r) = recorded {
        if r != account_id {
            return Err(refuse(format!("state records account {r} for this tenant environment")));
        }
    }
    match account_tags.get(tags::TENANT) {
        Some(t) if t != tenant => return Err(refuse(format!("the account is tagged {}={t}", tags::TENANT))),
        Some(_) => {}
        None if recorded == Some(account_id) && email_matches => {}
        None => return Err(refuse(format!("the account has no {} tag", tags::TENANT))),
    }
    match account_tags.get(tags::ENVIRONMENT) {
        Some(e) if e != env.as_str() => Err(refuse(format!("the account is tagged {}={e}", tags::ENVIRONMENT))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags_of(t: &str, e: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(tags::TENANT.into(), t.into()), (tags::ENVIRONMENT.into(), e.into())])
    }

    #[test]
    fn own_tagged_account_passes() {
        assert!(check_ownership("acme", Environment::Production, "1", Some("1"), &tags_of("acme", "production"), true).is_ok());
        assert!(check_ownership("acme", Environment::Production, "1", None, &tags_of("acme", "production"), true).is_ok());
    }

    #[test]
    fn other_tenants_tag_is_refused_even_when_state_agrees() {
        let r = check_ownership("acme", Environment::Production, "1", Some("1"), &tags_of("globex", "production"), true);
        assert!(r.unwrap_err().reason.contains("globex"));
    }

    #[test]
    fn state_mismatch_is_refused() {
        let r = check_ownership("acme", Environment::Staging, "1", Some("2"), &tags_of("acme", "staging"), true);
        assert!(r.unwrap_err().reason.contains("state records account 2"));
    }

    #[test]
    fn wrong_environment_tag_is_refused() {
        assert!(check_ownership("acme", Environment::Staging, "1", Some("1"), &tags_of("acme", "production"), true).is_err());
    }

    #[test]
    fn untagged_account_only_when_recorded_and_email_matches() {
        let none = BTreeMap::new();
        assert!(check_ownership("acme", Environment::Staging, "1", Some("1"), &none, true).is_ok());
        assert!(check_ownership("acme", Environment::Staging, "1", Some("1"), &none, false).is_err());
        assert!(check_ownership("acme", Environment::Staging, "1", None, &none, true).is_err());
    }
}
