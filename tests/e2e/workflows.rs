//! Durable workflows across real processes: steps logged in the head's
//! redb and never recomputed — across kill -9 of the head —, retries,
//! caught failures, events delivered exactly once, durable timers,
//! virtual actors, staged pipelines and schedules; and the walls around
//! them: another tenant's workflows are not found, one tenant's flood
//! is bounded, bad input gets typed errors.

use crate::procs::{Process, admin_token, client, init, prism_cli, start_head_with};
use crate::serving::member;
use prism_client::v1::{
    ListWorkflowsRequest, ResumeWorkflowRequest, RunWorkflowRequest, SignalWorkflowRequest,
    StepInfo, VirtualActorRequest, WorkflowInfo, WorkflowOutputRequest, WorkflowRequest,
};
use prism_host::security::ClusterFiles;
use std::time::{Duration, Instant};

const HEAD_ARGS: &[&str] = &["--listen", "127.0.0.1:0", "--cpus", "2", "--no-gpus"];

struct Head {
    dir: tempfile::TempDir,
    files: ClusterFiles,
    head: Process,
    admin: prism_client::Client,
}

async fn head() -> Head {
    let dir = tempfile::tempdir().unwrap();
    let files: ClusterFiles = init(&dir.path().join("state"));
    let head = start_head_with(files.dir(), HEAD_ARGS);
    let admin = client(&head, &files, &admin_token(&files)).await;
    Head {
        dir,
        files,
        head,
        admin,
    }
}

/// A developer of a new tenant `name`, and the module's digest there.
async fn tenant(h: &mut Head, name: &str) -> (prism_client::Client, String, String) {
    h.admin.create_tenant(name, 1.0, "").await.unwrap();
    let (mut c, token) = member(&mut h.admin, &h.head, &h.files, name, "developer").await;
    let hash = c
        .upload_module(prism_guests::WORKFLOWS.to_vec())
        .await
        .unwrap()
        .hash;
    (c, token, hash)
}

