//! The wasm runtime: one engine per node, a module cache, and the
//! invocation of one guest call in a limited instance.
//!
//! # Design
//! - [`Runtime`] owns the [`wasmtime::Engine`] (async, epoch interruption,
//!   pooling allocator, copy-on-write memory images) and a [`ModuleCache`]
//!   that compiles each module once and keeps it on disk (by sha256) and in
//!   memory as an `InstancePre`.
//! - [`Runtime::invoke`] runs one call: in its own `Store` and instance, the
//!   per-task limits (linear memory through [`limits`], wall-clock deadline
//!   and cancellation through epoch callbacks), captured stdio through
//!   [`wasi`], and the `prism_v1` host functions of [`abi`]. The instance is
//!   fresh, or a [`warm`] one that ran an earlier task of the same job and
//!   function and ended cleanly: state carries over only between tasks of
//!   one job, never between jobs or tenants, never after a trap.
//! - Guests reach the rest of the node only through the [`GuestHost`] trait,
//!   so the runtime does not know about scheduling: data flows from the
//!   scheduler into the runtime, and guest requests flow back out through
//!   that one trait.
//! - Every way a call can fail becomes a [`WireError`] with a kind the caller
//!   can match and the guest's own message; the host never panics on
//!   anything a guest does.

mod abi;
mod engine;
mod gpu_abi;
pub(crate) mod limits;
mod modules;
mod warm;
mod wasi;

pub use warm::{NoServices, Reuse};
pub use wasi::{DATA_DIR_GUEST_PATH, Sandbox};

pub use modules::{LoadedModule, ModuleCache, ModuleError, ModuleExports};

use crate::config::RuntimeConfig;
use crate::gpu::GpuContext;
use crate::ids::{ActorId, ObjectId};
use crate::objects::{Lookup, Watch};
use crate::task::{Arg, EntryKind};
use bytes::Bytes;
use prism_abi::{ErrorKind, StoreStats, WireError};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use wasmtime::{Engine, Store, UpdateDeadline};

pub use crate::sync::BoxFuture;

/// Makes and awaits a call that may wait (a host call that goes to the
/// head, another node or free resources; a driver's sleep) with the
/// guest's CPU lent out meanwhile, as in `get`. The call is made after the
/// CPU is lent, so checks it makes at once (a tenant's quota) do not count
/// the caller's own CPU.
pub(crate) async fn lending<F: Future>(
    host: &Arc<dyn GuestHost>,
    call: impl FnOnce() -> F,
) -> F::Output {
    host.block();
    let out = call().await;
    host.unblock().await;
    out
}

