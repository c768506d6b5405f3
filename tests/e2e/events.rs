//! Task events across real processes: a job's tasks, actor calls and
//! driver are recorded on the head and on a worker, gathered and merged
//! by the head, kept with the job when it ends (and across a restart of
//! the head), filtered by state and cause, printed by `prism job
//! tasks|task|failures` and written as a Perfetto trace by `prism job
//! timeline` — and readable by the job's tenant only.

use crate::procs::{Process, admin_token, client, init, prism_cli, start_head_with, start_worker};
use crate::serving::member;
use prism_client::v1::TaskInfo;
use prism_host::security::ClusterFiles;

const HEAD_ARGS: &[&str] = &[
    "--listen",
    "127.0.0.1:0",
    "--cpus",
    "2",
    "--no-gpus",
    "--heartbeat-ms",
    "200",
];

/// A head (2 CPUs) and one worker (1 CPU) of a fresh cluster.
struct TwoNodes {
    dir: tempfile::TempDir,
    files: ClusterFiles,
    head: Process,
    worker: Process,
    worker_id: String,
    /// A cluster admin's client.
    admin: prism_client::Client,
}

async fn two_nodes() -> TwoNodes {
    let dir = tempfile::tempdir().unwrap();
    let files: ClusterFiles = init(&dir.path().join("state"));
    let head = start_head_with(files.dir(), HEAD_ARGS);
    let mut admin = client(&head, &files, &admin_token(&files)).await;
    let join = admin.create_join_token(60).await.unwrap().token;
    let worker = start_worker(
        &dir.path().join("w"),
        &head.address,
        &files.ca_cert(),
        &join,
        &["--cpus", "1", "--no-gpus"],
    )
    .expect("the worker joins");
    let worker_id = worker.worker_id();
    TwoNodes {
        dir,
        files,
        head,
        worker,
        worker_id,
        admin,
    }
}

