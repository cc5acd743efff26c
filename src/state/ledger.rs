//! The promotion ledger and release artifacts, in the state bucket.
//!
//! - `ledger/<tenant>/<at>-<kind>-<id>.json`: one append-only [`LedgerRecord`] per event, written
//!   with `If-None-Match: *` and never changed; ordered by the bucket's `LastModified`;
//! - `audit/<tenant>/<at>-applied-<id>.json`: the same, for the steps `apply` and
//!   `reconcile --remediate` carried out (kept apart: promotion reads every record of its prefix).
//! - `artifacts/<tenant>/<digest>.json`: one [`Release`] per digest, content-addressed and stored
//!   once; read back only after its digest is verified.
//!
//! Rendering a release and deciding on the ledger (gates, risk, what production runs) are
//! promotion's ([`crate::promote`]); this module only stores and reads.

use serde::{Deserialize, Serialize};

use super::{Error, Result, StateStore};
use crate::render::sha256_hex;

/// Schema id of stored artifacts.
pub const ARTIFACT_SCHEMA: &str = "tenantry.artifact/v1";
/// Schema id of ledger records.
pub const LEDGER_SCHEMA: &str = "tenantry.ledger/v1";

/// A rendered release: what staging proves and production receives byte for byte.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Release {
    /// [`ARTIFACT_SCHEMA`].
    pub schema: String,
    /// Tenant id.
    pub tenant: String,
    /// Workload name.
    pub workload: String,
    /// Blueprint it was rendered from.
    pub blueprint: String,
    /// The blueprint parameters it was rendered with (defaults filled in).
    pub parameters: serde_json::Value,
    /// The rendered CloudFormation template, exactly as deployed.
    pub template: String,
    /// [`release_digest`] of `template` and `parameters`.
    pub digest: String,
}

/// The release digest: sha256 of the template bytes, a NUL byte, and the parameters as compact
/// JSON with sorted keys.
pub fn release_digest(template: &str, parameters: &serde_json::Value) -> String {
    let mut bytes = template.as_bytes().to_vec();
    bytes.push(0);
    bytes.extend(serde_json::to_vec(parameters).expect("JSON serializes"));
    sha256_hex(&bytes)
}

impl Release {
    /// Whether the stored digest is the digest of the stored template and parameters.
    pub fn verify(&self) -> bool {
        release_digest(&self.template, &self.parameters) == self.digest
    }
}

/// Where a tenant's release artifact is stored.
pub fn artifact_key(tenant: &str, digest: &str) -> String {
    format!("artifacts/{tenant}/{digest}.json")
}

/// What a ledger record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerKind {
    /// A release was deployed into staging.
    Staged,
    /// A check reported a result for a release.
    Evidence,
    /// Someone approved a release for production.
    Approval,
    /// A release went to production.
    Promoted,
    /// A production deploy failed (the record says what state the stack was left in).
    PromotionFailed,
    /// The previously promoted release went back to production.
    RolledBack,
    /// Steps `apply` or `reconcile --remediate` carried out on the tenant's accounts (creations,
    /// moves, tags, SCPs, stacks, suspensions), one record per tenant and run: `detail.command`,
    /// `detail.steps` (as in `apply --output json`), `detail.error` when a step failed. `release`
    /// is empty.
    Applied,
    /// Intent: a production change set is about to be executed (`detail.as` says whether as a
    /// promotion or a rollback). The outcome record (`promoted`, `rolled_back`,
    /// `promotion_failed`) names it in `detail.intent`; an intent without an outcome is what a
    /// process that died mid-change left, and the next promotion or rollback records its
    /// outcome from what the production stack runs (see [`ledger_truth`]).
    Executing,
}

/// One append-only ledger record (`ledger/<tenant>/<time>-<kind>-<id>.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LedgerRecord {
    /// [`LEDGER_SCHEMA`].
    pub schema: String,
    /// Record id (random).
    pub id: String,
    /// What happened.
    pub kind: LedgerKind,
    /// Tenant id.
    pub tenant: String,
    /// Workload, where it applies.
    #[serde(default)]
    pub workload: Option<String>,
    /// Release digest.
    pub release: String,
    /// When (RFC 3339, UTC, nanoseconds).
    pub at: String,
    /// Who: the caller's ARN, or the evidence object that reported it.
    pub by: String,
    /// Kind-specific details (check result, changes, previous release, error, ...).
    #[serde(default)]
    pub detail: serde_json::Value,
    /// When the state bucket stored it (its `LastModified`, whole seconds): the ledger is ordered
    /// by this clock, not by `at`, which is the writer's, and the soak gate counts from it. Set
    /// from the object when read, whatever the body says; shown by `history` (text and JSON),
    /// never written into a record.
    #[serde(default, skip_deserializing, skip_serializing_if = "String::is_empty")]
    pub stored_at: String,
}

