//! Warm instances: an instance that finished a task cleanly may run the
//! next task of the same function, job and tenant instead of being thrown
//! away, the way a Ray worker process runs many tasks of its job.
//!
//! Why: a fresh instance costs little CPU but touches fresh pages every
//! time (copy-on-write faults on the module's data, then a decommit when
//! it ends), and on a multi-core host each of those sends a TLB shootdown
//! to the other cores. For small tasks that is most of the cost of a task.
//!
//! What is shared, and with whom: only tasks of one job (so one tenant,
//! one namespace, one grant and one module) and one function, calling one
//! after another, ever share an instance; a guest's globals and heap carry
//! over between them exactly as a Ray worker's module globals do. Nothing
//! ever crosses jobs or tenants. An instance is discarded, never reused,
//! after any failure other than a returned application error (a trap, a
//! panic, a refused memory growth, a deadline, a cancel), when its linear
//! memory grew past [`WarmPool`]'s cap, after the task's `max_calls` calls,
//! and when its job ends. Tasks that use GPUs always get a fresh instance.

use super::{ActorCreateError, BoxFuture, GuestHost, Instance, PutError};
use crate::ids::{ActorId, ModuleHash, ObjectId};
use crate::objects::named::{NamedError, Tier};
use crate::objects::{Lookup, Watch};
use crate::sync::MutexExt;
use crate::task::Arg;
use bytes::Bytes;
use prism_abi::{ErrorKind, StoreStats, WireError};
use std::any::Any;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Who may share warm instances: calls with equal `Reuse` (and the same
/// module and function) may run one after another in one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reuse {
    /// The job the call belongs to.
    pub job: u64,
    /// The job's tenant (part of the key, so that even a job id reused
    /// by another cluster can never reach another tenant's instance).
    pub tenant: Arc<str>,
    /// Calls one instance may run before it is discarded; 1 gives every
    /// call a fresh instance, 0 means no limit.
    pub max_calls: u32,
}

/// What identifies interchangeable idle instances.
#[derive(Clone, Debug, PartialEq, Eq)]
struct WarmKey {
    job: u64,
    tenant: Arc<str>,
    module: ModuleHash,
    function: String,
}

/// An idle instance, type-erased: the node that owns the pool would
/// otherwise make every auto-trait check of itself walk through the wgpu
/// types an instance holds, past the compiler's recursion limit.
type Idle = Box<dyn Any + Send>;

/// Jobs remembered as ended, so that a task finishing after its job's
/// end is not parked for it (4096).
const ENDED_REMEMBERED: usize = 4096;

/// Idle instances, most recently parked last. Bounded by count; each
/// keeps its instance slot and its resident memory until reused or
/// evicted.
pub(super) struct WarmPool {
    capacity: usize,
    max_memory: usize,
    state: Mutex<PoolState>,
    /// Calls waiting for an instance slot.
    waiting: AtomicUsize,
}

#[derive(Default)]
struct PoolState {
    idle: VecDeque<(WarmKey, Idle)>,
    ended: HashSet<u64>,
    ended_order: VecDeque<u64>,
}

