//! `prism bench`: the hot-path figures, measured on an embedded cluster.
//!
//! A guest driver (`guest-examples/bench`) does the submitting and times
//! itself, as a Ray driver would; the harness adds what only the host can
//! see: resident memory per actor, process start to first result, and the
//! runtime's own instantiate + call time. Figures are printed as a table,
//! or with `--json` as one JSON object.

use crate::config::NodeConfig;
use crate::gpu::GpuContext;
use crate::head::EmbeddedCluster;
use crate::runtime::{CancelToken, GuestHost, Invocation, NoServices, Runtime};
use crate::task::EntryKind;
use crate::values::{json_args, msgpack_to_json};
use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sizes of the workloads: full, or `--quick` (under a minute).
struct Sizes {
    tasks: u64,
    sequential: u64,
    large_reps: u64,
    models: u64,
    actors: u64,
    queued: u64,
    instantiations: usize,
    /// Floats per saxpy, saxpy repetitions, dispatch round trips.
    gpu: (u64, u64, u64),
}

const FULL: Sizes = Sizes {
    tasks: 10_000,
    sequential: 1_000,
    large_reps: 10,
    models: 1_000,
    actors: 1_000,
    queued: 1_000_000,
    instantiations: 2_000,
    gpu: (1 << 22, 20, 200),
};

const QUICK: Sizes = Sizes {
    tasks: 2_000,
    sequential: 300,
    large_reps: 3,
    models: 200,
    actors: 200,
    queued: 100_000,
    instantiations: 500,
    gpu: (1 << 20, 5, 50),
};

/// A figure's target on a 2-core machine, and which way is better.
struct Target {
    figure: &'static str,
    target: f64,
    higher_is_better: bool,
}

const TARGETS: &[Target] = &[
    Target {
        figure: "tasks_async_per_s",
        target: 100_000.0,
        higher_is_better: true,
    },
    Target {
        figure: "tasks_sync_per_s",
        target: 20_000.0,
        higher_is_better: true,
    },
    Target {
        figure: "actor_calls_async_per_s",
        target: 100_000.0,
        higher_is_better: true,
    },
    Target {
        figure: "actor_calls_sync_per_s",
        target: 20_000.0,
        higher_is_better: true,
    },
    Target {
        figure: "put_get_100MB_GBps",
        target: 3.0,
        higher_is_better: true,
    },
    Target {
        figure: "rss_per_actor_KB",
        target: 512.0,
        higher_is_better: false,
    },
    Target {
        figure: "cold_start_ms",
        target: 100.0,
        higher_is_better: false,
    },
    Target {
        figure: "queued_1M_tasks_s",
        target: 20.0,
        higher_is_better: false,
    },
    Target {
        figure: "instantiate_us",
        target: 20.0,
        higher_is_better: false,
    },
    Target {
        figure: "workflow_step_overhead_ms",
        target: 1.0,
        higher_is_better: false,
    },
    Target {
        figure: "workflow_fanout_10k_s",
        target: 10.0,
        higher_is_better: false,
    },
    Target {
        figure: "serve_fn_c1_p50_us",
        target: 300.0,
        higher_is_better: false,
    },
    Target {
        figure: "serve_fn_c64_per_s",
        target: 20_000.0,
        higher_is_better: true,
    },
    Target {
        figure: "serve_fn_c64_p99_ms",
        target: 10.0,
        higher_is_better: false,
    },
    Target {
        figure: "serve_class_c1_p50_us",
        target: 300.0,
        higher_is_better: false,
    },
    Target {
        figure: "serve_class_c64_per_s",
        target: 20_000.0,
        higher_is_better: true,
    },
    Target {
        figure: "serve_class_c64_p99_ms",
        target: 10.0,
        higher_is_better: false,
    },
    Target {
        figure: "serve_cold_start_fn_ms",
        target: 50.0,
        higher_is_better: false,
    },
    Target {
        figure: "serve_cold_start_class_ms",
        target: 50.0,
        higher_is_better: false,
    },
];

/// Which figures a bench run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Only {
    /// Every workload.
    Everything,
    /// The serving figures on the embedded cluster.
    Serve,
    /// The serving figures on a head and a worker process.
    ServeNodes,
    /// The durable workflow figures.
    Workflows,
}

