//! The serving step of `prism demo`: the converter application exactly
//! as `guest-examples/converter/app.yaml` configures it, deployed on the
//! demo's embedded cluster and called over HTTPS (HTTP/2), as a client
//! would.

use crate::head::EmbeddedCluster;
use crate::ids::ModuleHash;
use crate::serve::client::HttpsClient;
use crate::serve::{AppConfig, Apps, Ingress};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The shipped application configs.
const APP_YAML: &str = include_str!("../../../guest-examples/converter/app.yaml");
const MLP_YAML: &str = include_str!("../../../guest-examples/gpu-inference/app.yaml");

/// Runs one serving step and prints its line; 1 if it failed, else 0.
pub(super) async fn report(
    label: &str,
    step: impl std::future::Future<Output = Result<String, String>>,
) -> anyhow::Result<u32> {
    let started = std::time::Instant::now();
    let (mark, text, failed) = match step.await {
        Ok(text) => ("ok", text, 0),
        Err(text) => ("FAILED", text, 1),
    };
    let ms = started.elapsed().as_secs_f64() * 1e3;
    // The text quotes handlers' answers.
    let text = super::output::escape_terminal(&text);
    outln!("{label:<24} {ms:>7.1} ms  {mark:<6} {text}")?;
    Ok(failed)
}

/// Deploys the converter, sends it requests, checks the answers; a
/// summary, or what went wrong.
pub(super) async fn serve_converter(cluster: &EmbeddedCluster) -> Result<String, String> {
    serve(
        cluster,
        APP_YAML,
        prism_guests::CONVERTER,
        converter_requests,
    )
    .await
}

/// Deploys the GPU model (two replicas on a quarter GPU each) and asks
/// it for predictions.
pub(super) async fn serve_model(cluster: &EmbeddedCluster) -> Result<String, String> {
    serve(
        cluster,
        MLP_YAML,
        prism_guests::GPU_INFERENCE,
        model_requests,
    )
    .await
}

/// An application deployed behind an ingress, for the requests of one
/// demo step.
struct Served {
    address: String,
    ca: String,
    apps: Arc<Apps>,
    config: AppConfig,
    module: ModuleHash,
}

impl Served {
    /// Deploys `config` in place of the running application.
    async fn redeploy(&self, config: AppConfig) -> Result<(), String> {
        let grant = crate::security::JobGrant::local();
        let namespace =
            crate::security::tenants::NamespaceRef::new(&grant.tenant, &config.namespace);
        self.apps
            .deploy(namespace, grant, config, self.module, None)
            .await
            .map(|_| ())
            .map_err(|e| format!("redeploy: {e}"))
    }
}

/// Deploys `yaml` with `module` behind an ingress, runs `requests`
/// against it, and stops it.
async fn serve<F: std::future::Future<Output = Result<String, String>>>(
    cluster: &EmbeddedCluster,
    yaml: &str,
    module: &'static [u8],
    requests: impl FnOnce(Arc<Served>) -> F,
) -> Result<String, String> {
    let config = AppConfig::from_yaml(yaml)
        .and_then(AppConfig::validate)
        .map_err(|e| e.to_string())?;
    let module = cluster
        .head()
        .upload_module(bytes::Bytes::from_static(module));
    let apps = Apps::new(cluster.node().clone());
    let grant = crate::security::JobGrant::local();
    let namespace = crate::security::tenants::NamespaceRef::new(&grant.tenant, &config.namespace);
    apps.deploy(namespace, grant, config.clone(), module, None)
        .await
        .map_err(|e| format!("deploy: {e}"))?;
    let (tls, ca) = Ingress::self_signed().map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let address = listener
        .local_addr()
        .map_err(|e| e.to_string())?
        .to_string();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let ingress = tokio::spawn(
        Ingress::new(apps.clone(), None).serve(listener, tls, async {
            let _ = stop_rx.await;
        }),
    );
    let served = Arc::new(Served {
        address,
        ca,
        apps: apps.clone(),
        config,
        module,
    });
    let checked = requests(served).await;
    let _ = stop_tx.send(());
    let _ = ingress.await;
    apps.stop_all().await;
    checked
}

async fn model_requests(served: Arc<Served>) -> Result<String, String> {
    let mut client = HttpsClient::connect(&served.address, served.ca.as_bytes(), true)
        .await
        .map_err(|e| e.to_string())?;
    let x: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
    let body = serde_json::json!({ "x": x }).to_string();
    let mut replicas = BTreeSet::new();
    let mut classes = BTreeSet::new();
    for _ in 0..4 {
        let r = client
            .send("POST", "/mlp", &[], body.clone())
            .await
            .map_err(|e| e.to_string())?;
        let v: serde_json::Value = serde_json::from_slice(&r.body)
            .map_err(|e| format!("/mlp answered {} {}: {e}", r.status, r.text()))?;
        classes.insert(v["class"].to_string());
        replicas.insert(r.header("x-prism-replica").unwrap_or("?").to_string());
    }
    if classes.len() != 1 || replicas.len() != 2 {
        return Err(format!(
            "classes {classes:?} from replicas {replicas:?}: expected one class from two replicas"
        ));
    }
    Ok(format!(
        "HTTPS: 4 predictions (class {}) from 2 replicas on ¼ GPU each",
        classes.into_iter().next().unwrap_or_default()
    ))
}

