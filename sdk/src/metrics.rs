//! Metrics from guest code: counters, gauges and histograms that the
//! node serves on `/metrics` next to its own, as
//! `prism_guest_<name>` with the labels given here plus `tenant`,
//! `namespace` and `job_id`, which the host sets (a guest cannot).
//!
//! ```no_run
//! use prism::metrics;
//! # fn withdraw(balance: u64, amount: u64) -> prism::Result<()> {
//! if amount > balance {
//!     metrics::counter("failed_withdrawals")
//!         .label("reason", "insufficient_funds")
//!         .inc()?;
//! }
//! metrics::gauge("balance").set(balance as f64)?;
//! # Ok(()) }
//! ```
//!
//! Names are `[a-zA-Z_][a-zA-Z0-9_]*` (at most 128 bytes); at most 8
//! labels, names like metric names (not `tenant`, `namespace`, `job_id`,
//! `job`, `instance`, `le`, `quantile`, nor starting with `__`), values at most 256 bytes.
//! A name keeps the kind of its first update within a tenant. A tenant
//! holds a bounded number of series per node (1,000 by default): an
//! update that would add one more fails with [`Error::QuotaExceeded`]
//! and records nothing. Every other refusal is
//! [`Error::InvalidArgument`].

use crate::{Error, Result, sys};
use prism_abi::metrics::{
    MAX_LABEL_NAME_LEN, MAX_LABEL_VALUE_LEN, MAX_METRIC_LABELS, MAX_METRIC_NAME_LEN, MetricOp,
    MetricUpdate, RESERVED_LABELS, is_valid_name,
};

/// A series being addressed: a metric name and labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    name: String,
    labels: Vec<(String, String)>,
}

/// A counter: only goes up.
#[derive(Clone, Debug, PartialEq)]
pub struct Counter(Series);
/// A gauge: set, or moved up and down.
#[derive(Clone, Debug, PartialEq)]
pub struct Gauge(Series);
/// A histogram: observations counted into buckets (upper bounds 0.005,
/// 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 and +Inf).
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram(Series);

/// The counter `name` (exposed as `prism_guest_<name>_total`).
pub fn counter(name: &str) -> Counter {
    Counter(Series::new(name))
}

/// The gauge `name` (exposed as `prism_guest_<name>`).
pub fn gauge(name: &str) -> Gauge {
    Gauge(Series::new(name))
}

/// The histogram `name` (exposed as `prism_guest_<name>_bucket`, `_sum`
/// and `_count`).
pub fn histogram(name: &str) -> Histogram {
    Histogram(Series::new(name))
}

impl Series {
    fn new(name: &str) -> Series {
        Series {
            name: name.to_string(),
            labels: Vec::new(),
        }
    }

    fn send(&self, op: MetricOp, value: f64) -> Result<()> {
        let update = MetricUpdate {
            op,
            name: self.name.clone(),
            labels: self.labels.clone(),
            value,
        };
        check(&update)?;
        match sys::metric(&update.encode()) {
            0 => Ok(()),
            code => Err(Error::from_status(code)),
        }
    }
}

macro_rules! labelled {
    ($t:ident) => {
        impl $t {
            /// The same metric's series with one more label.
            pub fn label(mut self, name: &str, value: &str) -> $t {
                self.0.labels.push((name.to_string(), value.to_string()));
                self
            }
        }
    };
}
labelled!(Counter);
labelled!(Gauge);
labelled!(Histogram);

impl Counter {
    /// Adds 1.
    pub fn inc(&self) -> Result<()> {
        self.inc_by(1.0)
    }

    /// Adds `value` (finite, ≥ 0).
    pub fn inc_by(&self, value: f64) -> Result<()> {
        self.0.send(MetricOp::CounterAdd, value)
    }
}

impl Gauge {
    /// Sets it to `value` (finite).
    pub fn set(&self, value: f64) -> Result<()> {
        self.0.send(MetricOp::GaugeSet, value)
    }

    /// Adds `value` (finite, either sign).
    pub fn add(&self, value: f64) -> Result<()> {
        self.0.send(MetricOp::GaugeAdd, value)
    }
}

impl Histogram {
    /// Records `value` (finite).
    pub fn observe(&self, value: f64) -> Result<()> {
        self.0.send(MetricOp::Observe, value)
    }
}

/// The host's checks, made here first so the error says what is wrong.
fn check(update: &MetricUpdate) -> Result<()> {
    let bad = |why: String| Err(Error::InvalidArgument(why));
    if update.name.len() > MAX_METRIC_NAME_LEN || !is_valid_name(&update.name) {
        return bad(format!("invalid metric name {:?}", update.name));
    }
    if update.labels.len() > MAX_METRIC_LABELS {
        return bad(format!("at most {MAX_METRIC_LABELS} labels"));
    }
    for (i, (name, value)) in update.labels.iter().enumerate() {
        if name.len() > MAX_LABEL_NAME_LEN || !is_valid_name(name) || name.starts_with("__") {
            return bad(format!("invalid label name {name:?}"));
        }
        if RESERVED_LABELS.contains(&name.as_str()) {
            return bad(format!("label {name:?} is set by the host"));
        }
        if value.len() > MAX_LABEL_VALUE_LEN {
            return bad(format!(
                "label {name:?} has a value over {MAX_LABEL_VALUE_LEN} bytes"
            ));
        }
        if update.labels[..i].iter().any(|(n, _)| n == name) {
            return bad(format!("label {name:?} is given twice"));
        }
    }
    let counter_down = update.op == MetricOp::CounterAdd && update.value < 0.0;
    if !update.value.is_finite() || counter_down {
        return bad(format!("invalid value {}", update.value));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_updates_are_refused_before_reaching_the_host() {
        let refused = |r: Result<()>| matches!(r, Err(Error::InvalidArgument(_)));
        assert!(refused(counter("a-b").inc()));
        assert!(refused(counter("c").label("tenant", "x").inc()));
        assert!(refused(counter("c").label("a", "1").label("a", "2").inc()));
        assert!(refused(counter("c").inc_by(-1.0)));
        assert!(refused(gauge("g").set(f64::NAN)));
        assert!(refused(histogram("h").label("__x", "1").observe(1.0)));
        // A good update gets as far as the host (none here).
        assert!(matches!(gauge("g").add(-2.0), Err(Error::NotInGuest)));
    }
}
