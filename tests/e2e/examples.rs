//! Every guest example runs with a correct result.

use crate::support::{cluster, run_ok};
use prism_guests as guests;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_greets_by_name_and_defaults_to_world() {
    let c = cluster(2.0);
    let v = run_ok(&c, guests::HELLO, "main", r#"["Ada"]"#).await;
    assert_eq!(v, "Hello, Ada, from a Prism task!");
    let v = run_ok(&c, guests::HELLO, "main", "[null]").await;
    assert_eq!(v, "Hello, world, from a Prism task!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pi_fans_out_100_seeded_tasks_within_a_hundredth() {
    let c = cluster(2.0);
    let v = run_ok(&c, guests::PI, "main", "[100, 20000]").await;
    assert_eq!(v["tasks"], 100);
    let pi = v["pi"].as_f64().unwrap();
    assert!((pi - std::f64::consts::PI).abs() < 0.01, "pi = {pi}");
    // Seeded: the same inputs give the same estimate.
    let again = run_ok(&c, guests::PI, "main", "[100, 20000]").await;
    assert_eq!(again["pi"], v["pi"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wordcount_matches_a_direct_count() {
    let c = cluster(2.0);
    let v = run_ok(&c, guests::WORDCOUNT, "main", "[3]").await;
    assert_eq!(v["matches_direct_count"], true);
    assert!(v["chunks"].as_u64().unwrap() > 5);
    assert_eq!(v["top"][0][0], "the");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_reduce_is_exact_even_on_one_cpu() {
    // One CPU and 127 tasks that each block on two children: only works
    // because a blocked guest gives its CPU back.
    let c = cluster(1.0);
    let v = run_ok(&c, guests::TREE_REDUCE, "main", "[65536, 1024]").await;
    assert_eq!(v["sum"], 2_147_450_880u64);
    assert_eq!(v["exact"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_example_reports_each_typed_error_and_keeps_serving() {
    let c = cluster(2.0);
    let v = run_ok(&c, guests::FAILURES, "main", "[]").await;
    let kind = |case: &str| {
        let o = v
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["case"] == case)
            .unwrap();
        (
            o["error_kind"].clone(),
            o["message"].as_str().unwrap().to_string(),
        )
    };
    let (k, m) = kind("panic");
    assert_eq!(k, "panic");
    assert!(m.contains("the guest gave up"), "{m}");
    let (k, m) = kind("error");
    assert_eq!(k, "application");
    assert!(m.contains("cannot withdraw -5"), "{m}");
    assert_eq!(kind("trap").0, "trap");
    let (k, m) = kind("memory_bomb");
    assert_eq!(k, "memory_limit_exceeded");
    assert!(m.contains("67108864"), "names the limit: {m}");
    assert_eq!(kind("infinite_loop").0, "deadline_exceeded");
    let (k, m) = kind("flaky_retried");
    assert!(k.is_null());
    assert_eq!(m, "ok: 1", "succeeded on the second attempt");
    assert_eq!(kind("still_serving").1, "ok: 42");
}
