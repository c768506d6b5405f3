//! The local scheduler: admission, argument dependencies, resource
//! accounting, dispatch, cancellation and retries on one node.
//!
//! # The life of a task
//! ```text
//! submit ──► WaitingArgs ──► Queued ──► Running ──► Done
//!              │               │          │  ▲
//!              │               │          ▼  │ (system error, retries left)
//!              └──── cancel ───┴──►Done  Backoff
//! ```
//! - `submit` registers the task's return object as pending. A request no
//!   node could ever satisfy, or an argument the caller failed to encode,
//!   fails the task at once (its object holds the error).
//! - A task whose `Ref` arguments are not ready waits for them (without
//!   holding resources), then joins the queue of its resource shape.
//! - `dispatch` starts queued tasks in FIFO order per shape while their
//!   resources fit. A blocked guest (in `get`/`wait`) gives its CPU back
//!   through its [`SlotHandle`]; when it resumes it takes its CPU back at
//!   once, without queueing: if others took it meanwhile, the node runs in
//!   CPU *debt* until enough is given back (debts are paid before any CPU
//!   becomes available again). A resuming guest therefore never waits
//!   behind queued or running work: its timeouts fire on time, nested
//!   tasks cannot deadlock a node with one CPU, and a cancelled guest
//!   cannot leave a CPU handed to it but never taken. The overshoot is
//!   bounded by the guests that were blocked, as in Ray.
//! - Application errors end the task. System errors are retried after an
//!   exponential backoff up to `max_retries`. Cancellation ends a waiting or
//!   queued task at once and interrupts a running one.
//!
//! The scheduler does not run guests: it hands a [`TaskRun`] to its
//! [`TaskExecutor`] (the node, which calls the runtime).
//!
//! Files: `mod.rs` (the types and the [`Scheduler`] API, admission),
//! `state.rs` (what is held under the lock), `dispatch.rs` (which queued
//! task starts next, and where), `attempt.rs` (running an attempt and
//! what follows), `slot.rs` (a running guest's hold on the node),
//! `accounts.rs` (per-tenant use and quotas), `resources.rs`, `remote.rs`.

pub mod accounts;
mod args;
mod attempt;
mod dispatch;
pub mod remote;
pub mod resources;
mod slot;
mod state;

use crate::events::{TaskEvents, TaskTrace};
use crate::ids::{ModuleHash, ObjectId, OwnerId, TaskId};
use crate::metrics::calls::CallSeries;
use crate::objects::{Object, ObjectStore, Watch};
use crate::runtime::{BoxFuture, CancelToken};
use crate::sync::{MutexExt, RwLockExt};
use crate::task::{Arg, EntryKind, JobTicket};
use accounts::JobAccount;
use bytes::Bytes;
pub use prism_abi::{BundleRef, SchedulingStrategy};
use prism_abi::{ErrorKind, WireError};
use remote::{Remote, Reservation};
use resources::{GpuAssignment, GpuShares, ResourceSet};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub use args::{args_ready, resolve_args};
pub use slot::{Lease, SlotHandle, Turn};
use slot::{PendingLease, PendingTurn, cpu_only};
use state::{BundlePool, Instances, PendingGrant, State};

/// Why a node did not reserve a placement group's bundles.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ReserveError {
    /// A bundle asked for GPUs.
    #[error("bundles cannot hold GPUs yet")]
    Gpus,
    /// The group already holds bundles here.
    #[error("placement group {0} is already reserved here")]
    AlreadyReserved(String),
    /// They do not all fit now: what is missing.
    #[error("{0}")]
    Shortfall(String),
    /// The node is gone (stopped, or left the cluster).
    #[error("{0}")]
    NodeGone(String),
    /// Another node refused, or could not be asked: its answer.
    #[error("{0}")]
    Refused(String),
}

