//! Served applications on a real head: deployed through the API, called
//! over real HTTPS (HTTP/1.1 and HTTP/2) with tenants' tokens, beside a
//! hostile tenant and handlers that misbehave. `nodes.rs`: the ingress on
//! a worker node. `lifecycle.rs`: redeploys,
//! autoscaling, restarts, splits, batching, hooks, handles and bounds.

mod lifecycle;
mod nodes;

use super::procs::{HeadProcess, admin_token, client, init, prism_cli, start_head_with};
use prism_client::{Client, ClientError};
use prism_host::security::ClusterFiles;
use prism_host::serve::client::{ClientResponse, HttpsClient};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;
use tonic::Code;

pub(super) fn head(files: &ClusterFiles) -> HeadProcess {
    start_head_with(
        files.dir(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--cpus",
            "2",
        ],
    )
}

pub(super) fn code(e: ClientError) -> (Code, String) {
    match e {
        ClientError::Status(s) => (s.code(), s.message().to_string()),
        other => panic!("expected a status, got {other}"),
    }
}

/// A tenant and a client with a token of `role` in it.
pub(super) async fn member(
    admin: &mut Client,
    head: &HeadProcess,
    files: &ClusterFiles,
    tenant: &str,
    role: &str,
) -> (Client, String) {
    let token = admin
        .issue_token(tenant, role, role, 600)
        .await
        .unwrap()
        .token;
    (client(head, files, &token).await, token)
}

/// Deploys `config` with `module` (bytes).
pub(super) async fn deploy(
    c: &mut Client,
    module: &[u8],
    config: Value,
) -> Result<prism_client::v1::AppInfo, ClientError> {
    let hash = c.upload_module(module.to_vec()).await.unwrap().hash;
    c.deploy_app(&config.to_string(), &hash).await
}

pub(super) async fn https(head: &HeadProcess, files: &ClusterFiles, http2: bool) -> HttpsClient {
    let ca = std::fs::read(files.ca_cert()).unwrap();
    HttpsClient::connect(&head.http_address(), &ca, http2)
        .await
        .expect("connects over TLS")
}

