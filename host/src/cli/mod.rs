//! The `prism` command line: a thin layer over the library.
//!
//! [`main`] parses arguments, calls one entry function per command, and
//! prints any error once, at the edge, with a clean exit code:
//! 0 success, 1 the job (or a demo check) failed, 2 bad usage or setup.
//!
//! Output goes through [`outln!`] and [`errln!`], never `println!`: text
//! from guests and servers is escaped first ([`escape_terminal`]), and a
//! closed stdout ends the command quietly, with success, instead of a
//! panic.

/// `println!` to stdout for commands: returns `anyhow::Result<()>`, an
/// [`output::OutputClosed`] error when the reader went away.
macro_rules! outln {
    () => {
        $crate::cli::output::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` to stdout for commands (see [`outln!`]).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::write_stdout(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics: diagnostics nobody reads are dropped.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::cli::output::write_stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

mod admin;
mod bench;
mod bench_nodes;
mod bench_serve;
mod bench_workflows;
mod demo;
mod demo_events;
mod demo_serve;
mod demo_workflows;
mod output;
mod serve;
mod service;
mod tasks;
mod workflow;

pub use output::{escape_json, escape_terminal};

use crate::config::NodeConfig;
use crate::head::EmbeddedCluster;
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
    Start(Box<service::StartArgs>),
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
    /// Deploy, inspect and delete applications served over HTTPS; `serve
    /// run` runs one locally.
    Serve(serve::ServeArgs),
    /// Durable workflows: run, inspect, resume, cancel, signal and
    /// schedule them.
    Workflow(workflow::WorkflowArgs),
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
    /// Data directory for the module cache, spilled objects and the
    /// metadata store (default: for `prism start`, `data/` in the state
    /// directory given by --dir; for the other commands, a temporary
    /// directory, removed on exit).
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
    /// Guests alive at once on this node: running, blocked, actors, warm
    /// (default: 2000).
    #[arg(long)]
    instance_slots: Option<u32>,
    /// The largest fraction of the instance slots one tenant may hold, so
    /// that one tenant's blocked task graph cannot keep the others out
    /// (default: 0.75).
    #[arg(long)]
    tenant_instance_share: Option<f64>,
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
    /// Guest metric series one tenant may hold on this node; an update
    /// past it is refused (default: 1000).
    #[arg(long)]
    guest_metric_series: Option<usize>,
    /// Record none of the built-in task, actor call and instance series
    /// (`prism bench --no-metrics` measures their cost; default: recorded).
    #[arg(long)]
    no_metrics: bool,
    /// Record no task events: `prism job tasks`, timelines and the
    /// dashboard's job pages then show no tasks of this node (default:
    /// recorded).
    #[arg(long)]
    no_task_events: bool,
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
        if let Some(n) = self.instance_slots {
            anyhow::ensure!(n >= 1, "--instance-slots must be at least 1");
            config.runtime.instance_slots = n;
        }
        if let Some(share) = self.tenant_instance_share {
            anyhow::ensure!(
                share > 0.0 && share <= 1.0,
                "--tenant-instance-share must be more than 0 and at most 1, got {share}"
            );
            config.runtime.tenant_instance_share = share;
        }
        config.gpu.enabled = !self.no_gpus;
        config.gpu.adapters = self.gpu_adapters.clone();
        if let Some(bytes) = self.gpu_memory_per_instance {
            config.gpu.memory_per_instance = bytes;
        }
        if let Some(n) = self.guest_metric_series {
            config.metrics.guest_series = n;
        }
        config.metrics.enabled = !self.no_metrics;
        config.task_events = !self.no_task_events;
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
    /// Write the job's timeline to this file when it ends, as a Chrome
    /// trace (open it in Perfetto; default: none).
    #[arg(long, value_name = "FILE")]
    timeline: Option<PathBuf>,
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
    /// Only the serving figures (HTTPS requests to deployments).
    #[arg(long)]
    serve_only: bool,
    /// Only the serving figures on a real two-process cluster (a head
    /// and a worker on this machine, each with its ingress, tokens on
    /// every request), through the worker's ingress and the head's.
    #[arg(long, conflicts_with = "serve_only")]
    serve_nodes: bool,
    /// Only the durable workflow figures (step overhead, a 10,000-step
    /// fan-out, resume after a crash).
    #[arg(long, conflicts_with_all = ["serve_only", "serve_nodes"])]
    workflows: bool,
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
    quiet_vulkan_device_select();
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
        // The reader of stdout went away (`prism job list | head`): stop
        // printing, as `ls | head` does, with no message.
        Err(e) if output::is_output_closed(&e) => 0,
        Err(e) => {
            errln!("error: {}", error_text(&e));
            2
        }
    }
}

