//! The service commands: `prism init`, `prism start --head`, `prism token
//! issue`, `prism job ...` and `prism status --address` (clients of the
//! API through `prism-client`).

use super::NodeArgs;
use super::output::{escape_json, escape_terminal};
use anyhow::Context;
use clap::{Args, Subcommand};
use prism_client::v1::{JobInfo, JobState};
use prism_client::{Client, ClientConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub(super) struct InitArgs {
    /// The cluster's state directory (created; must not hold a cluster).
    #[arg(long)]
    dir: PathBuf,
    /// More names or addresses the head's certificate is valid for
    /// (default: only localhost, 127.0.0.1 and ::1).
    #[arg(long)]
    san: Vec<String>,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("role").required(true).args(["head", "join"])))]
pub(super) struct StartArgs {
    /// Start the head: the API, the node registry and a node of its own.
    #[arg(long)]
    head: bool,
    /// Start a worker node that joins the head at this address
    /// (`https://host:port`).
    #[arg(long, value_name = "HEAD")]
    join: Option<String>,
    /// The state directory: the cluster's (from `prism init`) for the head,
    /// the node's own (created on first start) for a worker.
    #[arg(long)]
    dir: PathBuf,
    /// Address to serve on, TLS only (default: 127.0.0.1:7443 for the
    /// head, 127.0.0.1:0, any free port, for a worker).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Where this node serves the cluster's applications over HTTPS
    /// (HTTP/1.1 and HTTP/2), e.g. 0.0.0.0:8443 (default: not served). A
    /// worker's ingress routes straight to replicas on any node.
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// The ingress's certificate chain (PEM), with --http-key (default:
    /// the head's certificate on the head, the node's certificate —
    /// valid for `<node id>.node.prism` under the cluster CA — on a
    /// worker).
    #[arg(long, requires = "http_key")]
    http_cert: Option<PathBuf>,
    /// The ingress certificate's private key (PEM), with --http-cert.
    #[arg(long, requires = "http_cert")]
    http_key: Option<PathBuf>,
    /// Where this node serves `/metrics` (Prometheus text) over HTTPS,
    /// e.g. 0.0.0.0:9464, with the ingress's certificate; scrapes need a
    /// bearer token (default: not served).
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Head: where it serves the web dashboard over HTTPS, e.g.
    /// 0.0.0.0:8443, with the ingress's certificate; users log in with a
    /// token (default: not served).
    #[arg(long)]
    dashboard_listen: Option<SocketAddr>,
    /// Where other nodes reach this one, `host:port` (default: the bound
    /// address). For the head, the host must be a name of its certificate
    /// (`prism init --san`); a worker's certificate names the node
    /// (`<node id>.node.prism`), so its address may change between starts.
    #[arg(long)]
    advertise: Option<String>,
    /// Head: how often workers report, in milliseconds (default: 1000).
    #[arg(long, default_value_t = 1000)]
    heartbeat_ms: u64,
    /// Head: silence after which a worker is declared dead, in
    /// milliseconds (default: 10000).
    #[arg(long, default_value_t = 10_000)]
    node_timeout_ms: u64,
    /// After SIGTERM or Ctrl-C, how long calls in flight may take before
    /// the process exits anyway, in milliseconds. A head first stops its
    /// running jobs; a worker first tells the head it leaves, so its tasks
    /// move at once (default: 10000).
    #[arg(long, default_value_t = 10_000)]
    shutdown_grace_ms: u64,
    /// Head: jobs of one tenant that may be pending or running at once,
    /// whatever its `jobs` quota (default: 1000).
    #[arg(long, default_value_t = 1000)]
    tenant_live_jobs: u64,
    /// Head: ended jobs kept per tenant; older ones are forgotten with
    /// their results and logs (default: 1000).
    #[arg(long, default_value_t = 1000)]
    tenant_job_history: usize,
    /// Head: bytes the ended jobs of one tenant may keep on disk (results,
    /// log tails, log files); older jobs are forgotten past it
    /// (default: 1073741824, 1 GiB).
    #[arg(long, default_value_t = 1 << 30)]
    tenant_job_history_bytes: u64,
    /// Head: the audit log, one JSON object per authorization decision
    /// (default: STATE/audit.log).
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// Worker, first start: a one-time join token from `prism node
    /// join-token` (default: PRISM_JOIN_TOKEN).
    #[arg(long)]
    join_token: Option<String>,
    /// Worker, first start: the cluster CA certificate (the head's
    /// `ca.pem`; default: PRISM_CA).
    #[arg(long)]
    ca: Option<PathBuf>,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Args, Debug)]
