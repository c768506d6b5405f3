//! Shared helpers: a small embedded cluster and JSON in/out.

use prism_abi::WireError;
use prism_host::cluster::JobOutcome;
use prism_host::config::NodeConfig;
use prism_host::head::EmbeddedCluster;
use serde_json::Value;

/// A node config for tests: `cpus` CPUs and a modest instance pool, so many
/// test clusters fit in one process's address space.
pub fn config(cpus: f64) -> NodeConfig {
    let mut config = NodeConfig {
        cpus,
        ..NodeConfig::default()
    };
    config.runtime.instance_slots = 256;
    config.object_store_capacity = 1 << 30;
    config
}

/// Starts an embedded cluster with `cpus` CPUs.
pub fn cluster(cpus: f64) -> EmbeddedCluster {
    EmbeddedCluster::start(config(cpus)).expect("cluster starts")
}

/// Runs `entry` of `module` with JSON `args`; returns the whole outcome.
pub async fn run_outcome(
    cluster: &EmbeddedCluster,
    module: &[u8],
    entry: &str,
    args: &str,
) -> JobOutcome {
    let args = prism_host::values::json_args(args).expect("valid JSON args");
    cluster.run(module, entry, args).await.expect("job runs")
}

/// Runs `entry` of `module` with JSON `args`; returns the JSON result or the error.
pub async fn run(
    cluster: &EmbeddedCluster,
    module: &[u8],
    entry: &str,
    args: &str,
) -> Result<Value, WireError> {
    run_outcome(cluster, module, entry, args)
        .await
        .result
        .map(|bytes| prism_host::values::msgpack_to_json(&bytes).expect("result is MessagePack"))
}

/// Like [`run`], but the job must succeed.
pub async fn run_ok(cluster: &EmbeddedCluster, module: &[u8], entry: &str, args: &str) -> Value {
    match run(cluster, module, entry, args).await {
        Ok(v) => v,
        Err(e) => panic!("{entry} failed: {e}"),
    }
}
