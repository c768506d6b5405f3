//! Metrics of one node (and of the head, where it runs): counters and
//! histograms recorded on the hot paths without locks, gauges read when
//! scraped, and guests' own metrics; served as Prometheus/OpenMetrics
//! text on `/metrics` over HTTPS ([`http`]), where a tenant's token sees
//! only that tenant's series and a cluster-admin's sees every series.

pub mod calls;
pub mod guest;
pub mod histogram;
pub mod http;
mod render;

pub use calls::TenantMetrics;
pub use guest::{GuestMetricError, GuestMetrics, Origin};
pub use render::{NodeGauges, TenantGauges};

use crate::security::tenants::TenantId;
use crate::sync::{MutexExt, RwLockExt};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

/// Whose series a scrape may read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every series (a cluster-admin's token).
    All,
    /// One tenant's series only.
    Tenant(TenantId),
}

impl Scope {
    /// Whether series of `tenant` are in this scope.
    pub fn covers(&self, tenant: &TenantId) -> bool {
        match self {
            Scope::All => true,
            Scope::Tenant(t) => t == tenant,
        }
    }
}

/// Most (method, code) pairs of API calls counted apart.
const MAX_API_SERIES: usize = 512;

/// A node's metrics: its tenants' built-in series, guests' metrics, and
/// (on the head) API calls and node membership events.
pub struct NodeMetrics {
    enabled: bool,
    tenants: RwLock<HashMap<TenantId, Arc<TenantMetrics>>>,
    /// Guests' own metrics.
    pub guest: GuestMetrics,
    api_calls: Mutex<BTreeMap<(String, String), u64>>,
    /// Heartbeats the head received.
    pub heartbeats: AtomicU64,
    /// Nodes the head declared dead.
    pub node_deaths: AtomicU64,
}

impl NodeMetrics {
    /// Metrics that record (`enabled`) or not: with recording off, no
    /// tenant gets series and built-in counters stay at zero (the bench
    /// measures the cost this way); guests' metrics are kept either way.
    pub fn new(enabled: bool, guest_series: usize) -> Arc<NodeMetrics> {
        Arc::new(NodeMetrics {
            enabled,
            tenants: RwLock::default(),
            guest: GuestMetrics::new(guest_series),
            api_calls: Mutex::default(),
            heartbeats: AtomicU64::new(0),
            node_deaths: AtomicU64::new(0),
        })
    }

    /// Whether built-in series are recorded.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// `tenant`'s series (made on first use); `None` with recording off.
    pub fn tenant(&self, tenant: &TenantId) -> Option<Arc<TenantMetrics>> {
        if !self.enabled {
            return None;
        }
        if let Some(t) = self.tenants.read_locked().get(tenant) {
            return Some(t.clone());
        }
        Some(
            self.tenants
                .write_locked()
                .entry(tenant.clone())
                .or_insert_with(|| Arc::new(TenantMetrics::new(tenant.clone())))
                .clone(),
        )
    }

    /// The tenants with series, sorted.
    fn tenants_in(&self, scope: &Scope) -> Vec<Arc<TenantMetrics>> {
        let mut all: Vec<Arc<TenantMetrics>> = self
            .tenants
            .read_locked()
            .values()
            .filter(|t| scope.covers(t.tenant()))
            .cloned()
            .collect();
        all.sort_by(|a, b| a.tenant().cmp(b.tenant()));
        all
    }

    /// Counts one API call of `method` answered with `code`.
    pub fn api_call(&self, method: &str, code: &str) {
        if !self.enabled {
            return;
        }
        let mut calls = self.api_calls.locked();
        let key = (method.to_string(), code.to_string());
        if let Some(n) = calls.get_mut(&key) {
            *n += 1;
        } else if calls.len() < MAX_API_SERIES {
            calls.insert(key, 1);
        }
    }

    /// The text of `/metrics` for `scope`, with `gauges` read from the
    /// node just now.
    pub fn render(self: &Arc<Self>, scope: &Scope, gauges: NodeGauges) -> String {
        render::render(self.clone(), scope.clone(), gauges)
    }
}

/// Reads a node's gauges at scrape time.
pub trait GaugeSource: Send + Sync + 'static {
    /// What the node holds and uses now.
    fn gauges(&self) -> NodeGauges;
}