impl LedgerRecord {
    /// The record's key: sorted by time, unique by id. Promotion records are under
    /// `ledger/<tenant>/`; `applied` records under `audit/<tenant>/`, so that promotion, which
    /// reads every record of its prefix, does not read the steps of every apply too.
    pub fn key(&self) -> String {
        let kind =
            serde_json::to_value(self.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let prefix = if self.kind == LedgerKind::Applied { "audit" } else { "ledger" };
        format!("{prefix}/{}/{}-{kind}-{}.json", self.tenant, self.at, self.id)
    }
}

impl LedgerRecord {
    /// A new record (not stored), timed by this host's clock (`at`, RFC 3339 with nanoseconds;
    /// the order that counts is the bucket's, see [`LedgerRecord::stored_at`]), with a random id.
    pub fn new(
        tenant: &str,
        kind: LedgerKind,
        workload: Option<&str>,
        release: &str,
        by: &str,
        detail: serde_json::Value,
    ) -> LedgerRecord {
        let n = time::OffsetDateTime::now_utc();
        let at = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
            n.year(),
            u8::from(n.month()),
            n.day(),
            n.hour(),
            n.minute(),
            n.second(),
            n.nanosecond()
        );
        LedgerRecord {
            schema: LEDGER_SCHEMA.into(),
            stored_at: String::new(),
            id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
            kind,
            tenant: tenant.into(),
            workload: workload.map(str::to_string),
            release: release.into(),
            at,
            by: by.into(),
            detail,
        }
    }
}

/// Why a release could not be found or trusted.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// No artifact is stored under the key.
    #[error("no stored artifact {key}")]
    Missing {
        /// The object key.
        key: String,
    },
    /// The stored artifact is not the release its key names: its digest does not verify (it
    /// was changed since it was stored).
    #[error("artifact {key} does not match its digest: refusing to deploy it (it was changed since `tenantry stage` stored it; delete the object and stage the release again)")]
    Mismatch {
        /// The object key.
        key: String,
    },
    /// The stored artifact is another tenant's release (copied under this tenant's key).
    #[error("artifact {key} is a release of tenant {owner}, not of this tenant: refusing to deploy it")]
    OtherTenant {
        /// The object key.
        key: String,
        /// The tenant the artifact names.
        owner: String,
    },
    /// An artifact with the same digest is stored with another template.
    #[error("artifact {key} exists with different content")]
    Differs {
        /// The object key.
        key: String,
    },
    /// Not a digest prefix: fewer than 8 characters, or not hexadecimal.
    #[error("`{prefix}` is not a release digest (at least 8 hex characters)")]
    NotADigest {
        /// What was given.
        prefix: String,
    },
    /// No stored release of the tenant starts with the prefix.
    #[error("tenant {tenant} has no release {prefix} (releases are created by `tenantry stage`)")]
    NoMatch {
        /// Tenant id.
        tenant: String,
        /// What was given.
        prefix: String,
    },
    /// More than one stored release starts with the prefix.
    #[error("`{prefix}` matches {count} releases; give more characters")]
    Ambiguous {
        /// What was given.
        prefix: String,
        /// How many match.
        count: usize,
    },
}

impl StateStore {
    /// Stores a ledger record (`PutObject` with `If-None-Match: *` at [`LedgerRecord::key`]).
    /// Errors: [`Error::WriteConflict`] if the key exists; S3 errors.
    pub async fn append_record(&self, rec: &LedgerRecord) -> Result<()> {
        self.put_new(&rec.key(), serde_json::to_vec_pretty(rec)?).await
    }

    /// Every ledger record of a tenant, ordered by when the bucket stored it, then by the
    /// writer's `at` within a second (`ListObjectsV2`, `GetObject` each). A key without the
    /// `.json` suffix, or a record that names another tenant, is skipped with a warning. Errors: [`Error::Corrupt`] for a record that is
    /// not one; S3 errors.
    pub async fn ledger(&self, tenant: &str) -> Result<Vec<LedgerRecord>> {
        self.records_under(&format!("ledger/{tenant}/"), tenant).await
    }

