//! What each tenant uses on this node, against its quotas, and its
//! dominant share for fair scheduling.
//!
//! A tenant's quotas ([`Quotas`]) come with each of its jobs
//! ([`JobGrant`]); the node keeps one [`TenantAccount`] per tenant and one
//! [`JobAccount`] per job. Counts are admitted with a compare-and-swap, so
//! two guests racing for the last unit cannot both get it; nothing already
//! admitted is ever taken back.

use super::resources::ResourceSet;
use crate::metrics::{NodeMetrics, TenantGauges, TenantMetrics};
use crate::security::tenants::TenantId;
use crate::security::{JobGrant, Quotas};
use crate::sync::{MutexExt, RwLockExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// A tenant's use on one node, or summed over several: what nodes report
/// to each other (through the head's heartbeats) so that quotas hold
/// cluster-wide.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Tasks admitted and not finished.
    pub queued_tasks: u64,
    /// Live actors.
    pub actors: u64,
    /// Bytes of objects.
    pub object_bytes: u64,
    /// CPU held by running tasks (thousandths).
    pub cpu_milli: u64,
    /// Memory held by running tasks (bytes).
    pub memory: u64,
    /// GPU held by running tasks (thousandths).
    pub gpu_milli: u64,
}

impl Usage {
    /// Adds `other` in (saturating).
    pub fn add(&mut self, other: &Usage) {
        self.queued_tasks = self.queued_tasks.saturating_add(other.queued_tasks);
        self.actors = self.actors.saturating_add(other.actors);
        self.object_bytes = self.object_bytes.saturating_add(other.object_bytes);
        self.cpu_milli = self.cpu_milli.saturating_add(other.cpu_milli);
        self.memory = self.memory.saturating_add(other.memory);
        self.gpu_milli = self.gpu_milli.saturating_add(other.gpu_milli);
    }

    fn is_zero(&self) -> bool {
        *self == Usage::default()
    }
}

/// A request refused because the tenant is at a quota.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("quota exceeded: tenant {tenant} {what}")]
pub struct QuotaExceeded {
    /// The tenant.
    pub tenant: String,
    /// What is at its limit, in words ("has 10 of 10 queued tasks").
    pub what: String,
}

/// What one tenant uses on this node.
pub struct TenantAccount {
    name: TenantId,
    /// Fair-share weight, as f64 bits.
    weight: AtomicU64,
    quotas: RwLock<Quotas>,
    queued: AtomicU64,
    actors: AtomicU64,
    object_bytes: AtomicU64,
    /// CPU (thousandths), memory (bytes) and GPU (thousandths) its
    /// running tasks hold here.
    held: Mutex<(u64, u64, u64)>,
    /// Instance slots its guests hold here (running or blocked).
    instances: AtomicU64,
    /// When it last started a task ([`SERVED`] order): among equal
    /// shares, the tenant served longest ago goes first.
    last_served: AtomicU64,
    /// What it uses on the other nodes, as they last reported it.
    elsewhere: Mutex<Usage>,
    /// The revision of the quotas and weight held ([`JobGrant`]).
    revision: AtomicU64,
    /// Its series on this node (`None` with metrics off).
    metrics: Option<Arc<TenantMetrics>>,
}

/// Counts task starts on this node, for [`TenantAccount::last_served`].
static SERVED: AtomicU64 = AtomicU64::new(1);

/// Takes `amount` more on `counter` if, with what the tenant uses
/// `elsewhere`, it stays within `limit`.
fn admit(
    counter: &AtomicU64,
    amount: u64,
    limit: Option<u64>,
    elsewhere: u64,
    tenant: &str,
    what: &str,
) -> Result<(), QuotaExceeded> {
    let Some(limit) = limit else {
        counter.fetch_add(amount, Ordering::SeqCst);
        return Ok(());
    };
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
            used.checked_add(amount)
                .and_then(|t| t.checked_add(elsewhere))
                .filter(|total| *total <= limit)
                .map(|_| used + amount)
        })
        .map(|_| ())
        .map_err(|used| QuotaExceeded {
            tenant: tenant.to_string(),
            what: format!("has {} of {limit} {what}", used.saturating_add(elsewhere)),
        })
}

fn release(counter: &AtomicU64, amount: u64) {
    let _ = counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
        Some(used.saturating_sub(amount))
    });
}

fn milli(value: f64) -> u64 {
    (value * 1000.0).round().clamp(0.0, u64::MAX as f64) as u64
}

