//! AWS CloudFormation adapter (member accounts). Stack operations are waited for by polling
//! `DescribeStacks` / `DescribeChangeSet` with backoff ([`Wait`]); a failure is reported with the
//! stack events that caused it.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_cloudformation::types::{Capability, ChangeSetStatus, StackDriftDetectionStatus, Tag};
use aws_sdk_cloudformation::Client;

use super::types::{DriftedResource, ObservedStack, ResourceDrift, StackStatus};
use super::{Classify, Error, ErrorKind};
use crate::poll::Look;

/// Name prefix of workload stacks (`tenantry-wl-<workload>`).
pub const WORKLOAD_STACK_PREFIX: &str = "tenantry-wl-";

/// Stacks in the account whose names start with `tenantry-`, workload stacks and deleted stacks
/// aside (`DescribeStacks`, all pages; see [`is_apply_stack`]).
pub async fn tenantry_stacks(cfn: &Client) -> Result<BTreeMap<String, ObservedStack>, Error> {
    let mut out = BTreeMap::new();
    let mut pages = cfn.describe_stacks().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.classify("cloudformation:DescribeStacks")?;
        for s in page.stacks.unwrap_or_default() {
            let stack = observed(&s);
            if is_apply_stack(&stack) {
                out.insert(stack.name.clone(), stack);
            }
        }
    }
    Ok(out)
}

/// Whether a listed stack is one of apply's: named `tenantry-*` but not a workload stack
/// (`tenantry-wl-*`, which belong to `stage` and `promote`), and not `DELETE_COMPLETE` (an
/// unnamed `DescribeStacks` may list deleted stacks, as LocalStack does: such a stack is gone,
/// and counting it would hide that it must be created again).
pub fn is_apply_stack(stack: &ObservedStack) -> bool {
    stack.name.starts_with("tenantry-")
        && !stack.name.starts_with(WORKLOAD_STACK_PREFIX)
        && stack.status != StackStatus::DeleteComplete
}

/// One stack by name (`DescribeStacks`); `None` when it does not exist.
pub async fn describe(cfn: &Client, name: &str) -> Result<Option<ObservedStack>, Error> {
    match cfn.describe_stacks().stack_name(name).send().await {
        Ok(out) => Ok(out.stacks.unwrap_or_default().first().map(observed)),
        // DescribeStacks answers ValidationError for a stack that does not exist.
        Err(e) if Error::kind_of_sdk(&e) == ErrorKind::Invalid => Ok(None),
        Err(e) => Err(Error::from_sdk("cloudformation:DescribeStacks", e)),
    }
}

/// How long to wait for one stack operation, and how often to look while it runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wait {
    /// The longest wait for the operation (`stack_timeout_seconds`).
    pub timeout: Duration,
    /// The pause before the second look; it doubles (with jitter) after each look...
    pub min_delay: Duration,
    /// ...up to this.
    pub max_delay: Duration,
}

impl Wait {
    /// The pauses of the SDK's CloudFormation waiters (30 s, growing to 120 s): what AWS's own
    /// tools use against a real CloudFormation, whose operations take tens of seconds.
    pub const AWS_DELAYS: (Duration, Duration) = (Duration::from_secs(30), Duration::from_secs(120));
    /// The pauses against a local emulator, which finishes an operation within about 2 s.
    pub const LOCAL_DELAYS: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(2));
}

/// Looks at stack `name` (`DescribeStacks`) right away, then after each pause of `wait`, until
/// no operation is in progress (`*_IN_PROGRESS`, `REVIEW_IN_PROGRESS` included); returns its last
/// state, or `None` once it no longer exists. Errors: [`StackError::TimedOut`] after
/// `wait.timeout`, [`StackError::Interrupted`] on a stop signal, or the call's error.
pub async fn wait_for_stack(
    cfn: &Client,
    name: &str,
    what: impl std::fmt::Display,
    wait: Wait,
) -> Result<Option<ObservedStack>, StackError> {
    crate::poll::until_done(what, (wait.min_delay, wait.max_delay), wait.timeout, || async {
        Ok::<_, StackError>(match describe(cfn, name).await? {
            Some(s) if s.status.is_in_progress() => Look::NotYet,
            found => Look::Done(found),
        })
    })
    .await
}

