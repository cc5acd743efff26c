//! Per-tenant leases: `leases/<tenant>.json`, created with `If-None-Match: *` so that only one
//! process works a tenant at a time. A lease carries an expiry; an expired lease (its holder
//! crashed) is taken over with `If-Match` on its ETag, so two takers cannot both win.

use std::time::Duration;

use anyhow::{Context, Result};
use backon::{ConstantBuilder, Retryable};
use serde::{Deserialize, Serialize};

use super::{now_unix, StateStore, WriteConflict};

#[derive(Debug, Serialize, Deserialize)]
struct LeaseBody {
    holder: String,
    tenant: String,
    /// Unix seconds after which anyone may take the lease over.
    expires_at: u64,
}

/// A held lease. Release it with [`Lease::release`]; if the process dies, it expires on its own.
#[derive(Debug)]
pub struct Lease {
    store: StateStore,
    tenant: String,
    etag: String,
    ttl: Duration,
    renewed_at: std::time::Instant,
}

/// Another process holds the lease and it has not expired.
#[derive(Debug, thiserror::Error)]
#[error("tenant `{tenant}` is being worked on by {holder} (lease expires in {remaining} s)")]
pub struct LeaseHeld {
    /// Tenant id.
    pub tenant: String,
    /// Holder named in the lease.
    pub holder: String,
    /// Seconds until it expires.
    pub remaining: u64,
}

impl StateStore {
    fn lease_key(tenant: &str) -> String {
        format!("leases/{tenant}.json")
    }

    /// Acquires the tenant's lease for `ttl`, waiting (polling every 1-2 s) up to `wait` while
    /// another live process holds it. Errors: [`LeaseHeld`] after `wait`; S3 errors.
    pub async fn acquire_lease(&self, tenant: &str, ttl: Duration, wait: Duration) -> Result<Lease> {
        let attempt = || self.try_acquire(tenant, ttl);
        let mut notified = false;
        attempt
            .retry(
                ConstantBuilder::default()
                    .with_delay(Duration::from_millis(1000))
                    .with_jitter()
                    .with_max_times((wait.as_millis() / 1000) as usize),
            )
            .when(|e| e.downcast_ref::<LeaseHeld>().is_some() || e.downcast_ref::<WriteConflict>().is_some())
            .notify(|e, _| {
                if !notified {
                    tracing::info!(tenant, "waiting for lease: {e}");
                    notified = true;
                }
            })
            .await
    }

    async fn try_acquire(&self, tenant: &str, ttl: Duration) -> Result<Lease> {
        let key = Self::lease_key(tenant);
        let body = LeaseBody { holder: self.holder.clone(), tenant: tenant.into(), expires_at: now_unix() + ttl.as_secs() };
        let bytes = serde_json::to_vec(&body)?;
        match self.put_conditional(&key, bytes.clone(), None).await {
            Ok(etag) => return Ok(self.lease(tenant, etag, ttl)),
            Err(e) if e.downcast_ref::<WriteConflict>().is_some() => {}
            Err(e) => return Err(e),
        }
        let Some((current, etag)) = self.get(&key).await? else {
            // Released between our two calls: try again.
            return Err(WriteConflict { bucket: self.bucket.clone(), key }.into());
        };
        let current: LeaseBody = serde_json::from_slice(&current).context("reading a lease object")?;
        let now = now_unix();
        let holder_dead = holder_died_here(&current.holder);
        if current.expires_at > now && !holder_dead {
            return Err(LeaseHeld { tenant: tenant.into(), holder: current.holder, remaining: current.expires_at - now }.into());
        }
        if holder_dead {
            tracing::warn!(tenant, stale_holder = %current.holder, "taking over the lease of a process on this host that is no longer running");
        } else {
            tracing::warn!(tenant, stale_holder = %current.holder, "taking over an expired lease");
        }
        let etag = self.put_conditional(&key, bytes, Some(&etag)).await?;
        Ok(self.lease(tenant, etag, ttl))
    }

    fn lease(&self, tenant: &str, etag: String, ttl: Duration) -> Lease {
        Lease { store: self.clone(), tenant: tenant.into(), etag, ttl, renewed_at: std::time::Instant::now() }
    }
}

/// Whether `holder` (`host:pid:nonce`) names a process on this host that no longer runs, so its
/// lease can be taken over at once rather than after it expires. Only checked where `/proc` exists.
fn holder_died_here(holder: &str) -> bool {
    let mut parts = holder.rsplitn(3, ':');
    let (_nonce, pid, host) = (parts.next(), parts.next(), parts.next());
    match (host, pid.and_then(|p| p.parse::<u32>().ok())) {
        (Some(host), Some(pid)) if host == super::hostname() && std::path::Path::new("/proc/self").exists() => {
            pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        }
        _ => false,
    }
}

impl Lease {
    /// Extends the lease by its ttl if a third of it has passed (`PutObject` with `If-Match`).
    /// Errors when the lease was lost (taken over after expiry).
    pub async fn renew(&mut self) -> Result<()> {
        if self.renewed_at.elapsed() < self.ttl / 3 {
            return Ok(());
        }
        let body = LeaseBody { holder: self.store.holder.clone(), tenant: self.tenant.clone(), expires_at: now_unix() + self.ttl.as_secs() };
        let key = StateStore::lease_key(&self.tenant);
        self.etag = self
            .store
            .put_conditional(&key, serde_json::to_vec(&body)?, Some(&self.etag))
            .await
            .with_context(|| format!("lease on tenant `{}` was lost", self.tenant))?;
        self.renewed_at = std::time::Instant::now();
        Ok(())
    }

    /// Releases the lease (`DeleteObject`) if this process still holds it.
    pub async fn release(self) -> Result<()> {
        let key = StateStore::lease_key(&self.tenant);
        if let Some((_, etag)) = self.store.get(&key).await? {
            if etag == self.etag {
                self.store
                    .s3
                    .delete_object()
                    .bucket(&self.store.bucket)
                    .key(&key)
                    .send()
                    .await
                    .map_err(|e| crate::aws::aws_error("s3:DeleteObject", e))?;
            }
        }
        Ok(())
    }
}
