//! Sessions in member accounts. The only way to get clients for a member account is
//! [`MemberSession::assume`], which takes a [`VerifiedAccount`]: proof that the blast-radius guard
//! passed for that tenant. Credentials are per account and per tenant, never shared.

use std::time::Duration;

use aws_config::Region;
use aws_credential_types::provider::{future, ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use backon::{ExponentialBuilder, Retryable};

use super::{Clients, Error, ErrorKind};
use crate::guard::{check_ownership, Claim, LiveAccount, Refusal};
use crate::metrics::CountCalls;
use crate::tenant::Environment;

/// Why a member account could not be verified or reached.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// An AWS call failed (`ListTagsForResource`, `DescribeAccount`, `AssumeRole`).
    #[error(transparent)]
    Aws(#[from] Error),
    /// The account is not a member of the organization.
    #[error("account {account_id} is not in the organization")]
    NotInOrganization {
        /// Account id.
        account_id: String,
    },
    /// The blast-radius guard refused the account.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A stop signal ended the wait for the role to become assumable.
    #[error(transparent)]
    Interrupted(#[from] crate::shutdown::Interrupted),
    /// The credentials `AssumeRole` gave act in another account than the one asked for (an
    /// endpoint answering for another role): nothing may be done with them.
    #[error("AssumeRole into account {expected} gave credentials of account {actual}: refusing to act in it; check the STS endpoint and the role")]
    WrongAccount {
        /// The account the role was assumed in.
        expected: String,
        /// The account the credentials act in.
        actual: String,
    },
    /// `AssumeRole` answered with credentials that have no expiry, or expire within a minute:
    /// they would be replaced at once (this machine's clock may be wrong, or the endpoint).
    #[error("AssumeRole into account {account_id} gave credentials {expiry}: refusing them; check this machine's clock and the STS endpoint")]
    ExpiredCredentials {
        /// The account the role was assumed in.
        account_id: String,
        /// When they expire, as said ("without an expiry", "that expired at ...", ...).
        expiry: String,
    },
}

/// An account that passed the blast-radius guard for one tenant environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAccount {
    tenant: String,
    environment: Environment,
    account_id: String,
}

impl VerifiedAccount {
    /// The guard on live data, right before an account is touched: the account's tags
    /// (`ListTagsForResource`) and root email and name (`DescribeAccount`) are read and checked
    /// against `claim`. Errors: [`SessionError::NotInOrganization`], [`SessionError::Aws`], or
    /// the guard refuses ([`SessionError::Refused`]).
    pub async fn verify_live(
        org: &aws_sdk_organizations::Client,
        claim: &Claim<'_>,
        account_id: &str,
    ) -> Result<VerifiedAccount, SessionError> {
        let live_tags = super::org::tags(org, account_id).await?;
        let summary = super::org::describe_account(org, account_id)
            .await?
            .ok_or_else(|| SessionError::NotInOrganization { account_id: account_id.to_string() })?;
        let live = LiveAccount { id: account_id, email: &summary.email, name: &summary.name, tags: &live_tags };
        Ok(VerifiedAccount::verify(claim, &live)?)
    }

    /// Runs the guard ([`check_ownership`]) on `claim` and what the account says of itself.
    pub fn verify(claim: &Claim<'_>, account: &LiveAccount<'_>) -> Result<VerifiedAccount, Refusal> {
        check_ownership(claim, account)?;
        Ok(VerifiedAccount {
            tenant: claim.tenant.into(),
            environment: claim.environment,
            account_id: account.id.into(),
        })
    }

    /// The account id.
    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    /// The tenant it belongs to.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Its environment.
    pub fn environment(&self) -> Environment {
        self.environment
    }
}

/// Clients in one member account, with credentials from `AssumeRole` into its access role.
#[derive(Debug, Clone)]
pub struct MemberSession {
    /// The account these clients act in.
    pub account: VerifiedAccount,
    /// CloudFormation in the home region.
    pub cfn: aws_sdk_cloudformation::Client,
    /// S3 in the home region (the staging evidence bucket, templates over the inline limit).
    pub s3: aws_sdk_s3::Client,
    /// The home region the clients act in.
    pub region: String,
}

impl MemberSession {
    /// Assumes `role_name` in the verified account ([`MemberSession::assume_unchecked`]) and
    /// checks, before any use, that the credentials act in it: STS `GetCallerIdentity` asked
    /// with them. Errors: those of [`MemberSession::assume_unchecked`] and
    /// [`UncheckedSession::check`].
    pub async fn assume(
        clients: &Clients,
        account: &VerifiedAccount,
        role_name: &str,
        region: &str,
        retry_for: Duration,
    ) -> Result<MemberSession, SessionError> {
        let unchecked = Self::assume_unchecked(clients, account, role_name, region, retry_for).await?;
        unchecked.check().await?;
        Ok(unchecked.session)
    }

    /// Assumes `role_name` in the verified account (STS `AssumeRole`, session name
    /// `tenantry-<tenant>-<environment>`, sessions of 3,600 s, renewed and checked before use
    /// when they near expiry: [`CheckedCredentials`]). The first `AssumeRole` is retried on `AccessDenied` with
    /// exponential backoff for up to `retry_for` — a new account's role can take minutes to
    /// become assumable; other errors fail at once. An answer whose `AssumedRoleUser` ARN names
    /// another account is refused at once; the answer's word is not proof (the endpoint that
    /// handed out the credentials says it), so the session is returned unchecked. Errors:
    /// [`SessionError::Aws`] (the role could not be assumed), [`SessionError::WrongAccount`],
    /// [`SessionError::ExpiredCredentials`], [`SessionError::Interrupted`].
    pub async fn assume_unchecked(
        clients: &Clients,
        account: &VerifiedAccount,
        role_name: &str,
        region: &str,
        retry_for: Duration,
    ) -> Result<UncheckedSession, SessionError> {
        let arn = format!("arn:aws:iam::{}:role/{role_name}", account.account_id);
        let session = format!("tenantry-{}-{}", account.tenant, account.environment);
        let call = || async {
            clients.sts.assume_role().role_arn(&arn).role_session_name(&session).duration_seconds(3600).send().await
        };
        let retried = call
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(500))
                    .with_max_delay(Duration::from_secs(15))
                    .with_jitter()
                    .with_total_delay(Some(retry_for))
                    .without_max_times(),
            )
            .when(|e| Error::kind_of_sdk(e) == ErrorKind::AccessDenied)
            .notify(|e, after| {
                let code = e.as_service_error().and_then(|s| s.meta().code()).unwrap_or("?");
                tracing::info!(account = %account.account_id, error = code, "role not assumable yet; retrying in {:.1} s", after.as_secs_f32())
            });
        // AssumeRole changes nothing: a stop request may end the wait between tries.
        let assumed = crate::shutdown::bounded(format_args!("waiting for {arn} to be assumable"), retried)
            .await?
            .map_err(|e| Error::from_sdk("sts:AssumeRole", e))?;
        let seed = credentials_of(assumed, &account.account_id)?;
        // The first credentials are the ones just obtained; when they near expiry (long stack
        // waits outlive one session) the role is assumed again, and the new credentials are
        // checked before any request uses them.
        let provider = CheckedCredentials {
            current: tokio::sync::Mutex::new(seed),
            handed_out: std::sync::atomic::AtomicBool::new(false),
            sts: clients.sts.clone(),
            sdk: clients.sdk.clone(),
            role_arn: arn.clone(),
            session_name: session.clone(),
            account_id: account.account_id.clone(),
            region: region.to_string(),
        };
        let conf = clients
            .sdk
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(provider))
            .region(Region::new(region.to_string()))
            .build();
        let sts =
            aws_sdk_sts::Client::from_conf(aws_sdk_sts::config::Builder::from(&conf).interceptor(CountCalls).build());
        let cfn_conf = aws_sdk_cloudformation::config::Builder::from(&conf).interceptor(CountCalls).build();
        Ok(UncheckedSession {
            session: MemberSession {
                account: account.clone(),
                cfn: aws_sdk_cloudformation::Client::from_conf(cfn_conf),
                s3: super::s3_client(&conf),
                region: region.to_string(),
            },
            sts,
        })
    }
}