/// What a running guest may ask of the node. Implemented by the node for
/// each running call (so it knows the caller's job and CPU grant).
pub trait GuestHost: Send + Sync + 'static {
    /// Submits a call of `function` in the caller's module; returns the
    /// result's id at once. Failures (unschedulable, bad arguments) are
    /// stored in that object, never returned here.
    fn submit(&self, function: &str, args: Vec<Arg>, options: prism_abi::TaskOptions) -> ObjectId;
    /// Stores a value owned by the caller's job.
    fn put(&self, bytes: Bytes) -> Result<ObjectId, PutError>;
    /// Reads an object the caller may see (restoring it if spilled).
    fn lookup(&self, id: ObjectId) -> Lookup;
    /// Readiness of an object the caller may see. Never restores spilled values.
    fn watch(&self, id: ObjectId) -> Watch;
    /// Cancels the task producing `id`, if the caller may see it.
    fn cancel(&self, id: ObjectId);
    /// Frees the ready objects among `ids` that the caller's job owns, here
    /// and on every other node; resolves to how many were freed here.
    fn free(&self, ids: Vec<ObjectId>) -> BoxFuture<'static, usize>;
    /// The guest is about to block: give its CPU back.
    fn block(&self);
    /// The guest may continue: wait until it has its CPU again.
    fn unblock(&self) -> BoxFuture<'static, ()>;
    /// A line for the job's log.
    fn log(&self, level: i32, line: &str);
    /// The node's object store statistics.
    fn store_stats(&self) -> StoreStats;
    /// Creates an actor of `class` in the caller's module (in a cluster, a
    /// name is claimed at the head first, so the future may wait on it).
    fn actor_create(
        &self,
        class: &str,
        args: Vec<Arg>,
        options: prism_abi::ActorOptions,
    ) -> BoxFuture<'static, Result<ActorId, ActorCreateError>>;
    /// Submits a method call; returns the result's id at once (an unknown
    /// or dead actor's error is stored in that object).
    fn actor_call(&self, actor: ActorId, method: &str, args: Vec<Arg>) -> ObjectId;
    /// The live actor of `class` named `name` in `namespace` (empty: the
    /// caller's namespace).
    fn actor_lookup(
        &self,
        namespace: &str,
        name: &str,
        class: &str,
    ) -> BoxFuture<'static, Option<ActorId>>;
    /// Kills an actor without restart.
    fn actor_kill(&self, actor: ActorId);
    /// Creates a placement group for the caller's job (waits for room).
    fn pg_create(
        &self,
        spec: prism_abi::PlacementGroupSpec,
    ) -> BoxFuture<'static, Result<prism_abi::PlacementGroupInfo, prism_abi::WireError>>;
    /// Removes a placement group.
    fn pg_remove(&self, group: &str);
    /// Stores a named object in the caller's namespace.
    fn named_put(
        &self,
        name: &str,
        value: Bytes,
        tier: crate::objects::named::Tier,
    ) -> BoxFuture<'static, Result<(), crate::objects::named::NamedError>>;
    /// A named object of the caller's namespace.
    fn named_get(
        &self,
        name: &str,
    ) -> BoxFuture<'static, Result<Option<Bytes>, crate::objects::named::NamedError>>;
    /// Deletes a named object; whether it existed.
    fn named_delete(
        &self,
        name: &str,
    ) -> BoxFuture<'static, Result<bool, crate::objects::named::NamedError>>;
    /// Names in the caller's namespace with `prefix`, sorted.
    fn named_list(
        &self,
        prefix: &str,
    ) -> BoxFuture<'static, Result<Vec<String>, crate::objects::named::NamedError>>;
    /// Complete lines the running guest wrote to its stdout (or, with
    /// `stderr`, its stderr), while the call runs; what is left at its end
    /// comes in the outcome. Default: dropped (a host that keeps no log).
    fn output(&self, stderr: bool, lines: &[u8]) {
        let _ = (stderr, lines);
    }
    /// Makes `call` (an encoded HTTP request, or a method call) to
    /// deployment `deployment` of the caller's tenant's application
    /// `app`; returns the id of the object its value (or error) will
    /// complete.
    fn serve_call(
        &self,
        app: &str,
        deployment: &str,
        call: crate::cluster::DeploymentCall,
    ) -> ObjectId;
    /// Records a guest metric update for the caller's tenant, namespace
    /// and job. Default: dropped (a host that keeps no metrics).
    fn metric(
        &self,
        update: &prism_abi::metrics::MetricUpdate,
    ) -> Result<(), crate::metrics::GuestMetricError> {
        let _ = update;
        Ok(())
    }
    /// What the caller's job may do (checked by the ABI before calls
    /// that answer a denial with a status code). Default: everything.
    fn permissions(&self) -> crate::security::GuestPermissions {
        crate::security::GuestPermissions::ALL
    }
}

/// Why `actor_create` refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActorCreateError {
    /// A live actor already has the name.
    #[error("an actor named {0:?} already exists in this namespace")]
    NameTaken(String),
    /// The options were malformed.
    #[error("invalid actor options: {0}")]
    Invalid(String),
    /// The job's policy does not permit it.
    #[error("{0}")]
    Denied(String),
    /// The tenant is at its actor quota.
    #[error("{0}")]
    Quota(String),
}

/// Why `put` refused a value.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// The object store refused it.
    #[error(transparent)]
    Store(#[from] crate::objects::StoreError),
    /// The job's policy does not permit `put`.
    #[error("the tenant's policy does not permit this job's guests to put objects")]
    Denied,
    /// The tenant is at its object-store quota.
    #[error("{0}")]
    Quota(String),
}