impl TenantAccount {
    fn new(grant: &JobGrant, metrics: Option<Arc<TenantMetrics>>) -> Self {
        TenantAccount {
            metrics,
            name: grant.tenant.clone(),
            weight: AtomicU64::new(grant.weight.to_bits()),
            quotas: RwLock::new(grant.quotas),
            queued: AtomicU64::new(0),
            actors: AtomicU64::new(0),
            object_bytes: AtomicU64::new(0),
            held: Mutex::new((0, 0, 0)),
            instances: AtomicU64::new(0),
            last_served: AtomicU64::new(0),
            elsewhere: Mutex::new(Usage::default()),
            revision: AtomicU64::new(grant.quota_revision),
        }
    }

    /// Its metrics on this node (`None` with metrics off).
    pub fn metrics(&self) -> Option<&Arc<TenantMetrics>> {
        self.metrics.as_ref()
    }

    fn elsewhere(&self) -> Usage {
        *self.elsewhere.locked()
    }

    /// What it uses on this node.
    pub fn usage(&self) -> Usage {
        let held = *self.held.locked();
        Usage {
            queued_tasks: self.queued.load(Ordering::SeqCst),
            actors: self.actors.load(Ordering::SeqCst),
            object_bytes: self.object_bytes.load(Ordering::SeqCst),
            cpu_milli: held.0,
            memory: held.1,
            gpu_milli: held.2,
        }
    }

    /// The tenant's name.
    pub fn name(&self) -> &TenantId {
        &self.name
    }

    /// The quotas in force (a copy: read per task, so no allocation).
    /// Its quotas (cluster-wide), as the newest grant gave them.
    pub fn quotas(&self) -> Quotas {
        *self.quotas.read_locked()
    }

    /// Its gauges for `/metrics`: what it uses here against its quotas.
    pub fn gauges(&self) -> TenantGauges {
        let used = self.usage();
        let q = self.quotas();
        let count = |n: u64| n as f64;
        TenantGauges {
            tenant: self.name.clone(),
            queued_tasks: used.queued_tasks,
            usage: vec![
                ("cpus", used.cpu_milli as f64 / 1000.0, q.cpus),
                ("memory_bytes", count(used.memory), q.memory.map(count)),
                ("gpus", used.gpu_milli as f64 / 1000.0, q.gpus),
                (
                    "object_store_bytes",
                    count(used.object_bytes),
                    q.object_store_bytes.map(count),
                ),
                ("actors", count(used.actors), q.actors.map(count)),
                (
                    "queued_tasks",
                    count(used.queued_tasks),
                    q.queued_tasks.map(count),
                ),
            ],
        }
    }

    /// Takes the grant's quotas and weight unless those held are newer (a
    /// job admitted before a change must not bring the old ones back).
    fn update(&self, grant: &JobGrant) {
        let mut quotas = self.quotas.write_locked();
        if grant.quota_revision < self.revision.load(Ordering::SeqCst) {
            return;
        }
        self.revision.store(grant.quota_revision, Ordering::SeqCst);
        self.weight.store(grant.weight.to_bits(), Ordering::Relaxed);
        *quotas = grant.quotas;
    }

    /// Admits one more queued task.
    pub fn admit_task(&self) -> Result<(), QuotaExceeded> {
        admit(
            &self.queued,
            1,
            self.quotas().queued_tasks,
            self.elsewhere().queued_tasks,
            &self.name,
            "queued tasks",
        )
    }

    /// A task admitted with [`TenantAccount::admit_task`] finished.
    pub fn task_done(&self) {
        release(&self.queued, 1);
    }

    /// Admits one more live actor.
    pub fn admit_actor(&self) -> Result<(), QuotaExceeded> {
        admit(
            &self.actors,
            1,
            self.quotas().actors,
            self.elsewhere().actors,
            &self.name,
            "actors",
        )
    }

    /// An actor admitted with [`TenantAccount::admit_actor`] ended.
    pub fn actor_done(&self) {
        release(&self.actors, 1);
    }

