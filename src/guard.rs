//! The blast-radius guard: decides whether an account may be touched on behalf of a tenant.
//! Pure: the caller supplies what state records, what the tenant files declare and what the
//! account itself says (its tags, root email and name, read live).
//!
//! An account belongs to exactly one tenant and environment, forever. Tags alone are not proof
//! (anyone with `organizations:TagResource` can write them) and neither is state alone (anyone
//! with write access to the state bucket can edit it): the account's root email, which only the
//! account's owner can change, must also be one this tenant environment is known by, and must not
//! be one another tenant's file declares.

use std::collections::BTreeMap;

use crate::tenant::{tags, Environment, Tenant};

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

/// The root emails and account names every tenant file declares, so that no tenant's run can
/// take another tenant's account for its own. Keys: emails lowercased, names as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// The organization's management account: never any tenant's.
    pub management_account_id: String,
    /// Lowercased root email → (tenant, environment) whose file declares it.
    pub emails: BTreeMap<String, (String, Environment)>,
    /// Account name → (tenant, environment) whose file declares it (or whose default it is).
    pub names: BTreeMap<String, (String, Environment)>,
    /// Account id → (tenant, environment) whose state record names it while no tenant file
    /// declares that tenant (a file removed): such an account is never another tenant's.
    pub recorded: BTreeMap<String, (String, Environment)>,
}

impl Claims {
    /// The claims of every loaded tenant file, in the organization managed from
    /// `management_account_id`.
    pub fn of(tenants: &[Tenant], management_account_id: &str) -> Claims {
        let mut claims = Claims { management_account_id: management_account_id.to_string(), ..Claims::default() };
        for t in tenants {
            for env in Environment::ALL {
                let owner = (t.spec.id.clone(), env);
                claims.emails.insert(t.spec.account(env).email.to_lowercase(), owner.clone());
                claims.names.insert(t.account_name(env), owner);
            }
        }
        claims
    }

    /// Adds what the state record of a tenant no file declares says: `account_id` is that
    /// tenant environment's.
    pub fn add_recorded(&mut self, tenant: &str, environment: Environment, account_id: &str) {
        self.recorded.insert(account_id.to_string(), (tenant.to_string(), environment));
    }

    /// The tenant environment, other than `tenant`'s, whose file declares `email` or `name`.
    fn other_owner(&self, tenant: &str, email: &str, name: &str) -> Option<(String, &(String, Environment))> {
        let by_email = self
            .emails
            .get(&email.to_lowercase())
            .filter(|(t, _)| t != tenant)
            .map(|o| (format!("root email `{email}`"), o));
        let by_name = || self.names.get(name).filter(|(t, _)| t != tenant).map(|o| (format!("name \"{name}\""), o));
        by_email.or_else(by_name)
    }
}

/// Who an account must belong to, and what is known of that tenant environment.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    /// The tenant being worked on.
    pub tenant: &'a str,
    /// Its environment.
    pub environment: Environment,
    /// The account id state records for this tenant environment, if any.
    pub recorded: Option<&'a str>,
    /// The root email the tenant file declares now.
    pub file_email: &'a str,
    /// The account name the tenant file declares now (or its default).
    pub file_name: &'a str,
    /// Other root emails state recorded for this tenant environment (the email the account was
    /// created or adopted with, and every email the file declared since). State can be written
    /// by others, so such an email counts only together with the file's account name.
    /// Compared case-insensitively.
    pub recorded_emails: Vec<&'a str>,
    /// The region tenantry deploys stacks in (`home_region`): an account tagged
    /// `tenantry:home-region` with another has its stacks there.
    pub home_region: &'a str,
    /// What every tenant file declares.
    pub claims: &'a Claims,
}

/// What an account says about itself, read live (`DescribeAccount`, `ListTagsForResource`).
#[derive(Debug, Clone, Copy)]
pub struct LiveAccount<'a> {
    /// 12-digit account id.
    pub id: &'a str,
    /// Root email.
    pub email: &'a str,
    /// Account name.
    pub name: &'a str,
    /// Its tags.
    pub tags: &'a BTreeMap<String, String>,
}

