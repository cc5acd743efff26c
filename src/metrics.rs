//! API call accounting: every HTTP request tenantry sends to AWS, counted by operation and by
//! tenant, with the time spent waiting for answers. An SDK interceptor ([`CountCalls`]) is
//! registered on every client tenantry builds (management and member accounts); the counts end up
//! in the `api_calls` member of `--output json` and in the benchmark harness (`bench/`).
//!
//! Retries count as separate requests: they are what a rate limit sees.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use serde::Serialize;

tokio::task_local! {
    static TENANT: String;
}

/// Runs `f` with its AWS requests attributed to `tenant` (requests made outside any tenant are
/// attributed to `-`, the run's organization-wide work).
pub async fn for_tenant<F: Future>(tenant: &str, f: F) -> F::Output {
    TENANT.scope(tenant.to_string(), f).await
}

#[derive(Default)]
struct Registry {
    /// (tenant, `service:Operation`) → (requests, seconds waiting).
    calls: BTreeMap<(String, String), (u64, Duration)>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Default::default);

/// The SDK interceptor that counts requests. Register it on every client with
/// `.interceptor(CountCalls)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountCalls;

#[derive(Debug, Clone)]
struct SentAt(Instant);

impl Storable for SentAt {
    type Storer = StoreReplace<Self>;
}

fn operation(cfg: &ConfigBag) -> String {
    match cfg.load::<Metadata>() {
        Some(m) => format!("{}:{}", service_prefix(m.service()), m.name()),
        None => "unknown".into(),
    }
}

/// `Organizations` → `organizations`, `CloudFormation` → `cloudformation`, as in IAM actions.
fn service_prefix(service: &str) -> String {
    service.to_ascii_lowercase()
}

impl Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "tenantry::metrics::CountCalls"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state().store_put(SentAt(Instant::now()));
        Ok(())
    }

    fn read_after_attempt(
        &self,
        _context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Attempts that never reached the wire (e.g. no credentials) have no SentAt.
        let Some(sent) = cfg.load::<SentAt>().map(|s| s.0) else { return Ok(()) };
        let elapsed = sent.elapsed();
        let tenant = TENANT.try_with(|t| t.clone()).unwrap_or_else(|_| "-".into());
        let op = operation(cfg);
        let mut reg = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
        let e = reg.calls.entry((tenant, op)).or_default();
        e.0 += 1;
        e.1 += elapsed;
        cfg.interceptor_state().unset::<SentAt>();
        Ok(())
    }
}

/// Requests to one operation.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct OperationCalls {
    /// HTTP requests sent (retries included).
    pub requests: u64,
    /// Seconds spent waiting for answers, summed over requests (requests overlap, so the sum can
    /// exceed the run's wall time).
    pub seconds: f64,
}

/// Every request this process sent so far.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ApiCalls {
    /// All requests.
    pub total: u64,
    /// By `service:Operation`, all tenants together.
    pub by_operation: BTreeMap<String, OperationCalls>,
    /// By tenant id (`-`: organization-wide work of the run, such as listings shared by all
    /// tenants), then by operation.
    pub by_tenant: BTreeMap<String, BTreeMap<String, u64>>,
}

/// What has been counted so far in this process.
pub fn api_calls() -> ApiCalls {
    let reg = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    let mut out = ApiCalls::default();
    for ((tenant, op), (n, t)) in &reg.calls {
        out.total += n;
        let o = out.by_operation.entry(op.clone()).or_default();
        o.requests += n;
        o.seconds += t.as_secs_f64();
        *out.by_tenant.entry(tenant.clone()).or_default().entry(op.clone()).or_default() += n;
    }
    for o in out.by_operation.values_mut() {
        o.seconds = (o.seconds * 1000.0).round() / 1000.0;
    }
    out
}
