//! AWS Organizations adapter (management account). Each function is one API call or one
//! paginated listing; errors name the call and carry the service's code.

use std::collections::BTreeMap;

use aws_sdk_organizations::operation::create_account::CreateAccountError;
use aws_sdk_organizations::types::{
    AccountStatus, CreateAccountState, OrganizationFeatureSet, PolicyType, PolicyTypeStatus, Tag,
};
use aws_sdk_organizations::Client;

use super::types::{AccountSummary, CreateRequest, CreateRequestState, OrgOverview};
use super::{Classify, Error, ErrorKind, OrMissing};

/// Results of the Organizations adapters.
type Result<T, E = Error> = std::result::Result<T, E>;
use aws_sdk_organizations::error::SdkError;

/// Describes the organization and its root (`DescribeOrganization`, `ListRoots`). `None` when the
/// caller's account is not in an organization.
pub async fn overview(org: &Client) -> Result<Option<OrgOverview>> {
    // Both at once: outside an organization both fail, and DescribeOrganization's answer says so.
    let (desc, roots) = tokio::join!(
        async { org.describe_organization().send().await.classify("organizations:DescribeOrganization") },
        async { org.list_roots().send().await.classify("organizations:ListRoots") }
    );
    let desc = match desc {
        Ok(d) => d,
        // AWSOrganizationsNotInUseException
        Err(e) if e.is(ErrorKind::NotFound) => return Ok(None),
        Err(e) => return Err(e),
    };
    let o = desc.organization.or_missing("organizations:DescribeOrganization", "organization")?;
    let roots = roots?;
    let root = roots.roots.unwrap_or_default().into_iter().next().or_missing("organizations:ListRoots", "root")?;
    let scp_enabled = root.policy_types().iter().any(|p| {
        p.r#type() == Some(&PolicyType::ServiceControlPolicy) && p.status() == Some(&PolicyTypeStatus::Enabled)
    });
    Ok(Some(OrgOverview {
        organization_id: o.id.unwrap_or_default(),
        management_account_id: o.master_account_id.unwrap_or_default(),
        all_features: o.feature_set == Some(OrganizationFeatureSet::All),
        root_id: root.id.unwrap_or_default(),
        scp_enabled,
    }))
}

/// Creates an organization with all features (`CreateOrganization`). Returns `false` when one
/// already existed (created concurrently: `AlreadyInOrganizationException`), which is not an error.
pub async fn create_organization(org: &Client) -> Result<bool> {
    match org.create_organization().feature_set(OrganizationFeatureSet::All).send().await {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_already_in_organization_exception()) => Ok(false),
        Err(e) => Err(Error::from_sdk("organizations:CreateOrganization", e)),
    }
}

/// Enables service control policies on the root (`EnablePolicyType`); already enabled is fine.
pub async fn enable_scps(org: &Client, root_id: &str) -> Result<()> {
    match org.enable_policy_type().root_id(root_id).policy_type(PolicyType::ServiceControlPolicy).send().await {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_policy_type_already_enabled_exception()) => Ok(()),
        Err(e) => Err(Error::from_sdk("organizations:EnablePolicyType", e)),
    }
}

/// The child OUs of a parent, name → id (`ListOrganizationalUnitsForParent`, all pages).
pub async fn child_ous(org: &Client, parent_id: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut pages = org.list_organizational_units_for_parent().parent_id(parent_id).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.classify("organizations:ListOrganizationalUnitsForParent")?;
        for ou in page.organizational_units.unwrap_or_default() {
            if let (Some(name), Some(id)) = (ou.name, ou.id) {
                out.insert(name, id);
            }
        }
    }
    Ok(out)
}

/// Creates an OU (`CreateOrganizationalUnit`) and returns its id; if one with that name appeared
/// meanwhile (another process), returns that one's id.
pub async fn create_ou(org: &Client, parent_id: &str, name: &str) -> Result<String> {
    match org.create_organizational_unit().parent_id(parent_id).name(name).send().await {
        Ok(out) => {
            out.organizational_unit.and_then(|o| o.id).or_missing("organizations:CreateOrganizationalUnit", "OU id")
        }
        Err(e) if e.as_service_error().is_some_and(|s| s.is_duplicate_organizational_unit_exception()) => {
            child_ous(org, parent_id)
                .await?
                .remove(name)
                .or_missing("organizations:ListOrganizationalUnitsForParent", "OU reported as a duplicate")
        }
        Err(e) => Err(Error::from_sdk("organizations:CreateOrganizationalUnit", e)),
    }
}

