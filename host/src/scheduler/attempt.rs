//! One attempt of a task: running it here or on another node, and what
//! follows (the result stored, a retry after backoff, cancellation).

use super::remote::Reservation;
use super::resources::GpuAssignment;
use super::slot::SlotHandle;
use super::{
    BACKOFF, DONE, MAX_BACKOFF, RUNNING, Shared, TaskEntry, TaskRun, args_ready, resolve_args,
};
use crate::ids::{ObjectId, TaskId};
use crate::objects::Object;
use crate::security::tenants::TenantId;
use crate::task::Arg;
use bytes::Bytes;
use prism_abi::{ErrorKind, WireError};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

impl Shared {
    /// Runs one attempt on another node.
    pub(super) async fn run_remote(
        self: Arc<Self>,
        entry: Arc<TaskEntry>,
        reservation: Box<dyn Reservation>,
    ) {
        let attempt = entry.attempt.load(Ordering::SeqCst);
        self.placed_remotely.fetch_add(1, Ordering::Relaxed);
        if let Some(trace) = &entry.trace {
            trace.placed(attempt, reservation.node_id());
        }
        let result = match self.remote.as_ref() {
            None => Err(WireError::new(ErrorKind::System, "no other nodes")),
            Some(remote) => {
                tracing::debug!(function = %entry.spec.function, node = reservation.node_id(), "placing on another node");
                let call = remote.execute(
                    reservation,
                    entry.spec.clone(),
                    attempt,
                    entry.cancel.clone(),
                );
                tokio::select! {
                    result = call => result,
                    _ = entry.cancel.cancelled() => Err(WireError::new(ErrorKind::Cancelled, "the task was cancelled")),
                }
            }
        };
        self.lock().running -= 1;
        self.dispatch();
        self.conclude(entry, attempt, result);
    }

    pub(super) async fn run(self: Arc<Self>, entry: Arc<TaskEntry>, gpus: GpuAssignment) {
        let slot = Arc::new(SlotHandle {
            shared: self.clone(),
            grant: entry.shape.clone(),
            gpus,
            blocked: AtomicBool::new(false),
            bundle: entry
                .spec
                .bundle
                .as_ref()
                .map(|b| (b.group.clone(), b.index)),
            tenant: entry
                .spec
                .account
                .as_ref()
                .filter(|_| entry.spec.bundle.is_none())
                .map(|a| a.tenant().clone()),
            instance_of: entry.spec.account.as_ref().map(|a| a.tenant().clone()),
            turn_cpu: AtomicU64::new(0),
            charged_elsewhere: false,
            trace: std::sync::Mutex::new(entry.trace.clone()),
        });
        let attempt = entry.attempt.load(Ordering::SeqCst);
        if let Some(trace) = &entry.trace {
            let devices: Vec<usize> = slot.gpus().iter().map(|(d, _)| *d).collect();
            trace.started(attempt, &devices);
        }
        if let Some(remote) = self.remote.as_ref() {
            // Arguments that live on other nodes are pulled here first
            // (a task placed elsewhere pulls them there instead).
            let mut pulled = false;
            let no_tenant;
            let tenant = match entry.spec.account.as_ref() {
                Some(account) => account.tenant().name(),
                None => {
                    no_tenant = TenantId::new("");
                    &no_tenant
                }
            };
            for arg in &entry.spec.args {
                if let Arg::Ref(id) = arg {
                    remote.fetch(*id, entry.spec.owner, tenant);
                    pulled = true;
                }
            }
            if pulled {
                // Like a guest blocked in `get`, a task waiting for its
                // arguments lends its CPU out meanwhile.
                slot.block();
                tokio::select! {
                    _ = args_ready(&self.objects, &entry.spec.args) => {}
                    _ = entry.cancel.cancelled() => {}
                }
                slot.unblock().await;
            }
        }
        let result = match (
            resolve_args(&self.objects, &entry.spec.args),
            self.executor.upgrade(),
        ) {
            (Err(e), _) => Err(e),
            (Ok(_), None) => Err(WireError::new(
                ErrorKind::System,
                "the node is shutting down",
            )),
            (Ok(input), Some(executor)) => {
                let run = TaskRun {
                    spec: entry.spec.clone(),
                    task_id: TaskId::next(),
                    attempt,
                    input,
                    cancel: entry.cancel.clone(),
                    slot: slot.clone(),
                    trace: entry.trace.clone(),
                };
                self.executed.fetch_add(1, Ordering::Relaxed);
                match &entry.series {
                    Some(series) => {
                        let started = std::time::Instant::now();
                        // The wait before its first attempt only: a
                        // retry's includes earlier runs and backoff.
                        if attempt == entry.spec.first_attempt {
                            series.queue_wait.observe(started - entry.submitted);
                        }
                        let result = executor.execute(run).await;
                        let ended = std::time::Instant::now();
                        series.run.observe(ended - started);
                        let since_submit = (ended - entry.submitted).as_nanos();
                        entry.ran_until_ns.store(
                            u64::try_from(since_submit).unwrap_or(u64::MAX).max(1),
                            Ordering::Relaxed,
                        );
                        result
                    }
                    None => executor.execute(run).await,
                }
            }
        };
        slot.release();
        self.lock().running -= 1;
        self.dispatch();
        self.conclude(entry, attempt, result);
    }

