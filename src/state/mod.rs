//! The state store: one JSON object per tenant in a private, encrypted, versioned S3 bucket of
//! the management account, plus per-tenant lease objects.
//!
//! Writes are optimistic: a record is written with `If-Match` on the ETag it was read with (or
//! `If-None-Match: *` when new), so two writers can never silently overwrite each other. Leases are
//! created with `If-None-Match: *`, carry an expiry, and a stale one is taken over with `If-Match`.

mod lease;
pub mod ledger;

use std::collections::BTreeMap;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, ServerSideEncryption, VersioningConfiguration};
use serde::{Deserialize, Serialize};

pub use lease::{Lease, LeaseGuard, LeaseHeld};

use crate::aws::{Error as AwsError, ErrorKind};
use crate::tenant::Environment;

/// How many versions of a tenant record [`StateStore::earlier_account_ids`] lists at most.
pub const EARLIER_VERSIONS_READ: i32 = 100;

/// What tenantry knows about one tenant: `tenants/<id>.json` in the state bucket.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TenantRecord {
    /// Tenant id.
    pub tenant: String,
    /// One entry per environment that tenantry has started to create or has adopted.
    #[serde(default)]
    pub accounts: BTreeMap<Environment, AccountRecord>,
    /// RFC 3339 time of the last write.
    #[serde(default)]
    pub updated_at: String,
    /// How many times this record has been written: each write stores the serial it read plus
    /// one, conditionally on the object being unchanged, so the bucket's object versions of a
    /// record carry the serials 1, 2, 3, ... with no gap and no repeat (a repeat would be a lost
    /// write).
    #[serde(default)]
    pub serial: u64,
}

/// What tenantry knows about one member account.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AccountRecord {
    /// The account id, once known.
    #[serde(default)]
    pub account_id: Option<String>,
    /// The `CreateAccount` request id, written before its status is polled.
    #[serde(default)]
    pub create_request_id: Option<String>,
    /// When tenantry started a `CreateAccount` for this account (RFC 3339), written before the
    /// call: while it is set and no account id is known, the account is looked for with fresh
    /// listings, never in a run's snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_started_at: Option<String>,
    /// Root email the account was created or adopted with.
    #[serde(default)]
    pub email: String,
    /// Every other root email the tenant file declared for this account since (an email changed
    /// in the file is remembered here, so that the guard still knows the account by it and no
    /// second account is ever created for the environment).
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub declared_emails: std::collections::BTreeSet<String>,
    /// OU path the account was last placed in.
    #[serde(default)]
    pub ou_path: Option<String>,
    /// Tag keys tenantry set on the account (the tenant file's and its own).
    #[serde(default)]
    pub tag_keys: std::collections::BTreeSet<String>,
    /// SCPs tenantry created for this account: policy name → record.
    #[serde(default)]
    pub policies: BTreeMap<String, PolicyRecord>,
    /// Stacks tenantry deployed: stack name → record.
    #[serde(default)]
    pub stacks: BTreeMap<String, StackRecord>,
}

/// An SCP tenantry manages.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PolicyRecord {
    /// Organizations policy id.
    pub policy_id: String,
    /// sha256 of the content last written.
    pub digest: String,
}

/// A stack tenantry deployed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StackRecord {
    /// Blueprint name.
    pub blueprint: String,
    /// sha256 of the rendered template last deployed.
    pub version: String,
    /// Stack status after the last operation.
    pub status: String,
    /// Stack id (ARN).
    #[serde(default)]
    pub stack_id: String,
    /// The stack's `changed_at` (`LastUpdatedTime`, else `CreationTime`) when tenantry last
    /// read its template (`GetTemplate`, after the `DescribeStacks` that gave the time) and found
    /// it the rendered one of `version`: after its own deploy, or in a later run's observation. While the stack still reports this time, nothing has changed it since, and
    /// observation does not read its template again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_at: Option<String>,
}

