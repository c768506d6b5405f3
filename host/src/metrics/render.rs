//! The Prometheus/OpenMetrics text of a scrape: a [`Collector`] over the
//! node's series and gauges, limited to a [`Scope`], encoded by
//! prometheus-client. Label values are escaped here (the crate writes
//! them as given), so a guest's function name or label value cannot
//! break the format or forge a series.

use super::calls::{CallSeries, OUTCOMES, SeriesMap, outcome_name};
use super::guest::GuestValue;
use super::histogram::HistogramSnapshot;
use super::{NodeMetrics, Scope};
use crate::security::tenants::TenantId;
use crate::sync::MutexExt;
use prism_abi::metrics::{HISTOGRAM_BOUNDS, MetricKind};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::fmt::Error;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// One tenant's gauges on a node.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantGauges {
    /// Whose.
    pub tenant: TenantId,
    /// Tasks admitted here and not finished (the scheduler's queue).
    pub queued_tasks: u64,
    /// (resource, used on this node, the tenant's quota if it has one).
    pub usage: Vec<(&'static str, f64, Option<f64>)>,
}

/// What a node holds and uses when scraped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeGauges {
    /// (resource, total, available).
    pub resources: Vec<(String, f64, f64)>,
    /// Tasks the scheduler knows and has not finished.
    pub pending_tasks: u64,
    /// Tasks running (blocked ones included).
    pub running_tasks: u64,
    /// The object store.
    pub store: prism_abi::StoreStats,
    /// Copies the object store pulled from other nodes since it started:
    /// (objects, bytes).
    pub pulled: (u64, u64),
    /// GPU buffers alive and their bytes, on a node with GPUs.
    pub gpu: Option<(u64, u64)>,
    /// Per tenant.
    pub tenants: Vec<TenantGauges>,
    /// On the head: nodes alive in the cluster.
    pub nodes_alive: Option<u64>,
}

/// Label pairs with escaped values.
type Labels = Vec<(String, String)>;

/// Labels from (name, value) pairs, values escaped.
fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), escape(v)))
        .collect()
}

/// A label value as the text format wants it: `\`, `"` and newlines
/// escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

struct View {
    metrics: Arc<NodeMetrics>,
    scope: Scope,
    gauges: NodeGauges,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View").field("scope", &self.scope).finish()
    }
}

pub(super) fn render(metrics: Arc<NodeMetrics>, scope: Scope, gauges: NodeGauges) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(View {
        metrics,
        scope,
        gauges,
    }));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

fn counter(e: &mut MetricEncoder<'_>, labels: &Labels, value: u64) -> Result<(), Error> {
    if labels.is_empty() {
        return e.encode_counter::<NoLabelSet, u64, u64>(&value, None);
    }
    e.encode_family(labels)?
        .encode_counter::<NoLabelSet, u64, u64>(&value, None)
}

fn gauge(e: &mut MetricEncoder<'_>, labels: &Labels, value: f64) -> Result<(), Error> {
    if labels.is_empty() {
        return e.encode_gauge(&value);
    }
    e.encode_family(labels)?.encode_gauge(&value)
}

fn histogram(
    e: &mut MetricEncoder<'_>,
    labels: &Labels,
    h: &HistogramSnapshot,
) -> Result<(), Error> {
    let buckets: Vec<(f64, u64)> = h
        .buckets
        .iter()
        .map(|(bound, n)| (if bound.is_finite() { *bound } else { f64::MAX }, *n))
        .collect();
    e.encode_family(labels)?
        .encode_histogram::<NoLabelSet>(h.sum, h.count, &buckets, None)
}

/// A tenant's call series, by name.
type TenantCalls = (TenantId, Vec<(Box<str>, Arc<CallSeries>)>);