/// Runs every workload (or those `only` names); prints the table or
/// JSON. Returns 0.
pub(super) fn bench(
    mut config: NodeConfig,
    quick: bool,
    as_json: bool,
    only: Only,
) -> anyhow::Result<i32> {
    let serve_only = only == Only::Serve;
    let sizes = if quick { QUICK } else { FULL };
    // 100 MB values are encoded and decoded inside the guest: give drivers
    // room for a few copies, and the pool room for the idle actors.
    config.runtime.max_task_memory = config.runtime.max_task_memory.max(1 << 30);
    config.runtime.instance_slots = config
        .runtime
        .instance_slots
        .max(sizes.actors as u32 + 1_000);
    // The benchmark is the node's only tenant: it may fill it.
    config.runtime.tenant_instance_share = 1.0;
    let cpus = config.cpus;
    let mut figures = Map::new();
    let started = Instant::now();
    super::tokio_runtime()?.block_on(async {
        if only == Only::ServeNodes {
            return super::bench_nodes::figures(quick, &mut figures).await;
        }
        let cluster = EmbeddedCluster::start(config.clone())?;
        if serve_only {
            return super::bench_serve::figures(&cluster, quick, &mut figures).await;
        }
        if only == Only::Workflows {
            return super::bench_workflows::figures(&cluster, quick, &mut figures).await;
        }
        let module = prism_guests::BENCH;
        // Compile once, outside any timing.
        driver(&cluster, module, "ready", "[]").await?;

        let rate = |t: &Value| {
            t["ops"].as_f64().unwrap_or(0.0) / t["seconds"].as_f64().unwrap_or(f64::NAN)
        };
        let t = driver(
            &cluster,
            module,
            "tasks_async",
            &format!("[{}]", sizes.tasks),
        )
        .await?;
        figures.insert("tasks_async_per_s".into(), json!(rate(&t).round()));
        let t = driver(
            &cluster,
            module,
            "tasks_sync",
            &format!("[{}]", sizes.sequential),
        )
        .await?;
        figures.insert("tasks_sync_per_s".into(), json!(rate(&t).round()));
        let t = driver(
            &cluster,
            module,
            "actor_calls_async",
            &format!("[{}]", sizes.tasks),
        )
        .await?;
        figures.insert("actor_calls_async_per_s".into(), json!(rate(&t).round()));
        let t = driver(
            &cluster,
            module,
            "actor_calls_sync",
            &format!("[{}]", sizes.sequential),
        )
        .await?;
        figures.insert("actor_calls_sync_per_s".into(), json!(rate(&t).round()));
        let t = driver(
            &cluster,
            module,
            "put_get_small",
            &format!("[{}]", sizes.tasks),
        )
        .await?;
        figures.insert("put_get_small_per_s".into(), json!(rate(&t).round()));
        let t = driver(
            &cluster,
            module,
            "put_get_large",
            &format!("[100, {}]", sizes.large_reps),
        )
        .await?;
        figures.insert("put_get_100MB_GBps".into(), json!(round2(rate(&t) / 1e9)));
        let t = driver(&cluster, module, "tree_reduce", "[16384, 64]").await?;
        figures.insert(
            "tree_reduce_16k_s".into(),
            json!(round3(t["seconds"].as_f64().unwrap_or(f64::NAN))),
        );
        let t = driver(
            &cluster,
            module,
            "small_models",
            &format!("[{}]", sizes.models),
        )
        .await?;
        figures.insert("small_models_per_s".into(), json!(rate(&t).round()));

        // GPU figures need a GPU; without one they are null, not zero.
        if cluster.node().gpu_adapters().is_empty() {
            figures.insert("gpu_saxpy_GBps".into(), Value::Null);
            figures.insert("gpu_dispatch_latency_us".into(), Value::Null);
        } else {
            let (n, reps, rounds) = sizes.gpu;
            let t = driver(&cluster, module, "gpu", &format!("[{n}, {reps}, {rounds}]")).await?;
            let gbps = t["saxpy_bytes"].as_f64().unwrap_or(0.0)
                / t["saxpy_seconds"].as_f64().unwrap_or(f64::NAN)
                / 1e9;
            figures.insert("gpu_saxpy_GBps".into(), json!(round2(gbps)));
            figures.insert(
                "gpu_dispatch_latency_us".into(),
                json!(
                    t["dispatch_latency_us"]
                        .as_f64()
                        .unwrap_or(f64::NAN)
                        .round()
                ),
            );
            figures.insert("gpu_device".into(), t["device"].clone());
        }

        let before = resident_kb()?;
        let t = driver(
            &cluster,
            module,
            "create_actors",
            &format!("[{}]", sizes.actors),
        )
        .await?;
        let after = resident_kb()?;
        figures.insert("actor_create_per_s".into(), json!(rate(&t).round()));
        figures.insert(
            "rss_per_actor_KB".into(),
            json!(((after.saturating_sub(before)) as f64 / sizes.actors as f64).round()),
        );
        driver(&cluster, module, "kill_actors", "[]").await?;

        let t = driver(&cluster, module, "queued", &format!("[{}]", sizes.queued)).await?;
        let key = if quick {
            "queued_100k_tasks_s"
        } else {
            "queued_1M_tasks_s"
        };
        figures.insert(
            key.into(),
            json!(round3(t["seconds"].as_f64().unwrap_or(f64::NAN))),
        );

        figures.insert(
            "instantiate_us".into(),
            json!(round2(
                instantiate_median_us(&config, sizes.instantiations).await?
            )),
        );
        super::bench_serve::figures(&cluster, quick, &mut figures).await?;
        super::bench_workflows::figures(&cluster, quick, &mut figures).await?;
        anyhow::Ok(())
    })?;
    if only == Only::Everything {
        figures.insert("cold_start_ms".into(), json!(round2(cold_start_ms()?)));
    }
    report(figures, cpus, quick, as_json, started.elapsed())?;
    Ok(0)
}