pub(super) fn json_of(response: &ClientResponse) -> Value {
    serde_json::from_slice(&response.body).unwrap_or_else(|e| panic!("{e}: {:?}", response.text()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_converter_answers_over_https_from_three_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let files = init(&dir.path().join("state"));
    let head = head(&files);
    let mut admin = client(&head, &files, &admin_token(&files)).await;
    admin.create_tenant("acme", 1.0, "").await.unwrap();
    let (mut dev, token) = member(&mut admin, &head, &files, "acme", "developer").await;
    let app = deploy(
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
    assert_eq!(app.tenant, "acme");
    assert_eq!(app.deployments[0].replicas.len(), 3);

    // HTTP/2: three requests, three replicas (ties go round robin).
    let mut h2 = https(&head, &files, true).await;
    let mut replicas = HashSet::new();
    for _ in 0..3 {
        let r = h2
            .get("/Converter?temp=100.0&type=CF", Some(&token))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), r#"{"Fahrenheit temperature":212.0}"#);
        assert_eq!(r.header("content-type"), Some("application/json"));
        replicas.insert(r.header("x-prism-replica").unwrap().to_string());
    }
    assert_eq!(replicas.len(), 3, "{replicas:?}");
    // HTTP/1.1, same answers; the class replicas keep state.
    let mut h1 = https(&head, &files, false).await;
    let r = h1
        .get("/Converter?temp=100&type=FC", Some(&token))
        .await
        .unwrap();
    assert_eq!(r.text(), r#"{"Celsius temperature":37.77777777777778}"#);
    assert_eq!(r.header("x-requests"), Some("2"));
    let r = h1
        .get("/Converter?temp=1&type=CC", Some(&token))
        .await
        .unwrap();
    assert_eq!(r.text(), r#"{"Unknown conversion code":"CC"}"#);
    let r = h1
        .get("/Converter?temp=hot&type=CF", Some(&token))
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(r.text().contains("`temp`"), "{}", r.text());
    // The function deployment routes by sub-path.
    let r = h1
        .get("/converter/cf?temp=100", Some(&token))
        .await
        .unwrap();
    assert_eq!(r.text(), r#"{"Fahrenheit temperature":212.0}"#);
    let r = h1
        .get("/converter/fc/?temp=212", Some(&token))
        .await
        .unwrap();
    assert_eq!(r.text(), r#"{"Celsius temperature":100.0}"#);
    assert_eq!(
        h1.get("/converter/kelvin", Some(&token))
            .await
            .unwrap()
            .status,
        404
    );
    let r = h1
        .send(
            "POST",
            "/converter/cf",
            &[("authorization", &format!("Bearer {token}"))],
            "x",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
    // Status counts what each replica answered.
    let status = dev.app("converter").await.unwrap();
    let class = &status.deployments[0];
    assert_eq!(class.answered, 6);
    assert_eq!(class.replicas.iter().map(|r| r.served).sum::<u64>(), 6);
    assert!(class.replicas.iter().all(|r| r.up));
    assert_eq!(status.deployments[1].handler, "converter_routes");
    assert_eq!(dev.apps().await.unwrap().len(), 1);

    // Deleted: the routes go, the name is free.
    dev.delete_app("converter").await.unwrap();
    assert_eq!(
        h2.get("/Converter?temp=1&type=CF", Some(&token))
            .await
            .unwrap()
            .status,
        404
    );
    assert_eq!(
        code(dev.app("converter").await.unwrap_err()).0,
        Code::NotFound
    );
    assert_eq!(
        code(dev.delete_app("converter").await.unwrap_err()).0,
        Code::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_belong_to_their_tenant_and_refuse_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let files = init(&dir.path().join("state"));
    let head = head(&files);
    let mut admin = client(&head, &files, &admin_token(&files)).await;
    admin.create_tenant("acme", 1.0, "").await.unwrap();
    admin.create_tenant("zeta", 1.0, "").await.unwrap();
    let (mut acme, acme_token) = member(&mut admin, &head, &files, "acme", "developer").await;
    let (_, viewer_token) = member(&mut admin, &head, &files, "acme", "viewer").await;
    let (mut zeta, zeta_token) = member(&mut admin, &head, &files, "zeta", "developer").await;
    let echo = |name: &str, prefix: &str| {
        json!({
            "name": name,
            "module": "testkit.wasm",
            "deployments": [{"name": "echo", "function": "http_echo", "route_prefix": prefix,
                             "max_body_bytes": 1000}]
        })
    };
    deploy(&mut acme, prism_guests::TESTKIT, echo("api", "/acme/api"))
        .await
        .unwrap();

    // Zeta cannot take acme's route, one above it, one below it, or `/`.
    for prefix in ["/acme/api", "/acme", "/acme/api/v2", "/"] {
        let refused = deploy(&mut zeta, prism_guests::TESTKIT, echo("grab", prefix))
            .await
            .unwrap_err();
        let (code, message) = code(refused);
        assert_eq!(code, Code::AlreadyExists, "{prefix}: {message}");
    }
    // Nor see or delete acme's app.
    assert_eq!(code(zeta.app("api").await.unwrap_err()).0, Code::NotFound);
    assert_eq!(
        code(zeta.delete_app("api").await.unwrap_err()).0,
        Code::NotFound
    );
    assert!(zeta.apps().await.unwrap().is_empty());
    // A public route needs PublishRoute, which developers lack.
    let mut public = echo("open", "/zeta/open");
    public["deployments"][0]["public"] = json!(true);
    let (c, m) = code(
        deploy(&mut zeta, prism_guests::TESTKIT, public.clone())
            .await
            .unwrap_err(),
    );
    assert_eq!(c, Code::PermissionDenied, "{m}");
    // Bad configs and modules are typed refusals.
    let mut missing = echo("bad", "/zeta/bad");
    missing["deployments"][0]["function"] = json!("no_such_task");
    let (c, m) = code(
        deploy(&mut zeta, prism_guests::TESTKIT, missing)
            .await
            .unwrap_err(),
    );
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.contains("no_such_task"), "{m}");
    let (c, _) = code(zeta.deploy_app("{not json", "sha256:00").await.unwrap_err());
    assert_eq!(c, Code::InvalidArgument);
    let unknown = "sha256:".to_string() + &"ab".repeat(32);
    let (c, _) = code(
        zeta.deploy_app(&echo("x", "/zeta/x").to_string(), &unknown)
            .await
            .unwrap_err(),
    );
    assert_eq!(c, Code::NotFound);

    let mut h = https(&head, &files, false).await;
    // No token, a forged one, another tenant's, a viewer's: refused.
    let r = h.get("/acme/api/x", None).await.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        h.get("/acme/api/x", Some("not.a.token"))
            .await
            .unwrap()
            .status,
        401
    );
    let forged = format!("{}x", &acme_token[..acme_token.len() - 1]);
    assert_eq!(
        h.get("/acme/api/x", Some(&forged)).await.unwrap().status,
        401
    );
    // Another tenant's token: as if the route did not exist, the same
    // answer as for a path no route has.
    let r = h.get("/acme/api/x", Some(&zeta_token)).await.unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
    let none = h.get("/no/such/route", Some(&zeta_token)).await.unwrap();
    assert_eq!((none.status, none.text()), (r.status, r.text()));
    // Without a valid token nothing tells a route from no route.
    for path in ["/acme/api/x", "/no/such/route"] {
        assert_eq!(h.get(path, None).await.unwrap().status, 401, "{path}");
    }
    assert_eq!(
        h.get("/acme/api/x", Some(&viewer_token))
            .await
            .unwrap()
            .status,
        403
    );
    // The owner's token passes; the handler never sees it.
    let r = h
        .send(
            "PUT",
            "/acme/api/a%20b/c?q=a+b&n=1",
            &[
                ("authorization", &format!("Bearer {acme_token}")),
                ("x-trace", "t1"),
            ],
            "hello",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = json_of(&r);
    assert_eq!(seen["method"], "PUT");
    assert_eq!(seen["path"], "/a b/c");
    assert_eq!(seen["query"], json!([["q", "a b"], ["n", "1"]]));
    assert_eq!(seen["body_len"], 5);
    assert_eq!(seen["saw_authorization"], false);
    assert!(
        seen["headers"]
            .as_array()
            .unwrap()
            .contains(&json!("x-trace"))
    );
    // `..` cannot walk from one route to another; unknown paths are 404.
    let r = h
        .get("/zeta/../acme/api/x", Some(&zeta_token))
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(
        h.get("/nowhere", Some(&acme_token)).await.unwrap().status,
        404
    );
    // A body over the deployment's limit: 413, before the handler.
    let auth = format!("Bearer {acme_token}");
    let r = h
        .send(
            "POST",
            "/acme/api",
            &[("authorization", &auth)],
            vec![0u8; 1001],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 413);
    // A revoked token stops working at once.
    admin.revoke_token(&acme_token, "").await.unwrap();
    let mut h = https(&head, &files, true).await;
    assert_eq!(
        h.get("/acme/api/x", Some(&acme_token))
            .await
            .unwrap()
            .status,
        401
    );
    // A deleted tenant's routes are gone.
    let admin_token = admin_token(&files);
    assert_eq!(
        h.get("/acme/api/x", Some(&admin_token))
            .await
            .unwrap()
            .status,
        200
    );
    admin.delete_tenant("acme").await.unwrap();
    assert_eq!(
        h.get("/acme/api/x", Some(&admin_token))
            .await
            .unwrap()
            .status,
        404
    );
    // ...and the route is free for another tenant.
    deploy(&mut zeta, prism_guests::TESTKIT, echo("api", "/acme/api"))
        .await
        .unwrap();
    assert_eq!(
        h.get("/acme/api/x", Some(&zeta_token))
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_handlers_answer_typed_statuses_beside_a_healthy_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let files = init(&dir.path().join("state"));
    let head = head(&files);
    let mut admin = client(&head, &files, &admin_token(&files)).await;
    admin.create_tenant("good", 1.0, "").await.unwrap();
    admin.create_tenant("bad", 1.0, "").await.unwrap();
    let (mut good, good_token) = member(&mut admin, &head, &files, "good", "developer").await;
    let (mut bad, bad_token) = member(&mut admin, &head, &files, "bad", "developer").await;
    deploy(
        &mut good,
        prism_guests::CONVERTER,
        json!({"name": "c", "module": "m", "deployments": [
            {"name": "conv", "function": "converter", "route_prefix": "/good"}]}),
    )
    .await
    .unwrap();
    let function = |name: &str, f: &str, extra: Value| {
        let mut d = json!({"name": name, "function": f, "route_prefix": format!("/bad/{name}"),
                           "request_timeout_ms": 1500});
        d.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        d
    };
    deploy(
        &mut bad,
        prism_guests::TESTKIT,
        json!({"name": "chaos", "module": "m", "deployments": [
            function("panic", "http_panic", json!({})),
            function("spin", "http_spin", json!({})),
            function("status", "http_bad_status", json!({})),
            function("garbage", "http_not_a_response", json!({})),
            function("slow", "http_sleep", json!({"num_replicas": 1, "max_ongoing_requests": 1,
                                                   "max_queued_requests": 1, "request_timeout_ms": 5000})),
            {"name": "counter", "class": "CountingReplica", "init_args": [10],
             "route_prefix": "/bad/counter"}
        ]}),
    )
    .await
    .unwrap();
    let mut h = https(&head, &files, true).await;
    let mut good_h = https(&head, &files, false).await;
    let healthy = |r: ClientResponse| {
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), r#"{"Fahrenheit temperature":212.0}"#);
    };
    let good_path = "/good?temp=100&type=CF";

    // A panic: 500 with an error id, in the header and the body.
    let r = h.get("/bad/panic", Some(&bad_token)).await.unwrap();
    assert_eq!(r.status, 500);
    let id = r.header("x-prism-error-id").unwrap().to_string();
    assert_eq!(json_of(&r)["error_id"], id.as_str());
    healthy(good_h.get(good_path, Some(&good_token)).await.unwrap());
    // A handler that never answers: 504 at the timeout, and its task is
    // stopped (the node's CPUs are free again for the healthy tenant).
    let started = std::time::Instant::now();
    let r = h.get("/bad/spin", Some(&bad_token)).await.unwrap();
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(started.elapsed() < Duration::from_secs(10));
    healthy(good_h.get(good_path, Some(&good_token)).await.unwrap());
    // Answers that are not responses: 500.
    assert_eq!(
        h.get("/bad/status", Some(&bad_token)).await.unwrap().status,
        500
    );
    assert_eq!(
        h.get("/bad/garbage", Some(&bad_token))
            .await
            .unwrap()
            .status,
        500
    );
    // A class replica keeps state; a trap answers 500 and the replica
    // restarts fresh.
    let count = |r: ClientResponse| json_of(&r)["count"].as_u64().unwrap();
    assert_eq!(
        count(h.get("/bad/counter", Some(&bad_token)).await.unwrap()),
        11
    );
    assert_eq!(
        count(h.get("/bad/counter", Some(&bad_token)).await.unwrap()),
        12
    );
    assert_eq!(
        h.get("/bad/counter?trap=1", Some(&bad_token))
            .await
            .unwrap()
            .status,
        500
    );
    assert_eq!(
        count(h.get("/bad/counter", Some(&bad_token)).await.unwrap()),
        11
    );
    // One replica running one request with a queue of one: a third
    // concurrent request is refused with 503 and retry-after.
    let calls: Vec<_> = (0..3)
        .map(|i| {
            let head_http = head.http_address();
            let ca = std::fs::read(files.ca_cert()).unwrap();
            let token = bad_token.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100 * i)).await;
                let mut c = HttpsClient::connect(&head_http, &ca, false).await.unwrap();
                c.get("/bad/slow?ms=1000", Some(&token)).await.unwrap()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for call in calls {
        let r = call.await.unwrap();
        if r.status == 503 {
            assert_eq!(r.header("retry-after"), Some("1"));
        }
        statuses.push(r.status);
    }
    statuses.sort();
    assert_eq!(statuses, [200, 200, 503]);
    healthy(good_h.get(good_path, Some(&good_token)).await.unwrap());
    // The status counts each outcome.
    let chaos = bad.app("chaos").await.unwrap();
    let by_name = |n: &str| {
        chaos
            .deployments
            .iter()
            .find(|d| d.name == n)
            .unwrap()
            .clone()
    };
    assert_eq!(by_name("panic").failed, 1);
    assert_eq!(by_name("spin").timed_out, 1);
    assert_eq!(by_name("slow").overloaded, 1);
    assert_eq!(by_name("slow").answered, 2);
    assert_eq!(by_name("counter").failed, 1);

    // A requests/s quota: the flooding tenant gets 429 past its rate,
    // the other tenant none.
    admin
        .set_quotas("bad", r#"{"requests_per_second": 3}"#, 1.0)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut limited = 0;
    let flood = std::time::Instant::now();
    for _ in 0..10 {
        let r = h.get("/bad/counter", Some(&bad_token)).await.unwrap();
        if r.status == 429 {
            assert_eq!(r.header("retry-after"), Some("1"));
            limited += 1;
        } else {
            assert_eq!(r.status, 200);
        }
        healthy(good_h.get(good_path, Some(&good_token)).await.unwrap());
    }
    // A full bucket (3) plus what refilled meanwhile, no more.
    let admitted = 10 - limited;
    let allowed = 3.0 + 3.0 * flood.elapsed().as_secs_f64();
    assert!(limited > 0, "none of 10 limited");
    assert!(
        admitted >= 3 && f64::from(admitted as u32) <= allowed + 1.0,
        "{admitted} admitted, {allowed:.1} allowed"
    );
    let chaos = bad.app("chaos").await.unwrap();
    let counter = chaos
        .deployments
        .iter()
        .find(|d| d.name == "counter")
        .unwrap();
    assert_eq!(counter.rate_limited, limited);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_deploys_lists_and_deletes_apps_and_public_routes_need_publish_route() {
    let dir = tempfile::tempdir().unwrap();
    let files = init(&dir.path().join("state"));
    let head = head(&files);
    let mut admin = client(&head, &files, &admin_token(&files)).await;
    admin.create_tenant("acme", 1.0, "").await.unwrap();
    let (_, dev_token) = member(&mut admin, &head, &files, "acme", "developer").await;
    let (_, boss_token) = member(&mut admin, &head, &files, "acme", "tenant-admin").await;
    // A config file beside a copy of the module, as a user has them.
    std::fs::write(dir.path().join("converter.wasm"), prism_guests::CONVERTER).unwrap();
    let yaml = dir.path().join("app.yaml");
    std::fs::write(
        &yaml,
        "name: conv\nmodule: converter.wasm\ndeployments:\n  - name: Converter\n    class: ConverterReplica\n    num_replicas: 2\n",
    )
    .unwrap();
    let yaml = yaml.to_str().unwrap();
    let (code, out, err) = prism_cli(&head, &files, &dev_token, &["serve", "deploy", yaml]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("app conv (tenant acme"), "{out}");
    assert_eq!(out.matches("replica ").count(), 2, "{out}");
    let mut h = https(&head, &files, false).await;
    let r = h
        .get("/Converter?temp=0&type=CF", Some(&dev_token))
        .await
        .unwrap();
    assert_eq!(r.text(), r#"{"Fahrenheit temperature":32.0}"#);
    let (code, out, _) = prism_cli(&head, &files, &dev_token, &["serve", "status", "conv"]);
    assert_eq!(code, 0);
    assert!(out.contains("answered 1"), "{out}");
    let (code, out, _) = prism_cli(&head, &files, &dev_token, &["serve", "list"]);
    assert_eq!((code, out.as_str()), (0, "conv\tdefault\t/Converter"));
    // A bad file is refused before anything is sent, saying why.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "name: x\nmodule: converter.wasm\ndeployments: []\n").unwrap();
    let (code, _, err) = prism_cli(
        &head,
        &files,
        &dev_token,
        &["serve", "deploy", bad.to_str().unwrap()],
    );
    assert_ne!(code, 0);
    assert!(err.contains("at least one deployment"), "{err}");

    // A public route: refused to the developer, deployed by the
    // tenant-admin, then answered without a token.
    let public = dir.path().join("public.yaml");
    std::fs::write(
        &public,
        "name: open\nmodule: converter.wasm\ndeployments:\n  - name: open\n    function: converter\n    public: true\n",
    )
    .unwrap();
    let public = public.to_str().unwrap();
    let (code, _, err) = prism_cli(&head, &files, &dev_token, &["serve", "deploy", public]);
    assert_ne!(code, 0);
    assert!(err.contains("PublishRoute"), "{err}");
    let (code, _, err) = prism_cli(&head, &files, &boss_token, &["serve", "deploy", public]);
    assert_eq!(code, 0, "{err}");
    let r = h.get("/open?temp=100&type=CF", None).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // The private route still needs a token.
    assert_eq!(
        h.get("/Converter?temp=0&type=CF", None)
            .await
            .unwrap()
            .status,
        401
    );

    let (code, out, _) = prism_cli(&head, &files, &dev_token, &["serve", "delete", "conv"]);
    assert_eq!((code, out.as_str()), (0, "deleted app conv"));
    let (code, _, err) = prism_cli(&head, &files, &dev_token, &["serve", "status", "conv"]);
    assert_ne!(code, 0);
    assert!(err.contains("no app conv"), "{err}");
}

#[test]
fn serve_run_serves_an_app_locally_without_tokens() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("converter.wasm"), prism_guests::CONVERTER).unwrap();
    let yaml = dir.path().join("app.yaml");
    std::fs::write(
        &yaml,
        "name: conv\nmodule: converter.wasm\ndeployments:\n  - name: c\n    function: converter\n    route_prefix: /\n",
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_prism"))
        .args([
            "serve",
            "run",
            yaml.to_str().unwrap(),
            "--http-listen",
            "127.0.0.1:0",
            "--cpus",
            "1",
            "--no-gpus",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("prism runs");
    // The reader lives until the end: closing the pipe early would make
    // the server's next banner line fail and end it.
    let mut banner = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    banner.read_line(&mut line).unwrap();
    // "prism serve: app conv on https://ADDR (certificate PATH)"
    let address = line
        .split("https://")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("first line {line:?}"))
        .to_string();
    let cert = line
        .split("(certificate ")
        .nth(1)
        .map(|rest| rest.trim().trim_end_matches(')').to_string())
        .unwrap_or_else(|| panic!("first line {line:?}"));
    let ca = std::fs::read(&cert).unwrap();
    let answer = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut c = HttpsClient::connect(&address, &ca, true).await.unwrap();
        c.get("/?temp=100&type=CF", None).await.unwrap()
    });
    let _ = child.kill();
    let _ = child.wait();
    drop(banner);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.text(), r#"{"Fahrenheit temperature":212.0}"#);
}
