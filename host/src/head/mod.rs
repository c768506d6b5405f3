//! The head: the control plane. It stores modules by content address,
//! keeps the one job table, places jobs on nodes and collects their
//! outcomes; a head process also keeps them on disk, knows its member
//! nodes and the cluster's actor names.
//!
//! The head talks to nodes only through [`NodeService`], and nodes talk to
//! it only through [`HeadService`]; in the embedded cluster both are plain
//! in-process calls, for worker nodes they are gRPC (`net`).
//!
//! - `mod.rs`: [`Head`]: modules, nodes, submission and the job table's
//!   API.
//! - `jobs.rs`: the job table ([`JobStatus`], [`JobMeta`]), live and
//!   ended jobs in one map.
//! - `archive.rs`: what a head process keeps on disk about jobs
//!   ([`Archive`]: `head.redb` and the job log files).
//! - `records.rs`, `history.rs`: the records of ended jobs and the
//!   per-tenant bounds on them ([`JobLimits`]).
//! - `membership.rs`: the member nodes ([`Membership`]): joins,
//!   heartbeats, dead nodes, the cluster view.
//! - `hosts.rs`: the nodes placement-group bundles are reserved on
//!   ([`ClusterHosts`]).
//! - `names.rs`: the directory of actor names ([`ActorNames`]).
//! - `embedded.rs`: [`EmbeddedCluster`], a head and one node in one
//!   process.
//! - `process.rs`: the composition root of a head process
//!   ([`HeadProcess::start`], [`HeadOptions`]).

mod archive;
mod embedded;
mod history;
mod hosts;
mod jobs;
mod membership;
mod names;
mod process;
mod records;

pub use archive::Archive;
pub use embedded::EmbeddedCluster;
pub use history::JobLimits;
pub use hosts::ClusterHosts;
pub use jobs::{JobMeta, JobStatus, TooManyJobs};
pub use membership::{GroupLog, Joined, Membership, MembershipConfig, MembershipError};
pub use names::ActorNames;
pub use process::{HeadError, HeadOptions, HeadProcess};
pub(crate) use records::{JobDetails, result_json};
pub use records::{MAX_ERROR_MESSAGE_BYTES, MAX_RESULT_JSON_BYTES};

use crate::cluster::NodeStatus;
use crate::cluster::{ClusterError, HeadService, JobOptions, JobOutcome, JobSpec, NodeService};
use crate::ids::{JobId, ModuleHash};
use crate::meta::MetaError;
use crate::runtime::BoxFuture;
use crate::security::tenants::NamespaceRef;
use crate::sync::MutexExt;
use bytes::Bytes;
use jobs::JobTable;
use prism_proto::v1::JobInfo;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Why the head refused a job.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The tenant runs as many jobs as it may.
    #[error("quota exceeded: tenant {tenant} runs {} of {} jobs", .count.running, .count.limit)]
    TooManyJobs {
        /// The tenant.
        tenant: String,
        /// Its live jobs and its bound.
        count: TooManyJobs,
    },
    /// No module, no node, or the node refused it.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// A job to run.
pub struct JobSubmission {
    /// Who submits it and what it runs.
    pub meta: JobMeta,
    /// MessagePack arguments of the driver.
    pub args: Vec<Bytes>,
    /// Environment, driver resources, grant.
    pub options: JobOptions,
    /// How many live jobs its tenant may have, this one included.
    pub live_limit: u64,
}

#[derive(Default)]
struct Members {
    modules: HashMap<ModuleHash, Bytes>,
    nodes: Vec<Arc<dyn NodeService>>,
    next_node: usize,
}

/// How long shutting down waits for stopped jobs to be archived (12 s:
/// gathering their task records waits at most 10 s for a node).
const ARCHIVE_WAIT: std::time::Duration = std::time::Duration::from_secs(12);

/// The head of a cluster.
pub struct Head {
    members: Mutex<Members>,
    jobs: Arc<Mutex<JobTable>>,
    /// Where ended jobs go (a head process); `None`: they stay in memory.
    archive: Option<Arc<Archive>>,
    /// Held while a submission is admitted and while a tenant is deleted,
    /// so neither sees the other half done.
    admission: tokio::sync::Mutex<()>,
}

impl Head {
    /// A head with no nodes, modules or jobs, that keeps every job's
    /// outcome in memory (the embedded cluster).
    pub fn new() -> Arc<Head> {
        Arc::new(Head::build(None, JobLimits::default()))
    }