fn observed(s: &aws_sdk_cloudformation::types::Stack) -> ObservedStack {
    let tags: BTreeMap<String, String> =
        s.tags().iter().filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string()))).collect();
    ObservedStack {
        name: s.stack_name().unwrap_or_default().to_string(),
        stack_id: s.stack_id().unwrap_or_default().to_string(),
        status: s.stack_status().map_or(StackStatus::Unknown, |x| StackStatus::from(x.as_str())),
        version: tags.get(crate::tenant::tags::VERSION).cloned(),
        tags,
        changed_at: changed_at(s),
        template_body: None,
        resource_drift: ResourceDrift::NotChecked,
    }
}

/// When the stack last changed, if `DescribeStacks` says so reliably: its `LastUpdatedTime`,
/// or, for a stack that was only ever created (`CREATE_COMPLETE`), its `CreationTime`. A stack
/// in any other status gives `None` when its `LastUpdatedTime` is missing or still its
/// `CreationTime`: an endpoint that does not track updates (moto reports none, LocalStack its
/// creation time) cannot tell one update from the next.
fn changed_at(s: &aws_sdk_cloudformation::types::Stack) -> Option<String> {
    let created_only = s.stack_status().is_some_and(|x| x.as_str() == "CREATE_COMPLETE");
    let updated = s.last_updated_time().filter(|t| created_only || Some(*t) != s.creation_time());
    updated
        .or(s.creation_time().filter(|_| created_only))
        .and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok())
}

/// The template a stack runs (`GetTemplate`, stage Original).
pub async fn template_body(cfn: &Client, name: &str) -> Result<Option<String>, Error> {
    let out = cfn
        .get_template()
        .stack_name(name)
        .template_stage(aws_sdk_cloudformation::types::TemplateStage::Original)
        .send()
        .await
        .classify("cloudformation:GetTemplate")?;
    Ok(out.template_body)
}

/// Resource-level drift of a stack: `DetectStackDrift`, then `DescribeStackDriftDetectionStatus`
/// polled with backoff (at most `timeout`), then `DescribeStackResourceDrifts`. An endpoint that
/// does not implement drift detection gives [`ResourceDrift::Unsupported`], never "in sync".
pub async fn detect_drift(cfn: &Client, name: &str, timeout: Duration) -> Result<ResourceDrift, StackError> {
    let started = match start_drift_detection(cfn, name).await? {
        Ok(id) => id,
        Err(not_run) => return Ok(not_run),
    };
    let status = crate::poll::until_done(
        format_args!("waiting for drift detection of stack {name}"),
        (Duration::from_millis(200), Duration::from_secs(10)),
        timeout,
        || async {
            let s = cfn
                .describe_stack_drift_detection_status()
                .stack_drift_detection_id(&started)
                .send()
                .await
                .classify("cloudformation:DescribeStackDriftDetectionStatus")?;
            Ok::<_, StackError>(match s.detection_status() {
                Some(StackDriftDetectionStatus::DetectionInProgress) => Look::NotYet,
                _ => Look::Done(s),
            })
        },
    )
    .await?;
    if status.detection_status() == Some(&StackDriftDetectionStatus::DetectionFailed) {
        return Ok(ResourceDrift::Unsupported(format!(
            "drift detection failed: {}",
            status.detection_status_reason.unwrap_or_default()
        )));
    }
    Ok(resource_drifts(cfn, name).await?)
}

/// `DetectStackDrift`: the detection id, or the check not run when the endpoint does not
/// implement it or failed on it. Sent without SDK retries (an endpoint without drift detection
/// answers 500 every time, and a transient failure on AWS is reported as a check not run rather
/// than hidden); throttling is still retried, with backoff.
async fn start_drift_detection(cfn: &Client, name: &str) -> Result<Result<String, ResourceDrift>, Error> {
    use backon::{ExponentialBuilder, Retryable};
    let start = || async {
        cfn.detect_stack_drift()
            .stack_name(name)
            .customize()
            .config_override(
                aws_sdk_cloudformation::config::Builder::default()
                    .retry_config(aws_sdk_cloudformation::config::retry::RetryConfig::disabled()),
            )
            .send()
            .await
    };
    let sent = start
        .retry(ExponentialBuilder::default().with_min_delay(Duration::from_millis(500)).with_jitter().with_max_times(5))
        .when(|e| Error::kind_of_sdk(e) == ErrorKind::Throttled)
        .await;
    match sent {
        Ok(out) => Ok(Ok(out.stack_drift_detection_id.unwrap_or_default())),
        Err(e) => {
            let e = Error::from_sdk("cloudformation:DetectStackDrift", e);
            if matches!(e.kind, ErrorKind::Unsupported | ErrorKind::AnswerLost) {
                return Ok(Err(ResourceDrift::Unsupported(format!(
                    "DetectStackDrift is not supported by this endpoint or failed on it ({})",
                    e.code.clone().unwrap_or_else(|| format!("HTTP {}", e.status.unwrap_or_default()))
                ))));
            }
            Err(e)
        }
    }
}