pub(super) struct ActorArgs {
    #[command(subcommand)]
    command: ActorCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Subcommand, Debug)]
enum ActorCommand {
    /// Call a method of a named actor and print its value as JSON.
    Call {
        /// The actor's name.
        name: String,
        /// The method.
        method: String,
        /// Arguments as a JSON array.
        #[arg(long, default_value = "[]")]
        args: String,
        /// The actor's namespace.
        #[arg(long, default_value = crate::cluster::DEFAULT_NAMESPACE)]
        namespace: String,
    },
}

#[derive(Args, Debug)]
pub(super) struct NodeCommandArgs {
    #[command(subcommand)]
    command: NodeCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Subcommand, Debug)]
enum NodeCommand {
    /// Print a one-time token for `prism start --join` (cluster-admin).
    JoinToken {
        /// Lifetime in seconds (default: 3600).
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u64,
    },
}

/// How a client finds and proves itself to the head.
#[derive(Args, Debug, Clone)]
pub(super) struct ClientArgs {
    /// The head, `https://host:port` (default: PRISM_ADDRESS, then the config file).
    #[arg(long, global = true)]
    address: Option<String>,
    /// The bearer token (default: --token-file, PRISM_TOKEN, then the config file).
    #[arg(long, global = true)]
    token: Option<String>,
    /// A file holding the bearer token.
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// The cluster CA certificate (default: PRISM_CA, then the config file).
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
}

impl ClientArgs {
    /// Whether a head was named, by flag or by `PRISM_ADDRESS`.
    pub(super) fn given(&self) -> bool {
        self.address.is_some() || std::env::var_os("PRISM_ADDRESS").is_some_and(|v| !v.is_empty())
    }

    pub(super) async fn connect(&self) -> anyhow::Result<Client> {
        let config = ClientConfig::resolve(
            self.address.clone(),
            self.token.clone(),
            self.token_file.clone(),
            self.ca.clone(),
        )?;
        Ok(Client::connect(&config).await?)
    }
}

#[derive(Args, Debug)]
pub(super) struct JobArgs {
    #[command(subcommand)]
    command: JobCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Subcommand, Debug)]
enum JobCommand {
    /// Upload a module and start a job; prints its id (with --wait, its result).
    Submit {
        /// The module (.wasm).
        module: PathBuf,
        /// The driver (or task) to call.
        #[arg(long, default_value = "main")]
        entry: String,
        /// Arguments as a JSON array.
        #[arg(long, default_value = "[]")]
        args: String,
        /// Namespace of the job's named actors and objects.
        #[arg(long, default_value = crate::cluster::DEFAULT_NAMESPACE)]
        namespace: String,
        /// An environment variable for the job's guests, NAME=VALUE;
        /// repeatable (default: none).
        #[arg(long = "env", value_name = "NAME=VALUE")]
        env: Vec<String>,
        /// CPUs the driver holds while it runs (default: 0).
        #[arg(long, default_value_t = 0.0)]
        driver_cpus: f64,
        /// The tenant to run in (default: the token's; another needs a
        /// cluster-admin token).
        #[arg(long, default_value = "")]
        tenant: String,
        /// Wait for the job and print its result.
        #[arg(long)]
        wait: bool,
    },
    /// A job's state.
    Status { id: String },
    /// A job's log lines, as they arrive, until the job ends.
    Logs { id: String },
    /// A job's value as JSON (waits for the job to end).
    Result { id: String },
    /// Stop a job.
    Stop { id: String },
    /// Every job, newest first.
    List,
    /// A job's tasks and actor calls as its nodes recorded them, in
    /// submission order: state, where each ran, waits, run times, causes.
    Tasks {
        id: String,
        /// Only tasks in this state: waiting, queued, running, retrying,
        /// finished or failed (default: every state).
        #[arg(long)]
        state: Option<String>,
        /// Only failed tasks with this cause, an error kind such as
        /// panic, trap or deadline_exceeded (default: any).
        #[arg(long)]
        cause: Option<String>,
        /// Print JSON, one task per line.
        #[arg(long)]
        json: bool,
    },
    /// One task: function, arguments, dependencies, node, slot, timings,
    /// attempts, last output lines, error.
    Task {
        /// The task's id (its result object's id, as errors name it).
        task: String,
        /// The job it belongs to (default: looked for among the newest
        /// 100 jobs you may read).
        #[arg(long)]
        job: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A job's failed tasks grouped by cause, with their errors and last
    /// output lines.
    Failures { id: String },
    /// Write a job's timeline as a Chrome trace (open it in Perfetto):
    /// one process per node, one thread per CPU slot, GPU or actor.
    Timeline {
        id: String,
        /// Where to write it.
        #[arg(short, long, default_value = "trace.json")]
        output: PathBuf,
    },
}

pub(super) fn init(args: InitArgs) -> anyhow::Result<i32> {
    let report = crate::security::init(&args.dir, &args.san)?;
    outln!(
        "cluster {} initialized in {}",
        report.cluster_id,
        args.dir.display()
    )?;
    outln!("  CA certificate  {}", report.files.ca_cert().display())?;
    outln!("  admin token     {}", report.files.admin_token().display())?;
    outln!(
        "start the head:  prism start --head --dir {}",
        args.dir.display()
    )?;
    Ok(0)
}

/// The end of a node's first line: `, serving HTTP on https://…` and
/// `, metrics on https://…` for what it serves.
fn also_serving(http: Option<SocketAddr>, metrics: Option<SocketAddr>) -> String {
    let mut out = String::new();
    if let Some(http) = http {
        out.push_str(&format!(", serving HTTP on https://{http}"));
    }
    if let Some(metrics) = metrics {
        out.push_str(&format!(", metrics on https://{metrics}"));
    }
    out
}

/// The ingress certificate and key the flags name, read.
fn http_tls(args: &StartArgs) -> anyhow::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let (Some(cert), Some(key)) = (&args.http_cert, &args.http_key) else {
        return Ok(None);
    };
    if args.http_listen.is_none()
        && args.metrics_listen.is_none()
        && args.dashboard_listen.is_none()
    {
        anyhow::bail!(
            "--http-cert and --http-key need --http-listen, --metrics-listen or --dashboard-listen"
        );
    }
    let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let (cert, key) = (read(cert)?, read(key)?);
    crate::serve::Ingress::tls(&cert, &key)?;
    Ok(Some((cert, key)))
}

