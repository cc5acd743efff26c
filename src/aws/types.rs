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
    pub status: AccountStatus,
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
    pub status: StackStatus,
    /// The `tenantry:version` tag: sha256 of the template deployed.
    pub version: Option<String>,
    /// All stack tags.
    pub tags: BTreeMap<String, String>,
    /// When CloudFormation last changed the stack (RFC 3339, as `DescribeStacks` reports it):
    /// its `LastUpdatedTime`, or its `CreationTime` while it is `CREATE_COMPLETE`; `None` when
    /// the endpoint does not say (an updated stack without `LastUpdatedTime`). Every update of
    /// the stack, by anyone, moves it.
    pub changed_at: Option<String>,
    /// The template the stack runs (`GetTemplate`); `None` when it was not read (the stack is
    /// busy or gone, or state shows tenantry deployed or verified this very template at
    /// `changed_at`, so that nothing can have changed it since).
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

/// An account's status in the organization. In JSON and text it is Organizations' name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountStatus {
    /// `ACTIVE`: the only status tenantry works on.
    Active,
    /// `SUSPENDED`.
    Suspended,
    /// `PENDING_CLOSURE`.
    PendingClosure,
    /// A status this version does not know (`UNKNOWN` when none was given).
    Other(String),
}

impl AccountStatus {
    /// Organizations' name of the status.
    pub fn as_str(&self) -> &str {
        match self {
            AccountStatus::Active => "ACTIVE",
            AccountStatus::Suspended => "SUSPENDED",
            AccountStatus::PendingClosure => "PENDING_CLOSURE",
            AccountStatus::Other(s) => s,
        }
    }
}

impl From<&str> for AccountStatus {
    fn from(name: &str) -> AccountStatus {
        match name {
            "ACTIVE" => AccountStatus::Active,
            "SUSPENDED" => AccountStatus::Suspended,
            "PENDING_CLOSURE" => AccountStatus::PendingClosure,
            other => AccountStatus::Other(other.to_string()),
        }
    }
}

impl std::fmt::Display for AccountStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for AccountStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A CloudFormation stack status (`StackStatus`). In JSON and text it is CloudFormation's name,
/// e.g. `UPDATE_ROLLBACK_COMPLETE`; a name this version does not know is kept as it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StackStatus {
    CreateInProgress,
    CreateFailed,
    CreateComplete,
    RollbackInProgress,
    RollbackFailed,
    RollbackComplete,
    DeleteInProgress,
    DeleteFailed,
    DeleteComplete,
    UpdateInProgress,
    UpdateCompleteCleanupInProgress,
    UpdateComplete,
    UpdateFailed,
    UpdateRollbackInProgress,
    UpdateRollbackFailed,
    UpdateRollbackCompleteCleanupInProgress,
    UpdateRollbackComplete,
    /// A stack a `CREATE` change set made, empty until the change set is executed.
    ReviewInProgress,
    ImportInProgress,
    ImportComplete,
    ImportRollbackInProgress,
    ImportRollbackFailed,
    ImportRollbackComplete,
    /// Not reported (an empty answer).
    #[default]
    Unknown,
    /// A status this version does not know.
    Other(String),
}

/// Every known status with its CloudFormation name.
const STACK_STATUSES: [(StackStatus, &str); 23] = [
    (StackStatus::CreateInProgress, "CREATE_IN_PROGRESS"),
    (StackStatus::CreateFailed, "CREATE_FAILED"),
    (StackStatus::CreateComplete, "CREATE_COMPLETE"),
    (StackStatus::RollbackInProgress, "ROLLBACK_IN_PROGRESS"),
    (StackStatus::RollbackFailed, "ROLLBACK_FAILED"),
    (StackStatus::RollbackComplete, "ROLLBACK_COMPLETE"),
    (StackStatus::DeleteInProgress, "DELETE_IN_PROGRESS"),
    (StackStatus::DeleteFailed, "DELETE_FAILED"),
    (StackStatus::DeleteComplete, "DELETE_COMPLETE"),
    (StackStatus::UpdateInProgress, "UPDATE_IN_PROGRESS"),
    (StackStatus::UpdateCompleteCleanupInProgress, "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"),
    (StackStatus::UpdateComplete, "UPDATE_COMPLETE"),
    (StackStatus::UpdateFailed, "UPDATE_FAILED"),
    (StackStatus::UpdateRollbackInProgress, "UPDATE_ROLLBACK_IN_PROGRESS"),
    (StackStatus::UpdateRollbackFailed, "UPDATE_ROLLBACK_FAILED"),
    (StackStatus::UpdateRollbackCompleteCleanupInProgress, "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS"),
    (StackStatus::UpdateRollbackComplete, "UPDATE_ROLLBACK_COMPLETE"),
    (StackStatus::ReviewInProgress, "REVIEW_IN_PROGRESS"),
    (StackStatus::ImportInProgress, "IMPORT_IN_PROGRESS"),
    (StackStatus::ImportComplete, "IMPORT_COMPLETE"),
    (StackStatus::ImportRollbackInProgress, "IMPORT_ROLLBACK_IN_PROGRESS"),
    (StackStatus::ImportRollbackFailed, "IMPORT_ROLLBACK_FAILED"),
    (StackStatus::ImportRollbackComplete, "IMPORT_ROLLBACK_COMPLETE"),
];

