//! A tiny feature store: a detached, named actor that outlives the job that
//! created it. One job registers features and aggregations; a later job
//! finds the store by name and queries it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How an aggregation reduces a feature's values.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Reduce {
    Mean,
    Max,
}

/// The store: features (named series of numbers) and aggregations over them.
#[prism::actor]
pub struct FeatureStore {
    features: BTreeMap<String, Vec<f64>>,
    aggregations: BTreeMap<String, (String, Reduce)>,
}

#[prism::actor]
impl FeatureStore {
    fn new() -> Self {
        FeatureStore {
            features: BTreeMap::new(),
            aggregations: BTreeMap::new(),
        }
    }

    /// Adds values to a feature; returns how many it now has.
    fn register(&mut self, feature: String, values: Vec<f64>) -> usize {
        let series = self.features.entry(feature).or_default();
        series.extend(values);
        series.len()
    }

    /// Defines a named aggregation over a registered feature.
    fn define(&mut self, name: String, feature: String, reduce: Reduce) -> Result<(), String> {
        if !self.features.contains_key(&feature) {
            return Err(format!("unknown feature {feature:?}"));
        }
        self.aggregations.insert(name, (feature, reduce));
        Ok(())
    }

    /// Evaluates an aggregation.
    fn query(&self, name: String) -> Result<f64, String> {
        let (feature, reduce) = self
            .aggregations
            .get(&name)
            .ok_or(format!("unknown aggregation {name:?}"))?;
        let values = &self.features[feature];
        if values.is_empty() {
            return Err(format!("feature {feature:?} has no values"));
        }
        Ok(match reduce {
            Reduce::Mean => values.iter().sum::<f64>() / values.len() as f64,
            Reduce::Max => values.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
        })
    }

    /// Registered features.
    fn features(&self) -> Vec<String> {
        self.features.keys().cloned().collect()
    }
}

/// Stage 1: creates (or finds) the detached store `tinystore` and fills it.
#[prism::main]
fn setup() -> prism::Result<Vec<String>> {
    let store = FeatureStore::options()
        .name("tinystore")
        .detached()
        .get_if_exists()
        .remote()?;
    let latency: Vec<f64> = (1..=100).map(|i| i as f64).collect();
    prism::get(&store.register("latency_ms".to_string(), latency).remote())?;
    prism::get(
        &store
            .register("errors".to_string(), vec![0.0, 2.0, 1.0, 5.0])
            .remote(),
    )?;
    prism::get(
        &store
            .define(
                "latency_mean".to_string(),
                "latency_ms".to_string(),
                Reduce::Mean,
            )
            .remote(),
    )?;
    prism::get(
        &store
            .define(
                "latency_max".to_string(),
                "latency_ms".to_string(),
                Reduce::Max,
            )
            .remote(),
    )?;
    prism::get(
        &store
            .define("errors_max".to_string(), "errors".to_string(), Reduce::Max)
            .remote(),
    )?;
    prism::get(&store.features().remote())
}

/// What stage 2 returns.
#[derive(Serialize)]
struct Answers {
    latency_mean: f64,
    latency_max: f64,
    errors_max: f64,
    unknown: String,
}

/// Stage 2, in a later job: finds the store by name and queries it.
#[prism::main]
fn query() -> prism::Result<Answers> {
    let store = prism::get_actor::<FeatureStore>("tinystore")?;
    let unknown = match prism::get(&store.query("p99".to_string()).remote()) {
        Ok(v) => format!("unexpected {v}"),
        Err(e) => e.to_string(),
    };
    Ok(Answers {
        latency_mean: prism::get(&store.query("latency_mean".to_string()).remote())?,
        latency_max: prism::get(&store.query("latency_max".to_string()).remote())?,
        errors_max: prism::get(&store.query("errors_max".to_string()).remote())?,
        unknown,
    })
}

/// Stage 3: kills the store (it would otherwise live as long as the node).
#[prism::main]
fn teardown() -> prism::Result<bool> {
    let store = prism::get_actor::<FeatureStore>("tinystore")?;
    prism::kill(&store)?;
    Ok(prism::get_actor::<FeatureStore>("tinystore").is_err())
}