    /// Retries a failed attempt or stores the task's result.
    pub(super) fn conclude(
        self: &Arc<Self>,
        entry: Arc<TaskEntry>,
        attempt: u32,
        result: Result<Bytes, WireError>,
    ) {
        match result {
            Err(e)
                if e.kind.is_retryable()
                    && attempt < entry.spec.max_retries
                    && !entry.cancel.is_cancelled()
                    && entry.transition(RUNNING, BACKOFF) =>
            {
                if let Some(trace) = &entry.trace {
                    trace.attempt_ended(Err(e.kind), true);
                }
                entry.attempt.store(attempt + 1, Ordering::SeqCst);
                let delay = self
                    .retry_backoff
                    .saturating_mul(1u32 << attempt.min(16))
                    .min(MAX_BACKOFF);
                tracing::info!(
                    function = %entry.spec.function, attempt, kind = %e.kind, ?delay,
                    "retrying after a system error: {}", e.message
                );
                let shared = self.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => shared.enqueue(entry, BACKOFF),
                        _ = entry.cancel.cancelled() => {}
                    }
                });
            }
            result => {
                if entry.transition(RUNNING, DONE) {
                    self.finish(
                        &entry,
                        result.map_err(|mut e| {
                            e.attempts = attempt + 1;
                            e
                        }),
                    );
                }
            }
        }
    }

    pub(super) fn finish(&self, entry: &TaskEntry, result: Result<Bytes, WireError>) {
        self.lock().tasks.remove(&entry.spec.return_id);
        if let Some(series) = entry.series.as_ref().filter(|_| entry.counted) {
            let end_to_end = match entry.ran_until_ns.load(Ordering::Relaxed) {
                0 => entry.submitted.elapsed(),
                ns => std::time::Duration::from_nanos(ns),
            };
            series.end_to_end.observe(end_to_end);
            series.ended(result.as_ref().map(|_| ()).map_err(|e| e.kind));
        }
        if let Some(account) = &entry.spec.account {
            if entry.spec.admitted {
                account.tenant().task_done();
            }
            if let Ok(bytes) = &result {
                account.add_bytes(bytes.len() as u64);
            }
        }
        let object = match result {
            Ok(bytes) => {
                if let Some(trace) = &entry.trace {
                    trace.finished(Ok(()));
                }
                Object::Value(bytes)
            }
            Err(mut e) => {
                // Named by the id its caller knows; where it ran and what
                // it wrote stay as the attempt that ran it said.
                let task = entry.spec.return_id.to_string();
                match &mut e.origin {
                    Some(origin) => origin.task = task,
                    None => {
                        e.origin = Some(Box::new(prism_abi::ErrorOrigin {
                            task,
                            function: entry.spec.function.clone(),
                            node: self.objects.node_tag(),
                            output: Vec::new(),
                        }));
                    }
                }
                if let Some(trace) = &entry.trace {
                    trace.finished(Err(&e));
                }
                Object::Error(Arc::new(e))
            }
        };
        // Values were counted against the job's quota just above.
        let stored = if entry.spec.account.is_some() {
            self.objects.complete_counted(entry.spec.return_id, object)
        } else {
            self.objects.complete(entry.spec.return_id, object)
        };
        if let Err(e) = stored {
            tracing::warn!(function = %entry.spec.function, error = %e, "storing a task result failed");
        }
    }

    pub(super) fn cancel(self: &Arc<Self>, id: ObjectId) -> bool {
        let Some(entry) = self.lock().tasks.get(&id).cloned() else {
            return false;
        };
        entry.cancel.cancel();
        loop {
            let phase = entry.phase.load(Ordering::SeqCst);
            match phase {
                RUNNING => return true,
                DONE => return false,
                _ if entry.transition(phase, DONE) => {
                    let mut error = WireError::new(ErrorKind::Cancelled, "the task was cancelled");
                    error.attempts = entry.attempt.load(Ordering::SeqCst) + 1;
                    self.finish(&entry, Err(error));
                    return true;
                }
                _ => continue,
            }
        }
    }
}