/// Cancellation of one running call, observable from the guest's epoch
/// callback and from host calls it is blocked in.
#[derive(Default, Debug)]
pub struct CancelToken {
    cancelled: AtomicBool,
    notify: Notify,
}

impl CancelToken {
    /// Requests cancellation; idempotent.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Resolves once cancellation is requested.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// Why the host stopped a running guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Interrupt {
    #[error("the task was cancelled")]
    Cancelled,
    #[error("the task exceeded its deadline")]
    Deadline,
}

/// One call to run.
pub struct Invocation {
    /// Task or driver.
    pub entry: EntryKind,
    /// The function's name (without export prefix).
    pub function: String,
    /// The MessagePack array of resolved arguments.
    pub input: Bytes,
    /// 0 for the first attempt.
    pub attempt: u32,
    /// Wall-clock budget of this attempt.
    pub timeout: Duration,
    /// Cap on linear memory in bytes (at most the node's `max_task_memory`).
    pub memory_limit: u64,
    /// Cancellation of this call.
    pub cancel: Arc<CancelToken>,
    /// Environment variables of a fresh instance (none: empty).
    pub env: crate::task::JobEnv,
    /// Clocks and directory of a fresh instance.
    pub sandbox: Arc<Sandbox>,
    /// Whether the call may run in a warm instance of an earlier call like
    /// it, and keep its own for the next (none: a fresh instance, dropped
    /// after the call). See [`Reuse`].
    pub reuse: Option<Reuse>,
    /// Where the instance it takes is counted (fresh or warm, and how
    /// long making a fresh one took); `None`: nowhere.
    pub metrics: Option<Arc<crate::metrics::TenantMetrics>>,
}

/// What a call produced.
pub struct InvocationOutcome {
    /// The MessagePack return value, or the typed failure.
    pub result: Result<Bytes, WireError>,
    /// Captured standard output.
    pub stdout: Vec<u8>,
    /// Captured standard error.
    pub stderr: Vec<u8>,
    /// Output bytes dropped over the per-task cap.
    pub output_dropped: usize,
    /// An actor method asked for its actor to end (`prism::exit_actor`).
    pub exit_requested: bool,
}

impl InvocationOutcome {
    /// An outcome that failed before the guest ran.
    pub fn failed(kind: ErrorKind, message: impl Into<String>) -> Self {
        InvocationOutcome {
            result: Err(WireError::new(kind, message)),
            stdout: Vec::new(),
            stderr: Vec::new(),
            output_dropped: 0,
            exit_requested: false,
        }
    }
}

/// Data of one task's `Store`.
pub(crate) struct TaskState {
    wasi: wasi::WasiCtx,
    limiter: limits::GuestLimiter,
    host: Arc<dyn GuestHost>,
    memory: Option<wasmtime::Memory>,
    input: Bytes,
    output: Option<(i32, Vec<u8>)>,
    staged: Option<Bytes>,
    /// The object whose value `staged` holds, if `get` staged one.
    staged_object: Option<ObjectId>,
    panic: Option<String>,
    attempt: u32,
    cancel: Arc<CancelToken>,
    deadline: Instant,
    actor: bool,
    exit_requested: bool,
    gpu: GpuContext,
}

/// Errors creating a runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The engine configuration was rejected (e.g. the pool does not fit in
    /// the address space).
    #[error("could not create the wasm engine: {0}")]
    Engine(String),
    /// The module cache directory is unusable.
    #[error("module cache directory: {0}")]
    Cache(#[from] std::io::Error),
}

/// The node's wasm runtime.
pub struct Runtime {
    engine: Engine,
    modules: ModuleCache,
    config: RuntimeConfig,
    slots: Arc<Semaphore>,
    warm: warm::WarmPool,
    detached: Arc<dyn GuestHost>,
    _ticker: engine::EpochTicker,
}

