//! Guests' own metrics: counters, gauges and histograms a task or actor
//! records (`prism::metrics`), with labels of its choosing plus the
//! host's `tenant`, `namespace` and `job`, which a guest cannot set.
//! Each tenant holds at most a fixed number of series on a node; an
//! update that would add one more is refused with a typed error, so
//! guests cannot grow a node's memory without bound.

use crate::security::tenants::TenantId;
use crate::sync::MutexExt;
use prism_abi::metrics::{
    HISTOGRAM_BOUNDS, MAX_LABEL_NAME_LEN, MAX_LABEL_VALUE_LEN, MAX_METRIC_LABELS,
    MAX_METRIC_NAME_LEN, MetricKind, MetricOp, MetricUpdate, RESERVED_LABELS, is_valid_name,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Default of `--guest-metric-series`: series per tenant per node.
pub const DEFAULT_MAX_SERIES: usize = 1_000;
/// How long a job's series stay after its work on the node ended, so
/// that scrapes see their last values (four scrapes at 15 s).
pub const ENDED_JOB_GRACE: Duration = Duration::from_secs(60);

/// Why an update was refused; nothing was recorded.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum GuestMetricError {
    /// The metric's name is not `[a-zA-Z_][a-zA-Z0-9_]*` of at most 128 bytes.
    #[error("invalid metric name {0:?}: use [a-zA-Z_][a-zA-Z0-9_]*, at most 128 bytes")]
    InvalidName(String),
    /// A label is malformed, repeated, reserved or too long, or there are too many.
    #[error("invalid label: {0}")]
    InvalidLabel(String),
    /// The name is already a metric of another kind in this tenant.
    #[error("metric {name:?} is a {existing}, not a {wanted}")]
    KindMismatch {
        /// The metric's name.
        name: String,
        /// Its kind.
        existing: &'static str,
        /// The kind the update asked for.
        wanted: &'static str,
    },
    /// The value is not finite, or a counter would go down.
    #[error(
        "invalid value {0}: counters take finite values >= 0, gauges and histograms finite ones"
    )]
    InvalidValue(f64),
    /// The tenant holds its cap of series on this node.
    #[error("the tenant holds {limit} metric series on this node, its most")]
    TooManySeries {
        /// The cap.
        limit: usize,
    },
}

/// Who recorded an update: the labels the host adds.
#[derive(Clone, Copy, Debug)]
pub struct Origin<'a> {
    /// The guest's tenant.
    pub tenant: &'a TenantId,
    /// Its namespace.
    pub namespace: &'a str,
    /// The job it belongs to.
    pub job: &'a str,
}

/// A series' value.
#[derive(Clone, Debug, PartialEq)]
pub enum GuestValue {
    /// A counter's total.
    Counter(f64),
    /// A gauge's value.
    Gauge(f64),
    /// A histogram: counts per bucket of [`HISTOGRAM_BOUNDS`] then `+Inf`
    /// (not cumulative), and the sum.
    Histogram {
        /// Per bucket.
        counts: Vec<u64>,
        /// Of every observation.
        sum: f64,
    },
}

/// Labels of a series, sorted by name: the host's and the guest's.
pub type Labels = Vec<(String, String)>;

#[derive(Default)]
struct TenantSeries {
    kinds: HashMap<String, MetricKind>,
    /// By (name, labels), with the job that recorded them.
    series: BTreeMap<(String, Labels), (GuestValue, String)>,
    /// Jobs whose work here ended, and when.
    ended: HashMap<String, Instant>,
}

impl TenantSeries {
    /// Drops the series of jobs that ended more than `grace` ago, and
    /// the kinds of names left without a series.
    fn purge(&mut self, grace: Duration) {
        if self.ended.is_empty() {
            return;
        }
        let now = Instant::now();
        let gone: Vec<String> = self
            .ended
            .iter()
            .filter(|(_, at)| now.duration_since(**at) >= grace)
            .map(|(job, _)| job.clone())
            .collect();
        if gone.is_empty() {
            return;
        }
        self.series.retain(|_, (_, job)| !gone.contains(job));
        for job in &gone {
            self.ended.remove(job);
        }
        let names: std::collections::HashSet<&String> =
            self.series.keys().map(|(name, _)| name).collect();
        self.kinds.retain(|name, _| names.contains(name));
    }
}

/// Every tenant's guest series on this node.
pub struct GuestMetrics {
    max_series: usize,
    grace: Duration,
    tenants: Mutex<HashMap<TenantId, Arc<Mutex<TenantSeries>>>>,
}

/// One metric of one tenant, for rendering.
#[derive(Clone, Debug, PartialEq)]
pub struct GuestFamily {
    /// The guest's name.
    pub name: String,
    /// Its kind.
    pub kind: MetricKind,
    /// Its series.
    pub series: Vec<(Labels, GuestValue)>,
}

