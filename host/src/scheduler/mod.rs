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

pub mod accounts;
pub mod remote;
pub mod resources;
mod slot;

use crate::ids::{JobId, ModuleHash, ObjectId, TaskId};
use crate::objects::{Lookup, Object, ObjectStore, Watch};
use crate::runtime::{BoxFuture, CancelToken};
use crate::sync::{MutexExt, RwLockExt};
use crate::task::{Arg, EntryKind};
use accounts::JobAccount;
use bytes::Bytes;
pub use prism_abi::{BundleRef, SchedulingStrategy};
use prism_abi::{ErrorKind, WireError};
use remote::{Pick, Placement, Remote, Reservation};
use resources::{GpuAssignment, GpuShares, ResourceSet};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, Weak};
use std::time::Duration;
use tokio::sync::oneshot;

pub use slot::{Lease, SlotHandle, Turn};
use slot::{PendingLease, PendingTurn, cpu_only};

/// Longest delay between two attempts (10 s).
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Everything the scheduler needs to know about one call. Plain data.
#[derive(Clone, Debug)]
pub struct TaskSpec {
    /// The job that owns the call and its result.
    pub job: JobId,
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
    /// Run it on this node only (a call another node placed here).
    pub local_only: bool,
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

/// A lease waiting in the scheduler's state: what it asks for, whose it
/// is, and where its grant goes.
struct PendingGrant {
    request: ResourceSet,
    tenant: Option<Arc<accounts::TenantAccount>>,
    tx: oneshot::Sender<GpuAssignment>,
}

/// A node's instance slots as the scheduler hands them out: every guest
/// that starts here (task, driver, actor) takes one and keeps it while it
/// lives, blocked or not, so a task never holds a CPU while it waits for
/// an instance. No tenant may hold more than `per_tenant` of them, so one
/// tenant's blocked task graph cannot keep every other tenant out.
struct Instances {
    total: u32,
    used: u32,
    per_tenant: u32,
}

impl Instances {
    fn unlimited() -> Self {
        Instances {
            total: u32::MAX,
            used: 0,
            per_tenant: u32::MAX,
        }
    }

    /// Whether a guest of `tenant` may start here now.
    fn room_for(&self, tenant: Option<&accounts::TenantAccount>) -> bool {
        self.used < self.total && tenant.is_none_or(|t| t.instances() < u64::from(self.per_tenant))
    }

    fn take(&mut self, tenant: Option<&accounts::TenantAccount>) {
        self.used = self.used.saturating_add(1);
        if let Some(t) = tenant {
            t.take_instance();
        }
    }

