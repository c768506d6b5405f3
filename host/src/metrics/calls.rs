//! What one tenant's tasks and actor calls did on this node: counts by
//! outcome and latency histograms, per function (tasks) or per
//! `Class.method` (actor calls), and its instances. Recording takes one
//! read lock and a few atomic adds; a tenant's functions past
//! [`MAX_CALL_SERIES`] share one series, so a module with many exports
//! cannot grow a node's memory.

use super::histogram::Histogram;
use crate::security::tenants::TenantId;
use crate::sync::RwLockExt;
use prism_abi::ErrorKind;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Most functions (and, apart, methods) with series of their own per
/// tenant on one node; the rest are counted under [`OTHER`].
pub const MAX_CALL_SERIES: usize = 1_000;
/// The `function` label of calls past [`MAX_CALL_SERIES`].
pub const OTHER: &str = "_other";

/// How a call ended: `ok`, or its error's kind.
pub fn outcome_name(index: usize) -> &'static str {
    match index {
        0 => "ok",
        i => ErrorKind::ALL.get(i - 1).map_or("unknown", |k| k.as_str()),
    }
}

/// Number of outcomes: `ok` and one per [`ErrorKind`].
pub const OUTCOMES: usize = ErrorKind::ALL.len() + 1;

fn outcome_index(result: Result<(), ErrorKind>) -> usize {
    match result {
        Ok(()) => 0,
        Err(kind) => 1 + kind.index(),
    }
}

/// One function's (or method's) calls.
#[derive(Default)]
pub struct CallSeries {
    outcomes: [AtomicU64; OUTCOMES],
    /// From submission to the start of the attempt that ran it.
    pub queue_wait: Histogram,
    /// One attempt's run on this node.
    pub run: Histogram,
    /// From submission to the result.
    pub end_to_end: Histogram,
}

impl CallSeries {
    /// Counts one ended call.
    pub fn ended(&self, result: Result<(), ErrorKind>) {
        self.outcomes[outcome_index(result)].fetch_add(1, Ordering::Relaxed);
    }

    /// Calls by outcome index ([`outcome_name`]).
    pub fn outcomes(&self) -> [u64; OUTCOMES] {
        std::array::from_fn(|i| self.outcomes[i].load(Ordering::Relaxed))
    }
}

/// Series by name, bounded.
#[derive(Default)]
pub struct SeriesMap {
    series: RwLock<HashMap<Box<str>, Arc<CallSeries>>>,
}

impl SeriesMap {
    /// The series of `name` (or of [`OTHER`] once the map is full).
    pub fn get(&self, name: &str) -> Arc<CallSeries> {
        if let Some(s) = self.series.read_locked().get(name) {
            return s.clone();
        }
        let mut series = self.series.write_locked();
        let key = if series.len() >= MAX_CALL_SERIES && !series.contains_key(name) {
            OTHER
        } else {
            name
        };
        series.entry(key.into()).or_default().clone()
    }

    /// Every series, sorted by name.
    pub fn all(&self) -> Vec<(Box<str>, Arc<CallSeries>)> {
        let mut all: Vec<_> = self
            .series
            .read_locked()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// One tenant's built-in series on this node.
pub struct TenantMetrics {
    tenant: TenantId,
    /// Tasks, by function.
    pub tasks: SeriesMap,
    /// Actor calls, by `Class.method`.
    pub actor_calls: SeriesMap,
    /// Instances made from scratch for its calls.
    pub fresh_instances: AtomicU64,
    /// Instances reused warm for its calls.
    pub warm_instances: AtomicU64,
    /// How long making a fresh instance took.
    pub instantiate: Histogram,
}

impl TenantMetrics {
    /// Empty series of `tenant`.
    pub fn new(tenant: TenantId) -> TenantMetrics {
        TenantMetrics {
            tenant,
            tasks: SeriesMap::default(),
            actor_calls: SeriesMap::default(),
            fresh_instances: AtomicU64::new(0),
            warm_instances: AtomicU64::new(0),
            instantiate: Histogram::default(),
        }
    }

    /// Whose series these are.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// Counts one instance taken for a call: `fresh` ones with the time
    /// making it took.
    pub fn instance(&self, fresh: Option<Duration>) {
        match fresh {
            Some(took) => {
                self.fresh_instances.fetch_add(1, Ordering::Relaxed);
                self.instantiate.observe(took);
            }
            None => {
                self.warm_instances.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_counted_by_kind() {
        let s = CallSeries::default();
        s.ended(Ok(()));
        s.ended(Ok(()));
        s.ended(Err(ErrorKind::Panic));
        let counts = s.outcomes();
        assert_eq!(counts[0], 2);
        let panic = (0..OUTCOMES).find(|i| outcome_name(*i) == "panic");
        assert_eq!(panic.map(|i| counts[i]), Some(1));
        assert_eq!(counts.iter().sum::<u64>(), 3);
    }

    #[test]
    fn a_tenant_with_many_functions_shares_one_series_past_the_cap() {
        let map = SeriesMap::default();
        for i in 0..MAX_CALL_SERIES + 50 {
            map.get(&format!("f{i}")).ended(Ok(()));
        }
        let all = map.all();
        assert_eq!(all.len(), MAX_CALL_SERIES + 1);
        let other = all.iter().find(|(k, _)| &**k == OTHER);
        assert_eq!(other.map(|(_, s)| s.outcomes()[0]), Some(50));
        // A function that had a series keeps it.
        map.get("f0").ended(Ok(()));
        assert_eq!(map.get("f0").outcomes()[0], 2);
    }
}
