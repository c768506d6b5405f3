//! What a head process keeps on disk about jobs and modules: `head.redb`
//! (modules, job records, job details) and, in `<state>/logs`, each job's
//! log file (`<job>.log`) and task records (`<job>.tasks`). The embedded cluster of `prism run` keeps none.
//!
//! A job's record is written when it is submitted and again when it ends;
//! its details (result as JSON, log tail) when it ends. A restarted head
//! reads the records back ([`Archive::load_ended`]): a job that was
//! running when the head stopped ended with it (`worker_died`).

use super::records::{JobDetails, StoredJob};
use crate::ids::JobId;
use crate::meta::{HeadStore, MetaError};
use prism_proto::v1::{JobInfo, JobState, TaskInfo, TaskPage};
use prost::Message;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A job that ended in this run of the head or an earlier one, as its
/// record says.
pub(crate) struct EndedJob {
    pub id: JobId,
    pub info: JobInfo,
    /// Bytes it keeps on the head's disk (details and log file).
    pub disk_bytes: u64,
    /// When it ended among the others (0: not known).
    end_order: u64,
}

/// `head.redb` and the job log directory.
pub struct Archive {
    store: Arc<HeadStore>,
    log_dir: PathBuf,
    /// The last `end_order` given ([`Archive::load_ended`] starts it past
    /// every recorded one).
    end_order: AtomicU64,
}

impl Archive {
    /// The archive in `store`, with job logs in `log_dir`.
    pub fn new(store: Arc<HeadStore>, log_dir: PathBuf) -> Self {
        Archive {
            store,
            log_dir,
            end_order: AtomicU64::new(0),
        }
    }

    /// The store (for the head's other tables: names, nodes, tenants).
    pub fn store(&self) -> &Arc<HeadStore> {
        &self.store
    }

    /// Where job `id`'s whole log is written.
    pub fn log_file(&self, id: JobId) -> PathBuf {
        self.log_dir.join(format!("{id}.log"))
    }

    /// Where job `id`'s task records are kept once it ended.
    pub fn tasks_file(&self, id: JobId) -> PathBuf {
        self.log_dir.join(format!("{id}.tasks"))
    }

    /// The size of job `id`'s log and task files (0 if it has none).
    fn log_file_bytes(&self, id: JobId) -> u64 {
        [self.log_file(id), self.tasks_file(id)]
            .iter()
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .sum()
    }

    /// Writes an ended job's task records (pages of length-delimited
    /// protobuf), replacing any.
    pub(crate) fn write_tasks(&self, id: JobId, tasks: Vec<TaskInfo>, unrecorded: u64) {
        let mut bytes = Vec::new();
        for page in crate::events::merge::pages(&id.to_string(), tasks, unrecorded) {
            if page.encode_length_delimited(&mut bytes).is_err() {
                return;
            }
        }
        // Written beside and renamed: a reader never sees half a file.
        let path = self.tasks_file(id);
        let partial = path.with_extension("tasks.partial");
        let written =
            std::fs::write(&partial, bytes).and_then(|()| std::fs::rename(&partial, &path));
        if let Err(e) = written {
            tracing::error!("could not write {}: {e}", path.display());
            let _ = std::fs::remove_file(&partial);
        }
    }

    /// An ended job's task records, if they were written.
    pub(crate) fn read_tasks(&self, id: JobId) -> Option<(Vec<TaskInfo>, u64)> {
        let bytes = std::fs::read(self.tasks_file(id)).ok()?;
        let mut buf = bytes.as_slice();
        let mut tasks = Vec::new();
        let mut unrecorded = 0;
        while !buf.is_empty() {
            let page = TaskPage::decode_length_delimited(&mut buf).ok()?;
            unrecorded += page.unrecorded;
            tasks.extend(page.tasks);
        }
        Some((tasks, unrecorded))
    }

    /// Writes a job's record (details apart).
    pub(crate) fn write_record(&self, id: JobId, info: &JobInfo) {
        self.put_record(id, info, 0, 0);
    }

    fn put_record(&self, id: JobId, info: &JobInfo, disk_bytes: u64, end_order: u64) {
        let record = StoredJob {
            info: info.clone(),
            value_json: String::new(),
            logs: Vec::new(),
            disk_bytes,
            end_order,
        };
        match serde_json::to_vec(&record) {
            Ok(bytes) => {
                if let Err(e) = self.store.put_job(&id.to_string(), &bytes) {
                    tracing::error!("could not record {id} in head.redb: {e}");
                }
            }
            Err(e) => tracing::error!("could not encode the record of {id}: {e}"),
        }
    }

