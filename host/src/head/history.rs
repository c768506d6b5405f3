//! How many ended jobs the head keeps per tenant, and how it forgets the
//! oldest.
//!
//! An ended job leaves a record in memory and in `head.redb`, its details
//! (result and log tail) in `head.redb` and its whole log in
//! `<state>/logs/<id>.log`. Without a bound, a tenant that submits jobs
//! in a loop grows all three for as long as the head lives. [`JobHistory`]
//! keeps, per tenant, the ended jobs in the order they ended with the
//! bytes each holds on disk, and names the oldest ones to forget once the
//! tenant holds more than [`JobLimits::history_per_tenant`] jobs or
//! [`JobLimits::history_bytes_per_tenant`] bytes. The newest ended job is
//! always kept, so a client can read what it just ran.

use crate::ids::JobId;
use std::collections::{HashMap, VecDeque};

/// The head's per-tenant bounds on jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobLimits {
    /// Jobs of one tenant that may be pending or running at once,
    /// whatever its `jobs` quota says (default 1,000): each holds its
    /// arguments (≤ 1 MiB) and a log tail (≤ 1 MiB) on the head.
    pub live_per_tenant: u64,
    /// Ended jobs kept per tenant (default 1,000); older ones are
    /// forgotten (record, result and log).
    pub history_per_tenant: usize,
    /// Bytes the ended jobs of one tenant may keep on the head's disk:
    /// stored results, log tails and log files (default 1 GiB).
    pub history_bytes_per_tenant: u64,
}

impl Default for JobLimits {
    fn default() -> Self {
        JobLimits {
            live_per_tenant: 1000,
            history_per_tenant: 1000,
            history_bytes_per_tenant: 1 << 30,
        }
    }
}

/// One tenant's ended jobs, oldest first, with what each keeps on disk.
#[derive(Default)]
struct TenantHistory {
    jobs: VecDeque<(JobId, u64)>,
    bytes: u64,
}

/// The ended jobs of every tenant, in the order they ended.
pub(super) struct JobHistory {
    limits: JobLimits,
    tenants: HashMap<String, TenantHistory>,
}

impl JobHistory {
    pub fn new(limits: JobLimits) -> Self {
        JobHistory {
            limits,
            tenants: HashMap::new(),
        }
    }

    /// Records that job `id` of `tenant` ended keeping `bytes` on disk;
    /// returns the jobs of that tenant to forget, oldest first.
    pub fn ended(&mut self, tenant: &str, id: JobId, bytes: u64) -> Vec<JobId> {
        let history = self.tenants.entry(tenant.to_string()).or_default();
        history.jobs.push_back((id, bytes));
        history.bytes = history.bytes.saturating_add(bytes);
        let mut forget = Vec::new();
        while history.jobs.len() > 1
            && (history.jobs.len() > self.limits.history_per_tenant
                || history.bytes > self.limits.history_bytes_per_tenant)
        {
            let Some((old, old_bytes)) = history.jobs.pop_front() else {
                break;
            };
            history.bytes = history.bytes.saturating_sub(old_bytes);
            forget.push(old);
        }
        forget
    }

    /// Ended jobs `tenant` keeps, and their bytes on disk.
    #[cfg(test)]
    pub fn usage(&self, tenant: &str) -> (usize, u64) {
        self.tenants
            .get(tenant)
            .map_or((0, 0), |h| (h.jobs.len(), h.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(jobs: usize, bytes: u64) -> JobLimits {
        JobLimits {
            live_per_tenant: 10,
            history_per_tenant: jobs,
            history_bytes_per_tenant: bytes,
        }
    }

    #[test]
    fn the_oldest_jobs_go_past_the_count() {
        let mut history = JobHistory::new(limits(3, u64::MAX));
        let ids: Vec<JobId> = (0..5).map(|_| JobId::random()).collect();
        for id in &ids[..3] {
            assert!(history.ended("a", *id, 10).is_empty());
        }
        assert_eq!(history.ended("a", ids[3], 10), vec![ids[0]]);
        assert_eq!(history.ended("a", ids[4], 10), vec![ids[1]]);
        assert_eq!(history.usage("a"), (3, 30));
    }

    #[test]
    fn the_oldest_jobs_go_past_the_bytes_but_the_newest_stays() {
        let mut history = JobHistory::new(limits(100, 100));
        let ids: Vec<JobId> = (0..4).map(|_| JobId::random()).collect();
        assert!(history.ended("a", ids[0], 40).is_empty());
        assert!(history.ended("a", ids[1], 40).is_empty());
        assert_eq!(history.ended("a", ids[2], 40), vec![ids[0]]);
        // One job larger than the whole bound is still kept, alone.
        assert_eq!(history.ended("a", ids[3], 500), vec![ids[1], ids[2]]);
        assert_eq!(history.usage("a"), (1, 500));
    }

    #[test]
    fn tenants_do_not_push_out_each_others_jobs() {
        let mut history = JobHistory::new(limits(2, u64::MAX));
        let quiet = JobId::random();
        assert!(history.ended("quiet", quiet, 1).is_empty());
        for _ in 0..1000 {
            let forgotten = history.ended("loud", JobId::random(), 1);
            assert!(!forgotten.contains(&quiet));
        }
        assert_eq!(history.usage("quiet"), (1, 1));
        assert_eq!(history.usage("loud"), (2, 2));
    }
}