pub(super) fn start(args: StartArgs) -> anyhow::Result<i32> {
    let config = args.node.config()?;
    if args
        .advertise
        .as_deref()
        .is_some_and(|a| a.trim().is_empty())
    {
        anyhow::bail!("--advertise must name a host and port, e.g. node1.example:7000");
    }
    if let Some(head) = &args.join {
        if args.dashboard_listen.is_some() {
            anyhow::bail!("--dashboard-listen is for the head (the dashboard is the head's)");
        }
        let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let ca_path = args
            .ca
            .clone()
            .or_else(|| env("PRISM_CA").map(PathBuf::from));
        let join_token = args
            .join_token
            .clone()
            .or_else(|| env("PRISM_JOIN_TOKEN").map(|v| v.to_string_lossy().trim().to_string()));
        let ca_pem = match &ca_path {
            Some(path) => Some(
                std::fs::read(path)
                    .with_context(|| format!("reading the CA certificate {}", path.display()))?,
            ),
            None => None,
        };
        let options = crate::net::worker::WorkerOptions {
            head: head.clone(),
            dir: args.dir.clone(),
            ca_pem,
            join_token,
            listen: args
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
            advertise: args.advertise.clone(),
            node: config,
            shutdown_grace: Duration::from_millis(args.shutdown_grace_ms),
            http_listen: args.http_listen,
            http_tls: http_tls(&args)?,
            metrics_listen: args.metrics_listen,
        };
        super::tokio_runtime()?.block_on(async {
            let shutdown = shutdown_signal();
            crate::net::worker::run_worker(
                options,
                |id, bound, http, metrics| {
                    // Tests and scripts wait for this line. A service
                    // whose stdout was closed keeps serving.
                    let _ = outln!(
                        "prism worker {id} listening on https://{bound}, joined {}{}",
                        escape_terminal(head),
                        also_serving(http, metrics)
                    );
                },
                shutdown,
            )
            .await
        })?;
        return Ok(0);
    }
    // The head's node keeps its data (module cache, durable named objects,
    // saved actor state) in the cluster's state directory unless told
    // otherwise, so that a restarted head still has it.
    let mut config = config;
    if config.data_dir.is_none() {
        config.data_dir = Some(args.dir.join("data"));
    }
    let mut options = crate::api::HeadOptions::new(
        args.listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7443))),
        config,
    );
    options.advertise = args.advertise.clone();
    options.heartbeat_interval = Duration::from_millis(args.heartbeat_ms.max(10));
    options.node_timeout = Duration::from_millis(args.node_timeout_ms.max(100));
    options.audit_log = args.audit_log.clone();
    options.http_listen = args.http_listen;
    options.http_tls = http_tls(&args)?;
    options.metrics_listen = args.metrics_listen;
    options.dashboard_listen = args.dashboard_listen;
    options.shutdown_grace = Duration::from_millis(args.shutdown_grace_ms);
    options.job_limits = crate::api::JobLimits {
        live_per_tenant: args.tenant_live_jobs.max(1),
        history_per_tenant: args.tenant_job_history.max(1),
        history_bytes_per_tenant: args.tenant_job_history_bytes,
    };
    super::tokio_runtime()?.block_on(async {
        let shutdown = shutdown_signal();
        crate::api::serve(
            &args.dir,
            options,
            |at| {
                // Tests and scripts wait for this line. A service whose
                // stdout was closed keeps serving.
                let mut also = also_serving(at.http, at.metrics);
                if let Some(dashboard) = at.dashboard {
                    also.push_str(&format!(", dashboard on https://{dashboard}"));
                }
                let _ = outln!("prism head listening on https://{}{also}", at.api);
            },
            shutdown,
        )
        .await
    })?;
    Ok(0)
}

