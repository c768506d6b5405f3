//! `/metrics` over HTTPS on the head and on a worker
//! (`--metrics-listen`): a tenant's token reads its own series only, a
//! cluster admin's reads every series, anything else is refused; guests'
//! own metrics appear with the host's labels and stop at the tenant's
//! series cap with a typed error, without touching another tenant.

use crate::procs::{Process, admin_token, client, init, start_head_with, start_worker};
use crate::serving::member;
use prism_client::Client;
use prism_host::security::ClusterFiles;
use prism_host::serve::client::HttpsClient;
use std::time::Duration;

async fn scrape(c: &mut HttpsClient, token: Option<&str>) -> (u16, String) {
    let r = c.get("/metrics", token).await.expect("an answer");
    (r.status, r.text())
}

/// Runs `entry(args)` of the account module as `c`; its JSON result.
async fn run_account(c: &mut Client, entry: &str, args: &str) -> serde_json::Value {
    run(c, prism_guests::ACCOUNT, entry, args).await
}

/// Runs `entry(args)` of `module` as `c`; its JSON result.
async fn run(c: &mut Client, module: &[u8], entry: &str, args: &str) -> serde_json::Value {
    let hash = c.upload_module(module.to_vec()).await.unwrap().hash;
    let job = c.submit(&hash, entry, args, "default").await.unwrap();
    let result = c.result(&job.id, true).await.unwrap();
    serde_json::from_str(&result.value_json).unwrap_or_else(|_| panic!("{entry}: {:?}", result.job))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_per_tenant_over_https_with_the_heads_checks() {
    let dir = tempfile::tempdir().unwrap();
    let files: ClusterFiles = init(&dir.path().join("state"));
    let head = start_head_with(
        files.dir(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--cpus",
            "2",
            "--no-gpus",
            "--heartbeat-ms",
            "200",
            "--guest-metric-series",
            "20",
        ],
    );
    let admin_secret = admin_token(&files);
    let mut admin = client(&head, &files, &admin_secret).await;
    let join = admin.create_join_token(60).await.unwrap().token;
    let worker: Process = start_worker(
        &dir.path().join("w"),
        &head.address,
        &files.ca_cert(),
        &join,
        &[
            "--cpus",
            "1",
            "--no-gpus",
            "--metrics-listen",
            "127.0.0.1:0",
            "--guest-metric-series",
            "20",
        ],
    )
    .expect("the worker joins");
    let node_name = format!("{}.node.prism", worker.worker_id());
    admin.create_tenant("acme", 1.0, "").await.unwrap();
    admin.create_tenant("zeta", 1.0, "").await.unwrap();
    let (mut acme_client, acme) = member(&mut admin, &head, &files, "acme", "developer").await;
    let (_, acme_viewer) = member(&mut admin, &head, &files, "acme", "viewer").await;
    let (mut zeta_client, zeta) = member(&mut admin, &head, &files, "zeta", "developer").await;

    // Both tenants run the bank example; acme then floods its series.
    let report = run_account(&mut acme_client, "main", r#"["alice"]"#).await;
    assert_eq!(report["restored"], true);
    run_account(&mut zeta_client, "main", r#"["bob"]"#).await;
    let flood = run_account(&mut acme_client, "metric_flood", "[200]").await;
    assert!(flood["recorded"].as_u64().unwrap() < 20, "{flood}");
    assert_eq!(flood["refused"], "QuotaExceeded", "{flood}");
    // The other tenant still records.
    let again = run_account(&mut zeta_client, "metric_flood", "[3]").await;
    assert_eq!(again["recorded"], 3, "{again}");
    // 60 tasks spread over both nodes.
    run(&mut acme_client, prism_guests::PI, "main", "[60, 200000]").await;

    let ca = std::fs::read(files.ca_cert()).unwrap();
    let mut at_head = HttpsClient::connect(&head.metrics_address(), &ca, false)
        .await
        .expect("the head's /metrics speaks TLS");
    let mut at_worker =
        HttpsClient::connect_named(&worker.metrics_address(), &node_name, &ca, true)
            .await
            .expect("the worker's /metrics speaks TLS");

    // Without a valid token nothing is shown, on either node.
    for c in [&mut at_head, &mut at_worker] {
        let r = c.get("/metrics", None).await.unwrap();
        assert_eq!(r.status, 401);
        assert!(r.header("www-authenticate").is_some());
        assert!(!r.text().contains("prism_"), "{}", r.text());
        let forged = format!("{}x", &acme[..acme.len() - 1]);
        assert_eq!(scrape(c, Some(&forged)).await.0, 401);
        assert_eq!(scrape(c, Some("not-a-jwt")).await.0, 401);
        assert_eq!(c.get("/other", Some(&acme)).await.unwrap().status, 404);
    }

    // A tenant sees its own series, on both nodes together.
    let mut acme_text = String::new();
    for c in [&mut at_head, &mut at_worker] {
        let (status, text) = scrape(c, Some(&acme)).await;
        assert_eq!(status, 200, "{text}");
        assert!(text.ends_with("# EOF\n"));
        assert!(!text.contains("tenant=\"zeta\""), "{text}");
        assert!(!text.contains("prism_node_resources"), "{text}");
        acme_text.push_str(&text);
    }
    assert!(
        acme_text.contains("prism_tasks_total{tenant=\"acme\""),
        "{acme_text}"
    );
    // Each task is counted once, where it was submitted, wherever it ran.
    let counted: f64 = acme_text
        .lines()
        .filter(|l| l.starts_with("prism_tasks_total{tenant=\"acme\",function=\"count_inside\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(counted, 60.0, "{acme_text}");
    assert!(acme_text.contains("prism_actor_calls_total{tenant=\"acme\",method=\"Account.withdraw\",outcome=\"application\"}"), "{acme_text}");
    assert!(
        acme_text.contains("prism_guest_failed_withdrawals_total{"),
        "{acme_text}"
    );
    assert!(acme_text.contains("reason=\"overdraft\""), "{acme_text}");
    assert!(
        acme_text.contains("prism_guest_account_balance{"),
        "{acme_text}"
    );
    let flood_series = acme_text.matches("prism_guest_flood_total{").count();
    assert_eq!(flood_series as u64, flood["recorded"].as_u64().unwrap());
    // A viewer of the tenant reads the same, on both nodes.
    assert_eq!(scrape(&mut at_head, Some(&acme_viewer)).await.0, 200);
    assert_eq!(scrape(&mut at_worker, Some(&acme_viewer)).await.0, 200);

    // The other tenant sees its own and none of acme's.
    let (status, zeta_text) = scrape(&mut at_head, Some(&zeta)).await;
    assert_eq!(status, 200);
    assert!(!zeta_text.contains("tenant=\"acme\""), "{zeta_text}");

    // A call with a forged token is refused (UNAUTHENTICATED, 16).
    let mut forger = client(&head, &files, "not-a-token").await;
    assert!(forger.list().await.is_err());

    // A cluster admin sees every tenant, the nodes and the API calls.
    let (status, all) = scrape(&mut at_head, Some(&admin_secret)).await;
    assert_eq!(status, 200);
    assert!(all.contains("tenant=\"acme\"") && all.contains("tenant=\"zeta\""));
    assert!(all.contains("prism_nodes_alive 2.0"), "{all}");
    assert!(
        all.contains("prism_api_calls_total{method=\"/prism.v1.Jobs/SubmitJob\",code=\"0\"} 5"),
        "{all}"
    );
    assert!(
        all.contains("prism_api_calls_total{method=\"/prism.v1.Jobs/ListJobs\",code=\"16\"} 1"),
        "{all}"
    );
    assert!(all.contains("prism_node_heartbeats_total"), "{all}");
    assert!(
        all.contains("prism_node_resources{resource=\"cpus\"} 2.0"),
        "{all}"
    );
    let (status, worker_all) = scrape(&mut at_worker, Some(&admin_secret)).await;
    assert_eq!(status, 200);
    assert!(
        worker_all.contains("prism_object_store_pulled_bytes_total "),
        "{worker_all}"
    );
    assert!(
        worker_all.contains("prism_node_resources{resource=\"cpus\"} 1.0"),
        "{worker_all}"
    );

    // A revoked token is refused at the head at once, and at the worker
    // (which answered it above) once its cached answer, 10 s at most,
    // expires.
    admin.revoke_token(&acme_viewer, "").await.unwrap();
    assert_eq!(scrape(&mut at_head, Some(&acme_viewer)).await.0, 401);
    let started = std::time::Instant::now();
    loop {
        let (status, _) = scrape(&mut at_worker, Some(&acme_viewer)).await;
        if status == 401 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "still {status}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
