//! The `prism` command line: a thin layer over the library.
//!
//! [`main`] parses arguments, calls one entry function per command, and
//! prints any error once, at the edge, with a clean exit code:
//! 0 success, 1 the job (or a demo check) failed, 2 bad usage or setup.

mod admin;
mod bench;
mod demo;
mod service;

use crate::cluster::{EmbeddedCluster, JobOutcome};
use crate::config::NodeConfig;
use crate::telemetry::{self, LogFormat};
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Prism: Ray's programming model on WebAssembly.
#[derive(Parser, Debug)]
#[command(name = "prism", version, about)]
struct Cli {
    /// Process log format (the log level comes from PRISM_LOG, default `warn`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a module's driver on an embedded single-process cluster and print
    /// its result as JSON.
    Run(RunArgs),
    /// List the drivers and tasks a module exports.
    Inspect(InspectArgs),
    /// Run the bundled examples on an embedded cluster, with results and times.
    Demo(DemoArgs),
    /// Measure the hot paths (tasks, actors, objects, start-up, GPU) on an
    /// embedded cluster.
    Bench(BenchArgs),
    /// Show what a node started with these options offers: CPUs, memory,
    /// custom resources and GPUs (name, backend, limits); with --address,
    /// the nodes of a running cluster.
    Status(StatusArgs),
    /// Create a cluster's state directory: CA, head certificate, token key
    /// and a first admin token.
    Init(service::InitArgs),
    /// Start the head: the API over TLS, on an embedded node.
    Start(service::StartArgs),
    /// Issue and revoke bearer tokens.
    Token(admin::TokenArgs),
    /// Manage tenants and their quotas (cluster-admin).
    Tenant(admin::TenantArgs),
    /// Manage a tenant's namespaces and their sandbox capabilities.
    Namespace(admin::NamespaceArgs),
    /// Manage a tenant's Cedar policies.
    Policy(admin::PolicyArgs),
    /// Submit and follow jobs on a running cluster.
    Job(service::JobArgs),
    /// Manage the cluster's nodes.
    Node(service::NodeCommandArgs),
    /// Call named actors on a running cluster.
    Actor(service::ActorArgs),
}

/// Options of the embedded node.
#[derive(Args, Debug, Clone)]
struct NodeArgs {
    /// CPU slots (default: the number of cores). 0 makes a node that runs
    /// only drivers (a head that places every task on workers).
    #[arg(long)]
    cpus: Option<f64>,
    /// Custom resources as a JSON object, e.g. '{"ssd": 1}' (default: none).
    #[arg(long)]
    resources: Option<String>,
    /// Data directory for the module cache and spilled objects (default: a
    /// temporary directory, removed on exit).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Object store in-memory capacity in bytes (default: 30% of memory).
    #[arg(long)]
    object_store_bytes: Option<u64>,
    /// Per-task linear memory limit in bytes (default: 268435456, 256 MiB).
    #[arg(long)]
    max_task_memory: Option<u64>,
    /// Default per-attempt task timeout in milliseconds (default: 300000).
    #[arg(long)]
    task_timeout_ms: Option<u64>,
    /// Idle instances kept warm for the next task of the same job and
    /// function; 0 gives every task a fresh instance (default: 32).
    #[arg(long)]
    warm_instances: Option<u32>,
    /// Offer no GPUs, even if the machine has some (default: offer every
    /// Vulkan adapter found).
    #[arg(long)]
    no_gpus: bool,
    /// Offer only these GPUs: comma-separated adapter indexes or name
    /// substrings, e.g. `0` or `nvidia` (default: all).
    #[arg(long, value_delimiter = ',')]
    gpu_adapters: Vec<String>,
    /// Bytes of GPU buffers one task or actor may hold at once (default:
    /// 536870912, 512 MiB).
    #[arg(long)]
    gpu_memory_per_instance: Option<u64>,
}

