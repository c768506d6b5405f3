//! The head as a real process: `prism init`, `prism start --head`, and the
//! API over TLS with bearer tokens, driven by the Rust client.

use super::procs::{HeadProcess, admin_token, client, init, start_head};
use prism_client::{Client, ClientConfig, ClientError};
use prism_host::security::{ClusterFiles, Role, TokenAuthority};
use std::time::Duration;
use tonic::Code;

fn config(head: &HeadProcess, files: &ClusterFiles, token: &str) -> ClientConfig {
    ClientConfig {
        address: head.address.clone(),
        token: token.to_string(),
        ca_pem: std::fs::read(files.ca_cert()).unwrap(),
    }
}

fn code(e: ClientError) -> (Code, String) {
    match e {
        ClientError::Status(s) => (s.code(), s.message().to_string()),
        other => panic!("expected a status, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_submitted_over_tls_runs_and_its_record_follows_it() {
    let dir = tempfile::tempdir().unwrap();
    let files = init(&dir.path().join("state"));
    let head = start_head(files.dir());
    let mut c = client(&head, &files, &admin_token(&files)).await;

    let up = c.upload_module(prism_guests::HELLO.to_vec()).await.unwrap();
    assert!(up.hash.starts_with("sha256:"));
    assert!(!up.existed);
    // Content-addressed: the same bytes again are not stored twice.
    assert!(
        c.upload_module(prism_guests::HELLO.to_vec())
            .await
            .unwrap()
            .existed
    );

    let job = c.submit(&up.hash, "main", r#"["Ada"]"#, "").await.unwrap();
    let result = c.result(&job.id, true).await.unwrap();
    assert_eq!(result.value_json, r#""Hello, Ada, from a Prism task!""#);
    let info = c.job(&job.id).await.unwrap();
    assert_eq!(info.state, prism_client::v1::JobState::Succeeded as i32);
    assert_eq!(info.submitted_by, "admin");
    assert!(info.ended_at_ms >= info.submitted_at_ms);

    // Logs come back with their source.
    let tk = c
        .upload_module(prism_guests::TESTKIT.to_vec())
        .await
        .unwrap();
    let chatty = c.submit(&tk.hash, "chatty", "[]", "").await.unwrap();
    let logs = c.logs(&chatty.id).await.unwrap();
    assert!(
        logs.iter()
            .any(|l| l.source == "stdout" && l.function == "chatty" && l.text == "driver says hi"),
        "{logs:?}"
    );

    // A task called directly, without a driver; then one stopped midway.
    let add = c.submit(&tk.hash, "add", "[2, 40]", "").await.unwrap();
    assert_eq!(c.result(&add.id, true).await.unwrap().value_json, "42");
    let sleeper = c
        .submit(&tk.hash, "sleep_then", "[60000, 1]", "")
        .await
        .unwrap();
    let stopped = c.stop(&sleeper.id).await.unwrap();
    assert_eq!(
        stopped.state,
        prism_client::v1::JobState::Stopped as i32,
        "{stopped:?}"
    );

    let listed = c.list().await.unwrap();
    assert_eq!(listed.len(), 4);
    assert_eq!(listed[0].id, sleeper.id, "newest first");

    // Typed errors for bad requests.
    let (code_, _) = code(c.job("job-0000000000000000").await.unwrap_err());
    assert_eq!(code_, Code::NotFound);
    let (code_, _) = code(c.job("nonsense").await.unwrap_err());
    assert_eq!(code_, Code::InvalidArgument);
    let (code_, message) = code(
        c.submit(&up.hash, "main", "{not json", "")
            .await
            .unwrap_err(),
    );
    assert_eq!(code_, Code::InvalidArgument, "{message}");
    let (code_, _) = code(
        c.submit(&format!("sha256:{}", "0".repeat(64)), "main", "[]", "")
            .await
            .unwrap_err(),
    );
    assert_eq!(code_, Code::NotFound);

    let status = c.status().await.unwrap();
    assert_eq!(status.nodes.len(), 1);
    assert!(status.nodes[0].total.contains("cpu=2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_head_refuses_missing_expired_foreign_and_underprivileged_tokens_and_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let files = init(&dir.path().join("state"));
    let other = init(&dir.path().join("other"));
    let head = start_head(files.dir());
    let authority = TokenAuthority::load(&files).unwrap();

    // No token.
    let mut c = client(&head, &files, "").await;
    let (code_, message) = code(c.list().await.unwrap_err());
    assert_eq!(
        (code_, message.as_str()),
        (Code::Unauthenticated, "missing bearer token")
    );

    // Expired.
    let mut old = authority.claims_for("ada", Role::Developer, Duration::ZERO);
    old.iat -= 7200;
    old.exp -= 3600;
    let expired = authority.issue_claims(&old).unwrap();
    let (code_, message) = code(
        client(&head, &files, &expired)
            .await
            .list()
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code_, message.as_str()),
        (Code::Unauthenticated, "token expired")
    );

    // Signed by another cluster's key.
    let foreign = std::fs::read_to_string(other.admin_token()).unwrap();
    let (code_, message) = code(
        client(&head, &files, foreign.trim())
            .await
            .list()
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code_, message.as_str()),
        (Code::Unauthenticated, "invalid token")
    );

    // A viewer reads but does not write.
    let viewer = authority
        .issue("val", Role::Viewer, Duration::from_secs(60))
        .unwrap();
    let mut v = client(&head, &files, &viewer).await;
    assert!(v.list().await.unwrap().is_empty());
    let (code_, _) = code(
        v.upload_module(prism_guests::HELLO.to_vec())
            .await
            .unwrap_err(),
    );
    assert_eq!(code_, Code::PermissionDenied);

    // Plaintext gRPC to the TLS port gets nowhere.
    let plain = head.address.replace("https://", "http://");
    let channel = tonic::transport::Endpoint::from_shared(plain)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await;
    if let Ok(channel) = channel {
        let mut raw = prism_client::v1::jobs_client::JobsClient::new(channel);
        assert!(
            raw.list_jobs(prism_client::v1::ListJobsRequest {})
                .await
                .is_err()
        );
    }
    // The client refuses plaintext addresses outright.
    let mut cfg = config(&head, &files, &admin_token(&files));
    cfg.address = cfg.address.replace("https://", "http://");
    assert!(matches!(
        Client::connect(&cfg).await,
        Err(ClientError::Config(_))
    ));

    // A client that trusts another CA does not trust this head.
    let mut cfg = config(&head, &files, &admin_token(&files));
    cfg.ca_pem = std::fs::read(other.ca_cert()).unwrap();
    assert!(matches!(
        Client::connect(&cfg).await,
        Err(ClientError::Connect { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_killed_and_restarted_keeps_its_modules_and_job_records() {
    let dir = tempfile::tempdir().unwrap();
    let files = init(&dir.path().join("state"));
    let token = admin_token(&files);
    let (hello, sleeper, hash) = {
        let head = start_head(files.dir());
        let mut c = client(&head, &files, &token).await;
        let hash = c
            .upload_module(prism_guests::TESTKIT.to_vec())
            .await
            .unwrap()
            .hash;
        let done = c.submit(&hash, "add", "[1, 2]", "").await.unwrap();
        // Once a result has been read, its record is durable.
        assert_eq!(c.result(&done.id, true).await.unwrap().value_json, "3");
        let running = c
            .submit(&hash, "sleep_then", "[60000, 1]", "")
            .await
            .unwrap();
        (done.id, running.id, hash)
        // The head is killed (SIGKILL) here.
    };
    let head = start_head(files.dir());
    let mut c = client(&head, &files, &token).await;

    let done = c.result(&hello, false).await.unwrap();
    assert_eq!(done.value_json, "3");
    assert_eq!(
        done.job.unwrap().state,
        prism_client::v1::JobState::Succeeded as i32
    );
    let lost = c.job(&sleeper).await.unwrap();
    assert_eq!(lost.state, prism_client::v1::JobState::Failed as i32);
    assert_eq!(lost.error_kind, "worker_died");
    assert_eq!(c.list().await.unwrap().len(), 2);

    // The module is still there: no upload needed.
    let again = c.submit(&hash, "add", "[20, 22]", "").await.unwrap();
    assert_eq!(c.result(&again.id, true).await.unwrap().value_json, "42");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_jobs_log_streams_as_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let files = init(&dir.path().join("state"));
    let head = start_head(files.dir());
    let mut c = client(&head, &files, &admin_token(&files)).await;
    let module = c
        .upload_module(prism_guests::TESTKIT.to_vec())
        .await
        .unwrap()
        .hash;
    // Five lines, 400 ms apart: about two seconds in all.
    let job = c.submit(&module, "slow_log", "[5, 400]", "").await.unwrap();
    let mut watcher = c.clone();
    let mut seen = Vec::new();
    c.follow_logs(&job.id, |line| {
        seen.push(line.text.clone());
        if seen.len() == 1 {
            // The first line arrives while the job still runs.
            let id = job.id.clone();
            let state = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(watcher.job(&id))
            })
            .unwrap()
            .state;
            assert_eq!(state, prism_client::v1::JobState::Running as i32);
        }
    })
    .await
    .unwrap();
    let expected: Vec<String> = (0..5).map(|i| format!("line {i}")).collect();
    assert_eq!(seen, expected);
}