fn state_name(state: i32) -> &'static str {
    match JobState::try_from(state).unwrap_or(JobState::Unspecified) {
        JobState::Pending => "PENDING",
        JobState::Running => "RUNNING",
        JobState::Succeeded => "SUCCEEDED",
        JobState::Failed => "FAILED",
        JobState::Stopped => "STOPPED",
        JobState::Unspecified => "UNKNOWN",
    }
}

/// A job as one line; every field from the head is escaped (the error
/// message is a guest's).
fn job_line(job: &JobInfo) -> String {
    let mut line = format!(
        "{}  {:<9}  {}  entry={} namespace={} by={}",
        escape_terminal(&job.id),
        state_name(job.state),
        escape_terminal(&job.module_hash),
        escape_terminal(&job.entry),
        escape_terminal(&job.namespace),
        escape_terminal(&job.submitted_by)
    );
    if !job.error_kind.is_empty() {
        line.push_str(&format!(
            "  error ({}): {}",
            escape_terminal(&job.error_kind),
            escape_terminal(&job.error_message)
        ));
    }
    line
}

fn print_job(job: &JobInfo) -> anyhow::Result<()> {
    outln!("{}", job_line(job))
}

/// Prints a result; exit code 0 if the job succeeded, 1 otherwise.
fn print_result(result: &prism_client::v1::JobResult) -> anyhow::Result<i32> {
    match &result.job {
        Some(job) if job.state == JobState::Succeeded as i32 => {
            outln!("{}", escape_json(&result.value_json))?;
            Ok(0)
        }
        Some(job) => {
            errln!(
                "error: job {} {} ({}): {}",
                escape_terminal(&job.id),
                state_name(job.state),
                escape_terminal(&job.error_kind),
                escape_terminal(&job.error_message)
            );
            Ok(1)
        }
        None => Ok(1),
    }
}