/// The four families of tasks (or actor calls) by `label`.
fn call_families(
    d: &mut DescriptorEncoder<'_>,
    kind: &str,
    label: &'static str,
    series: &[TenantCalls],
) -> Result<(), Error> {
    let of = |tenant: &TenantId, name: &str| labels(&[("tenant", tenant.as_str()), (label, name)]);
    {
        let help = format!("{kind}s ended on this node, by outcome (ok or the error's kind)");
        let name = format!("prism_{kind}s");
        let mut e = d.encode_descriptor(&name, &help, None, MetricType::Counter)?;
        for (tenant, calls) in series {
            for (name, s) in calls {
                let counts = s.outcomes();
                for (i, n) in counts.iter().enumerate().take(OUTCOMES) {
                    if *n > 0 {
                        let mut l = of(tenant, name);
                        l.push(("outcome".into(), outcome_name(i).into()));
                        counter(&mut e, &l, *n)?;
                    }
                }
            }
        }
    }
    type Pick = fn(&CallSeries) -> &super::histogram::Histogram;
    let histograms: [(&str, &str, Pick); 3] = [
        (
            "queue_wait",
            "from submission to the start of the attempt that ran it",
            |s| &s.queue_wait,
        ),
        ("run", "one attempt's run on this node", |s| &s.run),
        ("end_to_end", "from submission to the result", |s| {
            &s.end_to_end
        }),
    ];
    for (suffix, what, pick) in histograms {
        let name = format!("prism_{kind}_{suffix}_seconds");
        let help = format!("Seconds of {kind}s {what}");
        let mut e = d.encode_descriptor(&name, &help, None, MetricType::Histogram)?;
        for (tenant, calls) in series {
            for (name, s) in calls {
                let snapshot = pick(s).snapshot();
                if snapshot.count > 0 {
                    histogram(&mut e, &of(tenant, name), &snapshot)?;
                }
            }
        }
    }
    Ok(())
}

