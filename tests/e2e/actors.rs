//! Actors and named objects, on a live cluster.

use crate::support::{cluster, config, run_ok};
use prism_guests::TESTKIT;
use prism_host::head::EmbeddedCluster;
use serde_json::Value;

/// The (kind, message) pair a testkit report holds under `key`.
fn case(v: &Value, key: &str) -> (String, String) {
    let pair = &v[key];
    (
        pair[0]
            .as_str()
            .unwrap_or_else(|| panic!("no case {key} in {v}"))
            .to_string(),
        pair[1].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actor_failures_are_typed_and_restarts_follow_the_options() {
    let c = cluster(2.0);
    let v = run_ok(&c, TESTKIT, "actor_cases", "[]").await;

    let (kind, message) = case(&v, "ctor_error_first_call");
    assert_eq!(kind, "actor_died");
    assert!(message.contains("start must be >= 0, got -1"), "{message}");

    // An Err is the caller's error; the actor keeps its state.
    let (kind, message) = case(&v, "app_error");
    assert_eq!(kind, "application");
    assert!(message.contains("refused at 6"), "{message}");
    assert_eq!(case(&v, "after_app_error"), ("ok".into(), "6".into()));

    // A panic kills the instance; with a restart left it comes back from
    // its constructor, and the error says so.
    let (kind, message) = case(&v, "panic_restarts");
    assert_eq!(kind, "panic");
    assert!(
        message.contains("boom at 15") && message.contains("the actor was restarted"),
        "{message}"
    );
    assert_eq!(case(&v, "after_restart"), ("ok".into(), "10".into()));
    let (kind, message) = case(&v, "panic_no_restarts_left");
    assert_eq!(kind, "panic");
    assert!(message.contains("no restarts left"), "{message}");
    let (kind, message) = case(&v, "after_death");
    assert_eq!(kind, "actor_died");
    assert!(message.contains("died after a failed call"), "{message}");

    // An instance killed by its memory limit is a restart too.
    let (kind, message) = case(&v, "limit_restarts");
    assert_eq!(kind, "memory_limit_exceeded");
    assert!(message.contains("restarted"), "{message}");
    assert_eq!(case(&v, "after_limit"), ("ok".into(), "1".into()));

    // A trapped call is retried on the restarted actor within max_task_retries.
    assert_eq!(case(&v, "task_retry"), ("ok".into(), "1".into()));
    assert_eq!(case(&v, "no_task_retry").0, "trap");

    // exit_actor: the call's result arrives, later calls fail.
    assert_eq!(case(&v, "exit_result"), ("ok".into(), "7".into()));
    let (kind, message) = case(&v, "after_exit");
    assert_eq!(kind, "actor_died");
    assert!(message.contains("exited"), "{message}");

    let (kind, message) = case(&v, "after_kill");
    assert_eq!(kind, "actor_died");
    assert!(message.contains("killed"), "{message}");

    // Killing an actor interrupts the call it is running.
    let (kind, message) = case(&v, "kill_running");
    assert_eq!(kind, "actor_died", "{message}");
    let ms: u64 = message
        .rsplit(" after ")
        .next()
        .unwrap()
        .trim_end_matches(" ms")
        .parse()
        .unwrap();
    assert!(ms < 2_000, "{message}");

    // A persistent actor restarts from its saved state, not its constructor.
    assert_eq!(case(&v, "saver_panic").0, "panic");
    assert_eq!(case(&v, "saver_after_restart"), ("ok".into(), "105".into()));

    // Handles travel to other actors, which call them.
    assert_eq!(case(&v, "actor_calls_actor"), ("ok".into(), "3".into()));
    assert_eq!(case(&v, "callee_state"), ("ok".into(), "3".into()));

    assert_eq!(case(&v, "forged_handle").0, "actor_died");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_actors_are_scoped_to_namespaces_and_detached_ones_outlive_their_job() {
    let c = cluster(2.0);
    let created = run_ok(&c, TESTKIT, "actor_names", r#"["create"]"#).await;
    assert_eq!(case(&created, "detached"), ("ok".into(), "1".into()));
    assert_eq!(
        case(&created, "same_job_lookup"),
        ("ok".into(), "true".into())
    );
    assert_eq!(
        case(&created, "wrong_class").0,
        "actor_not_found",
        "a Saver lookup does not find a Kit"
    );

    let found = run_ok(&c, TESTKIT, "actor_names", r#"["find"]"#).await;
    assert_eq!(
        case(&found, "detached_value"),
        ("ok".into(), "1".into()),
        "{found}"
    );
    assert_eq!(
        case(&found, "owned").0,
        "actor_not_found",
        "the non-detached actor ended with its job: {found}"
    );
    assert_eq!(case(&found, "other_namespace").0, "actor_not_found");
    let (kind, message) = case(&found, "name_taken");
    assert_eq!(kind, "actor_name_taken");
    assert!(message.contains("already exists"), "{message}");
    assert_eq!(
        case(&found, "get_or_create_existing"),
        ("ok".into(), "1".into())
    );

    // A job in another namespace does not see the name.
    let args = prism_host::values::json_args(r#"["find"]"#).unwrap();
    let elsewhere = c
        .run_in("elsewhere", TESTKIT, "actor_names", args)
        .await
        .unwrap();
    let v = prism_host::values::msgpack_to_json(&elsewhere.result.unwrap()).unwrap();
    assert_eq!(case(&v, "detached_value").0, "actor_not_found", "{v}");

    let cleaned = run_ok(&c, TESTKIT, "actor_names", r#"["cleanup"]"#).await;
    assert_eq!(case(&cleaned, "gone").0, "actor_not_found");
    assert_eq!(c.node().actors().live(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actor_pools_return_in_order_unordered_and_by_map() {
    // A CPU per actor and one for the driver: the three calls of the
    // unordered case run at once whatever order their turns are queued
    // in (with fewer, the 200 ms call's turn may come before the 0 ms
    // one's on a shared CPU).
    let c = cluster(4.0);
    let v = run_ok(&c, TESTKIT, "pool_cases", "[]").await;
    assert_eq!(v[0], serde_json::json!([1, 2, 3, 4, 5]));
    assert_eq!(v[1][0], 2, "the fastest call comes first unordered: {v}");
    let mut unordered: Vec<i64> = v[1]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    unordered.sort();
    assert_eq!(unordered, vec![1, 2, 3]);
    assert_eq!(v[2], serde_json::json!([1, 4, 9, 16, 25, 36]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_objects_live_across_jobs_and_durable_ones_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(2.0);
    cfg.data_dir = Some(dir.path().to_path_buf());
    {
        let c = EmbeddedCluster::start(cfg.clone()).unwrap();
        let put = run_ok(&c, TESTKIT, "named_cases", r#"["put"]"#).await;
        assert_eq!(case(&put, "list").1, r#"["disk/b", "mem/a", "mem/c"]"#);
        assert_eq!(case(&put, "list_prefix").1, r#"["mem/a", "mem/c"]"#);
        let got = run_ok(&c, TESTKIT, "named_cases", r#"["get"]"#).await;
        assert_eq!(case(&got, "mem_a"), ("ok".into(), "1".into()));
        assert_eq!(case(&got, "disk_b"), ("ok".into(), "2".into()));
        assert!(case(&got, "missing").1.contains("not found"), "{got}");
        // Another namespace sees none of them.
        let args = prism_host::values::json_args(r#"["get"]"#).unwrap();
        let other = c
            .run_in("elsewhere", TESTKIT, "named_cases", args)
            .await
            .unwrap();
        let other = prism_host::values::msgpack_to_json(&other.result.unwrap()).unwrap();
        assert_eq!(case(&other, "list").1, "[]");
        assert!(
            c.shutdown(std::time::Duration::from_secs(10)).await,
            "the node let go"
        );
    }
    // Restart with the same data directory: memory is gone, durable is not.
    let c = EmbeddedCluster::start(cfg).unwrap();
    let got = run_ok(&c, TESTKIT, "named_cases", r#"["get"]"#).await;
    assert!(case(&got, "mem_a").1.contains("not found"), "{got}");
    assert_eq!(case(&got, "disk_b"), ("ok".into(), "2".into()));
    let deleted = run_ok(&c, TESTKIT, "named_cases", r#"["delete"]"#).await;
    assert_eq!(case(&deleted, "first"), ("ok".into(), "true".into()));
    assert_eq!(case(&deleted, "second"), ("ok".into(), "false".into()));
    assert_eq!(case(&deleted, "list").1, "[]");
}
