//! GPUs through wgpu: the examples against the CPU, fractional packing,
//! typed errors, and release of buffers when instances end.
//!
//! These tests need a Vulkan device; on machines without a GPU,
//! `scripts/install-deps.sh` installs Mesa's lavapipe (software Vulkan).
//! They fail, never skip, when none is found.

use crate::support::{config, run_ok};
use prism_guests::{GPU_INFERENCE, GPU_MATMUL, GPU_SAXPY, TESTKIT};
use prism_host::cluster::NodeService;
use prism_host::config::NodeConfig;
use prism_host::head::EmbeddedCluster;
use serde_json::Value;
use std::time::Duration;

/// A node with exactly one GPU (the first adapter) and `budget` bytes of
/// GPU memory per instance.
fn gpu_config(cpus: f64, budget: u64) -> NodeConfig {
    let mut c = config(cpus);
    c.gpu.adapters = vec!["0".into()];
    c.gpu.memory_per_instance = budget;
    c
}

fn gpu_cluster(cpus: f64, budget: u64) -> EmbeddedCluster {
    let c = EmbeddedCluster::start(gpu_config(cpus, budget)).expect("cluster starts");
    assert_eq!(
        c.node().gpu_adapters().len(),
        1,
        "no Vulkan adapter found: run scripts/install-deps.sh (installs Mesa's lavapipe)"
    );
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_examples_match_the_cpu() {
    let c = gpu_cluster(2.0, 512 << 20);

    let saxpy = run_ok(&c, GPU_SAXPY, "main", "[]").await;
    assert_eq!(saxpy["n"], 1 << 20);
    assert_eq!(saxpy["matches_cpu"], true, "{saxpy}");
    assert!(saxpy["max_abs_error"].as_f64().unwrap() < 1e-5, "{saxpy}");

    let matmul = run_ok(&c, GPU_MATMUL, "main", "[]").await;
    assert_eq!(matmul["n"], 256);
    assert_eq!(matmul["matches_cpu"], true, "{matmul}");

    let inference = run_ok(&c, GPU_INFERENCE, "main", "[]").await;
    assert_eq!(inference["predictions"], 100);
    assert_eq!(inference["served"], 100);
    // The weights went to the GPU once, in the constructor.
    assert_eq!(inference["weight_uploads"], 1);
    assert_eq!(inference["matches_cpu"], true, "{inference}");
    assert!(inference["max_abs_error"].as_f64().unwrap() <= 1e-4);
}

/// The largest number of [start, end) windows open at one instant.
fn max_overlap(windows: &[(u64, u64)]) -> usize {
    windows
        .iter()
        .map(|&(start, _)| {
            windows
                .iter()
                .filter(|&&(s, e)| s <= start && start < e)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn overlap_counts_half_open_windows() {
    assert_eq!(max_overlap(&[(0, 10), (10, 20)]), 1);
    assert_eq!(max_overlap(&[(0, 10), (5, 20), (6, 7)]), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarter_gpu_tasks_run_at_most_four_at_once_on_one_device() {
    let c = gpu_cluster(2.0, 64 << 20);
    let v = run_ok(&c, TESTKIT, "gpu_packing", "[8, 0.25, 400]").await;
    let runs = v.as_array().expect("a list of windows");
    assert_eq!(runs.len(), 8);
    let windows: Vec<(u64, u64)> = runs
        .iter()
        .map(|w| {
            // Every task really ran its kernel.
            assert_eq!(w[2], 256, "{w}");
            (w[0].as_u64().unwrap(), w[1].as_u64().unwrap())
        })
        .collect();
    let overlap = max_overlap(&windows);
    assert!(
        overlap <= 4,
        "{overlap} quarter-GPU tasks overlapped: {windows:?}"
    );
    assert!(
        overlap >= 2,
        "quarter-GPU tasks never shared the device: {windows:?}"
    );
}

/// The error a `gpu_case` run reported (null when the call succeeded).
async fn gpu_case(c: &EmbeddedCluster, case: &str, arg: u64, num_gpus: f64) -> Value {
    run_ok(
        c,
        TESTKIT,
        "gpu_case",
        &format!("[{case:?}, {arg}, {num_gpus}]"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_misuse_gets_typed_errors() {
    let c = gpu_cluster(2.0, 1 << 20);

    // A task that reserved no GPU may not dispatch.
    let e = gpu_case(&c, "dispatch", 0, 0.0).await;
    assert_eq!(e["kind"], "not_granted", "{e}");
    assert!(e["message"].as_str().unwrap().contains("num_gpus"), "{e}");
    // With a share it may.
    assert_eq!(gpu_case(&c, "dispatch", 0, 0.25).await, Value::Null);

    // The per-instance budget (1 MiB here) holds per buffer and in sum.
    let e = gpu_case(&c, "allocate", 2 << 20, 0.25).await;
    assert_eq!(e["kind"], "out_of_memory", "{e}");
    assert_eq!(e["budget"], 1 << 20);
    let e = gpu_case(&c, "allocate_twice", 600 << 10, 0.25).await;
    assert_eq!(e["kind"], "out_of_memory", "{e}");
    assert_eq!(e["in_use"], 600 << 10);
    assert_eq!(gpu_case(&c, "allocate", 1 << 20, 0.25).await, Value::Null);

    // Shader errors carry the compiler's message.
    let e = gpu_case(&c, "shader", 0, 0.25).await;
    assert_eq!(e["kind"], "shader", "{e}");
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("1.5"), "{message}");

    // More GPUs than the node has: unschedulable at once; 1.5: malformed.
    let v = run_ok(&c, TESTKIT, "gpu_impossible", "[]").await;
    assert_eq!(v[0][0], "unschedulable", "{v}");
    assert!(v[0][1].as_str().unwrap().contains("GPU"), "{v}");
    assert_eq!(v[1][0], "invalid_argument", "{v}");
    assert!(v[1][1].as_str().unwrap().contains("whole number"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_buffers_are_released_when_their_instance_ends() {
    let c = gpu_cluster(2.0, 64 << 20);
    let node = c.node().clone();

    // A task that never frees its buffers loses them when it returns.
    assert_eq!(gpu_case(&c, "leak", 0, 0.25).await, Value::Null);
    assert_eq!(node.gpu_usage().live_buffers, 0);
    assert_eq!(node.gpu_usage().live_bytes, 0);

    // An actor keeps its buffers across calls, until it ends.
    let v = run_ok(&c, TESTKIT, "gpu_hold", "[0.25, 3, 1024, \"holder\"]").await;
    assert_eq!(v[0], 3);
    assert_eq!(v[1].as_f64().unwrap(), 3.0 * 1024.0 * 1.5);
    assert_eq!(node.gpu_usage().live_buffers, 3);
    assert_eq!(node.gpu_usage().live_bytes, 3 * 4096);
    // Its share stays held meanwhile.
    let status = node.status().await;
    assert!(
        status.available.contains("GPU=0.75"),
        "{}",
        status.available
    );

    assert_eq!(
        run_ok(&c, TESTKIT, "gpu_release_holder", "[\"holder\"]").await,
        true
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while node.gpu_usage().live_buffers > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(node.gpu_usage().live_buffers, 0);
    assert_eq!(node.gpu_usage().live_bytes, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !node.status().await.available.contains("GPU=1") && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(node.status().await.available.contains("GPU=1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpus_can_be_disabled_and_then_nothing_is_offered() {
    let mut cfg = config(2.0);
    cfg.gpu.enabled = false;
    let c = EmbeddedCluster::start(cfg).expect("cluster starts");
    assert!(c.node().gpu_adapters().is_empty());
    let v = run_ok(&c, TESTKIT, "gpu_impossible", "[]").await;
    assert_eq!(v[0][0], "unschedulable", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inference_actor_serves_predictions_over_https_from_gpu_replicas() {
    use prism_host::serve::client::HttpsClient;
    use prism_host::serve::{AppConfig, Apps, Ingress};
    let c = gpu_cluster(2.0, 64 << 20);
    // The shipped config: two replicas, a quarter GPU each.
    let config = AppConfig::from_yaml(include_str!("../../guest-examples/gpu-inference/app.yaml"))
        .and_then(AppConfig::validate)
        .unwrap();
    let module = c
        .head()
        .upload_module(bytes::Bytes::from_static(GPU_INFERENCE));
    let apps = Apps::new(c.node().clone());
    let grant = prism_host::security::JobGrant::local();
    let namespace = prism_host::security::tenants::NamespaceRef::new(&grant.tenant, "default");
    apps.deploy(namespace, grant, config, module, None)
        .await
        .unwrap();
    let (tls, ca) = Ingress::self_signed().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(Ingress::new(apps.clone(), None).serve(listener, tls, std::future::pending()));
    let mut client = HttpsClient::connect(&address, ca.as_bytes(), true)
        .await
        .unwrap();
    let x: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
    let body = serde_json::json!({ "x": x }).to_string();
    let mut replicas = std::collections::HashSet::new();
    let mut first: Option<Value> = None;
    for _ in 0..4 {
        let r = client
            .send("POST", "/mlp", &[], body.clone())
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["y"].as_array().unwrap().len(), 10, "{v}");
        assert!(v["class"].as_u64().unwrap() < 10);
        // Every replica has the same weights: the same answer.
        match &first {
            Some(f) => assert_eq!(f, &v),
            None => first = Some(v),
        }
        replicas.insert(r.header("x-prism-replica").unwrap().to_string());
    }
    assert_eq!(replicas.len(), 2);
    // A malformed input is the handler's 400, not a failure.
    let r = client
        .send("POST", "/mlp", &[], r#"{"x": [1.0, 2.0]}"#)
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("expected 64 inputs"), "{}", r.text());
    apps.stop_all().await;
}