    fn build(archive: Option<Archive>, limits: JobLimits) -> Head {
        Head {
            members: Mutex::default(),
            jobs: Arc::new(Mutex::new(JobTable::new(history::JobHistory::new(limits)))),
            archive: archive.map(Arc::new),
            admission: tokio::sync::Mutex::new(()),
        }
    }

    /// A head that archives ended jobs in `archive`, with the modules and
    /// ended jobs earlier runs left there, the oldest beyond `limits`
    /// forgotten.
    pub fn with_archive(archive: Archive, limits: JobLimits) -> Result<Arc<Head>, MetaError> {
        let head = Head::build(Some(archive), limits);
        let archive = head.archive.as_ref().expect("just set");
        for (hash, wasm) in archive.store().modules()? {
            let stored = head.upload_module(Bytes::from(wasm));
            if format!("{stored:?}") != hash {
                tracing::warn!(
                    "head.redb: module {hash} does not match its bytes; kept under {stored:?}"
                );
            }
        }
        let mut forget = Vec::new();
        {
            let mut jobs = head.jobs.locked();
            for job in archive.load_ended()? {
                forget.extend(jobs.archive(job.id, job.info, job.disk_bytes));
            }
        }
        forget_archived(head.archive(), &forget);
        Ok(Arc::new(head))
    }

    /// The archive, if this head keeps one.
    pub fn archive(&self) -> Option<&Archive> {
        self.archive.as_deref()
    }

    /// Adds a node that jobs can be placed on.
    pub fn attach_node(&self, node: Arc<dyn NodeService>) {
        self.members.locked().nodes.push(node);
    }

    /// Forgets every node (they stop receiving jobs). The embedded cluster
    /// calls this when it is dropped: head and node refer to each other.
    pub fn detach_nodes(&self) {
        self.members.locked().nodes.clear();
    }

    /// Stores a module; returns its content address. Uploading the same
    /// bytes twice stores them once.
    pub fn upload_module(&self, bytes: Bytes) -> ModuleHash {
        let hash = ModuleHash::of(&bytes);
        self.members.locked().modules.entry(hash).or_insert(bytes);
        hash
    }

    /// Stores a module, in the archive too (a head process keeps its
    /// modules across restarts).
    pub fn store_module(&self, bytes: Bytes) -> Result<ModuleHash, MetaError> {
        let hash = ModuleHash::of(&bytes);
        if !self.has_module(hash)
            && let Some(archive) = &self.archive
        {
            archive.store().put_module(&format!("{hash:?}"), &bytes)?;
        }
        Ok(self.upload_module(bytes))
    }

    /// Whether a module with this hash is stored.
    pub fn has_module(&self, hash: ModuleHash) -> bool {
        self.members.locked().modules.contains_key(&hash)
    }

    /// Admits a job (its tenant below its live bound), records it and
    /// starts it on a node (round robin); returns its id once the node
    /// accepted it.
    pub async fn submit_job(&self, job: JobSubmission) -> Result<JobId, SubmitError> {
        self.submit(job).await.map(|(id, _)| id)
    }

    /// Like [`Head::submit_job`], and waits for the job's outcome (which
    /// an archiving head would otherwise have archived by the time a
    /// late waiter asks).
    pub async fn submit_and_wait(&self, job: JobSubmission) -> Result<JobOutcome, SubmitError> {
        let (id, mut outcome) = self.submit(job).await?;
        let ended = outcome
            .wait_for(|o| o.is_some())
            .await
            .map_err(|_| ClusterError::JobNotFound(id))?;
        Ok(ended.clone().ok_or(ClusterError::JobNotFound(id))?)
    }