async fn converter_requests(served: Arc<Served>) -> Result<String, String> {
    let (address, ca) = (served.address.as_str(), served.ca.as_bytes());
    let mut client = HttpsClient::connect(address, ca, true)
        .await
        .map_err(|e| e.to_string())?;
    let mut replicas = BTreeSet::new();
    for _ in 0..3 {
        let r = client
            .get("/Converter?temp=100&type=CF", None)
            .await
            .map_err(|e| e.to_string())?;
        if r.text() != r#"{"Fahrenheit temperature":212.0}"# {
            return Err(format!("/Converter answered {} {}", r.status, r.text()));
        }
        replicas.insert(r.header("x-prism-replica").unwrap_or("?").to_string());
    }
    if replicas.len() != 3 {
        return Err(format!("3 requests reached {} replicas", replicas.len()));
    }
    let r = client
        .get("/converter/fc?temp=212", None)
        .await
        .map_err(|e| e.to_string())?;
    if r.text() != r#"{"Celsius temperature":100.0}"# {
        return Err(format!("/converter/fc answered {} {}", r.status, r.text()));
    }
    // Four at once, each on its own connection: gathered into batches.
    let mut batch = Vec::new();
    for i in 0..4 {
        let mut c = HttpsClient::connect(address, ca, true)
            .await
            .map_err(|e| e.to_string())?;
        batch.push(tokio::spawn(async move {
            c.get(&format!("/batch?temp={i}&type=CF"), None).await
        }));
    }
    let mut sizes = BTreeSet::new();
    for call in batch {
        let r = call
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if r.status != 200 {
            return Err(format!("/batch answered {} {}", r.status, r.text()));
        }
        sizes.insert(r.header("x-batch-size").unwrap_or("?").to_string());
    }
    let canary = canary(&served).await?;
    Ok(format!(
        "HTTPS: /Converter answered 100 °C = 212 °F from 3 replicas ({}), /converter/fc 212 °F = 100 °C, 4 requests batched in batches of {}; {canary}",
        replicas.into_iter().collect::<Vec<_>>().join(", "),
        sizes.into_iter().collect::<Vec<_>>().join("/")
    ))
}

/// The canary: 10 requests to `/canary` split 3/7 between the class and
/// function versions, then a redeploy to 100/0 while a client keeps
/// sending, without a failed request.
async fn canary(served: &Served) -> Result<String, String> {
    let mut client = HttpsClient::connect(&served.address, served.ca.as_bytes(), false)
        .await
        .map_err(|e| e.to_string())?;
    let mut by_version: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..10 {
        let r = client
            .get("/canary?temp=100&type=CF", None)
            .await
            .map_err(|e| e.to_string())?;
        if r.status != 200 {
            return Err(format!("/canary answered {} {}", r.status, r.text()));
        }
        let version = r.header("x-prism-deployment").unwrap_or("?").to_string();
        *by_version.entry(version).or_insert(0) += 1;
    }
    if by_version.get("Converter") != Some(&3) || by_version.get("converter-fn") != Some(&7) {
        return Err(format!("the 30/70 split answered {by_version:?}"));
    }
    let mut all_in = served.config.clone();
    for d in &mut all_in.deployments {
        if d.name == "canary" {
            d.split = BTreeMap::from([
                ("Converter".to_string(), 100),
                ("converter-fn".to_string(), 0),
            ]);
        }
    }
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let load = tokio::spawn(async move {
        let mut statuses = Vec::new();
        while stop_rx.try_recv().is_err() {
            match client.get("/canary?temp=0&type=CF", None).await {
                Ok(r) => statuses.push(r.status),
                Err(_) => statuses.push(0),
            }
        }
        statuses
    });
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let redeployed = served.redeploy(all_in).await;
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let _ = stop_tx.send(());
    let statuses = load.await.map_err(|e| e.to_string())?;
    redeployed?;
    let failed = statuses.iter().filter(|s| **s != 200).count();
    if failed > 0 {
        return Err(format!(
            "{failed} of {} requests failed during the redeploy",
            statuses.len()
        ));
    }
    // After the move, every answer comes from the class version.
    let mut client = HttpsClient::connect(&served.address, served.ca.as_bytes(), false)
        .await
        .map_err(|e| e.to_string())?;
    for _ in 0..5 {
        let r = client
            .get("/canary?temp=0&type=CF", None)
            .await
            .map_err(|e| e.to_string())?;
        if r.header("x-prism-deployment") != Some("Converter") {
            return Err(format!(
                "after 100/0, {:?} answered",
                r.header("x-prism-deployment")
            ));
        }
    }
    Ok(format!(
        "/canary split 3/7, then moved to 100/0 while {} requests were sent, none failed",
        statuses.len()
    ))
}
