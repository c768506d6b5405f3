//! Dispatch: which queued task starts next, and where (here, another
//! node, a placement group's bundle), in FIFO order per resource shape
//! and fairly between tenants.

use super::remote::{Pick, Placement};
use super::resources::ResourceSet;
use super::{
    DONE, Decision, QUEUED, QueueKey, RUNNING, Shared, Start, State, Step, TaskEntry, tenant_of,
};
use crate::sync::MutexExt;
use prism_abi::{BundleRef, SchedulingStrategy};
use prism_abi::{ErrorKind, WireError};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

impl Shared {
    /// Where the queued task `entry` of resource shape `shape` runs now.
    pub(super) fn place(&self, state: &State, entry: &TaskEntry, shape: &ResourceSet) -> Decision {
        if let Some(bundle) = &entry.spec.bundle {
            return self.place_in_bundle(state, entry, bundle, shape);
        }
        // A turn runs in an instance its actor already holds.
        let fits = state.available.fits(shape)
            && state.gpus.can_take(shape.gpu_milli())
            && (entry.turn.is_some()
                || state
                    .instances
                    .room_for(entry.spec.account.as_ref().map(|a| &**a.tenant())));
        let Some(remote) = self.remote_for(&entry.spec) else {
            return if fits {
                Decision::Local
            } else {
                Decision::Wait
            };
        };
        let feasible = self.total().shortfall(shape).is_none();
        let pick = match &entry.spec.strategy {
            SchedulingStrategy::Default => Pick::LeastLoaded,
            SchedulingStrategy::Spread => Pick::Spread,
            SchedulingStrategy::Node { node_id, soft } => {
                if node_id == remote.local_id() {
                    if feasible {
                        return if fits {
                            Decision::Local
                        } else {
                            Decision::Wait
                        };
                    }
                    if !*soft {
                        return Decision::Fail(format!(
                            "node {node_id:?} cannot hold this request"
                        ));
                    }
                    Pick::LeastLoaded
                } else if remote.node_can_hold(node_id, shape) {
                    Pick::Node(node_id)
                } else if *soft {
                    Pick::LeastLoaded
                } else if remote.has_node(node_id) {
                    return Decision::Fail(format!("node {node_id:?} cannot hold this request"));
                } else {
                    return Decision::Fail(format!("node {node_id:?} is not alive"));
                }
            }
        };
        if pick == Pick::LeastLoaded && fits {
            return Decision::Local;
        }
        match remote.reserve(shape, pick, feasible, fits) {
            Placement::Local if fits => Decision::Local,
            Placement::Local | Placement::Wait => Decision::Wait,
            Placement::Remote(reservation) => Decision::Remote(reservation),
        }
    }

    /// Where a task of a placement group bundle runs: on the bundle's node,
    /// once the bundle has room.
    pub(super) fn place_in_bundle(
        &self,
        state: &State,
        entry: &TaskEntry,
        bundle: &BundleRef,
        shape: &ResourceSet,
    ) -> Decision {
        let remote = self.remote_for(&entry.spec);
        let here = remote.is_none_or(|r| bundle.node_id == r.local_id());
        if here {
            let room = state
                .instances
                .room_for(entry.spec.account.as_ref().map(|a| &**a.tenant()));
            return match state.bundles.get(&(bundle.group.clone(), bundle.index)) {
                Some(pool) if pool.left.fits(shape) && room => Decision::LocalBundle,
                Some(pool) if pool.left.fits(shape) => Decision::Wait,
                Some(pool) if pool.size.fits(shape) => Decision::Wait,
                Some(pool) => Decision::Fail(format!(
                    "bundle {} of placement group {} holds {}, less than the task asks",
                    bundle.index, bundle.group, pool.size
                )),
                None if state.removed_groups.contains(&bundle.group) => {
                    Decision::Fail(format!("placement group {} was removed", bundle.group))
                }
                None => Decision::Fail(format!(
                    "placement group {} has no bundle {} here",
                    bundle.group, bundle.index
                )),
            };
        }
        let Some(remote) = remote else {
            return Decision::Wait;
        };
        if !remote.has_node(&bundle.node_id) {
            return Decision::Fail(format!(
                "node {:?}, which held bundle {} of placement group {}, is gone",
                bundle.node_id, bundle.index, bundle.group
            ));
        }
        match remote.reserve(shape, Pick::Node(&bundle.node_id), false, false) {
            Placement::Remote(reservation) => Decision::Remote(reservation),
            Placement::Local | Placement::Wait => Decision::Wait,
        }
    }