impl WarmPool {
    /// A pool of at most `capacity` idle instances, none of whose linear
    /// memory exceeds `max_memory` bytes.
    pub(super) fn new(capacity: usize, max_memory: usize) -> Self {
        WarmPool {
            capacity,
            max_memory,
            state: Mutex::new(PoolState::default()),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Whether the pool keeps anything at all.
    pub(super) fn enabled(&self) -> bool {
        self.capacity > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.locked()
    }

    /// Takes an idle instance for a call of `function` of `module` under
    /// `reuse` whose memory fits `memory_limit`, if there is one.
    pub(super) fn take(
        &self,
        reuse: &Reuse,
        module: ModuleHash,
        function: &str,
        memory_limit: usize,
    ) -> Option<Instance> {
        if reuse.max_calls == 1 {
            return None;
        }
        let mut state = self.lock();
        let at = state.idle.iter().rposition(|(k, _)| {
            k.job == reuse.job
                && k.module == module
                && k.function == function
                && k.tenant == reuse.tenant
        })?;
        let (_, instance) = state.idle.remove(at)?;
        drop(state);
        let instance = instance.downcast::<Instance>().ok()?;
        let fits = instance.memory_size() <= memory_limit
            && (reuse.max_calls == 0 || instance.calls() < reuse.max_calls);
        // An instance that does not fit is dropped outside the lock (its
        // memory is decommitted on drop).
        fits.then_some(*instance)
    }

    /// Keeps `instance` for the next call like the one it just ran, unless
    /// it may not be reused. `detached` replaces the finished call's host,
    /// so an idle instance holds nothing of it.
    pub(super) fn park(
        &self,
        reuse: &Reuse,
        function: String,
        mut instance: Instance,
        detached: &Arc<dyn GuestHost>,
    ) {
        if !self.enabled()
            || instance.is_dead()
            || (reuse.max_calls != 0 && instance.calls() >= reuse.max_calls)
            || instance.memory_size() > self.max_memory
        {
            return;
        }
        instance.detach(detached.clone());
        let key = WarmKey {
            job: reuse.job,
            tenant: reuse.tenant.clone(),
            module: instance.module().hash(),
            function,
        };
        // Whatever is not kept is dropped outside the lock. A call waiting
        // for a slot gets this one's: it counted itself before it looked
        // for an idle instance to evict, under this lock.
        let _dropped = {
            let mut state = self.lock();
            if state.ended.contains(&key.job) || self.waiting.load(Ordering::SeqCst) > 0 {
                Some((key, Box::new(instance) as Idle))
            } else {
                state.idle.push_back((key, Box::new(instance) as Idle));
                if state.idle.len() > self.capacity {
                    state.idle.pop_front()
                } else {
                    None
                }
            }
        };
    }

    /// Counts a call waiting for an instance slot until the guard drops.
    pub(super) fn waiting(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(&self.waiting)
    }

    /// Drops the least recently parked idle instance; whether there was one.
    pub(super) fn evict_one(&self) -> bool {
        let evicted = self.lock().idle.pop_front();
        evicted.is_some()
    }

    /// Drops every idle instance of `job` and parks none for it from now
    /// on (its work here ended); how many were dropped.
    pub(super) fn forget_job(&self, job: u64) -> usize {
        let gone: VecDeque<_> = {
            let mut state = self.lock();
            if state.ended.insert(job) {
                state.ended_order.push_back(job);
                if state.ended_order.len() > ENDED_REMEMBERED
                    && let Some(old) = state.ended_order.pop_front()
                {
                    state.ended.remove(&old);
                }
            }
            let (keep, gone) = std::mem::take(&mut state.idle)
                .into_iter()
                .partition(|(k, _)| k.job != job);
            state.idle = keep;
            gone
        };
        gone.len()
    }

    /// Idle instances held.
    pub(super) fn len(&self) -> usize {
        self.lock().idle.len()
    }
}

/// A call waiting for an instance slot (see [`WarmPool::waiting`]).
pub(super) struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A host that serves nothing and refuses everything: the host of an idle
/// warm instance (which runs no code until the next call brings its own
/// host), and of probes that call no services.
pub struct NoServices;

const DETACHED: &str = "no services are available to this instance";

impl GuestHost for NoServices {
    fn submit(&self, _: &str, _: Vec<Arg>, _: prism_abi::TaskOptions) -> ObjectId {
        ObjectId::random()
    }
    fn serve_call(&self, _: &str, _: &str, _: crate::cluster::DeploymentCall) -> ObjectId {
        ObjectId::random()
    }
    fn put(&self, _: Bytes) -> Result<ObjectId, PutError> {
        Err(PutError::Denied)
    }
    fn lookup(&self, _: ObjectId) -> Lookup {
        Lookup::NotFound
    }
    fn watch(&self, _: ObjectId) -> Watch {
        Watch::NotFound
    }
    fn cancel(&self, _: ObjectId) {}
    fn free(&self, _: Vec<ObjectId>) -> BoxFuture<'static, usize> {
        Box::pin(async { 0 })
    }
    fn block(&self) {}
    fn unblock(&self) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
    fn log(&self, _: i32, _: &str) {}
    fn store_stats(&self) -> StoreStats {
        StoreStats::default()
    }
    fn actor_create(
        &self,
        _: &str,
        _: Vec<Arg>,
        _: prism_abi::ActorOptions,
    ) -> BoxFuture<'static, Result<ActorId, ActorCreateError>> {
        Box::pin(async { Err(ActorCreateError::Denied(DETACHED.into())) })
    }
    fn actor_call(&self, _: ActorId, _: &str, _: Vec<Arg>) -> ObjectId {
        ObjectId::random()
    }
    fn actor_lookup(&self, _: &str, _: &str, _: &str) -> BoxFuture<'static, Option<ActorId>> {
        Box::pin(async { None })
    }
    fn actor_kill(&self, _: ActorId) {}
    fn pg_create(
        &self,
        _: prism_abi::PlacementGroupSpec,
    ) -> BoxFuture<'static, Result<prism_abi::PlacementGroupInfo, WireError>> {
        Box::pin(async { Err(WireError::new(ErrorKind::System, DETACHED)) })
    }
    fn pg_remove(&self, _: &str) {}
    fn named_put(&self, _: &str, _: Bytes, _: Tier) -> BoxFuture<'static, Result<(), NamedError>> {
        Box::pin(async { Err(NamedError::NoCall(DETACHED)) })
    }
    fn named_get(&self, _: &str) -> BoxFuture<'static, Result<Option<Bytes>, NamedError>> {
        Box::pin(async { Err(NamedError::NoCall(DETACHED)) })
    }
    fn named_delete(&self, _: &str) -> BoxFuture<'static, Result<bool, NamedError>> {
        Box::pin(async { Err(NamedError::NoCall(DETACHED)) })
    }
    fn named_list(&self, _: &str) -> BoxFuture<'static, Result<Vec<String>, NamedError>> {
        Box::pin(async { Err(NamedError::NoCall(DETACHED)) })
    }
    fn permissions(&self) -> crate::security::GuestPermissions {
        crate::security::GuestPermissions::NONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RuntimeConfig;
    use crate::gpu::GpuContext;
    use crate::runtime::{CancelToken, Invocation, InvocationOutcome, Runtime};
    use crate::task::EntryKind;
    use std::time::Duration;

    fn runtime(slots: u32, warm: u32, max_memory: u64) -> (Runtime, tempfile::TempDir) {
        let config = RuntimeConfig {
            instance_slots: slots,
            warm_instances: warm,
            warm_instance_max_memory: max_memory,
            ..RuntimeConfig::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let runtime = Runtime::new(&config, dir.path().to_path_buf()).unwrap();
        (runtime, dir)
    }

    fn reuse(job: u64, tenant: &str, max_calls: u32) -> Reuse {
        Reuse {
            job,
            tenant: tenant.into(),
            max_calls,
        }
    }

    /// Calls testkit's `count_calls(how)`: the number of calls its
    /// instance has seen, or the error's kind.
    async fn count(runtime: &Runtime, how: u8, reuse: Option<Reuse>) -> Result<u8, String> {
        call(runtime, "count_calls", vec![0x91, how], reuse).await
    }

    /// Calls testkit's task `function` with MessagePack `input`; its
    /// one-byte value, or the error's kind.
    async fn call(
        runtime: &Runtime,
        function: &str,
        input: Vec<u8>,
        reuse: Option<Reuse>,
    ) -> Result<u8, String> {
        let module = runtime.modules().load(prism_guests::TESTKIT).unwrap();
        let call = Invocation {
            entry: EntryKind::Task,
            function: function.into(),
            input: Bytes::from(input),
            attempt: 0,
            timeout: Duration::from_secs(10),
            memory_limit: 256 << 20,
            cancel: Arc::new(CancelToken::default()),
            env: None,
            sandbox: Default::default(),
            reuse,
            metrics: None,
        };
        let outcome: InvocationOutcome = runtime
            .invoke(module, call, Arc::new(NoServices), GpuContext::none())
            .await;
        match outcome.result {
            Ok(bytes) if bytes.len() == 1 => Ok(bytes[0]),
            Ok(bytes) => Err(format!("unexpected value {bytes:?}")),
            Err(e) => Err(e.kind.to_string()),
        }
    }

    #[tokio::test]
    async fn calls_of_one_job_share_an_instance_and_nobody_else_does() {
        let (rt, _dir) = runtime(8, 8, 16 << 20);
        let a = || Some(reuse(1, "alpha", 0));
        assert_eq!(count(&rt, 0, a()).await, Ok(1));
        assert_eq!(count(&rt, 0, a()).await, Ok(2));
        // Another job, the same job id under another tenant, and no reuse
        // at all each get a fresh instance.
        assert_eq!(count(&rt, 0, Some(reuse(2, "alpha", 0))).await, Ok(1));
        assert_eq!(count(&rt, 0, Some(reuse(1, "beta", 0))).await, Ok(1));
        assert_eq!(count(&rt, 0, None).await, Ok(1));
        assert_eq!(count(&rt, 0, a()).await, Ok(3));
        assert_eq!(rt.warm_instances(), 3);
        // The job's end drops its instances, and a task of it finishing
        // later is not kept.
        assert_eq!(rt.forget_job(1), 2);
        assert_eq!(count(&rt, 0, a()).await, Ok(1));
        assert_eq!(count(&rt, 0, a()).await, Ok(1));
        assert_eq!(rt.warm_instances(), 1, "only job 2's");
    }

    #[tokio::test]
    async fn failures_max_calls_and_memory_growth_end_reuse() {
        let (rt, _dir) = runtime(8, 8, 16 << 20);
        let a = |max_calls| Some(reuse(7, "alpha", max_calls));
        assert_eq!(count(&rt, 0, a(0)).await, Ok(1));
        // An application error keeps the instance; a trap does not.
        assert_eq!(count(&rt, 1, a(0)).await, Err("application".into()));
        assert_eq!(count(&rt, 0, a(0)).await, Ok(3));
        assert_eq!(count(&rt, 2, a(0)).await, Err("trap".into()));
        assert_eq!(count(&rt, 0, a(0)).await, Ok(1));
        // max_calls 1: a fresh instance, not kept; the warm one waits.
        assert_eq!(count(&rt, 0, a(1)).await, Ok(1));
        assert_eq!(count(&rt, 0, a(0)).await, Ok(2));
        // max_calls 3: the third call is that instance's last.
        assert_eq!(count(&rt, 0, a(3)).await, Ok(3));
        assert_eq!(count(&rt, 0, a(0)).await, Ok(1));
        // An instance that grew past the cap is not kept.
        assert_eq!(count(&rt, 3, a(0)).await, Ok(2));
        assert_eq!(count(&rt, 0, a(0)).await, Ok(1));
    }

    #[tokio::test]
    async fn a_new_instance_never_waits_behind_an_idle_one() {
        // One slot: the idle instance holds it until a call needs it.
        let (rt, _dir) = runtime(1, 4, 16 << 20);
        assert_eq!(count(&rt, 0, Some(reuse(1, "alpha", 0))).await, Ok(1));
        assert_eq!(rt.warm_instances(), 1);
        let other = count(&rt, 0, Some(reuse(2, "alpha", 0)));
        let answered = tokio::time::timeout(Duration::from_secs(10), other).await;
        assert_eq!(answered.ok(), Some(Ok(1)));
        // The new one is idle now; the evicted one is gone.
        assert_eq!(rt.warm_instances(), 1);
        assert_eq!(count(&rt, 0, Some(reuse(2, "alpha", 0))).await, Ok(2));
    }

    #[tokio::test]
    async fn a_call_waiting_for_a_slot_gets_the_slot_of_the_next_call_to_end() {
        // One slot, held by a running call when another starts waiting: the
        // running one must not be parked with the slot when it ends.
        let (rt, _dir) = runtime(1, 4, 16 << 20);
        // sleep_then(200, 7)
        let slow = call(
            &rt,
            "sleep_then",
            vec![0x92, 0xcc, 200, 7],
            Some(reuse(1, "alpha", 0)),
        );
        let waiting = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            count(&rt, 0, Some(reuse(2, "alpha", 0))).await
        };
        let both = async { tokio::join!(slow, waiting) };
        let answered = tokio::time::timeout(Duration::from_secs(10), both).await;
        assert_eq!(
            answered.ok(),
            Some((Ok(7), Ok(1))),
            "the waiting call got stuck"
        );
    }

    #[tokio::test]
    async fn the_pool_keeps_the_most_recent_instances_up_to_its_capacity() {
        let (rt, _dir) = runtime(8, 2, 16 << 20);
        for job in 1..=3 {
            assert_eq!(count(&rt, 0, Some(reuse(job, "alpha", 0))).await, Ok(1));
        }
        assert_eq!(rt.warm_instances(), 2);
        // Job 1's was the oldest and was dropped.
        assert_eq!(count(&rt, 0, Some(reuse(1, "alpha", 0))).await, Ok(1));
        assert_eq!(count(&rt, 0, Some(reuse(3, "alpha", 0))).await, Ok(2));
        // Disabled: never kept.
        let (off, _dir) = runtime(8, 0, 16 << 20);
        assert_eq!(count(&off, 0, Some(reuse(1, "alpha", 0))).await, Ok(1));
        assert_eq!(count(&off, 0, Some(reuse(1, "alpha", 0))).await, Ok(1));
        assert_eq!(off.warm_instances(), 0);
    }
}
