//! The head's job table: every job the head knows, running or ended, in
//! one map.
//!
//! A job enters as [`JobStatus::Pending`] when it is admitted, becomes
//! `Running` once a node accepted it and `Succeeded` or `Failed` when its
//! outcome arrives. A head with an [`Archive`](super::Archive) then
//! writes the outcome to disk and keeps only the job's record
//! ([`JobInfo`]): the entry becomes ended. Without one (the embedded
//! cluster of `prism run`) the outcome stays until the head is dropped.
//!
//! Ended entries are bounded per tenant by [`JobHistory`]; live ones by
//! the admission check in [`JobTable::admit`].

use super::history::JobHistory;
use super::records::{self, MAX_ERROR_MESSAGE_BYTES};
use crate::cluster::JobOutcome;
use crate::ids::{JobId, ModuleHash};
use crate::security::tenants::TenantId;
use prism_proto::v1::{JobInfo, JobState};
use serde::Serialize;
use std::collections::HashMap;
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

/// Who submitted a job, and what.
#[derive(Clone, Debug)]
pub struct JobMeta {
    /// The module it runs.
    pub module: ModuleHash,
    /// Its driver's name.
    pub entry: String,
    /// Its tenant.
    pub tenant: TenantId,
    /// Its namespace in that tenant.
    pub namespace: String,
    /// The subject of the token that submitted it (empty: the embedded
    /// cluster).
    pub submitted_by: String,
    /// When, in milliseconds since the epoch.
    pub submitted_at_ms: i64,
}

/// A job that has not been archived.
struct LiveJob {
    meta: JobMeta,
    status: JobStatus,
    stop_requested: bool,
    outcome: watch::Sender<Option<JobOutcome>>,
}

impl LiveJob {
    /// Its record as the API shows it.
    fn info(&self, id: JobId) -> JobInfo {
        let meta = &self.meta;
        let outcome = self.outcome.borrow();
        let state = match (self.status, outcome.as_ref()) {
            (JobStatus::Pending, _) => JobState::Pending,
            (JobStatus::Running, _) => JobState::Running,
            (JobStatus::Succeeded, _) => JobState::Succeeded,
            // Stopping cancels the job's work, and its driver may end
            // with any error a cancelled subtask gave it before its own
            // cancellation lands: a job that fails after a stop request
            // was stopped (its error is kept).
            (JobStatus::Failed, Some(_)) if self.stop_requested => JobState::Stopped,
            (JobStatus::Failed, _) => JobState::Failed,
        };
        let mut info = JobInfo {
            id: id.to_string(),
            state: state as i32,
            module_hash: format!("{:?}", meta.module),
            entry: meta.entry.clone(),
            namespace: meta.namespace.clone(),
            tenant: meta.tenant.to_string(),
            submitted_by: meta.submitted_by.clone(),
            submitted_at_ms: meta.submitted_at_ms,
            ..Default::default()
        };
        if let Some(o) = outcome.as_ref() {
            info.ended_at_ms = meta.submitted_at_ms + o.duration.as_millis() as i64;
            if let Err(e) = &o.result {
                info.error_kind = e.kind.to_string();
                info.error_message = records::cut(&e.message, MAX_ERROR_MESSAGE_BYTES);
            }
        }
        info
    }
}

enum JobEntry {
    Live(LiveJob),
    /// Its outcome is on disk; its record stays here.
    Ended(JobInfo),
}

impl JobEntry {
    fn tenant(&self) -> &str {
        match self {
            JobEntry::Live(job) => &job.meta.tenant,
            JobEntry::Ended(info) if info.tenant.is_empty() => crate::security::DEFAULT_TENANT,
            JobEntry::Ended(info) => &info.tenant,
        }
    }

    fn namespace(&self) -> &str {
        match self {
            JobEntry::Live(job) => &job.meta.namespace,
            JobEntry::Ended(info) => &info.namespace,
        }
    }
}

/// Why a job was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyJobs {
    /// The tenant's live jobs.
    pub running: u64,
    /// How many it may have.
    pub limit: u64,
}

/// Every job of the head.
pub(crate) struct JobTable {
    jobs: HashMap<JobId, JobEntry>,
    history: JobHistory,
}

impl JobTable {
    pub fn new(history: JobHistory) -> Self {
        JobTable {
            jobs: HashMap::new(),
            history,
        }
    }

    /// Admits job `id` as pending if its tenant has fewer than `limit`
    /// live jobs.
    pub fn admit(&mut self, id: JobId, meta: JobMeta, limit: u64) -> Result<(), TooManyJobs> {
        let running = self.live(&meta.tenant);
        if running >= limit {
            return Err(TooManyJobs { running, limit });
        }
        let (outcome, _) = watch::channel(None);
        self.jobs.insert(
            id,
            JobEntry::Live(LiveJob {
                meta,
                status: JobStatus::Pending,
                stop_requested: false,
                outcome,
            }),
        );
        Ok(())
    }

    /// Removes a job that never started.
    pub fn withdraw(&mut self, id: JobId) {
        self.jobs.remove(&id);
    }