/// Every account in the organization (`ListAccounts`, all pages).
pub async fn list_accounts(org: &Client) -> Result<Vec<AccountSummary>> {
    let mut out = Vec::new();
    let mut pages = org.list_accounts().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.classify("organizations:ListAccounts")?;
        out.extend(page.accounts.unwrap_or_default().into_iter().map(summary));
    }
    Ok(out)
}

/// Ids of the accounts directly under a root or OU (`ListAccountsForParent`, all pages).
pub async fn accounts_for_parent(org: &Client, parent_id: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut pages = org.list_accounts_for_parent().parent_id(parent_id).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.classify("organizations:ListAccountsForParent")?;
        out.extend(page.accounts.unwrap_or_default().into_iter().filter_map(|a| a.id));
    }
    Ok(out)
}

/// One account (`DescribeAccount`); `None` when it is not in the organization.
pub async fn describe_account(org: &Client, account_id: &str) -> Result<Option<AccountSummary>> {
    match org.describe_account().account_id(account_id).send().await {
        Ok(out) => Ok(out.account.map(summary)),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_account_not_found_exception()) => Ok(None),
        Err(e) => Err(Error::from_sdk("organizations:DescribeAccount", e)),
    }
}

fn summary(a: aws_sdk_organizations::types::Account) -> AccountSummary {
    AccountSummary {
        id: a.id.unwrap_or_default(),
        name: a.name.unwrap_or_default(),
        email: a.email.unwrap_or_default(),
        status: super::types::AccountStatus::from(a.status.as_ref().map(AccountStatus::as_str).unwrap_or("UNKNOWN")),
    }
}

/// Tags of an account, OU or policy (`ListTagsForResource`, all pages).
pub async fn tags(org: &Client, resource_id: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut pages = org.list_tags_for_resource().resource_id(resource_id).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.classify("organizations:ListTagsForResource")?;
        for t in page.tags.unwrap_or_default() {
            out.insert(t.key, t.value);
        }
    }
    Ok(out)
}

/// Sets tags on a resource (`TagResource`); existing keys are overwritten, others kept.
pub async fn tag(org: &Client, resource_id: &str, tags: &BTreeMap<String, String>) -> Result<()> {
    let tags = to_tags(tags)?;
    while_contended("TagResource", || org.tag_resource().resource_id(resource_id).set_tags(Some(tags.clone())).send())
        .await
        .classify("organizations:TagResource")?;
    Ok(())
}

/// Sends `call` again while Organizations answers `ConcurrentModificationException` (another
/// operation on the same target is under way; AWS says to retry), with exponential backoff and
/// jitter from 0.5 s, at most 8 retries (about 40 s). The SDK's retry classifier does not count
/// this code as transient; throttling and 5xx are still retried by the SDK inside each try.
async fn while_contended<T, E, F, Fut>(
    operation: &str,
    call: F,
) -> std::result::Result<T, aws_sdk_organizations::error::SdkError<E>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, aws_sdk_organizations::error::SdkError<E>>>,
    E: aws_sdk_organizations::error::ProvideErrorMetadata,
{
    use backon::{ExponentialBuilder, Retryable};
    call.retry(
        ExponentialBuilder::default()
            .with_min_delay(std::time::Duration::from_millis(500))
            .with_max_delay(std::time::Duration::from_secs(10))
            .with_jitter()
            .with_max_times(8),
    )
    .when(|e| Error::kind_of_sdk(e) == ErrorKind::Conflict)
    .notify(|_, after| {
        tracing::info!("organizations:{operation}: concurrent modification; retrying in {:.1} s", after.as_secs_f32())
    })
    .await
}

/// Removes tags from a resource (`UntagResource`).
pub async fn untag(org: &Client, resource_id: &str, keys: &[String]) -> Result<()> {
    org.untag_resource()
        .resource_id(resource_id)
        .set_tag_keys(Some(keys.to_vec()))
        .send()
        .await
        .classify("organizations:UntagResource")?;
    Ok(())
}

fn to_tags(tags: &BTreeMap<String, String>) -> Result<Vec<Tag>> {
    tags.iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| Error::new("organizations:TagResource", ErrorKind::Invalid, e.to_string()))
        })
        .collect()
}

