//! Served applications over time: redeploys under load, autoscaling to
//! zero and back, a head killed and restarted, canary splits, batching,
//! the class hooks, handles from guests on every node, and the ingress's
//! bounds.

use super::{deploy, head, https, json_of, member};
use crate::procs::HeadProcess;
use crate::procs::{admin_token, client, init, start_head_with};
use prism_host::security::ClusterFiles;
use prism_host::serve::client::HttpsClient;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redeploy_under_load_fails_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let files = init(&dir.path().join("state"));
    let head = head(&files);
    let mut admin = client(&head, &files, &admin_token(&files)).await;
    admin.create_tenant("acme", 1.0, "").await.unwrap();
    let (mut dev, token) = member(&mut admin, &head, &files, "acme", "developer").await;
    let app = |replicas: u32| {
        json!({"name": "conv", "module": "m", "deployments": [
            {"name": "Converter", "class": "ConverterReplica", "num_replicas": replicas}]})
    };
    let first = deploy(&mut dev, prism_guests::CONVERTER, app(1))
        .await
        .unwrap();
    // A client sends requests, one after another, while the app is
    // redeployed twice.
    let load = keep_calling(&head, &files, &token, "/Converter?temp=0&type=CF");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = deploy(&mut dev, prism_guests::CONVERTER, app(3))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    deploy(&mut dev, prism_guests::CONVERTER, app(2))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answers = load.stop().await;
    let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    let replicas: HashSet<&String> = answers.iter().map(|(_, replica)| replica).collect();
    assert!(statuses.len() > 20, "{}", statuses.len());
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // Requests reached replicas of every version: 1, then 3, then 2.
    assert!(replicas.len() >= 4, "{replicas:?}");
    assert_eq!(second.deployments[0].replicas.len(), 3);
    assert_ne!(
        first.deployments[0].replicas[0].id,
        second.deployments[0].replicas[0].id
    );
    let now = dev.app("conv").await.unwrap();
    assert_eq!(now.deployments[0].replicas.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_scale_with_load_and_down_to_zero() {
    let dir = tempfile::tempdir().unwrap();
    let files = init(&dir.path().join("state"));
    let head = head(&files);
    let mut admin = client(&head, &files, &admin_token(&files)).await;
    admin.create_tenant("acme", 1.0, "").await.unwrap();
    let (mut dev, token) = member(&mut admin, &head, &files, "acme", "developer").await;
    let policy = json!({"min_replicas": 0, "max_replicas": 3, "target_ongoing_requests": 1,
                        "upscale_delay_ms": 0, "downscale_delay_ms": 300});
    let app = deploy(
        &mut dev,
        prism_guests::TESTKIT,
        json!({"name": "elastic", "module": "m", "deployments": [
            {"name": "slow", "function": "http_sleep", "max_ongoing_requests": 1,
             "autoscaling": policy},
            {"name": "counter", "class": "CountingReplica", "init_args": [0],
             "autoscaling": policy}
        ]}),
    )
    .await
    .unwrap();
    // Both start at zero replicas.
    assert!(app.deployments.iter().all(|d| d.replicas.is_empty()));
    let replicas = |app: &prism_client::v1::AppInfo, name: &str| {
        app.deployments
            .iter()
            .find(|d| d.name == name)
            .unwrap()
            .replicas
            .iter()
            .filter(|r| r.up)
            .count()
    };
    // A request to a class deployment at zero starts a replica.
    let mut h = https(&head, &files, true).await;
    let r = h.get("/counter", Some(&token)).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(json_of(&r)["count"], 1);
    assert_eq!(replicas(&dev.app("elastic").await.unwrap(), "counter"), 1);
    // Six slow requests at once on replicas that take one each: the
    // function deployment grows to its maximum, and every request is
    // answered.
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let address = head.http_address();
            let ca = std::fs::read(files.ca_cert()).unwrap();
            let token = token.clone();
            tokio::spawn(async move {
                let mut c = HttpsClient::connect(&address, &ca, false).await.unwrap();
                c.get("/slow?ms=700", Some(&token)).await.unwrap().status
            })
        })
        .collect();
    let mut peak = 0;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(replicas(&dev.app("elastic").await.unwrap(), "slow"));
    }
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    assert_eq!(peak, 3);
    // Idle past the downscale delay: both back to zero.
    let mut idle = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = dev.app("elastic").await.unwrap();
        if now.deployments.iter().all(|d| d.replicas.is_empty()) {
            idle = true;
            break;
        }
    }
    assert!(idle, "{:?}", dev.app("elastic").await.unwrap());
    // And from zero again: a fresh replica (its count starts over).
    let r = h.get("/counter", Some(&token)).await.unwrap();
    assert_eq!(json_of(&r)["count"], 1);
    assert_eq!(h.get("/slow?ms=1", Some(&token)).await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applications_come_back_when_a_killed_head_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let files = init(&dir.path().join("state"));
    let mut first = head(&files);
    let mut admin = client(&first, &files, &admin_token(&files)).await;
    admin.create_tenant("acme", 1.0, "").await.unwrap();
    let (mut dev, token) = member(&mut admin, &first, &files, "acme", "developer").await;
    let converter = json!({"name": "conv", "module": "m", "deployments": [
        {"name": "Converter", "class": "ConverterReplica", "num_replicas": 2}]});
    deploy(&mut dev, prism_guests::CONVERTER, converter)
        .await
        .unwrap();
    let gone = json!({"name": "gone", "module": "m", "deployments": [
        {"name": "echo", "function": "http_echo", "route_prefix": "/gone"}]});
    deploy(&mut dev, prism_guests::TESTKIT, gone).await.unwrap();
    dev.delete_app("gone").await.unwrap();
    let mut h = https(&first, &files, false).await;
    assert_eq!(
        h.get("/Converter?temp=0&type=CF", Some(&token))
            .await
            .unwrap()
            .status,
        200
    );

    // kill -9, and a new head on the same state directory.
    first.kill();
    let second = head(&files);
    let mut dev = client(&second, &files, &token).await;
    let mut h = https(&second, &files, true).await;
    let mut answered = None;
    for _ in 0..100 {
        let r = h
            .get("/Converter?temp=0&type=CF", Some(&token))
            .await
            .unwrap();
        if r.status == 200 {
            answered = Some(r);
            break;
        }
        assert_eq!(r.status, 404, "{}", r.text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = answered.expect("the app came back");
    assert_eq!(r.text(), r#"{"Fahrenheit temperature":32.0}"#);
    let apps = dev.apps().await.unwrap();
    assert_eq!(apps.len(), 1, "the deleted app stays deleted");
    assert_eq!(apps[0].deployments[0].replicas.len(), 2);
    assert_eq!(h.get("/gone", Some(&token)).await.unwrap().status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_split_moves_to_one_version_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let files = init(&dir.path().join("state"));
    let head = head(&files);
    let mut admin = client(&head, &files, &admin_token(&files)).await;
    admin.create_tenant("acme", 1.0, "").await.unwrap();
    let (mut dev, token) = member(&mut admin, &head, &files, "acme", "developer").await;
    // Two versions of the converter (a class and a function), reached
    // only through the split.
    let app = |v1: u32, v2: u32| {
        json!({"name": "canary", "module": "m", "deployments": [
            {"name": "Converter", "route_prefix": "/Converter", "split": {"v1": v1, "v2": v2}},
            {"name": "v1", "class": "ConverterReplica", "internal": true},
            {"name": "v2", "function": "converter", "internal": true}
        ]})
    };
    let deployed = deploy(&mut dev, prism_guests::CONVERTER, app(30, 70))
        .await
        .unwrap();
    assert_eq!(deployed.deployments[0].kind, "split");
    assert_eq!(deployed.deployments[0].handler, "v1:30,v2:70");
    assert_eq!(deployed.deployments[1].route_prefix, "");
    let mut h = https(&head, &files, true).await;
    // Internal deployments have no route.
    assert_eq!(
        h.get("/v1?temp=0&type=CF", Some(&token))
            .await
            .unwrap()
            .status,
        404
    );
    let mut by_version = std::collections::HashMap::new();
    for _ in 0..10 {
        let r = h
            .get("/Converter?temp=100&type=CF", Some(&token))
            .await
            .unwrap();
        assert_eq!(r.text(), r#"{"Fahrenheit temperature":212.0}"#);
        *by_version
            .entry(r.header("x-prism-deployment").unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(by_version["v1"], 3, "{by_version:?}");
    assert_eq!(by_version["v2"], 7, "{by_version:?}");

    // A client keeps sending while the split moves to 100/0.
    let load = keep_calling(&head, &files, &token, "/Converter?temp=0&type=CF");
    tokio::time::sleep(Duration::from_millis(200)).await;
    deploy(&mut dev, prism_guests::CONVERTER, app(100, 0))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let statuses: Vec<u16> = load.stop().await.iter().map(|(s, _)| *s).collect();
    assert!(statuses.len() > 10);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    for _ in 0..5 {
        let r = h
            .get("/Converter?temp=0&type=CF", Some(&token))
            .await
            .unwrap();
        assert_eq!(r.header("x-prism-deployment"), Some("v1"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_deployments_answer_requests_together() {
    let dir = tempfile::tempdir().unwrap();
    let files = init(&dir.path().join("state"));
    let head = head(&files);
    let mut admin = client(&head, &files, &admin_token(&files)).await;
    admin.create_tenant("acme", 1.0, "").await.unwrap();
    let (mut dev, token) = member(&mut admin, &head, &files, "acme", "developer").await;
    deploy(
        &mut dev,
        prism_guests::CONVERTER,
        json!({"name": "batched", "module": "m", "deployments": [
            {"name": "batch", "function": "converter_batch",
             "batch": {"max_batch_size": 4, "batch_wait_timeout_ms": 300}}]}),
    )
    .await
    .unwrap();
    deploy(
        &mut dev,
        prism_guests::TESTKIT,
        json!({"name": "short", "module": "m", "deployments": [
            {"name": "short", "function": "http_batch_short", "batch": {}}]}),
    )
    .await
    .unwrap();
    let send = |path: &'static str, n: usize| {
        let address = head.http_address();
        let ca = std::fs::read(files.ca_cert()).unwrap();
        let token = token.clone();
        async move {
            let calls: Vec<_> = (0..n)
                .map(|i| {
                    let (address, ca, token) = (address.clone(), ca.clone(), token.clone());
                    tokio::spawn(async move {
                        let mut c = HttpsClient::connect(&address, &ca, false).await.unwrap();
                        let target = format!("{path}?temp={i}&type=CF");
                        c.get(&target, Some(&token)).await.unwrap()
                    })
                })
                .collect();
            let mut out = Vec::new();
            for call in calls {
                out.push(call.await.unwrap());
            }
            out
        }
    };
    // Four at once fill one batch; each gets its own answer.
    let answers = send("/batch", 4).await;
    for (i, r) in answers.iter().enumerate() {
        assert_eq!(r.status, 200, "{}", r.text());
        let fahrenheit = i as f64 * 9.0 / 5.0 + 32.0;
        assert_eq!(json_of(r)["Fahrenheit temperature"], fahrenheit);
        assert_eq!(r.header("x-batch-size"), Some("4"));
    }
    // One alone waits for the batch timeout, then goes by itself.
    let started = std::time::Instant::now();
    let alone = send("/batch", 1).await;
    assert_eq!(alone[0].header("x-batch-size"), Some("1"));
    assert!(started.elapsed() >= Duration::from_millis(300));
    // A handler answering fewer responses than requests fails them all.
    let short = send("/short", 3).await;
    let ids: HashSet<_> = short
        .iter()
        .map(|r| {
            assert_eq!(r.status, 500);
            r.header("x-prism-error-id").unwrap().to_string()
        })
        .collect();
    assert!(!ids.is_empty());
    let status = dev.app("batched").await.unwrap();
    assert_eq!(status.deployments[0].answered, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_config_reaches_running_replicas_and_sick_ones_are_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let files = init(&dir.path().join("state"));
    let head = head(&files);
    let mut admin = client(&head, &files, &admin_token(&files)).await;
    admin.create_tenant("acme", 1.0, "").await.unwrap();
    let (mut dev, token) = member(&mut admin, &head, &files, "acme", "developer").await;
    let app = |step: u64| {
        json!({"name": "hooks", "module": "m", "deployments": [
            {"name": "counter", "class": "CountingReplica", "init_args": [0],
             "user_config": {"step": step}, "health_check_period_ms": 100,
             "health_check_timeout_ms": 1000},
            {"name": "echo", "function": "http_echo"}]})
    };
    let first = deploy(&mut dev, prism_guests::TESTKIT, app(2))
        .await
        .unwrap();
    let mut h = https(&head, &files, true).await;
    /// The count a counter replica answered, and which replica.
    async fn count_of(h: &mut HttpsClient, path: &str, token: &str) -> (u64, String) {
        let r = h.get(path, Some(token)).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        (
            json_of(&r)["count"].as_u64().unwrap(),
            r.header("x-prism-replica").unwrap().to_string(),
        )
    }
    // reconfigure ran before the first request: steps of 2.
    let (count, replica) = count_of(&mut h, "/counter", &token).await;
    assert_eq!(count, 2);
    assert_eq!(count_of(&mut h, "/counter", &token).await.0, 4);
    // A guest calls the replica's methods through a handle (one replica:
    // the same count).
    let job = dev
        .submit(
            &first.module_hash,
            "deployment_methods",
            r#"["hooks", "counter"]"#,
            "",
        )
        .await
        .unwrap();
    let result = dev.result(&job.id, true).await.unwrap();
    let said: Vec<String> =
        serde_json::from_str(&result.value_json).unwrap_or_else(|e| panic!("{e}: {result:?}"));
    assert_eq!(said[..2], ["9", "14"], "{said:?}");
    assert_eq!(said[2], "function_not_found", "{said:?}");
    assert_eq!(said[3], "invalid_argument", "{said:?}");
    assert!(said[4].starts_with("refused: invalid argument"), "{said:?}");
    assert_eq!(count_of(&mut h, "/counter", &token).await.0, 16);
    // A redeploy that changes only user_config: same replica, same
    // count, the new step.
    deploy(&mut dev, prism_guests::TESTKIT, app(10))
        .await
        .unwrap();
    let (count, same) = count_of(&mut h, "/counter", &token).await;
    assert_eq!((count, &same), (26, &replica));
    // A replica whose health check fails is replaced within periods.
    count_of(&mut h, "/counter?sick=1", &token).await;
    let mut replaced = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = dev.app("hooks").await.unwrap();
        if status.deployments[0].unhealthy >= 1 && status.deployments[0].replicas[0].up {
            replaced = Some(status);
            break;
        }
    }
    assert!(replaced.is_some(), "the sick replica was not replaced");
    // The replacement starts over, with the current step.
    assert_eq!(count_of(&mut h, "/counter", &token).await.0, 10);
}

/// The converter app as `guest-examples/converter/app.yaml` has it,
/// with its consensus handler.
fn converter_app() -> Value {
    json!({"name": "converter", "module": "m", "deployments": [
        {"name": "Converter", "class": "ConverterReplica", "num_replicas": 3},
        {"name": "consensus", "function": "converter_consensus"}
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_call_deployments_through_handles_on_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let files = init(&dir.path().join("state"));
    // The head runs only drivers: replicas, handler tasks and the tasks
    // that call handles all run on the worker.
    let head = start_head_with(
        files.dir(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--cpus",
            "0",
            "--no-gpus",
        ],
    );
    let mut admin = client(&head, &files, &admin_token(&files)).await;
    let join = admin.create_join_token(60).await.unwrap().token;
    let _worker = crate::procs::start_worker(
        &dir.path().join("w0"),
        &head.address,
        &files.ca_cert(),
        &join,
        &["--cpus", "2", "--no-gpus"],
    )
    .expect("the worker joins");
    for _ in 0..100 {
        let nodes = admin.status().await.unwrap().nodes;
        if nodes.iter().filter(|n| n.state == "alive").count() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    admin.create_tenant("acme", 1.0, "").await.unwrap();
    let (mut dev, token) = member(&mut admin, &head, &files, "acme", "developer").await;
    let app = deploy(&mut dev, prism_guests::CONVERTER, converter_app())
        .await
        .unwrap();
    // Requests enter at the head and reach replicas on the worker.
    let mut h = https(&head, &files, true).await;
    let mut replicas = HashSet::new();
    for _ in 0..3 {
        let r = h
            .get("/Converter?temp=100&type=CF", Some(&token))
            .await
            .unwrap();
        assert_eq!(r.text(), r#"{"Fahrenheit temperature":212.0}"#);
        replicas.insert(r.header("x-prism-replica").unwrap().to_string());
    }
    assert_eq!(replicas.len(), 3);
    // A handler composed through handles, over HTTPS.
    let r = h
        .get("/consensus?temp=-40&type=CF", Some(&token))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), r#"{"Fahrenheit temperature":-40.0}"#);
    assert!(["2", "3"].contains(&r.header("x-agreed").unwrap()));
    // A driver (head) and its tasks (worker) call through handles.
    let job = dev
        .submit(&app.module_hash, "through_handles", "[]", "")
        .await
        .unwrap();
    let result = dev.result(&job.id, true).await.unwrap();
    let answers: Vec<String> =
        serde_json::from_str(&result.value_json).unwrap_or_else(|e| panic!("{e}: {result:?}"));
    assert_eq!(answers[0], r#"{"Fahrenheit temperature":212.0}"#);
    assert_eq!(answers[1], r#"{"Fahrenheit temperature":32.0}"#);
    assert_eq!(answers[2], r#"{"Fahrenheit temperature":98.6}"#);
    assert!(
        answers[3].starts_with(r#"{"Fahrenheit temperature":-40.0} agreed by "#),
        "{answers:?}"
    );
    assert_eq!(answers[4], "missing: invalid_argument");
    // Another tenant's guests cannot reach acme's app by its name.
    admin.create_tenant("zeta", 1.0, "").await.unwrap();
    let (mut zeta, _) = member(&mut admin, &head, &files, "zeta", "developer").await;
    let hash = zeta
        .upload_module(prism_guests::CONVERTER.to_vec())
        .await
        .unwrap()
        .hash;
    let job = zeta
        .submit(&hash, "through_handles", "[]", "")
        .await
        .unwrap();
    let result = zeta.result(&job.id, true).await.unwrap();
    let info = result.job.unwrap();
    assert!(
        info.error_message
            .contains("(invalid_argument): no deployment Converter in an app converter"),
        "{info:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingress_bounds_buffered_bodies_and_apps_per_tenant() {
    use prism_host::serve::{AppConfig, Apps, Ingress, MAX_APPS_PER_TENANT, Routes};
    let c = prism_host::head::EmbeddedCluster::start(crate::support::config(2.0))
        .expect("cluster starts");
    let module = c
        .head()
        .upload_module(bytes::Bytes::from_static(prism_guests::TESTKIT));
    let apps = Apps::new(c.node().clone());
    let grant = prism_host::security::JobGrant::local();
    let namespace = || prism_host::security::tenants::NamespaceRef::new(&grant.tenant, "default");
    let app = |name: &str, prefix: &str, function: &str| {
        AppConfig::from_json(
            &json!({"name": name, "module": "m", "deployments": [
                {"name": "d", "function": function, "route_prefix": prefix,
                 "max_body_bytes": 2000}]})
            .to_string(),
        )
        .and_then(AppConfig::validate)
        .unwrap()
    };
    apps.deploy(
        namespace(),
        grant.clone(),
        app("slow", "/slow", "http_sleep"),
        module,
        None,
    )
    .await
    .unwrap();
    // A budget of 10,000 bytes: a tenant's share is 2,500, room for one
    // 2,000-byte body at a time.
    let (tls, ca) = Ingress::self_signed().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let ingress = Ingress::with_body_budget(Routes::Head(apps.clone()), None, 10_000);
    tokio::spawn(ingress.serve(listener, tls, std::future::pending()));
    let first = tokio::spawn({
        let (address, ca) = (address.clone(), ca.clone());
        async move {
            let mut c = HttpsClient::connect(&address, ca.as_bytes(), false)
                .await
                .unwrap();
            c.send("POST", "/slow?ms=600", &[], vec![1u8; 2000])
                .await
                .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut second = HttpsClient::connect(&address, ca.as_bytes(), false)
        .await
        .unwrap();
    let r = second
        .send("POST", "/slow?ms=1", &[], vec![2u8; 2000])
        .await
        .unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    // A small body still fits beside the first; the first is answered.
    let r = second
        .send("POST", "/slow?ms=1", &[], vec![3u8; 500])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(first.await.unwrap().status, 200);
    // Once it is answered, its room is free again.
    let r = second
        .send("POST", "/slow?ms=1", &[], vec![2u8; 2000])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    // A request head over 64 KiB is refused (431 on HTTP/1.1).
    let big = format!(
        "GET /slow?ms=1 HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let refused = raw_exchange(&address, &ca, big.as_bytes()).await;
    assert!(refused.starts_with("HTTP/1.1 431"), "{refused:?}");
    // A body that does not arrive: 408 after 10 s, the room freed.
    let stalled = raw_exchange(
        &address,
        &ca,
        b"POST /slow?ms=1 HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nabc",
    )
    .await;
    assert!(stalled.starts_with("HTTP/1.1 408"), "{stalled:?}");
    // (`second` sat idle past the 10 s wait for a next request head, and
    // was closed: a new connection.)
    let mut second = HttpsClient::connect(&address, ca.as_bytes(), false)
        .await
        .unwrap();
    let r = second
        .send("POST", "/slow?ms=1", &[], vec![2u8; 2000])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    // A tenant has at most MAX_APPS_PER_TENANT applications.
    for i in 1..MAX_APPS_PER_TENANT {
        let name = format!("a{i}");
        apps.deploy(
            namespace(),
            grant.clone(),
            app(&name, &format!("/{name}"), "http_echo"),
            module,
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let Err(refused) = apps
        .deploy(
            namespace(),
            grant.clone(),
            app("one-more", "/one-more", "http_echo"),
            module,
            None,
        )
        .await
    else {
        panic!("one app too many was deployed");
    };
    assert!(
        matches!(refused, prism_host::serve::ServeError::Quota(_)),
        "{refused}"
    );
    // Redeploying one it has is fine.
    apps.deploy(
        namespace(),
        grant.clone(),
        app("a1", "/a1", "http_echo"),
        module,
        None,
    )
    .await
    .unwrap();
    apps.stop_all().await;
}

/// Writes `bytes` on a fresh TLS connection to `address` and returns the
/// start of what comes back (within 20 s): for requests no well-behaved
/// HTTP client sends.
async fn raw_exchange(address: &str, ca: &str, bytes: &[u8]) -> String {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    tls.write_all(bytes).await.unwrap();
    let mut answer = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(20), tls.read(&mut answer))
        .await
        .expect("an answer within 20 s")
        .unwrap_or(0);
    String::from_utf8_lossy(&answer[..n]).to_string()
}

/// A client calling `path` with `token`, one request after another, until
/// it is stopped.
struct Load {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<(u16, String)>>,
}

fn keep_calling(head: &HeadProcess, files: &ClusterFiles, token: &str, path: &'static str) -> Load {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let address = head.http_address();
    let ca = std::fs::read(files.ca_cert()).unwrap();
    let token = token.to_string();
    let task = tokio::spawn(async move {
        let mut c = HttpsClient::connect(&address, &ca, true).await.unwrap();
        let mut answers = Vec::new();
        while stopped.try_recv().is_err() {
            let r = c.get(path, Some(&token)).await.unwrap();
            let replica = r.header("x-prism-replica").unwrap_or_default().to_string();
            answers.push((r.status, replica));
        }
        answers
    });
    Load { stop, task }
}

impl Load {
    /// Stops the client; every answer it got: (status, replica).
    async fn stop(self) -> Vec<(u16, String)> {
        let _ = self.stop.send(());
        self.task.await.unwrap()
    }
}