    pub(super) fn enqueue(self: &Arc<Self>, entry: Arc<TaskEntry>, from: u8) {
        if !entry.transition(from, QUEUED) {
            return;
        }
        if let Some(trace) = &entry.trace {
            trace.queued();
        }
        {
            let mut state = self.lock();
            let shape = &entry.shape;
            let tenant = tenant_of(&entry.spec);
            let matches = |k: &QueueKey| {
                k.0 == entry.spec.strategy && k.1 == entry.spec.bundle && k.2.as_deref() == tenant
            };
            match state
                .queues
                .iter_mut()
                .find(|(s, k, _)| s == shape && matches(k))
            {
                Some((_, _, q)) => q.push_back(entry),
                None => {
                    let key = (
                        entry.spec.strategy.clone(),
                        entry.spec.bundle.clone(),
                        tenant.map(str::to_string),
                    );
                    state
                        .queues
                        .push((shape.clone(), key, VecDeque::from([entry])));
                }
            }
        }
        self.dispatch();
    }

    /// Starts whatever fits: leases first, then queued tasks.
    pub(super) fn dispatch(self: &Arc<Self>) {
        let mut starts = Vec::new();
        let mut fails = Vec::new();
        {
            let mut state = self.lock();
            let state = &mut *state;
            // A lease whose holder stopped waiting is dropped unserved.
            state.leases.retain(|l| !l.tx.is_closed());
            // In order, until one does not fit the node; a lease whose
            // tenant holds its share of instance slots waits without
            // holding up the others.
            let mut i = 0;
            while i < state.leases.len() {
                let lease = &state.leases[i];
                let tenant = lease.tenant.clone();
                if !state.instances.room_for(None) {
                    break;
                }
                if !state.instances.room_for(tenant.as_deref()) {
                    i += 1;
                    continue;
                }
                let request = lease.request.clone();
                let Some(gpus) = state.try_start(&request, tenant.as_deref()) else {
                    break;
                };
                let Some(lease) = state.leases.remove(i) else {
                    break;
                };
                if let Err(gpus) = lease.tx.send(gpus) {
                    state.give(&request, &gpus);
                    state.instances.give(tenant.as_deref());
                }
            }
            // A lease that does not fit yet keeps its place at the front of
            // the lease queue, but does not stop tasks that fit from running.
            let mut queues = std::mem::take(&mut state.queues);
            let tenants = {
                let mut names = queues.iter().map(|(_, k, _)| k.2.as_deref());
                let first = names.next().flatten();
                names.any(|n| n != first)
            };
            if !tenants {
                // One tenant (or none): every queue in turn, FIFO.
                for (shape, _, queue) in queues.iter_mut() {
                    while let Step::Moved = self.step(state, shape, queue, &mut starts, &mut fails)
                    {
                    }
                }
            } else {
                // Several tenants: Dominant Resource Fairness. One task at a
                // time goes to the tenant whose weighted dominant share of
                // this node is smallest among those that can start one
                // (equal shares: the one served longest ago).
                let total = self.total().clone();
                let instances = state.instances.total;
                let mut blocked = vec![false; queues.len()];
                loop {
                    let mut order: Vec<((f64, u64), usize)> = queues
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !blocked[*i])
                        .map(|(i, (_, _, q))| {
                            let key = q
                                .front()
                                .and_then(|e| e.spec.account.as_ref())
                                .map_or((0.0, 0), |a| a.tenant().dispatch_key(&total, instances));
                            (key, i)
                        })
                        .collect();
                    if order.is_empty() {
                        break;
                    }
                    order.sort_by(|a, b| {
                        a.0.0
                            .total_cmp(&b.0.0)
                            .then(a.0.1.cmp(&b.0.1))
                            .then(a.1.cmp(&b.1))
                    });
                    let mut moved = false;
                    for (_, i) in order {
                        let (shape, _, queue) = &mut queues[i];
                        match self.step(state, shape, queue, &mut starts, &mut fails) {
                            Step::Moved => {
                                moved = true;
                                break;
                            }
                            Step::Blocked | Step::Empty => blocked[i] = true,
                        }
                    }
                    if !moved {
                        break;
                    }
                }
            }
            queues.retain(|(_, _, q)| !q.is_empty());
            // Nothing enqueues while the lock is held, so the queues taken
            // out above are still all of them.
            state.queues = queues;
        }
        for (entry, why) in fails {
            let mut error = WireError::new(
                ErrorKind::Unschedulable,
                format!("no node can run this task: {why}"),
            );
            error.attempts = entry.attempt.load(Ordering::SeqCst) + 1;
            self.finish(&entry, Err(error));
        }
        for (entry, start) in starts {
            let shared = self.clone();
            match start {
                Start::Local(gpus) => {
                    tokio::spawn(async move { shared.run(entry, gpus).await });
                }
                Start::Remote(reservation) => {
                    tokio::spawn(async move { shared.run_remote(entry, reservation).await });
                }
            }
        }
    }

    /// Tries to move the front task of one queue: start it here or on
    /// another node, or fail it.
    pub(super) fn step(
        &self,
        state: &mut State,
        shape: &ResourceSet,
        queue: &mut VecDeque<Arc<TaskEntry>>,
        starts: &mut Vec<(Arc<TaskEntry>, Start)>,
        fails: &mut Vec<(Arc<TaskEntry>, String)>,
    ) -> Step {
        loop {
            let Some(front) = queue.front() else {
                return Step::Empty;
            };
            if front.phase.load(Ordering::SeqCst) != QUEUED {
                queue.pop_front();
                continue;
            }
            // A tenant at its CPU, memory or GPU quota waits for its own
            // tasks to finish (a bundle's resources are its group's).
            if front.spec.bundle.is_none()
                && front
                    .spec
                    .account
                    .as_ref()
                    .is_some_and(|a| !a.tenant().fits(shape))
            {
                return Step::Blocked;
            }
            match self.place(state, front, shape) {
                Decision::Wait => return Step::Blocked,
                Decision::Fail(why) => {
                    if let Some(entry) = queue.pop_front()
                        && entry.transition(QUEUED, DONE)
                    {
                        fails.push((entry, why));
                    }
                }
                Decision::Remote(reservation) => {
                    if let Some(entry) = queue.pop_front()
                        && entry.transition(QUEUED, RUNNING)
                    {
                        state.running += 1;
                        starts.push((entry, Start::Remote(reservation)));
                    }
                }
                Decision::LocalBundle => {
                    if let Some(entry) = queue.pop_front()
                        && entry.transition(QUEUED, RUNNING)
                    {
                        let key = entry
                            .spec
                            .bundle
                            .as_ref()
                            .map(|b| (b.group.clone(), b.index));
                        if let Some(pool) = key.as_ref().and_then(|k| state.bundles.get_mut(k)) {
                            pool.left.take(shape);
                        }
                        state
                            .instances
                            .take(entry.spec.account.as_ref().map(|a| &**a.tenant()));
                        state.running += 1;
                        starts.push((entry, Start::Local(Vec::new())));
                    }
                }
                Decision::Local if front.turn.is_some() => {
                    if let Some(entry) = queue.pop_front()
                        && entry.transition(QUEUED, RUNNING)
                    {
                        state.available.take(shape);
                        let tenant = entry.spec.account.as_ref().map(|a| a.tenant());
                        if let Some(tenant) = tenant {
                            tenant.hold(shape);
                        }
                        let tx = entry.turn.as_ref().and_then(|t| t.locked().take());
                        let sent = tx.is_some_and(|tx| tx.send(Vec::new()).is_ok());
                        if !sent {
                            state.give(shape, &[]);
                            if let Some(tenant) = tenant {
                                tenant.unhold(shape);
                            }
                        }
                    }
                }
                Decision::Local => {
                    let Some(gpus) = state.gpus.take(shape.gpu_milli()) else {
                        return Step::Blocked;
                    };
                    match queue.pop_front() {
                        Some(entry) if entry.transition(QUEUED, RUNNING) => {
                            state.available.take(shape);
                            state
                                .instances
                                .take(entry.spec.account.as_ref().map(|a| &**a.tenant()));
                            state.running += 1;
                            if let Some(account) = &entry.spec.account {
                                account.tenant().hold(shape);
                            }
                            starts.push((entry, Start::Local(gpus)));
                        }
                        _ => state.gpus.give(&gpus),
                    }
                }
            }
            return Step::Moved;
        }
    }
}
