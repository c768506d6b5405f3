use super::*;
use crate::meta::HeadStore;
use prism_abi::{ErrorKind, WireError};
use prism_proto::v1::JobState;
use std::time::Duration;

/// A node that accepts every job and records what it is asked.
#[derive(Default)]
struct RecordingNode {
    started: Mutex<Vec<JobId>>,
    stopped: Mutex<Vec<JobId>>,
}

impl NodeService for RecordingNode {
    fn start_job(&self, spec: JobSpec) -> BoxFuture<'static, Result<(), ClusterError>> {
        self.started.locked().push(spec.id);
        Box::pin(async { Ok(()) })
    }

    fn stop_job(&self, job: JobId) -> BoxFuture<'static, ()> {
        self.stopped.locked().push(job);
        Box::pin(async {})
    }

    fn status(&self) -> BoxFuture<'static, NodeStatus> {
        let status = NodeStatus {
            total: "cpu=1".into(),
            available: "cpu=1".into(),
            scheduler: Default::default(),
            store: Default::default(),
            store_capacity: 0,
            gpus: Vec::new(),
            gpu_usage: Default::default(),
        };
        Box::pin(async move { status })
    }
}

/// A node that refuses every job.
struct RefusingNode;

impl NodeService for RefusingNode {
    fn start_job(&self, _: JobSpec) -> BoxFuture<'static, Result<(), ClusterError>> {
        Box::pin(async { Err(ClusterError::NodeStopped) })
    }

    fn stop_job(&self, _: JobId) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }

    fn status(&self) -> BoxFuture<'static, NodeStatus> {
        RecordingNode::default().status()
    }
}

/// A node that ends every job it is given at once, before answering.
struct FinishingNode {
    head: std::sync::Weak<Head>,
    stopped: Mutex<Vec<JobId>>,
}

impl NodeService for FinishingNode {
    fn start_job(&self, spec: JobSpec) -> BoxFuture<'static, Result<(), ClusterError>> {
        let head = self.head.upgrade();
        Box::pin(async move {
            if let Some(head) = head {
                // `5` as MessagePack.
                head.job_finished(outcome(spec.id, Ok(Bytes::from_static(b"\x05"))))
                    .await;
            }
            Ok(())
        })
    }

    fn stop_job(&self, job: JobId) -> BoxFuture<'static, ()> {
        self.stopped.locked().push(job);
        Box::pin(async {})
    }

    fn status(&self) -> BoxFuture<'static, NodeStatus> {
        RecordingNode::default().status()
    }
}

fn outcome(id: JobId, result: Result<Bytes, WireError>) -> JobOutcome {
    JobOutcome {
        id,
        result,
        logs: Default::default(),
        duration: Duration::ZERO,
    }
}

/// A head with a module and two recording nodes.
fn head_with_two_nodes(
    head: Arc<Head>,
) -> (
    Arc<Head>,
    ModuleHash,
    Arc<RecordingNode>,
    Arc<RecordingNode>,
) {
    let module = head.upload_module(Bytes::from_static(b"m"));
    let (one, two) = (
        Arc::new(RecordingNode::default()),
        Arc::new(RecordingNode::default()),
    );
    head.attach_node(one.clone());
    head.attach_node(two.clone());
    (head, module, one, two)
}

fn submission(module: ModuleHash, tenant: &str, live_limit: u64) -> JobSubmission {
    JobSubmission {
        meta: JobMeta {
            module,
            entry: "main".into(),
            tenant: crate::security::tenants::TenantId::new(tenant),
            namespace: "default".into(),
            submitted_by: "someone".into(),
            submitted_at_ms: 7,
        },
        args: Vec::new(),
        options: Default::default(),
        live_limit,
    }
}

async fn submit(head: &Head, module: ModuleHash) -> Result<JobId, SubmitError> {
    head.submit_job(submission(module, "default", u64::MAX))
        .await
}

#[tokio::test]
async fn a_module_is_stored_once_and_a_job_needs_it_and_a_node() {
    let head = Head::new();
    let a = head.upload_module(Bytes::from_static(b"module"));
    assert_eq!(head.upload_module(Bytes::from_static(b"module")), a);
    assert!(head.has_module(a));
    let unknown = ModuleHash::of(b"other");
    assert!(matches!(
        submit(&head, unknown).await,
        Err(SubmitError::Cluster(ClusterError::ModuleNotFound(_)))
    ));
    assert!(matches!(
        submit(&head, a).await,
        Err(SubmitError::Cluster(ClusterError::NoNodes))
    ));
    assert_eq!(
        head.module(unknown).await.err().map(|e| e.to_string()),
        Some(ClusterError::ModuleNotFound(unknown).to_string())
    );
}

#[tokio::test]
async fn jobs_go_round_robin_and_their_status_follows_their_outcome() {
    let (head, module, one, two) = head_with_two_nodes(Head::new());
    let first = submit(&head, module).await.unwrap();
    let second = submit(&head, module).await.unwrap();
    let third = submit(&head, module).await.unwrap();
    assert_eq!(*one.started.locked(), vec![first, third]);
    assert_eq!(*two.started.locked(), vec![second]);
    assert_eq!(
        head.job_info(first).unwrap().state,
        JobState::Running as i32
    );
    assert!(head.job_outcome(first).is_none());

    head.job_finished(outcome(first, Ok(Bytes::from_static(b"\xc0"))))
        .await;
    let failure = WireError::new(ErrorKind::Application, "no");
    head.job_finished(outcome(second, Err(failure))).await;
    assert_eq!(
        head.job_info(first).unwrap().state,
        JobState::Succeeded as i32
    );
    assert_eq!(
        head.job_info(second).unwrap().state,
        JobState::Failed as i32
    );
    let waited = head.wait_job(first).await.unwrap();
    assert_eq!(waited.result.unwrap(), Bytes::from_static(b"\xc0"));
    // Without an archive, outcomes stay.
    assert!(head.job_outcome(first).is_some() && !head.is_archived(first));
}