impl Runtime {
    /// Creates the engine, starts its epoch ticker, and opens the module
    /// cache in `cache_dir`.
    pub fn new(config: &RuntimeConfig, cache_dir: PathBuf) -> Result<Self, RuntimeError> {
        let engine = engine::build(config).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let linker = abi::linker(&engine).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let modules = ModuleCache::new(engine.clone(), linker, cache_dir)?;
        let ticker = engine::EpochTicker::start(&engine, config.epoch_tick);
        Ok(Runtime {
            engine,
            modules,
            config: config.clone(),
            slots: Arc::new(Semaphore::new(config.instance_slots as usize)),
            warm: warm::WarmPool::new(
                config.warm_instances as usize,
                config.warm_instance_max_memory as usize,
            ),
            detached: Arc::new(NoServices),
            _ticker: ticker,
        })
    }

    /// The module cache.
    pub fn modules(&self) -> &ModuleCache {
        &self.modules
    }

    /// The configuration the runtime was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Runs one call of `module`, with `host` serving its `prism_v1`
    /// calls: in a warm instance of an earlier call like it if the call
    /// allows reuse and one is idle, else in a fresh instance. Afterwards
    /// the instance is kept for the next such call or discarded (see
    /// [`Reuse`]).
    pub async fn invoke(
        &self,
        module: Arc<LoadedModule>,
        mut call: Invocation,
        host: Arc<dyn GuestHost>,
        gpu: GpuContext,
    ) -> InvocationOutcome {
        // GPU contexts belong to the slot the call holds, so an instance
        // with one is never kept.
        let reuse = call
            .reuse
            .take()
            .filter(|_| self.warm.enabled() && gpu.device_count() == 0);
        let memory_limit = call.memory_limit.min(self.config.max_task_memory) as usize;
        if let Some(reuse) = &reuse
            && let Some(mut instance) =
                self.warm
                    .take(reuse, module.hash(), &call.function, memory_limit)
        {
            if let Some(metrics) = &call.metrics {
                metrics.instance(None);
            }
            instance.rebind(host, memory_limit);
            let function = call.function.clone();
            let outcome = instance.call(call).await;
            self.warm.park(reuse, function, instance, &self.detached);
            return outcome;
        }
        // A missing entry is reported by `Instance::call`; callers check
        // for it before submitting, so this path does not look it up twice.
        let setup = InstanceSetup {
            program: call.function.clone(),
            memory_limit: call.memory_limit,
            actor: false,
            timeout: call.timeout,
            gpu,
            env: call.env.clone(),
            sandbox: call.sandbox.clone(),
            lend_sleeps: call.entry == EntryKind::Main,
        };
        let making = std::time::Instant::now();
        match self.instantiate(module, host, setup, &call.cancel).await {
            Ok(mut instance) => {
                if let Some(metrics) = &call.metrics {
                    metrics.instance(Some(making.elapsed()));
                }
                let function = call.function.clone();
                let outcome = instance.call(call).await;
                if let Some(reuse) = &reuse {
                    self.warm.park(reuse, function, instance, &self.detached);
                }
                outcome
            }
            Err(outcome) => outcome,
        }
    }

    /// Drops the idle warm instances of `job` (its work on this node
    /// ended) and keeps any from being parked for it later; how many.
    pub fn forget_job(&self, job: u64) -> usize {
        self.warm.forget_job(job)
    }

    /// Idle warm instances held.
    pub fn warm_instances(&self) -> usize {
        self.warm.len()
    }