/// The resources a finished drift detection found MODIFIED or DELETED
/// (`DescribeStackResourceDrifts`), with each property difference.
async fn resource_drifts(cfn: &Client, name: &str) -> Result<ResourceDrift, Error> {
    use aws_sdk_cloudformation::types::StackResourceDriftStatus as Status;
    let out = cfn
        .describe_stack_resource_drifts()
        .stack_name(name)
        .send()
        .await
        .classify("cloudformation:DescribeStackResourceDrifts")?;
    let drifted: Vec<DriftedResource> = out
        .stack_resource_drifts
        .unwrap_or_default()
        .iter()
        .filter(|d| matches!(d.stack_resource_drift_status(), Some(Status::Modified | Status::Deleted)))
        .map(|d| DriftedResource {
            logical_id: d.logical_resource_id().unwrap_or_default().to_string(),
            resource_type: d.resource_type().unwrap_or_default().to_string(),
            status: d.stack_resource_drift_status().map(|s| s.as_str()).unwrap_or_default().to_string(),
            differences: d
                .property_differences()
                .iter()
                .map(|p| {
                    format!(
                        "{}: expected {} found {}",
                        p.property_path().unwrap_or_default(),
                        p.expected_value().unwrap_or_default(),
                        p.actual_value().unwrap_or_default()
                    )
                })
                .collect(),
        })
        .collect();
    Ok(if drifted.is_empty() { ResourceDrift::InSync } else { ResourceDrift::Drifted(drifted) })
}

/// How a rendered template reaches CloudFormation: inline up to
/// [`TEMPLATE_BODY_MAX_BYTES`](crate::render::TEMPLATE_BODY_MAX_BYTES), else from S3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSource {
    /// `TemplateBody`.
    Body(String),
    /// `TemplateURL` of the uploaded template, and the template itself.
    Url {
        /// The object's URL.
        url: String,
        /// The template.
        template: String,
    },
}

impl TemplateSource {
    /// `TemplateBody` for an inline template.
    fn body(&self) -> Option<String> {
        match self {
            TemplateSource::Body(b) => Some(b.clone()),
            TemplateSource::Url { .. } => None,
        }
    }

    /// `TemplateURL` for an uploaded template.
    fn url(&self) -> Option<String> {
        match self {
            TemplateSource::Url { url, .. } => Some(url.clone()),
            TemplateSource::Body(_) => None,
        }
    }

    /// The template, however it is passed.
    fn template(&self) -> &str {
        match self {
            TemplateSource::Body(b) => b,
            TemplateSource::Url { template, .. } => template,
        }
    }
}

/// The bucket in a member account that holds its templates over the inline limit.
pub fn template_bucket(account_id: &str, region: &str) -> String {
    format!("tenantry-templates-{account_id}-{region}")
}

/// Gets `template` to CloudFormation in the session's account: inline when it is at most
/// 51,200 bytes; otherwise uploaded (`PutObject`, SSE-S3) as `templates/<sha256>.json` to the
/// account's own template bucket and passed by URL. The bucket is checked to belong to the
/// account (`HeadBucket` with `ExpectedBucketOwner`; a 403 is an error, only a 404 creates it
/// with `CreateBucket`) and made private and encrypted on every upload (`PutPublicAccessBlock`,
/// `PutBucketEncryption`). Every call names the expected owner.
pub async fn template_source(
    session: &crate::aws::member::MemberSession,
    template: &str,
) -> Result<TemplateSource, StackError> {
    if template.len() <= crate::render::TEMPLATE_BODY_MAX_BYTES {
        return Ok(TemplateSource::Body(template.to_string()));
    }
    let s3 = &session.s3;
    let region = &session.region;
    let owner = session.account.account_id();
    let bucket = template_bucket(owner, region);
    match s3.head_bucket().bucket(&bucket).expected_bucket_owner(owner).send().await {
        Ok(_) => {}
        Err(e) if Error::kind_of_sdk(&e) == ErrorKind::NotFound => {
            crate::aws::create_bucket(s3, &bucket, region).await?;
        }
        Err(e) if Error::kind_of_sdk(&e) == ErrorKind::AccessDenied => {
            return Err(StackError::TemplateBucketNotOwned { bucket, owner: owner.to_string() })
        }
        Err(e) => return Err(Error::from_sdk("s3:HeadBucket", e).into()),
    }
    // Made private and encrypted every time (both idempotent), so a bucket whose creation was
    // interrupted is never left open.
    crate::aws::make_bucket_private(s3, &bucket, Some(owner)).await?;
    let key = format!("templates/{}.json", crate::render::sha256_hex(template.as_bytes()));
    s3.put_object()
        .bucket(&bucket)
        .key(&key)
        .expected_bucket_owner(owner)
        .content_type("application/json")
        .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::Aes256)
        .body(aws_sdk_s3::primitives::ByteStream::from(template.as_bytes().to_vec()))
        .send()
        .await
        .classify("s3:PutObject")?;
    Ok(TemplateSource::Url {
        url: format!("https://s3.{region}.amazonaws.com/{bucket}/{key}"),
        template: template.to_string(),
    })
}

