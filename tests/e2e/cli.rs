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
fn run_shows_the_job_log_as_it_is_written() {
    use std::io::{BufRead, BufReader};
    let started = std::time::Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_prism"))
        .args([
            "run",
            prism_guests::TESTKIT_PATH,
            "--entry",
            "print_then_sleep",
            "--args",
            "[2000]",
            "--cpus",
            "1",
        ])
        .env("PRISM_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("prism runs");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut lines = Vec::new();
    while !lines
        .iter()
        .any(|l: &String| l.contains("line from before the sleep"))
    {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "{lines:?}");
        lines.push(line);
    }
    let seen_after = started.elapsed();
    // The driver's own line first, while it still runs.
    assert!(lines[0].contains("printed before the sleep"), "{lines:?}");
    let out = child.wait_with_output().unwrap();
    let ended_after = started.elapsed();
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).trim(), "2000");
    // Both lines came while the driver slept its 2 s, not at the end.
    assert!(
        ended_after - seen_after >= std::time::Duration::from_millis(1500),
        "line after {seen_after:?}, end after {ended_after:?}"
    );
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
        "converter",
        "serve/converter",
        "serve/gpu-inference",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(example) && l.contains(" ok ")),
            "{example} not ok in:\n{stdout}"
        );
    }
}

/// The raw characters that must never reach a terminal from a guest.
fn has_terminal_controls(text: &str) -> bool {
    text.contains(|c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    })
}

#[test]
fn guest_text_reaches_the_terminal_escaped() {
    // A task's output with escape codes: clear the screen, set the title,
    // a C1 CSI, a carriage return forging a line, a bidi override.
    let hostile = "\u{1b}[2J\u{1b}]0;pwned\u{7}\u{9b}31m\r[main prism] forged\u{202e}";
    let args = serde_json::to_string(&[hostile]).unwrap();
    let out = prism(&[
        "run",
        prism_guests::TESTKIT_PATH,
        "--entry",
        "chatter",
        "--args",
        &args,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(!has_terminal_controls(&err), "{err:?}");
    assert!(
        err.contains(r"[chatter stdout] stdout line from \x1b[2J\x1b]0;pwned\x07\u{9b}31m\r[main prism] forged\u{202e}"),
        "{err}"
    );

    // A result with them is printed as JSON that escapes them too, and
    // still parses to the same value.
    let out = prism(&[
        "run",
        prism_guests::TESTKIT_PATH,
        "--entry",
        "echo",
        "--args",
        &args,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(!has_terminal_controls(&stdout), "{stdout:?}");
    let value: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(value, hostile);
}

/// Runs `prism` with stdout into a pipe whose reader is already gone.
fn prism_into_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_prism"))
        .args(args)
        .env("PRISM_LOG", "warn")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("prism runs")
}

#[test]
fn a_closed_stdout_ends_quietly() {
    for args in [
        &["inspect", prism_guests::TESTKIT_PATH][..],
        &["run", prism_guests::HELLO_PATH, "--quiet"][..],
        &["status", "--no-gpus"][..],
    ] {
        let out = prism_into_closed_pipe(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
}

#[test]
fn gpu_discovery_prints_nothing_on_a_headless_machine() {
    // Mesa's device-select layer made libwayland print
    // `error: XDG_RUNTIME_DIR is invalid or not set` twice here.
    let out = Command::new(env!("CARGO_BIN_EXE_prism"))
        .args(["status", "--json"])
        .env("PRISM_LOG", "warn")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("NODEVICE_SELECT")
        .env_remove("MESA_VK_DEVICE_SELECT")
        .env_remove("DRI_PRIME")
        .output()
        .expect("prism runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(!err.contains("XDG_RUNTIME_DIR"), "{err}");
}