    /// Every `applied` record of a tenant (`audit/<tenant>/`), ordered as [`Self::ledger`].
    /// Errors: as [`Self::ledger`].
    pub async fn audit(&self, tenant: &str) -> Result<Vec<LedgerRecord>> {
        self.records_under(&format!("audit/{tenant}/"), tenant).await
    }

    /// The records under `prefix` that name `tenant`, ordered (see [`Self::ledger`]).
    async fn records_under(&self, prefix: &str, tenant: &str) -> Result<Vec<LedgerRecord>> {
        let mut out = Vec::new();
        for (key, stored_at) in self.list_objects(prefix).await? {
            if !key.ends_with(".json") {
                tracing::warn!(key, "not a ledger record (no .json suffix); ignored");
                continue;
            }
            let Some(bytes) = self.get_bytes(&key).await? else { continue };
            let mut rec: LedgerRecord = serde_json::from_slice(&bytes)
                .map_err(|cause| Error::Corrupt { what: format!("ledger record {key} is not valid"), cause })?;
            if rec.tenant != tenant {
                tracing::warn!(
                    key,
                    record_tenant = rec.tenant,
                    "a record of another tenant under this tenant's ledger; ignored"
                );
                continue;
            }
            rec.stored_at = stored_at;
            out.push(rec);
        }
        out.sort_by(|a, b| (&a.stored_at, &a.at).cmp(&(&b.stored_at, &b.at)));
        Ok(out)
    }

    /// Stores a release artifact once (`PutObject` with `If-None-Match: *` at [`artifact_key`]);
    /// an artifact already stored under its digest must have the same template. Errors:
    /// [`ReleaseError::Differs`]; S3 errors.
    pub async fn store_release(&self, r: &Release) -> Result<()> {
        let key = artifact_key(&r.tenant, &r.digest);
        match self.put_new(&key, serde_json::to_vec_pretty(r)?).await {
            Err(Error::WriteConflict(_)) => {
                if self.release(&r.tenant, &r.digest).await?.template != r.template {
                    return Err(ReleaseError::Differs { key }.into());
                }
                Ok(())
            }
            other => other,
        }
    }

    /// A stored release of `tenant`, its digest verified (`GetObject`). Errors:
    /// [`ReleaseError::Missing`], [`ReleaseError::Mismatch`], [`Error::Corrupt`]; S3 errors.
    pub async fn release(&self, tenant: &str, digest: &str) -> Result<Release> {
        let key = artifact_key(tenant, digest);
        let Some(bytes) = self.get_bytes(&key).await? else { return Err(ReleaseError::Missing { key }.into()) };
        let r: Release = serde_json::from_slice(&bytes)
            .map_err(|cause| Error::Corrupt { what: format!("artifact {key} is not valid"), cause })?;
        if r.tenant != tenant {
            return Err(ReleaseError::OtherTenant { key, owner: r.tenant }.into());
        }
        if r.digest != digest || !r.verify() {
            return Err(ReleaseError::Mismatch { key }.into());
        }
        Ok(r)
    }

    /// The full digest of the release of `tenant` that `prefix` names (at least 8 hex
    /// characters; `ListObjectsV2` under `artifacts/<tenant>/<prefix>`). Errors:
    /// [`ReleaseError::NotADigest`], [`ReleaseError::NoMatch`], [`ReleaseError::Ambiguous`]; S3
    /// errors.
    pub async fn resolve_release(&self, tenant: &str, prefix: &str) -> Result<String> {
        if prefix.len() < 8 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ReleaseError::NotADigest { prefix: prefix.into() }.into());
        }
        let prefix_lower = prefix.to_ascii_lowercase();
        let keys = self.list_keys(&format!("artifacts/{tenant}/{prefix_lower}")).await?;
        // Only keys that name a digest count (64 hex characters); a full digest is itself.
        let mut digests: Vec<String> = keys
            .iter()
            .filter_map(|k| k.rsplit('/').next()?.strip_suffix(".json").map(str::to_string))
            .filter(|d| d.len() == 64 && d.chars().all(|c| c.is_ascii_hexdigit()))
            .collect();
        if digests.contains(&prefix_lower) {
            return Ok(prefix_lower);
        }
        match digests.len() {
            1 => Ok(digests.remove(0)),
            0 => Err(ReleaseError::NoMatch { tenant: tenant.into(), prefix: prefix.into() }.into()),
            count => Err(ReleaseError::Ambiguous { prefix: prefix.into(), count }.into()),
        }
    }
}