impl GuestMetrics {
    /// At most `max_series` series per tenant.
    pub fn new(max_series: usize) -> GuestMetrics {
        GuestMetrics::with_grace(max_series, ENDED_JOB_GRACE)
    }

    /// [`GuestMetrics::new`], keeping ended jobs' series for `grace`.
    pub fn with_grace(max_series: usize, grace: Duration) -> GuestMetrics {
        GuestMetrics {
            max_series,
            grace,
            tenants: Mutex::default(),
        }
    }

    /// `tenant`'s series (made on first use); each tenant has its own
    /// lock, so one tenant's updates never wait for another's.
    fn tenant(&self, tenant: &TenantId) -> Arc<Mutex<TenantSeries>> {
        self.tenants
            .locked()
            .entry(tenant.clone())
            .or_default()
            .clone()
    }

    /// Job `job` of `tenant` ended its work on this node: its series go
    /// after [`ENDED_JOB_GRACE`].
    pub fn job_ended(&self, tenant: &TenantId, job: &str) {
        let Some(series) = self.tenants.locked().get(tenant).cloned() else {
            return;
        };
        let mut series = series.locked();
        if series.series.values().any(|(_, j)| j == job) {
            series.ended.insert(job.to_string(), Instant::now());
        }
    }

    /// Applies `update` from `origin`.
    pub fn record(
        &self,
        origin: Origin<'_>,
        update: &MetricUpdate,
    ) -> Result<(), GuestMetricError> {
        let labels = checked_labels(origin, update)?;
        let kind = update.op.kind();
        let valid =
            update.value.is_finite() && !(update.op == MetricOp::CounterAdd && update.value < 0.0);
        if !valid {
            return Err(GuestMetricError::InvalidValue(update.value));
        }
        let tenant = self.tenant(origin.tenant);
        let mut tenant = tenant.locked();
        if let Some(existing) = tenant.kinds.get(&update.name)
            && *existing != kind
        {
            return Err(GuestMetricError::KindMismatch {
                name: update.name.clone(),
                existing: existing.as_str(),
                wanted: kind.as_str(),
            });
        }
        let key = (update.name.clone(), labels);
        if !tenant.series.contains_key(&key) && tenant.series.len() >= self.max_series {
            tenant.purge(self.grace);
            if tenant.series.len() >= self.max_series {
                return Err(GuestMetricError::TooManySeries {
                    limit: self.max_series,
                });
            }
        }
        tenant.kinds.entry(update.name.clone()).or_insert(kind);
        let (value, _) = tenant.series.entry(key).or_insert_with(|| {
            let value = match kind {
                MetricKind::Counter => GuestValue::Counter(0.0),
                MetricKind::Gauge => GuestValue::Gauge(0.0),
                MetricKind::Histogram => GuestValue::Histogram {
                    counts: vec![0; HISTOGRAM_BOUNDS.len() + 1],
                    sum: 0.0,
                },
            };
            (value, origin.job.to_string())
        });
        match (value, update.op) {
            (GuestValue::Counter(total), MetricOp::CounterAdd) => *total += update.value,
            (GuestValue::Gauge(v), MetricOp::GaugeSet) => *v = update.value,
            (GuestValue::Gauge(v), MetricOp::GaugeAdd) => *v += update.value,
            (GuestValue::Histogram { counts, sum }, MetricOp::Observe) => {
                let bucket = HISTOGRAM_BOUNDS.partition_point(|b| *b < update.value);
                if let Some(c) = counts.get_mut(bucket) {
                    *c += 1;
                }
                *sum += update.value;
            }
            // The kind was checked above.
            _ => {}
        }
        Ok(())
    }

    /// The metrics of `tenant` (every tenant's with `None`), one family
    /// per (name, kind) with every tenant's series of it, sorted by name
    /// and kind.
    pub fn families(&self, tenant: Option<&TenantId>) -> Vec<GuestFamily> {
        let tenants: Vec<Arc<Mutex<TenantSeries>>> = self
            .tenants
            .locked()
            .iter()
            .filter(|(t, _)| tenant.is_none_or(|wanted| *t == wanted))
            .map(|(_, s)| s.clone())
            .collect();
        let mut families: BTreeMap<(String, MetricKind), Vec<(Labels, GuestValue)>> =
            BTreeMap::new();
        for series in tenants {
            let mut series = series.locked();
            series.purge(self.grace);
            for ((metric, labels), (value, _)) in &series.series {
                let kind = series
                    .kinds
                    .get(metric)
                    .copied()
                    .unwrap_or(MetricKind::Gauge);
                families
                    .entry((metric.clone(), kind))
                    .or_default()
                    .push((labels.clone(), value.clone()));
            }
        }
        families
            .into_iter()
            .map(|((name, kind), mut series)| {
                series.sort_by(|a, b| a.0.cmp(&b.0));
                GuestFamily { name, kind, series }
            })
            .collect()
    }