/// Longest delay between two attempts (10 s).
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Everything the scheduler needs to know about one call. Plain data.
#[derive(Clone, Debug)]
pub struct TaskSpec {
    /// Who owns the call and its result: the job, or the actor, that
    /// made it.
    pub owner: OwnerId,
    /// Who it runs for (namespace, grant, environment), so that an attempt
    /// placed on another node carries its identity. `None` only for the
    /// scheduler's own queue entries (actor turns), which never run.
    pub ticket: Option<Arc<JobTicket>>,
    /// The module the function lives in.
    pub module: ModuleHash,
    /// Task or driver.
    pub entry: EntryKind,
    /// The function's name.
    pub function: String,
    /// The arguments, in order.
    pub args: Vec<Arg>,
    /// What the call holds while it runs.
    pub request: ResourceSet,
    /// Retries after system errors.
    pub max_retries: u32,
    /// Tasks one warm instance may run before it is discarded (0: no
    /// limit, 1: a fresh instance for this task).
    pub max_calls: u32,
    /// Wall-clock budget per attempt.
    pub timeout: Duration,
    /// Cap on the instance's linear memory in bytes.
    pub memory_limit: u64,
    /// Where the result goes.
    pub return_id: ObjectId,
    /// Which nodes may run it.
    pub strategy: SchedulingStrategy,
    /// Run it on this node only (a driver, or a call another node placed
    /// here).
    pub local_only: bool,
    /// An attempt another node placed here: that node counts its end in
    /// the metrics (once, whatever its retries), this one only its run.
    pub from_peer: bool,
    /// The task id its record among the job's task events carries, if
    /// not its result's: for an attempt another node placed here, that
    /// node's task.
    pub recorded_as: Option<ObjectId>,
    /// Run it in this bundle of a placement group.
    pub bundle: Option<BundleRef>,
    /// The number of its first attempt here: 0, or for an attempt another
    /// node placed here, that attempt's number.
    pub first_attempt: u32,
    /// The job's account: its tenant's quotas and fair share. `None` for
    /// work no tenant is charged for.
    pub account: Option<Arc<JobAccount>>,
    /// Whether the task took one of its tenant's queued-task slots
    /// ([`accounts::TenantAccount::admit_task`]), given back when it ends.
    pub admitted: bool,
}

/// One attempt handed to the executor.
pub struct TaskRun {
    /// The call.
    pub spec: Arc<TaskSpec>,
    /// For logs and traces.
    pub task_id: TaskId,
    /// 0 for the first attempt.
    pub attempt: u32,
    /// The resolved arguments, as the guest's input buffer.
    pub input: Bytes,
    /// Cancellation of this task.
    pub cancel: Arc<CancelToken>,
    /// The task's hold on its resources.
    pub slot: Arc<SlotHandle>,
    /// Its record among its job's task events, if it has one.
    pub trace: Option<Arc<TaskTrace>>,
}

/// Runs attempts; implemented by the node.
pub trait TaskExecutor: Send + Sync + 'static {
    /// Runs one attempt to completion.
    fn execute(&self, run: TaskRun) -> BoxFuture<'static, Result<Bytes, WireError>>;
}

/// Counters for status output.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SchedulerStats {
    /// Tasks known to the scheduler and not finished.
    pub pending: usize,
    /// Tasks running (including blocked in `get`), here or placed on
    /// other nodes.
    pub running: usize,
    /// Attempts this node's executor has run since it started.
    pub executed: u64,
    /// Attempts this node placed on other nodes since it started.
    pub placed_remotely: u64,
}

/// What separates queues of one resource shape: the placement strategy,
/// the bundle and the tenant.
type QueueKey = (SchedulingStrategy, Option<BundleRef>, Option<String>);

fn tenant_of(spec: &TaskSpec) -> Option<&str> {
    spec.account.as_ref().map(|a| a.tenant().name().as_str())
}

/// How trying the front of one queue went.
enum Step {
    /// A task left the queue (started, placed elsewhere, or failed).
    Moved,
    /// The front cannot start now.
    Blocked,
    /// The queue is empty.
    Empty,
}