    /// Jobs of `tenant` that are pending or running.
    pub fn live(&self, tenant: &str) -> u64 {
        self.jobs
            .values()
            .filter(|entry| {
                matches!(entry, JobEntry::Live(job)
                    if job.meta.tenant == tenant
                        && matches!(job.status, JobStatus::Pending | JobStatus::Running))
            })
            .count() as u64
    }

    /// Marks a pending job running.
    pub fn started(&mut self, id: JobId) {
        if let Some(JobEntry::Live(job)) = self.jobs.get_mut(&id)
            && job.status == JobStatus::Pending
        {
            job.status = JobStatus::Running;
        }
    }

    /// Records a job's outcome; returns its record, or `None` if the job
    /// is not live.
    pub fn finished(&mut self, outcome: JobOutcome) -> Option<JobInfo> {
        let id = outcome.id;
        let Some(JobEntry::Live(job)) = self.jobs.get_mut(&id) else {
            return None;
        };
        job.status = if outcome.result.is_ok() {
            JobStatus::Succeeded
        } else {
            JobStatus::Failed
        };
        job.outcome.send_replace(Some(outcome));
        Some(job.info(id))
    }

    /// Keeps only the record of an ended job (its outcome is on disk; the
    /// job may have ended in an earlier run of the head); returns the jobs
    /// of its tenant past the history bounds, now forgotten here too.
    pub fn archive(&mut self, id: JobId, info: JobInfo, disk_bytes: u64) -> Vec<JobId> {
        let tenant = info.tenant.clone();
        self.jobs.insert(id, JobEntry::Ended(info));
        self.remember(&tenant, id, disk_bytes)
    }

    fn remember(&mut self, tenant: &str, id: JobId, disk_bytes: u64) -> Vec<JobId> {
        let forget = self.history.ended(tenant, id, disk_bytes);
        for old in &forget {
            self.jobs.remove(old);
        }
        forget
    }

    /// The outcome of a live job that has ended.
    pub fn outcome(&self, id: JobId) -> Option<JobOutcome> {
        match self.jobs.get(&id)? {
            JobEntry::Live(job) => job.outcome.borrow().clone(),
            JobEntry::Ended(_) => None,
        }
    }

    /// A receiver of a live job's outcome (`None`: unknown or archived).
    pub fn subscribe(&self, id: JobId) -> Option<watch::Receiver<Option<JobOutcome>>> {
        match self.jobs.get(&id)? {
            JobEntry::Live(job) => Some(job.outcome.subscribe()),
            JobEntry::Ended(_) => None,
        }
    }

    /// Whether the job's outcome is archived.
    pub fn is_archived(&self, id: JobId) -> bool {
        matches!(self.jobs.get(&id), Some(JobEntry::Ended(_)))
    }

    pub fn contains(&self, id: JobId) -> bool {
        self.jobs.contains_key(&id)
    }

    /// Marks a live job as stopped by request; returns whether it is
    /// live (`None`: unknown; `Some(false)`: ended and archived).
    pub fn request_stop(&mut self, id: JobId) -> Option<bool> {
        match self.jobs.get_mut(&id)? {
            JobEntry::Live(job) => {
                job.stop_requested = true;
                Some(true)
            }
            JobEntry::Ended(_) => Some(false),
        }
    }

    /// Whether a stop was requested for a live job.
    pub fn stop_requested(&self, id: JobId) -> bool {
        matches!(self.jobs.get(&id), Some(JobEntry::Live(job)) if job.stop_requested)
    }

    /// Marks every live job stopped by request; returns them.
    pub fn request_stop_all(&mut self) -> Vec<JobId> {
        let mut ids = Vec::new();
        for (id, entry) in &mut self.jobs {
            if let JobEntry::Live(job) = entry {
                job.stop_requested = true;
                ids.push(*id);
            }
        }
        ids
    }

    /// The job's record.
    pub fn info(&self, id: JobId) -> Option<JobInfo> {
        match self.jobs.get(&id)? {
            JobEntry::Live(job) => Some(job.info(id)),
            JobEntry::Ended(info) => Some(info.clone()),
        }
    }

    /// The job's tenant and namespace.
    pub fn scope(&self, id: JobId) -> Option<(String, String)> {
        let entry = self.jobs.get(&id)?;
        Some((entry.tenant().to_string(), entry.namespace().to_string()))
    }

    /// Every job's id.
    pub fn ids(&self) -> Vec<JobId> {
        self.jobs.keys().copied().collect()
    }