    /// Tasks admitted and not finished.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::SeqCst)
    }

    /// Live actors admitted.
    pub fn actors(&self) -> u64 {
        self.actors.load(Ordering::SeqCst)
    }

    /// Bytes of its jobs' objects.
    pub fn object_bytes(&self) -> u64 {
        self.object_bytes.load(Ordering::SeqCst)
    }

    /// Why a request of `shape` could never run within the tenant's CPU,
    /// memory and GPU quotas, if it could not.
    pub fn exceeds(&self, shape: &ResourceSet) -> Option<QuotaExceeded> {
        let q = self.quotas();
        let over = |what: &str, asked: String, limit: String| QuotaExceeded {
            tenant: self.name.to_string(),
            what: format!("may hold {limit} {what}; a single request asks for {asked}"),
        };
        if let Some(cpus) = q.cpus
            && shape.cpu_milli > milli(cpus)
        {
            return Some(over(
                "CPUs",
                format!("{}", shape.cpu_milli as f64 / 1000.0),
                cpus.to_string(),
            ));
        }
        if let Some(memory) = q.memory
            && shape.memory > memory
        {
            return Some(over(
                "bytes of memory",
                shape.memory.to_string(),
                memory.to_string(),
            ));
        }
        if let Some(gpus) = q.gpus
            && shape.gpu_milli() > milli(gpus)
        {
            return Some(over(
                "GPUs",
                format!("{}", shape.gpu_milli() as f64 / 1000.0),
                gpus.to_string(),
            ));
        }
        None
    }

    /// Whether starting `shape` keeps the tenant within its CPU, memory
    /// and GPU quotas.
    pub fn fits(&self, shape: &ResourceSet) -> bool {
        let q = self.quotas();
        if q.cpus.is_none() && q.memory.is_none() && q.gpus.is_none() {
            return true;
        }
        let held = *self.held.locked();
        let other = self.elsewhere();
        let cpu = held.0.saturating_add(other.cpu_milli);
        let memory = held.1.saturating_add(other.memory);
        let gpu = held.2.saturating_add(other.gpu_milli);
        q.cpus
            .is_none_or(|c| cpu.saturating_add(shape.cpu_milli) <= milli(c))
            && q.memory
                .is_none_or(|m| memory.saturating_add(shape.memory) <= m)
            && q.gpus
                .is_none_or(|g| gpu.saturating_add(shape.gpu_milli()) <= milli(g))
    }

    /// Holds `shape` for something long-lived (an actor's resources, a
    /// placement group's bundles) if the tenant's CPU, memory and GPU
    /// quotas allow it now; refuses it otherwise (it does not wait).
    pub fn admit_hold(&self, shape: &ResourceSet) -> Result<(), QuotaExceeded> {
        if let Some(over) = self.exceeds(shape) {
            return Err(over);
        }
        let q = self.quotas();
        let other = self.elsewhere();
        let mut held = self.held.locked();
        let cpu = held.0.saturating_add(other.cpu_milli);
        let memory = held.1.saturating_add(other.memory);
        let gpu = held.2.saturating_add(other.gpu_milli);
        let over = |what: &str, used: String, limit: String| QuotaExceeded {
            tenant: self.name.to_string(),
            what: format!("holds {used} of {limit} {what}"),
        };
        if let Some(c) = q.cpus
            && cpu.saturating_add(shape.cpu_milli) > milli(c)
        {
            return Err(over(
                "CPUs",
                format!("{}", cpu as f64 / 1000.0),
                c.to_string(),
            ));
        }
        if let Some(m) = q.memory
            && memory.saturating_add(shape.memory) > m
        {
            return Err(over("bytes of memory", memory.to_string(), m.to_string()));
        }
        if let Some(g) = q.gpus
            && gpu.saturating_add(shape.gpu_milli()) > milli(g)
        {
            return Err(over(
                "GPUs",
                format!("{}", gpu as f64 / 1000.0),
                g.to_string(),
            ));
        }
        held.0 = held.0.saturating_add(shape.cpu_milli);
        held.1 = held.1.saturating_add(shape.memory);
        held.2 = held.2.saturating_add(shape.gpu_milli());
        Ok(())
    }

    /// A task of `shape` started here.
    pub fn hold(&self, shape: &ResourceSet) {
        self.last_served
            .store(SERVED.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
        let mut held = self.held.locked();
        held.0 = held.0.saturating_add(shape.cpu_milli);
        held.1 = held.1.saturating_add(shape.memory);
        held.2 = held.2.saturating_add(shape.gpu_milli());
    }

    /// A task of `shape` that started here ended.
    pub fn unhold(&self, shape: &ResourceSet) {
        let mut held = self.held.locked();
        held.0 = held.0.saturating_sub(shape.cpu_milli);
        held.1 = held.1.saturating_sub(shape.memory);
        held.2 = held.2.saturating_sub(shape.gpu_milli());
    }

    /// Its CPU quota in thousandths, if it has one.
    pub fn cpu_quota_milli(&self) -> Option<u64> {
        self.quotas().cpus.map(milli)
    }

    /// Instance slots its guests hold here.
    pub fn instances(&self) -> u64 {
        self.instances.load(Ordering::SeqCst)
    }

    /// One of its guests took an instance slot here.
    pub(super) fn take_instance(&self) {
        self.instances.fetch_add(1, Ordering::SeqCst);
    }

    /// One of its guests gave its instance slot back.
    pub(super) fn give_instance(&self) {
        release(&self.instances, 1);
    }

    /// Its place in the dispatch order: weighted dominant share first
    /// (instance slots, of which a node has `instances`, count as one more
    /// resource), then the tenant served longest ago.
    pub fn dispatch_key(&self, total: &ResourceSet, instances: u32) -> (f64, u64) {
        let weight = f64::from_bits(self.weight.load(Ordering::Relaxed));
        let slots = if instances == u32::MAX || instances == 0 {
            0.0
        } else {
            self.instances() as f64 / f64::from(instances)
        };
        let slots = slots / if weight > 0.0 { weight } else { 1.0 };
        (
            self.weighted_share(total).max(slots),
            self.last_served.load(Ordering::Relaxed),
        )
    }

    /// Its dominant share of `total` divided by its weight: the largest
    /// fraction of any one resource its running tasks hold here (Dominant
    /// Resource Fairness).
    pub fn weighted_share(&self, total: &ResourceSet) -> f64 {
        let held = *self.held.locked();
        let frac = |used: u64, all: u64| {
            if all == 0 {
                0.0
            } else {
                used as f64 / all as f64
            }
        };
        let dominant = frac(held.0, total.cpu_milli)
            .max(frac(held.1, total.memory))
            .max(frac(held.2, total.gpu_milli()));
        let weight = f64::from_bits(self.weight.load(Ordering::Relaxed));
        dominant / if weight > 0.0 { weight } else { 1.0 }
    }
}