    /// Waits for a free instance slot. Idle warm instances hold slots, so
    /// when none is free they are evicted first (oldest first): a new
    /// instance never waits behind an idle one.
    async fn acquire_slot(&self) -> Result<OwnedSemaphorePermit, tokio::sync::AcquireError> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        // Counted before looking for an idle instance to evict: from here
        // on, an instance that ends is dropped rather than parked, so its
        // slot comes here (see `WarmPool::park`).
        let _waiting = self.warm.waiting();
        loop {
            match self.slots.clone().try_acquire_owned() {
                Ok(permit) => return Ok(permit),
                Err(tokio::sync::TryAcquireError::NoPermits) if self.warm.evict_one() => {}
                // Closed: this answers the same at once.
                Err(_) => return self.slots.clone().acquire_owned().await,
            }
        }
    }

    /// Creates a live instance of `module` (waiting for a free instance
    /// slot), runs its `_initialize`, and keeps it for calls. A task uses it
    /// once; an actor keeps it for its life.
    pub async fn instantiate(
        &self,
        module: Arc<LoadedModule>,
        host: Arc<dyn GuestHost>,
        setup: InstanceSetup,
        cancel: &Arc<CancelToken>,
    ) -> Result<Instance, InvocationOutcome> {
        let slot = tokio::select! {
            // Poll the work first: short calls finish on their first poll,
            // and the other branches then never arm a timer.
            biased;
            permit = self.acquire_slot() => match permit {
                Ok(p) => p,
                Err(_) => return Err(InvocationOutcome::failed(ErrorKind::System, "the runtime is shutting down")),
            },
            _ = cancel.cancelled() => {
                return Err(InvocationOutcome::failed(ErrorKind::Cancelled, "the task was cancelled"));
            }
        };
        let (wasi, captured) = wasi::task_context(
            &setup.program,
            setup.env.as_deref().map_or(&[], |e| e.as_slice()),
            self.config.max_output_per_task,
            &setup.sandbox,
            setup.lend_sleeps.then(|| host.clone()),
        )
        .map_err(|e| {
            InvocationOutcome::failed(ErrorKind::System, format!("WASI setup failed: {e:#}"))
        })?;
        captured.forward_to(Some(host.clone()));
        let memory_limit = setup.memory_limit.min(self.config.max_task_memory) as usize;
        let state = TaskState {
            wasi,
            limiter: limits::GuestLimiter::new(memory_limit),
            host,
            memory: None,
            input: Bytes::new(),
            output: None,
            staged: None,
            staged_object: None,
            panic: None,
            attempt: 0,
            cancel: cancel.clone(),
            deadline: Instant::now() + setup.timeout,
            actor: setup.actor,
            exit_requested: false,
            gpu: setup.gpu,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|ctx| {
            let state = ctx.data();
            if state.cancel.is_cancelled() {
                return Err(Interrupt::Cancelled.into());
            }
            if Instant::now() >= state.deadline {
                return Err(Interrupt::Deadline.into());
            }
            Ok(UpdateDeadline::Yield(1))
        });
        store.set_epoch_deadline(1);

        let deadline = store.data().deadline;
        let init = async {
            let instance = module.pre().instantiate_async(&mut store).await?;
            let memory = instance.get_memory(&mut store, "memory");
            store.data_mut().memory = memory;
            if let Some(init) = module.initializer() {
                let init = instance
                    .get_module_export(&mut store, init)
                    .and_then(|e| e.into_func())
                    .ok_or_else(|| anyhow::anyhow!("`_initialize` is not a function"))?;
                init.typed::<(), ()>(&store)?
                    .call_async(&mut store, ())
                    .await?;
            }
            Ok::<_, anyhow::Error>(instance)
        };
        let result = tokio::select! {
            // Poll the work first: short calls finish on their first poll,
            // and the other branches then never arm a timer.
            biased;
            result = init => result,
            _ = cancel.cancelled() => Err(Interrupt::Cancelled.into()),
            _ = tokio::time::sleep_until(deadline.into()) => Err(Interrupt::Deadline.into()),
        };
        match result {
            Ok(instance) => Ok(Instance {
                store,
                instance,
                module,
                captured,
                dead: false,
                calls: 0,
                _slot: slot,
            }),
            Err(error) => {
                let (stdout, stderr, output_dropped) = captured.take();
                Err(InvocationOutcome {
                    result: Err(classify_failure(error, store.data(), setup.timeout)),
                    stdout,
                    stderr,
                    output_dropped,
                    exit_requested: false,
                })
            }
        }
    }
}