    async fn submit(
        &self,
        job: JobSubmission,
    ) -> Result<(JobId, tokio::sync::watch::Receiver<Option<JobOutcome>>), SubmitError> {
        let id = JobId::random();
        let module = job.meta.module;
        let namespace = NamespaceRef::new(&job.meta.tenant, &job.meta.namespace);
        let entry = job.meta.entry.clone();
        let node = {
            let mut members = self.members.locked();
            if !members.modules.contains_key(&module) {
                return Err(ClusterError::ModuleNotFound(module).into());
            }
            if members.nodes.is_empty() {
                return Err(ClusterError::NoNodes.into());
            }
            let node = members.nodes[members.next_node % members.nodes.len()].clone();
            members.next_node += 1;
            node
        };
        let outcome = {
            let _admission = self.admission.lock().await;
            let tenant = job.meta.tenant.to_string();
            let mut jobs = self.jobs.locked();
            jobs.admit(id, job.meta, job.live_limit)
                .map_err(|count| SubmitError::TooManyJobs { tenant, count })?;
            jobs.subscribe(id).ok_or(ClusterError::JobNotFound(id))?
        };
        // Recorded before it can end, so its final record comes last.
        let info = self.jobs.locked().info(id);
        if let (Some(archive), Some(info)) = (&self.archive, info) {
            archive.write_record(id, &info);
        }
        let spec = JobSpec {
            id,
            module,
            entry,
            args: job.args,
            namespace,
            options: job.options,
        };
        if let Err(e) = node.start_job(spec).await {
            self.jobs.locked().withdraw(id);
            if let Some(archive) = &self.archive {
                archive.forget(&[id]);
            }
            return Err(e.into());
        }
        let stop_requested = {
            let mut jobs = self.jobs.locked();
            jobs.started(id);
            jobs.stop_requested(id)
        };
        // Stopped while the node was taking it: the stop that went out
        // then may have found nothing to cancel yet.
        if stop_requested {
            node.stop_job(id).await;
        }
        Ok((id, outcome))
    }

    /// Runs `f` unless `tenant` has live jobs (then returns how many),
    /// with no submission admitted meanwhile.
    pub async fn without_live_jobs<T>(
        &self,
        tenant: &str,
        f: impl FnOnce() -> T,
    ) -> Result<T, u64> {
        let _admission = self.admission.lock().await;
        let running = self.jobs.locked().live(tenant);
        if running > 0 {
            return Err(running);
        }
        Ok(f())
    }

    /// A job's outcome if it has ended and is not archived (never waits).
    pub fn job_outcome(&self, id: JobId) -> Option<JobOutcome> {
        self.jobs.locked().outcome(id)
    }

    /// A job's record, as the API shows it.
    pub fn job_info(&self, id: JobId) -> Option<JobInfo> {
        self.jobs.locked().info(id)
    }

    /// A job's tenant and namespace.
    pub fn job_scope(&self, id: JobId) -> Option<(String, String)> {
        self.jobs.locked().scope(id)
    }

    /// Whether the head knows job `id` (live or ended).
    pub fn has_job(&self, id: JobId) -> bool {
        self.jobs.locked().contains(id)
    }

    /// How many jobs of `tenant` are live (submitted and not ended).
    pub fn live_jobs(&self, tenant: &str) -> u64 {
        self.jobs.locked().live(tenant)
    }

    /// Whether job `id` ended and its outcome is archived.
    pub fn is_archived(&self, id: JobId) -> bool {
        self.jobs.locked().is_archived(id)
    }

    /// Every job the head knows.
    pub fn job_ids(&self) -> Vec<JobId> {
        self.jobs.locked().ids()
    }

    /// What an archived job left (result, log tail).
    pub(crate) fn job_details(&self, id: JobId) -> Result<JobDetails, MetaError> {
        match &self.archive {
            Some(archive) => archive.details(id),
            None => Ok(JobDetails::default()),
        }
    }

    /// Cancels everything `id` still runs, on every node. Its driver then
    /// ends with a `cancelled` error, recorded as stopped. Returns whether
    /// the job exists.
    pub async fn stop_job(&self, id: JobId) -> bool {
        match self.jobs.locked().request_stop(id) {
            None => return false,
            // Ended: nothing runs anywhere.
            Some(false) => return true,
            Some(true) => {}
        }
        let nodes = self.members.locked().nodes.clone();
        for node in nodes {
            node.stop_job(id).await;
        }
        true
    }

