//! The serving step of `prism demo`: the converter application exactly
//! as `guest-examples/converter/app.yaml` configures it, deployed on the
//! demo's embedded cluster and called over HTTPS (HTTP/2), as a client
//! would.

use crate::head::EmbeddedCluster;
use crate::serve::client::HttpsClient;
use crate::serve::{AppConfig, Apps, Ingress};
use std::collections::BTreeSet;

/// The shipped application configs.
const APP_YAML: &str = include_str!("../../../guest-examples/converter/app.yaml");
const MLP_YAML: &str = include_str!("../../../guest-examples/gpu-inference/app.yaml");

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

/// Deploys `yaml` with `module` behind an ingress, runs `requests`
/// against it, and stops it.
async fn serve<F: std::future::Future<Output = Result<String, String>>>(
    cluster: &EmbeddedCluster,
    yaml: &str,
    module: &'static [u8],
    requests: impl FnOnce(String, String) -> F,
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
    apps.deploy(namespace, grant, config, module, None)
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
    let served = tokio::spawn(
        Ingress::new(apps.clone(), None).serve(listener, tls, async {
            let _ = stop_rx.await;
        }),
    );
    let checked = requests(address, ca).await;
    let _ = stop_tx.send(());
    let _ = served.await;
    apps.stop_all().await;
    checked
}

async fn model_requests(address: String, ca: String) -> Result<String, String> {
    let mut client = HttpsClient::connect(&address, ca.as_bytes(), true)
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

async fn converter_requests(address: String, ca: String) -> Result<String, String> {
    let (address, ca) = (address.as_str(), ca.as_bytes());
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
    Ok(format!(
        "HTTPS: /Converter answered 100 °C = 212 °F from 3 replicas ({}), /converter/fc 212 °F = 100 °C, 4 requests batched in batches of {}",
        replicas.into_iter().collect::<Vec<_>>().join(", "),
        sizes.into_iter().collect::<Vec<_>>().join("/")
    ))
}