/// The parent (root or OU) id of an account or OU (`ListParents`).
pub async fn parent(org: &Client, child_id: &str) -> Result<String> {
    let out = org.list_parents().child_id(child_id).send().await.classify("organizations:ListParents")?;
    out.parents
        .unwrap_or_default()
        .into_iter()
        .next()
        .and_then(|p| p.id)
        .or_missing("organizations:ListParents", "parent")
}

/// An OU's name (`DescribeOrganizationalUnit`).
pub async fn ou_name(org: &Client, ou_id: &str) -> Result<String> {
    let out = org
        .describe_organizational_unit()
        .organizational_unit_id(ou_id)
        .send()
        .await
        .classify("organizations:DescribeOrganizationalUnit")?;
    Ok(out.organizational_unit.and_then(|o| o.name).unwrap_or_default())
}

/// How many times [`create_account`] sends a refused `CreateAccount` at most (a refusal for the
/// organization's request rate, a concurrent modification, or `ACCOUNT_CREATION_RATE_LIMIT_EXCEEDED`).
pub const CREATE_ACCOUNT_SENDS: u32 = 10;

/// Starts account creation (`CreateAccount`), tags included so that the account is identifiable as
/// the tenant's from its first moment. Returns the create request id.
///
/// `CreateAccount` has no idempotency token, so it is sent without the SDK's retries: it is sent
/// again (with backoff, at most [`CREATE_ACCOUNT_SENDS`] in all; a stop signal ends the pause
/// between sends and the call returns the last refusal) only when Organizations
/// refused it with `TooManyRequestsException`, `ConcurrentModificationException` or
/// `ConstraintViolationException` for `ACCOUNT_CREATION_RATE_LIMIT_EXCEEDED`. Any other refusal is
/// an error naming the code and reason (with what to do for `ACCOUNT_NUMBER_LIMIT_EXCEEDED`); no
/// answer at all (timeout, dropped connection) or a 5xx
/// gives [`CreateAccountUnanswered`].
pub async fn create_account(
    org: &Client,
    email: &str,
    name: &str,
    tags: &BTreeMap<String, String>,
) -> std::result::Result<String, CreateAccountFailure> {
    use backon::{ExponentialBuilder, Retryable};
    let tags = to_tags(tags).map_err(|e| CreateAccountFailure::Request(format!("{e:#}")))?;
    let send = || async {
        org.create_account()
            .email(email)
            .account_name(name)
            .set_tags(Some(tags.clone()))
            .customize()
            .config_override(
                aws_sdk_organizations::config::Builder::default()
                    .retry_config(aws_config::retry::RetryConfig::disabled()),
            )
            .send()
            .await
    };
    let refused = |e: &SdkError<CreateAccountError>| {
        matches!(Error::kind_of_sdk(e), ErrorKind::Throttled | ErrorKind::Conflict)
            || constraint_reason(e).as_deref() == Some("ACCOUNT_CREATION_RATE_LIMIT_EXCEEDED")
    };
    let out = send
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(std::time::Duration::from_secs(1))
                .with_max_delay(std::time::Duration::from_secs(20))
                .with_jitter()
                .with_max_times(CREATE_ACCOUNT_SENDS as usize - 1),
        )
        .when(|e| refused(e) && !crate::shutdown::requested())
        // The pause before sending again ends at once on a stop request (nothing was created).
        .sleep(|d| async move {
            let _ = crate::shutdown::bounded("", tokio::time::sleep(d)).await;
        })
        .notify(|e, after| {
            let code = e.as_service_error().and_then(|s| s.meta().code()).unwrap_or("?");
            tracing::info!(
                "organizations:CreateAccount refused ({code}); sending again in {:.1} s",
                after.as_secs_f32()
            )
        })
        .await;
    match out {
        // An answer without a request id: AWS may have started creating the account.
        Ok(out) => out.create_account_status.and_then(|s| s.id).ok_or_else(|| {
            CreateAccountFailure::Unanswered(CreateAccountUnanswered {
                email: email.to_string(),
                cause: "the answer carried no request id".into(),
            })
        }),
        // No answer, or a 5xx: the request may have been carried out.
        Err(sdk) if Error::kind_of_sdk(&sdk) == ErrorKind::AnswerLost => {
            Err(CreateAccountFailure::Unanswered(CreateAccountUnanswered {
                email: email.to_string(),
                cause: Error::from_sdk("organizations:CreateAccount", sdk).to_string(),
            }))
        }
        // An answer from Organizations that refuses the request: nothing was created.
        Err(sdk) => {
            let hint = match constraint_reason(&sdk).as_deref() {
                Some("ACCOUNT_NUMBER_LIMIT_EXCEEDED") => failure_hint("ACCOUNT_LIMIT_EXCEEDED"),
                Some("ACCOUNT_CREATION_RATE_LIMIT_EXCEEDED") => {
                    " — AWS limits how fast accounts can be created; wait, then re-run"
                }
                _ => "",
            };
            let reason = constraint_reason(&sdk).map(|r| format!(" ({r})")).unwrap_or_default();
            Err(CreateAccountFailure::Refused {
                what: format!("CreateAccount for {email} refused{reason}{hint}"),
                error: Error::from_sdk("organizations:CreateAccount", sdk),
            })
        }
    }
}