    /// Stops every live job (the head is shutting down) and waits a
    /// little for each to end, recorded as stopped.
    pub async fn stop_all_jobs(&self) {
        let ids = self.jobs.locked().request_stop_all();
        if ids.is_empty() {
            return;
        }
        tracing::info!(jobs = ids.len(), "shutting down: stopping the running jobs");
        let nodes = self.members.locked().nodes.clone();
        for id in &ids {
            for node in &nodes {
                node.stop_job(*id).await;
            }
        }
        for id in &ids {
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(2), self.wait_job(*id)).await;
        }
        // An ended job is archived once its task records are gathered
        // (`job_finished`, at most 10 s per node): wait for that too, so
        // that a restarted head reads it as it ended.
        if self.archive.is_some() {
            let deadline = tokio::time::Instant::now() + ARCHIVE_WAIT;
            for id in ids {
                while !self.is_archived(id) && self.job_outcome(id).is_some() {
                    if tokio::time::Instant::now() >= deadline {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        }
    }

    /// Waits for a job to end and returns its outcome. An archived job
    /// has none to wait for (`JobNotFound`): read its record.
    pub async fn wait_job(&self, id: JobId) -> Result<JobOutcome, ClusterError> {
        let mut rx = self
            .jobs
            .locked()
            .subscribe(id)
            .ok_or(ClusterError::JobNotFound(id))?;
        let outcome = rx
            .wait_for(|o| o.is_some())
            .await
            .map_err(|_| ClusterError::JobNotFound(id))?;
        outcome.clone().ok_or(ClusterError::JobNotFound(id))
    }

    /// The status of every node.
    pub async fn node_statuses(&self) -> Vec<NodeStatus> {
        let nodes = self.members.locked().nodes.clone();
        let mut out = Vec::with_capacity(nodes.len());
        for node in nodes {
            out.push(node.status().await);
        }
        out
    }

    /// What the nodes recorded of job `id`'s calls, one record per task
    /// in submission order, and how many they did not record: from the
    /// archive once the job's records were gathered there, else from the
    /// nodes (which keep a job's records a minute after it ended).
    pub async fn job_tasks(&self, id: JobId) -> (Vec<prism_proto::v1::TaskInfo>, u64) {
        if let Some(stored) = self.archive.as_ref().and_then(|a| a.read_tasks(id)) {
            return stored;
        }
        let node = self.members.locked().nodes.first().cloned();
        match node {
            Some(node) => node.task_records(id).await,
            None => (Vec::new(), 0),
        }
    }
}

/// Writes an ended job's outcome to the archive and keeps only its
/// record; the tenant's oldest ended jobs past the history go.
fn archive_outcome(archive: &Archive, jobs: &Mutex<JobTable>, info: JobInfo, outcome: &JobOutcome) {
    let id = outcome.id;
    let (value_json, too_large) = match &outcome.result {
        Ok(bytes) => match result_json(bytes) {
            Ok(Some(text)) => (text, false),
            Ok(None) => (String::new(), true),
            Err(e) => {
                tracing::warn!("the result of {id}: {e}");
                (String::new(), false)
            }
        },
        Err(_) => (String::new(), false),
    };
    let details = JobDetails {
        value_json,
        too_large,
        logs: outcome
            .logs
            .iter()
            .map(|l| {
                (
                    l.function.clone(),
                    l.source.as_str().to_string(),
                    l.text.clone(),
                )
            })
            .collect(),
    };
    let disk_bytes = archive.write_end(id, &info, &details);
    let forget = jobs.locked().archive(id, info, disk_bytes);
    forget_archived(Some(archive), &forget);
}

fn forget_archived(archive: Option<&Archive>, ids: &[JobId]) {
    if let Some(archive) = archive {
        archive.forget(ids);
    }
    if !ids.is_empty() {
        tracing::debug!(jobs = ids.len(), "forgot ended jobs past the history bound");
    }
}

impl HeadService for Head {
    fn module(&self, hash: ModuleHash) -> BoxFuture<'static, Result<Bytes, ClusterError>> {
        let found = self.members.locked().modules.get(&hash).cloned();
        Box::pin(async move { found.ok_or(ClusterError::ModuleNotFound(hash)) })
    }

    fn job_finished(&self, outcome: JobOutcome) -> BoxFuture<'static, ()> {
        let info = self.jobs.locked().finished(outcome.clone());
        let (Some(archive), Some(info)) = (self.archive.clone(), info) else {
            return Box::pin(async {});
        };
        let node = self.members.locked().nodes.first().cloned();
        let jobs = self.jobs.clone();
        Box::pin(async move {
            // The job's task records go next to its log, then its outcome
            // (which counts both files against the tenant's history).
            if let Some(node) = node {
                let (mut tasks, unrecorded) = node.task_records(outcome.id).await;
                let ended_us = u64::try_from(info.ended_at_ms)
                    .unwrap_or(0)
                    .saturating_mul(1000);
                crate::events::merge::end_unfinished(&mut tasks, ended_us);
                archive.write_tasks(outcome.id, tasks, unrecorded);
            }
            archive_outcome(&archive, &jobs, info, &outcome);
        })
    }
}

#[cfg(test)]
mod tests;
