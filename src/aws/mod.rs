//! Narrow adapters over the AWS SDK: one module per service, each function one AWS API call (or
//! one paginated listing) turned into tenantry's plain data. No planning decisions here.

pub mod cfn;
pub mod error;
pub mod member;
pub mod org;
pub mod s3;
pub mod types;

pub use error::{Classify, Error, ErrorKind, OrMissing};

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::config::OrgSettings;
use crate::metrics::CountCalls;

/// Clients for the management account, built once per run from the standard credential chain
/// (env vars, profiles, SSO, `credential_process`, IMDS) and `AWS_ENDPOINT_URL*` settings.
#[derive(Clone, Debug)]
pub struct Clients {
    /// The loaded SDK config (credentials of the management account).
    pub sdk: SdkConfig,
    /// AWS Organizations, with the SDK's standard retry raised to [`ORGANIZATIONS_MAX_ATTEMPTS`]
    /// (it throttles hard: `TooManyRequestsException`).
    pub org: aws_sdk_organizations::Client,
    /// AWS STS.
    pub sts: aws_sdk_sts::Client,
    /// Amazon S3 (state store), path-style when an endpoint override is set (local emulators).
    pub s3: aws_sdk_s3::Client,
}

/// Attempts for calls to Organizations, whose rate limits are low: the SDK's standard retry mode,
/// exponential backoff with jitter (a random wait up to 1 s, doubling, capped at 20 s). 20, not
/// 10: with the tenants of a run together asking faster than the organization's rate, one
/// request in about 1,800 was throttled 10 times in a row (a 200-tenant `reconcile` through 10
/// requests a second, `bench/`), and its tenant failed. Not the
/// adaptive mode by default: the SDK marks it experimental, and its client-side rate limiter,
/// shared by every tenant of a run, held each Organizations call for up to 20 s once a few
/// throttles had been seen (measured in `tests/faults.rs`, whose throttles are random rather than
/// rate-driven: a 10-tenant onboarding through 20 % faults took 79-193 s instead of 45-54 s).
/// `AWS_RETRY_MODE=adaptive` chooses it (see [`retry_config`]).
pub const ORGANIZATIONS_MAX_ATTEMPTS: u32 = 20;

/// The retry quota of the Organizations client: the SDK's (500 tokens, 5 per retry after an
/// error, 10 after a timeout), except that a retry after a throttling answer
/// (`TooManyRequestsException`, or anything else the SDK classes as throttling) costs nothing. Throttling is Organizations' request rate
/// speaking, not an outage: with the standard quota, a run whose tenants together asked faster
/// than the organization's rate spent the quota on throttled retries within seconds and then
/// failed every request that was throttled again (measured: a 50-tenant `plan` through a limit
/// of 10 requests a second failed for 10 tenants). Throttled requests are still retried at most
/// [`ORGANIZATIONS_MAX_ATTEMPTS`] times, each after an exponential, jittered backoff.
pub fn organizations_retry_partition() -> aws_sdk_organizations::config::retry::RetryPartition {
    use aws_sdk_organizations::config::retry::{RetryPartition, TokenBucket};
    RetryPartition::custom("tenantry-organizations")
        .token_bucket(TokenBucket::builder().throttling_retry_cost(0).build())
        .build()
}

/// Attempts for calls to every other service (STS, S3, CloudFormation).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// The SDK retry configuration of a client: standard mode with `default_attempts` attempts,
/// unless the environment sets `AWS_RETRY_MODE` (`standard` or `adaptive`) or `AWS_MAX_ATTEMPTS`
/// (a whole number from 1), which replace the mode or the attempts of every client, as for the
/// AWS CLI. The profile file's `retry_mode` and `max_attempts` are not read.
/// Errors: [`InvalidRetrySetting`] for an unknown mode, or attempts that are not a whole number
/// from 1 (naming the variable).
pub fn retry_config(default_attempts: u32) -> Result<RetryConfig, InvalidRetrySetting> {
    retry_config_from(
        std::env::var("AWS_RETRY_MODE").ok().as_deref(),
        std::env::var("AWS_MAX_ATTEMPTS").ok().as_deref(),
        default_attempts,
    )
}

