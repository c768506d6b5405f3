//! Node configuration: plain data with documented defaults.
//!
//! Every field says its default; [`NodeConfig::default`] is what `prism run`
//! and `prism demo` use unless flags say otherwise.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Configuration of one node (worker), including its runtime limits.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// CPU slots offered to tasks. Default: the number of cores.
    pub cpus: f64,
    /// Memory (bytes) offered to tasks that reserve memory. Default: the
    /// machine's physical memory.
    pub memory: u64,
    /// Custom resources offered, by name (e.g. `{"ssd": 1}`). Default: none.
    pub resources: BTreeMap<String, f64>,
    /// Directory for the module cache and spilled objects. Default: a fresh
    /// temporary directory removed when the node stops.
    pub data_dir: Option<PathBuf>,
    /// Bytes of object values held in memory before the least recently used
    /// ones spill to disk. Default: 30% of physical memory.
    pub object_store_capacity: u64,
    /// First retry delay after a system error; doubles per attempt, capped at
    /// 10 s. Default 100 ms.
    pub retry_backoff: Duration,
    /// Limits and sizing of the wasm runtime.
    pub runtime: RuntimeConfig,
    /// Which GPUs the node offers and what one instance may use of them.
    pub gpu: GpuConfig,
    /// Where the whole log of each job whose driver runs on this node is
    /// written, one `<job id>.log` file of JSON lines per job. Default:
    /// none (a job's log is its in-memory tail only); a head writes to
    /// `<state-dir>/logs`.
    pub job_log_dir: Option<PathBuf>,
    /// Bytes of one job's log file; past it one note says so and later
    /// lines are kept in the in-memory tail only. Default 64 MiB.
    pub job_log_max_bytes: u64,
    /// What the node records for `/metrics`.
    pub metrics: MetricsConfig,
    /// Record every call's transitions for `prism job tasks` and the
    /// timelines (see `docs/observability.md`). Default true.
    pub task_events: bool,
}

/// What a node records for `/metrics` (see `docs/observability.md`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Record the built-in task, actor call and instance series. Default
    /// true (the bench turns it off to measure its cost).
    pub enabled: bool,
    /// Guest metric series one tenant may hold on the node; an update
    /// past it is refused with a typed error. Default 1,000.
    pub guest_series: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            guest_series: crate::metrics::guest::DEFAULT_MAX_SERIES,
        }
    }
}

/// GPUs offered to guests (see `host/src/gpu`).
#[derive(Clone, Debug)]
pub struct GpuConfig {
    /// Offer the machine's GPUs as the `GPU` resource. Default true.
    pub enabled: bool,
    /// Offer only these adapters: each entry is an index in discovery order
    /// (`"0"`) or a case-insensitive substring of the adapter's name
    /// (`"nvidia"`). Default: empty, every adapter.
    pub adapters: Vec<String>,
    /// Bytes of GPU buffers one task or actor instance may hold at once.
    /// Default 512 MiB.
    pub memory_per_instance: u64,
}

impl Default for GpuConfig {
    fn default() -> Self {
        GpuConfig {
            enabled: true,
            adapters: Vec::new(),
            memory_per_instance: 512 << 20,
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        let memory = physical_memory();
        NodeConfig {
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1) as f64,
            memory,
            resources: BTreeMap::new(),
            data_dir: None,
            object_store_capacity: memory / 10 * 3,
            retry_backoff: Duration::from_millis(100),
            runtime: RuntimeConfig::default(),
            gpu: GpuConfig::default(),
            job_log_dir: None,
            job_log_max_bytes: 64 << 20,
            metrics: MetricsConfig::default(),
            task_events: true,
        }
    }
}

/// Limits and sizing of the wasm runtime (one engine per node).
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Largest linear memory one instance may grow to; a task's `memory`
    /// option may only lower it. Default 256 MiB.
    pub max_task_memory: u64,
    /// Largest native stack wasm code may use before a stack-overflow trap.
    /// Default 512 KiB.
    pub max_wasm_stack: usize,
    /// Wall-clock deadline of one task attempt unless its `timeout` option
    /// says otherwise. Default 300 s.
    pub task_timeout: Duration,
    /// Wall-clock deadline of a job's driver. Default 3600 s.
    pub driver_timeout: Duration,
    /// How often the epoch advances; running guests yield to the scheduler
    /// and check deadlines and cancellation at every tick. Default 10 ms.
    pub epoch_tick: Duration,
    /// Instances that can be alive at once (running, blocked, actors, idle
    /// and warm), which sizes the pooling allocator's slots. The scheduler
    /// starts a guest only with a free slot, so work waits for one in its
    /// queue (or goes to another node) without holding a CPU. Default 2000.
    pub instance_slots: u32,
    /// The largest fraction of `instance_slots` one tenant's guests may
    /// hold at once (at least one slot), so that one tenant's blocked task
    /// graph cannot keep every other tenant off the node. Default 0.75.
    pub tenant_instance_share: f64,
    /// Bytes kept per task of each of stdout and stderr; the rest is
    /// dropped with a note in the job's log. Default 1 MiB.
    pub max_output_per_task: usize,
    /// Idle instances kept warm for the next task of the same job and
    /// function (each holds an instance slot and its memory until reused,
    /// evicted or its job ends); 0 gives every task a fresh instance.
    /// Default 32.
    pub warm_instances: u32,
    /// An instance whose linear memory grew past this many bytes is not
    /// kept warm. Default 16 MiB.
    pub warm_instance_max_memory: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_task_memory: 256 << 20,
            max_wasm_stack: 512 << 10,
            task_timeout: Duration::from_secs(300),
            driver_timeout: Duration::from_secs(3600),
            epoch_tick: Duration::from_millis(10),
            instance_slots: 2000,
            tenant_instance_share: 0.75,
            max_output_per_task: 1 << 20,
            warm_instances: 32,
            warm_instance_max_memory: 16 << 20,
        }
    }
}

/// Physical memory in bytes, from `/proc/meminfo`; 8 GiB where unknown.
fn physical_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(8 << 30)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_as_documented() {
        let c = NodeConfig::default();
        assert!(c.cpus >= 1.0);
        assert!(c.memory > 0);
        assert_eq!(c.runtime.max_task_memory, 256 << 20);
        assert_eq!(c.runtime.task_timeout, Duration::from_secs(300));
        assert_eq!(c.retry_backoff, Duration::from_millis(100));
        assert!(c.gpu.enabled);
        assert!(c.gpu.adapters.is_empty());
        assert_eq!(c.gpu.memory_per_instance, 512 << 20);
    }
}