/// Keeps Mesa's Vulkan device-select layer from printing `error:
/// XDG_RUNTIME_DIR is invalid or not set in the environment.` on stderr,
/// once per device enumeration, on a machine without a desktop session.
///
/// The layer (`VK_LAYER_MESA_device_select`, implicit, installed with
/// Mesa's Vulkan drivers) looks for the Wayland compositor's GPU whenever
/// the instance enables `VK_KHR_wayland_surface`, which wgpu always does;
/// libwayland-client prints that line when `XDG_RUNTIME_DIR` is unset or
/// relative, and the lookup then fails anyway. Where that is the case,
/// and nobody asked for the layer (`MESA_VK_DEVICE_SELECT`, `DRI_PRIME`)
/// or set its switch, the layer is switched off with its documented
/// switch `NODEVICE_SELECT=1`. The Vulkan loader still orders devices
/// (discrete, integrated, virtual, CPU); Prism offers every one of them.
fn quiet_vulkan_device_select() {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    let runtime_dir_usable = std::env::var_os("XDG_RUNTIME_DIR")
        .is_some_and(|dir| std::path::Path::new(&dir).is_absolute());
    if runtime_dir_usable
        || set("NODEVICE_SELECT")
        || set("MESA_VK_DEVICE_SELECT")
        || set("DRI_PRIME")
    {
        return;
    }
    // SAFETY: called first thing in `main`, before this process starts
    // any thread, so nothing reads the environment concurrently.
    unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
}

