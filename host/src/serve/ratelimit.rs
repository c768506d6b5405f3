//! The per-tenant request rate: a token bucket per tenant, refilled at
//! its `requests_per_second` quota and holding one second's worth, so a
//! tenant may burst to its rate and no further. The quota is read from
//! the tenancy records at most once per [`REFRESH`].

use crate::security::tenants::{Tenancy, TenantId};
use crate::sync::MutexExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a tenant's quota is read again.
pub const REFRESH: Duration = Duration::from_secs(1);

struct Bucket {
    /// Requests per second (`None`: unlimited).
    rate: Option<f64>,
    tokens: f64,
    last: Instant,
    read_at: Instant,
}

/// Every tenant's bucket.
pub struct RateLimits {
    tenancy: Arc<Tenancy>,
    buckets: Mutex<HashMap<TenantId, Bucket>>,
}

impl RateLimits {
    /// Limits from `tenancy`'s quotas.
    pub fn new(tenancy: Arc<Tenancy>) -> RateLimits {
        RateLimits {
            tenancy,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request of `tenant`'s; `false` when it is over its rate.
    pub fn admit(&self, tenant: &TenantId) -> bool {
        self.take(tenant, 1).is_none_or(|n| n == 1)
    }

    /// Takes up to `wanted` requests of `tenant`'s (for another node's
    /// ingress): how many it got, `None` when the tenant has no rate.
    pub fn take(&self, tenant: &TenantId, wanted: u32) -> Option<u32> {
        let now = Instant::now();
        let mut buckets = self.buckets.locked();
        let bucket = buckets.entry(tenant.clone()).or_insert_with(|| Bucket {
            rate: None,
            tokens: 0.0,
            last: now,
            read_at: now - REFRESH,
        });
        if now.duration_since(bucket.read_at) >= REFRESH {
            let rate = self
                .tenancy
                .tenant(tenant)
                .and_then(|t| t.quotas.requests_per_second);
            if rate != bucket.rate {
                // A new or changed rate starts with a full bucket.
                bucket.tokens = rate.unwrap_or(0.0);
                bucket.last = now;
            }
            bucket.rate = rate;
            bucket.read_at = now;
        }
        let rate = bucket.rate?;
        let elapsed = now.duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate.max(1.0));
        bucket.last = now;
        let granted = bucket.tokens.floor().min(f64::from(wanted)).max(0.0);
        bucket.tokens -= granted;
        Some(granted as u32)
    }
}