/// A fresh `ClientRequestToken`: the SDK sends the same one on each retry of a request, so
/// CloudFormation carries the request out once.
fn request_token() -> String {
    format!("tenantry-{}", uuid::Uuid::new_v4().simple())
}

fn to_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

/// Whether the stack's template (`GetTemplate`) is exactly `template`.
async fn runs_template(cfn: &Client, name: &str, template: &TemplateSource) -> Result<bool, Error> {
    Ok(template_body(cfn, name).await?.as_deref() == Some(template.template()))
}

/// Which stack operation to carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `CreateStack`, waited for until it is no longer in progress.
    Create,
    /// `UpdateStack`, waited for likewise. "No updates are to be
    /// performed" counts as success.
    Update,
}

/// Creates or updates a stack from an inline template and waits for it ([`Wait`]).
/// On failure the error lists the failed resources' events (`DescribeStackEvents`).
pub async fn deploy(
    cfn: &Client,
    op: Operation,
    name: &str,
    template: &TemplateSource,
    tags: &BTreeMap<String, String>,
    wait: Wait,
) -> Result<ObservedStack, StackError> {
    // The wait's last DescribeStacks answer: no second DescribeStacks.
    let request = StackRequest { name, template, tags, wait };
    let last = match op {
        Operation::Create => create_stack(cfn, &request).await?,
        Operation::Update => update_stack(cfn, &request).await?,
    };
    let stack = last.ok_or_else(|| StackError::Vanished { stack: name.to_string() })?;
    let expected = match op {
        Operation::Create => StackStatus::CreateComplete,
        Operation::Update => StackStatus::UpdateComplete,
    };
    if stack.status == expected || (op == Operation::Update && stack.status == StackStatus::CreateComplete) {
        Ok(stack)
    } else {
        Err(ended_badly(cfn, name, stack.status, format!("(wanted {expected})")).await)
    }
}

/// The fields `CreateStack` and `UpdateStack` requests share (their builders are distinct types):
/// the stack, its template (inline or by URL), the IAM capabilities, the tags and a fresh client
/// request token (so that the SDK's retries of one request are one operation).
macro_rules! stack_request {
    ($builder:expr, $name:expr, $template:expr, $tags:expr) => {
        $builder
            .stack_name($name)
            .set_template_body($template.body())
            .set_template_url($template.url())
            .set_capabilities(Some(capabilities()))
            .set_tags(Some(to_tags($tags)))
            .client_request_token(request_token())
    };
}

/// What [`deploy`] sends: the stack, its template, its tags, and how to wait for it.
#[derive(Clone, Copy)]
struct StackRequest<'a> {
    name: &'a str,
    template: &'a TemplateSource,
    tags: &'a BTreeMap<String, String>,
    wait: Wait,
}

/// The capabilities tenantry's stacks are created and updated with.
fn capabilities() -> Vec<Capability> {
    vec![Capability::CapabilityIam, Capability::CapabilityNamedIam]
}

