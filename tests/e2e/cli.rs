//! The `prism` binary, run as a real process.

use std::process::{Command, Output};

fn prism(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prism"))
        .args(args)
        .env("PRISM_LOG", "warn")
        .output()
        .expect("prism runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn run_prints_the_drivers_result_as_json() {
    let out = prism(&[
        "run",
        prism_guests::HELLO_PATH,
        "--args",
        r#"["CLI"]"#,
        "--cpus",
        "1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value, "Hello, CLI, from a Prism task!");
}

#[test]
fn run_prints_the_job_log_to_stderr_unless_quiet() {
    let out = prism(&["run", prism_guests::TESTKIT_PATH, "--entry", "chatty"]);
    assert!(out.status.success());
    assert!(
        text(&out.stderr).contains("[chatter stdout] stdout line from task"),
        "{}",
        text(&out.stderr)
    );
    let quiet = prism(&[
        "run",
        prism_guests::TESTKIT_PATH,
        "--entry",
        "chatty",
        "--quiet",
    ]);
    assert!(!text(&quiet.stderr).contains("stdout line"));
}

#[test]
fn a_failed_job_exits_1_with_a_readable_message() {
    let out = prism(&[
        "run",
        prism_guests::TESTKIT_PATH,
        "--entry",
        "failing_driver",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("failed (application): the driver refused"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_malformed_module_exits_1_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.wasm");
    std::fs::write(&path, b"\0asm\x01\0\0\0\x01\xff").unwrap();
    let out = prism(&["run", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("invalid_module"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_usage_exits_2() {
    let out = prism(&["run", "/nonexistent/module.wasm"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read /nonexistent/module.wasm"));
    let out = prism(&["run", prism_guests::HELLO_PATH, "--args", "[1,"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--args"));
    let out = prism(&["run", prism_guests::HELLO_PATH, "--cpus", "-1"]);
    assert_eq!(out.status.code(), Some(2));
    let out = prism(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn inspect_lists_drivers_and_tasks() {
    let out = prism(&["inspect", prism_guests::TREE_REDUCE_PATH, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["drivers"], serde_json::json!(["main"]));
    assert_eq!(value["tasks"], serde_json::json!(["sum_range"]));
    assert!(value["module"].as_str().unwrap().starts_with("sha256:"));
    let out = prism(&["inspect", prism_guests::HELLO_PATH]);
    assert!(text(&out.stdout).contains("tasks   greet"));
}

#[test]
fn inspect_lists_actor_classes_and_run_takes_a_namespace() {
    let out = prism(&["inspect", prism_guests::ACCOUNT_PATH]);
    assert!(
        text(&out.stdout).contains("actor   Account (persistent): balance, deposit, withdraw"),
        "{}",
        text(&out.stdout)
    );
    let out = prism(&[
        "run",
        prism_guests::ACCOUNT_PATH,
        "--namespace",
        "bank",
        "--args",
        r#"["carol"]"#,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["restored"], true);
}

#[test]
fn run_with_stats_reports_the_object_store() {
    let out = prism(&["run", prism_guests::HELLO_PATH, "--stats", "--quiet"]);
    assert!(out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("\"bytes_in_memory\""), "{err}");
}

#[test]
fn status_lists_resources_and_gpus() {
    let out = prism(&["status", "--cpus", "3", "--resources", r#"{"ssd": 2}"#]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("cpu=3"), "{stdout}");
    assert!(stdout.contains("ssd=2"), "{stdout}");
    assert!(stdout.contains("GPU="), "no GPU offered: {stdout}");
    assert!(stdout.contains("gpu 0"), "{stdout}");

    let out = prism(&["status", "--json", "--no-gpus"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v[0]["gpus"], serde_json::json!([]));
    assert!(!v[0]["total"].as_str().unwrap().contains("GPU"), "{v}");

    // GPU is discovered, never declared.
    let out = prism(&["status", "--resources", r#"{"GPU": 4}"#]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("GPU"), "{}", text(&out.stderr));
}

#[test]
fn demo_runs_every_example_and_checks_it() {
    let out = prism(&["demo", "--cpus", "2"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    for example in [
        "hello",
        "pi",
        "wordcount",
        "tree-reduce",
        "failures",
        "counter",
        "account",
        "tinystore/setup",
        "tinystore/query",
        "tinystore/teardown",
        "many-models/train_all",
        "many-models/predict_all",
        "many-models/cleanup",
        "gpu-saxpy",
        "gpu-matmul",
        "gpu-inference",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(example) && l.contains(" ok ")),
            "{example} not ok in:\n{stdout}"
        );
    }
}