/// A member session not yet shown to act in its account: [`UncheckedSession::check`] must pass
/// before anything read through it is used, and nothing may be changed through it (only
/// [`MemberSession::assume`] gives a session for changes). `plan`'s observation reads the
/// stacks while the check runs, to save its round trip.
#[derive(Debug)]
pub struct UncheckedSession {
    session: MemberSession,
    sts: aws_sdk_sts::Client,
}

impl UncheckedSession {
    /// Asks STS which account the credentials act in (`GetCallerIdentity`, signed with them).
    /// Errors: [`SessionError::WrongAccount`] for another account, [`SessionError::Aws`].
    pub async fn check(&self) -> Result<(), SessionError> {
        caller_must_be(&self.sts, &self.session.account.account_id).await
    }

    /// Whether resource ARNs from an answer to a request signed with these credentials (the
    /// `StackId`s of `DescribeStacks`, which lists the caller's own account's stacks) show the
    /// account they act in, as [`Self::check`] would: there is at least one, and every one
    /// names this session's account. Such an answer is bound to the credentials just as
    /// `GetCallerIdentity`'s is; the `AssumeRole` answer's own ARN is not (it does not come
    /// from using the credentials). `false` means "not shown": call [`Self::check`]. Pure.
    pub fn shown_by_arns<'a>(&self, arns: impl IntoIterator<Item = &'a str>) -> bool {
        arns_all_name(&self.session.account.account_id, arns)
    }

    /// CloudFormation in the home region, for reads whose results wait for [`Self::check`]
    /// or [`Self::shown_by_arns`].
    pub fn cfn_for_reads(&self) -> &aws_sdk_cloudformation::Client {
        &self.session.cfn
    }
}

