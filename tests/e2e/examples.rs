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

/// The failures example's report of `case`.
fn case<'a>(report: &'a serde_json::Value, case: &str) -> &'a serde_json::Value {
    report
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["case"] == case)
        .unwrap_or_else(|| panic!("no case {case} in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_built_with_line_tables_panics_with_file_and_line() {
    let c = cluster(2.0);
    let v = run_ok(&c, guests::FAILURES_WITH_DWARF, "main", "[]").await;
    let m = case(&v, "panic")["message"].as_str().unwrap();
    assert!(m.contains("wasm backtrace"), "{m}");
    // The frame of the guest's own function names its source line
    // (`at <file>:<line>:<column>` under the frame).
    let located = |m: &str| {
        m.lines()
            .any(|l| l.trim_start().starts_with("at ") && l.contains("failures/src/lib.rs:"))
    };
    assert!(located(m), "{m}");
    // The same module without line tables has names only.
    let v = run_ok(&c, guests::FAILURES, "main", "[]").await;
    let m = case(&v, "panic")["message"].as_str().unwrap();
    assert!(!located(m), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_example_reports_each_typed_error_and_keeps_serving() {
    let c = cluster(2.0);
    let v = run_ok(&c, guests::FAILURES, "main", "[]").await;
    let kind = |name: &str| {
        let o = case(&v, name);
        (
            o["error_kind"].clone(),
            o["message"].as_str().unwrap().to_string(),
        )
    };
    let (k, m) = kind("panic");
    assert_eq!(k, "panic");
    assert!(m.contains("the guest gave up"), "{m}");
    // With the guest's frames, named from its name section.
    assert!(m.contains("wasm backtrace"), "{m}");
    assert!(m.contains("panics"), "names the task's function: {m}");
    let panic = case(&v, "panic");
    assert_eq!(panic["origin_function"], "panics");
    assert_eq!(
        panic["origin_output"],
        serde_json::json!(["about to give up: the guest gave up"])
    );
    // An error that flows through the graph keeps its chain.
    let (k, m) = kind("chained");
    assert_eq!(k, "panic");
    assert!(
        m.contains("argument 0 failed because task panics (")
            && m.contains("the first task gave up"),
        "{m}"
    );
    let chained = case(&v, "chained");
    assert_eq!(
        chained["origin_function"], "double",
        "the task that could not run"
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_runs_calls_in_fifo_order_and_shares_its_handle() {
    let c = cluster(2.0);
    let v = run_ok(&c, guests::COUNTER, "main", "[10]").await;
    assert_eq!(
        v["running_sums"],
        serde_json::json!([1, 3, 6, 10, 15, 21, 28, 36, 45, 55])
    );
    assert_eq!(v["fifo"], true);
    assert_eq!(v["after_task"], 60);
    assert_eq!(v["value"], 60);
    assert_eq!(v["history_len"], 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_refuses_with_typed_errors_and_persists_across_kill() {
    let c = cluster(2.0);
    let v = run_ok(&c, guests::ACCOUNT, "main", r#"["bob"]"#).await;
    assert_eq!(v["balance_before_kill"], serde_json::json!([1300, 2]));
    assert_eq!(
        v["negative_error"],
        serde_json::json!({"NegativeAmount": -5})
    );
    assert_eq!(
        v["overdraft_error"],
        serde_json::json!({"Overdraft": {"balance": 1300, "requested": 5000, "minimum": 100}})
    );
    assert_eq!(v["overdraft_origin"], "Account.withdraw");
    assert_eq!(v["call_after_kill"], "actor_died");
    assert_eq!(v["restored"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tinystore_outlives_the_job_that_created_it() {
    let c = cluster(2.0);
    let features = run_ok(&c, guests::TINYSTORE, "setup", "[]").await;
    assert_eq!(features, serde_json::json!(["errors", "latency_ms"]));
    let v = run_ok(&c, guests::TINYSTORE, "query", "[]").await;
    assert_eq!(v["latency_mean"], 50.5);
    assert_eq!(v["latency_max"], 100.0);
    assert_eq!(v["errors_max"], 5.0);
    assert!(
        v["unknown"]
            .as_str()
            .unwrap()
            .contains("unknown aggregation"),
        "{v}"
    );
    assert_eq!(run_ok(&c, guests::TINYSTORE, "teardown", "[]").await, true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_models_are_stored_by_name_and_served_by_a_later_job() {
    let c = cluster(2.0);
    let trained = run_ok(&c, guests::MANY_MODELS, "train_all", "[60, 128, 100]").await;
    assert_eq!(trained["stored"], 60);
    assert!(
        trained["worst_coefficient_error"].as_f64().unwrap() < 0.05,
        "{trained}"
    );
    let predicted = run_ok(&c, guests::MANY_MODELS, "predict_all", "[60]").await;
    assert_eq!(predicted["matches_direct"], true, "{predicted}");
    assert_eq!(run_ok(&c, guests::MANY_MODELS, "cleanup", "[]").await, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_converter_answers_http_requests_as_tasks() {
    let c = cluster(2.0);
    let v = run_ok(&c, guests::CONVERTER, "main", "[]").await;
    let answers: Vec<(u64, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a[0].as_u64().unwrap(), a[1].as_str().unwrap().to_string()))
        .collect();
    let expect = |i: usize, status: u64, body: &str| {
        assert_eq!(answers[i].0, status, "request {i}: {answers:?}");
        assert!(answers[i].1.contains(body), "request {i}: {answers:?}");
    };
    expect(0, 200, r#"{"Fahrenheit temperature":212.0}"#);
    expect(1, 200, r#"{"Celsius temperature":37.77777777777778}"#);
    expect(2, 200, r#"{"Unknown conversion code":"CC"}"#);
    expect(3, 400, "query parameter `temp`=\"hot\"");
    expect(4, 200, r#"{"Fahrenheit temperature":212.0}"#);
    expect(5, 200, r#"{"Celsius temperature":100.0}"#);
    expect(6, 404, "not found");
    expect(7, 405, "method POST is not allowed here");

    // As the host calls it: a request encoded with prism_abi::http
    // reaches the handler as an argument, and its answer decodes.
    let request = prism_abi::http::Request {
        method: "GET".into(),
        path: "/".into(),
        query: vec![
            ("temp".into(), "100.0".into()),
            ("type".into(), "CF".into()),
        ],
        headers: vec![("accept".into(), "application/json".into())],
        body: Vec::new(),
    };
    let arg = prism_abi::encode_value(&request).unwrap();
    let outcome = c
        .run(guests::CONVERTER, "converter", vec![arg.into()])
        .await
        .unwrap();
    let response: prism_abi::http::Response =
        rmp_serde::from_slice(&outcome.result.unwrap()).unwrap();
    assert_eq!(response.status, 200);
    assert!(response.status_is_valid());
    assert!(
        response
            .headers
            .contains(&("content-type".into(), "application/json".into()))
    );
    assert_eq!(response.body, br#"{"Fahrenheit temperature":212.0}"#);
}