    /// How many series `tenant` holds here.
    pub fn series_of(&self, tenant: &TenantId) -> usize {
        let series = self.tenants.locked().get(tenant).cloned();
        series.map_or(0, |t| t.locked().series.len())
    }
}

fn checked_labels(origin: Origin<'_>, update: &MetricUpdate) -> Result<Labels, GuestMetricError> {
    if update.name.len() > MAX_METRIC_NAME_LEN || !is_valid_name(&update.name) {
        return Err(GuestMetricError::InvalidName(truncated(&update.name)));
    }
    if update.labels.len() > MAX_METRIC_LABELS {
        return Err(GuestMetricError::InvalidLabel(format!(
            "{} labels, at most {MAX_METRIC_LABELS}",
            update.labels.len()
        )));
    }
    let mut labels: Labels = vec![
        ("job_id".to_string(), origin.job.to_string()),
        ("namespace".to_string(), origin.namespace.to_string()),
        ("tenant".to_string(), origin.tenant.to_string()),
    ];
    for (name, value) in &update.labels {
        let bad = |why: &str| {
            Err(GuestMetricError::InvalidLabel(format!(
                "{:?} {why}",
                truncated(name)
            )))
        };
        if name.len() > MAX_LABEL_NAME_LEN || !is_valid_name(name) || name.starts_with("__") {
            return bad(
                "is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, at most 64 bytes, no leading __)",
            );
        }
        if RESERVED_LABELS.contains(&name.as_str()) {
            return bad("is set by the host");
        }
        if value.len() > MAX_LABEL_VALUE_LEN {
            return bad("has a value over 256 bytes");
        }
        if labels.iter().any(|(n, _)| n == name) {
            return bad("is given twice");
        }
        labels.push((name.clone(), value.clone()));
    }
    labels.sort();
    Ok(labels)
}

