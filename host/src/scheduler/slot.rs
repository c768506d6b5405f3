//! A guest's hold on the node: the [`SlotHandle`] of a running task or
//! an actor's [`Lease`], which lends its CPU while the guest blocks, and
//! the [`Turn`] of a guest that holds no CPU of its own.

use super::accounts;
use super::resources::{GpuAssignment, ResourceSet};
use super::{DONE, QUEUED, Shared, TaskEntry};
use crate::events::TaskTrace;
use crate::runtime::BoxFuture;
use crate::sync::MutexExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::oneshot;

/// A lease being waited for: if dropped while the grant was sent but not
/// yet received, gives the grant back (it would leak otherwise).
pub(super) struct PendingLease {
    pub(super) shared: Arc<Shared>,
    pub(super) request: ResourceSet,
    pub(super) tenant: Option<Arc<accounts::TenantAccount>>,
    pub(super) rx: Option<oneshot::Receiver<GpuAssignment>>,
}

impl Drop for PendingLease {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take()
            && let Ok(gpus) = rx.try_recv()
        {
            {
                let mut state = self.shared.lock();
                state.give(&self.request, &gpus);
                state.instances.give(self.tenant.as_deref());
            }
            self.shared.dispatch();
        }
    }
}

/// A turn being waited for: if dropped first, leaves the queue; if its
/// CPU was granted but not received, gives it back.
pub(super) struct PendingTurn {
    pub(super) shared: Arc<Shared>,
    pub(super) entry: Arc<TaskEntry>,
    pub(super) rx: Option<oneshot::Receiver<GpuAssignment>>,
}

impl Drop for PendingTurn {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        // Still queued: the queue drops it when it reaches it.
        if self.entry.transition(QUEUED, DONE) {
            return;
        }
        if rx.try_recv().is_ok() {
            let shape = &self.entry.shape;
            self.shared.lock().give(shape, &[]);
            if let Some(account) = &self.entry.spec.account {
                account.tenant().unhold(shape);
            }
            self.shared.dispatch();
        }
    }
}

/// A guest's turn to run code ([`Scheduler::turn`]); ends when dropped.
pub struct Turn {
    pub(super) slot: Arc<SlotHandle>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        if self.slot.end_turn() {
            self.slot.shared.dispatch();
        }
    }
}

pub(super) fn cpu_only(cpu_milli: u64) -> ResourceSet {
    ResourceSet {
        cpu_milli,
        ..Default::default()
    }
}

/// Resources held for as long as the lease lives (by an actor).
pub struct Lease {
    pub(super) slot: Arc<SlotHandle>,
}

impl Lease {
    /// The hold, for blocking and unblocking like a task's.
    pub fn slot(&self) -> &Arc<SlotHandle> {
        &self.slot
    }

    /// Records the blocked time of the call now running on the lease
    /// into `trace` (`None` between calls).
    pub fn trace_calls(&self, trace: Option<Arc<TaskTrace>>) {
        *self.slot.trace.locked() = trace;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.slot.release();
        self.slot.shared.dispatch();
    }
}

/// A running task's hold on its resources. Blocking gives the CPU part back
/// until the task resumes; the rest (memory, custom resources) stays held.
pub struct SlotHandle {
    pub(super) shared: Arc<Shared>,
    pub(super) grant: ResourceSet,
    pub(super) gpus: GpuAssignment,
    pub(super) blocked: AtomicBool,
    /// The placement group bundle the grant came from.
    pub(super) bundle: Option<(String, u32)>,
    /// The tenant the grant is counted against (not for bundles, whose
    /// resources are their group's).
    pub(super) tenant: Option<Arc<accounts::TenantAccount>>,
    /// The tenant whose instance slot this is (bundles' too).
    pub(super) instance_of: Option<Arc<accounts::TenantAccount>>,
    /// CPU (thousandths) held for the current [`Turn`] of a guest that
    /// holds none of its own; 0 between turns.
    pub(super) turn_cpu: AtomicU64,
    /// The record of the call running on it, told when it blocks and
    /// resumes (a task's for its attempt; an actor's per call).
    pub(super) trace: std::sync::Mutex<Option<Arc<TaskTrace>>>,
    /// The charge belongs to the holder (an actor), not to this slot:
    /// releasing the slot restores what blocking lent, and the holder
    /// releases the whole charge.
    pub(super) charged_elsewhere: bool,
}