impl StackStatus {
    /// CloudFormation's name of the status.
    pub fn as_str(&self) -> &str {
        match self {
            StackStatus::Other(s) => s,
            StackStatus::Unknown => "",
            known => STACK_STATUSES.iter().find(|(s, _)| s == known).map_or("", |(_, name)| name),
        }
    }

    /// An operation is running on the stack (`*_IN_PROGRESS`, `REVIEW_IN_PROGRESS` included):
    /// CloudFormation accepts no other until it ends.
    pub fn is_in_progress(&self) -> bool {
        self.as_str().ends_with("_IN_PROGRESS")
    }

    /// The last operation ended (`*_COMPLETE`), whether it succeeded or was rolled back.
    pub fn is_complete(&self) -> bool {
        self.as_str().ends_with("_COMPLETE")
    }

    /// The stack was deleted (`DELETE_COMPLETE`): it no longer exists.
    pub fn is_deleted(&self) -> bool {
        *self == StackStatus::DeleteComplete
    }

    /// The stack runs the template of its last successful operation: created, updated, or
    /// rolled back to the previous template after a failed update.
    pub fn runs_a_template(&self) -> bool {
        matches!(self, StackStatus::CreateComplete | StackStatus::UpdateComplete | StackStatus::UpdateRollbackComplete)
    }

    /// The last create or update succeeded (`CREATE_COMPLETE`, `UPDATE_COMPLETE`).
    pub fn succeeded(&self) -> bool {
        matches!(self, StackStatus::CreateComplete | StackStatus::UpdateComplete)
    }

    /// The stack never reached a usable state or may still hold resources after a failure
    /// (`ROLLBACK_COMPLETE`, `ROLLBACK_FAILED`, `CREATE_FAILED`, `DELETE_FAILED`): CloudFormation
    /// cannot update it; it must be deleted and created again.
    pub fn needs_replacement(&self) -> bool {
        matches!(
            self,
            StackStatus::RollbackComplete
                | StackStatus::RollbackFailed
                | StackStatus::CreateFailed
                | StackStatus::DeleteFailed
        )
    }

    /// A change set for this stack creates it: there is nothing in it that ran (an empty review
    /// stack, a failed creation, a deleted stack).
    pub fn is_empty(&self) -> bool {
        matches!(self, StackStatus::ReviewInProgress | StackStatus::RollbackComplete | StackStatus::DeleteComplete)
    }
}

impl From<&str> for StackStatus {
    fn from(name: &str) -> StackStatus {
        if name.is_empty() {
            return StackStatus::Unknown;
        }
        STACK_STATUSES
            .iter()
            .find(|(_, n)| *n == name)
            .map_or_else(|| StackStatus::Other(name.into()), |(s, _)| s.clone())
    }
}

impl std::fmt::Display for StackStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for StackStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for StackStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<StackStatus, D::Error> {
        let name = String::deserialize(d)?;
        Ok(StackStatus::from(name.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::StackStatus;

    #[test]
    fn stack_statuses_round_trip_and_classify() {
        for name in ["UPDATE_ROLLBACK_COMPLETE", "REVIEW_IN_PROGRESS", "SOMETHING_NEW_IN_PROGRESS", ""] {
            assert_eq!(StackStatus::from(name).as_str(), name);
        }
        let s = |n: &str| StackStatus::from(n);
        assert!(s("REVIEW_IN_PROGRESS").is_in_progress() && s("SOMETHING_NEW_IN_PROGRESS").is_in_progress());
        assert!(s("UPDATE_ROLLBACK_COMPLETE").is_complete() && !s("UPDATE_ROLLBACK_FAILED").is_complete());
        assert!(s("ROLLBACK_COMPLETE").needs_replacement() && !s("UPDATE_ROLLBACK_COMPLETE").needs_replacement());
        assert!(s("DELETE_COMPLETE").is_deleted() && s("DELETE_COMPLETE").is_empty());
        assert_eq!(serde_json::to_string(&s("UPDATE_COMPLETE")).unwrap(), "\"UPDATE_COMPLETE\"");
    }
}