/// The reason of a `ConstraintViolationException`, e.g. `ACCOUNT_NUMBER_LIMIT_EXCEEDED`.
fn constraint_reason(e: &SdkError<CreateAccountError>) -> Option<String> {
    match e.as_service_error()? {
        CreateAccountError::ConstraintViolationException(c) => c.reason().map(|r| r.as_str().to_string()),
        _ => None,
    }
}

/// How a `CreateAccount` request failed.
#[derive(Debug, thiserror::Error)]
pub enum CreateAccountFailure {
    /// No usable answer: the account may be being created.
    #[error(transparent)]
    Unanswered(CreateAccountUnanswered),
    /// Organizations refused it: nothing was created.
    #[error("{what}: {error}")]
    Refused {
        /// The request and why, with what to do.
        what: String,
        /// The AWS error.
        error: Error,
    },
    /// The request could not be built (nothing was sent).
    #[error("CreateAccount: {0}")]
    Request(String),
}

/// `CreateAccount` got no usable answer (timeout, dropped connection, 5xx): AWS may have started
/// creating the account. It is never sent again blindly; the account is looked for first.
#[derive(Debug, thiserror::Error)]
#[error("CreateAccount for {email} got no answer ({cause}); it may have been carried out, so it is not sent again before the account is looked for")]
pub struct CreateAccountUnanswered {
    /// The root email requested.
    pub email: String,
    /// What went wrong.
    pub cause: String,
}

/// After a [`CreateAccountUnanswered`]: the account with `email` (`ListAccounts`, fresh), else an
/// in-progress request for `name` (`ListCreateAccountStatus`). `None` when neither exists.
pub async fn find_unanswered_create(org: &Client, email: &str, name: &str) -> Result<Option<Created>> {
    if let Some(a) = list_accounts(org).await?.into_iter().find(|a| a.email.eq_ignore_ascii_case(email)) {
        return Ok(Some(Created::Account(a.id)));
    }
    Ok(in_progress_creates(org)
        .await?
        .into_iter()
        .find(|r| r.account_name == name)
        .map(|r| Created::Request(r.request_id)))
}

/// What a lost `CreateAccount` turned out to have done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// The account exists: its id.
    Account(String),
    /// The request is still running: its id.
    Request(String),
}

/// The state of one create request (`DescribeCreateAccountStatus`); `None` when Organizations
/// does not know the request id (`CreateAccountStatusNotFoundException`: AWS keeps requests for
/// 90 days).
pub async fn create_status(org: &Client, request_id: &str) -> Result<Option<CreateRequest>> {
    let out = match org.describe_create_account_status().create_account_request_id(request_id).send().await {
        Ok(out) => out,
        // (Some emulators answer AccountNotFoundException.)
        Err(e) if Error::kind_of_sdk(&e) == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::from_sdk("organizations:DescribeCreateAccountStatus", e)),
    };
    let s = out.create_account_status.or_missing("organizations:DescribeCreateAccountStatus", "status")?;
    Ok(Some(create_request(s)))
}