/// Where [`Shared::place`] puts a queued task.
enum Decision {
    Local,
    /// Here, from the bundle's resources.
    LocalBundle,
    Remote(Box<dyn Reservation>),
    Wait,
    Fail(String),
}

/// A task leaving the queue.
enum Start {
    Local(GpuAssignment),
    Remote(Box<dyn Reservation>),
}

const WAITING_ARGS: u8 = 0;
const QUEUED: u8 = 1;
const RUNNING: u8 = 2;
const BACKOFF: u8 = 3;
const DONE: u8 = 4;

struct TaskEntry {
    spec: Arc<TaskSpec>,
    /// What it holds while it runs here: its request, with a CPU to run
    /// on if it asked for none ([`Shared::run_shape`]).
    shape: ResourceSet,
    cancel: Arc<CancelToken>,
    attempt: AtomicU32,
    phase: AtomicU8,
    /// For a turn ([`Scheduler::turn`]) rather than a task: where its
    /// CPU goes when the queue reaches it.
    turn: Option<Mutex<Option<oneshot::Sender<GpuAssignment>>>>,
    /// When it was submitted here.
    submitted: Instant,
    /// Its function's series (`None` for turns, tasks of no tenant, and
    /// with metrics off).
    series: Option<Arc<CallSeries>>,
    /// Whether its end is counted here: not for a call another node
    /// placed here (that node counts it, once, whatever its retries).
    counted: bool,
    /// When its last attempt here ended, in nanoseconds after
    /// `submitted` (0: none did), so that ending it reads no clock again.
    ran_until_ns: AtomicU64,
    /// Its record among its job's task events (`None` for turns, calls
    /// of no job, and past the job's bound).
    trace: Option<Arc<TaskTrace>>,
}

impl TaskEntry {
    fn transition(&self, from: u8, to: u8) -> bool {
        self.phase
            .compare_exchange(from, to, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }
}

struct Shared {
    state: Mutex<State>,
    objects: Arc<ObjectStore>,
    executor: Weak<dyn TaskExecutor>,
    /// Grows once, when the node's GPUs are found ([`Scheduler::add_gpus`]).
    total: RwLock<ResourceSet>,
    retry_backoff: Duration,
    /// The other nodes, in a multi-node cluster.
    remote: Option<Arc<dyn Remote>>,
    executed: AtomicU64,
    placed_remotely: AtomicU64,
    /// Where calls' transitions are recorded ([`Scheduler::record_events`]).
    events: OnceLock<Arc<TaskEvents>>,
}

/// The node's scheduler. Cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    shared: Arc<Shared>,
}

