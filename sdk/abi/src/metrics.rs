//! Guest metrics: the update a guest sends with `prism_v1.metric`
//! (MessagePack), and the limits the host holds it to.

use serde::{Deserialize, Serialize};

/// Longest encoded update `prism_v1.metric` takes, in bytes.
pub const MAX_METRIC_UPDATE_LEN: usize = 4096;
/// Longest metric name, in bytes.
pub const MAX_METRIC_NAME_LEN: usize = 128;
/// Most labels a guest may put on one series (the host adds its own).
pub const MAX_METRIC_LABELS: usize = 8;
/// Longest label name, in bytes.
pub const MAX_LABEL_NAME_LEN: usize = 64;
/// Longest label value, in bytes.
pub const MAX_LABEL_VALUE_LEN: usize = 256;
/// Label names the host sets on every guest series (`tenant`,
/// `namespace`, `job_id`), that Prometheus sets on every target (`job`,
/// `instance`), or that the format gives a meaning (`le`, `quantile`); a
/// guest may use none of them.
pub const RESERVED_LABELS: [&str; 7] = [
    "tenant",
    "namespace",
    "job_id",
    "job",
    "instance",
    "le",
    "quantile",
];
/// Upper bounds of a guest histogram's buckets (`+Inf` follows), as
/// Prometheus' client libraries default to.
pub const HISTOGRAM_BOUNDS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// What an update does to its series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricOp {
    /// Adds a value ≥ 0 to a counter.
    CounterAdd,
    /// Sets a gauge.
    GaugeSet,
    /// Adds a value (any sign) to a gauge.
    GaugeAdd,
    /// Records one observation in a histogram.
    Observe,
}

/// A metric's type, fixed by the first update of its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations counted into buckets.
    Histogram,
}

impl MetricKind {
    /// Its name in the Prometheus text format.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

impl MetricOp {
    /// The kind of metric this update applies to.
    pub fn kind(self) -> MetricKind {
        match self {
            MetricOp::CounterAdd => MetricKind::Counter,
            MetricOp::GaugeSet | MetricOp::GaugeAdd => MetricKind::Gauge,
            MetricOp::Observe => MetricKind::Histogram,
        }
    }
}

/// One update of one series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricUpdate {
    /// What it does.
    pub op: MetricOp,
    /// The metric's name: `[a-zA-Z_][a-zA-Z0-9_]*`, at most
    /// [`MAX_METRIC_NAME_LEN`] bytes.
    pub name: String,
    /// The guest's labels (name, value), at most [`MAX_METRIC_LABELS`].
    pub labels: Vec<(String, String)>,
    /// The value added, set or observed.
    pub value: f64,
}

impl MetricUpdate {
    /// Encodes as MessagePack.
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).unwrap_or_default()
    }

    /// Decodes from MessagePack.
    pub fn decode(bytes: &[u8]) -> Result<MetricUpdate, crate::AbiError> {
        rmp_serde::from_slice(bytes).map_err(|e| crate::AbiError::Malformed(e.to_string()))
    }
}

/// Whether `name` may name a metric or a label: ASCII letters, digits
/// and `_`, not starting with a digit, and not empty.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_round_trips() {
        let update = MetricUpdate {
            op: MetricOp::GaugeSet,
            name: "balance".into(),
            labels: vec![("account".into(), "a".into())],
            value: -2.5,
        };
        assert_eq!(MetricUpdate::decode(&update.encode()).ok(), Some(update));
        assert!(MetricUpdate::decode(b"\xc1").is_err());
    }

    #[test]
    fn names_are_prometheus_names_without_colons() {
        assert!(is_valid_name("failed_withdrawals"));
        assert!(is_valid_name("_x9"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("9x"));
        assert!(!is_valid_name("a-b"));
        assert!(!is_valid_name("a:b"));
        assert!(!is_valid_name("é"));
    }
}