/// Create requests still in progress (`ListCreateAccountStatus` with state IN_PROGRESS).
pub async fn in_progress_creates(org: &Client) -> Result<Vec<CreateRequest>> {
    let mut out = Vec::new();
    let mut pages = org.list_create_account_status().states(CreateAccountState::InProgress).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(p) => p,
            // Some emulators lack this call; AWS has it. Without it, an account whose creation
            // is still running cannot be found by name (only through state).
            Err(e) if Error::kind_of_sdk(&e) == ErrorKind::Unsupported => {
                tracing::warn!("organizations:ListCreateAccountStatus is not supported by this endpoint; in-progress account creations are found through state only");
                return Ok(out);
            }
            Err(e) => return Err(Error::from_sdk("organizations:ListCreateAccountStatus", e)),
        };
        out.extend(page.create_account_statuses.unwrap_or_default().into_iter().map(create_request));
    }
    Ok(out)
}

fn create_request(s: aws_sdk_organizations::types::CreateAccountStatus) -> CreateRequest {
    let state = match s.state {
        Some(CreateAccountState::Succeeded) => CreateRequestState::Succeeded,
        Some(CreateAccountState::Failed) => CreateRequestState::Failed(
            s.failure_reason.as_ref().map(|r| r.as_str().to_string()).unwrap_or_else(|| "UNKNOWN".into()),
        ),
        _ => CreateRequestState::InProgress,
    };
    CreateRequest {
        request_id: s.id.unwrap_or_default(),
        account_name: s.account_name.unwrap_or_default(),
        account_id: s.account_id,
        state,
    }
}

/// Moves an account between parents (`MoveAccount`).
pub async fn move_account(org: &Client, account_id: &str, from: &str, to: &str) -> Result<()> {
    while_contended("MoveAccount", || {
        org.move_account().account_id(account_id).source_parent_id(from).destination_parent_id(to).send()
    })
    .await
    .classify("organizations:MoveAccount")?;
    Ok(())
}

/// Service control policies, name → id (`ListPolicies` filter SERVICE_CONTROL_POLICY, all pages).
pub async fn scps(org: &Client) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut pages = org.list_policies().filter(PolicyType::ServiceControlPolicy).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.classify("organizations:ListPolicies")?;
        for p in page.policies.unwrap_or_default() {
            if let (Some(name), Some(id)) = (p.name, p.id) {
                out.insert(name, id);
            }
        }
    }
    Ok(out)
}

/// The accounts a policy is attached to directly (`ListTargetsForPolicy`, all pages; OUs and
/// roots left out).
pub async fn policy_account_targets(org: &Client, policy_id: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut pages = org.list_targets_for_policy().policy_id(policy_id).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.classify("organizations:ListTargetsForPolicy")?;
        for t in page.targets.unwrap_or_default() {
            if t.r#type == Some(aws_sdk_organizations::types::TargetType::Account) {
                out.extend(t.target_id);
            }
        }
    }
    Ok(out)
}

/// Whether a policy is attached to any root, OU or account (`ListTargetsForPolicy`, one result).
/// A policy that does not exist is attached to nothing.
pub async fn attached_anywhere(org: &Client, policy_id: &str) -> Result<bool> {
    match org.list_targets_for_policy().policy_id(policy_id).max_results(1).send().await {
        Ok(out) => Ok(!out.targets().is_empty() || out.next_token().is_some()),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_policy_not_found_exception()) => Ok(false),
        Err(e) => Err(Error::from_sdk("organizations:ListTargetsForPolicy", e)),
    }
}

/// A policy's name and document (`DescribePolicy`); `None` when there is no such policy.
pub async fn policy(org: &Client, policy_id: &str) -> Result<Option<(String, String)>> {
    let out = match org.describe_policy().policy_id(policy_id).send().await {
        Ok(out) => out,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_policy_not_found_exception()) => return Ok(None),
        Err(e) => return Err(Error::from_sdk("organizations:DescribePolicy", e)),
    };
    Ok(out.policy.map(|p| (p.policy_summary.and_then(|s| s.name).unwrap_or_default(), p.content.unwrap_or_default())))
}

/// SCPs attached directly to a target, id → name (`ListPoliciesForTarget`, all pages).
pub async fn attached_scps(org: &Client, target_id: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut pages = org
        .list_policies_for_target()
        .target_id(target_id)
        .filter(PolicyType::ServiceControlPolicy)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.classify("organizations:ListPoliciesForTarget")?;
        for p in page.policies.unwrap_or_default() {
            if let (Some(id), Some(name)) = (p.id, p.name) {
                out.insert(id, name);
            }
        }
    }
    Ok(out)
}