/// The object that makes a bucket tenantry's state location: written when tenantry first
/// writes to the bucket (or by `tenantry state init` / `state migrate`), so that a bucket
/// without it, in an organization whose accounts tenantry already manages, is recognized as a
/// changed or lost state location rather than taken for a fresh start.
pub const MARKER_KEY: &str = "tenantry-state.json";

/// The marker's `schema`.
pub const MARKER_SCHEMA: &str = "tenantry.state/v1";

/// Contents of [`MARKER_KEY`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StateMarker {
    /// [`MARKER_SCHEMA`].
    pub schema: String,
    /// The management account whose tenants this state describes.
    pub management_account_id: String,
    /// The region tenantry's stacks were deployed in when this state was started.
    pub home_region: String,
    /// When the marker was written (RFC 3339).
    pub created_at: String,
}

/// What a bucket is as a state location.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    /// It carries the marker.
    Marked(StateMarker),
    /// No marker, but tenant records: state written before markers existed.
    Unmarked,
    /// No marker and no tenant records (or no bucket): a new state location.
    New,
}

/// A record as read, with the ETag that a conditional write must match.
#[derive(Debug, Clone)]
pub struct Tracked {
    /// The record.
    pub record: TenantRecord,
    /// ETag of the object it was read from; `None` when no object exists yet.
    pub etag: Option<String>,
}