/// The account field of an ARN (`arn:<partition>:<service>:<region>:<account>:<resource>`), when
/// it is twelve digits.
fn account_of_arn(arn: &str) -> Option<&str> {
    let account = arn.split(':').nth(4)?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then_some(account)
}

/// Whether there is at least one ARN in `arns` and every one names `account`. Pure.
fn arns_all_name<'a>(account: &str, arns: impl IntoIterator<Item = &'a str>) -> bool {
    let mut any = false;
    for arn in arns {
        if account_of_arn(arn) != Some(account) {
            return false;
        }
        any = true;
    }
    any
}

/// How long before their expiry a member session's credentials are replaced (the SDK's
/// identity cache asks again only once the ones it holds have expired, less a few seconds).
const REFRESH_BEFORE: Duration = Duration::from_secs(15 * 60);

/// The least time credentials from `AssumeRole` must still be valid for to be taken.
const MIN_VALIDITY: Duration = Duration::from_secs(60);

/// STS `GetCallerIdentity` through `sts` (signed with the credentials to check) must name
/// `expected`. Errors: [`SessionError::WrongAccount`] for another account, [`SessionError::Aws`].
async fn caller_must_be(sts: &aws_sdk_sts::Client, expected: &str) -> Result<(), SessionError> {
    let identity = sts.get_caller_identity().send().await.map_err(|e| Error::from_sdk("sts:GetCallerIdentity", e))?;
    let actual = identity.account.unwrap_or_default();
    if actual != expected {
        return Err(SessionError::WrongAccount { expected: expected.to_string(), actual });
    }
    Ok(())
}

/// The credentials of an `AssumeRole` answer for `account_id`. Errors:
/// [`SessionError::ExpiredCredentials`] when they have no expiry or expire within
/// [`MIN_VALIDITY`] (an answer that would be replaced at once, by credentials nobody checked
/// before: the reason this is refused rather than refreshed); [`SessionError::WrongAccount`]
/// when the answer's `AssumedRoleUser` ARN names another account (its word is not proof of the
/// right one, but it is enough to refuse).
fn credentials_of(
    assumed: aws_sdk_sts::operation::assume_role::AssumeRoleOutput,
    account_id: &str,
) -> Result<Credentials, SessionError> {
    let expired = |expiry: String| SessionError::ExpiredCredentials { account_id: account_id.to_string(), expiry };
    // The account STS says the session acts in (`arn:aws:sts::<account>:assumed-role/...`).
    let said = assumed.assumed_role_user().and_then(|u| account_of_arn(u.arn())).map(str::to_string);
    let c = assumed.credentials.ok_or_else(|| expired("without any credentials".into()))?;
    let expires = std::time::SystemTime::try_from(c.expiration)
        .map_err(|_| expired(format!("with an unreadable expiry ({})", c.expiration)))?;
    if expires < std::time::SystemTime::now() + MIN_VALIDITY {
        return Err(expired(format!("that expire at {} (within a minute, or before now)", c.expiration)));
    }
    if let Some(said) = said.filter(|said| said != account_id) {
        return Err(SessionError::WrongAccount { expected: account_id.to_string(), actual: said });
    }
    Ok(Credentials::new(
        c.access_key_id,
        c.secret_access_key,
        Some(c.session_token),
        Some(expires),
        "tenantry-assume-role",
    ))
}

