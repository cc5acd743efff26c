//! AWS CloudFormation adapter (member accounts). Stacks are created and updated with the SDK's
//! waiters; a failure is reported with the stack events that caused it.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use aws_sdk_cloudformation::types::{Capability, Tag};
use aws_sdk_cloudformation::client::Waiters;
use aws_sdk_cloudformation::Client;

use super::{aws_error, error_code};
use crate::observe::{DriftedResource, ObservedStack, ResourceDrift};

/// Stacks in the account whose names start with `tenantry-` (`DescribeStacks`, all pages).
pub async fn tenantry_stacks(cfn: &Client) -> Result<BTreeMap<String, ObservedStack>> {
    let mut out = BTreeMap::new();
    let mut pages = cfn.describe_stacks().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| aws_error("cloudformation:DescribeStacks", e))?;
        for s in page.stacks.unwrap_or_default() {
            let name = s.stack_name().unwrap_or_default().to_string();
            if name.starts_with("tenantry-") {
                out.insert(name, observed(&s));
            }
        }
    }
    Ok(out)
}

/// One stack by name (`DescribeStacks`); `None` when it does not exist.
pub async fn describe(cfn: &Client, name: &str) -> Result<Option<ObservedStack>> {
    match cfn.describe_stacks().stack_name(name).send().await {
        Ok(out) => Ok(out.stacks.unwrap_or_default().first().map(observed)),
        Err(e) if error_code(&e) == Some("ValidationError") => Ok(None),
        Err(e) => Err(aws_error("cloudformation:DescribeStacks", e)),
    }
}

type StackWait = Result<
    aws_smithy_runtime_api::client::waiters::FinalPoll<
        aws_sdk_cloudformation::operation::describe_stacks::DescribeStacksOutput,
        aws_sdk_cloudformation::error::SdkError<aws_sdk_cloudformation::operation::describe_stacks::DescribeStacksError>,
    >,
    aws_smithy_runtime_api::client::waiters::error::WaiterError<
        aws_sdk_cloudformation::operation::describe_stacks::DescribeStacksOutput,
        aws_sdk_cloudformation::operation::describe_stacks::DescribeStacksError,
    >,
>;

/// The stack in a waiter's final `DescribeStacks` answer (success or failure state), if any.
fn last_polled(waited: StackWait) -> Option<ObservedStack> {
    use aws_smithy_runtime_api::client::waiters::error::WaiterError;
    let output = match &waited {
        Ok(p) => p.as_result().ok(),
        Err(WaiterError::FailureState(f)) => f.final_poll().as_result().ok(),
        Err(_) => None,
    };
    output.and_then(|o| o.stacks().first()).map(observed)
}

fn observed(s: &aws_sdk_cloudformation::types::Stack) -> ObservedStack {
    let tags: BTreeMap<String, String> = s
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
        .collect();
    ObservedStack {
        name: s.stack_name().unwrap_or_default().to_string(),
        stack_id: s.stack_id().unwrap_or_default().to_string(),
        status: s.stack_status().map(|x| x.as_str().to_string()).unwrap_or_default(),
        version: tags.get(crate::tenant::tags::VERSION).cloned(),
        tags,
        template_body: None,
        resource_drift: ResourceDrift::NotChecked,
    }
}

/// The template a stack runs (`GetTemplate`, stage Original).
pub async fn template_body(cfn: &Client, name: &str) -> Result<Option<String>> {
    let out = cfn
        .get_template()
        .stack_name(name)
        .template_stage(aws_sdk_cloudformation::types::TemplateStage::Original)
        .send()
        .await
        .map_err(|e| aws_error("cloudformation:GetTemplate", e))?;
    Ok(out.template_body)
}