fn named<'a>(tasks: &'a [TaskInfo], function: &str) -> Vec<&'a TaskInfo> {
    tasks.iter().filter(|t| t.function == function).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_tasks_are_recorded_on_every_node_and_read_by_its_tenant_only() {
    let TwoNodes {
        dir,
        files,
        mut head,
        worker,
        worker_id,
        mut admin,
    } = two_nodes().await;
    admin.create_tenant("acme", 1.0, "").await.unwrap();
    admin.create_tenant("zeta", 1.0, "").await.unwrap();
    let (mut acme, acme_token) = member(&mut admin, &head, &files, "acme", "developer").await;
    let (mut zeta, zeta_token) = member(&mut admin, &head, &files, "zeta", "developer").await;

    // 12 squares spread over both nodes; 5 and 10 panic.
    let hash = acme
        .upload_module(prism_guests::TESTKIT.to_vec())
        .await
        .unwrap()
        .hash;
    let job = acme
        .submit(&hash, "traced_job", "[12, 5]", "default")
        .await
        .unwrap();
    let result = acme.result(&job.id, true).await.unwrap();
    let value: (u64, u64, i64) = serde_json::from_str(&result.value_json).unwrap();
    assert_eq!(value, (2, 1, 6));

    let (tasks, unrecorded) = acme.list_tasks(&job.id, "", "").await.unwrap();
    assert_eq!(unrecorded, 0);
    let squares = named(&tasks, "traced_square");
    assert_eq!(squares.len(), 12, "{tasks:#?}");
    let nodes: std::collections::BTreeSet<&str> = squares
        .iter()
        .flat_map(|t| t.attempts.iter().map(|a| a.node.as_str()))
        .collect();
    assert!(nodes.contains("head"), "{nodes:?}");
    assert!(nodes.contains(worker_id.as_str()), "{nodes:?}");
    for square in &squares {
        assert_eq!(square.node, "head", "submitted by the driver on the head");
        assert!(square.ended_us >= square.submitted_us);
        let attempt = square.attempts.last().unwrap();
        assert!(attempt.started_us > 0 && attempt.ended_us >= attempt.started_us);
    }
    let failed: Vec<&&TaskInfo> = squares.iter().filter(|t| t.state == "failed").collect();
    assert_eq!(failed.len(), 2);
    for task in &failed {
        assert_eq!(task.error_kind, "panic");
        assert!(task.error.contains("refusing to square"), "{}", task.error);
        assert!(
            task.output.iter().any(|l| l.starts_with("squaring ")),
            "{:?}",
            task.output
        );
    }
    let driver = named(&tasks, "traced_job");
    assert_eq!(driver.len(), 1);
    assert_eq!(driver[0].kind, "driver");
    assert_eq!(driver[0].state, "finished");
    let pair = named(&tasks, "traced_pair");
    assert_eq!(pair.len(), 1);
    assert_eq!(pair[0].depends_on.len(), 2);
    assert!(
        pair[0]
            .depends_on
            .iter()
            .all(|d| squares.iter().any(|s| &s.task_id == d))
    );
    let calls = named(&tasks, "Kit.add");
    assert_eq!(calls.len(), 2, "{tasks:#?}");
    assert!(
        calls
            .iter()
            .all(|c| c.kind == "actor_call" && c.state == "finished" && !c.actor_id.is_empty())
    );

    // Filters.
    let (panics, _) = acme.list_tasks(&job.id, "failed", "panic").await.unwrap();
    assert_eq!(panics.len(), 2);
    let (traps, _) = acme.list_tasks(&job.id, "failed", "trap").await.unwrap();
    assert!(traps.is_empty());
    for (state, cause) in [("exploded", ""), ("", "gremlins")] {
        let refused = acme.list_tasks(&job.id, state, cause).await.unwrap_err();
        assert_eq!(
            refused.code(),
            Some(tonic::Code::InvalidArgument),
            "{refused}"
        );
    }

    // Another tenant sees neither the job nor its tasks.
    let foreign = zeta.list_tasks(&job.id, "", "").await.unwrap_err();
    assert_eq!(foreign.code(), Some(tonic::Code::NotFound), "{foreign}");
    let failed_id = failed[0].task_id.clone();
    assert!(zeta.task("", &failed_id).await.is_err());
    let (code, _, _) = prism_cli(&head, &files, &zeta_token, &["job", "task", &failed_id]);
    assert_ne!(code, 0);

    // The CLI, as the tenant.
    let (code, out, err) = prism_cli(&head, &files, &acme_token, &["job", "task", &failed_id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("refusing to square"), "{out}");
    assert!(out.contains("squaring "), "{out}");
    assert!(out.contains(&job.id), "{out}");
    let (code, out, err) = prism_cli(
        &head,
        &files,
        &acme_token,
        &[
            "job", "tasks", &job.id, "--state", "failed", "--cause", "panic",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with("2 tasks, 2 failed"), "{out}");
    let (code, out, _) = prism_cli(&head, &files, &acme_token, &["job", "failures", &job.id]);
    assert_eq!(code, 0);
    assert!(out.starts_with("panic: 2 tasks"), "{out}");
    let trace_path = dir.path().join("trace.json");
    let (code, out, err) = prism_cli(
        &head,
        &files,
        &acme_token,
        &[
            "job",
            "timeline",
            &job.id,
            "-o",
            trace_path.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ui.perfetto.dev"), "{out}");
    let trace: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&trace_path).unwrap()).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    let meta = |name: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["name"] == name)
            .map(|e| e["args"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let processes = meta("process_name");
    assert!(
        processes.contains(&"node head".to_string()),
        "{processes:?}"
    );
    assert!(
        processes.contains(&format!("node {worker_id}")),
        "{processes:?}"
    );
    let threads = meta("thread_name");
    assert!(threads.iter().any(|t| t == "cpu 0"), "{threads:?}");
    assert!(
        threads.iter().any(|t| t.starts_with("actor Kit ")),
        "{threads:?}"
    );
    // A row per slot, not per task: far fewer threads than tasks.
    assert!(threads.len() < tasks.len(), "{threads:?}");
    let arrows = events.iter().filter(|e| e["ph"] == "s").count();
    assert_eq!(arrows, 2, "the pair's two arguments");
    assert!(
        events
            .iter()
            .any(|e| e["name"] == "traced_square" && e["args"]["outcome"] == "panic")
    );

    // The head keeps them with the job, across its own restart.
    let kept = files.dir().join("logs").join(format!("{}.tasks", job.id));
    for _ in 0..100 {
        if kept.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(kept.exists(), "{}", kept.display());
    drop(worker);
    head.kill();
    let head = start_head_with(files.dir(), HEAD_ARGS);
    let mut acme = client(&head, &files, &acme_token).await;
    let (again, _) = acme.list_tasks(&job.id, "", "").await.unwrap();
    assert_eq!(again.len(), tasks.len());
    let (task, in_job) = acme.task("", &failed_id).await.unwrap();
    assert_eq!(in_job, job.id);
    assert_eq!(task.error_kind, "panic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_on_a_worker_shows_its_output_while_it_runs() {
    output_shows_while_it_runs("slow_lines_on", "slow line 0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_call_on_a_worker_shows_its_output_while_it_runs() {
    output_shows_while_it_runs("talk_on", "talker line 0").await;
}

/// Runs `entry` of the testkit, which prints 8 lines 500 ms apart on a
/// worker, starting with `first`; checks that the first line is in the
/// job's log more than 2 s before the job ends.
async fn output_shows_while_it_runs(entry: &str, first_line: &str) {
    let TwoNodes {
        dir: _dir,
        files,
        head,
        worker: _worker,
        worker_id,
        mut admin,
    } = two_nodes().await;
    let hash = admin
        .upload_module(prism_guests::TESTKIT.to_vec())
        .await
        .unwrap()
        .hash;
    let args = format!("[{worker_id:?}, 8, 500]");
    let job = admin.submit(&hash, entry, &args, "default").await.unwrap();
    let mut follower = client(&head, &files, &admin_token(&files)).await;
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let id = job.id.clone();
    tokio::spawn(async move {
        let _ = follower
            .follow_logs(&id, |line| {
                let _ = seen_tx.send(line.text);
            })
            .await;
    });
    let first = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            match seen_rx.recv().await {
                Some(text) if text.contains(first_line) => return text,
                Some(_) => continue,
                None => panic!("the log ended without the task's first line"),
            }
        }
    })
    .await
    .expect("the first line arrives");
    assert!(first.contains(first_line));
    let first_at = std::time::Instant::now();
    // It came while the task still ran: lines are printed over 4 s, so
    // the job ends seconds after its first line (without the relay every
    // line would come with the attempt's reply, at the end).
    let result = admin.result(&job.id, true).await.unwrap();
    assert_eq!(result.value_json, "8");
    let lead = first_at.elapsed();
    assert!(
        lead > std::time::Duration::from_secs(2),
        "the first line came only {lead:?} before the job ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_task_flood_is_recorded_up_to_its_bound_beside_another_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let files: ClusterFiles = init(&dir.path().join("state"));
    let head = start_head_with(files.dir(), HEAD_ARGS);
    let baseline = crate::hardening::peak_mib(&head);
    let mut admin = client(&head, &files, &admin_token(&files)).await;
    admin.create_tenant("good", 1.0, "").await.unwrap();
    admin.create_tenant("bad", 1.0, "").await.unwrap();
    let (mut good, _) = member(&mut admin, &head, &files, "good", "developer").await;
    let (mut bad, bad_token) = member(&mut admin, &head, &files, "bad", "developer").await;
    let flood_module = bad
        .upload_module(prism_guests::BENCH.to_vec())
        .await
        .unwrap()
        .hash;
    let testkit = good
        .upload_module(prism_guests::TESTKIT.to_vec())
        .await
        .unwrap()
        .hash;
    // 25,000 tasks and the driver: 5,001 past the bound of one node.
    let flood = bad
        .submit(&flood_module, "tasks_async", "[25000]", "default")
        .await
        .unwrap();
    let traced = good
        .submit(&testkit, "traced_job", "[12, 5]", "default")
        .await
        .unwrap();
    assert!(
        bad.result(&flood.id, true)
            .await
            .unwrap()
            .value_json
            .contains("ops")
    );
    let value = good.result(&traced.id, true).await.unwrap().value_json;
    assert_eq!(value, "[2,1,6]");

    let (recorded, unrecorded) = bad.list_tasks(&flood.id, "", "").await.unwrap();
    assert_eq!(recorded.len(), 20_000);
    assert_eq!(unrecorded, 5_001);
    let (mine, missed) = good.list_tasks(&traced.id, "", "").await.unwrap();
    assert_eq!(
        (mine.len(), missed),
        (16, 0),
        "the other tenant's records are whole"
    );
    let (code, out, err) = prism_cli(&head, &files, &bad_token, &["job", "tasks", &flood.id]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.ends_with("5001 more were not recorded (past the per-job bound of a node)"),
        "{}",
        &out[out.len().saturating_sub(200)..]
    );
    let peak = crate::hardening::peak_mib(&head);
    assert!(
        peak < baseline + 400,
        "the head grew from {baseline} MiB to a peak of {peak} MiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_call_on_a_worker_is_recorded_under_the_callers_id() {
    let TwoNodes {
        dir: _dir,
        files: _files,
        head: _head,
        worker: _worker,
        worker_id,
        mut admin,
    } = two_nodes().await;
    let hash = admin
        .upload_module(prism_guests::TESTKIT.to_vec())
        .await
        .unwrap()
        .hash;
    let job = admin
        .submit(&hash, "talk_id_on", &format!("[{worker_id:?}]"), "default")
        .await
        .unwrap();
    let result = admin.result(&job.id, true).await.unwrap();
    let id: String = serde_json::from_str(&result.value_json).unwrap();
    let (tasks, _) = admin.list_tasks(&job.id, "", "").await.unwrap();
    let call = tasks
        .iter()
        .find(|t| t.function == "Talker.talk")
        .unwrap_or_else(|| panic!("no record of the call: {tasks:#?}"));
    assert_eq!(call.task_id, id, "recorded under the id its caller holds");
    assert_eq!(call.kind, "actor_call");
    assert_eq!(call.node, worker_id, "recorded by the actor's node");
    assert_eq!(call.state, "finished");
    let (found, in_job) = admin.task("", &id).await.unwrap();
    assert_eq!(
        (found.task_id.as_str(), in_job.as_str()),
        (id.as_str(), job.id.as_str())
    );
}