/// A member session's credentials: first those of the `AssumeRole` call that opened the
/// session (checked by its caller: [`UncheckedSession::check`] or
/// [`UncheckedSession::shown_by_arns`]); when asked again (the SDK's identity cache asks once
/// the credentials it holds are about to expire) and they are within [`REFRESH_BEFORE`] of
/// expiry, the role is assumed again (STS `AssumeRole`) and the new credentials are handed out only after
/// `GetCallerIdentity`, asked with them, names the session's account. So no request of the
/// session ever uses credentials nobody checked, however long it lasts.
#[derive(Debug)]
struct CheckedCredentials {
    current: tokio::sync::Mutex<Credentials>,
    /// Whether `current` was handed out once already.
    handed_out: std::sync::atomic::AtomicBool,
    /// STS as the management account, for `AssumeRole`.
    sts: aws_sdk_sts::Client,
    /// The SDK config the check's STS client is built from.
    sdk: aws_config::SdkConfig,
    role_arn: String,
    session_name: String,
    account_id: String,
    region: String,
}

impl CheckedCredentials {
    async fn get(&self) -> Result<Credentials, SessionError> {
        let mut current = self.current.lock().await;
        // The first credentials go out as they are (valid for at least `MIN_VALIDITY`): the
        // session's caller checks them before using anything done with them.
        let first = !self.handed_out.swap(true, std::sync::atomic::Ordering::SeqCst);
        let fresh_enough = current.expiry().is_some_and(|at| at > std::time::SystemTime::now() + REFRESH_BEFORE);
        if first || fresh_enough {
            return Ok(current.clone());
        }
        let assumed = self
            .sts
            .assume_role()
            .role_arn(&self.role_arn)
            .role_session_name(&self.session_name)
            .duration_seconds(3600)
            .send()
            .await
            .map_err(|e| Error::from_sdk("sts:AssumeRole", e))?;
        let fresh = credentials_of(assumed, &self.account_id)?;
        let conf = aws_sdk_sts::config::Builder::from(&self.sdk)
            .credentials_provider(fresh.clone())
            .region(Region::new(self.region.clone()))
            .interceptor(CountCalls)
            .build();
        caller_must_be(&aws_sdk_sts::Client::from_conf(conf), &self.account_id).await?;
        *current = fresh.clone();
        Ok(fresh)
    }
}

impl ProvideCredentials for CheckedCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            self.get().await.map_err(aws_credential_types::provider::error::CredentialsError::provider_error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{account_of_arn, arns_all_name};

    #[test]
    fn stack_arns_show_an_account_only_when_there_is_one_and_all_name_it() {
        let a = "arn:aws:cloudformation:us-east-1:123456789012:stack/tenantry-baseline/1";
        let b = "arn:aws:cloudformation:us-east-1:123456789012:stack/tenantry-agent-pipeline/2";
        let other = "arn:aws:cloudformation:us-east-1:210987654321:stack/tenantry-baseline/3";
        assert!(arns_all_name("123456789012", [a, b]));
        assert!(!arns_all_name("123456789012", []), "no stack shows nothing");
        assert!(!arns_all_name("123456789012", [a, other]));
        assert!(!arns_all_name("210987654321", [a]));
        assert!(!arns_all_name("123456789012", ["arn"]));
    }

    #[test]
    fn the_account_of_an_assumed_role_arn() {
        assert_eq!(
            account_of_arn("arn:aws:sts::123456789012:assumed-role/TenantryAccess/tenantry-acme-production"),
            Some("123456789012")
        );
        assert_eq!(account_of_arn("arn:aws-us-gov:sts::210987654321:assumed-role/R/s"), Some("210987654321"));
        assert_eq!(account_of_arn("arn:aws:sts:::assumed-role/R/s"), None);
        assert_eq!(account_of_arn("arn:aws:sts::12345:assumed-role/R/s"), None);
        assert_eq!(account_of_arn("not an arn"), None);
    }
}