/// Checks that `account` belongs to `claim.tenant`/`claim.environment`. Refuses when:
/// - it is the management account;
/// - state records another account for this tenant environment;
/// - another tenant's file declares the account's root email or name;
/// - the account is tagged as another tenant's or another environment's, or with another home
///   region than `claim.home_region` (its stacks are there);
/// - its root email is not the tenant file's, unless it is one state recorded for this tenant
///   environment **and** the account's name is the file's (one of the two must come from the
///   file, which state cannot forge);
/// - it has no `tenantry:tenant` tag, unless state records it for this tenant environment (so
///   that a removed tag can be put back).
pub fn check_ownership(claim: &Claim<'_>, account: &LiveAccount<'_>) -> Result<(), Refusal> {
    let refuse = |reason: String| Refusal {
        tenant: claim.tenant.to_string(),
        environment: claim.environment,
        account_id: account.id.to_string(),
        reason,
    };
    if account.id == claim.claims.management_account_id {
        return Err(refuse("it is the organization's management account, which is never a tenant's".into()));
    }
    if let Some(r) = claim.recorded {
        if r != account.id {
            return Err(refuse(format!("state records account {r} for this tenant environment")));
        }
    }
    if let Some((tenant, env)) = claim.claims.recorded.get(account.id).filter(|(t, _)| t != claim.tenant) {
        return Err(refuse(format!(
            "the state of tenant `{tenant}` ({env}), whose file tenants/{tenant}.toml is gone, records this account: a removed tenant's accounts are never another's (restore that file)"
        )));
    }
    if let Some((what, (tenant, env))) = claim.claims.other_owner(claim.tenant, account.email, account.name) {
        return Err(refuse(format!("its {what} is declared by tenant `{tenant}` ({env}) in tenants/{tenant}.toml")));
    }
    match account.tags.get(tags::TENANT) {
        Some(t) if t != claim.tenant => return Err(refuse(format!("the account is tagged {}={t}", tags::TENANT))),
        Some(_) => {}
        None if claim.recorded == Some(account.id) => {}
        None => return Err(refuse(format!("the account has no {} tag", tags::TENANT))),
    }
    if let Some(e) = account.tags.get(tags::ENVIRONMENT).filter(|e| *e != claim.environment.as_str()) {
        return Err(refuse(format!("the account is tagged {}={e}", tags::ENVIRONMENT)));
    }
    if let Some(r) = account.tags.get(tags::HOME_REGION).filter(|r| *r != claim.home_region) {
        return Err(refuse(format!(
            "its tenantry stacks are in region {r} (its {} tag), but tenantry.toml says home_region = \"{}\"; set home_region back to \"{r}\" (moving stacks to another region is not supported: it would create them all again)",
            tags::HOME_REGION,
            claim.home_region
        )));
    }
    if claim.file_email.eq_ignore_ascii_case(account.email) {
        return Ok(());
    }
    if !claim.recorded_emails.iter().any(|k| k.eq_ignore_ascii_case(account.email)) {
        return Err(refuse(format!(
            "its root email `{}` is neither the tenant file's (`{}`) nor one recorded for this tenant environment",
            account.email, claim.file_email
        )));
    }
    if account.name != claim.file_name {
        return Err(refuse(format!(
            "its root email `{}` is not the tenant file's (`{}`) and its name \"{}\" is not the file's (\"{}\"): an email recorded in state counts only with the file's account name",
            account.email, claim.file_email, account.name, claim.file_name
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags_of(t: &str, e: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(tags::TENANT.into(), t.into()), (tags::ENVIRONMENT.into(), e.into())])
    }

    fn claims() -> Claims {
        Claims {
            management_account_id: "123456789012".into(),
            emails: BTreeMap::from([
                ("acme@x.io".into(), ("acme".into(), Environment::Production)),
                ("globex@x.io".into(), ("globex".into(), Environment::Production)),
            ]),
            names: BTreeMap::from([
                ("Acme (production)".into(), ("acme".into(), Environment::Production)),
                ("Globex (production)".into(), ("globex".into(), Environment::Production)),
            ]),
            recorded: BTreeMap::from([("777".into(), ("initech".into(), Environment::Production))]),
        }
    }

    /// `known`: the file's email first, then the recorded ones; the file's name is "Acme (production)".
    fn check(
        env: Environment,
        recorded: Option<&str>,
        known: &[&str],
        id: &str,
        email: &str,
        name: &str,
        t: &BTreeMap<String, String>,
    ) -> Result<(), Refusal> {
        let c = claims();
        let claim = Claim {
            tenant: "acme",
            environment: env,
            recorded,
            file_email: known[0],
            file_name: "Acme (production)",
            recorded_emails: known[1..].to_vec(),
            home_region: "us-east-1",
            claims: &c,
        };
        check_ownership(&claim, &LiveAccount { id, email, name, tags: t })
    }

    const P: Environment = Environment::Production;

    #[test]
    fn own_tagged_account_passes() {
        let t = tags_of("acme", "production");
        assert!(check(P, Some("1"), &["acme@x.io"], "1", "ACME@x.io", "Acme (production)", &t).is_ok());
        assert!(check(P, None, &["acme@x.io"], "1", "acme@x.io", "Acme (production)", &t).is_ok());
    }

    #[test]
    fn other_tenants_tag_is_refused_even_when_state_agrees() {
        let r = check(
            P,
            Some("1"),
            &["acme@x.io"],
            "1",
            "acme@x.io",
            "Acme (production)",
            &tags_of("globex", "production"),
        );
        assert!(r.unwrap_err().reason.contains("globex"));
    }

    #[test]
    fn an_account_a_removed_tenants_state_records_is_refused_whatever_its_tags_say() {
        let t = tags_of("acme", "production");
        let r = check(P, None, &["acme@x.io"], "777", "acme@x.io", "Acme (production)", &t);
        assert!(r.unwrap_err().reason.contains("the state of tenant `initech` (production), whose file"));
    }

    #[test]
    fn state_mismatch_is_refused() {
        let r =
            check(Environment::Staging, Some("2"), &["acme@x.io"], "1", "acme@x.io", "n", &tags_of("acme", "staging"));
        assert!(r.unwrap_err().reason.contains("state records account 2"));
    }

    #[test]
    fn wrong_environment_tag_is_refused() {
        assert!(check(
            Environment::Staging,
            Some("1"),
            &["acme@x.io"],
            "1",
            "acme@x.io",
            "n",
            &tags_of("acme", "production")
        )
        .is_err());
    }

    #[test]
    fn untagged_account_only_when_recorded_and_email_known() {
        let none = BTreeMap::new();
        assert!(check(P, Some("1"), &["acme@x.io"], "1", "acme@x.io", "n", &none).is_ok());
        assert!(check(P, Some("1"), &["acme@x.io"], "1", "other@x.io", "n", &none).is_err());
        assert!(check(P, None, &["acme@x.io"], "1", "acme@x.io", "n", &none).is_err());
    }

    #[test]
    fn forged_tags_and_forged_state_are_refused_on_the_email() {
        // Another tenant's account, tagged as acme's and recorded in acme's state: its root
        // email is not acme's.
        let t = tags_of("acme", "production");
        let r = check(P, Some("9"), &["acme@x.io"], "9", "someone@x.io", "n", &t).unwrap_err();
        assert!(r.reason.contains("neither the tenant file's"), "{}", r.reason);
        // ... and when the forged state also lists that email, a file that declares it still wins.
        let r = check(P, Some("9"), &["acme@x.io", "globex@x.io"], "9", "globex@x.io", "n", &t).unwrap_err();
        assert!(r.reason.contains("declared by tenant `globex`"), "{}", r.reason);
        let r = check(P, Some("9"), &["acme@x.io", "g2@x.io"], "9", "g2@x.io", "Globex (production)", &t).unwrap_err();
        assert!(r.reason.contains("name \"Globex (production)\""), "{}", r.reason);
    }

    #[test]
    fn an_account_whose_stacks_are_in_another_region_is_refused() {
        let mut t = tags_of("acme", "production");
        t.insert(tags::HOME_REGION.into(), "eu-west-1".into());
        let r = check(P, Some("1"), &["acme@x.io"], "1", "acme@x.io", "Acme (production)", &t).unwrap_err();
        assert!(r.reason.contains("set home_region back to \"eu-west-1\""), "{}", r.reason);
        t.insert(tags::HOME_REGION.into(), "us-east-1".into());
        assert!(check(P, Some("1"), &["acme@x.io"], "1", "acme@x.io", "Acme (production)", &t).is_ok());
    }

    #[test]
    fn the_management_account_is_never_a_tenants() {
        let t = tags_of("acme", "production");
        let r = check(P, Some("123456789012"), &["acme@x.io"], "123456789012", "acme@x.io", "Acme (production)", &t)
            .unwrap_err();
        assert!(r.reason.contains("management account"), "{}", r.reason);
    }

    #[test]
    fn an_earlier_recorded_email_is_known_only_with_the_files_name() {
        let t = tags_of("acme", "production");
        assert!(check(P, Some("1"), &["new@x.io", "old@x.io"], "1", "old@x.io", "Acme (production)", &t).is_ok());
        // Forged state that records some other account's email: that account's own name gives it away.
        let r = check(P, Some("1"), &["new@x.io", "payments@x.io"], "1", "payments@x.io", "Payments", &t).unwrap_err();
        assert!(r.reason.contains("counts only with the file's account name"), "{}", r.reason);
    }
}