/// Errors of the state store. Callers decide on the variant, never on the text.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An S3 call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// A conditional write lost a race.
    #[error(transparent)]
    WriteConflict(#[from] WriteConflict),
    /// Another process holds the tenant's lease.
    #[error(transparent)]
    LeaseHeld(#[from] LeaseHeld),
    /// The lease this process held was lost, or not renewed in time.
    #[error("{0}")]
    LeaseLost(String),
    /// A stop signal ended a wait.
    #[error(transparent)]
    Interrupted(#[from] crate::shutdown::Interrupted),
    /// A stored object is not what tenantry writes there.
    #[error("{what}: {cause}")]
    Corrupt {
        /// The object and what it should be.
        what: String,
        /// The parse error.
        cause: serde_json::Error,
    },
    /// A value could not be encoded as JSON.
    #[error("encoding a state object: {0}")]
    Encode(#[from] serde_json::Error),
    /// An answer S3 accepted but that lacks what was asked for (named).
    #[error("{0}")]
    Answer(String),
    /// A release artifact is missing, untrustworthy, or not named uniquely.
    #[error(transparent)]
    Release(#[from] ledger::ReleaseError),
}

/// Results of the state store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A write lost a race: the object changed since it was read.
#[derive(Debug, thiserror::Error)]
#[error(
    "state object s3://{bucket}/{key} was changed by another writer since it was read; re-run to pick up its changes"
)]
pub struct WriteConflict {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
}

/// The S3-backed state store.
#[derive(Debug, Clone)]
pub struct StateStore {
    s3: aws_sdk_s3::Client,
    bucket: String,
    holder: String,
}

impl StateStore {
    /// A store on `bucket`. `holder` names this process in leases (host and pid).
    pub fn new(s3: aws_sdk_s3::Client, bucket: String) -> StateStore {
        let holder =
            format!("{}:{}:{}-{}", hostname(), std::process::id(), process_scope(), uuid::Uuid::new_v4().simple());
        StateStore { s3, bucket, holder }
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Whether the bucket exists (`HeadBucket`).
    pub async fn bucket_exists(&self) -> Result<bool> {
        match self.s3.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(true),
            Err(e) if AwsError::kind_of_sdk(&e) == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(AwsError::from_sdk("s3:HeadBucket", e).into()),
        }
    }

    /// What this bucket is as a state location (`GetObject` of the marker, then `ListObjectsV2`
    /// of `tenants/`, one key): see [`Location`].
    pub async fn location(&self) -> Result<Location> {
        if let Some(bytes) = self.get_bytes(MARKER_KEY).await? {
            let marker: StateMarker = serde_json::from_slice(&bytes).map_err(|cause| Error::Corrupt {
                what: format!("s3://{}/{MARKER_KEY} is not a tenantry state marker", self.bucket),
                cause,
            })?;
            return Ok(Location::Marked(marker));
        }
        let page = self.s3.list_objects_v2().bucket(&self.bucket).prefix("tenants/").max_keys(1).send().await;
        match page {
            Ok(p) if p.key_count.unwrap_or(0) > 0 || !p.contents().is_empty() => Ok(Location::Unmarked),
            Ok(_) => Ok(Location::New),
            Err(e) if AwsError::kind_of_sdk(&e) == ErrorKind::NotFound => Ok(Location::New),
            Err(e) => Err(AwsError::from_sdk("s3:ListObjectsV2", e).into()),
        }
    }

    /// Marks this bucket as the state location of `management_account_id`'s tenants, with
    /// stacks in `home_region` (`PutObject` of the marker with `If-None-Match: *`; an existing
    /// marker is left as it is).
    pub async fn mark(&self, management_account_id: &str, home_region: &str) -> Result<()> {
        let marker = StateMarker {
            schema: MARKER_SCHEMA.into(),
            management_account_id: management_account_id.into(),
            home_region: home_region.into(),
            created_at: now_rfc3339(),
        };
        match self.put_new(MARKER_KEY, serde_json::to_vec_pretty(&marker)?).await {
            Err(Error::WriteConflict(_)) => Ok(()),
            other => other,
        }
    }

    /// Creates the bucket if missing (`CreateBucket`) and makes sure it is private
    /// (`PutPublicAccessBlock`), encrypted (`PutBucketEncryption`, SSE-S3) and versioned
    /// (`GetBucketVersioning`, then `PutBucketVersioning` unless enabled; versioning found
    /// suspended is reported on stderr). Idempotent.
    pub async fn ensure_bucket(&self, region: &str) -> Result<()> {
        if !self.bucket_exists().await? && crate::aws::create_bucket(&self.s3, &self.bucket, region).await? {
            tracing::info!(bucket = %self.bucket, "created state bucket");
        }
        crate::aws::make_bucket_private(&self.s3, &self.bucket, None).await?;
        // Versioning suspended out of band loses the history of every record: say so, then
        // enable it again.
        // An answer that cannot be read (moto answers a never-versioned bucket with XML the SDK
        // rejects) counts as "not enabled": versioning is then simply enabled.
        let status = match self.s3.get_bucket_versioning().bucket(&self.bucket).send().await {
            Ok(v) => v.status,
            Err(e) => {
                tracing::debug!(bucket = %self.bucket, "could not read the bucket's versioning: {}", AwsError::from_sdk("s3:GetBucketVersioning", e));
                None
            }
        };
        if status == Some(BucketVersioningStatus::Enabled) {
            return Ok(());
        }
        if status == Some(BucketVersioningStatus::Suspended) {
            tracing::error!(bucket = %self.bucket, "versioning of the state bucket was SUSPENDED (records written meanwhile kept no history); enabling it again");
            eprintln!("tenantry: versioning of the state bucket s3://{} was suspended; enabled again", self.bucket);
        }
        self.s3
            .put_bucket_versioning()
            .bucket(&self.bucket)
            .versioning_configuration(
                VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build(),
            )
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("s3:PutBucketVersioning", e))?;
        Ok(())
    }

    /// The account id, per environment, that the newest version of `tenant`'s record naming one
    /// gives (`ListObjectVersions` of the record's key, one page of at most
    /// [`EARLIER_VERSIONS_READ`] versions, then `GetObject` of each, newest first, until both
    /// environments have one). For a tenant environment none of whose marks is left: a record
    /// deleted or rewritten (lost state) still says which account it had, for as long as the
    /// versioned bucket keeps its history. Versions that are not valid records are skipped.
    /// Empty for a bucket or key with no history (a new tenant: one request).
    pub async fn earlier_account_ids(&self, tenant: &str) -> Result<BTreeMap<Environment, String>> {
        let key = Self::record_key(tenant);
        let mut found = BTreeMap::new();
        let listed = match self
            .s3
            .list_object_versions()
            .bucket(&self.bucket)
            .prefix(&key)
            .max_keys(EARLIER_VERSIONS_READ)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if AwsError::kind_of_sdk(&e) == ErrorKind::NotFound => return Ok(found),
            Err(e) => return Err(AwsError::from_sdk("s3:ListObjectVersions", e).into()),
        };
        let mut versions: Vec<_> = listed
            .versions()
            .iter()
            .filter(|v| v.key() == Some(key.as_str()))
            .filter_map(|v| Some((v.last_modified().map(|t| t.secs()).unwrap_or(0), v.version_id()?.to_string())))
            .collect();
        // Newest first; S3 lists a key's versions newest first, which a stable sort keeps for ties.
        versions.sort_by_key(|v| std::cmp::Reverse(v.0));
        for (_, version) in versions {
            if found.len() == Environment::ALL.len() {
                break;
            }
            let Some(stored) = self.get_object(&key, Some(&version)).await? else { continue };
            let Ok(record) = serde_json::from_slice::<TenantRecord>(&stored.bytes) else { continue };
            for (env, account) in record.accounts {
                if let Some(id) = account.account_id {
                    found.entry(env).or_insert(id);
                }
            }
        }
        Ok(found)
    }

    fn record_key(tenant: &str) -> String {
        format!("tenants/{tenant}.json")
    }

    /// Reads a tenant's record (`GetObject`). A missing object or bucket gives an empty record.
    pub async fn read(&self, tenant: &str) -> Result<Tracked> {
        let key = Self::record_key(tenant);
        match self.get(&key).await? {
            None => Ok(Tracked { record: TenantRecord { tenant: tenant.into(), ..Default::default() }, etag: None }),
            Some((bytes, etag)) => {
                let record: TenantRecord = serde_json::from_slice(&bytes).map_err(|cause| Error::Corrupt {
                    what: format!("state object s3://{}/{key} is not a valid tenant record", self.bucket),
                    cause,
                })?;
                Ok(Tracked { record, etag: Some(etag) })
            }
        }
    }

    /// Writes a tenant's record conditionally (`PutObject` with `If-Match` on the ETag read, or
    /// `If-None-Match: *` for a new object) and updates `tracked.etag`. A lost race gives
    /// [`WriteConflict`].
    pub async fn write(&self, tracked: &mut Tracked) -> Result<()> {
        tracked.record.updated_at = now_rfc3339();
        tracked.record.serial += 1;
        let body = serde_json::to_vec_pretty(&tracked.record)?;
        let key = Self::record_key(&tracked.record.tenant);
        match self.put_conditional(&key, body, tracked.etag.as_deref()).await {
            Ok(etag) => {
                tracked.etag = Some(etag);
                Ok(())
            }
            Err(e) => {
                tracked.record.serial -= 1;
                Err(e)
            }
        }
    }

    /// Stores a reconcile report as `reports/<YYYY-MM-DD>/<time>-<run id>.json` (`PutObject` with
    /// `If-None-Match: *`: reports are never overwritten). Returns its `s3://` address.
    pub async fn put_report(&self, run_id: &str, started_at: &str, body: Vec<u8>) -> Result<String> {
        let date = started_at.get(..10).unwrap_or("unknown-date");
        let time = started_at.get(11..19).unwrap_or("").replace(':', "");
        let key = format!("reports/{date}/{time}-{run_id}.json");
        self.put_conditional(&key, body, None).await?;
        Ok(format!("s3://{}/{key}", self.bucket))
    }

    /// Writes a new object that must not exist yet (`PutObject` with `If-None-Match: *`): the
    /// ledger and release artifacts are append-only. An existing key gives [`WriteConflict`].
    pub async fn put_new(&self, key: &str, body: Vec<u8>) -> Result<()> {
        self.put_conditional(key, body, None).await.map(|_| ())
    }

    /// Reads an object's bytes (`GetObject`); `None` when it (or the bucket) does not exist.
    pub async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.get(key).await?.map(|(b, _)| b))
    }

    /// Now, on the state bucket's clock (RFC 3339, whole seconds): writes a small object under
    /// `clock/` (`PutObject`), reads its `LastModified` (`HeadObject`) and deletes it
    /// (`DeleteObject`). Gates that measure time (the soak) compare this with the `LastModified`
    /// of ledger records, so that no writer's or reader's clock counts.
    pub async fn now(&self) -> Result<String> {
        let key = format!("clock/{}.json", uuid::Uuid::new_v4().simple());
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .server_side_encryption(ServerSideEncryption::Aes256)
            .body(ByteStream::from_static(b"{}"))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("s3:PutObject", e))?;
        let head = self
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("s3:HeadObject", e));
        if let Err(e) = self.s3.delete_object().bucket(&self.bucket).key(&key).send().await {
            tracing::debug!(key, "could not delete the clock object: {e}");
        }
        head?
            .last_modified
            .and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok())
            .ok_or_else(|| Error::Answer("the state bucket gave no LastModified".into()))
    }

    /// Keys under `prefix` with their `LastModified` (the storage's clock, RFC 3339, whole
    /// seconds), sorted by key (`ListObjectsV2`, all pages); none when the bucket is missing.
    pub async fn list_objects(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut pages = self.s3.list_objects_v2().bucket(&self.bucket).prefix(prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            match page {
                Ok(p) => out.extend(p.contents.unwrap_or_default().into_iter().filter_map(|o| {
                    let at = o
                        .last_modified
                        .and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok())
                        .unwrap_or_default();
                    Some((o.key?, at))
                })),
                Err(e) if AwsError::kind_of_sdk(&e) == ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(AwsError::from_sdk("s3:ListObjectsV2", e).into()),
            }
        }
        out.sort();
        Ok(out)
    }

    /// The records of tenants none of `declared` is, each with the id its key names
    /// (`tenants/<id>.json`; keys that name no tenant id are skipped): `ListObjectsV2` of
    /// `tenants/`, then `GetObject` of each such record. None when the bucket is missing.
    /// Errors: S3's, and [`Error::Corrupt`] for a record that is not one.
    pub async fn records_without_file(
        &self,
        declared: &std::collections::BTreeSet<&str>,
    ) -> Result<Vec<(String, TenantRecord)>> {
        let mut out = Vec::new();
        for key in self.list_keys("tenants/").await? {
            let Some(id) = key.strip_prefix("tenants/").and_then(|k| k.strip_suffix(".json")) else { continue };
            if !crate::tenant::valid_tenant_id(id) || declared.contains(id) {
                continue;
            }
            out.push((id.to_string(), self.read(id).await?.record));
        }
        Ok(out)
    }

    /// Keys under `prefix`, sorted (`ListObjectsV2`, all pages); none when the bucket is missing.
    pub async fn list_keys(&self, prefix: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut pages = self.s3.list_objects_v2().bucket(&self.bucket).prefix(prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            match page {
                Ok(p) => out.extend(p.contents.unwrap_or_default().into_iter().filter_map(|o| o.key)),
                Err(e) if AwsError::kind_of_sdk(&e) == ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(AwsError::from_sdk("s3:ListObjectsV2", e).into()),
            }
        }
        out.sort();
        Ok(out)
    }

    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, String)>> {
        Ok(self.get_object(key, None).await?.map(|o| (o.bytes, o.etag)))
    }

    /// `GetObject` of `key` (its current version, or `version`): the object's bytes, ETag and
    /// `LastModified` (the storage's clock, Unix seconds); `None` when it (or the bucket) does
    /// not exist.
    async fn get_object(&self, key: &str, version: Option<&str>) -> Result<Option<StoredObject>> {
        let get = self.s3.get_object().bucket(&self.bucket).key(key).set_version_id(version.map(str::to_string));
        match get.send().await {
            Ok(out) => {
                let etag = out.e_tag.clone().unwrap_or_default();
                let last_modified = out.last_modified.map(|t| t.secs().max(0) as u64);
                let bytes = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| Error::Answer(format!("reading state object s3://{}/{key}: {e}", self.bucket)))?
                    .into_bytes()
                    .to_vec();
                Ok(Some(StoredObject { bytes, etag, last_modified }))
            }
            Err(e)
                if e.as_service_error().is_some_and(|s| s.is_no_such_key())
                    || AwsError::kind_of_sdk(&e) == ErrorKind::NotFound =>
            {
                Ok(None)
            }
            Err(e) => Err(AwsError::from_sdk("s3:GetObject", e).into()),
        }
    }

    /// `PutObject` with `If-Match: etag` or `If-None-Match: *`; returns the new ETag.
    ///
    /// When the precondition fails, the object is read back: if it holds exactly `body`, an
    /// earlier attempt of this very request was carried out and its answer lost (the SDK then sent
    /// it again), so the write counts as done. Otherwise another writer won: [`WriteConflict`].
    async fn put_conditional(&self, key: &str, body: Vec<u8>, etag: Option<&str>) -> Result<String> {
        match self.try_put_conditional(key, body.clone(), etag).await {
            Err(Error::WriteConflict(conflict)) => match self.get(key).await? {
                Some((current, current_etag)) if current == body => {
                    tracing::debug!(key, "conditional write already carried out by an earlier attempt");
                    Ok(current_etag)
                }
                _ => Err(conflict.into()),
            },
            other => other,
        }
    }

    async fn try_put_conditional(&self, key: &str, body: Vec<u8>, etag: Option<&str>) -> Result<String> {
        let mut req = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .server_side_encryption(ServerSideEncryption::Aes256)
            .body(ByteStream::from(body));
        req = match etag {
            Some(e) => req.if_match(e),
            None => req.if_none_match("*"),
        };
        match req.send().await {
            Ok(out) => Ok(out.e_tag.unwrap_or_default()),
            // With `If-Match`, an object deleted since it was read answers 404 NoSuchKey: it
            // changed since it was read, like a 412.
            Err(e)
                if is_precondition_failure(&e)
                    || (etag.is_some() && AwsError::kind_of_sdk(&e) == ErrorKind::NotFound) =>
            {
                Err(WriteConflict { bucket: self.bucket.clone(), key: key.into() }.into())
            }
            Err(e) => Err(AwsError::from_sdk("s3:PutObject", e).into()),
        }
    }
}

