//! Per-tenant leases: `leases/<tenant>.json`, created with `If-None-Match: *` so that only one
//! process works a tenant at a time. A lease carries an expiry and is renewed in the background
//! (every third of its ttl) while held, so a long step (account creation, a stack) never outlives
//! it. An expired lease — or one whose holder process on this host is gone — is taken over with
//! `If-Match` on its ETag, so two takers cannot both win.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backon::{ConstantBuilder, Retryable};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::{now_unix, Error, Result, StateStore, WriteConflict};

#[derive(Debug, Serialize, Deserialize)]
struct LeaseBody {
    holder: String,
    tenant: String,
    /// Unix seconds after which anyone may take the lease over.
    expires_at: u64,
}

/// A held lease, renewed in the background until [`Lease::release`]. If the process dies, it
/// expires on its own.
#[derive(Debug)]
pub struct Lease {
    store: StateStore,
    tenant: String,
    etag: Arc<Mutex<String>>,
    lost: Arc<AtomicBool>,
    /// When the request of the last write that succeeded was sent (the bucket's expiry counts
    /// from its `LastModified`, which is later).
    renewed: Arc<std::sync::Mutex<std::time::Instant>>,
    ttl: Duration,
    heartbeat: tokio::task::JoinHandle<()>,
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

    /// Acquires the tenant's lease for `ttl`, waiting (polling about every second) up to `wait`
    /// while another live process holds it; `wait` zero tries once. Errors: [`LeaseHeld`] after
    /// `wait`; S3 errors.
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
            // A stop request ends the wait at the next try (at most a second away).
            .when(|e| matches!(e, Error::LeaseHeld(_) | Error::WriteConflict(_)) && !crate::shutdown::requested())
            .notify(|e, _| {
                if !notified {
                    tracing::info!(tenant, "waiting for lease: {e}");
                    notified = true;
                }
            })
            // The pause between tries ends at once on a stop request.
            .sleep(|d| async move {
                let _ = crate::shutdown::bounded("", tokio::time::sleep(d)).await;
            })
            .await
            .map_err(|e| match e {
                Error::LeaseHeld(held) if crate::shutdown::requested() => {
                    Error::Interrupted(crate::shutdown::Interrupted {
                        what: format!("waiting for the lease of tenant {tenant} ({held})"),
                        began: true,
                    })
                }
                e => e,
            })
    }

    async fn try_acquire(&self, tenant: &str, ttl: Duration) -> Result<Lease> {
        let key = Self::lease_key(tenant);
        let bytes = self.lease_body(tenant, ttl)?;
        let sent = std::time::Instant::now();
        match self.put_conditional(&key, bytes.clone(), None).await {
            Ok(etag) => return Ok(self.lease(tenant, etag, ttl, sent)),
            Err(Error::WriteConflict(_)) => {}
            Err(e) => return Err(e),
        }
        let Some(stored) = self.get_object(&key, None).await? else {
            // Released between our two calls: try again.
            return Err(WriteConflict { bucket: self.bucket.clone(), key }.into());
        };
        let etag = stored.etag;
        let current: LeaseBody = serde_json::from_slice(&stored.bytes).map_err(|cause| Error::Corrupt {
            what: format!("s3://{}/{key} is not a tenantry lease; if no tenantry process is working on tenant `{tenant}`, delete it", self.bucket),
            cause,
        })?;
        let now = now_unix();
        // A lease is renewed every third of its ttl, so it is never honoured for longer than
        // one ttl after the storage last saw it written, whatever expiry it claims.
        let expires_at = match stored.last_modified {
            Some(written) => current.expires_at.min(written + ttl.as_secs()),
            None => current.expires_at,
        };
        let holder_dead = holder_died_here(&current.holder, &self.holder);
        if current.holder == self.holder {
            // Our own lease (a write of ours whose answer was lost, or an earlier cycle of this
            // process that could not release it): renew it.
            let sent = std::time::Instant::now();
            let etag = self.put_conditional(&key, bytes, Some(&etag)).await?;
            return Ok(self.lease(tenant, etag, ttl, sent));
        }
        if expires_at > now && !holder_dead {
            return Err(LeaseHeld { tenant: tenant.into(), holder: current.holder, remaining: expires_at - now }.into());
        }
        if holder_dead {
            tracing::warn!(tenant, stale_holder = %current.holder, "taking over the lease of a process on this host that is no longer running");
        } else {
            tracing::warn!(tenant, stale_holder = %current.holder, "taking over an expired lease");
        }
        let sent = std::time::Instant::now();
        let etag = self.put_conditional(&key, bytes, Some(&etag)).await?;
        Ok(self.lease(tenant, etag, ttl, sent))
    }

    fn lease_body(&self, tenant: &str, ttl: Duration) -> Result<Vec<u8>> {
        let body =
            LeaseBody { holder: self.holder.clone(), tenant: tenant.into(), expires_at: now_unix() + ttl.as_secs() };
        Ok(serde_json::to_vec(&body)?)
    }

    /// A held lease, written by a request sent at `sent`, renewed every third of `ttl`.
    fn lease(&self, tenant: &str, etag: String, ttl: Duration, sent: std::time::Instant) -> Lease {
        let etag = Arc::new(Mutex::new(etag));
        let lost = Arc::new(AtomicBool::new(false));
        let renewed = Arc::new(std::sync::Mutex::new(sent));
        let heartbeat = {
            let (store, tenant, etag, lost, renewed) =
                (self.clone(), tenant.to_string(), etag.clone(), lost.clone(), renewed.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(ttl / 3).await;
                    let sent = std::time::Instant::now();
                    let renewal = async {
                        let body = store.lease_body(&tenant, ttl)?;
                        let mut etag = etag.lock().await;
                        *etag = store.put_conditional(&StateStore::lease_key(&tenant), body, Some(&etag)).await?;
                        Ok::<(), Error>(())
                    }
                    .await;
                    if let Err(e) = renewal {
                        tracing::error!(tenant = %tenant, "lost the lease: {e:#}");
                        lost.store(true, Ordering::SeqCst);
                        return;
                    }
                    *renewed.lock().unwrap_or_else(|p| p.into_inner()) = sent;
                }
            })
        };
        Lease { store: self.clone(), tenant: tenant.into(), etag, lost, renewed, ttl, heartbeat }
    }
}