/// An `AWS_RETRY_MODE` or `AWS_MAX_ATTEMPTS` the SDK cannot use: the variable, its value, and
/// what it should be.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{variable}={value:?}: expected {expected}")]
pub struct InvalidRetrySetting {
    /// The environment variable.
    pub variable: &'static str,
    /// Its value.
    pub value: String,
    /// What it should be.
    pub expected: &'static str,
}

fn retry_config_from(
    mode: Option<&str>,
    attempts: Option<&str>,
    default_attempts: u32,
) -> Result<RetryConfig, InvalidRetrySetting> {
    use std::str::FromStr;
    let mode = match mode.map(str::trim).filter(|m| !m.is_empty()) {
        None => aws_config::retry::RetryMode::Standard,
        Some(m) => aws_config::retry::RetryMode::from_str(m).map_err(|_| InvalidRetrySetting {
            variable: "AWS_RETRY_MODE",
            value: m.into(),
            expected: "`standard` or `adaptive`",
        })?,
    };
    let attempts = match attempts.map(str::trim).filter(|a| !a.is_empty()) {
        None => default_attempts,
        Some(a) => match a.parse::<u32>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err(InvalidRetrySetting {
                    variable: "AWS_MAX_ATTEMPTS",
                    value: a.into(),
                    expected: "a whole number of attempts from 1",
                })
            }
        },
    };
    let config = match mode {
        aws_config::retry::RetryMode::Adaptive => RetryConfig::adaptive(),
        _ => RetryConfig::standard(),
    };
    Ok(config.with_max_attempts(attempts))
}

/// The identity of the credentials tenantry runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The account (the organization's management account).
    pub account_id: String,
    /// The caller's ARN (a user, or an assumed role with its session name).
    pub arn: String,
}

impl Clients {
    /// Loads the standard AWS configuration. The region comes from the usual chain, falling back to
    /// `home_region` of `tenantry.toml`. Every attempt of a request is abandoned (and retried by
    /// the SDK) after `request_timeout_seconds`; connecting after 10 s. Retries: [`retry_config`].
    /// Errors: an invalid `AWS_RETRY_MODE` or `AWS_MAX_ATTEMPTS`.
    pub async fn load(settings: &OrgSettings) -> Result<Clients, InvalidRetrySetting> {
        let region = aws_config::meta::region::RegionProviderChain::default_provider()
            .or_else(Region::new(settings.home_region.clone()));
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(region)
            .retry_config(retry_config(DEFAULT_MAX_ATTEMPTS)?)
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .operation_attempt_timeout(Duration::from_secs(settings.request_timeout_seconds))
                    .build(),
            )
            .load()
            .await;
        Ok(Self::from_sdk(sdk, retry_config(ORGANIZATIONS_MAX_ATTEMPTS)?))
    }

    /// Builds the service clients from an SDK config, Organizations with `org_retry` and
    /// [`organizations_retry_partition`].
    pub fn from_sdk(sdk: SdkConfig, org_retry: RetryConfig) -> Clients {
        let org_conf = aws_sdk_organizations::config::Builder::from(&sdk)
            .retry_config(org_retry)
            .retry_partition(organizations_retry_partition())
            .interceptor(CountCalls)
            .build();
        let sts_conf = aws_sdk_sts::config::Builder::from(&sdk).interceptor(CountCalls).build();
        Clients {
            org: aws_sdk_organizations::Client::from_conf(org_conf),
            sts: aws_sdk_sts::Client::from_conf(sts_conf),
            s3: s3_client(&sdk),
            sdk,
        }
    }

    /// How to wait for one stack operation: at most `stack_timeout_seconds`, with the pauses of
    /// [`stack_poll_delays`] for this SDK config.
    pub fn stack_wait(&self, settings: &OrgSettings) -> cfn::Wait {
        let (min_delay, max_delay) = stack_poll_delays(settings, &self.sdk);
        cfn::Wait { timeout: Duration::from_secs(settings.stack_timeout_seconds), min_delay, max_delay }
    }

    /// Who the credentials are (STS `GetCallerIdentity`): the management account's id and the
    /// caller's ARN (recorded in the ledger as who ran a command).
    pub async fn caller(&self) -> Result<Caller, Error> {
        let out = self.sts.get_caller_identity().send().await.classify("sts:GetCallerIdentity")?;
        let account_id = out
            .account
            .ok_or_else(|| Error::new("sts:GetCallerIdentity", ErrorKind::Service, "no account id in the answer"))?;
        Ok(Caller { account_id, arn: out.arn.unwrap_or_default() })
    }
}