async fn run(
    c: &mut prism_client::Client,
    hash: &str,
    id: &str,
    entry: &str,
    args: &str,
) -> Result<WorkflowInfo, tonic::Status> {
    c.workflows()
        .run_workflow(RunWorkflowRequest {
            id: id.into(),
            module_hash: hash.into(),
            entry: entry.into(),
            args_json: args.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

fn by_id(id: &str) -> WorkflowRequest {
    WorkflowRequest {
        id: id.into(),
        ..Default::default()
    }
}

/// Waits (up to 120 s) for workflow `id` to leave RUNNING.
async fn ended(c: &mut prism_client::Client, id: &str) -> WorkflowInfo {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let info = c
            .workflows()
            .get_workflow(WorkflowRequest {
                id: id.into(),
                wait_ms: 10_000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        if info.status != "RUNNING" {
            return info;
        }
        assert!(Instant::now() < deadline, "workflow {id} still runs");
    }
}

async fn output(
    c: &mut prism_client::Client,
    id: &str,
    step: &str,
) -> Result<String, tonic::Status> {
    c.workflows()
        .get_workflow_output(WorkflowOutputRequest {
            id: id.into(),
            step: step.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().output_json)
}

async fn steps(c: &mut prism_client::Client, id: &str) -> Vec<StepInfo> {
    c.workflows()
        .list_steps(by_id(id))
        .await
        .unwrap()
        .into_inner()
        .steps
}

async fn signal(
    c: &mut prism_client::Client,
    id: &str,
    event: &str,
    json: &str,
) -> Result<u64, tonic::Status> {
    c.workflows()
        .signal_workflow(SignalWorkflowRequest {
            id: id.into(),
            event: event.into(),
            payload_json: json.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().sequence)
}

/// The code of a refusal.
fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> tonic::Code {
    r.unwrap_err().code()
}

/// Waits until a step of `function` in workflow `id` has `status`.
async fn step_reached(c: &mut prism_client::Client, id: &str, function: &str, status: &str) {
    for _ in 0..600 {
        if steps(c, id)
            .await
            .iter()
            .any(|s| s.function == function && s.status == status)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {status} step of {function} in {id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recursive_workflows_log_each_step_once_and_failures_are_retried_or_caught() {
    let mut h = head().await;
    let (mut acme, token, hash) = tenant(&mut h, "acme").await;

    // factorial(5) = 120 in exactly 9 steps: 5 calls, 4 multiplications.
    run(&mut acme, &hash, "fact5", "factorial", "[5]")
        .await
        .unwrap();
    let info = ended(&mut acme, "fact5").await;
    assert_eq!(info.status, "SUCCESSFUL", "{info:?}");
    assert_eq!(output(&mut acme, "fact5", "").await.unwrap(), "120");
    let logged = steps(&mut acme, "fact5").await;
    let count = |f: &str| logged.iter().filter(|s| s.function == f).count();
    assert_eq!(
        (logged.len(), count("factorial"), count("mul")),
        (9, 5, 4),
        "{logged:?}"
    );
    assert!(
        logged
            .iter()
            .all(|s| s.status == "SUCCESSFUL" && s.attempts == 1)
    );
    assert_eq!(info.steps.get("SUCCESSFUL"), Some(&9));
    // A step's own output, by name: the root is named after the entry.
    assert_eq!(
        output(&mut acme, "fact5", "factorial").await.unwrap(),
        "120"
    );

    run(&mut acme, &hash, "fib10", "fib", "[10]").await.unwrap();
    assert_eq!(ended(&mut acme, "fib10").await.status, "SUCCESSFUL");
    assert_eq!(output(&mut acme, "fib10", "").await.unwrap(), "55");

    // Fails twice, then succeeds within the default 3 retries.
    run(&mut acme, &hash, "flaky", "flaky", r#"["f1", 2]"#)
        .await
        .unwrap();
    assert_eq!(ended(&mut acme, "flaky").await.status, "SUCCESSFUL");
    assert_eq!(
        output(&mut acme, "flaky", "").await.unwrap(),
        r#""ok after 3 calls""#
    );
    assert_eq!(steps(&mut acme, "flaky").await[0].attempts, 3);

    // Always fails: FAILED after 1 + 3 attempts, with the guest's error.
    run(&mut acme, &hash, "doomed", "always_fails", r#"["no way"]"#)
        .await
        .unwrap();
    let doomed = ended(&mut acme, "doomed").await;
    assert_eq!(doomed.status, "FAILED");
    assert!(
        doomed.error.contains("no way") && doomed.error.contains("application"),
        "{}",
        doomed.error
    );
    let step = &steps(&mut acme, "doomed").await[0];
    assert_eq!((step.status.as_str(), step.attempts), ("FAILED", 4));
    let refused = output(&mut acme, "doomed", "").await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    // FAILED is resumable (from the failed step): it runs, and fails, again.
    acme.workflows()
        .resume_workflow(ResumeWorkflowRequest {
            id: "doomed".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let again = ended(&mut acme, "doomed").await;
    assert_eq!((again.status.as_str(), again.runs), ("FAILED", 2));

    // With catch_exceptions the error is data.
    run(&mut acme, &hash, "caught", "caught", r#"["c"]"#)
        .await
        .unwrap();
    assert_eq!(ended(&mut acme, "caught").await.status, "SUCCESSFUL");
    assert_eq!(
        output(&mut acme, "caught", "").await.unwrap(),
        r#""caught: boom""#
    );

    // An object passed to two steps is checkpointed once: both read the
    // same logged value; an object returned by a step is its output.
    run(&mut acme, &hash, "shared", "shared_object", "[1000]")
        .await
        .unwrap();
    assert_eq!(ended(&mut acme, "shared").await.status, "SUCCESSFUL");
    assert_eq!(output(&mut acme, "shared", "").await.unwrap(), "1498500");
    let logged = steps(&mut acme, "shared").await;
    let totals: Vec<&StepInfo> = logged.iter().filter(|s| s.function == "total").collect();
    assert_eq!(totals.len(), 3);
    let second = totals.iter().find(|s| s.name == "second-total").unwrap();
    assert!(
        totals.iter().all(|s| s.inputs == second.inputs),
        "{totals:?}"
    );
    let listed = logged.iter().find(|s| s.function == "numbers").unwrap();
    assert_eq!(listed.output, second.inputs[0]);

    // The CLI: output, status, metadata, list, delete.
    let (code, out, err) = prism_cli(&h.head, &h.files, &token, &["workflow", "output", "fact5"]);
    assert_eq!((code, out.as_str()), (0, "120"), "{err}");
    let (code, out, _) = prism_cli(&h.head, &h.files, &token, &["workflow", "status", "fact5"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("workflow fact5 SUCCESSFUL") && out.contains("9 SUCCESSFUL"),
        "{out}"
    );
    let (_, out, _) = prism_cli(
        &h.head,
        &h.files,
        &token,
        &["workflow", "metadata", "fact5"],
    );
    let meta: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(meta["steps"].as_array().unwrap().len(), 9);
    let (_, out, _) = prism_cli(
        &h.head,
        &h.files,
        &token,
        &["workflow", "list", "--status", "FAILED"],
    );
    assert!(out.starts_with("doomed\tFAILED"), "{out}");
    let (code, _, _) = prism_cli(&h.head, &h.files, &token, &["workflow", "delete", "doomed"]);
    assert_eq!(code, 0);
    let gone = acme
        .workflows()
        .get_workflow(by_id("doomed"))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    drop(h.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_resumes_after_kill_9_of_the_head_without_redoing_finished_steps() {
    let mut h = head().await;
    let (mut acme, token, hash) = tenant(&mut h, "acme").await;
    // Four steps of about 1.5 s; the head dies once s2 is logged.
    run(&mut acme, &hash, "chain", "chain", r#"["k9", 0, 1500]"#)
        .await
        .unwrap();
    // And a durable timer and an event wait, in flight at the crash.
    run(&mut acme, &hash, "nap", "nap", "[4000]").await.unwrap();
    run(&mut acme, &hash, "greet", "wait_and_greet", r#"["bob"]"#)
        .await
        .unwrap();
    let napping = Instant::now();
    step_reached(&mut acme, "chain", "s2", "SUCCESSFUL").await;
    let mut head = h.head;
    head.kill();
    let head = start_head_with(h.files.dir(), HEAD_ARGS);
    let mut acme = client(&head, &h.files, &token).await;

    // RUNNING workflows resume on their own.
    let chain = ended(&mut acme, "chain").await;
    assert_eq!(
        (chain.status.as_str(), chain.runs),
        ("SUCCESSFUL", 2),
        "{chain:?}"
    );
    assert_eq!(output(&mut acme, "chain", "").await.unwrap(), "4");
    // s1 and s2 ran once; at most the step running at the crash again.
    run(&mut acme, &hash, "log", "chain_log", r#"["k9"]"#)
        .await
        .unwrap();
    assert_eq!(ended(&mut acme, "log").await.status, "SUCCESSFUL");
    let log: Vec<String> =
        serde_json::from_str(&output(&mut acme, "log", "").await.unwrap()).unwrap();
    let mut once = log.clone();
    once.dedup();
    assert_eq!(once, ["s1", "s2", "s3", "s4"], "{log:?}");
    assert!(log.len() <= 5 && log[..2] == ["s1", "s2"], "{log:?}");

    // The timer kept its deadline across the crash.
    assert_eq!(ended(&mut acme, "nap").await.status, "SUCCESSFUL");
    assert!(napping.elapsed() >= Duration::from_millis(3900));
    assert_eq!(output(&mut acme, "nap", "").await.unwrap(), r#""rested""#);

    // The event is logged before the signal answers and reaches the
    // workflow once: a second one waits, undelivered.
    signal(&mut acme, "greet", "approval", r#""approved""#)
        .await
        .unwrap();
    assert_eq!(ended(&mut acme, "greet").await.status, "SUCCESSFUL");
    assert_eq!(
        output(&mut acme, "greet", "").await.unwrap(),
        r#""approved, bob""#
    );
    let late = signal(&mut acme, "greet", "approval", r#""twice""#)
        .await
        .unwrap_err();
    assert_eq!(late.code(), tonic::Code::FailedPrecondition);

    // An event delivered while the head is down waits for the step.
    run(&mut acme, &hash, "greet2", "wait_and_greet", r#"["ann"]"#)
        .await
        .unwrap();
    signal(&mut acme, "greet2", "approval", r#""hi""#)
        .await
        .unwrap();
    let mut head = head;
    head.kill();
    let head = start_head_with(h.files.dir(), HEAD_ARGS);
    let mut acme = client(&head, &h.files, &token).await;
    assert_eq!(ended(&mut acme, "greet2").await.status, "SUCCESSFUL");
    assert_eq!(
        output(&mut acme, "greet2", "").await.unwrap(),
        r#""hi, ann""#
    );
    drop(h.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_counter_keeps_30_across_a_restart_of_the_whole_cluster() {
    let mut h = head().await;
    let (mut acme, token, hash) = tenant(&mut h, "acme").await;
    run(&mut acme, &hash, "count", "count_to", r#"["c1", 3, 10]"#)
        .await
        .unwrap();
    assert_eq!(ended(&mut acme, "count").await.status, "SUCCESSFUL");
    assert_eq!(output(&mut acme, "count", "").await.unwrap(), "30");

    let mut head = h.head;
    head.kill();
    let head = start_head_with(h.files.dir(), HEAD_ARGS);
    let mut acme = client(&head, &h.files, &token).await;
    run(&mut acme, &hash, "read", "read_counter", r#"["c1"]"#)
        .await
        .unwrap();
    assert_eq!(ended(&mut acme, "read").await.status, "SUCCESSFUL");
    assert_eq!(output(&mut acme, "read", "").await.unwrap(), "30");
    let (code, out, _) = prism_cli(&head, &h.files, &token, &["workflow", "actor", "get", "c1"]);
    assert_eq!((code, out.as_str()), (0, "30"));
    // get_or_create ignores its init now: 30 + 2 × 5.
    run(&mut acme, &hash, "more", "count_to", r#"["c1", 2, 5]"#)
        .await
        .unwrap();
    assert_eq!(ended(&mut acme, "more").await.status, "SUCCESSFUL");
    assert_eq!(output(&mut acme, "more", "").await.unwrap(), "40");
    // Reading an actor that does not exist is a typed failure.
    run(&mut acme, &hash, "nobody", "read_counter", r#"["c404"]"#)
        .await
        .unwrap();
    let nobody = ended(&mut acme, "nobody").await;
    assert!(
        nobody.status == "FAILED" && nobody.error.contains("no virtual actor c404"),
        "{nobody:?}"
    );
    let (code, _, _) = prism_cli(
        &head,
        &h.files,
        &token,
        &["workflow", "actor", "delete", "c1"],
    );
    assert_eq!(code, 0);
    let gone = acme
        .workflows()
        .get_virtual_actor(VirtualActorRequest {
            id: "c1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    drop(h.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_pipeline_trains_180_keys_with_half_a_cpu_each_then_predicts() {
    let mut h = head().await;
    let (_, token, _) = tenant(&mut h, "acme").await;
    let dir = h.dir.path().join("pipeline");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("workflows.wasm"), prism_guests::WORKFLOWS).unwrap();
    std::fs::write(
        dir.join("many-models.yaml"),
        include_str!("../../guest-examples/workflows/many-models.yaml"),
    )
    .unwrap();
    let file = dir.join("many-models.yaml");
    let args = [
        "workflow",
        "run",
        file.to_str().unwrap(),
        "--id",
        "mm",
        "--wait",
    ];
    let (code, out, err) = prism_cli(&h.head, &h.files, &token, &args);
    assert_eq!((code, out.as_str()), (0, "180"), "{err}");
    let mut acme = client(&h.head, &h.files, &token).await;
    let logged = steps(&mut acme, "mm").await;
    let trained = logged
        .iter()
        .filter(|s| s.name.starts_with("train["))
        .count();
    assert_eq!(trained, 180);
    assert!(
        logged.iter().any(|s| s.name == "collect") && logged.iter().any(|s| s.name == "predict")
    );
    // A malformed pipeline is refused with the reason.
    std::fs::write(
        dir.join("bad.yaml"),
        "module: workflows.wasm\nstages: [{name: a, function: f, depends_on: [b]}]\n",
    )
    .unwrap();
    let bad = dir.join("bad.yaml");
    let (code, _, err) = prism_cli(
        &h.head,
        &h.files,
        &token,
        &["workflow", "run", bad.to_str().unwrap()],
    );
    assert_ne!(code, 0);
    assert!(err.contains("not an earlier stage"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_starts_one_workflow_per_firing_with_a_deterministic_id() {
    let mut h = head().await;
    let (mut acme, token, _) = tenant(&mut h, "acme").await;
    let module = h.dir.path().join("workflows.wasm");
    std::fs::write(&module, prism_guests::WORKFLOWS).unwrap();
    let args = [
        "workflow",
        "schedule",
        "create",
        "tick",
        module.to_str().unwrap(),
        "--cron",
        "*/2 * * * * *",
        "--entry",
        "factorial",
        "--args",
        "[4]",
    ];
    let (code, _, err) = prism_cli(&h.head, &h.files, &token, &args);
    assert_eq!(code, 0, "{err}");
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let (code, _, _) = prism_cli(
        &h.head,
        &h.files,
        &token,
        &["workflow", "schedule", "delete", "tick"],
    );
    assert_eq!(code, 0);
    let fired: Vec<WorkflowInfo> = acme
        .workflows()
        .list_workflows(ListWorkflowsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .workflows;
    assert!((2..=4).contains(&fired.len()), "{fired:?}");
    for w in &fired {
        assert_eq!(w.schedule, "tick");
        assert!(
            w.id.starts_with("tick-20") && w.id.len() == "tick-20261207T093000".len(),
            "{}",
            w.id
        );
        assert_eq!(ended(&mut acme, &w.id).await.status, "SUCCESSFUL");
        assert_eq!(output(&mut acme, &w.id, "").await.unwrap(), "24");
    }
    let mut ids: Vec<&str> = fired.iter().map(|w| w.id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), fired.len(), "no firing doubled");
    // Deleted: it fires no more.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = acme
        .workflows()
        .list_workflows(ListWorkflowsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .workflows;
    assert_eq!(after.len(), fired.len());
    // A bad expression is refused.
    let bad = [
        "workflow",
        "schedule",
        "create",
        "bad",
        module.to_str().unwrap(),
        "--cron",
        "61 * * * *",
        "--entry",
        "factorial",
    ];
    let (code, _, err) = prism_cli(&h.head, &h.files, &token, &bad);
    assert_ne!(code, 0);
    assert!(
        err.contains("invalid argument") && err.contains("cron"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_tenant_neither_sees_nor_starves_another_tenants_workflows() {
    let mut h = head().await;
    let (mut acme, _, acme_hash) = tenant(&mut h, "acme").await;
    let (mut zeta, zeta_token, zeta_hash) = tenant(&mut h, "zeta").await;
    run(
        &mut acme,
        &acme_hash,
        "secret",
        "wait_and_greet",
        r#"["acme"]"#,
    )
    .await
    .unwrap();

    // Another tenant's workflow is not found, whatever the call.
    let nf = tonic::Code::NotFound;
    assert_eq!(
        code(zeta.workflows().get_workflow(by_id("secret")).await),
        nf
    );
    assert_eq!(code(output(&mut zeta, "secret", "").await), nf);
    assert_eq!(code(zeta.workflows().list_steps(by_id("secret")).await), nf);
    assert_eq!(
        code(signal(&mut zeta, "secret", "approval", r#""forged""#).await),
        nf
    );
    assert_eq!(
        code(zeta.workflows().cancel_workflow(by_id("secret")).await),
        nf
    );
    assert_eq!(
        code(zeta.workflows().delete_workflow(by_id("secret")).await),
        nf
    );
    // Naming acme's tenant needs a cluster admin.
    let other = zeta
        .workflows()
        .get_workflow(WorkflowRequest {
            tenant: "acme".into(),
            id: "secret".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(other.code(), tonic::Code::PermissionDenied);

    // zeta floods: at most 100 running workflows; the 101st is refused...
    let peak_before = crate::hardening::peak_mib(&h.head);
    // 130 starts at once: exactly 100 run, 30 are refused.
    let mut starts = tokio::task::JoinSet::new();
    for i in 0..130 {
        let mut c = zeta.clone();
        let hash = zeta_hash.clone();
        starts.spawn(async move {
            let id = format!("wait{i}");
            (
                run(&mut c, &hash, &id, "wait_and_greet", r#"["z"]"#).await,
                id,
            )
        });
    }
    let mut started = Vec::new();
    while let Some(joined) = starts.join_next().await {
        match joined.unwrap() {
            (Ok(_), id) => started.push(id),
            (Err(refused), _) => assert_eq!(
                refused.code(),
                tonic::Code::ResourceExhausted,
                "{refused:?}"
            ),
        }
    }
    assert_eq!(started.len(), 100);
    let waiting = started[0].clone();
    let other = started[1].clone();
    // ...and fills one workflow's event queue up to its bound.
    for i in 0..1000 {
        signal(&mut zeta, &waiting, "other", &i.to_string())
            .await
            .unwrap();
    }
    let full = signal(&mut zeta, &waiting, "other", "0").await.unwrap_err();
    assert_eq!(full.code(), tonic::Code::ResourceExhausted);
    let big = format!("\"{}\"", "x".repeat(1 << 20));
    assert_eq!(
        code(signal(&mut zeta, &other, "approval", &big).await),
        tonic::Code::InvalidArgument
    );

    // The head's memory stays bounded through the flood.
    let peak_after = crate::hardening::peak_mib(&h.head);
    assert!(
        peak_after < peak_before + 256,
        "the head's peak grew from {peak_before} to {peak_after} MiB"
    );

    // acme is unaffected: its workflows run and its event arrives.
    run(&mut acme, &acme_hash, "fact", "factorial", "[6]")
        .await
        .unwrap();
    assert_eq!(ended(&mut acme, "fact").await.status, "SUCCESSFUL");
    assert_eq!(output(&mut acme, "fact", "").await.unwrap(), "720");
    signal(&mut acme, "secret", "approval", r#""hello""#)
        .await
        .unwrap();
    assert_eq!(ended(&mut acme, "secret").await.status, "SUCCESSFUL");
    assert_eq!(
        output(&mut acme, "secret", "").await.unwrap(),
        r#""hello, acme""#
    );

    // Two starts of one id at once: one runs, the other is refused.
    let (mut a, mut b) = (acme.clone(), acme.clone());
    let (first, second) = tokio::join!(
        run(&mut a, &acme_hash, "twice", "factorial", "[3]"),
        run(&mut b, &acme_hash, "twice", "factorial", "[3]")
    );
    assert!(first.is_ok() != second.is_ok(), "{first:?} {second:?}");
    let refused = first.err().or(second.err()).unwrap();
    assert_eq!(refused.code(), tonic::Code::AlreadyExists);
    assert_eq!(ended(&mut acme, "twice").await.runs, 1);
    // Signals at once get distinct numbers: none overwrites another.
    run(&mut acme, &acme_hash, "inbox", "wait_and_greet", r#"["x"]"#)
        .await
        .unwrap();
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..20 {
        let mut c = acme.clone();
        sends.spawn(async move {
            signal(&mut c, "inbox", "note", &i.to_string())
                .await
                .unwrap()
        });
    }
    let mut numbers = std::collections::HashSet::new();
    while let Some(n) = sends.join_next().await {
        assert!(numbers.insert(n.unwrap()));
    }
    assert_eq!(numbers.len(), 20);

    // Bad input: typed errors, nothing started.
    let invalid = tonic::Code::InvalidArgument;
    assert_eq!(
        code(run(&mut acme, &acme_hash, "bad/id", "factorial", "[1]").await),
        invalid
    );
    assert_eq!(
        code(run(&mut acme, &acme_hash, "", "factorial", "[1").await),
        invalid
    );
    assert_eq!(
        code(run(&mut acme, "sha256:nope", "", "factorial", "[1]").await),
        invalid
    );
    assert_eq!(
        code(run(&mut acme, &acme_hash, "fact", "factorial", "[1]").await),
        tonic::Code::AlreadyExists
    );
    // A task the module lacks fails the workflow with the reason.
    run(&mut acme, &acme_hash, "missing", "no_such_task", "[]")
        .await
        .unwrap();
    let missing = ended(&mut acme, "missing").await;
    assert!(
        missing.status == "FAILED" && missing.error.contains("function_not_found"),
        "{missing:?}"
    );
    // A viewer reads but does not start or cancel.
    let (mut viewer, _) = member(&mut h.admin, &h.head, &h.files, "acme", "viewer").await;
    assert_eq!(
        viewer
            .workflows()
            .get_workflow(by_id("fact"))
            .await
            .unwrap()
            .into_inner()
            .status,
        "SUCCESSFUL"
    );
    assert_eq!(
        code(run(&mut viewer, &acme_hash, "v", "factorial", "[1]").await),
        tonic::Code::PermissionDenied
    );
    assert_eq!(
        code(viewer.workflows().cancel_workflow(by_id("fact")).await),
        tonic::Code::PermissionDenied
    );
    // A forged token is refused.
    let mut forged = client(&h.head, &h.files, &format!("{zeta_token}x")).await;
    assert_eq!(
        code(forged.workflows().get_workflow(by_id(&waiting)).await),
        tonic::Code::Unauthenticated
    );

    // zeta cancels its flood; cancelled workflows do not resume.
    for id in &started {
        zeta.workflows().cancel_workflow(by_id(id)).await.unwrap();
    }
    let resumed = zeta
        .workflows()
        .resume_workflow(ResumeWorkflowRequest {
            id: waiting.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(resumed.code(), tonic::Code::FailedPrecondition);
}