/// Whether `holder` (`host:pid:scope-nonce`, see [`super::process_scope`]) names a process on
/// this host, in this kernel boot and pid namespace, that no longer runs, so its lease can be
/// taken over at once rather than after it expires: its pid is gone, or it is this process's pid
/// with another nonce (an earlier incarnation that had this pid). A holder of another scope (a
/// container with the same host name, another boot) or of the older `host:pid:nonce` form is
/// never judged from here: its lease runs out on its own. `me` is this process's holder name.
fn holder_died_here(holder: &str, me: &str) -> bool {
    let mut parts = holder.rsplitn(3, ':');
    let (tag, pid, host) = (parts.next(), parts.next(), parts.next());
    let scope = tag.and_then(|t| t.split_once('-')).map(|(scope, _)| scope);
    let here = super::process_scope();
    match (host, pid.and_then(|p| p.parse::<u32>().ok()), scope) {
        (Some(host), Some(pid), Some(scope)) if host == super::hostname() && scope == here && here != "unknown" => {
            if pid == std::process::id() {
                holder != me
            } else {
                !std::path::Path::new(&format!("/proc/{pid}")).exists()
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::holder_died_here;

    #[test]
    fn an_earlier_incarnation_with_this_pid_is_dead_and_this_process_is_not() {
        let (host, pid, scope) = (super::super::hostname(), std::process::id(), super::super::process_scope());
        let me = format!("{host}:{pid}:{scope}-aaaa");
        assert!(!holder_died_here(&me, &me));
        assert!(holder_died_here(&format!("{host}:{pid}:{scope}-bbbb"), &me), "same scope, same pid, another nonce");
        assert!(
            holder_died_here(&format!("{host}:4000000:{scope}-cccc"), &me),
            "same scope, a pid that does not exist"
        );
        // Another pid namespace or boot with the same host name (two containers, each pid 1):
        // never judged from here, whatever /proc says.
        assert!(!holder_died_here(&format!("{host}:{pid}:0123456789ab-bbbb"), &me));
        assert!(!holder_died_here(&format!("{host}:4000000:0123456789ab-cccc"), &me));
        assert!(!holder_died_here(&format!("{host}:4000000:cccc"), &me), "the older form without a scope");
        assert!(!holder_died_here("some-other-host:1:x-cccc", &me), "another host's process is never judged from here");
    }
}

/// Tells whether a [`Lease`] is still held, from anywhere in the work it guards (cloneable; no
/// request).
#[derive(Debug, Clone)]
pub struct LeaseGuard {
    tenant: String,
    lost: Arc<AtomicBool>,
    renewed: Arc<std::sync::Mutex<std::time::Instant>>,
    ttl: Duration,
}

impl LeaseGuard {
    /// Errors if the lease's background renewal failed, or if no renewal has succeeded for two
    /// thirds of the ttl (one still in flight, a slow network, a paused process): another
    /// process may take the lease over once a ttl has passed since the last write the bucket
    /// saw, so the last third is kept as a margin for the change that follows. Call it right
    /// before any change, so that none starts without the lease.
    pub fn check(&self) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(Error::LeaseLost(format!("the lease on tenant `{}` was lost; stopping", self.tenant)));
        }
        let since = self.renewed.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
        if since > self.ttl * 2 / 3 {
            return Err(Error::LeaseLost(format!(
                "the lease on tenant `{}` was last renewed {} s ago (lease_ttl_seconds {}): it may be taken over; stopping",
                self.tenant,
                since.as_secs(),
                self.ttl.as_secs()
            )));
        }
        Ok(())
    }
}

impl Lease {
    /// Errors if the background renewal failed (another process took the lease over): the
    /// caller must stop working on the tenant.
    pub fn check(&self) -> Result<()> {
        self.guard().check()
    }

    /// A handle that tells whether this lease is still held.
    pub fn guard(&self) -> LeaseGuard {
        LeaseGuard {
            tenant: self.tenant.clone(),
            lost: self.lost.clone(),
            renewed: self.renewed.clone(),
            ttl: self.ttl,
        }
    }

    /// Stops renewing and releases the lease (`DeleteObject`) if this process still holds it, as
    /// `GetObject` shows (its ETag the one this process last wrote). Always read first: a holder
    /// whose clock is behind, or whose host was suspended, can still judge its lease fresh after
    /// another process took it over by its own clock, and deleting that lease would let a third
    /// in.
    pub async fn release(self) -> Result<()> {
        self.heartbeat.abort();
        let key = StateStore::lease_key(&self.tenant);
        let etag = self.etag.lock().await.clone();
        if let Some((_, current)) = self.store.get(&key).await? {
            if current == etag {
                self.store
                    .s3
                    .delete_object()
                    .bucket(&self.store.bucket)
                    .key(&key)
                    .send()
                    .await
                    .map_err(|e| crate::aws::Error::from_sdk("s3:DeleteObject", e))?;
            }
        }
        Ok(())
    }
}