/// The pauses between looks at a running stack operation: `stack_poll_*_delay_seconds` where set;
/// otherwise the SDK waiters' against AWS, and short ones when CloudFormation's endpoint override
/// (`AWS_ENDPOINT_URL_CLOUDFORMATION`, else the SDK config's `AWS_ENDPOINT_URL`) is a local
/// emulator ([`is_local_endpoint`]): it finishes within seconds, while polling AWS (a VPC or FIPS
/// endpoint included) that often would only add requests.
fn stack_poll_delays(settings: &OrgSettings, sdk: &SdkConfig) -> (Duration, Duration) {
    let endpoint =
        std::env::var("AWS_ENDPOINT_URL_CLOUDFORMATION").ok().or_else(|| sdk.endpoint_url().map(str::to_string));
    let local = endpoint.as_deref().is_some_and(is_local_endpoint);
    let (min, max) = if local { cfn::Wait::LOCAL_DELAYS } else { cfn::Wait::AWS_DELAYS };
    let min = settings.stack_poll_min_delay_seconds.map_or(min, Duration::from_secs_f64);
    let max = settings.stack_poll_max_delay_seconds.map_or(max, Duration::from_secs_f64);
    // A longest pause set below the first one lowers the first one too.
    (min.min(max), max)
}

/// Whether an endpoint URL is a local emulator: its host is a loopback address, `localhost`, or
/// `localstack` (LocalStack's usual name on a Docker network).
pub fn is_local_endpoint(endpoint: &str) -> bool {
    let Ok(parsed) = url::Url::parse(endpoint) else { return false };
    match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => matches!(name, "localhost" | "localstack"),
        None => false,
    }
}

/// An S3 client for `sdk`; path-style addressing when any endpoint override is in effect, as local
/// emulators need.
pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let override_set = sdk.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    let conf = aws_sdk_s3::config::Builder::from(sdk).force_path_style(override_set).interceptor(CountCalls).build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Creates `bucket` in `region` (`CreateBucket`, with a location constraint outside us-east-1).
/// Returns `true` when this call created it and `false` when the caller already owned it
/// (`BucketAlreadyOwnedByYou`, e.g. a retry whose first answer was lost). Any other refusal, such
/// as `BucketAlreadyExists` (the name is taken by another account), is an error naming the call.
pub async fn create_bucket(s3: &aws_sdk_s3::Client, bucket: &str, region: &str) -> Result<bool, Error> {
    use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
    let mut req = s3.create_bucket().bucket(bucket);
    if region != "us-east-1" {
        req = req.create_bucket_configuration(
            CreateBucketConfiguration::builder().location_constraint(BucketLocationConstraint::from(region)).build(),
        );
    }
    match req.send().await {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_bucket_already_owned_by_you()) => Ok(false),
        Err(e) => Err(Error::from_sdk("s3:CreateBucket", e)),
    }
}