/// `CreateStack`, waited for; returns the stack's last state (`None`: gone). A stack that already exists was
/// created by an attempt of this request whose answer was lost (the plan saw no such stack and
/// the tenant's lease is held; a CloudFormation that ignores the token says so on the SDK's
/// retry): it is waited for like our own, once its `tenantry:tenant` and `tenantry:environment`
/// tags are this request's ([`StackError::NotOurs`] otherwise).
async fn create_stack(cfn: &Client, request: &StackRequest<'_>) -> Result<Option<ObservedStack>, StackError> {
    let StackRequest { name, template, tags, wait } = *request;
    let sent = stack_request!(cfn.create_stack(), name, template, tags).send().await;
    match sent {
        Ok(_) => {}
        Err(e) if e.as_service_error().is_some_and(|s| s.is_already_exists_exception()) => {
            // Ours only if it carries this request's tenant and environment: anything else
            // there (made by hand, or by another tenant's session) is never adopted.
            let existing = describe(cfn, name).await?;
            for key in [crate::tenant::tags::TENANT, crate::tenant::tags::ENVIRONMENT] {
                let found = existing.as_ref().and_then(|s| s.tags.get(key));
                if found != tags.get(key) {
                    return Err(StackError::NotOurs {
                        stack: name.to_string(),
                        tag: key,
                        found: found.cloned().unwrap_or_else(|| "(none)".into()),
                    });
                }
            }
            tracing::warn!(
                stack = name,
                "CreateStack: the stack already exists (an earlier attempt of this request created it); waiting for it"
            );
        }
        Err(e) => return Err(Error::from_sdk("cloudformation:CreateStack", e).into()),
    }
    wait_for_stack(cfn, name, format_args!("waiting for stack {name} to be created"), wait).await
}

/// `UpdateStack`, waited for; returns the stack's last state (`None`: gone). CloudFormation refuses an update
/// with `ValidationError` both while one is under way (an earlier attempt of this request started
/// it: it is waited for) and when the stack already runs this template with these tags ("no
/// updates are to be performed": done). Which one is read from the stack, not from the message.
async fn update_stack(cfn: &Client, request: &StackRequest<'_>) -> Result<Option<ObservedStack>, StackError> {
    let StackRequest { name, template, tags, wait } = *request;
    let sent = stack_request!(cfn.update_stack(), name, template, tags).send().await;
    let wait_for_update = || wait_for_stack(cfn, name, format!("waiting for stack {name} to be updated"), wait);
    match sent {
        Ok(_) => wait_for_update().await,
        Err(e) if Error::kind_of_sdk(&e) == ErrorKind::Invalid => {
            let refused = Error::from_sdk("cloudformation:UpdateStack", e);
            let Some(current) = describe(cfn, name).await? else { return Err(refused.into()) };
            if current.status.is_in_progress() {
                tracing::warn!(stack = name, "UpdateStack: an update is already in progress (an earlier attempt of this request started it); waiting for it");
                wait_for_update().await
            } else if current.tags == *tags && runs_template(cfn, name, template).await? {
                Ok(Some(current))
            } else {
                Err(refused.into())
            }
        }
        Err(e) => Err(Error::from_sdk("cloudformation:UpdateStack", e).into()),
    }
}

/// Finishes a failed rollback (`ContinueUpdateRollback`) and waits ([`Wait`]) until the stack
/// is UPDATE_ROLLBACK_COMPLETE.
pub async fn continue_rollback(cfn: &Client, name: &str, wait: Wait) -> Result<(), StackError> {
    cfn.continue_update_rollback().stack_name(name).send().await.classify("cloudformation:ContinueUpdateRollback")?;
    let s = wait_for_stack(cfn, name, format_args!("waiting for stack {name} to finish its rollback"), wait)
        .await?
        .ok_or_else(|| StackError::Vanished { stack: name.to_string() })?;
    if s.status != StackStatus::UpdateRollbackComplete {
        return Err(ended_badly(cfn, name, s.status, "after ContinueUpdateRollback".into()).await);
    }
    Ok(())
}

/// Deletes a stack (`DeleteStack`) and waits ([`Wait`]) until it is gone.
pub async fn delete(cfn: &Client, name: &str, wait: Wait) -> Result<(), StackError> {
    cfn.delete_stack().stack_name(name).send().await.classify("cloudformation:DeleteStack")?;
    match wait_for_stack(cfn, name, format_args!("waiting for stack {name} to be deleted"), wait).await? {
        None => Ok(()),
        Some(s) if s.status.is_deleted() => Ok(()),
        Some(s) => Err(ended_badly(cfn, name, s.status, "after DeleteStack".into()).await),
    }
}