/// An error as one line, escaped, without a prefix of its own: `main`
/// adds the only `error: `.
fn error_text(e: &anyhow::Error) -> String {
    let text = e
        .chain()
        .map(
            |cause| match cause.downcast_ref::<prism_client::ClientError>() {
                Some(prism_client::ClientError::Status(status)) => status_text(status),
                _ => cause.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join(": ");
    let mut text = text.as_str();
    // A message that starts with its own `error: ` (a server's, a
    // library's) would print as `error: error: ...`.
    while let Some(rest) = strip_prefix_ignore_case(text, "error: ") {
        text = rest;
    }
    escape_terminal(text).into_owned()
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// A status from the head. The client names the codes the API uses
/// (`not found: ...`) and calls every other one `error`, which after
/// `main`'s own prefix read `error: error: ...`; those get their name here.
fn status_text(status: &tonic::Status) -> String {
    let client_text = prism_client::ClientError::Status(status.clone()).to_string();
    if strip_prefix_ignore_case(&client_text, "error: ").is_none() {
        return client_text;
    }
    let message = status.message();
    let name = match status.code() {
        tonic::Code::Cancelled => "cancelled",
        tonic::Code::DeadlineExceeded => "timed out",
        tonic::Code::Unimplemented => "not supported by the head",
        tonic::Code::DataLoss => "data loss",
        // `Unknown` (also what transport failures are) and `Ok` say
        // nothing the message does not.
        _ if message.is_empty() => return format!("the head failed ({})", status.code()),
        _ => return message.to_string(),
    };
    if message.is_empty() {
        name.to_string()
    } else {
        format!("{name}: {message}")
    }
}

fn try_main(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Run(args) => run(args),
        Command::Inspect(args) => inspect(args),
        Command::Demo(args) => demo::demo(args.node.config()?),
        Command::Bench(args) => {
            let only = if args.serve_nodes {
                bench::Only::ServeNodes
            } else if args.serve_only {
                bench::Only::Serve
            } else if args.workflows {
                bench::Only::Workflows
            } else {
                bench::Only::Everything
            };
            bench::bench(args.node.config()?, args.quick, args.json, only)
        }
        Command::Status(args) if args.client.given() => {
            service::remote_status(&args.client, args.json)
        }
        Command::Status(args) => status(args),
        Command::Init(args) => service::init(args),
        Command::Start(args) => service::start(*args),
        Command::Token(args) => admin::token(args),
        Command::Tenant(args) => admin::tenant(args),
        Command::Namespace(args) => admin::namespace(args),
        Command::Policy(args) => admin::policy(args),
        Command::Job(args) => service::job(args),
        Command::Node(args) => service::node(args),
        Command::Actor(args) => service::actor(args),
        Command::Serve(args) => serve::serve(args),
        Command::Workflow(args) => workflow::workflow(args),
    }
}

/// Builds the multi-threaded tokio runtime guests run on.
fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // A running guest is one poll of up to one epoch tick (10 ms), so a
    // worker busy with guests counts its ticks in epochs: at tokio's
    // defaults (timers and I/O polled every 61 ticks, the shared queue
    // every 31) a 50 ms `get_timeout` fired after 300-600 ms. Polling both
    // every 4 ticks keeps timers within ~40 ms of their deadline under
    // full load, at the cost of one non-blocking epoll per 4 polls.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .event_interval(4)
        .global_queue_interval(4)
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
        let id = cluster
            .submit_in(&args.namespace, &module, &args.entry, job_args)
            .await?;
        // The job's log on stderr as it is written, not when it ends.
        let (printed, outcome) = if args.quiet {
            (usize::MAX, cluster.head().wait_job(id).await?)
        } else {
            let (printed, outcome) =
                tokio::join!(follow_log(&cluster, id), cluster.head().wait_job(id));
            (printed, outcome?)
        };
        // A job that ended before its log could be followed: its lines now.
        if printed == 0 {
            for line in outcome.logs.iter() {
                errln!(
                    "{}",
                    log_line(&line.function, line.source.as_str(), &line.text)
                );
            }
        }
        if args.stats {
            let statuses = cluster.head().node_statuses().await;
            errln!("{}", output::pretty_json(&statuses)?);
        }
        if let Some(path) = &args.timeline {
            let (tasks, _) = cluster.head().job_tasks(id).await;
            let trace = crate::events::timeline::chrome_trace(&id.to_string(), &tasks);
            std::fs::write(path, serde_json::to_vec(&trace)?)
                .with_context(|| format!("cannot write {}", path.display()))?;
            errln!(
                "timeline of {} tasks written to {} (open it in https://ui.perfetto.dev)",
                tasks.len(),
                path.display()
            );
        }
        match outcome.result {
            Ok(bytes) => {
                let json = crate::values::msgpack_to_json(&bytes)?;
                outln!("{}", output::pretty_json(&json)?)?;
                Ok(0)
            }
            Err(e) => {
                errln!(
                    "error: job {} failed ({}): {}",
                    outcome.id,
                    escape_terminal(&e.kind.to_string()),
                    escape_terminal(&e.message)
                );
                Ok(1)
            }
        }
    })
}