/// At most 64 characters of a guest's string, for an error message.
fn truncated(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(op: MetricOp, name: &str, labels: &[(&str, &str)], value: f64) -> MetricUpdate {
        MetricUpdate {
            op,
            name: name.into(),
            labels: labels
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            value,
        }
    }

    fn origin(tenant: &TenantId) -> Origin<'_> {
        Origin {
            tenant,
            namespace: "default",
            job: "j1",
        }
    }

    #[test]
    fn counters_gauges_and_histograms_add_up_with_the_hosts_labels() {
        let m = GuestMetrics::new(10);
        let t = TenantId::new("acme");
        let o = origin(&t);
        m.record(
            o,
            &update(MetricOp::CounterAdd, "fails", &[("why", "funds")], 1.0),
        )
        .unwrap();
        m.record(
            o,
            &update(MetricOp::CounterAdd, "fails", &[("why", "funds")], 2.0),
        )
        .unwrap();
        m.record(o, &update(MetricOp::GaugeSet, "balance", &[], 10.0))
            .unwrap();
        m.record(o, &update(MetricOp::GaugeAdd, "balance", &[], -3.0))
            .unwrap();
        m.record(o, &update(MetricOp::Observe, "size", &[], 0.3))
            .unwrap();
        let families = m.families(Some(&t));
        let names: Vec<&str> = families.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["balance", "fails", "size"]);
        assert_eq!(families[0].series[0].1, GuestValue::Gauge(7.0));
        assert_eq!(families[1].series[0].1, GuestValue::Counter(3.0));
        let labels = &families[1].series[0].0;
        assert!(labels.contains(&("tenant".into(), "acme".into())));
        assert!(labels.contains(&("job_id".into(), "j1".into())));
        assert!(labels.contains(&("why".into(), "funds".into())));
        let GuestValue::Histogram { counts, sum } = &families[2].series[0].1 else {
            panic!("not a histogram");
        };
        assert_eq!(counts[6], 1); // 0.25 < 0.3 <= 0.5
        assert!((sum - 0.3).abs() < 1e-12);
    }

    #[test]
    fn a_guest_cannot_forge_the_hosts_labels_or_break_the_format() {
        let m = GuestMetrics::new(10);
        let t = TenantId::new("acme");
        let o = origin(&t);
        for labels in [
            &[("tenant", "other")][..],
            &[("job", "x")],
            &[("job_id", "x")],
            &[("instance", "x")],
            &[("le", "1")],
            &[("__name__", "x")],
            &[("a-b", "x")],
            &[("a", "1"), ("a", "2")],
        ] {
            let e = m.record(o, &update(MetricOp::CounterAdd, "c", labels, 1.0));
            assert!(
                matches!(e, Err(GuestMetricError::InvalidLabel(_))),
                "{labels:?}: {e:?}"
            );
        }
        let long = "v".repeat(257);
        let e = m.record(o, &update(MetricOp::CounterAdd, "c", &[("a", &long)], 1.0));
        assert!(matches!(e, Err(GuestMetricError::InvalidLabel(_))));
        let nine: Vec<(String, String)> =
            (0..9).map(|i| (format!("l{i}"), String::new())).collect();
        let mut many = update(MetricOp::CounterAdd, "c", &[], 1.0);
        many.labels = nine;
        assert!(matches!(
            m.record(o, &many),
            Err(GuestMetricError::InvalidLabel(_))
        ));
        for name in ["", "a b", "x{y=\"1\"}", &"n".repeat(129)] {
            let e = m.record(o, &update(MetricOp::CounterAdd, name, &[], 1.0));
            assert!(matches!(e, Err(GuestMetricError::InvalidName(_))));
        }
        for value in [f64::NAN, f64::INFINITY, -1.0] {
            let e = m.record(o, &update(MetricOp::CounterAdd, "c", &[], value));
            assert!(matches!(e, Err(GuestMetricError::InvalidValue(_))));
        }
        assert_eq!(m.series_of(&t), 0);
    }

    #[test]
    fn a_name_keeps_its_kind_within_a_tenant_but_not_across_tenants() {
        let m = GuestMetrics::new(10);
        let (a, b) = (TenantId::new("a"), TenantId::new("b"));
        m.record(origin(&a), &update(MetricOp::CounterAdd, "x", &[], 1.0))
            .unwrap();
        let e = m.record(origin(&a), &update(MetricOp::GaugeSet, "x", &[], 1.0));
        assert!(matches!(e, Err(GuestMetricError::KindMismatch { .. })));
        m.record(origin(&b), &update(MetricOp::GaugeSet, "x", &[], 1.0))
            .unwrap();
        assert_eq!(m.families(Some(&b))[0].kind, MetricKind::Gauge);
        assert_eq!(m.families(None).len(), 2);
    }

    #[test]
    fn an_ended_jobs_series_leave_after_the_grace_and_free_the_cap() {
        let m = GuestMetrics::with_grace(2, Duration::ZERO);
        let t = TenantId::new("a");
        let job = |job: &'static str| Origin {
            tenant: &t,
            namespace: "ns",
            job,
        };
        m.record(job("j1"), &update(MetricOp::CounterAdd, "c", &[], 1.0))
            .unwrap();
        m.record(job("j2"), &update(MetricOp::GaugeSet, "g", &[], 1.0))
            .unwrap();
        let full = m.record(job("j3"), &update(MetricOp::CounterAdd, "c", &[], 1.0));
        assert_eq!(full, Err(GuestMetricError::TooManySeries { limit: 2 }));
        m.job_ended(&t, "j1");
        m.record(job("j3"), &update(MetricOp::CounterAdd, "c", &[], 1.0))
            .unwrap();
        let names: Vec<String> = m.families(None).into_iter().map(|f| f.name).collect();
        assert_eq!(names, ["c", "g"]);
        assert_eq!(m.series_of(&t), 2);
        // A name whose series all left may take another kind.
        m.job_ended(&t, "j2");
        m.families(None);
        m.record(job("j3"), &update(MetricOp::CounterAdd, "g", &[], 1.0))
            .unwrap();
    }

    #[test]
    fn a_tenant_past_its_series_cap_gets_a_typed_error_and_others_go_on() {
        let m = GuestMetrics::new(3);
        let (a, b) = (TenantId::new("a"), TenantId::new("b"));
        for i in 0..3 {
            let v = i.to_string();
            m.record(
                origin(&a),
                &update(MetricOp::CounterAdd, "c", &[("i", &v)], 1.0),
            )
            .unwrap();
        }
        let e = m.record(
            origin(&a),
            &update(MetricOp::CounterAdd, "c", &[("i", "3")], 1.0),
        );
        assert_eq!(e, Err(GuestMetricError::TooManySeries { limit: 3 }));
        // Its existing series still move; the other tenant is untouched.
        m.record(
            origin(&a),
            &update(MetricOp::CounterAdd, "c", &[("i", "0")], 1.0),
        )
        .unwrap();
        m.record(
            origin(&b),
            &update(MetricOp::CounterAdd, "c", &[("i", "3")], 1.0),
        )
        .unwrap();
        assert_eq!(m.series_of(&a), 3);
        assert_eq!(m.series_of(&b), 1);
    }
}
