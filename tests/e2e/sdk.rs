//! The SDK's contracts, exercised by the `testkit` guest on a live cluster.

use crate::support::{cluster, config, run, run_ok, run_outcome};
use prism_abi::ErrorKind;
use prism_guests::TESTKIT;
use prism_host::cluster::LogSource;
use prism_host::head::EmbeddedCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_follows_rays_contract_in_every_edge_case() {
    let c = cluster(2.0);
    let v = run_ok(&c, TESTKIT, "wait_cases", "[]").await;
    for field in [
        "empty_is_immediate",
        "too_many_is_invalid",
        "zero_is_invalid",
        "duplicates_are_invalid",
        "fast_before_slow",
        "timeout_returns_pending",
        "zero_timeout_is_immediate",
        "ready_capped_at_num_returns",
        "order_preserved",
        "errors_count_as_ready",
    ] {
        assert_eq!(v[field], true, "{field}: {v}");
    }
    let waited = v["timeout_elapsed_ms"].as_u64().unwrap();
    assert!(
        (90..2_000).contains(&waited),
        "a 100 ms timeout waited {waited} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_timeout_is_typed_and_the_task_keeps_running() {
    let c = cluster(2.0);
    let v = run_ok(&c, TESTKIT, "get_timeout_case", "[]").await;
    assert_eq!(v["first"], "timeout");
    assert!(v["elapsed_ms"].as_u64().unwrap() < 450, "{v}");
    assert_eq!(v["then_value"], 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_waiting_and_running_tasks_but_not_finished_ones() {
    let c = cluster(2.0);
    let v = run_ok(&c, TESTKIT, "cancel_cases", "[]").await;
    assert_eq!(v["queued"], "cancelled");
    assert_eq!(v["cancelled_is_typed"], true);
    assert_eq!(v["running"], "cancelled");
    assert!(v["running_cancel_ms"].as_u64().unwrap() < 1_000, "{v}");
    assert_eq!(v["finished"], "value 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refs_resolve_as_arguments_but_not_inside_data() {
    let c = cluster(2.0);
    let v = run_ok(&c, TESTKIT, "refs_cases", "[]").await;
    assert_eq!(v["resolved_arg"], 13);
    assert_eq!(v["nested_sum"], 10);
    assert_eq!(v["put_value"], 42);
    assert_eq!(v["big_arg_len"], 1 << 20);
    assert_eq!(v["forged"], "object_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_errors_carry_their_serialized_value() {
    let c = cluster(2.0);
    let v = run_ok(&c, TESTKIT, "payload_case", "[]").await;
    assert_eq!(v, "insufficient funds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_requests_fail_at_once_as_unschedulable() {
    let c = cluster(2.0);
    let started = std::time::Instant::now();
    let v = run_ok(&c, TESTKIT, "unschedulable", "[]").await;
    assert_eq!(
        v,
        serde_json::json!(["unschedulable", "unschedulable", "unschedulable"])
    );
    assert!(started.elapsed().as_secs() < 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_from_config_are_schedulable() {
    let mut cfg = config(2.0);
    cfg.resources.insert("gadget".into(), 1.0);
    let c = EmbeddedCluster::start(cfg).unwrap();
    // Eight tasks share one gadget, one at a time.
    assert_eq!(run_ok(&c, TESTKIT, "gadget", "[8]").await, 28);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_does_not_deadlock_one_cpu() {
    let c = cluster(1.0);
    assert_eq!(run_ok(&c, TESTKIT, "deep", "[150]").await, 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_stderr_and_log_lines_reach_the_job_log() {
    let c = cluster(2.0);
    let outcome = run_outcome(&c, TESTKIT, "chatty", "[]").await;
    assert!(outcome.result.is_ok());
    let has = |source: LogSource, function: &str, text: &str| {
        outcome
            .logs
            .iter()
            .any(|l| l.source == source && l.function == function && l.text == text)
    };
    assert!(
        has(LogSource::Stdout, "chatty", "driver says hi"),
        "{:?}",
        outcome.logs
    );
    assert!(has(LogSource::Stdout, "chatter", "stdout line from task"));
    assert!(has(LogSource::Stderr, "chatter", "stderr line from task"));
    assert!(has(LogSource::Guest, "chatter", "log line from task"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_driver_fails_the_job_with_its_message() {
    let c = cluster(2.0);
    let err = run(&c, TESTKIT, "failing_driver", "[]").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Application);
    assert_eq!(err.message, "the driver refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_end_cancels_its_tasks_and_frees_its_objects() {
    let c = cluster(2.0);
    assert_eq!(run_ok(&c, TESTKIT, "abandon", "[5]").await, 5);
    let node = c.node();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let stats = node.objects().stats();
        let sched = node.scheduler().stats();
        if stats.objects == 0 && sched.pending == 0 && sched.running == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "left behind: {stats:?} {sched:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_round_trip_through_the_store() {
    let c = cluster(2.0);
    assert_eq!(run_ok(&c, TESTKIT, "big_object", "[64]").await, 64u64 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_over_capacity_spill_to_disk_and_come_back_intact() {
    let mut cfg = config(2.0);
    cfg.object_store_capacity = 256 << 10;
    let c = EmbeddedCluster::start(cfg).unwrap();
    // 40 objects of 32 KiB: 1.25 MiB into a 256 KiB store.
    let v = run_ok(&c, TESTKIT, "fill_store", "[40, 32]").await;
    let stats = &v[0];
    assert!(stats["spilled_objects"].as_u64().unwrap() >= 30, "{stats}");
    assert!(
        stats["bytes_in_memory"].as_u64().unwrap() <= 256 << 10,
        "{stats}"
    );
    assert_eq!(v[1], true, "every value read back intact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_can_be_a_plain_task_with_cli_arguments() {
    let c = cluster(2.0);
    assert_eq!(run_ok(&c, TESTKIT, "add", "[2, 3]").await, 5);
    let err = run(&c, TESTKIT, "add", r#"["two", 3]"#).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidArgument);
    let echoed = run_ok(&c, TESTKIT, "echo", r#"[{"a": [1, "b", null]}]"#).await;
    assert_eq!(echoed, serde_json::json!({"a": [1, "b", null]}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_errors_retry_up_to_max_retries_and_application_errors_never() {
    let c = cluster(2.0);
    let v = run_ok(&c, TESTKIT, "retry_cases", "[]").await;
    // Three attempts (1 + max_retries 2), all trapped.
    assert_eq!(v[0], serde_json::json!(["trap", 3]));
    // Succeeded on attempt 2 (the third), within max_retries 3.
    assert_eq!(v[1], serde_json::json!(["ok", 2]));
    // A panic is the guest's own error: one attempt despite the default 3 retries.
    assert_eq!(v[2], serde_json::json!(["panic", 1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_get_no_files_env_or_stdin_and_fresh_instances_on_request() {
    let c = cluster(2.0);
    let v = run_ok(&c, TESTKIT, "sandbox_probe", "[]").await;
    assert!(
        v["read_passwd"].as_str().unwrap().starts_with("denied"),
        "{v}"
    );
    assert!(
        v["list_root"].as_str().unwrap().starts_with("denied"),
        "{v}"
    );
    assert_eq!(v["env_vars"], 0);
    assert_ne!(v["stdin"].as_str().unwrap().get(..4), Some("READ"), "{v}");
    assert_eq!(v["args"], serde_json::json!(["sandbox_probe"]));
    assert_eq!(
        v["counts"],
        serde_json::json!([1, 1]),
        "max_calls(1): a fresh instance per call"
    );
    // A guest parked in a WASI sleep is still stopped at its deadline.
    assert_eq!(v["sleep_past_deadline"], "deadline_exceeded");
    assert!(v["sleep_elapsed_ms"].as_u64().unwrap() < 5_000, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_of_a_job_share_warm_instances_until_a_failure_or_their_limit() {
    let c = cluster(2.0);
    // (how, max_calls): how 0 returns the instance's call count, 1 fails
    // with an application error, 2 traps, 3 leaks 32 MiB first.
    let calls =
        r#"["", [[0,0],[0,0],[1,0],[0,0],[2,0],[0,0],[0,1],[0,0],[0,3],[0,0],[3,0],[0,0]]]"#;
    let v = run_ok(&c, TESTKIT, "warm_counts", calls).await;
    assert_eq!(
        v,
        serde_json::json!([1, 2, -1, 4, -1, 1, 1, 2, 3, 1, 2, 1]),
        "reused; kept after an application error; fresh after a trap; \
         max_calls(1) fresh; max_calls(3) ends the instance; 32 MiB not kept"
    );
    // A new job never sees the last one's instances.
    let again = run_ok(&c, TESTKIT, "warm_counts", r#"["", [[0,0],[0,0]]]"#).await;
    assert_eq!(again, serde_json::json!([1, 2]));
    assert_eq!(c.node().runtime().warm_instances(), 0, "dropped at job end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_releases_ready_objects_and_leaves_pending_ones() {
    let c = cluster(2.0);
    let v = run_ok(&c, TESTKIT, "free_cases", "[]").await;
    let large = 3 << 20;
    assert_eq!(
        v,
        serde_json::json!([
            "1",
            "object_not_found",
            "0",
            format!("{large}:1"),
            "object_not_found",
            "0",
            "ok",
            "1",
            "1",
            "object_not_found",
            "true",
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_fast_path_round_trips_and_agrees_with_the_generic_one() {
    let c = cluster(2.0);
    for kb in ["[0]", "[1]", "[300]"] {
        let v = run_ok(&c, TESTKIT, "blob_cases", kb).await;
        for (case, ok) in v.as_object().unwrap() {
            assert_eq!(ok, true, "{case} with {kb} KiB: {v}");
        }
    }
}