/// Prints job `id`'s log on stderr as lines arrive, one escaped line per
/// log line, until the job ends; how many lines it printed (0 if the job
/// ended before its log could be followed).
async fn follow_log(cluster: &EmbeddedCluster, id: crate::ids::JobId) -> usize {
    let ended = || cluster.head().job_outcome(id).is_some();
    // The log exists once the driver starts (after its module loads).
    let log = loop {
        if let Some(log) = cluster.node().job_log(id) {
            break log;
        }
        if ended() {
            return 0;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    };
    let mut appended = log.appended();
    let mut cursor = 0;
    let mut printed = 0;
    loop {
        // Whether it had ended before this read: then this read is the last.
        let last = ended();
        let (lines, next) = log.since(cursor);
        for line in &lines {
            errln!(
                "{}",
                log_line(&line.function, line.source.as_str(), &line.text)
            );
        }
        printed += lines.len();
        cursor = next;
        if last {
            return printed;
        }
        let _ =
            tokio::time::timeout(std::time::Duration::from_millis(50), appended.changed()).await;
    }
}

/// `[function source] text`, escaped: a guest cannot end the line early
/// or forge another.
fn log_line(function: &str, source: &str, text: &str) -> String {
    format!(
        "[{} {}] {}",
        escape_terminal(function),
        escape_terminal(source),
        escape_terminal(text)
    )
}

/// `prism status`: starts a node with the given options and describes it.
fn status(args: StatusArgs) -> anyhow::Result<i32> {
    let config = args.node.config()?;
    tokio_runtime()?.block_on(async {
        let cluster = EmbeddedCluster::start(config)?;
        let statuses = cluster.head().node_statuses().await;
        if args.json {
            outln!("{}", output::pretty_json(&statuses)?)?;
            return Ok(0);
        }
        for (i, node) in statuses.iter().enumerate() {
            outln!("node {i} (embedded)")?;
            outln!("  resources  {}", node.total)?;
            outln!("  available  {}", node.available)?;
            outln!(
                "  load       {} running, {} pending",
                node.scheduler.running, node.scheduler.pending
            )?;
            outln!(
                "  objects    {} held, {} of {} bytes in memory",
                node.store.objects, node.store.bytes_in_memory, node.store_capacity
            )?;
            if node.gpus.is_empty() {
                outln!("  gpus       none")?;
            }
            for g in &node.gpus {
                // Names come from the drivers.
                outln!(
                    "  gpu {}      {} ({}, {}, {}); max buffer {} bytes, {} workgroups per dimension",
                    g.index,
                    escape_terminal(&g.name),
                    escape_terminal(&g.backend),
                    escape_terminal(&g.device_type),
                    escape_terminal(&g.driver),
                    g.max_buffer_size,
                    g.max_workgroups_per_dimension
                )?;
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
            errln!(
                "error: {}: {}",
                args.module.display(),
                escape_terminal(&e.to_string())
            );
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
        outln!("{}", output::pretty_json(&out)?)?;
    } else {
        // The names are the module's own: escaped.
        let list = |names: &[String]| escape_terminal(&names.join(", ")).into_owned();
        outln!("module  sha256:{}", module.hash())?;
        outln!("drivers {}", list(&exports.mains))?;
        outln!("tasks   {}", list(&exports.tasks))?;
        for (class, info) in &exports.actors {
            let persistent = if info.persistent { " (persistent)" } else { "" };
            outln!(
                "actor   {}{persistent}: {}",
                escape_terminal(class),
                list(&info.methods)
            )?;
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
    fn errors_print_one_prefix() {
        use prism_client::ClientError;
        let status = |s: tonic::Status| anyhow::Error::from(ClientError::Status(s));
        // Codes the client names keep its wording.
        assert_eq!(
            error_text(&status(tonic::Status::not_found("no job j-1"))),
            "not found: no job j-1"
        );
        // The others read `error: ...` from the client; `main` adds its own.
        assert_eq!(
            error_text(&status(tonic::Status::unknown("transport error"))),
            "transport error"
        );
        assert_eq!(
            error_text(&status(tonic::Status::deadline_exceeded("too slow"))),
            "timed out: too slow"
        );
        assert_eq!(
            error_text(&status(tonic::Status::unimplemented(""))),
            "not supported by the head"
        );
        // A message of its own that starts with `error:`, under a context.
        let e = anyhow::anyhow!("Error: error: bad thing").context("uploading");
        assert_eq!(error_text(&e), "uploading: Error: error: bad thing");
        let e = anyhow::anyhow!("Error: error: bad thing");
        assert_eq!(error_text(&e), "bad thing");
        // Text from a server or guest is escaped.
        assert_eq!(
            error_text(&status(tonic::Status::internal("\x1b[2Jboom\nforged"))),
            "internal error: \\x1b[2Jboom\\nforged"
        );
    }

    #[test]
    fn log_lines_cannot_forge_others() {
        assert_eq!(
            log_line("f", "stdout", "ok\r[main prism] done\x1b[K"),
            "[f stdout] ok\\r[main prism] done\\x1b[K"
        );
    }

    #[test]
    fn runtime_flags_set_the_config_and_default_as_documented() {
        let c = config(&[]);
        assert_eq!(c.runtime.warm_instances, 32);
        assert_eq!(c.runtime.task_timeout, Duration::from_secs(300));
        assert_eq!(c.runtime.instance_slots, 2000);
        assert_eq!(c.runtime.tenant_instance_share, 0.75);
        let c = config(&[
            "--warm-instances",
            "0",
            "--task-timeout-ms",
            "1500",
            "--instance-slots",
            "64",
            "--tenant-instance-share",
            "0.5",
        ]);
        assert_eq!(c.runtime.instance_slots, 64);
        assert_eq!(c.runtime.tenant_instance_share, 0.5);
        assert_eq!(c.runtime.warm_instances, 0);
        assert_eq!(c.runtime.task_timeout, Duration::from_millis(1500));
        assert!(Flags::try_parse_from(["prism", "--warm-instances", "-1"]).is_err());
    }
}
