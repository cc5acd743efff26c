//! AWS-shaped plain data the adapters return: the organization, accounts, create requests,
//! stacks and their drift. A leaf: it imports nothing of tenantry's.

use std::collections::BTreeMap;

use serde::Serialize;

/// The organization as a whole.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OrgOverview {
    /// Organization id (`o-...`).
    pub organization_id: String,
    /// Management account id.
    pub management_account_id: String,
    /// Whether all features (not only consolidated billing) are enabled.
    pub all_features: bool,
    /// Root id (`r-...`).
    pub root_id: String,
    /// Whether SCPs are enabled on the root.
    pub scp_enabled: bool,
}

/// An account as `ListAccounts`/`DescribeAccount` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AccountSummary {
    /// 12-digit account id.
    pub id: String,
    /// Account name.
    pub name: String,
    /// Root email.
    pub email: String,
    /// ACTIVE, SUSPENDED, PENDING_CLOSURE.
    pub status: String,
}

/// A `CreateAccount` request.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CreateRequest {
    /// Request id (`car-...`).
    pub request_id: String,
    /// Account name requested.
    pub account_name: String,
    /// Account id, once known.
    pub account_id: Option<String>,
    /// Where it stands.
    pub state: CreateRequestState,
}

/// State of a `CreateAccount` request.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub enum CreateRequestState {
    /// Still running.
    InProgress,
    /// Done; the account exists.
    Succeeded,
    /// Failed with this `FailureReason`.
    Failed(String),
}

/// A CloudFormation stack in a member account.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ObservedStack {
    /// Stack name.
    pub name: String,
    /// Stack id (ARN).
    pub stack_id: String,
    /// e.g. CREATE_COMPLETE, ROLLBACK_COMPLETE.
    pub status: String,
    /// The `tenantry:version` tag: sha256 of the template deployed.
    pub version: Option<String>,
    /// All stack tags.
    pub tags: BTreeMap<String, String>,
    /// The template the stack runs (`GetTemplate`).
    #[serde(skip)]
    pub template_body: Option<String>,
    /// Resource-level drift (checked by reconcile only).
    pub resource_drift: ResourceDrift,
}

/// Result of CloudFormation drift detection on one stack.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
pub enum ResourceDrift {
    /// Not checked in this run (plan and apply do not run drift detection).
    NotChecked,
    /// The endpoint cannot detect drift; this is reported as a check not run, never as in sync.
    Unsupported(String),
    /// Every resource matches the template.
    InSync,
    /// Resources differ from the template.
    Drifted(Vec<DriftedResource>),
}

/// One resource that drifted.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DriftedResource {
    /// Logical id in the template.
    pub logical_id: String,
    /// e.g. `AWS::SQS::Queue`.
    pub resource_type: String,
    /// MODIFIED or DELETED.
    pub status: String,
    /// `path: expected X found Y`.
    pub differences: Vec<String>,
}