/// How to set up an instance.
pub struct InstanceSetup {
    /// The guest's `argv[0]`: the task's function or the actor's class.
    pub program: String,
    /// Cap on linear memory in bytes (at most the node's `max_task_memory`).
    pub memory_limit: u64,
    /// Whether it hosts an actor (enables `actor_exit`).
    pub actor: bool,
    /// Budget for instantiation and `_initialize`.
    pub timeout: Duration,
    /// The GPUs the instance may use (empty: none).
    pub gpu: GpuContext,
    /// Its environment variables (none: empty).
    pub env: crate::task::JobEnv,
    /// Its clocks and directory.
    pub sandbox: Arc<Sandbox>,
    /// Whether its WASI sleeps lend its CPU (a job's driver, which holds
    /// a CPU while it runs code, not while it waits).
    pub lend_sleeps: bool,
}

/// A live guest instance with its own store and linear memory.
///
/// After a call that killed it (trap, panic, limit, deadline, cancel) it is
/// [dead](Instance::is_dead) and must not be called again: a Rust guest
/// that trapped may have left its state half-written.
pub struct Instance {
    store: Store<TaskState>,
    instance: wasmtime::Instance,
    module: Arc<LoadedModule>,
    captured: wasi::CapturedOutput,
    dead: bool,
    calls: u32,
    _slot: OwnedSemaphorePermit,
}

impl Instance {
    /// The module this is an instance of.
    pub fn module(&self) -> &Arc<LoadedModule> {
        &self.module
    }

    /// Whether a call killed this instance.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Calls this instance has run.
    pub fn calls(&self) -> u32 {
        self.calls
    }

    /// The current size of its linear memory in bytes.
    pub fn memory_size(&self) -> usize {
        self.store
            .data()
            .memory
            .map_or(0, |m| m.data_size(&self.store))
    }

    /// Makes `host` serve the next call, capped at `memory_limit` bytes of
    /// linear memory.
    fn rebind(&mut self, host: Arc<dyn GuestHost>, memory_limit: usize) {
        self.captured.forward_to(Some(host.clone()));
        let state = self.store.data_mut();
        state.host = host;
        state.limiter.set_memory_limit(memory_limit);
        self.store.set_epoch_deadline(1);
    }

    /// Lets go of everything of the last call while the instance is idle:
    /// its host, its input and the bytes it had staged.
    fn detach(&mut self, host: Arc<dyn GuestHost>) {
        self.captured.forward_to(None);
        let state = self.store.data_mut();
        state.host = host;
        state.input = Bytes::new();
        state.staged = None;
        state.staged_object = None;
        state.output = None;
    }

    /// Calls one entry of this instance.
    pub async fn call(&mut self, call: Invocation) -> InvocationOutcome {
        if self.dead {
            return InvocationOutcome::failed(ErrorKind::System, "the instance is dead");
        }
        let Some(export) = self.module.entry(call.entry, &call.function).copied() else {
            return InvocationOutcome::failed(
                ErrorKind::FunctionNotFound,
                format!(
                    "module {} exports no {} named `{}`",
                    self.module.hash(),
                    call.entry.describe(),
                    call.function
                ),
            );
        };
        self.calls = self.calls.saturating_add(1);
        let input_len = call.input.len();
        let deadline = Instant::now() + call.timeout;
        {
            let state = self.store.data_mut();
            state.input = call.input;
            state.output = None;
            state.staged = None;
            state.staged_object = None;
            state.panic = None;
            state.attempt = call.attempt;
            state.cancel = call.cancel.clone();
            state.deadline = deadline;
            state.limiter.refused_memory = None;
        }
        let store = &mut self.store;
        let instance = self.instance;
        let run = async {
            let func = instance
                .get_module_export(&mut *store, &export)
                .and_then(|e| e.into_func())
                .ok_or_else(|| anyhow::anyhow!("entry export is not a function"))?;
            func.typed::<i32, ()>(&*store)?
                .call_async(&mut *store, input_len as i32)
                .await
        };
        // The epoch callback stops guests that are executing wasm; a guest
        // parked in a host call (a WASI sleep, say) is stopped here instead.
        // Dropping the call future unwinds the guest's fiber; the instance
        // is then dead and never called again.
        let cancel = call.cancel.clone();
        let result = tokio::select! {
            // Poll the work first: short calls finish on their first poll,
            // and the other branches then never arm a timer.
            biased;
            result = run => result,
            _ = cancel.cancelled() => Err(Interrupt::Cancelled.into()),
            _ = tokio::time::sleep_until(deadline.into()) => Err(Interrupt::Deadline.into()),
        };
        let (stdout, stderr, output_dropped) = self.captured.take();
        let state = self.store.data_mut();
        let result = classify(result, state, call.timeout);
        if let Err(e) = &result
            && !matches!(e.kind, ErrorKind::Application | ErrorKind::InvalidArgument)
        {
            self.dead = true;
        }
        InvocationOutcome {
            result,
            stdout,
            stderr,
            output_dropped,
            exit_requested: std::mem::take(&mut self.store.data_mut().exit_requested),
        }
    }
}