/// The events of resources that failed, newest first: `LogicalId (Type) STATUS: reason`.
pub async fn failure_events(cfn: &Client, name: &str) -> Result<Vec<String>, Error> {
    let out =
        cfn.describe_stack_events().stack_name(name).send().await.classify("cloudformation:DescribeStackEvents")?;
    Ok(out
        .stack_events
        .unwrap_or_default()
        .iter()
        .filter(|e| {
            use aws_sdk_cloudformation::types::ResourceStatus::*;
            matches!(
                e.resource_status(),
                Some(
                    CreateFailed
                        | DeleteFailed
                        | UpdateFailed
                        | ImportFailed
                        | ImportRollbackFailed
                        | RollbackFailed
                        | UpdateRollbackFailed
                )
            )
        })
        .take(10)
        .map(|e| {
            format!(
                "{} ({}) {}: {}",
                e.logical_resource_id().unwrap_or("?"),
                e.resource_type().unwrap_or("?"),
                e.resource_status().map(|s| s.as_str()).unwrap_or("?"),
                e.resource_status_reason().unwrap_or("")
            )
        })
        .collect())
}

/// One resource change of a change set.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct ResourceChange {
    /// `Add`, `Modify`, `Remove`, ...
    pub action: String,
    /// Logical id in the template.
    pub logical_id: String,
    /// e.g. `AWS::SQS::Queue`.
    pub resource_type: String,
    /// `True`, `False` or `Conditional` (for `Modify`); empty otherwise.
    pub replacement: String,
    /// What changes: `Properties`, `Tags`, ...
    pub scope: Vec<String>,
}

/// A change set that was created and described.
#[derive(Debug, Clone)]
pub struct ChangeSetPreview {
    /// Change set name.
    pub name: String,
    /// Whether it creates the stack (`CREATE`) rather than updating it.
    pub creates_stack: bool,
    /// Its resource changes (may be empty for a change of outputs or stack tags only).
    pub changes: Vec<ResourceChange>,
    /// Whether it can be executed: false when CloudFormation found nothing at all to change.
    pub executable: bool,
    /// The change set could not be created for a reason other than "no changes".
    pub failed: Option<String>,
}

/// How a change set could not be made or carried out.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// An AWS call failed.
    #[error(transparent)]
    Aws(#[from] Error),
    /// A stop signal ended the wait (what CloudFormation was asked to do goes on).
    #[error(transparent)]
    Interrupted(#[from] crate::shutdown::Interrupted),
    /// A wait did not end in time.
    #[error(transparent)]
    TimedOut(#[from] crate::poll::TimedOut),
    /// The stack ended in a status other than the one wanted.
    #[error(
        "stack {stack} ended in {status} {after}{}",
        if events.is_empty() { String::new() } else { format!("; failed resources:\n  {}", events.join("\n  ")) }
    )]
    Ended {
        /// Stack name.
        stack: String,
        /// The status it ended in.
        status: StackStatus,
        /// After what, readably (`after change set …`, `(wanted UPDATE_COMPLETE)`).
        after: String,
        /// Its failed resources' events, newest first (`DescribeStackEvents`).
        events: Vec<String>,
    },
    /// The stack was gone when it was read after the operation.
    #[error("stack {stack} vanished")]
    Vanished {
        /// Stack name.
        stack: String,
    },
    /// `CreateStack` answered that the stack exists, and the one there is not this tenant
    /// environment's (its tag says otherwise): it is not adopted.
    #[error(
        "stack {stack} already exists and is not this tenant environment's ({tag} is {found}): refusing to adopt it"
    )]
    NotOurs {
        /// Stack name.
        stack: String,
        /// The tag that differs.
        tag: &'static str,
        /// Its value on the stack found.
        found: String,
    },
    /// The account's template bucket exists but belongs to another account (or cannot be read).
    #[error("template bucket {bucket} exists but is not owned by account {owner} (or is not readable): refusing to upload templates to it")]
    TemplateBucketNotOwned {
        /// Bucket name.
        bucket: String,
        /// The account it should belong to.
        owner: String,
    },
}

/// What [`create_change_set`] creates: change set `name` for `stack` (a `CREATE` change set when
/// `creates_stack`), from `template` with stack `parameters` and `tags`.
pub struct ChangeSetRequest<'a> {
    pub stack: &'a str,
    pub name: &'a str,
    pub creates_stack: bool,
    pub template: &'a TemplateSource,
    pub parameters: &'a BTreeMap<String, String>,
    pub tags: &'a BTreeMap<String, String>,
}