/// Makes a bucket private (`PutPublicAccessBlock`, all four settings) and encrypted by default
/// (`PutBucketEncryption`, SSE-S3). Both are idempotent. With `expected_owner`, each call names
/// the account that must own the bucket (S3 answers 403 otherwise).
pub async fn make_bucket_private(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    expected_owner: Option<&str>,
) -> Result<(), Error> {
    use aws_sdk_s3::types::{
        PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
        ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    };
    s3.put_public_access_block()
        .bucket(bucket)
        .set_expected_bucket_owner(expected_owner.map(str::to_string))
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .classify("s3:PutPublicAccessBlock")?;
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(
            ServerSideEncryptionByDefault::builder()
                .sse_algorithm(ServerSideEncryption::Aes256)
                .build()
                .map_err(|e| Error::new("s3:PutBucketEncryption", ErrorKind::Service, e.to_string()))?,
        )
        .build();
    s3.put_bucket_encryption()
        .bucket(bucket)
        .set_expected_bucket_owner(expected_owner.map(str::to_string))
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(rule)
                .build()
                .map_err(|e| Error::new("s3:PutBucketEncryption", ErrorKind::Service, e.to_string()))?,
        )
        .send()
        .await
        .classify("s3:PutBucketEncryption")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::retry_config_from;
    use aws_config::retry::RetryMode;

    #[test]
    fn stack_polls_are_the_sdk_waiters_against_aws_and_short_against_an_emulator() {
        use super::{cfn::Wait, stack_poll_delays, OrgSettings, SdkConfig};
        use std::time::Duration;
        let settings = OrgSettings::default();
        let aws = SdkConfig::builder().build();
        let local = SdkConfig::builder().endpoint_url("http://127.0.0.1:4566").build();
        if std::env::var_os("AWS_ENDPOINT_URL_CLOUDFORMATION").is_none() {
            assert_eq!(stack_poll_delays(&settings, &aws), (Duration::from_secs(30), Duration::from_secs(120)));
        }
        assert_eq!(stack_poll_delays(&settings, &local), Wait::LOCAL_DELAYS);
        // An override that is AWS itself (a VPC endpoint) keeps the waiters' pauses.
        if std::env::var_os("AWS_ENDPOINT_URL_CLOUDFORMATION").is_none() {
            let vpc = SdkConfig::builder()
                .endpoint_url("https://vpce-0abc.cloudformation.us-east-1.vpce.amazonaws.com")
                .build();
            assert_eq!(stack_poll_delays(&settings, &vpc), Wait::AWS_DELAYS);
        }
        for (url, local) in [
            ("http://127.0.0.1:4566", true),
            ("http://localhost:4566", true),
            ("http://[::1]:4566", true),
            ("http://localstack:4566", true),
            ("https://cloudformation.us-east-1.amazonaws.com", false),
            ("http://10.0.0.5:4566", false),
            ("not a url", false),
        ] {
            assert_eq!(super::is_local_endpoint(url), local, "{url}");
        }
        let set = OrgSettings {
            stack_poll_min_delay_seconds: Some(5.0),
            stack_poll_max_delay_seconds: Some(60.0),
            ..OrgSettings::default()
        };
        assert_eq!(stack_poll_delays(&set, &local), (Duration::from_secs(5), Duration::from_secs(60)));
        // A longest pause set below the default first one lowers the first one too.
        let only_max = OrgSettings { stack_poll_max_delay_seconds: Some(0.1), ..OrgSettings::default() };
        assert_eq!(stack_poll_delays(&only_max, &local), (Duration::from_millis(100), Duration::from_millis(100)));
    }

    #[test]
    fn retry_defaults_to_standard_mode_with_the_clients_attempts() {
        let c = retry_config_from(None, None, 10).unwrap();
        assert_eq!((c.mode(), c.max_attempts()), (RetryMode::Standard, 10));
        let c = retry_config_from(Some(""), Some(" "), 5).unwrap();
        assert_eq!((c.mode(), c.max_attempts()), (RetryMode::Standard, 5));
    }

    #[test]
    fn aws_retry_mode_and_max_attempts_replace_the_defaults() {
        let c = retry_config_from(Some("adaptive"), None, 10).unwrap();
        assert_eq!((c.mode(), c.max_attempts()), (RetryMode::Adaptive, 10));
        let c = retry_config_from(Some("Standard"), Some("3"), 10).unwrap();
        assert_eq!((c.mode(), c.max_attempts()), (RetryMode::Standard, 3));
    }

    #[test]
    fn invalid_retry_settings_name_the_variable() {
        let e = retry_config_from(Some("legacy"), None, 10).unwrap_err().to_string();
        assert!(e.contains("AWS_RETRY_MODE") && e.contains("legacy"), "{e}");
        for bad in ["0", "-1", "ten"] {
            let e = retry_config_from(None, Some(bad), 10).unwrap_err().to_string();
            assert!(e.contains("AWS_MAX_ATTEMPTS"), "{e}");
        }
    }
}
