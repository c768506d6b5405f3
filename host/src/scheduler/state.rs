//! What the scheduler holds under its one lock: queues, free resources,
//! CPU debt, GPU shares, instance slots and placement-group bundles.

use super::resources::{GpuAssignment, GpuShares, ResourceSet};
use crate::ids::ObjectId;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::oneshot;

use super::{QueueKey, TaskEntry, accounts};

/// A lease waiting in the scheduler's state: what it asks for, whose it
/// is, and where its grant goes.
pub(super) struct PendingGrant {
    pub(super) request: ResourceSet,
    pub(super) tenant: Option<Arc<accounts::TenantAccount>>,
    pub(super) tx: oneshot::Sender<GpuAssignment>,
}

/// A node's instance slots as the scheduler hands them out: every guest
/// that starts here (task, driver, actor) takes one and keeps it while it
/// lives, blocked or not, so a task never holds a CPU while it waits for
/// an instance. No tenant may hold more than `per_tenant` of them, so one
/// tenant's blocked task graph cannot keep every other tenant out.
pub(super) struct Instances {
    pub(super) total: u32,
    pub(super) used: u32,
    pub(super) per_tenant: u32,
}

impl Instances {
    pub(super) fn unlimited() -> Self {
        Instances {
            total: u32::MAX,
            used: 0,
            per_tenant: u32::MAX,
        }
    }

    /// Whether a guest of `tenant` may start here now.
    pub(super) fn room_for(&self, tenant: Option<&accounts::TenantAccount>) -> bool {
        self.used < self.total && tenant.is_none_or(|t| t.instances() < u64::from(self.per_tenant))
    }

    pub(super) fn take(&mut self, tenant: Option<&accounts::TenantAccount>) {
        self.used = self.used.saturating_add(1);
        if let Some(t) = tenant {
            t.take_instance();
        }
    }

    pub(super) fn give(&mut self, tenant: Option<&accounts::TenantAccount>) {
        self.used = self.used.saturating_sub(1);
        if let Some(t) = tenant {
            t.give_instance();
        }
    }
}

/// A placement group bundle held on this node.
pub(super) struct BundlePool {
    /// What it holds in all.
    pub(super) size: ResourceSet,
    /// What its running tasks do not use.
    pub(super) left: ResourceSet,
}

pub(super) struct State {
    pub(super) available: ResourceSet,
    /// FIFO queues, one per resource shape and placement strategy (so a
    /// task bound to one node never waits behind tasks that wait for room
    /// anywhere, nor the other way round).
    pub(super) queues: Vec<(ResourceSet, QueueKey, VecDeque<Arc<TaskEntry>>)>,
    /// Placement group bundles held here, by (group, index).
    pub(super) bundles: HashMap<(String, u32), BundlePool>,
    /// Groups removed here (their queued tasks fail).
    pub(super) removed_groups: std::collections::HashSet<String>,
    /// CPU (thousandths) resumed guests took beyond what was available;
    /// paid back before any CPU becomes available again.
    pub(super) cpu_debt: u64,
    /// Instance slots: how many guests may be alive here at once.
    pub(super) instances: Instances,
    /// Where on which device the free GPU share is.
    pub(super) gpus: GpuShares,
    /// Long-lived holds (actors) waiting for resources and an instance
    /// slot, served next.
    pub(super) leases: VecDeque<PendingGrant>,
    pub(super) tasks: HashMap<ObjectId, Arc<TaskEntry>>,
    pub(super) running: usize,
}

impl State {
    /// Takes `request` and an instance slot for a guest of `tenant` if
    /// both are free now, GPU shares included.
    pub(super) fn try_start(
        &mut self,
        request: &ResourceSet,
        tenant: Option<&accounts::TenantAccount>,
    ) -> Option<GpuAssignment> {
        if !self.available.fits(request) || !self.instances.room_for(tenant) {
            return None;
        }
        let gpus = self.gpus.take(request.gpu_milli())?;
        self.available.take(request);
        self.instances.take(tenant);
        Some(gpus)
    }

    /// Gives back what [`State::try_start`] took (the instance slot apart); its CPU pays the debt
    /// first.
    pub(super) fn give(&mut self, request: &ResourceSet, gpus: &[(usize, u64)]) {
        let mut rest = request.clone();
        rest.cpu_milli = 0;
        self.available.give(&rest);
        self.give_cpu(request.cpu_milli);
        self.gpus.give(gpus);
    }

    /// CPU back from a guest that blocked or ended: the debt first.
    pub(super) fn give_cpu(&mut self, cpu: u64) {
        let paid = cpu.min(self.cpu_debt);
        self.cpu_debt -= paid;
        self.available.cpu_milli += cpu - paid;
    }

    /// CPU for a guest that resumes: what is available, the rest as debt.
    pub(super) fn take_cpu(&mut self, cpu: u64) {
        let have = cpu.min(self.available.cpu_milli);
        self.available.cpu_milli -= have;
        self.cpu_debt += cpu - have;
    }
}
