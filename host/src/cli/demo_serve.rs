//! The serving step of `prism demo`: the converter application exactly
//! as `guest-examples/converter/app.yaml` configures it, deployed on the
//! demo's embedded cluster and called over HTTPS (HTTP/2), as a client
//! would.

use crate::head::EmbeddedCluster;
use crate::serve::client::HttpsClient;
use crate::serve::{AppConfig, Apps, Ingress};
use std::collections::BTreeSet;

/// The shipped application config.
const APP_YAML: &str = include_str!("../../../guest-examples/converter/app.yaml");

/// Deploys the converter, sends it requests, checks the answers; a
/// summary, or what went wrong.
pub(super) async fn serve_converter(cluster: &EmbeddedCluster) -> Result<String, String> {
    let config = AppConfig::from_yaml(APP_YAML)
        .and_then(AppConfig::validate)
        .map_err(|e| e.to_string())?;
    let module = cluster
        .head()
        .upload_module(bytes::Bytes::from_static(prism_guests::CONVERTER));
    let apps = Apps::new(cluster.node().clone());
    let grant = crate::security::JobGrant::local();
    let namespace = crate::security::tenants::NamespaceRef::new(&grant.tenant, &config.namespace);
    apps.deploy(namespace, grant, config, module, None)
        .await
        .map_err(|e| format!("deploy: {e}"))?;
    let (tls, ca) = super::serve::throwaway_tls().map_err(|e| e.to_string())?;
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
    let checked = requests(&address, ca.as_bytes()).await;
    let _ = stop_tx.send(());
    let _ = served.await;
    apps.stop_all().await;
    checked
}

async fn requests(address: &str, ca: &[u8]) -> Result<String, String> {
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