/// Resource-level drift of a stack: `DetectStackDrift`, then `DescribeStackDriftDetectionStatus`
/// polled with backoff (at most `timeout`), then `DescribeStackResourceDrifts`. An endpoint that
/// does not implement drift detection gives [`ResourceDrift::Unsupported`], never "in sync".
pub async fn detect_drift(cfn: &Client, name: &str, timeout: Duration) -> Result<ResourceDrift> {
    use backon::{ExponentialBuilder, Retryable};
    // No SDK retries here: an endpoint without drift detection answers 500 every time, and a
    // transient failure on AWS is reported as a check not run rather than hidden.
    // Throttling is still retried, with backoff.
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
    let started = match start
        .retry(ExponentialBuilder::default().with_min_delay(Duration::from_millis(500)).with_jitter().with_max_times(5))
        .when(|e| matches!(error_code(e), Some("Throttling") | Some("ThrottlingException") | Some("TooManyRequestsException")))
        .await
    {
        Ok(out) => out.stack_drift_detection_id.unwrap_or_default(),
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            let code = error_code(&e).map(str::to_string);
            let unsupported = matches!(status, Some(500) | Some(501))
                || matches!(code.as_deref(), Some("NotImplemented") | Some("InvalidAction") | Some("UnknownOperationException") | Some("InternalFailure"));
            if unsupported {
                return Ok(ResourceDrift::Unsupported(format!(
                    "DetectStackDrift is not supported by this endpoint or failed on it ({})",
                    code.unwrap_or_else(|| format!("HTTP {}", status.unwrap_or_default()))
                )));
            }
            return Err(aws_error("cloudformation:DetectStackDrift", e));
        }
    };
    let poll = || async {
        let s = cfn
            .describe_stack_drift_detection_status()
            .stack_drift_detection_id(&started)
            .send()
            .await
            .map_err(|e| aws_error("cloudformation:DescribeStackDriftDetectionStatus", e))?;
        match s.detection_status().map(|d| d.as_str()) {
            Some("DETECTION_IN_PROGRESS") => Err(anyhow::anyhow!("in progress")),
            _ => Ok(s),
        }
    };
    let status = poll
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(10))
                .with_total_delay(Some(timeout))
                .without_max_times(),
        )
        .when(|e| e.to_string() == "in progress")
        .await?;
    if status.detection_status().map(|d| d.as_str()) == Some("DETECTION_FAILED") {
        return Ok(ResourceDrift::Unsupported(format!(
            "drift detection failed: {}",
            status.detection_status_reason.unwrap_or_default()
        )));
    }
    let out = cfn
        .describe_stack_resource_drifts()
        .stack_name(name)
        .send()
        .await
        .map_err(|e| aws_error("cloudformation:DescribeStackResourceDrifts", e))?;
    let drifted: Vec<DriftedResource> = out
        .stack_resource_drifts
        .unwrap_or_default()
        .iter()
        .filter(|d| matches!(d.stack_resource_drift_status().map(|s| s.as_str()), Some("MODIFIED") | Some("DELETED")))
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

fn to_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

/// Which stack operation to carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `CreateStack`, waited on with `wait_until_stack_create_complete`.
    Create,
    /// `UpdateStack`, waited on with `wait_until_stack_update_complete`. "No updates are to be
    /// performed" counts as success.
    Update,
}