    /// Writes an ended job's details and its final record; returns the
    /// bytes it keeps on disk (details and log file).
    pub(crate) fn write_end(&self, id: JobId, info: &JobInfo, details: &JobDetails) -> u64 {
        let mut disk_bytes = self.log_file_bytes(id);
        match serde_json::to_vec(details) {
            Ok(bytes) => {
                disk_bytes += bytes.len() as u64;
                if let Err(e) = self.store.put_job_details(&id.to_string(), &bytes) {
                    tracing::error!("could not record the result of {id} in head.redb: {e}");
                }
            }
            Err(e) => tracing::error!("could not encode the result of {id}: {e}"),
        }
        let end_order = self.end_order.fetch_add(1, Ordering::Relaxed) + 1;
        self.put_record(id, info, disk_bytes, end_order);
        disk_bytes
    }

    /// Forgets jobs: record, details and log file.
    pub(crate) fn forget(&self, ids: &[JobId]) {
        for id in ids {
            if let Err(e) = self.store.delete_job(&id.to_string()) {
                tracing::error!("could not forget {id} in head.redb: {e}");
            }
            for path in [self.log_file(*id), self.tasks_file(*id)] {
                if let Err(e) = std::fs::remove_file(&path)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::error!("could not remove {}: {e}", path.display());
                }
            }
        }
    }

    /// What an ended job left (empty if nothing was recorded).
    pub(crate) fn details(&self, id: JobId) -> Result<JobDetails, MetaError> {
        let bytes = self.store.job_details(&id.to_string())?;
        Ok(bytes
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default())
    }

    /// Every job recorded by earlier runs of the head, oldest end first.
    /// Records written before details were kept apart are split; a job
    /// that was pending or running ended with the head that ran it.
    pub(crate) fn load_ended(&self) -> Result<Vec<EndedJob>, MetaError> {
        let store = &self.store;
        let mut ended = Vec::new();
        for (id, bytes) in store.jobs()? {
            let (Some(job_id), Ok(mut record)) = (
                JobId::parse(&id),
                serde_json::from_slice::<StoredJob>(&bytes),
            ) else {
                tracing::warn!("head.redb: unreadable record of {id}; ignored");
                continue;
            };
            let running = [JobState::Pending as i32, JobState::Running as i32];
            let inline = !record.value_json.is_empty() || !record.logs.is_empty();
            if inline {
                // Written before details were kept apart: move them out,
                // so the next start reads the record alone.
                let details = JobDetails {
                    value_json: std::mem::take(&mut record.value_json),
                    too_large: false,
                    logs: std::mem::take(&mut record.logs),
                };
                if let Ok(bytes) = serde_json::to_vec(&details) {
                    store.put_job_details(&id, &bytes)?;
                }
            }
            let was_running = running.contains(&record.info.state);
            if was_running {
                // It ran in a head process that is gone; so is its driver.
                record.info.state = JobState::Failed as i32;
                record.info.error_kind = prism_abi::ErrorKind::WorkerDied.to_string();
                record.info.error_message = "the head restarted while the job ran".into();
            }
            let unmeasured = record.disk_bytes == 0;
            if unmeasured {
                record.disk_bytes = store.job_details_len(&id)? + self.log_file_bytes(job_id);
            }
            if (inline || was_running || unmeasured)
                && let Ok(bytes) = serde_json::to_vec(&record)
            {
                store.put_job(&id, &bytes)?;
            }
            self.end_order
                .fetch_max(record.end_order, Ordering::Relaxed);
            ended.push(EndedJob {
                end_order: record.end_order,
                id: job_id,
                info: record.info,
                disk_bytes: record.disk_bytes,
            });
        }
        // Jobs that ended before the order was kept, or ended with the
        // head, first, by time.
        ended.sort_by_key(|job| {
            (
                job.end_order,
                job.info.ended_at_ms.max(job.info.submitted_at_ms),
                job.id,
            )
        });
        Ok(ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(id: JobId) -> JobInfo {
        JobInfo {
            id: id.to_string(),
            state: JobState::Succeeded as i32,
            submitted_at_ms: 1_000,
            ended_at_ms: 2_000,
            ..JobInfo::default()
        }
    }

    #[test]
    fn jobs_that_end_in_the_same_millisecond_reload_in_the_order_they_ended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("head.redb");
        let ids: Vec<JobId> = (0..20).map(|_| JobId::random()).collect();
        {
            let store = Arc::new(HeadStore::open(&path).unwrap());
            let archive = Archive::new(store, dir.path().join("logs"));
            for id in &ids[..10] {
                archive.write_end(*id, &ended(*id), &JobDetails::default());
            }
        }
        // A second run carries on after the first's order.
        {
            let store = Arc::new(HeadStore::open(&path).unwrap());
            let archive = Archive::new(store, dir.path().join("logs"));
            assert_eq!(archive.load_ended().unwrap().len(), 10);
            for id in &ids[10..] {
                archive.write_end(*id, &ended(*id), &JobDetails::default());
            }
        }
        let store = Arc::new(HeadStore::open(&path).unwrap());
        let archive = Archive::new(store, dir.path().join("logs"));
        let order: Vec<JobId> = archive.load_ended().unwrap().iter().map(|j| j.id).collect();
        assert_eq!(order, ids);
    }
}