impl NodeArgs {
    fn config(&self) -> anyhow::Result<NodeConfig> {
        let mut config = NodeConfig::default();
        if let Some(cpus) = self.cpus {
            anyhow::ensure!(
                cpus.is_finite() && cpus >= 0.0,
                "--cpus must be zero or more, got {cpus}"
            );
            config.cpus = cpus;
        }
        if let Some(json) = &self.resources {
            config.resources = serde_json::from_str::<BTreeMap<String, f64>>(json)
                .context("--resources must be a JSON object of names to amounts")?;
        }
        config.data_dir = self.data_dir.clone();
        if let Some(bytes) = self.object_store_bytes {
            config.object_store_capacity = bytes;
        }
        if let Some(bytes) = self.max_task_memory {
            config.runtime.max_task_memory = bytes;
        }
        if let Some(ms) = self.task_timeout_ms {
            config.runtime.task_timeout = Duration::from_millis(ms);
        }
        if let Some(n) = self.warm_instances {
            config.runtime.warm_instances = n;
        }
        config.gpu.enabled = !self.no_gpus;
        config.gpu.adapters = self.gpu_adapters.clone();
        if let Some(bytes) = self.gpu_memory_per_instance {
            config.gpu.memory_per_instance = bytes;
        }
        Ok(config)
    }
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The module (.wasm).
    module: PathBuf,
    /// The driver (or task) to call.
    #[arg(long, default_value = "main")]
    entry: String,
    /// Arguments as a JSON array (default: none).
    #[arg(long, default_value = "[]")]
    args: String,
    /// Namespace for the job's named actors and named objects.
    #[arg(long, default_value = crate::cluster::DEFAULT_NAMESPACE)]
    namespace: String,
    /// Do not print the job's log to stderr.
    #[arg(long)]
    quiet: bool,
    /// Print node statistics (resources, tasks, object store) to stderr afterwards.
    #[arg(long)]
    stats: bool,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Args, Debug)]
struct InspectArgs {
    /// The module (.wasm).
    module: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// Smaller workloads (well under a minute).
    #[arg(long)]
    quick: bool,
    /// Print one JSON object of figures instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Args, Debug)]
struct StatusArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    client: service::ClientArgs,
}

#[derive(Args, Debug)]
struct DemoArgs {
    #[command(flatten)]
    node: NodeArgs,
}

/// Runs the CLI with the process's arguments; returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    telemetry::init(cli.log_format);
    match try_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    }
}

fn try_main(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Run(args) => run(args),
        Command::Inspect(args) => inspect(args),
        Command::Demo(args) => demo::demo(args.node.config()?),
        Command::Bench(args) => bench::bench(args.node.config()?, args.quick, args.json),
        Command::Status(args) if args.client.given() => {
            service::remote_status(&args.client, args.json)
        }
        Command::Status(args) => status(args),
        Command::Init(args) => service::init(args),
        Command::Start(args) => service::start(args),
        Command::Token(args) => admin::token(args),
        Command::Tenant(args) => admin::tenant(args),
        Command::Namespace(args) => admin::namespace(args),
        Command::Policy(args) => admin::policy(args),
        Command::Job(args) => service::job(args),
        Command::Node(args) => service::node(args),
        Command::Actor(args) => service::actor(args),
    }
}

/// Builds the multi-threaded tokio runtime guests run on.
fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("prism-worker")
        .build()
        .context("could not start the async runtime")
}

/// `prism run`: one job on an embedded cluster.
fn run(args: RunArgs) -> anyhow::Result<i32> {
    let module = std::fs::read(&args.module)
        .with_context(|| format!("cannot read {}", args.module.display()))?;
    let job_args = crate::values::json_args(&args.args).context("--args")?;
    let config = args.node.config()?;
    tokio_runtime()?.block_on(async {
        let cluster = EmbeddedCluster::start(config)?;
        let outcome = cluster
            .run_in(&args.namespace, &module, &args.entry, job_args)
            .await?;
        if !args.quiet {
            print_logs(&outcome);
        }
        if args.stats {
            let statuses = cluster.head().node_statuses().await;
            eprintln!("{}", serde_json::to_string_pretty(&statuses)?);
        }
        match outcome.result {
            Ok(bytes) => {
                let json = crate::values::msgpack_to_json(&bytes)?;
                println!("{}", serde_json::to_string_pretty(&json)?);
                Ok(0)
            }
            Err(e) => {
                eprintln!(
                    "error: job {} failed ({}): {}",
                    outcome.id, e.kind, e.message
                );
                Ok(1)
            }
        }
    })
}