/// What one job's objects take, counted into its tenant's account.
pub struct JobAccount {
    tenant: Arc<TenantAccount>,
    object_bytes: AtomicU64,
}

impl std::fmt::Debug for JobAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobAccount")
            .field("tenant", &self.tenant.name)
            .field("object_bytes", &self.object_bytes)
            .finish()
    }
}

impl JobAccount {
    /// The job's tenant's account.
    pub fn tenant(&self) -> &Arc<TenantAccount> {
        &self.tenant
    }

    /// Admits `bytes` more of objects the job stores (a `put`).
    pub fn admit_bytes(&self, bytes: u64) -> Result<(), QuotaExceeded> {
        let limit = self.tenant.quotas().object_store_bytes;
        admit(
            &self.tenant.object_bytes,
            bytes,
            limit,
            self.tenant.elsewhere().object_bytes,
            &self.tenant.name,
            "bytes of objects stored; this value is too many",
        )?;
        self.object_bytes.fetch_add(bytes, Ordering::SeqCst);
        Ok(())
    }

    /// Counts `bytes` the job stored without asking (task results: the
    /// work was admitted already, so its result is kept).
    pub fn add_bytes(&self, bytes: u64) {
        self.tenant.object_bytes.fetch_add(bytes, Ordering::SeqCst);
        self.object_bytes.fetch_add(bytes, Ordering::SeqCst);
    }

    /// `bytes` counted for the job left the store (a refused put, a
    /// result handed back to the node that placed the task, a freed
    /// object). Only what the job still counts is given back to the
    /// tenant, so a release racing [`JobAccount::free_all`] is not given
    /// back twice.
    pub fn release_bytes(&self, bytes: u64) {
        let before = self
            .object_bytes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                Some(used.saturating_sub(bytes))
            })
            .unwrap_or(0);
        release(&self.tenant.object_bytes, before.min(bytes));
    }

    /// The job ended and its objects were freed.
    pub fn free_all(&self) {
        let bytes = self.object_bytes.swap(0, Ordering::SeqCst);
        release(&self.tenant.object_bytes, bytes);
    }
}