/// Creates an SCP (`CreatePolicy`) tagged as tenantry's; returns its id. If a policy with that
/// name appeared meanwhile, updates and returns it instead.
pub async fn create_scp(org: &Client, name: &str, content: &str, tags: &BTreeMap<String, String>) -> Result<String> {
    match org
        .create_policy()
        .name(name)
        .description("Managed by tenantry; do not edit by hand")
        .r#type(PolicyType::ServiceControlPolicy)
        .content(content)
        .set_tags(Some(to_tags(tags)?))
        .send()
        .await
    {
        Ok(out) => out
            .policy
            .and_then(|p| p.policy_summary)
            .and_then(|s| s.id)
            .or_missing("organizations:CreatePolicy", "policy id"),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_duplicate_policy_exception()) => {
            let id = scps(org)
                .await?
                .remove(name)
                .or_missing("organizations:ListPolicies", "policy reported as a duplicate")?;
            update_scp(org, &id, content).await?;
            Ok(id)
        }
        Err(e) => Err(Error::from_sdk("organizations:CreatePolicy", e)),
    }
}

/// Replaces an SCP's document (`UpdatePolicy`).
pub async fn update_scp(org: &Client, policy_id: &str, content: &str) -> Result<()> {
    org.update_policy().policy_id(policy_id).content(content).send().await.classify("organizations:UpdatePolicy")?;
    Ok(())
}

/// What [`attach`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attached {
    /// The policy is attached to the target (now, or it was already).
    Yes,
    /// There is no policy with that id (`PolicyNotFoundException`): nothing was attached.
    NoSuchPolicy,
}

/// Attaches a policy to a target (`AttachPolicy`); already attached is fine. Errors: the call's,
/// but a policy that does not exist, which is [`Attached::NoSuchPolicy`].
pub async fn attach(org: &Client, policy_id: &str, target_id: &str) -> Result<Attached> {
    match while_contended("AttachPolicy", || org.attach_policy().policy_id(policy_id).target_id(target_id).send()).await
    {
        Ok(_) => Ok(Attached::Yes),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_duplicate_policy_attachment_exception()) => {
            Ok(Attached::Yes)
        }
        Err(e) if e.as_service_error().is_some_and(|s| s.is_policy_not_found_exception()) => Ok(Attached::NoSuchPolicy),
        Err(e) => Err(Error::from_sdk("organizations:AttachPolicy", e)),
    }
}

/// What [`delete_policy`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// The policy is gone (now, or it was already).
    Yes,
    /// It is still attached to some target (`PolicyInUseException`) and was left in place.
    InUse,
}

/// Deletes a policy (`DeletePolicy`); already gone is fine, and one still attached somewhere is
/// left ([`Deleted::InUse`]: Organizations deletes only policies attached to nothing, which is
/// what makes deleting a shared SCP after a detach safe). Errors: the call's.
pub async fn delete_policy(org: &Client, policy_id: &str) -> Result<Deleted> {
    match org.delete_policy().policy_id(policy_id).send().await {
        Ok(_) => Ok(Deleted::Yes),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_policy_not_found_exception()) => Ok(Deleted::Yes),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_policy_in_use_exception()) => Ok(Deleted::InUse),
        Err(e) => Err(Error::from_sdk("organizations:DeletePolicy", e)),
    }
}

/// Detaches a policy from a target (`DetachPolicy`); not attached is fine.
pub async fn detach(org: &Client, policy_id: &str, target_id: &str) -> Result<()> {
    match org.detach_policy().policy_id(policy_id).target_id(target_id).send().await {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_policy_not_attached_exception()) => Ok(()),
        Err(e) => Err(Error::from_sdk("organizations:DetachPolicy", e)),
    }
}

/// What to do about a `CreateAccount` failure reason.
pub fn failure_hint(reason: &str) -> &'static str {
    match reason {
        "ACCOUNT_LIMIT_EXCEEDED" => " — the organization reached its account quota (Organizations > Default maximum number of accounts); request an increase in Service Quotas, then re-run",
        "EMAIL_ALREADY_EXISTS" => " — the email is in use by another AWS account; choose another email",
        "INVALID_EMAIL" => " — AWS rejected the email address",
        "CONCURRENT_ACCOUNT_MODIFICATION" | "INTERNAL_FAILURE" => " — a transient AWS failure; re-run to retry",
        _ => "",
    }
}