impl Scheduler {
    /// A scheduler offering `total` resources, storing results in `objects`
    /// and running attempts on `executor`; with `remote`, also on other
    /// nodes.
    pub fn new(
        total: ResourceSet,
        objects: Arc<ObjectStore>,
        executor: Weak<dyn TaskExecutor>,
        remote: Option<Arc<dyn Remote>>,
        retry_backoff: Duration,
    ) -> Self {
        Scheduler {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    available: total.clone(),
                    gpus: GpuShares::new((total.gpu_milli() / 1000) as usize),
                    queues: Vec::new(),
                    bundles: HashMap::new(),
                    removed_groups: Default::default(),
                    cpu_debt: 0,
                    instances: Instances::unlimited(),
                    leases: VecDeque::new(),
                    tasks: HashMap::new(),
                    running: 0,
                }),
                objects,
                executor,
                total: RwLock::new(total),
                retry_backoff,
                remote,
                executed: AtomicU64::new(0),
                placed_remotely: AtomicU64::new(0),
                events: OnceLock::new(),
            }),
        }
    }

    /// Records the transitions of every call of a job into `events`
    /// from now on. Call once, before work is submitted.
    pub fn record_events(&self, events: Arc<TaskEvents>) {
        let _ = self.shared.events.set(events);
    }

    /// The node's total resources.
    pub fn total(&self) -> ResourceSet {
        self.shared.total().clone()
    }

    /// Offers `devices` GPUs (found after the scheduler started) as the
    /// `GPU` resource, one unit each. Call at most once, before any task
    /// asks for a GPU.
    pub fn add_gpus(&self, devices: usize) {
        if devices == 0 {
            return;
        }
        let milli = devices as u64 * 1000;
        let gpu = prism_abi::gpu::GPU_RESOURCE.to_string();
        self.shared
            .total
            .write_locked()
            .custom
            .insert(gpu.clone(), milli);
        {
            let mut state = self.shared.lock();
            state.available.custom.insert(gpu, milli);
            state.gpus = GpuShares::new(devices);
        }
        self.shared.dispatch();
    }

    /// Re-examines the queues: call when other nodes gained room.
    pub fn poke(&self) {
        self.shared.dispatch();
    }

    /// Accepts a call; its result appears under `spec.return_id`.
    pub fn submit(&self, spec: TaskSpec) {
        self.shared.submit(spec)
    }

    /// Cancels the task producing `id`. Returns whether such a task was
    /// still unfinished.
    pub fn cancel(&self, id: ObjectId) -> bool {
        self.shared.cancel(id)
    }

    /// Cancels every unfinished task of `job`.
    pub fn cancel_job(&self, job: OwnerId) -> usize {
        let ids: Vec<ObjectId> = self
            .shared
            .lock()
            .tasks
            .iter()
            .filter(|(_, e)| e.spec.owner == job)
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter().filter(|id| self.shared.cancel(*id)).count()
    }

    /// Current counters.
    pub fn stats(&self) -> SchedulerStats {
        let state = self.shared.lock();
        SchedulerStats {
            pending: state.tasks.len(),
            running: state.running,
            executed: self.shared.executed.load(Ordering::Relaxed),
            placed_remotely: self.shared.placed_remotely.load(Ordering::Relaxed),
        }
    }

    /// Holds `request` until the returned [`Lease`] is dropped (an actor's
    /// resources). Waits until they are free; served before queued tasks.
    /// The caller must check that the request is feasible at all.
    /// `tenant`, if given, is the account the lease's resources were
    /// charged to when its holder was admitted: blocking lends the CPU
    /// back to it as well, and ending the lease leaves the charge whole
    /// for its holder to release.
    pub async fn lease(
        &self,
        request: ResourceSet,
        tenant: Option<Arc<accounts::TenantAccount>>,
    ) -> Lease {
        let rx = {
            let mut state = self.shared.lock();
            let (tx, rx) = oneshot::channel();
            let taken = state
                .leases
                .is_empty()
                .then(|| state.try_start(&request, tenant.as_deref()))
                .flatten();
            match taken {
                Some(gpus) => {
                    let _ = tx.send(gpus);
                }
                None => state.leases.push_back(PendingGrant {
                    request: request.clone(),
                    tenant: tenant.clone(),
                    tx,
                }),
            }
            rx
        };
        self.shared.dispatch();
        // The sender lives in the scheduler's state until it is served. If
        // this future is dropped after the grant was sent but before it
        // was received, the guard gives the grant back.
        let mut pending = PendingLease {
            shared: self.shared.clone(),
            request: request.clone(),
            tenant: tenant.clone(),
            rx: Some(rx),
        };
        let gpus = match pending.rx.as_mut() {
            Some(rx) => rx.await.unwrap_or_default(),
            None => GpuAssignment::default(),
        };
        pending.rx = None;
        Lease {
            slot: Arc::new(SlotHandle {
                shared: self.shared.clone(),
                grant: request,
                gpus,
                blocked: AtomicBool::new(false),
                bundle: None,
                instance_of: tenant.clone(),
                tenant,
                turn_cpu: AtomicU64::new(0),
                charged_elsewhere: true,
                trace: Mutex::new(None),
            }),
        }
    }

    /// Waits until the guest holding `slot` may run its code: a guest that
    /// holds no CPU of its own (an actor created without `num_cpus`) takes
    /// one for each call, queued fairly with its tenant's other work and
    /// within its CPU quota, and gives it back when the returned [`Turn`]
    /// is dropped. Blocking in the call lends it out like any CPU. For a
    /// guest that holds a CPU, the turn is free and immediate. `job` and
    /// `account` are the guest's, for fair ordering and quotas.
    pub async fn turn(
        &self,
        slot: &Arc<SlotHandle>,
        job: OwnerId,
        account: Option<Arc<JobAccount>>,
    ) -> Turn {
        let turn = Turn { slot: slot.clone() };
        if slot.grant.cpu_milli > 0 || slot.bundle.is_some() {
            return turn;
        }
        let tenant = slot.tenant.clone();
        let cpu = self.shared.run_cpu(tenant.as_deref());
        if cpu == 0 {
            return turn;
        }
        let shape = cpu_only(cpu);
        let mut pending = {
            let mut state = self.shared.lock();
            // At once if nothing waits and a CPU is free within the quota.
            let now = state.queues.is_empty()
                && state.leases.is_empty()
                && state.available.fits(&shape)
                && tenant.as_ref().is_none_or(|t| t.fits(&shape));
            if now {
                state.available.take(&shape);
                if let Some(t) = &tenant {
                    t.hold(&shape);
                }
                slot.turn_cpu.store(cpu, Ordering::SeqCst);
                return turn;
            }
            drop(state);
            let (tx, rx) = oneshot::channel();
            let entry = Arc::new(TaskEntry {
                spec: Arc::new(TaskSpec {
                    owner: job,
                    ticket: None,
                    module: ModuleHash::of(b""),
                    entry: EntryKind::ActorMethod,
                    function: String::new(),
                    args: Vec::new(),
                    request: ResourceSet::default(),
                    max_retries: 0,
                    max_calls: 0,
                    timeout: Duration::ZERO,
                    memory_limit: 0,
                    return_id: ObjectId::random(),
                    strategy: Default::default(),
                    local_only: true,
                    from_peer: false,
                    recorded_as: None,
                    bundle: None,
                    first_attempt: 0,
                    account,
                    admitted: false,
                }),
                shape,
                cancel: Arc::new(CancelToken::default()),
                attempt: AtomicU32::new(0),
                phase: AtomicU8::new(WAITING_ARGS),
                turn: Some(Mutex::new(Some(tx))),
                submitted: Instant::now(),
                series: None,
                counted: false,
                ran_until_ns: AtomicU64::new(0),
                trace: None,
            });
            self.shared.enqueue(entry.clone(), WAITING_ARGS);
            PendingTurn {
                shared: self.shared.clone(),
                entry,
                rx: Some(rx),
            }
        };
        if let Some(rx) = pending.rx.as_mut()
            && rx.await.is_ok()
        {
            pending.rx = None;
            slot.turn_cpu.store(cpu, Ordering::SeqCst);
        }
        turn
    }

    /// Limits the guests alive here at once to `slots` instance slots, of
    /// which one tenant may hold at most `tenant_share` (at least one).
    /// Call once, before any work is submitted.
    pub fn limit_instances(&self, slots: u32, tenant_share: f64) {
        let slots = slots.max(1);
        let share = if tenant_share.is_finite() {
            tenant_share.clamp(0.0, 1.0)
        } else {
            1.0
        };
        let per_tenant = ((f64::from(slots) * share).floor() as u32).clamp(1, slots);
        let mut state = self.shared.lock();
        state.instances.total = slots;
        state.instances.per_tenant = per_tenant;
    }

    /// Instance slots: (in use, total, most one tenant may hold).
    pub fn instances(&self) -> (u32, u32, u32) {
        let state = self.shared.lock();
        let i = &state.instances;
        (i.used, i.total, i.per_tenant)
    }

    /// Reserves placement group bundles here, all or none: `bundles` are
    /// (index, resources). Fails with the shortfall if they do not all
    /// fit now. Reserving a group's bundle twice is an error.
    pub fn reserve_bundles(
        &self,
        group: &str,
        bundles: &[(u32, ResourceSet)],
    ) -> Result<(), ReserveError> {
        let mut sum = ResourceSet::default();
        for (_, bundle) in bundles {
            if bundle.gpu_milli() > 0 {
                return Err(ReserveError::Gpus);
            }
            sum.give(bundle);
        }
        {
            let mut state = self.shared.lock();
            if bundles
                .iter()
                .any(|(i, _)| state.bundles.contains_key(&(group.to_string(), *i)))
            {
                return Err(ReserveError::AlreadyReserved(group.to_string()));
            }
            if !state.available.fits(&sum) {
                return Err(ReserveError::Shortfall(
                    state
                        .available
                        .shortfall(&sum)
                        .unwrap_or_else(|| "not enough free resources".into()),
                ));
            }
            state.available.take(&sum);
            for (index, bundle) in bundles {
                state.bundles.insert(
                    (group.to_string(), *index),
                    BundlePool {
                        size: bundle.clone(),
                        left: bundle.clone(),
                    },
                );
            }
        }
        Ok(())
    }

    /// Frees a group's bundles here: what they hold unused returns to the
    /// node now, what their running tasks hold when those finish; their
    /// queued tasks fail.
    pub fn release_bundles(&self, group: &str) {
        {
            let mut state = self.shared.lock();
            let keys: Vec<(String, u32)> = state
                .bundles
                .keys()
                .filter(|(g, _)| g == group)
                .cloned()
                .collect();
            for key in keys {
                if let Some(pool) = state.bundles.remove(&key) {
                    state.give(&pool.left, &[]);
                }
            }
            state.removed_groups.insert(group.to_string());
        }
        self.shared.dispatch();
    }

    /// Resources not held by any task right now.
    pub fn available(&self) -> ResourceSet {
        self.shared.lock().available.clone()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.locked()
    }

    fn total(&self) -> std::sync::RwLockReadGuard<'_, ResourceSet> {
        self.total.read_locked()
    }

    fn submit(self: &Arc<Self>, spec: TaskSpec) {
        self.objects.create_pending(spec.return_id, spec.owner);
        let shortfall = self.total().shortfall(&spec.request);
        let remote = self.remote_for(&spec);
        if let Some(why) = shortfall
            && !remote.is_some_and(|r| r.feasible(&spec.request))
        {
            self.fail_now(
                &spec,
                ErrorKind::Unschedulable,
                format!("no node can run this task: {why}"),
            );
            return;
        }
        if let Err(why) = GpuShares::validate(spec.request.gpu_milli()) {
            self.fail_now(&spec, ErrorKind::InvalidArgument, why.to_string());
            return;
        }
        if let Some(Arg::Invalid(message)) = spec.args.iter().find(|a| matches!(a, Arg::Invalid(_)))
        {
            self.fail_now(&spec, ErrorKind::InvalidArgument, message.clone());
            return;
        }
        if let Some((i, Arg::Missing(id))) = spec
            .args
            .iter()
            .enumerate()
            .find(|(_, a)| matches!(a, Arg::Missing(_)))
        {
            let error = Arg::not_found(i, *id);
            self.fail_now(&spec, error.kind, error.message);
            return;
        }
        if spec.bundle.is_none()
            && let Some(over) = spec
                .account
                .as_ref()
                .and_then(|a| a.tenant().exceeds(&spec.request))
        {
            self.fail_now(&spec, ErrorKind::QuotaExceeded, over.to_string());
            return;
        }
        let deps: Vec<ObjectId> = spec
            .args
            .iter()
            .filter_map(|a| match a {
                Arg::Ref(id) if self.objects.is_ready(*id) == Some(false) => Some(*id),
                _ => None,
            })
            .collect();
        let first_attempt = spec.first_attempt;
        let series = spec
            .account
            .as_ref()
            .and_then(|a| a.tenant().metrics())
            .map(|m| m.tasks.get(&spec.function));
        let submitted = Instant::now();
        let trace = self.trace(&spec, submitted);
        let entry = Arc::new(TaskEntry {
            submitted,
            trace,
            series,
            counted: !spec.from_peer,
            ran_until_ns: AtomicU64::new(0),
            shape: self.run_shape(&spec),
            spec: Arc::new(spec),
            cancel: Arc::new(CancelToken::default()),
            attempt: AtomicU32::new(first_attempt),
            phase: AtomicU8::new(WAITING_ARGS),
            turn: None,
        });
        self.lock()
            .tasks
            .insert(entry.spec.return_id, entry.clone());
        if deps.is_empty() {
            self.enqueue(entry, WAITING_ARGS);
        } else {
            let shared = self.clone();
            tokio::spawn(async move { shared.wait_for_args(entry, deps).await });
        }
    }

    /// The CPU (thousandths) a guest that asked for none holds while its
    /// code runs: one CPU, or less if the node or its tenant's quota has
    /// less. Running guest code always counts against its tenant, so a
    /// tenant cannot run unbounded zero-CPU guests beside the others.
    fn run_cpu(&self, tenant: Option<&accounts::TenantAccount>) -> u64 {
        let cpu = self.total().cpu_milli.min(1000);
        tenant
            .and_then(|t| t.cpu_quota_milli())
            .map_or(cpu, |quota| cpu.min(quota))
    }

    /// What `spec` holds while it runs here: its request, plus a CPU to
    /// run on if it asked for none (a bundle's tasks run on the bundle).
    /// That includes a job's driver: it places like Ray's, asking for no
    /// CPU by default, but its code runs on a CPU counted against its
    /// tenant, lent whenever it waits (`get`, `wait`, a sleep).
    fn run_shape(&self, spec: &TaskSpec) -> ResourceSet {
        let mut shape = spec.request.clone();
        if shape.cpu_milli == 0 && spec.bundle.is_none() {
            shape.cpu_milli = self.run_cpu(spec.account.as_ref().map(|a| &**a.tenant()));
        }
        shape
    }

    /// The other nodes, if `spec` may run on one.
    fn remote_for(&self, spec: &TaskSpec) -> Option<&Arc<dyn Remote>> {
        if spec.local_only || spec.entry != EntryKind::Task {
            return None;
        }
        self.remote.as_ref()
    }

    fn fail_now(&self, spec: &TaskSpec, kind: ErrorKind, message: String) {
        if spec.admitted
            && let Some(account) = &spec.account
        {
            account.tenant().task_done();
        }
        if !spec.from_peer
            && let Some(metrics) = spec.account.as_ref().and_then(|a| a.tenant().metrics())
        {
            metrics.tasks.get(&spec.function).ended(Err(kind));
        }
        let mut error = WireError::new(kind, message);
        error.origin = Some(Box::new(prism_abi::ErrorOrigin {
            task: spec.return_id.to_string(),
            function: spec.function.clone(),
            node: self.objects.node_tag(),
            output: Vec::new(),
        }));
        if let Some(trace) = self.trace(spec, Instant::now()) {
            trace.finished(Err(&error));
        }
        let _ = self
            .objects
            .complete(spec.return_id, Object::Error(Arc::new(error)));
    }

    async fn wait_for_args(self: Arc<Self>, entry: Arc<TaskEntry>, deps: Vec<ObjectId>) {
        for id in deps {
            let Watch::Pending(rx) = self.objects.watch(id) else {
                continue;
            };
            tokio::select! {
                _ = rx => {}
                _ = entry.cancel.cancelled() => break,
            }
        }
        if entry.cancel.is_cancelled() {
            // `cancel` finishes tasks that are not running.
            return;
        }
        self.enqueue(entry, WAITING_ARGS);
    }
}

#[cfg(test)]
mod tests;