#[tokio::test]
async fn a_stop_reaches_every_node_and_the_tenants_live_bound_holds() {
    let (head, module, one, two) = head_with_two_nodes(Head::new());
    let running = head.submit_job(submission(module, "t", 2)).await.unwrap();
    let ended = head.submit_job(submission(module, "t", 2)).await.unwrap();
    assert!(matches!(
        head.submit_job(submission(module, "t", 2)).await,
        Err(SubmitError::TooManyJobs {
            count: TooManyJobs {
                running: 2,
                limit: 2
            },
            ..
        })
    ));
    head.job_finished(outcome(ended, Ok(Bytes::new()))).await;
    assert_eq!(head.without_live_jobs("t", || ()).await, Err(1));
    assert_eq!(head.without_live_jobs("other", || 5).await, Ok(5));

    assert!(head.stop_job(running).await);
    assert_eq!(*one.stopped.locked(), vec![running]);
    assert_eq!(*two.stopped.locked(), vec![running]);
    assert!(!head.stop_job(JobId::random()).await);
    let cancelled = WireError::new(ErrorKind::Cancelled, "stopped");
    head.job_finished(outcome(running, Err(cancelled))).await;
    let info = head.job_info(running).unwrap();
    assert_eq!(info.state, JobState::Stopped as i32);
    assert_eq!(head.node_statuses().await.len(), 2);
    head.detach_nodes();
    assert!(matches!(
        submit(&head, module).await,
        Err(SubmitError::Cluster(ClusterError::NoNodes))
    ));
}

#[tokio::test]
async fn a_job_no_node_accepts_leaves_no_record() {
    let head = Head::new();
    let module = head.upload_module(Bytes::from_static(b"m"));
    head.attach_node(Arc::new(RefusingNode));
    assert!(matches!(
        submit(&head, module).await,
        Err(SubmitError::Cluster(ClusterError::NodeStopped))
    ));
    assert!(head.job_ids().is_empty());
    assert_eq!(head.without_live_jobs("default", || ()).await, Ok(()));
}

#[tokio::test]
async fn an_archived_job_keeps_its_record_result_and_place_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        let store = Arc::new(HeadStore::open(&dir.path().join("head.redb")).unwrap());
        Archive::new(store, dir.path().join("logs"))
    };
    let limits = JobLimits {
        live_per_tenant: 10,
        history_per_tenant: 3,
        history_bytes_per_tenant: u64::MAX,
    };
    let (module, first, jobs) = {
        let (head, _, _, _) = head_with_two_nodes(Head::with_archive(open(), limits).unwrap());
        let module = head.store_module(Bytes::from_static(b"stored")).unwrap();
        let mut jobs = Vec::new();
        for _ in 0..3 {
            jobs.push(submit(&head, module).await.unwrap());
        }
        let waiter = head.wait_job(jobs[0]);
        tokio::pin!(waiter);
        // Polled once: it now waits on the job's outcome.
        tokio::select! {
            biased;
            _ = &mut waiter => panic!("the job has not ended"),
            _ = std::future::ready(()) => {}
        }
        // `5` as MessagePack.
        head.job_finished(outcome(jobs[0], Ok(Bytes::from_static(b"\x05"))))
            .await;
        // A waiter from before the end gets the outcome; the head keeps
        // only the record.
        assert!(waiter.await.is_ok());
        assert!(head.is_archived(jobs[0]));
        assert!(head.job_outcome(jobs[0]).is_none());
        assert_eq!(
            head.job_details(jobs[0]).unwrap().value().as_deref(),
            Some("5")
        );
        let first = head.job_info(jobs[0]).unwrap();
        assert_eq!(first.state, JobState::Succeeded as i32);
        (module, first, jobs)
    };
    // Restarted: the module and the ended job are back; the jobs that
    // were running ended with the head.
    let head = Head::with_archive(open(), limits).unwrap();
    assert!(head.has_module(module));
    assert_eq!(head.job_info(jobs[0]), Some(first));
    let died = head.job_info(jobs[1]).unwrap();
    assert_eq!(died.state, JobState::Failed as i32);
    assert_eq!(died.error_kind, "worker_died");
    assert_eq!(head.job_ids().len(), 3);
}

#[tokio::test]
async fn a_job_that_ends_at_once_on_an_archiving_head_still_hands_over_its_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(HeadStore::open(&dir.path().join("head.redb")).unwrap());
    let head = Head::with_archive(
        Archive::new(store, dir.path().join("logs")),
        JobLimits::default(),
    )
    .unwrap();
    let node = Arc::new(FinishingNode {
        head: Arc::downgrade(&head),
        stopped: Mutex::default(),
    });
    head.attach_node(node.clone());
    let module = head.upload_module(Bytes::from_static(b"m"));
    let ended = head
        .submit_and_wait(submission(module, "default", 10))
        .await
        .unwrap();
    assert_eq!(ended.result.unwrap(), Bytes::from_static(b"\x05"));
    assert!(head.is_archived(ended.id));
    // Stopping an ended job asks no node anything.
    assert!(head.stop_job(ended.id).await);
    assert!(node.stopped.locked().is_empty());
    head.detach_nodes();
}
