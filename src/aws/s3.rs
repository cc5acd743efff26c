//! Amazon S3 adapter for buckets in member accounts (the staging evidence bucket). The state
//! bucket has its own store (`crate::state`).

use aws_sdk_s3::Client;

use super::{Classify, Error, ErrorKind};

/// An object as read: its key, its bytes, and when S3 stored it (`LastModified`, RFC 3339).
pub struct StoredObject {
    /// The key.
    pub key: String,
    /// The body.
    pub bytes: Vec<u8>,
    /// `LastModified`, on S3's clock (RFC 3339); empty when S3 gave none.
    pub last_modified: String,
}

/// Every object under `prefix` in `bucket` (`ListObjectsV2`, all pages; `GetObject` for each),
/// in key order. Errors: an S3 call failed, or a body could not be read (named by key).
pub async fn objects_under(s3: &Client, bucket: &str, prefix: &str) -> Result<Vec<StoredObject>, Error> {
    let mut out = Vec::new();
    let mut pages = s3.list_objects_v2().bucket(bucket).prefix(prefix).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.classify("s3:ListObjectsV2")?;
        for obj in page.contents.unwrap_or_default() {
            let Some(key) = obj.key else { continue };
            let got = s3.get_object().bucket(bucket).key(&key).send().await.classify("s3:GetObject")?;
            let bytes = got
                .body
                .collect()
                .await
                .map_err(|e| {
                    Error::new("s3:GetObject", ErrorKind::AnswerLost, format!("reading s3://{bucket}/{key}: {e}"))
                })?
                .into_bytes()
                .to_vec();
            let last_modified = obj
                .last_modified
                .and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok())
                .unwrap_or_default();
            out.push(StoredObject { key, bytes, last_modified });
        }
    }
    Ok(out)
}