/// The node's accounts, one per tenant seen.
pub struct Accounts {
    tenants: Mutex<HashMap<TenantId, Arc<TenantAccount>>>,
    /// The latest report of what tenants use on other nodes.
    elsewhere: Mutex<HashMap<String, Usage>>,
    metrics: Arc<NodeMetrics>,
}

impl Default for Accounts {
    fn default() -> Self {
        Accounts::new(NodeMetrics::new(
            true,
            crate::metrics::guest::DEFAULT_MAX_SERIES,
        ))
    }
}

impl Accounts {
    /// No accounts yet; tenants' series go to `metrics`.
    pub fn new(metrics: Arc<NodeMetrics>) -> Accounts {
        Accounts {
            tenants: Mutex::default(),
            elsewhere: Mutex::default(),
            metrics,
        }
    }

    /// Every tenant's account here, sorted by tenant.
    pub fn all(&self) -> Vec<Arc<TenantAccount>> {
        let mut all: Vec<_> = self.tenants.locked().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// A new job's account under its tenant's (whose weight and quotas
    /// the grant updates: the newest grant carries the newest figures).
    pub fn open_job(&self, grant: &JobGrant) -> Arc<JobAccount> {
        let tenant = {
            let mut tenants = self.tenants.locked();
            match tenants.get(&grant.tenant) {
                Some(t) => {
                    t.update(grant);
                    t.clone()
                }
                None => {
                    let t = Arc::new(TenantAccount::new(
                        grant,
                        self.metrics.tenant(&grant.tenant),
                    ));
                    if let Some(other) = self.elsewhere.locked().get(grant.tenant.as_str()) {
                        *t.elsewhere.locked() = *other;
                    }
                    tenants.insert(grant.tenant.clone(), t.clone());
                    t
                }
            }
        };
        Arc::new(JobAccount {
            tenant,
            object_bytes: AtomicU64::new(0),
        })
    }

    /// What each tenant uses on this node (tenants using nothing left out).
    pub fn usage(&self) -> HashMap<String, Usage> {
        self.tenants
            .locked()
            .iter()
            .map(|(name, t)| (name.to_string(), t.usage()))
            .filter(|(_, u)| !u.is_zero())
            .collect()
    }

    /// Takes the latest report of what tenants use on the other nodes
    /// (a tenant missing from it uses nothing there).
    pub fn set_elsewhere(&self, usage: HashMap<String, Usage>) {
        for (name, t) in self.tenants.locked().iter() {
            *t.elsewhere.locked() = usage.get(name.as_str()).copied().unwrap_or_default();
        }
        *self.elsewhere.locked() = usage;
    }

    /// A tenant's account, if it has run anything here.
    pub fn tenant(&self, name: &str) -> Option<Arc<TenantAccount>> {
        self.tenants.locked().get(name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::GuestPermissions;

    fn grant(tenant: &str, weight: f64, quotas: Quotas) -> JobGrant {
        JobGrant {
            tenant: TenantId::new(tenant),
            weight,
            quotas,
            capabilities: None,
            permissions: GuestPermissions::ALL,
            namespaces: Default::default(),
            quota_revision: 0,
        }
    }

    fn shape(cpus: u64, memory: u64) -> ResourceSet {
        ResourceSet {
            cpu_milli: cpus * 1000,
            memory,
            ..Default::default()
        }
    }

    #[test]
    fn counts_stop_at_their_quota_and_come_back() {
        let accounts = Accounts::default();
        let q = Quotas {
            queued_tasks: Some(2),
            actors: Some(1),
            object_store_bytes: Some(100),
            ..Default::default()
        };
        let job = accounts.open_job(&grant("acme", 1.0, q));
        let t = job.tenant().clone();
        t.admit_task().unwrap();
        t.admit_task().unwrap();
        let e = t.admit_task().unwrap_err();
        assert_eq!(
            e.to_string(),
            "quota exceeded: tenant acme has 2 of 2 queued tasks"
        );
        t.task_done();
        t.admit_task().unwrap();
        t.admit_actor().unwrap();
        assert!(t.admit_actor().is_err());
        t.actor_done();
        t.admit_actor().unwrap();

        job.admit_bytes(60).unwrap();
        assert!(job.admit_bytes(41).is_err());
        // A second job of the tenant shares its bytes.
        let other = accounts.open_job(&grant(
            "acme",
            1.0,
            Quotas {
                object_store_bytes: Some(100),
                ..Default::default()
            },
        ));
        other.admit_bytes(40).unwrap();
        assert!(other.admit_bytes(1).is_err());
        job.free_all();
        assert_eq!(t.object_bytes(), 40);
        // A release after the job's end (a free racing it) gives nothing
        // back twice: the other job's bytes stay counted.
        job.release_bytes(60);
        assert_eq!(t.object_bytes(), 40);
        other.release_bytes(10);
        assert_eq!(t.object_bytes(), 30);
        other.admit_bytes(70).unwrap();
        // Another tenant is not affected.
        let stranger = accounts.open_job(&grant("zeta", 1.0, Quotas::default()));
        stranger.admit_bytes(1 << 40).unwrap();
    }

    #[test]
    fn an_older_grant_does_not_bring_old_quotas_back() {
        let accounts = Accounts::default();
        let old = grant(
            "acme",
            1.0,
            Quotas {
                actors: Some(10),
                ..Default::default()
            },
        );
        let mut new = grant(
            "acme",
            1.0,
            Quotas {
                actors: Some(1),
                ..Default::default()
            },
        );
        new.quota_revision = 1;
        let t = accounts.open_job(&old).tenant().clone();
        accounts.open_job(&new);
        accounts.open_job(&old);
        t.admit_actor().unwrap();
        assert!(t.admit_actor().is_err(), "the newer quota of 1 holds");
    }

    #[test]
    fn use_on_other_nodes_counts_against_the_quotas() {
        let accounts = Accounts::default();
        let q = Quotas {
            queued_tasks: Some(3),
            cpus: Some(2.0),
            object_store_bytes: Some(100),
            ..Default::default()
        };
        // Reported before the tenant's first job here.
        accounts.set_elsewhere(HashMap::from([(
            "acme".to_string(),
            Usage {
                queued_tasks: 2,
                cpu_milli: 1500,
                object_bytes: 90,
                ..Default::default()
            },
        )]));
        let job = accounts.open_job(&grant("acme", 1.0, q));
        let t = job.tenant().clone();
        t.admit_task().unwrap();
        assert_eq!(t.admit_task().unwrap_err().what, "has 3 of 3 queued tasks");
        assert!(!t.fits(&shape(1, 0)));
        assert!(job.admit_bytes(11).is_err());
        job.admit_bytes(10).unwrap();
        assert_eq!(accounts.usage()["acme"].queued_tasks, 1);
        assert_eq!(accounts.usage()["acme"].object_bytes, 10);
        // The other nodes finished their work.
        accounts.set_elsewhere(HashMap::new());
        t.admit_task().unwrap();
        assert!(t.fits(&shape(2, 0)));
        // Long-lived holds are refused rather than queued.
        t.admit_hold(&shape(1, 0)).unwrap();
        let over = t.admit_hold(&shape(3, 0)).unwrap_err();
        assert_eq!(over.what, "may hold 2 CPUs; a single request asks for 3");
        assert_eq!(
            t.admit_hold(&shape(2, 0)).unwrap_err().what,
            "holds 1 of 2 CPUs"
        );
        t.admit_hold(&shape(1, 0)).unwrap();
        assert_eq!(
            t.admit_hold(&shape(1, 0)).unwrap_err().what,
            "holds 2 of 2 CPUs"
        );
        t.unhold(&shape(2, 0));
        t.admit_hold(&shape(1, 0)).unwrap();
    }

    #[test]
    fn resource_quotas_and_weighted_shares() {
        let accounts = Accounts::default();
        let q = Quotas {
            cpus: Some(2.0),
            ..Default::default()
        };
        let a = accounts.open_job(&grant("a", 1.0, q)).tenant().clone();
        let b = accounts
            .open_job(&grant("b", 2.0, Quotas::default()))
            .tenant()
            .clone();
        let total = shape(8, 1 << 30);
        assert!(a.exceeds(&shape(3, 0)).is_some());
        assert!(a.exceeds(&shape(2, 0)).is_none());
        assert!(a.fits(&shape(2, 0)));
        a.hold(&shape(2, 0));
        assert!(!a.fits(&shape(1, 0)));
        assert_eq!(a.weighted_share(&total), 0.25);
        // b holds half the memory; its weight halves its share.
        b.hold(&shape(0, 1 << 29));
        assert_eq!(b.weighted_share(&total), 0.25);
        a.unhold(&shape(2, 0));
        assert!(a.fits(&shape(2, 0)));
        assert_eq!(a.weighted_share(&total), 0.0);
    }
}