/// An object as read.
struct StoredObject {
    bytes: Vec<u8>,
    etag: String,
    /// `LastModified`, Unix seconds.
    last_modified: Option<u64>,
}

/// Whether S3 rejected a conditional request (412 PreconditionFailed, 409 ConditionalRequestConflict).
fn is_precondition_failure<E>(e: &aws_sdk_s3::error::SdkError<E>) -> bool
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    AwsError::kind_of_sdk(e) == ErrorKind::Conflict
}

/// This machine's host name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`, else `localhost`).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// What makes a process id meaningful here: the kernel's boot and this process's pid namespace
/// (`/proc/sys/kernel/random/boot_id`, `/proc/self/ns/pid`), hashed to 12 hex digits. Two
/// containers with the same host name each have their own pid 1: a lease holder's pid is only
/// judged from `/proc` when its scope is this one. `unknown` where `/proc` does not tell.
pub fn process_scope() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok();
    let ns = std::fs::read_link("/proc/self/ns/pid").ok();
    match (boot, ns) {
        (Some(b), Some(n)) => {
            crate::render::sha256_hex(format!("{}|{}", b.trim(), n.display()).as_bytes())[..12].to_string()
        }
        _ => "unknown".into(),
    }
}

/// Now as RFC 3339 (UTC).
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