    fn give(&mut self, tenant: Option<&accounts::TenantAccount>) {
        self.used = self.used.saturating_sub(1);
        if let Some(t) = tenant {
            t.give_instance();
        }
    }
}

/// A placement group bundle held on this node.
struct BundlePool {
    /// What it holds in all.
    size: ResourceSet,
    /// What its running tasks do not use.
    left: ResourceSet,
}

/// What separates queues of one resource shape: the placement strategy,
/// the bundle and the tenant.
type QueueKey = (SchedulingStrategy, Option<BundleRef>, Option<String>);

fn tenant_of(spec: &TaskSpec) -> Option<&str> {
    spec.account.as_ref().map(|a| a.tenant().name())
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
}

impl TaskEntry {
    fn transition(&self, from: u8, to: u8) -> bool {
        self.phase
            .compare_exchange(from, to, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }
}

struct State {
    available: ResourceSet,
    /// FIFO queues, one per resource shape and placement strategy (so a
    /// task bound to one node never waits behind tasks that wait for room
    /// anywhere, nor the other way round).
    queues: Vec<(ResourceSet, QueueKey, VecDeque<Arc<TaskEntry>>)>,
    /// Placement group bundles held here, by (group, index).
    bundles: HashMap<(String, u32), BundlePool>,
    /// Groups removed here (their queued tasks fail).
    removed_groups: std::collections::HashSet<String>,
    /// CPU (thousandths) resumed guests took beyond what was available;
    /// paid back before any CPU becomes available again.
    cpu_debt: u64,
    /// Instance slots: how many guests may be alive here at once.
    instances: Instances,
    /// Where on which device the free GPU share is.
    gpus: GpuShares,
    /// Long-lived holds (actors) waiting for resources and an instance
    /// slot, served next.
    leases: VecDeque<PendingGrant>,
    tasks: HashMap<ObjectId, Arc<TaskEntry>>,
    running: usize,
}

struct Shared {
    state: Mutex<State>,
    objects: Arc<ObjectStore>,
    executor: Weak<dyn TaskExecutor>,
    /// Grows once, when the node's GPUs are found ([`Scheduler::add_gpus`]).
    total: RwLock<ResourceSet>,
    retry_backoff: Duration,
    /// The other nodes, once this node joined a cluster.
    remote: OnceLock<Arc<dyn Remote>>,
    executed: AtomicU64,
    placed_remotely: AtomicU64,
}

/// The node's scheduler. Cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    shared: Arc<Shared>,
}

impl Scheduler {
    /// A scheduler offering `total` resources, storing results in `objects`
    /// and running attempts on `executor`.
    pub fn new(
        total: ResourceSet,
        objects: Arc<ObjectStore>,
        executor: Weak<dyn TaskExecutor>,
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
                remote: OnceLock::new(),
                executed: AtomicU64::new(0),
                placed_remotely: AtomicU64::new(0),
            }),
        }
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

    /// Lets this scheduler place tasks on other nodes and pull objects from
    /// them. Call at most once; later calls are ignored.
    pub fn set_remote(&self, remote: Arc<dyn Remote>) {
        let _ = self.shared.remote.set(remote);
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
    pub fn cancel_job(&self, job: JobId) -> usize {
        let ids: Vec<ObjectId> = self
            .shared
            .lock()
            .tasks
            .iter()
            .filter(|(_, e)| e.spec.job == job)
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
        job: JobId,
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
                    job,
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
    ) -> Result<(), String> {
        let mut sum = ResourceSet::default();
        for (_, bundle) in bundles {
            if bundle.gpu_milli() > 0 {
                return Err("bundles cannot hold GPUs yet".into());
            }
            sum.give(bundle);
        }
        {
            let mut state = self.shared.lock();
            if bundles
                .iter()
                .any(|(i, _)| state.bundles.contains_key(&(group.to_string(), *i)))
            {
                return Err(format!("placement group {group} is already reserved here"));
            }
            if !state.available.fits(&sum) {
                return Err(state
                    .available
                    .shortfall(&sum)
                    .unwrap_or_else(|| "not enough free resources".into()));
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

impl State {
    /// Takes `request` and an instance slot for a guest of `tenant` if
    /// both are free now, GPU shares included.
    fn try_start(
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
    fn give(&mut self, request: &ResourceSet, gpus: &[(usize, u64)]) {
        let mut rest = request.clone();
        rest.cpu_milli = 0;
        self.available.give(&rest);
        self.give_cpu(request.cpu_milli);
        self.gpus.give(gpus);
    }

    /// CPU back from a guest that blocked or ended: the debt first.
    fn give_cpu(&mut self, cpu: u64) {
        let paid = cpu.min(self.cpu_debt);
        self.cpu_debt -= paid;
        self.available.cpu_milli += cpu - paid;
    }

    /// CPU for a guest that resumes: what is available, the rest as debt.
    fn take_cpu(&mut self, cpu: u64) {
        let have = cpu.min(self.available.cpu_milli);
        self.available.cpu_milli -= have;
        self.cpu_debt += cpu - have;
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
        self.objects.create_pending(spec.return_id, spec.job);
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
            self.fail_now(&spec, ErrorKind::InvalidArgument, why);
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
        let entry = Arc::new(TaskEntry {
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
        self.remote.get()
    }

    /// Where the queued task `entry` of resource shape `shape` runs now.
    fn place(&self, state: &State, entry: &TaskEntry, shape: &ResourceSet) -> Decision {
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
    fn place_in_bundle(
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

    fn fail_now(&self, spec: &TaskSpec, kind: ErrorKind, message: String) {
        if spec.admitted
            && let Some(account) = &spec.account
        {
            account.tenant().task_done();
        }
        let error = Arc::new(WireError::new(kind, message));
        let _ = self.objects.complete(spec.return_id, Object::Error(error));
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

    fn enqueue(self: &Arc<Self>, entry: Arc<TaskEntry>, from: u8) {
        if !entry.transition(from, QUEUED) {
            return;
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
    fn dispatch(self: &Arc<Self>) {
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
    fn step(
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

    /// Runs one attempt on another node.
    async fn run_remote(self: Arc<Self>, entry: Arc<TaskEntry>, reservation: Box<dyn Reservation>) {
        let attempt = entry.attempt.load(Ordering::SeqCst);
        self.placed_remotely.fetch_add(1, Ordering::Relaxed);
        let result = match self.remote.get() {
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

    async fn run(self: Arc<Self>, entry: Arc<TaskEntry>, gpus: GpuAssignment) {
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
        });
        let attempt = entry.attempt.load(Ordering::SeqCst);
        if let Some(remote) = self.remote.get() {
            // Arguments that live on other nodes are pulled here first
            // (a task placed elsewhere pulls them there instead).
            let mut pulled = false;
            for arg in &entry.spec.args {
                if let Arg::Ref(id) = arg {
                    let tenant = entry
                        .spec
                        .account
                        .as_ref()
                        .map_or("", |a| a.tenant().name());
                    remote.fetch(*id, entry.spec.job, tenant);
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
                };
                self.executed.fetch_add(1, Ordering::Relaxed);
                executor.execute(run).await
            }
        };
        slot.release();
        self.lock().running -= 1;
        self.dispatch();
        self.conclude(entry, attempt, result);
    }

    /// Retries a failed attempt or stores the task's result.
    fn conclude(
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

    fn finish(&self, entry: &TaskEntry, result: Result<Bytes, WireError>) {
        self.lock().tasks.remove(&entry.spec.return_id);
        if let Some(account) = &entry.spec.account {
            if entry.spec.admitted {
                account.tenant().task_done();
            }
            if let Ok(bytes) = &result {
                account.add_bytes(bytes.len() as u64);
            }
        }
        let object = match result {
            Ok(bytes) => Object::Value(bytes),
            Err(e) => Object::Error(Arc::new(e)),
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

    fn cancel(self: &Arc<Self>, id: ObjectId) -> bool {
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

/// Waits until every `Ref` argument's object is ready (or gone).
pub async fn args_ready(objects: &ObjectStore, args: &[Arg]) {
    for arg in args {
        if let Arg::Ref(id) = arg
            && let Watch::Pending(rx) = objects.watch(*id)
        {
            let _ = rx.await;
        }
    }
}

/// Builds a call's input buffer: the MessagePack array of its arguments,
/// with `Ref` arguments replaced by their objects' values. An argument whose
/// object holds an error fails the call with that error.
pub fn resolve_args(objects: &ObjectStore, args: &[Arg]) -> Result<Bytes, WireError> {
    let mut values: Vec<Bytes> = Vec::with_capacity(args.len());
    for (i, arg) in args.iter().enumerate() {
        match arg {
            Arg::Value(b) => values.push(b.clone()),
            Arg::Invalid(m) => return Err(WireError::new(ErrorKind::InvalidArgument, m.clone())),
            Arg::Missing(id) => return Err(Arg::not_found(i, *id)),
            Arg::Ref(id) => match objects.lookup(*id) {
                Ok(Lookup::Ready(Object::Value(b))) => values.push(b),
                Ok(Lookup::Ready(Object::Error(e))) => {
                    let mut e = (*e).clone();
                    e.message = format!("argument {i} failed: {}", e.message);
                    return Err(e);
                }
                Ok(Lookup::NotFound) | Ok(Lookup::Pending(_)) => {
                    return Err(Arg::not_found(i, *id));
                }
                Err(e) => return Err(WireError::new(ErrorKind::System, e.to_string())),
            },
        }
    }
    Ok(Bytes::from(prism_abi::build_input(
        values.iter().map(|b| b.as_ref()),
    )))
}

#[cfg(test)]
mod tests;
