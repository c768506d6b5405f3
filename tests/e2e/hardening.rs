//! A hostile tenant against a shared head, with a well-behaved tenant's
//! job running beside each attack: the attack gets a typed error or a
//! bounded result, the other tenant's job its right answer in bounded
//! time, and the head's peak memory stays within a bound per attack.

use super::procs::{HeadProcess, admin_token, client, init, start_head_with};
use prism_client::v1::{JobState, SubmitJobRequest};
use prism_client::{Client, ClientError};
use prism_host::security::ClusterFiles;
use serde_json::Value;
use std::time::{Duration, Instant};
use tonic::Code;

fn code(e: ClientError) -> (Code, String) {
    match e {
        ClientError::Status(s) => (s.code(), s.message().to_string()),
        other => panic!("expected a status, got {other}"),
    }
}

/// The process's peak resident memory (VmHWM), in MiB.
pub(crate) fn peak_mib(head: &HeadProcess) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", head.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        / 1024
}

struct Tenants {
    head: HeadProcess,
    /// The well-behaved tenant's developer.
    good: Client,
    /// The hostile tenant's tenant-admin.
    bad: Client,
    /// The testkit's hash, uploaded by both.
    module: String,
    files: ClusterFiles,
}

async fn tenants(dir: &std::path::Path) -> Tenants {
    tenants_with(dir, &[]).await
}

/// [`tenants`] on a head started with `extra` flags as well.
async fn tenants_with(dir: &std::path::Path, extra: &[&str]) -> Tenants {
    let files = init(&dir.join("state"));
    let mut args = vec!["--listen", "127.0.0.1:0", "--cpus", "2"];
    args.extend_from_slice(extra);
    let head = start_head_with(files.dir(), &args);
    let mut admin = client(&head, &files, &admin_token(&files)).await;
    admin.create_tenant("acme", 1.0, "").await.unwrap();
    admin.create_tenant("zeta", 1.0, "").await.unwrap();
    let token = |tenant: &'static str, role: &'static str| {
        let mut admin = admin.clone();
        async move {
            admin
                .issue_token(tenant, "someone", role, 3600)
                .await
                .unwrap()
                .token
        }
    };
    let mut good = client(&head, &files, &token("acme", "developer").await).await;
    let mut bad = client(&head, &files, &token("zeta", "tenant-admin").await).await;
    let module = good
        .upload_module(prism_guests::TESTKIT.to_vec())
        .await
        .unwrap()
        .hash;
    bad.upload_module(prism_guests::TESTKIT.to_vec())
        .await
        .unwrap();
    Tenants {
        head,
        good,
        bad,
        module,
        files,
    }
}