/// Creates a change set for `stack` from an inline template with stack parameters and tags
/// (`CreateChangeSet`, type `CREATE` when `creates_stack`), waits until it is ready
/// (`DescribeChangeSet` polled as [`Wait`] says) and returns its changes. A
/// change set that failed because the template and parameters change nothing comes back with no
/// changes and no failure.
pub async fn create_change_set(
    cfn: &Client,
    request: &ChangeSetRequest<'_>,
    wait: Wait,
) -> Result<ChangeSetPreview, StackError> {
    use aws_sdk_cloudformation::types::{ChangeSetType, Parameter};
    let ChangeSetRequest { stack, name, creates_stack, template, parameters, tags } = *request;
    let params: Vec<Parameter> =
        parameters.iter().map(|(k, v)| Parameter::builder().parameter_key(k).parameter_value(v).build()).collect();
    match cfn
        .create_change_set()
        .stack_name(stack)
        .change_set_name(name)
        .change_set_type(if creates_stack { ChangeSetType::Create } else { ChangeSetType::Update })
        .set_template_body(template.body())
        .set_template_url(template.url())
        .set_parameters(Some(params))
        .set_capabilities(Some(capabilities()))
        .set_tags(Some(to_tags(tags)))
        .send()
        .await
    {
        Ok(_) => {}
        // Change set names are unique per run: an attempt of this request whose answer was lost
        // created it.
        Err(e) if e.as_service_error().is_some_and(|s| s.is_already_exists_exception()) => {
            tracing::warn!(
                stack,
                change_set = name,
                "CreateChangeSet: already exists (an earlier attempt of this request created it)"
            );
        }
        Err(e) => return Err(Error::from_sdk("cloudformation:CreateChangeSet", e).into()),
    }
    crate::poll::until_done(
        format_args!("waiting for change set {name} of stack {stack}"),
        (wait.min_delay, wait.max_delay),
        wait.timeout,
        || async {
            let out = cfn
                .describe_change_set()
                .stack_name(stack)
                .change_set_name(name)
                .send()
                .await
                .classify("cloudformation:DescribeChangeSet")?;
            Ok::<_, StackError>(match out.status() {
                Some(ChangeSetStatus::CreatePending | ChangeSetStatus::CreateInProgress) => Look::NotYet,
                _ => Look::Done(()),
            })
        },
    )
    .await?;
    let mut changes = Vec::new();
    let mut status = None;
    let mut reason = String::new();
    let mut pages = cfn.describe_change_set().stack_name(stack).change_set_name(name).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::from_sdk("cloudformation:DescribeChangeSet", e))?;
        status = page.status().cloned();
        reason = page.status_reason().unwrap_or_default().to_string();
        for c in page.changes() {
            if let Some(rc) = c.resource_change() {
                changes.push(ResourceChange {
                    action: rc.action().map(|a| a.as_str().to_string()).unwrap_or_default(),
                    logical_id: rc.logical_resource_id().unwrap_or_default().to_string(),
                    resource_type: rc.resource_type().unwrap_or_default().to_string(),
                    replacement: rc.replacement().map(|r| r.as_str().to_string()).unwrap_or_default(),
                    scope: rc.scope().iter().map(|s| s.as_str().to_string()).collect(),
                });
            }
        }
    }
    let executable = status == Some(ChangeSetStatus::CreateComplete);
    // A change set that would change nothing ends FAILED, with only the reason's text to tell it
    // from a real failure: CloudFormation has no modelled error or status for it. (Reading the
    // stack instead does not work on moto, whose change sets disagree with its stacks.)
    let failed = match status {
        Some(ChangeSetStatus::CreateComplete) => None,
        Some(ChangeSetStatus::Failed)
            if reason.contains("didn't contain changes") || reason.contains("No updates are to be performed") =>
        {
            None
        }
        other => Some(format!(
            "change set {name} is {}: {reason}",
            other.as_ref().map_or("(no status)", ChangeSetStatus::as_str)
        )),
    };
    Ok(ChangeSetPreview { name: name.to_string(), creates_stack, changes, executable, failed })
}

/// The error for a stack that ended in `status` `after` something, with its failed resources'
/// events (`DescribeStackEvents`; none if they cannot be read).
async fn ended_badly(cfn: &Client, stack: &str, status: StackStatus, after: String) -> StackError {
    let events = failure_events(cfn, stack).await.unwrap_or_default();
    StackError::Ended { stack: stack.to_string(), status, after, events }
}

/// Deletes a change set (`DeleteChangeSet`); one already gone is fine.
pub async fn delete_change_set(cfn: &Client, stack: &str, name: &str) -> Result<(), Error> {
    match cfn.delete_change_set().stack_name(stack).change_set_name(name).send().await {
        Ok(_) => Ok(()),
        Err(e) if Error::kind_of_sdk(&e) == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::from_sdk("cloudformation:DeleteChangeSet", e)),
    }
}