pub(super) fn job(args: JobArgs) -> anyhow::Result<i32> {
    super::tokio_runtime()?.block_on(async {
        let mut client = args.client.connect().await?;
        match args.command {
            JobCommand::Submit {
                module,
                entry,
                args: job_args,
                namespace,
                env,
                driver_cpus,
                tenant,
                wait,
            } => {
                let mut vars = std::collections::HashMap::new();
                for pair in env {
                    let (name, value) = pair
                        .split_once('=')
                        .with_context(|| format!("--env {pair:?}: expected NAME=VALUE"))?;
                    vars.insert(name.to_string(), value.to_string());
                }
                let wasm = std::fs::read(&module)
                    .with_context(|| format!("cannot read {}", module.display()))?;
                let uploaded = client.upload_module(wasm).await?;
                let job = client
                    .submit_request(prism_client::v1::SubmitJobRequest {
                        module_hash: uploaded.hash,
                        entry,
                        args_json: job_args,
                        namespace,
                        env: vars,
                        num_cpus: driver_cpus,
                        tenant,
                        ..Default::default()
                    })
                    .await?;
                if wait {
                    let result = client.result(&job.id, true).await?;
                    return print_result(&result);
                }
                outln!("{}", escape_terminal(&job.id))?;
                Ok(0)
            }
            JobCommand::Status { id } => {
                print_job(&client.job(&id).await?)?;
                Ok(0)
            }
            JobCommand::Logs { id } => {
                // Printing stops at the first failure (stdout closed:
                // `prism job logs ID | head`), and so does following,
                // rather than waiting for the job to end.
                let (failed_tx, failed_rx) = tokio::sync::oneshot::channel();
                let mut failed_tx = Some(failed_tx);
                let follow = client.follow_logs(&id, |line| {
                    if failed_tx.is_none() {
                        return;
                    }
                    let printed = outln!(
                        "{}",
                        super::log_line(&line.function, &line.source, &line.text)
                    );
                    if let (Err(e), Some(tx)) = (printed, failed_tx.take()) {
                        let _ = tx.send(e);
                    }
                });
                tokio::select! {
                    followed = follow => followed?,
                    Ok(e) = failed_rx => return Err(e),
                }
                Ok(0)
            }
            JobCommand::Result { id } => print_result(&client.result(&id, true).await?),
            JobCommand::Stop { id } => {
                print_job(&client.stop(&id).await?)?;
                Ok(0)
            }
            JobCommand::List => {
                for job in client.list().await? {
                    print_job(&job)?;
                }
                Ok(0)
            }
            JobCommand::Tasks {
                id,
                state,
                cause,
                json,
            } => {
                let (tasks, unrecorded) = client
                    .list_tasks(
                        &id,
                        state.as_deref().unwrap_or(""),
                        cause.as_deref().unwrap_or(""),
                    )
                    .await?;
                if json {
                    for task in &tasks {
                        outln!("{}", crate::events::json::task_json(task))?;
                    }
                } else {
                    super::tasks::print_tasks(&tasks, unrecorded)?;
                }
                Ok(0)
            }
            JobCommand::Task { task, job, json } => {
                let (task, job) = client.task(job.as_deref().unwrap_or(""), &task).await?;
                if json {
                    outln!("{}", crate::events::json::task_json(&task))?;
                } else {
                    super::tasks::print_task(&task, &job)?;
                }
                Ok(0)
            }
            JobCommand::Failures { id } => {
                let (tasks, _) = client.list_tasks(&id, "failed", "").await?;
                super::tasks::print_failures(&tasks)?;
                Ok(0)
            }
            JobCommand::Timeline { id, output } => {
                let (tasks, _) = client.list_tasks(&id, "", "").await?;
                super::tasks::write_timeline(&id, &tasks, &output)?;
                Ok(0)
            }
        }
    })
}

/// `prism status --address`: the nodes of a running cluster.
pub(super) fn remote_status(client: &ClientArgs, json: bool) -> anyhow::Result<i32> {
    super::tokio_runtime()?.block_on(async {
        let status = client.connect().await?.status().await?;
        if json {
            let nodes: Vec<serde_json::Value> = status
                .nodes
                .iter()
                .map(|n| {
                    serde_json::json!({
                        "node_id": n.node_id, "address": n.address, "state": n.state,
                        "total": n.total, "available": n.available,
                        "running_tasks": n.running_tasks, "pending_tasks": n.pending_tasks,
                        "executed_tasks": n.executed_tasks, "last_seen_ms": n.last_seen_ms,
                        "gpus": n.gpus,
                    })
                })
                .collect();
            outln!("{}", super::output::pretty_json(&nodes)?)?;
            return Ok(0);
        }
        // Everything here is as the nodes reported it.
        for n in &status.nodes {
            outln!(
                "node {} ({}, {})",
                escape_terminal(&n.node_id),
                escape_terminal(&n.address),
                escape_terminal(&n.state)
            )?;
            outln!("  resources  {}", escape_terminal(&n.total))?;
            outln!("  available  {}", escape_terminal(&n.available))?;
            outln!(
                "  load       {} running, {} pending, {} run so far",
                n.running_tasks,
                n.pending_tasks,
                n.executed_tasks
            )?;
            for g in &n.gpus {
                outln!("  gpu        {}", escape_terminal(g))?;
            }
        }
        Ok(0)
    })
}

pub(super) fn node(args: NodeCommandArgs) -> anyhow::Result<i32> {
    super::tokio_runtime()?.block_on(async {
        let mut client = args.client.connect().await?;
        match args.command {
            NodeCommand::JoinToken { ttl_secs } => {
                let reply = client.create_join_token(ttl_secs).await?;
                outln!("{}", escape_terminal(&reply.token))?;
            }
        }
        Ok(0)
    })
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM (what service managers send).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub(super) fn actor(args: ActorArgs) -> anyhow::Result<i32> {
    super::tokio_runtime()?.block_on(async {
        let mut client = args.client.connect().await?;
        match args.command {
            ActorCommand::Call {
                name,
                method,
                args,
                namespace,
            } => {
                let value = client.call_actor(&namespace, &name, &method, &args).await?;
                outln!("{}", escape_json(&value))?;
            }
        }
        Ok(0)
    })
}
