//! The head: the control plane. It stores modules by content address,
//! keeps the job table, places jobs on nodes, and collects their outcomes.
//!
//! The head talks to nodes only through [`NodeService`], and nodes talk to
//! it only through [`HeadService`]; in the embedded cluster both are plain
//! in-process calls, later they are gRPC.

use super::job::{JobOutcome, JobSpec};
use super::{ClusterError, HeadService, NodeService, NodeStatus};
use crate::ids::{JobId, ModuleHash};
use crate::runtime::BoxFuture;
use crate::sync::MutexExt;
use bytes::Bytes;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Accepted, not yet started on a node.
    Pending,
    /// The driver is running.
    Running,
    /// The driver returned a value.
    Succeeded,
    /// The driver (or the job's setup) failed.
    Failed,
}

struct JobRecord {
    status: JobStatus,
    outcome: watch::Sender<Option<JobOutcome>>,
}

#[derive(Default)]
struct State {
    modules: HashMap<ModuleHash, Bytes>,
    jobs: HashMap<JobId, JobRecord>,
    nodes: Vec<Arc<dyn NodeService>>,
    next_node: usize,
}

/// The head of a cluster.
#[derive(Default)]
pub struct Head {
    state: Mutex<State>,
}

impl Head {
    /// A head with no nodes, modules or jobs.
    pub fn new() -> Arc<Head> {
        Arc::new(Head::default())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.locked()
    }

    /// Adds a node that jobs can be placed on.
    pub fn attach_node(&self, node: Arc<dyn NodeService>) {
        self.lock().nodes.push(node);
    }

    /// Forgets every node (they stop receiving jobs). The embedded cluster
    /// calls this when it is dropped: head and node refer to each other.
    pub fn detach_nodes(&self) {
        self.lock().nodes.clear();
    }

    /// Stores a module; returns its content address. Uploading the same
    /// bytes twice stores them once.
    pub fn upload_module(&self, bytes: Bytes) -> ModuleHash {
        let hash = ModuleHash::of(&bytes);
        self.lock().modules.entry(hash).or_insert(bytes);
        hash
    }

    /// Starts a job on a node (round robin); returns its id at once.
    /// `namespace` is the scoped key `<tenant>/<namespace>`
    /// ([`crate::security::tenants::scoped`]).
    pub async fn submit_job(
        &self,
        module: ModuleHash,
        namespace: &str,
        entry: &str,
        args: Vec<Bytes>,
        options: super::job::JobOptions,
    ) -> Result<JobId, ClusterError> {
        let id = JobId::random();
        let node = {
            let mut state = self.lock();
            if !state.modules.contains_key(&module) {
                return Err(ClusterError::ModuleNotFound(module));
            }
            if state.nodes.is_empty() {
                return Err(ClusterError::NoNodes);
            }
            let node = state.nodes[state.next_node % state.nodes.len()].clone();
            state.next_node += 1;
            let (outcome, _) = watch::channel(None);
            state.jobs.insert(
                id,
                JobRecord {
                    status: JobStatus::Pending,
                    outcome,
                },
            );
            node
        };
        let spec = JobSpec {
            id,
            module,
            entry: entry.to_string(),
            args,
            namespace: namespace.to_string(),
            options,
        };
        node.start_job(spec).await?;
        if let Some(job) = self.lock().jobs.get_mut(&id)
            && job.status == JobStatus::Pending
        {
            job.status = JobStatus::Running;
        }
        Ok(id)
    }

    /// Whether a module with this hash is stored.
    pub fn has_module(&self, hash: ModuleHash) -> bool {
        self.lock().modules.contains_key(&hash)
    }

    /// A job's status.
    pub fn job_status(&self, id: JobId) -> Option<JobStatus> {
        self.lock().jobs.get(&id).map(|j| j.status)
    }

    /// A job's outcome if it has ended (never waits).
    pub fn job_outcome(&self, id: JobId) -> Option<JobOutcome> {
        self.lock()
            .jobs
            .get(&id)
            .and_then(|j| j.outcome.borrow().clone())
    }

    /// Forgets an ended job's record and outcome (its API keeps them on
    /// disk); a job still running is kept.
    pub fn forget_job(&self, id: JobId) {
        let mut state = self.lock();
        if state
            .jobs
            .get(&id)
            .is_some_and(|j| j.outcome.borrow().is_some())
        {
            state.jobs.remove(&id);
        }
    }

    /// Cancels everything `id` still runs, on every node. Its driver then
    /// ends with a `cancelled` error. Returns whether the job exists.
    pub async fn stop_job(&self, id: JobId) -> bool {
        let nodes = {
            let state = self.lock();
            if !state.jobs.contains_key(&id) {
                return false;
            }
            state.nodes.clone()
        };
        for node in nodes {
            node.stop_job(id).await;
        }
        true
    }