fn print_logs(outcome: &JobOutcome) {
    for line in &outcome.logs {
        eprintln!("[{} {}] {}", line.function, line.source.as_str(), line.text);
    }
}

/// `prism status`: starts a node with the given options and describes it.
fn status(args: StatusArgs) -> anyhow::Result<i32> {
    let config = args.node.config()?;
    tokio_runtime()?.block_on(async {
        let cluster = EmbeddedCluster::start(config)?;
        let statuses = cluster.head().node_statuses().await;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&statuses)?);
            return Ok(0);
        }
        for (i, node) in statuses.iter().enumerate() {
            println!("node {i} (embedded)");
            println!("  resources  {}", node.total);
            println!("  available  {}", node.available);
            println!(
                "  load       {} running, {} pending",
                node.scheduler.running, node.scheduler.pending
            );
            println!(
                "  objects    {} held, {} of {} bytes in memory",
                node.store.objects, node.store.bytes_in_memory, node.store_capacity
            );
            if node.gpus.is_empty() {
                println!("  gpus       none");
            }
            for g in &node.gpus {
                println!(
                    "  gpu {}      {} ({}, {}, {}); max buffer {} bytes, {} workgroups per dimension",
                    g.index,
                    g.name,
                    g.backend,
                    g.device_type,
                    g.driver,
                    g.max_buffer_size,
                    g.max_workgroups_per_dimension
                );
            }
        }
        Ok(0)
    })
}

/// `prism inspect`: validate a module and list its entry points.
fn inspect(args: InspectArgs) -> anyhow::Result<i32> {
    let bytes = std::fs::read(&args.module)
        .with_context(|| format!("cannot read {}", args.module.display()))?;
    let cache = tempfile::tempdir()?;
    let config = crate::config::RuntimeConfig {
        instance_slots: 1,
        ..Default::default()
    };
    let runtime = crate::runtime::Runtime::new(&config, cache.path().to_path_buf())?;
    let module = match runtime.modules().load(&bytes) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {}: {e}", args.module.display());
            return Ok(1);
        }
    };
    let exports = module.exports();
    if args.json {
        let out = serde_json::json!({
            "module": format!("sha256:{}", module.hash()),
            "drivers": exports.mains,
            "tasks": exports.tasks,
            "actors": exports.actors,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("module  sha256:{}", module.hash());
        println!("drivers {}", exports.mains.join(", "));
        println!("tasks   {}", exports.tasks.join(", "));
        for (class, info) in &exports.actors {
            let persistent = if info.persistent { " (persistent)" } else { "" };
            println!("actor   {class}{persistent}: {}", info.methods.join(", "));
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        node: NodeArgs,
    }

    fn config(args: &[&str]) -> NodeConfig {
        let flags = Flags::try_parse_from(std::iter::once("prism").chain(args.iter().copied()))
            .expect("flags parse");
        flags.node.config().expect("valid flags")
    }

    #[test]
    fn runtime_flags_set_the_config_and_default_as_documented() {
        let c = config(&[]);
        assert_eq!(c.runtime.warm_instances, 32);
        assert_eq!(c.runtime.task_timeout, Duration::from_secs(300));
        let c = config(&["--warm-instances", "0", "--task-timeout-ms", "1500"]);
        assert_eq!(c.runtime.warm_instances, 0);
        assert_eq!(c.runtime.task_timeout, Duration::from_millis(1500));
        assert!(Flags::try_parse_from(["prism", "--warm-instances", "-1"]).is_err());
    }
}