impl View {
    fn tenant_series(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), Error> {
        let tenants = self.metrics.tenants_in(&self.scope);
        let of = |pick: fn(&super::TenantMetrics) -> &SeriesMap| {
            tenants
                .iter()
                .map(|t| (t.tenant().clone(), pick(t).all()))
                .collect::<Vec<_>>()
        };
        call_families(e, "task", "function", &of(|t| &t.tasks))?;
        call_families(e, "actor_call", "method", &of(|t| &t.actor_calls))?;
        {
            let help = "Instances taken for calls: fresh (made now) or warm (reused)";
            let mut m = e.encode_descriptor("prism_instances", help, None, MetricType::Counter)?;
            for t in &tenants {
                for (kind, n) in [
                    ("fresh", t.fresh_instances.load(Ordering::Relaxed)),
                    ("warm", t.warm_instances.load(Ordering::Relaxed)),
                ] {
                    let l = labels(&[("tenant", t.tenant().as_str()), ("kind", kind)]);
                    counter(&mut m, &l, n)?;
                }
            }
        }
        {
            let help = "Seconds making a fresh instance took";
            let mut m = e.encode_descriptor(
                "prism_instantiate_seconds",
                help,
                None,
                MetricType::Histogram,
            )?;
            for t in &tenants {
                let l = labels(&[("tenant", t.tenant().as_str())]);
                histogram(&mut m, &l, &t.instantiate.snapshot())?;
            }
        }
        let gauges: Vec<&TenantGauges> = self
            .gauges
            .tenants
            .iter()
            .filter(|g| self.scope.covers(&g.tenant))
            .collect();
        {
            let help = "Tasks of the tenant admitted on this node and not finished";
            let mut m =
                e.encode_descriptor("prism_tenant_queued_tasks", help, None, MetricType::Gauge)?;
            for g in &gauges {
                let l = labels(&[("tenant", g.tenant.as_str())]);
                gauge(&mut m, &l, g.queued_tasks as f64)?;
            }
        }
        {
            let help = "What the tenant uses on this node, by resource";
            let mut m = e.encode_descriptor("prism_tenant_usage", help, None, MetricType::Gauge)?;
            for g in &gauges {
                for (resource, used, _) in &g.usage {
                    let l = labels(&[("tenant", g.tenant.as_str()), ("resource", resource)]);
                    gauge(&mut m, &l, *used)?;
                }
            }
        }
        {
            let help = "The tenant's quota (cluster-wide), by resource; absent when unlimited";
            let mut m = e.encode_descriptor("prism_tenant_quota", help, None, MetricType::Gauge)?;
            for g in &gauges {
                for (resource, _, quota) in &g.usage {
                    if let Some(quota) = quota {
                        let l = labels(&[("tenant", g.tenant.as_str()), ("resource", resource)]);
                        gauge(&mut m, &l, *quota)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn guest_series(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), Error> {
        let tenant = match &self.scope {
            Scope::All => None,
            Scope::Tenant(t) => Some(t),
        };
        let families = self.metrics.guest.families(tenant);
        // A name two tenants use with different kinds would be two
        // families of one name, which Prometheus refuses: such a name
        // gets its kind appended (again, should that clash too).
        let mut named: BTreeMap<String, MetricKind> = BTreeMap::new();
        let mut exposed: Vec<String> = Vec::with_capacity(families.len());
        for f in &families {
            let clash = families
                .iter()
                .any(|other| other.name == f.name && other.kind != f.kind);
            let mut full = if clash {
                format!("prism_guest_{}_{}", f.name, f.kind.as_str())
            } else {
                format!("prism_guest_{}", f.name)
            };
            while named.get(&full).is_some_and(|kind| *kind != f.kind) {
                full = format!("{full}_{}", f.kind.as_str());
            }
            named.insert(full.clone(), f.kind);
            exposed.push(full);
        }
        // One descriptor per exposed name: families that share one (same
        // kind) are written under it together.
        let mut by_name: BTreeMap<&str, Vec<&super::guest::GuestFamily>> = BTreeMap::new();
        for (f, full) in families.iter().zip(&exposed) {
            by_name.entry(full.as_str()).or_default().push(f);
        }
        for (full, group) in by_name {
            let Some(kind) = group.first().map(|f| f.kind) else {
                continue;
            };
            let metric_type = match kind {
                MetricKind::Counter => MetricType::Counter,
                MetricKind::Gauge => MetricType::Gauge,
                MetricKind::Histogram => MetricType::Histogram,
            };
            let mut m = e.encode_descriptor(full, "A guest's metric", None, metric_type)?;
            for (labels, value) in group.iter().flat_map(|f| &f.series) {
                let l: Labels = labels.iter().map(|(k, v)| (k.clone(), escape(v))).collect();
                match value {
                    GuestValue::Counter(v) => m
                        .encode_family(&l)?
                        .encode_counter::<NoLabelSet, f64, f64>(v, None)?,
                    GuestValue::Gauge(v) => gauge(&mut m, &l, *v)?,
                    GuestValue::Histogram { counts, sum } => {
                        let buckets: Vec<(f64, u64)> = HISTOGRAM_BOUNDS
                            .iter()
                            .copied()
                            .chain(std::iter::once(f64::MAX))
                            .zip(counts.iter().copied())
                            .collect();
                        let count = counts.iter().sum();
                        m.encode_family(&l)?
                            .encode_histogram::<NoLabelSet>(*sum, count, &buckets, None)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Series of no tenant: the node's own (cluster-admins only).
    fn node_series(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), Error> {
        let g = &self.gauges;
        let mut one = |name: &str, help: &str, rows: Vec<(Labels, f64)>| -> Result<(), Error> {
            let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (l, v) in rows {
                gauge(&mut m, &l, v)?;
            }
            Ok(())
        };
        let res = |pick: fn(&(String, f64, f64)) -> f64| {
            g.resources
                .iter()
                .map(|r| (labels(&[("resource", &r.0)]), pick(r)))
                .collect::<Vec<_>>()
        };
        one(
            "prism_node_resources",
            "The node's resources, by resource",
            res(|r| r.1),
        )?;
        one(
            "prism_node_resources_available",
            "The node's resources not held now, by resource",
            res(|r| r.2),
        )?;
        one(
            "prism_scheduler_tasks",
            "Tasks the node's scheduler knows, by state",
            vec![
                (labels(&[("state", "pending")]), g.pending_tasks as f64),
                (labels(&[("state", "running")]), g.running_tasks as f64),
            ],
        )?;
        one(
            "prism_object_store_objects",
            "Objects held, by tier",
            vec![
                (
                    labels(&[("tier", "memory")]),
                    (g.store.objects - g.store.spilled_objects.min(g.store.objects)) as f64,
                ),
                (
                    labels(&[("tier", "spilled")]),
                    g.store.spilled_objects as f64,
                ),
            ],
        )?;
        one(
            "prism_object_store_bytes",
            "Bytes of object values held, by tier",
            vec![
                (
                    labels(&[("tier", "memory")]),
                    g.store.bytes_in_memory as f64,
                ),
                (labels(&[("tier", "spilled")]), g.store.bytes_spilled as f64),
            ],
        )?;
        if let Some((buffers, bytes)) = g.gpu {
            one(
                "prism_gpu_buffers",
                "GPU buffers alive in instances",
                vec![(Labels::new(), buffers as f64)],
            )?;
            one(
                "prism_gpu_memory_bytes",
                "Bytes of GPU buffers alive in instances",
                vec![(Labels::new(), bytes as f64)],
            )?;
        }
        if let Some(alive) = g.nodes_alive {
            one(
                "prism_nodes_alive",
                "Nodes alive in the cluster (head only)",
                vec![(Labels::new(), alive as f64)],
            )?;
            let m = &self.metrics;
            let mut c = e.encode_descriptor(
                "prism_node_heartbeats",
                "Heartbeats the head received",
                None,
                MetricType::Counter,
            )?;
            counter(&mut c, &Labels::new(), m.heartbeats.load(Ordering::Relaxed))?;
            let mut c = e.encode_descriptor(
                "prism_node_deaths",
                "Nodes the head declared dead",
                None,
                MetricType::Counter,
            )?;
            counter(
                &mut c,
                &Labels::new(),
                m.node_deaths.load(Ordering::Relaxed),
            )?;
            let mut c = e.encode_descriptor(
                "prism_api_calls",
                "API calls, by method and gRPC status code",
                None,
                MetricType::Counter,
            )?;
            let calls = m.api_calls.locked().clone();
            for ((method, code), n) in calls {
                counter(&mut c, &labels(&[("method", &method), ("code", &code)]), n)?;
            }
        }
        {
            let mut c = e.encode_descriptor(
                "prism_object_store_pulled_objects",
                "Objects copied here from other nodes' stores",
                None,
                MetricType::Counter,
            )?;
            counter(&mut c, &Labels::new(), g.pulled.0)?;
            let mut c = e.encode_descriptor(
                "prism_object_store_pulled_bytes",
                "Bytes of objects copied here from other nodes' stores",
                None,
                MetricType::Counter,
            )?;
            counter(&mut c, &Labels::new(), g.pulled.1)?;
        }
        Ok(())
    }
}

impl Collector for View {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), Error> {
        self.tenant_series(&mut encoder)?;
        self.guest_series(&mut encoder)?;
        if self.scope == Scope::All {
            self.node_series(&mut encoder)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::guest::Origin;
    use prism_abi::ErrorKind;
    use prism_abi::metrics::{MetricOp, MetricUpdate};
    use std::time::Duration;

    fn node() -> Arc<NodeMetrics> {
        let m = NodeMetrics::new(true, 100);
        for (tenant, function) in [("acme", "resize"), ("globex", "fold\"}\nfake 1")] {
            let t = m.tenant(&TenantId::new(tenant)).unwrap();
            let s = t.tasks.get(function);
            s.ended(Ok(()));
            s.ended(Err(ErrorKind::Panic));
            s.run.observe(Duration::from_millis(3));
            t.instance(Some(Duration::from_micros(40)));
            t.instance(None);
            let origin = Origin {
                tenant: t.tenant(),
                namespace: "ns",
                job: "j",
            };
            let update = MetricUpdate {
                op: MetricOp::CounterAdd,
                name: "failed_withdrawals".into(),
                labels: vec![("account".into(), "a\"b".into())],
                value: 2.0,
            };
            m.guest.record(origin, &update).unwrap();
        }
        m.heartbeats.fetch_add(3, Ordering::Relaxed);
        m.api_call("/prism.v1.Jobs/Submit", "0");
        m
    }

    /// Records 1 into guest metric `name` of `tenant` with `op`.
    fn record_guest(m: &NodeMetrics, tenant: &str, name: &str, op: MetricOp) {
        let t = TenantId::new(tenant);
        let origin = Origin {
            tenant: &t,
            namespace: "ns",
            job: "j",
        };
        let update = MetricUpdate {
            op,
            name: name.into(),
            labels: vec![],
            value: 1.0,
        };
        m.guest.record(origin, &update).unwrap();
    }

    fn gauges() -> NodeGauges {
        NodeGauges {
            resources: vec![("cpus".into(), 2.0, 1.5)],
            tenants: vec![TenantGauges {
                tenant: TenantId::new("acme"),
                queued_tasks: 4,
                usage: vec![("cpus", 0.5, Some(1.0)), ("actors", 1.0, None)],
            }],
            nodes_alive: Some(2),
            ..NodeGauges::default()
        }
    }

    #[test]
    fn a_tenant_sees_only_its_own_series() {
        let text = node().render(&Scope::Tenant(TenantId::new("acme")), gauges());
        assert!(
            text.contains(
                "prism_tasks_total{tenant=\"acme\",function=\"resize\",outcome=\"ok\"} 1"
            )
        );
        assert!(text.contains("outcome=\"panic\"} 1"));
        assert!(
            text.contains(
                "prism_task_run_seconds_bucket{le=\"0.005\",tenant=\"acme\",function=\"resize\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("prism_instances_total{tenant=\"acme\",kind=\"fresh\"} 1"));
        assert!(text.contains("prism_tenant_queued_tasks{tenant=\"acme\"} 4"));
        assert!(text.contains("prism_tenant_quota{tenant=\"acme\",resource=\"cpus\"} 1.0"));
        assert!(!text.contains("prism_tenant_quota{tenant=\"acme\",resource=\"actors\""));
        assert!(text.contains("prism_guest_failed_withdrawals_total{"));
        assert!(!text.contains("globex"), "{text}");
        assert!(!text.contains("prism_node_resources"), "{text}");
        assert!(!text.contains("prism_api_calls"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn a_cluster_admin_sees_every_series_and_guest_text_stays_inside_its_quotes() {
        let text = node().render(&Scope::All, gauges());
        assert!(text.contains("tenant=\"globex\""));
        assert!(text.contains("function=\"fold\\\"}\\nfake 1\""), "{text}");
        assert!(!text.lines().any(|l| l.starts_with("fake")), "{text}");
        assert!(text.contains("account=\"a\\\"b\""));
        assert!(text.contains("prism_node_resources{resource=\"cpus\"} 2.0"));
        assert!(text.contains("prism_node_heartbeats_total 3"));
        assert!(
            text.contains("prism_api_calls_total{method=\"/prism.v1.Jobs/Submit\",code=\"0\"} 1")
        );
        // One family per name, even with two tenants.
        assert_eq!(
            text.matches("# TYPE prism_guest_failed_withdrawals counter")
                .count(),
            1
        );
    }

    #[test]
    fn one_name_of_two_kinds_in_two_tenants_renders_as_two_families() {
        let m = NodeMetrics::new(true, 10);
        record_guest(&m, "a", "x", MetricOp::CounterAdd);
        record_guest(&m, "b", "x", MetricOp::GaugeSet);
        let all = m.render(&Scope::All, NodeGauges::default());
        assert!(
            all.contains("# TYPE prism_guest_x_counter counter"),
            "{all}"
        );
        assert!(all.contains("# TYPE prism_guest_x_gauge gauge"), "{all}");
        let b = m.render(&Scope::Tenant(TenantId::new("b")), NodeGauges::default());
        assert!(b.contains("# TYPE prism_guest_x gauge"), "{b}");
    }

    #[test]
    fn every_name_is_one_family_whatever_tenants_use_it() {
        let m = NodeMetrics::new(true, 10);
        record_guest(&m, "a", "x", MetricOp::CounterAdd);
        record_guest(&m, "a", "y", MetricOp::CounterAdd);
        record_guest(&m, "b", "x", MetricOp::CounterAdd);
        // Renamed for a clash, onto a name another tenant uses.
        record_guest(&m, "c", "z", MetricOp::CounterAdd);
        record_guest(&m, "d", "z", MetricOp::GaugeSet);
        record_guest(&m, "e", "z_gauge", MetricOp::CounterAdd);
        let all = m.render(&Scope::All, NodeGauges::default());
        let types: Vec<&str> = all.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let mut unique = types.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(types.len(), unique.len(), "{all}");
        assert!(all.contains("prism_guest_x_total{job_id=\"j\",namespace=\"ns\",tenant=\"a\"} 1"));
        assert!(all.contains("prism_guest_x_total{job_id=\"j\",namespace=\"ns\",tenant=\"b\"} 1"));
        assert!(all.contains("# TYPE prism_guest_z_gauge gauge"), "{all}");
        assert!(
            all.contains("# TYPE prism_guest_z_gauge_counter counter"),
            "{all}"
        );
    }

    #[test]
    fn with_recording_off_no_tenant_gets_series() {
        let m = NodeMetrics::new(false, 10);
        assert!(m.tenant(&TenantId::new("a")).is_none());
    }
}