/// Turns the raw result of a call into the value or a typed error.
fn classify(
    result: anyhow::Result<()>,
    state: &mut TaskState,
    timeout: Duration,
) -> Result<Bytes, WireError> {
    match result {
        Ok(()) => match state.output.take() {
            Some((prism_abi::output_kind::VALUE, bytes)) => Ok(Bytes::from(bytes)),
            Some((prism_abi::output_kind::APPLICATION_ERROR, bytes)) => {
                let mut error = WireError::decode(&bytes).unwrap_or_else(|_| {
                    WireError::new(
                        ErrorKind::Application,
                        String::from_utf8_lossy(&bytes).into_owned(),
                    )
                });
                if !matches!(
                    error.kind,
                    ErrorKind::Application | ErrorKind::InvalidArgument
                ) {
                    error.kind = ErrorKind::Application;
                }
                Err(error)
            }
            Some((kind, _)) => Err(WireError::new(
                ErrorKind::Trap,
                format!("the guest passed unknown output kind {kind}"),
            )),
            None => Err(WireError::new(
                ErrorKind::Trap,
                "the guest returned without producing a value (prism_v1.output was never called)",
            )),
        },
        Err(error) => Err(classify_failure(error, state, timeout)),
    }
}

fn classify_failure(error: anyhow::Error, state: &TaskState, timeout: Duration) -> WireError {
    if state.cancel.is_cancelled()
        || error.downcast_ref::<Interrupt>() == Some(&Interrupt::Cancelled)
    {
        return WireError::new(ErrorKind::Cancelled, "the task was cancelled");
    }
    if error.downcast_ref::<Interrupt>() == Some(&Interrupt::Deadline) {
        return WireError::new(
            ErrorKind::DeadlineExceeded,
            format!(
                "the task ran past its deadline of {} ms",
                timeout.as_millis()
            ),
        );
    }
    if let Some(message) = &state.panic {
        return WireError::new(ErrorKind::Panic, message.clone());
    }
    if let Some(requested) = state.limiter.refused_memory {
        return WireError::new(
            ErrorKind::MemoryLimitExceeded,
            format!(
                "linear memory growth to {requested} bytes refused: the limit is {} bytes ({error})",
                state.limiter.memory_limit()
            ),
        );
    }
    if let Some(status) = wasi::exit_status(&error) {
        return WireError::new(
            ErrorKind::Trap,
            format!("the guest called exit({status}) before producing a value"),
        );
    }
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        // The trap and the guest's own frames only: `{error:?}` would add
        // the host's Rust backtrace whenever RUST_BACKTRACE is set.
        let message = match error.downcast_ref::<wasmtime::WasmBacktrace>() {
            Some(frames) => format!("{trap}\n{frames}"),
            None => trap.to_string(),
        };
        return WireError::new(ErrorKind::Trap, message);
    }
    // Anything else was raised by a host function refusing an ABI violation,
    // or by instantiation (e.g. an initial memory above the limit).
    WireError::new(ErrorKind::Trap, format!("{error:#}"))
}