/// Creates or updates a stack from an inline template and waits for it (at most `timeout`).
/// On failure the error lists the failed resources' events (`DescribeStackEvents`).
pub async fn deploy(
    cfn: &Client,
    op: Operation,
    name: &str,
    template: &str,
    tags: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<ObservedStack> {
    let caps = vec![Capability::CapabilityIam, Capability::CapabilityNamedIam];
    // The waiter's last DescribeStacks answer, when it has one: no second DescribeStacks.
    let mut last = None;
    match op {
        Operation::Create => {
            cfn.create_stack()
                .stack_name(name)
                .template_body(template)
                .set_capabilities(Some(caps))
                .set_tags(Some(to_tags(tags)))
                .send()
                .await
                .map_err(|e| aws_error("cloudformation:CreateStack", e))?;
            let waited = cfn.wait_until_stack_create_complete().stack_name(name).wait(timeout).await;
            last = last_polled(waited);
        }
        Operation::Update => {
            match cfn
                .update_stack()
                .stack_name(name)
                .template_body(template)
                .set_capabilities(Some(caps))
                .set_tags(Some(to_tags(tags)))
                .send()
                .await
            {
                Ok(_) => {
                    let waited = cfn.wait_until_stack_update_complete().stack_name(name).wait(timeout).await;
                    last = last_polled(waited);
                }
                Err(e)
                    if error_code(&e) == Some("ValidationError")
                        && e.as_service_error()
                            .and_then(|s| aws_sdk_cloudformation::error::ProvideErrorMetadata::message(s))
                            .is_some_and(|m| m.contains("No updates are to be performed")) => {}
                Err(e) => return Err(aws_error("cloudformation:UpdateStack", e)),
            }
        }
    }
    let stack = match last {
        Some(s) => s,
        None => describe(cfn, name).await?.with_context(|| format!("stack {name} vanished"))?,
    };
    let expected = match op {
        Operation::Create => "CREATE_COMPLETE",
        Operation::Update => "UPDATE_COMPLETE",
    };
    if stack.status == expected || (op == Operation::Update && stack.status == "CREATE_COMPLETE") {
        Ok(stack)
    } else {
        let events = failure_events(cfn, name).await.unwrap_or_default();
        anyhow::bail!(
            "stack {name} ended in {} (wanted {expected}){}",
            stack.status,
            if events.is_empty() { String::new() } else { format!("; failed resources:\n  {}", events.join("\n  ")) }
        )
    }
}

/// Finishes a failed rollback (`ContinueUpdateRollback`) and waits, polling `DescribeStacks` with
/// backoff (at most `timeout`), until the stack is UPDATE_ROLLBACK_COMPLETE.
pub async fn continue_rollback(cfn: &Client, name: &str, timeout: Duration) -> Result<()> {
    use backon::{ExponentialBuilder, Retryable};
    cfn.continue_update_rollback()
        .stack_name(name)
        .send()
        .await
        .map_err(|e| aws_error("cloudformation:ContinueUpdateRollback", e))?;
    let poll = || async {
        let s = describe(cfn, name).await?.with_context(|| format!("stack {name} vanished"))?;
        if s.status.ends_with("_IN_PROGRESS") {
            anyhow::bail!("in progress");
        }
        Ok(s)
    };
    let s = poll
        .retry(ExponentialBuilder::default().with_min_delay(Duration::from_millis(500)).with_max_delay(Duration::from_secs(30)).with_total_delay(Some(timeout)).without_max_times())
        .when(|e| e.to_string() == "in progress")
        .await?;
    if s.status != "UPDATE_ROLLBACK_COMPLETE" {
        anyhow::bail!("stack {name} is {} after ContinueUpdateRollback", s.status);
    }
    Ok(())
}

/// Deletes a stack (`DeleteStack`) and waits until it is gone (at most `timeout`).
pub async fn delete(cfn: &Client, name: &str, timeout: Duration) -> Result<()> {
    cfn.delete_stack()
        .stack_name(name)
        .send()
        .await
        .map_err(|e| aws_error("cloudformation:DeleteStack", e))?;
    let _ = cfn.wait_until_stack_delete_complete().stack_name(name).wait(timeout).await;
    match describe(cfn, name).await? {
        None => Ok(()),
        Some(s) if s.status == "DELETE_COMPLETE" => Ok(()),
        Some(s) => anyhow::bail!("stack {name} is {} after DeleteStack", s.status),
    }
}

/// The events of resources that failed, newest first: `LogicalId (Type) STATUS: reason`.
pub async fn failure_events(cfn: &Client, name: &str) -> Result<Vec<String>> {
    let out = cfn
        .describe_stack_events()
        .stack_name(name)
        .send()
        .await
        .map_err(|e| aws_error("cloudformation:DescribeStackEvents", e))?;
    Ok(out
        .stack_events
        .unwrap_or_default()
        .iter()
        .filter(|e| e.resource_status().is_some_and(|s| s.as_str().ends_with("_FAILED")))
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
