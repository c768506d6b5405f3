//! An HTTPS ingress on a worker node (`prism start --join … --http-listen`):
//! it routes straight to replicas on any node with the head's token,
//! policy and rate checks, wakes deployments at zero, and follows
//! redeploys and deletes without a failed request.

use super::{deploy, json_of, member};
use crate::procs::{
    HeadProcess, Process, admin_token, client, init, start_head_with, start_worker,
};
use prism_host::security::ClusterFiles;
use prism_host::serve::client::{ClientResponse, HttpsClient};
use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn head_with_ingress(files: &ClusterFiles) -> HeadProcess {
    start_head_with(
        files.dir(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--cpus",
            "1",
            "--no-gpus",
            "--heartbeat-ms",
            "200",
        ],
    )
}

/// A worker serving HTTP, and the name its certificate is valid for.
async fn worker_with_ingress(
    dir: &std::path::Path,
    head: &HeadProcess,
    files: &ClusterFiles,
) -> (Process, String) {
    let mut admin = client(head, files, &admin_token(files)).await;
    let token = admin.create_join_token(60).await.unwrap().token;
    let worker = start_worker(
        dir,
        &head.address,
        &files.ca_cert(),
        &token,
        &["--cpus", "2", "--no-gpus", "--http-listen", "127.0.0.1:0"],
    )
    .expect("the worker joins");
    let node_id = worker
        .line
        .strip_prefix("prism worker ")
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the worker names itself")
        .to_string();
    // The head places replicas only on nodes it has heard from.
    loop {
        let nodes = admin.status().await.unwrap().nodes;
        if nodes
            .iter()
            .any(|n| n.node_id == node_id && n.state == "alive")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (worker, format!("{node_id}.node.prism"))
}

async fn node_https(
    worker: &Process,
    name: &str,
    files: &ClusterFiles,
    http2: bool,
) -> HttpsClient {
    let ca = std::fs::read(files.ca_cert()).unwrap();
    HttpsClient::connect_named(&worker.http_address(), name, &ca, http2)
        .await
        .expect("connects to the node's ingress over TLS")
}

/// `path` once the node's copy of the applications routes it (a sync
/// after the deploy).
async fn once_routed(c: &mut HttpsClient, path: &str, token: &str) -> ClientResponse {
    let started = Instant::now();
    loop {
        let r = c.get(path, Some(token)).await.unwrap();
        if r.status != 404 || started.elapsed() > Duration::from_secs(10) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workers_ingress_routes_to_replicas_on_any_node_with_the_heads_checks() {
    let dir = tempfile::tempdir().unwrap();
    let files = init(&dir.path().join("state"));
    let head = head_with_ingress(&files);
    let (worker, name) = worker_with_ingress(&dir.path().join("w"), &head, &files).await;
    let mut admin = client(&head, &files, &admin_token(&files)).await;
    admin.create_tenant("acme", 1.0, "").await.unwrap();
    admin.create_tenant("zeta", 1.0, "").await.unwrap();
    let (mut dev, token) = member(&mut admin, &head, &files, "acme", "developer").await;
    let (_, viewer) = member(&mut admin, &head, &files, "acme", "viewer").await;
    let (_, stranger) = member(&mut admin, &head, &files, "zeta", "developer").await;
    deploy(
        &mut dev,
        prism_guests::CONVERTER,
        json!({
            "name": "converter",
            "module": "converter.wasm",
            "deployments": [
                {"name": "Converter", "class": "ConverterReplica", "num_replicas": 3},
                {"name": "routes", "function": "converter_routes", "route_prefix": "/converter"}
            ]
        }),
    )
    .await
    .unwrap();

    // HTTP/2 at the worker: the three replicas (one CPU each, so on both
    // nodes) answer in turn.
    let mut h2 = node_https(&worker, &name, &files, true).await;
    let r = once_routed(&mut h2, "/Converter?temp=100.0&type=CF", &token).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), r#"{"Fahrenheit temperature":212.0}"#);
    assert_eq!(r.header("x-prism-deployment"), Some("Converter"));
    let mut replicas = HashSet::new();
    for _ in 0..6 {
        let r = h2
            .get("/Converter?temp=100&type=FC", Some(&token))
            .await
            .unwrap();
        assert_eq!(r.text(), r#"{"Celsius temperature":37.77777777777778}"#);
        replicas.insert(r.header("x-prism-replica").unwrap().to_string());
    }
    assert_eq!(replicas.len(), 3, "{replicas:?}");
    // HTTP/1.1: the function deployment, run by the worker's scheduler.
    let mut h1 = node_https(&worker, &name, &files, false).await;
    let r = h1
        .get("/converter/fc/?temp=212", Some(&token))
        .await
        .unwrap();
    assert_eq!(r.text(), r#"{"Celsius temperature":100.0}"#);
    // None of it went through the head's ingress or its deployments.
    let status = dev.app("converter").await.unwrap();
    assert_eq!(status.deployments[0].answered, 0, "{status:?}");
    assert_eq!(status.deployments[1].answered, 0, "{status:?}");

    // The head's checks, at the worker.
    let r = h1.get("/Converter?temp=1&type=CF", None).await.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = h1.get("/nowhere", None).await.unwrap();
    assert_eq!(r.status, 401, "no route is revealed without a token");
    let forged = "eyJhbGciOiJFZERTQSJ9.e30.forged";
    let r = h1
        .get("/Converter?temp=1&type=CF", Some(forged))
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let r = h1
        .get("/Converter?temp=1&type=CF", Some(&stranger))
        .await
        .unwrap();
    assert_eq!(r.status, 404, "another tenant's route does not exist");
    let r = h1
        .get("/Converter?temp=1&type=CF", Some(&viewer))
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(h1.get("/nowhere", Some(&token)).await.unwrap().status, 404);

    // A hostile tenant at the same worker: over its 5 requests/s, with
    // forged tokens between, from four connections at once. The
    // well-behaved tenant's requests all succeed meanwhile.
    let (mut zeta, _) = member(&mut admin, &head, &files, "zeta", "developer").await;
    deploy(
        &mut zeta,
        prism_guests::CONVERTER,
        json!({"name": "z", "module": "m", "deployments": [
            {"name": "Z", "class": "ConverterReplica", "route_prefix": "/zeta"}]}),
    )
    .await
    .unwrap();
    admin
        .set_quotas("zeta", r#"{"requests_per_second": 5}"#, 1.0)
        .await
        .unwrap();
    let mut z = node_https(&worker, &name, &files, true).await;
    assert_eq!(
        once_routed(&mut z, "/zeta?temp=1&type=CF", &stranger)
            .await
            .status,
        200
    );
    let flood: Vec<_> = (0..4)
        .map(|_| {
            let address = worker.http_address();
            let ca = std::fs::read(files.ca_cert()).unwrap();
            let (stranger, name) = (stranger.clone(), name.clone());
            tokio::spawn(async move {
                let mut c = HttpsClient::connect_named(&address, &name, &ca, true)
                    .await
                    .unwrap();
                let mut statuses = Vec::new();
                let started = Instant::now();
                let mut i = 0u32;
                while started.elapsed() < Duration::from_millis(1500) {
                    i += 1;
                    let token = if i.is_multiple_of(3) {
                        format!("eyJhbGciOiJFZERTQSJ9.e30.{i}")
                    } else {
                        stranger.clone()
                    };
                    statuses.push(
                        c.get("/zeta?temp=1&type=CF", Some(&token))
                            .await
                            .unwrap()
                            .status,
                    );
                }
                statuses
            })
        })
        .collect();
    for _ in 0..30 {
        let r = h1
            .get("/Converter?temp=100&type=CF", Some(&token))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let mut hostile = Vec::new();
    for f in flood {
        hostile.extend(f.await.unwrap());
    }
    assert!(
        hostile.iter().all(|s| [200, 401, 429].contains(s)),
        "{hostile:?}"
    );
    assert!(hostile.contains(&429) && hostile.contains(&401));
    let admitted = hostile.iter().filter(|s| **s == 200).count();
    assert!(admitted <= 5 + 5 * 2 + 4, "{admitted} admitted");

    // A requests/s quota holds over both ingresses together: 10/s.
    admin
        .set_quotas("acme", r#"{"requests_per_second": 10}"#, 1.0)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut at_head = HttpsClient::connect(
        &head.http_address(),
        &std::fs::read(files.ca_cert()).unwrap(),
        true,
    )
    .await
    .unwrap();
    let started = Instant::now();
    let (mut ok, mut limited) = (0, 0);
    for i in 0..80 {
        let c = if i % 2 == 0 { &mut h2 } else { &mut at_head };
        let r = c
            .get("/Converter?temp=1&type=CF", Some(&token))
            .await
            .unwrap();
        match r.status {
            200 => ok += 1,
            429 => {
                assert_eq!(r.header("retry-after"), Some("1"));
                limited += 1;
            }
            other => panic!("{other}: {}", r.text()),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    assert!(limited > 0, "{ok} answered in {seconds:.2} s");
    // A full bucket (10) plus the rate over the time taken, and a lease
    // a node may not have used up.
    let bound = 10.0 + 10.0 * seconds + 4.0;
    assert!(f64::from(ok) <= bound, "{ok} answered in {seconds:.2} s");
    admin.set_quotas("acme", "{}", 1.0).await.unwrap();

    // Deleted: gone from the worker's ingress within a sync or two.
    dev.delete_app("converter").await.unwrap();
    let started = Instant::now();
    loop {
        let r = h2
            .get("/Converter?temp=1&type=CF", Some(&token))
            .await
            .unwrap();
        if r.status == 404 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{}", r.status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workers_ingress_wakes_deployments_at_zero_and_follows_redeploys() {
    let dir = tempfile::tempdir().unwrap();
    let files = init(&dir.path().join("state"));
    let head = head_with_ingress(&files);
    let (worker, name) = worker_with_ingress(&dir.path().join("w"), &head, &files).await;
    let mut admin = client(&head, &files, &admin_token(&files)).await;
    admin.create_tenant("acme", 1.0, "").await.unwrap();
    let (mut dev, token) = member(&mut admin, &head, &files, "acme", "developer").await;
    let policy = json!({"min_replicas": 0, "max_replicas": 3, "target_ongoing_requests": 1,
                        "upscale_delay_ms": 0, "downscale_delay_ms": 60000});
    let app = |init: i64| {
        json!({"name": "elastic", "module": "m", "deployments": [
            {"name": "slow", "function": "http_sleep", "max_ongoing_requests": 1,
             "autoscaling": policy},
            {"name": "counter", "class": "CountingReplica", "init_args": [init],
             "autoscaling": policy}
        ]})
    };
    let deployed = deploy(&mut dev, prism_guests::TESTKIT, app(0))
        .await
        .unwrap();
    assert!(deployed.deployments.iter().all(|d| d.replicas.is_empty()));

    // A request at the worker to a class deployment at zero: the head
    // hears of it in the worker's next sync and starts a replica.
    let mut h = node_https(&worker, &name, &files, true).await;
    let r = once_routed(&mut h, "/counter", &token).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(json_of(&r)["count"], 1);
    // Six slow requests at once at the worker: the head's autoscaler
    // counts the worker's load and grows the function deployment.
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let address = worker.http_address();
            let ca = std::fs::read(files.ca_cert()).unwrap();
            let (token, name) = (token.clone(), name.clone());
            tokio::spawn(async move {
                let mut c = HttpsClient::connect_named(&address, &name, &ca, false)
                    .await
                    .unwrap();
                c.get("/slow?ms=700", Some(&token)).await.unwrap().status
            })
        })
        .collect();
    let mut peak = 0;
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = dev.app("elastic").await.unwrap();
        let slow = status
            .deployments
            .iter()
            .find(|d| d.name == "slow")
            .unwrap();
        peak = peak.max(slow.replicas.len());
    }
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    assert!(
        peak >= 2,
        "the worker's load did not scale the deployment: {peak}"
    );

    // Redeployed twice while a client calls the worker: not one request
    // fails, and the new version's replicas answer (its count starts at
    // 100).
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let caller = {
        let address = worker.http_address();
        let ca = std::fs::read(files.ca_cert()).unwrap();
        let (token, name) = (token.clone(), name.clone());
        tokio::spawn(async move {
            let mut c = HttpsClient::connect_named(&address, &name, &ca, true)
                .await
                .unwrap();
            let mut answers = Vec::new();
            while stopped.try_recv().is_err() {
                let r = c.get("/counter", Some(&token)).await.unwrap();
                answers.push((r.status, r.text()));
            }
            answers
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    deploy(&mut dev, prism_guests::TESTKIT, app(100))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    deploy(&mut dev, prism_guests::TESTKIT, app(1000))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let _ = stop.send(());
    let answers = caller.await.unwrap();
    assert!(answers.len() > 20, "{}", answers.len());
    let failed: Vec<_> = answers.iter().filter(|(s, _)| *s != 200).collect();
    assert!(failed.is_empty(), "{failed:?}");
    let last = serde_json::from_str::<serde_json::Value>(&answers.last().unwrap().1).unwrap();
    assert!(last["count"].as_i64().unwrap() > 1000, "{last}");
}
