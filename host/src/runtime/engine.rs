//! The node's one [`Engine`] and the thread that advances its epoch.
//!
//! Engine settings and why:
//! - async support: a guest blocked in `get` suspends its fiber, not a thread;
//! - epoch interruption: every tick a running guest yields to the tokio
//!   scheduler and checks its deadline and cancellation, so one tenant's
//!   loop cannot starve a node (cheaper than fuel metering);
//! - pooling allocator: instance, memory, table and stack slots are
//!   preallocated and reused, which is what makes instantiation take
//!   microseconds; the pool size is `instance_slots`;
//! - copy-on-write memory images: a module's data segments are mapped, not
//!   copied, into each new instance.

use crate::config::RuntimeConfig;
use std::time::Duration;
use wasmtime::{
    Config, Engine, EngineWeak, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
};

/// Instances whose memory is returned to the kernel in one batch (64).
const DECOMMIT_BATCH: usize = 64;

/// Bytes of each stack and table reset in place rather than decommitted
/// (64 KiB).
const KEEP_RESIDENT: usize = 64 << 10;

/// Extra native stack above `max_wasm_stack` for host functions called by
/// guests (1 MiB).
const HOST_STACK_HEADROOM: usize = 1 << 20;

/// Builds the engine for `config`.
pub(super) fn build(config: &RuntimeConfig) -> anyhow::Result<Engine> {
    let slots = config.instance_slots.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(slots)
        .total_memories(slots)
        .total_tables(slots)
        .total_stacks(slots)
        .max_memory_size(config.max_task_memory as usize)
        .max_memories_per_module(1)
        .max_tables_per_module(1)
        // Returning memory to the kernel costs a TLB shootdown on every
        // core; batching decommits amortizes it across instances.
        .decommit_batch_size(DECOMMIT_BATCH)
        // Reset the first pages of stacks and tables with memset instead of
        // madvise: tasks touch only a little of each, so this is cheaper
        // than faulting them in again.
        .async_stack_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT);

    let mut c = Config::new();
    c.async_support(true)
        .epoch_interruption(true)
        .parallel_compilation(true)
        .memory_init_cow(true)
        .cranelift_opt_level(OptLevel::Speed)
        // A guest's backtrace gives file:line where its module carries
        // DWARF line tables (read once, when the module is compiled).
        .wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Enable)
        .max_wasm_stack(config.max_wasm_stack)
        .async_stack_size(config.max_wasm_stack + HOST_STACK_HEADROOM)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&c)
}

/// Advances an engine's epoch every tick on a dedicated thread (not a tokio
/// task: it must tick even when every tokio worker is running guest code).
/// Stops when dropped or when the engine is gone.
pub(super) struct EpochTicker {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl EpochTicker {
    pub(super) fn start(engine: &Engine, tick: Duration) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let weak: EngineWeak = engine.weak();
        let flag = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("prism-epoch".into())
            .spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start the epoch thread: deadlines will not be enforced");
        }
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
