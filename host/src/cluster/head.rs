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