/// Runs one bench driver; returns its JSON result.
async fn driver(
    cluster: &EmbeddedCluster,
    module: &[u8],
    entry: &str,
    args: &str,
) -> anyhow::Result<Value> {
    let outcome = cluster.run(module, entry, json_args(args)?).await?;
    match outcome.result {
        Ok(bytes) => Ok(msgpack_to_json(&bytes)?),
        Err(e) => bail!("bench workload {entry} failed ({}): {}", e.kind, e.message),
    }
}

pub(super) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Resident set size of this process in KiB, from `/proc/self/status`.
fn resident_kb() -> anyhow::Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .context("no VmRSS in /proc/self/status")
}

/// Process start to first result: `prism run` of a trivial driver whose
/// module is already compiled in the data directory (median of 5).
fn cold_start_ms() -> anyhow::Result<f64> {
    let exe = std::env::current_exe().context("locating the prism binary")?;
    let dir = tempfile::tempdir()?;
    let module = dir.path().join("bench.wasm");
    std::fs::write(&module, prism_guests::BENCH)?;
    let run = || -> anyhow::Result<f64> {
        let start = Instant::now();
        let status = std::process::Command::new(&exe)
            .arg("run")
            .arg(&module)
            .args(["--entry", "ready", "--quiet", "--data-dir"])
            .arg(dir.path().join("data"))
            .stdout(std::process::Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "the cold-start probe failed");
        Ok(start.elapsed().as_secs_f64() * 1e3)
    };
    run()?; // compiles and caches the module
    let mut times = (0..5)
        .map(|_| run())
        .collect::<anyhow::Result<Vec<f64>>>()?;
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Median time of instantiating the bench module and calling its empty task
/// directly on a runtime, without scheduling.
async fn instantiate_median_us(config: &NodeConfig, n: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let runtime = Runtime::new(&config.runtime, dir.path().to_path_buf())?;
    let module = runtime.modules().load(prism_guests::BENCH)?;
    let host: Arc<dyn GuestHost> = Arc::new(NoServices);
    let input = Bytes::from_static(&[0x90]); // an empty argument array
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let call = Invocation {
            entry: EntryKind::Task,
            function: "noop".into(),
            input: input.clone(),
            attempt: 0,
            timeout: Duration::from_secs(10),
            memory_limit: config.runtime.max_task_memory,
            cancel: Arc::new(CancelToken::default()),
            env: None,
            sandbox: Default::default(),
            // The figure is a fresh instance's cost.
            reuse: None,
            metrics: None,
        };
        let start = Instant::now();
        let outcome = runtime
            .invoke(module.clone(), call, host.clone(), GpuContext::none())
            .await;
        samples.push(start.elapsed().as_secs_f64() * 1e6);
        if let Err(e) = outcome.result {
            bail!("the empty task failed: {e}");
        }
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

fn report(
    mut figures: Map<String, Value>,
    cpus: f64,
    quick: bool,
    as_json: bool,
    took: Duration,
) -> anyhow::Result<()> {
    if as_json {
        figures.insert("cpus".into(), json!(cpus));
        figures.insert("quick".into(), json!(quick));
        return outln!("{}", Value::Object(figures));
    }
    outln!(
        "Prism bench ({}; {cpus} CPUs)\n",
        if quick { "quick" } else { "full" }
    )?;
    outln!("{:<26} {:>14} {:>12}  target", "figure", "value", "")?;
    for (name, value) in &figures {
        let target = TARGETS.iter().find(|t| t.figure == name);
        let verdict = match (target, value.as_f64()) {
            (Some(t), Some(v)) => {
                let met = if t.higher_is_better {
                    v >= t.target
                } else {
                    v <= t.target
                };
                format!(
                    "{} {}{}",
                    if met { "met" } else { "MISSED" },
                    if t.higher_is_better { "≥ " } else { "≤ " },
                    t.target
                )
            }
            _ => String::new(),
        };
        outln!("{name:<26} {:>14} {:>12}  {verdict}", value.to_string(), "")?;
    }
    outln!("\ntook {:.1} s", took.as_secs_f64())
}