/// Submits `entry` with `args`; the job's id.
async fn submit(c: &mut Client, module: &str, entry: &str, args: &str, cpus: f64) -> String {
    c.submit_request(SubmitJobRequest {
        module_hash: module.into(),
        entry: entry.into(),
        args_json: args.into(),
        num_cpus: cpus,
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{entry}: {e}"))
    .id
}

/// Waits for a job and returns its value (it must succeed).
async fn value(c: &mut Client, id: &str) -> Value {
    let result = c.result(id, true).await.unwrap();
    assert_eq!(
        result.job.as_ref().map(|j| j.state),
        Some(JobState::Succeeded as i32),
        "{:?}",
        result.job
    );
    serde_json::from_str(&result.value_json).unwrap()
}

/// The well-behaved tenant's job: a small task graph with a known sum,
/// which must come back right within `bound`.
async fn well_behaved(t: &mut Tenants, bound: Duration) {
    let started = Instant::now();
    let id = submit(&mut t.good, &t.module, "sum", "[4, 40]", 0.0).await;
    let v = value(&mut t.good, &id).await;
    assert!(v.is_u64(), "{v}");
    assert!(
        started.elapsed() < bound,
        "the other tenant's job took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_tenant_cannot_take_down_or_bloat_a_shared_head() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = tenants(dir.path()).await;
    well_behaved(&mut t, Duration::from_secs(30)).await;
    let baseline = peak_mib(&t.head);

    // A policy nested deep enough to overflow a parser's stack is refused
    // before it is parsed; the head lives on.
    for depth in [150, 1000] {
        let text = format!(
            "permit (principal, action, resource) when {{ {}true{} }};",
            "(".repeat(depth),
            ")".repeat(depth)
        );
        let (status, message) = code(t.bad.set_policy("zeta", &text).await.unwrap_err());
        assert_eq!(status, Code::InvalidArgument, "{message}");
        assert!(message.contains("deeper than"), "{message}");
    }
    well_behaved(&mut t, Duration::from_secs(30)).await;

    // Oversized arguments: refused, and only after the module check.
    let huge = format!("[\"{}\"]", "0".repeat(2 << 20));
    let (status, message) = code(
        t.bad
            .submit(&t.module, "text_len", &huge, "")
            .await
            .unwrap_err(),
    );
    assert_eq!(status, Code::InvalidArgument, "{message}");
    let missing = format!("sha256:{}", "0".repeat(64));
    let (status, _) = code(t.bad.submit(&missing, "main", &huge, "").await.unwrap_err());
    assert_eq!(status, Code::NotFound);

    // Polling a pending task with `wait` leaves nothing behind.
    let poll = submit(&mut t.bad, &t.module, "wait_poll", "[300000]", 0.0).await;
    well_behaved(&mut t, Duration::from_secs(30)).await;
    assert_eq!(value(&mut t.bad, &poll).await, 0);

    // A log flood (160 MiB through prism::log) keeps a bounded tail in
    // memory and a bounded file on disk.
    let flood = submit(&mut t.bad, &t.module, "log_flood", "[10000, 16000]", 0.0).await;
    well_behaved(&mut t, Duration::from_secs(30)).await;
    assert_eq!(value(&mut t.bad, &flood).await, 10000);
    let started = Instant::now();
    for _ in 0..20 {
        t.bad.job(&flood).await.unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "GetJob copies no log"
    );
    let lines = t.bad.logs(&flood).await.unwrap();
    assert!(lines.len() < 10000, "{} lines", lines.len());
    assert!(
        lines
            .last()
            .is_some_and(|l| l.text.contains("reached its limit")),
        "{:?}",
        lines.last().map(|l| &l.source)
    );
    let file = t.files.dir().join("logs").join(format!("{flood}.log"));
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size <= (64 << 20) + 4096, "{size} bytes of log file");

    // A result that is small as MessagePack but huge as JSON.
    let nils = submit(&mut t.bad, &t.module, "many_nils", "[20000000]", 0.0).await;
    let (status, message) = code(t.bad.result(&nils, true).await.unwrap_err());
    assert_eq!(status, Code::ResourceExhausted, "{message}");
    assert_eq!(
        t.bad.job(&nils).await.unwrap().state,
        JobState::Succeeded as i32
    );

    // Names are bounded.
    let names = submit(&mut t.bad, &t.module, "long_names", "[100000]", 0.0).await;
    assert_eq!(
        value(&mut t.bad, &names).await,
        serde_json::json!(["invalid_argument", "invalid_argument"])
    );

    let peak = peak_mib(&t.head);
    assert!(
        peak < baseline + 400,
        "the head grew from {baseline} MiB to a peak of {peak} MiB"
    );
    well_behaved(&mut t, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_uploads_are_refused_before_their_body_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenants(dir.path()).await;
    let baseline = peak_mib(&t.head);
    let mut forged = client(&t.head, &t.files, "not.a.token").await;
    let uploads: Vec<_> = (0..8)
        .map(|_| {
            let mut c = forged.clone();
            tokio::spawn(async move { c.upload_module(vec![0u8; 60 << 20]).await })
        })
        .collect();
    for upload in uploads {
        let (status, _) = code(upload.await.unwrap().unwrap_err());
        assert_eq!(status, Code::Unauthenticated);
    }
    let (status, _) = code(forged.status().await.unwrap_err());
    assert_eq!(status, Code::Unauthenticated);
    let peak = peak_mib(&t.head);
    assert!(
        peak < baseline + 150,
        "8 refused 60 MiB uploads took the head from {baseline} to {peak} MiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_stats_show_a_job_its_own_objects_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = tenants(dir.path()).await;
    let holder = submit(
        &mut t.good,
        &t.module,
        "hold_object",
        "[1234567, 3000]",
        0.0,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = submit(&mut t.bad, &t.module, "own_store_stats", "[]", 0.0).await;
    let (objects_before, bytes_before, objects_after, bytes_after): (u64, u64, u64, u64) =
        serde_json::from_value(value(&mut t.bad, &seen).await).unwrap();
    // Its own pending result at most; none of the other tenant's bytes.
    assert!(objects_before <= 1, "{objects_before}");
    assert_eq!(bytes_before, 0);
    assert_eq!(objects_after, objects_before + 1);
    assert!((1000..1100).contains(&bytes_after), "{bytes_after}");
    assert_eq!(value(&mut t.good, &holder).await, 1234567);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_fires_on_time_while_busy_tasks_hold_every_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = tenants(dir.path()).await;
    // The driver holds a CPU; two spinning tasks take the other and the
    // one it lends while it waits.
    let id = submit(&mut t.good, &t.module, "timeout_under_load", "[2, 50]", 1.0).await;
    let (took, timed_out): (u64, bool) =
        serde_json::from_value(value(&mut t.good, &id).await).unwrap();
    assert!(timed_out);
    assert!(took < 250, "a 50 ms timeout took {took} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_actors_name_is_free_on_a_head_when_kill_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = tenants(dir.path()).await;
    let id = submit(&mut t.good, &t.module, "rename_after_kill", "[20]", 0.0).await;
    assert_eq!(value(&mut t.good, &id).await, 20);
}

#[test]
fn trap_messages_carry_no_host_backtrace_whatever_the_environment() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_prism"))
        .args(["run", prism_guests::TESTKIT_PATH])
        .args(["--entry", "trap_until", "--args", "[100]"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    assert!(text.contains("unreachable"), "{text}");
    assert!(!text.contains("wasm trap: wasm trap"), "{text}");
    for host_detail in [
        "stack backtrace",
        ".cargo/registry",
        "rustc/",
        "src/runtime/",
    ] {
        assert!(!text.contains(host_detail), "{host_detail} in {text}");
    }
}

/// The head's own node in the cluster status.
async fn head_node(admin: &mut Client) -> prism_client::v1::NodeInfo {
    admin
        .status()
        .await
        .unwrap()
        .nodes
        .into_iter()
        .find(|n| n.node_id == "head")
        .expect("the head's node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_fork_bomb_cannot_keep_another_tenant_off_the_node() {
    let dir = tempfile::tempdir().unwrap();
    // 40 instance slots, of which one tenant may hold 30.
    let mut t = tenants_with(dir.path(), &["--instance-slots", "40"]).await;
    let mut admin = client(&t.head, &t.files, &admin_token(&t.files)).await;
    let baseline = peak_mib(&t.head);
    let tree = t
        .bad
        .upload_module(prism_guests::TREE_REDUCE.to_vec())
        .await
        .unwrap()
        .hash;
    // A binary tree of tasks 12 deep: its parents block in `get` and
    // would hold every slot.
    let bomb = submit(&mut t.bad, &tree, "main", "[4096, 1]", 0.0).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let head = head_node(&mut admin).await;
        if head.running_tasks >= 30 {
            break;
        }
        assert!(Instant::now() < deadline, "the bomb never grew: {head:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The other tenant's job runs at once in the slots left.
    well_behaved(&mut t, Duration::from_secs(20)).await;
    let head = head_node(&mut admin).await;
    assert!(head.running_tasks <= 31, "{head:?}");

    // Stopping the bomb gives every slot and CPU back.
    t.bad.stop(&bomb).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let head = head_node(&mut admin).await;
        if head.running_tasks == 0 && head.pending_tasks == 0 && head.available == head.total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the head kept resources: {head:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    well_behaved(&mut t, Duration::from_secs(20)).await;
    assert_peak_within(&t, baseline, 400);
}

/// Asserts the head's peak memory stayed within `bound` MiB of `baseline`.
fn assert_peak_within(t: &Tenants, baseline: u64, bound: u64) {
    let peak = peak_mib(&t.head);
    eprintln!("head peak {peak} MiB, from {baseline} MiB");
    assert!(
        peak < baseline + bound,
        "the head grew from {baseline} MiB to a peak of {peak} MiB"
    );
}

/// Runs the well-behaved tenant's CPU job (two tasks of about 1 s of work);
/// how long it took.
async fn cpu_job(t: &mut Tenants) -> Duration {
    let started = Instant::now();
    let id = submit(&mut t.good, &t.module, "cpu_work", "[2, 300]", 0.0).await;
    assert_eq!(value(&mut t.good, &id).await, 2);
    started.elapsed()
}

/// Two tenants, the hostile one (`zeta`) held to one CPU; the other's CPU
/// job timed alone and the head's memory before the attack.
struct OneCpuAttacker {
    t: Tenants,
    admin: Client,
    alone: Duration,
    baseline: u64,
}

async fn one_cpu_attacker(dir: &std::path::Path) -> OneCpuAttacker {
    let mut t = tenants(dir).await;
    let mut admin = client(&t.head, &t.files, &admin_token(&t.files)).await;
    admin
        .set_quotas("zeta", r#"{"cpus": 1}"#, 0.0)
        .await
        .unwrap();
    let alone = cpu_job(&mut t).await;
    let baseline = peak_mib(&t.head);
    OneCpuAttacker {
        t,
        admin,
        alone,
        baseline,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_actors_without_cpus_count_against_their_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let OneCpuAttacker {
        mut t,
        alone,
        baseline,
        ..
    } = one_cpu_attacker(dir.path()).await;

    // Forty actors created without `num_cpus`, each spinning in a call:
    // the tenant's one-CPU quota holds, so they take turns on one CPU.
    let busy = submit(&mut t.bad, &t.module, "busy_actors", "[40, 8000]", 0.0).await;
    // Let it create its actors and start their calls.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let beside = cpu_job(&mut t).await;
    assert!(
        beside < alone * 3 + Duration::from_secs(1),
        "the other tenant's CPU job took {beside:?} beside busy actors, {alone:?} alone"
    );
    assert_eq!(value(&mut t.bad, &busy).await, 40);
    assert_peak_within(&t, baseline, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_drivers_count_against_their_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let OneCpuAttacker {
        mut t,
        mut admin,
        alone,
        baseline,
    } = one_cpu_attacker(dir.path()).await;
    // The module compiled for this tenant first, so the drivers start at
    // once.
    let warm = submit(&mut t.bad, &t.module, "busy_driver", "[0]", 0.0).await;
    value(&mut t.bad, &warm).await;

    // Eight drivers spinning without a `get`: each runs its code on a CPU
    // of its tenant's one-CPU quota, so they run one at a time.
    let mut busy = Vec::new();
    for _ in 0..8 {
        busy.push(submit(&mut t.bad, &t.module, "busy_driver", "[8000]", 0.0).await);
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let beside = cpu_job(&mut t).await;
    assert!(
        beside < alone * 3 + Duration::from_secs(1),
        "the other tenant's CPU job took {beside:?} beside busy drivers, {alone:?} alone"
    );
    let head = head_node(&mut admin).await;
    assert!(
        head.running_tasks <= 1 && head.pending_tasks >= 6,
        "busy drivers of a one-CPU tenant ran at once: {head:?}"
    );
    for id in &busy {
        t.bad.stop(id).await.unwrap();
    }
    assert_peak_within(&t, baseline, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_driver_lends_its_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let files = init(&dir.path().join("state"));
    let head = start_head_with(files.dir(), &["--listen", "127.0.0.1:0", "--cpus", "1"]);
    let mut admin = client(&head, &files, &admin_token(&files)).await;
    let module = admin
        .upload_module(prism_guests::TESTKIT.to_vec())
        .await
        .unwrap()
        .hash;
    // On one CPU, the driver's task runs only while the driver sleeps.
    let id = submit(&mut admin, &module, "driver_sleep_lends", "[1500]", 0.0).await;
    assert_eq!(value(&mut admin, &id).await, true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_submitting_in_a_loop_keeps_a_bounded_history() {
    let dir = tempfile::tempdir().unwrap();
    let bounds = [
        "--tenant-job-history",
        "3",
        "--tenant-live-jobs",
        "2",
        "--tenant-job-history-bytes",
        "50000000",
    ];
    let mut t = tenants_with(dir.path(), &bounds).await;
    let quiet = submit(&mut t.good, &t.module, "sum", "[4, 40]", 0.0).await;
    value(&mut t.good, &quiet).await;
    let baseline = peak_mib(&t.head);

    // Ended jobs past the history bound are forgotten, oldest first:
    // record, result and log file.
    let logs = t.files.dir().join("logs");
    let mut ids = Vec::new();
    for _ in 0..6 {
        let id = submit(&mut t.bad, &t.module, "log_flood", "[100, 1000]", 0.0).await;
        assert_eq!(value(&mut t.bad, &id).await, 100);
        ids.push(id);
    }
    for id in &ids[..3] {
        let (status, message) = code(t.bad.job(id).await.unwrap_err());
        assert_eq!(status, Code::NotFound, "{message}");
        assert!(!logs.join(format!("{id}.log")).exists(), "{id}'s log");
    }
    for id in &ids[3..] {
        assert_eq!(t.bad.logs(id).await.unwrap().len(), 100);
    }
    assert_eq!(t.bad.list().await.unwrap().len(), 3);
    // The other tenant's job is its own history's, untouched.
    assert_eq!(
        t.good.job(&quiet).await.unwrap().state,
        JobState::Succeeded as i32
    );

    // Live jobs are bounded whatever the quota says.
    let a = submit(&mut t.bad, &t.module, "slow_log", "[100, 100]", 0.0).await;
    let b = submit(&mut t.bad, &t.module, "slow_log", "[100, 100]", 0.0).await;
    let (status, message) = code(
        t.bad
            .submit(&t.module, "slow_log", "[1, 1]", "")
            .await
            .unwrap_err(),
    );
    assert_eq!(status, Code::ResourceExhausted, "{message}");
    assert!(message.contains("2 of 2 jobs"), "{message}");
    well_behaved(&mut t, Duration::from_secs(30)).await;
    assert_peak_within(&t, baseline, 400);
    for id in [&a, &b] {
        t.bad.stop(id).await.unwrap();
        let result = t.bad.result(id, true).await.unwrap();
        assert_eq!(result.job.map(|j| j.state), Some(JobState::Stopped as i32));
    }

    // A head restarted with a smaller byte bound forgets at start what no
    // longer fits, all but the newest job of each tenant here.
    let mut head = t.head;
    head.kill();
    let head = start_head_with(
        t.files.dir(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--cpus",
            "2",
            "--tenant-job-history-bytes",
            "1",
        ],
    );
    let mut admin = client(&head, &t.files, &admin_token(&t.files)).await;
    let token = admin
        .issue_token("zeta", "someone", "tenant-admin", 3600)
        .await
        .unwrap()
        .token;
    let mut bad = client(&head, &t.files, &token).await;
    let kept = bad.list().await.unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].id, b, "the newest ended job stays");
    // Each job kept has its log (`.log`) and task records (`.tasks`).
    let count = |suffix: &str| {
        std::fs::read_dir(&logs)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(suffix))
            })
            .count()
    };
    let (log_files, task_files) = (count(".log"), count(".tasks"));
    assert!(log_files <= 3, "{log_files} log files left");
    assert!(task_files <= 3, "{task_files} task record files left");
}