impl SlotHandle {
    /// The GPU shares held: `(device index, thousandths)`.
    pub fn gpus(&self) -> &[(usize, u64)] {
        &self.gpus
    }

    /// The guest blocks: its CPU becomes available to others.
    pub fn block(&self) {
        if let Some(trace) = self.trace.locked().as_ref() {
            trace.blocked();
        }
        // A bundle's CPU stays with the bundle's task.
        if self.bundle.is_some() {
            return;
        }
        let cpu = {
            // Flag and CPU move together under the lock, so `unblock`,
            // `end_turn` and `release` always see them agree.
            let mut state = self.shared.lock();
            let cpu = self.running_cpu();
            if cpu == 0 || self.blocked.swap(true, Ordering::SeqCst) {
                return;
            }
            state.give_cpu(cpu);
            cpu
        };
        // Blocked work does not count against its tenant's CPU quota or
        // share, so nested task graphs cannot stall a tenant at its quota.
        if let Some(tenant) = &self.tenant {
            tenant.unhold(&cpu_only(cpu));
        }
        self.shared.dispatch();
    }

    /// The CPU held while running: its own, or its turn's.
    fn running_cpu(&self) -> u64 {
        self.grant.cpu_milli + self.turn_cpu.load(Ordering::SeqCst)
    }

    fn cpu_only(&self) -> ResourceSet {
        cpu_only(self.grant.cpu_milli)
    }

    /// The guest wants to continue: it holds its CPU again at once (in
    /// debt if others took it meanwhile; see the module docs). Returns a
    /// future that is already ready, for callers written against a
    /// waiting resume.
    pub fn unblock(self: &Arc<Self>) -> BoxFuture<'static, ()> {
        if let Some(trace) = self.trace.locked().as_ref() {
            trace.resumed();
        }
        let cpu = {
            let mut state = self.shared.lock();
            if !self.blocked.swap(false, Ordering::SeqCst) {
                return Box::pin(async {});
            }
            let cpu = self.running_cpu();
            state.take_cpu(cpu);
            cpu
        };
        if let Some(tenant) = &self.tenant {
            tenant.hold(&cpu_only(cpu));
        }
        Box::pin(async {})
    }

    /// Ends the current turn, if any: gives its CPU back (unless the
    /// guest is blocked, which gave it already). Whether queued work may
    /// now start (the caller dispatches only then: most turns end with
    /// nothing waiting, and an actor call should not pay for a scan).
    pub(super) fn end_turn(&self) -> bool {
        let mut state = self.shared.lock();
        let cpu = self.turn_cpu.swap(0, Ordering::SeqCst);
        if cpu == 0 {
            return false;
        }
        if self.grant.cpu_milli == 0 && self.blocked.swap(false, Ordering::SeqCst) {
            return false;
        }
        state.give_cpu(cpu);
        let waiting = !state.queues.is_empty() || !state.leases.is_empty();
        drop(state);
        if let Some(tenant) = &self.tenant {
            tenant.unhold(&cpu_only(cpu));
        }
        waiting
    }

    /// Gives back everything still held (end of the attempt).
    pub(super) fn release(&self) {
        self.end_turn();
        let mut grant = self.grant.clone();
        let mut state = self.shared.lock();
        let blocked = self.blocked.load(Ordering::SeqCst);
        if blocked {
            grant.cpu_milli = 0;
        }
        if let Some(tenant) = &self.tenant {
            if !self.charged_elsewhere {
                tenant.unhold(&grant);
            } else if blocked {
                tenant.hold(&self.cpu_only());
            }
        }
        // Back to the bundle while it exists; to the node once it is gone
        // (the bundle's unused part went back when it was removed).
        match self.bundle.as_ref().and_then(|k| state.bundles.get_mut(k)) {
            Some(pool) => pool.left.give(&grant),
            None => state.give(&grant, &self.gpus),
        }
        state.instances.give(self.instance_of.as_deref());
    }
}