    /// Ended jobs `tenant` keeps, and their bytes on disk.
    #[cfg(test)]
    pub fn history_usage(&self, tenant: &str) -> (usize, u64) {
        self.history.usage(tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::JobLimits;
    use bytes::Bytes;
    use prism_abi::{ErrorKind, WireError};
    use std::time::Duration;

    fn meta(tenant: &str) -> JobMeta {
        JobMeta {
            module: ModuleHash::of(b"m"),
            entry: "main".into(),
            tenant: TenantId::new(tenant),
            namespace: "default".into(),
            submitted_by: "someone".into(),
            submitted_at_ms: 1_000,
        }
    }

    fn outcome(id: JobId, result: Result<Bytes, WireError>) -> JobOutcome {
        JobOutcome {
            id,
            result,
            logs: Default::default(),
            duration: Duration::from_millis(5),
        }
    }

    fn table(history: usize) -> JobTable {
        JobTable::new(JobHistory::new(JobLimits {
            live_per_tenant: 10,
            history_per_tenant: history,
            history_bytes_per_tenant: u64::MAX,
        }))
    }

    #[test]
    fn admission_counts_only_the_tenants_live_jobs() {
        let mut jobs = table(10);
        let (a, b, c) = (JobId::random(), JobId::random(), JobId::random());
        jobs.admit(a, meta("t"), 2).unwrap();
        jobs.admit(b, meta("other"), 2).unwrap();
        jobs.admit(c, meta("t"), 2).unwrap();
        assert_eq!(
            jobs.admit(JobId::random(), meta("t"), 2),
            Err(TooManyJobs {
                running: 2,
                limit: 2
            })
        );
        let info = jobs.finished(outcome(a, Ok(Bytes::new()))).unwrap();
        assert_eq!(info.state, JobState::Succeeded as i32);
        assert_eq!(info.ended_at_ms, 1_005);
        assert_eq!(jobs.live("t"), 1);
        jobs.withdraw(c);
        assert_eq!(jobs.live("t"), 0);
        assert!(!jobs.contains(c));
    }

    #[test]
    fn a_stopped_job_reads_stopped_and_an_archived_one_keeps_its_record() {
        let mut jobs = table(10);
        let id = JobId::random();
        jobs.admit(id, meta("t"), 5).unwrap();
        jobs.started(id);
        assert_eq!(jobs.info(id).unwrap().state, JobState::Running as i32);
        assert_eq!(jobs.request_stop(id), Some(true));
        assert!(jobs.stop_requested(id));
        let mut rx = jobs.subscribe(id).unwrap();
        let cancelled = WireError::new(ErrorKind::Cancelled, "stopped");
        let info = jobs.finished(outcome(id, Err(cancelled))).unwrap();
        assert_eq!(info.state, JobState::Stopped as i32);
        assert_eq!(info.error_kind, "cancelled");
        assert!(jobs.outcome(id).is_some());

        assert!(jobs.archive(id, info.clone(), 10).is_empty());
        // A waiter that subscribed before the archive still gets the
        // outcome; later ones find the record.
        assert!(rx.borrow_and_update().is_some());
        assert!(jobs.is_archived(id));
        assert!(jobs.outcome(id).is_none() && jobs.subscribe(id).is_none());
        assert_eq!(jobs.info(id), Some(info));
        assert_eq!(jobs.scope(id), Some(("t".into(), "default".into())));
        assert_eq!(jobs.request_stop(id), Some(false));
        assert!(!jobs.stop_requested(id));
        assert_eq!(jobs.request_stop(JobId::random()), None);
    }

    #[test]
    fn a_job_failing_after_a_stop_request_reads_stopped_and_keeps_its_error() {
        let mut jobs = table(10);
        let id = JobId::random();
        jobs.admit(id, meta("t"), 5).unwrap();
        jobs.started(id);
        jobs.request_stop(id);
        let failed = WireError::new(ErrorKind::Application, "task failed (cancelled)");
        let info = jobs.finished(outcome(id, Err(failed))).unwrap();
        assert_eq!(info.state, JobState::Stopped as i32);
        assert_eq!(info.error_kind, "application");

        // Without a stop request, the same error is a failure.
        let other = JobId::random();
        jobs.admit(other, meta("t"), 5).unwrap();
        jobs.started(other);
        let failed = WireError::new(ErrorKind::Application, "boom");
        let info = jobs.finished(outcome(other, Err(failed))).unwrap();
        assert_eq!(info.state, JobState::Failed as i32);
    }

    #[test]
    fn ended_jobs_past_the_history_are_forgotten_per_tenant() {
        let mut jobs = table(2);
        let quiet = JobId::random();
        jobs.archive(quiet, JobInfo::default(), 1);
        let loud: Vec<JobId> = (0..3).map(|_| JobId::random()).collect();
        let info = |tenant: &str| JobInfo {
            tenant: tenant.into(),
            ..Default::default()
        };
        assert!(jobs.archive(loud[0], info("loud"), 1).is_empty());
        assert!(jobs.archive(loud[1], info("loud"), 1).is_empty());
        assert_eq!(jobs.archive(loud[2], info("loud"), 1), vec![loud[0]]);
        assert!(!jobs.contains(loud[0]) && jobs.contains(quiet));
        assert_eq!(jobs.history_usage("loud"), (2, 2));
        // A record without a tenant is the default tenant's.
        assert_eq!(
            jobs.scope(quiet).unwrap().0,
            crate::security::DEFAULT_TENANT
        );
        assert_eq!(jobs.ids().len(), 3);
    }
}