    /// Waits for a job to end and returns its outcome.
    pub async fn wait_job(&self, id: JobId) -> Result<JobOutcome, ClusterError> {
        let mut rx = self
            .lock()
            .jobs
            .get(&id)
            .map(|j| j.outcome.subscribe())
            .ok_or(ClusterError::JobNotFound(id))?;
        let outcome = rx
            .wait_for(|o| o.is_some())
            .await
            .map_err(|_| ClusterError::JobNotFound(id))?;
        outcome.clone().ok_or(ClusterError::JobNotFound(id))
    }

    /// The status of every node.
    pub async fn node_statuses(&self) -> Vec<NodeStatus> {
        let nodes = self.lock().nodes.clone();
        let mut out = Vec::with_capacity(nodes.len());
        for node in nodes {
            out.push(node.status().await);
        }
        out
    }
}

impl HeadService for Head {
    fn module(&self, hash: ModuleHash) -> BoxFuture<'static, Result<Bytes, ClusterError>> {
        let found = self.lock().modules.get(&hash).cloned();
        Box::pin(async move { found.ok_or(ClusterError::ModuleNotFound(hash)) })
    }

    fn job_finished(&self, outcome: JobOutcome) -> BoxFuture<'static, ()> {
        if let Some(job) = self.lock().jobs.get_mut(&outcome.id) {
            job.status = if outcome.result.is_ok() {
                JobStatus::Succeeded
            } else {
                JobStatus::Failed
            };
            job.outcome.send_replace(Some(outcome));
        }
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::MutexExt;
    use prism_abi::{ErrorKind, WireError};
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

    fn outcome(id: JobId, result: Result<Bytes, WireError>) -> JobOutcome {
        JobOutcome {
            id,
            result,
            logs: Default::default(),
            duration: Duration::ZERO,
        }
    }

    /// A head with a module and two recording nodes.
    fn head_with_two_nodes() -> (
        Arc<Head>,
        ModuleHash,
        Arc<RecordingNode>,
        Arc<RecordingNode>,
    ) {
        let head = Head::new();
        let module = head.upload_module(Bytes::from_static(b"m"));
        let (one, two) = (
            Arc::new(RecordingNode::default()),
            Arc::new(RecordingNode::default()),
        );
        head.attach_node(one.clone());
        head.attach_node(two.clone());
        (head, module, one, two)
    }

    async fn submit(head: &Head, module: ModuleHash) -> Result<JobId, ClusterError> {
        head.submit_job(
            module,
            "default/default",
            "main",
            Vec::new(),
            Default::default(),
        )
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
            Err(ClusterError::ModuleNotFound(_))
        ));
        assert!(matches!(submit(&head, a).await, Err(ClusterError::NoNodes)));
        assert_eq!(
            head.module(unknown).await.err().map(|e| e.to_string()),
            Some(ClusterError::ModuleNotFound(unknown).to_string())
        );
    }

    #[tokio::test]
    async fn jobs_go_round_robin_and_their_status_follows_their_outcome() {
        let (head, module, one, two) = head_with_two_nodes();
        let first = submit(&head, module).await.unwrap();
        let second = submit(&head, module).await.unwrap();
        let third = submit(&head, module).await.unwrap();
        assert_eq!(*one.started.locked(), vec![first, third]);
        assert_eq!(*two.started.locked(), vec![second]);
        assert_eq!(head.job_status(first), Some(JobStatus::Running));
        assert!(head.job_outcome(first).is_none());

        head.job_finished(outcome(first, Ok(Bytes::from_static(b"\xc0"))))
            .await;
        let failure = WireError::new(ErrorKind::Application, "no");
        head.job_finished(outcome(second, Err(failure))).await;
        assert_eq!(head.job_status(first), Some(JobStatus::Succeeded));
        assert_eq!(head.job_status(second), Some(JobStatus::Failed));
        let waited = head.wait_job(first).await.unwrap();
        assert_eq!(waited.result.unwrap(), Bytes::from_static(b"\xc0"));
    }

    #[tokio::test]
    async fn only_ended_jobs_are_forgotten_and_a_stop_reaches_every_node() {
        let (head, module, one, two) = head_with_two_nodes();
        let running = submit(&head, module).await.unwrap();
        let ended = submit(&head, module).await.unwrap();
        head.job_finished(outcome(ended, Ok(Bytes::new()))).await;

        head.forget_job(running);
        head.forget_job(ended);
        assert_eq!(head.job_status(running), Some(JobStatus::Running));
        assert_eq!(head.job_status(ended), None);
        assert!(matches!(
            head.wait_job(ended).await,
            Err(ClusterError::JobNotFound(_))
        ));

        assert!(head.stop_job(running).await);
        assert_eq!(*one.stopped.locked(), vec![running]);
        assert_eq!(*two.stopped.locked(), vec![running]);
        assert!(!head.stop_job(ended).await);
        assert_eq!(head.node_statuses().await.len(), 2);
        head.detach_nodes();
        assert!(matches!(
            submit(&head, module).await,
            Err(ClusterError::NoNodes)
        ));
    }
}