/// Executes a change set (`ExecuteChangeSet`) and waits for the stack ([`Wait`]). A stack
/// that does not end in CREATE_COMPLETE / UPDATE_COMPLETE is an error listing the failed
/// resources' events; CloudFormation has then rolled the stack back to what it ran before.
pub async fn execute_change_set(
    cfn: &Client,
    stack: &str,
    name: &str,
    creates_stack: bool,
    wait: Wait,
) -> Result<ObservedStack, StackError> {
    cfn.execute_change_set()
        .stack_name(stack)
        .change_set_name(name)
        .client_request_token(request_token())
        .send()
        .await
        .map_err(|e| Error::from_sdk("cloudformation:ExecuteChangeSet", e))?;
    let what = format!(
        "waiting for stack {stack} to be {} by change set {name}",
        if creates_stack { "created" } else { "updated" }
    );
    let observed = wait_for_stack(cfn, stack, what, wait)
        .await?
        .ok_or_else(|| StackError::Vanished { stack: stack.to_string() })?;
    if observed.status.succeeded() {
        Ok(observed)
    } else {
        Err(ended_badly(cfn, stack, observed.status, format!("after change set {name}")).await)
    }
}

/// A stack's outputs, key → value (`DescribeStacks`); empty when the stack does not exist.
pub async fn outputs(cfn: &Client, stack: &str) -> Result<BTreeMap<String, String>, Error> {
    match cfn.describe_stacks().stack_name(stack).send().await {
        Ok(out) => Ok(out
            .stacks()
            .first()
            .map(|s| {
                s.outputs()
                    .iter()
                    .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
                    .collect()
            })
            .unwrap_or_default()),
        // DescribeStacks answers ValidationError for a stack that does not exist.
        Err(e) if Error::kind_of_sdk(&e) == ErrorKind::Invalid => Ok(BTreeMap::new()),
        Err(e) => Err(Error::from_sdk("cloudformation:DescribeStacks", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stack_changed_at_is_its_last_update_or_its_creation_while_only_created() {
        use aws_sdk_cloudformation::types::{Stack, StackStatus as Status};
        use aws_smithy_types::DateTime;
        let at = |secs| DateTime::from_secs(secs);
        let s = |status: Status, updated: Option<DateTime>| {
            let b = Stack::builder().stack_name("tenantry-baseline").stack_status(status).creation_time(at(100));
            match updated {
                Some(t) => b.last_updated_time(t),
                None => b,
            }
            .build()
        };
        assert_eq!(changed_at(&s(Status::CreateComplete, None)).as_deref(), Some("1970-01-01T00:01:40Z"));
        assert_eq!(changed_at(&s(Status::UpdateComplete, Some(at(200)))).as_deref(), Some("1970-01-01T00:03:20Z"));
        // An endpoint that reports no LastUpdatedTime for an updated stack, or its creation time
        // (LocalStack), tells nothing.
        assert_eq!(changed_at(&s(Status::UpdateComplete, None)), None);
        assert_eq!(changed_at(&s(Status::UpdateComplete, Some(at(100)))), None);
        assert_eq!(changed_at(&s(Status::CreateComplete, Some(at(100)))).as_deref(), Some("1970-01-01T00:01:40Z"));
        assert_eq!(changed_at(&s(Status::UpdateRollbackComplete, None)), None);
    }

    #[test]
    fn apply_counts_its_own_live_stacks_only() {
        let stack = |name: &str, status: StackStatus| ObservedStack {
            name: name.into(),
            stack_id: "arn".into(),
            status,
            version: None,
            tags: BTreeMap::new(),
            changed_at: None,
            template_body: None,
            resource_drift: ResourceDrift::NotChecked,
        };
        let cases = [
            ("tenantry-baseline", StackStatus::CreateComplete, true),
            ("tenantry-baseline", StackStatus::RollbackComplete, true),
            ("tenantry-baseline", StackStatus::DeleteInProgress, true),
            ("tenantry-baseline", StackStatus::DeleteComplete, false),
            ("tenantry-wl-orders", StackStatus::UpdateComplete, false),
            ("someone-elses", StackStatus::CreateComplete, false),
        ];
        for (name, status, want) in cases {
            assert_eq!(is_apply_stack(&stack(name, status.clone())), want, "{name} {status}");
        }
    }
}
