//! The serving figures of `prism bench`: a load generator (keep-alive
//! HTTPS connections, a fixed count of requests each) against no-op
//! function and class deployments behind the ingress, on the same
//! embedded cluster: requests/s and latency at concurrency 1 and 64, and
//! the first request to a deployment scaled to zero.

use crate::head::EmbeddedCluster;
use crate::serve::client::HttpsClient;
use crate::serve::{AppConfig, Apps, Ingress};
use serde_json::{Map, Value, json};
use std::time::Instant;

/// What one load run measured.
pub(super) struct Load {
    pub per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// An ingress to load: its address, the name its certificate is valid
/// for, the CA that signed it, and the token requests carry.
pub(super) struct Endpoint {
    pub address: String,
    pub name: String,
    pub ca: Vec<u8>,
    pub token: Option<String>,
}

impl Endpoint {
    /// The ingress at `address` with a certificate for its host, no
    /// token.
    fn local(address: &str, ca: &[u8]) -> Endpoint {
        Endpoint {
            address: address.to_string(),
            name: address
                .rsplit_once(':')
                .map_or(address, |(host, _)| host)
                .to_string(),
            ca: ca.to_vec(),
            token: None,
        }
    }

    pub(super) async fn connect(&self) -> anyhow::Result<HttpsClient> {
        Ok(HttpsClient::connect_named(&self.address, &self.name, &self.ca, false).await?)
    }
}

/// `total` requests for `path` over `concurrency` connections, each
/// sending its share one after another.
pub(super) async fn load(
    endpoint: &Endpoint,
    path: &str,
    concurrency: usize,
    total: usize,
) -> anyhow::Result<Load> {
    let mut clients = Vec::new();
    for _ in 0..concurrency {
        let mut client = endpoint.connect().await?;
        // Warm the connection, the replicas and their instances.
        for _ in 0..5 {
            client.get(path, endpoint.token.as_deref()).await?;
        }
        clients.push(client);
    }
    let each = total / concurrency;
    let started = Instant::now();
    let runs: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let path = path.to_string();
            let token = endpoint.token.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(each);
                for _ in 0..each {
                    let sent = Instant::now();
                    let response = client.get(&path, token.as_deref()).await?;
                    anyhow::ensure!(
                        response.status == 200,
                        "{path}: status {} ({})",
                        response.status,
                        response.text()
                    );
                    latencies.push(sent.elapsed().as_micros() as u64);
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    for run in runs {
        latencies.extend(run.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Ok(Load {
        per_s: latencies.len() as f64 / seconds,
        p50_us: at(0.50) as f64,
        p99_us: at(0.99) as f64,
    })
}

/// A deployment that scales to zero as soon as it is idle.
pub(super) static ZERO: std::sync::LazyLock<Value> = std::sync::LazyLock::new(
    || json!({"min_replicas": 0, "max_replicas": 1, "upscale_delay_ms": 0, "downscale_delay_ms": 0}),
);

/// The median time of the first request to `path` (a deployment at zero
/// replicas) over `rounds`, waiting for it to return to zero in between.
async fn cold_start_ms(
    apps: &Apps,
    address: &str,
    ca: &[u8],
    deployment: &str,
    rounds: usize,
) -> anyhow::Result<f64> {
    let tenant = crate::security::JobGrant::local().tenant.clone();
    let mut client = Endpoint::local(address, ca).connect().await?;
    let mut times = Vec::new();
    for _ in 0..rounds {
        // Wait for zero replicas.
        loop {
            let app = apps
                .get(&tenant, "bench")
                .ok_or_else(|| anyhow::anyhow!("the bench app vanished"))?;
            let d = app
                .deployments
                .iter()
                .find(|d| d.config.name == deployment)
                .ok_or_else(|| anyhow::anyhow!("no deployment {deployment}"))?;
            if d.replicas.replicas().is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let sent = Instant::now();
        let response = client.get(&format!("/{deployment}"), None).await?;
        anyhow::ensure!(response.status == 200, "{deployment}: {}", response.status);
        times.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// The bench's application: no-op function and class deployments, two
/// replicas each, and two that scale to zero.
pub(super) fn bench_app() -> Value {
    json!({
        "name": "bench",
        "module": "bench.wasm",
        "deployments": [
            {"name": "fn", "function": "http_noop", "num_replicas": 2,
             "max_ongoing_requests": 64, "max_queued_requests": 1000},
            {"name": "class", "class": "HttpNoop", "num_replicas": 2,
             "max_ongoing_requests": 64, "max_queued_requests": 1000},
            {"name": "cold-fn", "function": "http_noop", "autoscaling": ZERO.clone()},
            {"name": "cold-class", "class": "HttpNoop", "autoscaling": ZERO.clone()}
        ]
    })
}

/// Deploys the bench's no-op deployments, serves them, loads them.
pub(super) async fn figures(
    cluster: &EmbeddedCluster,
    quick: bool,
    figures: &mut Map<String, Value>,
) -> anyhow::Result<()> {
    let module = cluster
        .head()
        .upload_module(bytes::Bytes::from_static(prism_guests::BENCH));
    let apps = Apps::new(cluster.node().clone());
    let config = AppConfig::from_json(&bench_app().to_string())?.validate()?;
    let grant = crate::security::JobGrant::local();
    let namespace = crate::security::tenants::NamespaceRef::new(&grant.tenant, "default");
    apps.deploy(namespace, grant, config, module, None)
        .await
        .map_err(|e| anyhow::anyhow!("deploy: {e}"))?;
    let (tls, ca) = super::serve::throwaway_tls()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let ingress = Ingress::new(apps.clone(), None);
    let served = tokio::spawn(ingress.serve(listener, tls, async move {
        let _ = stop_rx.await;
    }));
    let (c1, c64) = if quick {
        (1_000, 10_000)
    } else {
        (5_000, 50_000)
    };
    let endpoint = Endpoint::local(&address, ca.as_bytes());
    for (name, path) in [("fn", "/fn"), ("class", "/class")] {
        let one = load(&endpoint, path, 1, c1).await?;
        figures.insert(format!("serve_{name}_c1_per_s"), json!(one.per_s.round()));
        figures.insert(format!("serve_{name}_c1_p50_us"), json!(one.p50_us));
        let many = load(&endpoint, path, 64, c64).await?;
        figures.insert(format!("serve_{name}_c64_per_s"), json!(many.per_s.round()));
        figures.insert(
            format!("serve_{name}_c64_p99_ms"),
            json!(super::bench::round2(many.p99_us / 1000.0)),
        );
    }
    let rounds = if quick { 5 } else { 11 };
    for (figure, deployment) in [
        ("serve_cold_start_fn_ms", "cold-fn"),
        ("serve_cold_start_class_ms", "cold-class"),
    ] {
        let ms = cold_start_ms(&apps, &address, ca.as_bytes(), deployment, rounds).await?;
        figures.insert(figure.into(), json!(super::bench::round2(ms)));
    }
    // Every request was answered by a handler, none refused on the way.
    let app = apps
        .get(&crate::security::JobGrant::local().tenant, "bench")
        .ok_or_else(|| anyhow::anyhow!("the bench app vanished"))?;
    for d in app
        .deployments
        .iter()
        .filter(|d| !d.config.name.starts_with("cold"))
    {
        let answered = d
            .counters
            .answered
            .load(std::sync::atomic::Ordering::Relaxed);
        let sent = (c1 + 5) + (c64 / 64) * 64 + 64 * 5;
        anyhow::ensure!(
            answered as usize == sent,
            "deployment {}: {answered} of {sent} requests answered by the handler",
            d.config.name
        );
    }
    let _ = stop_tx.send(());
    let _ = served.await;
    apps.stop_all().await;
    Ok(())
}
