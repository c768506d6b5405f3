//! `prism workflow`: durable workflows on a running cluster (`run`,
//! `list`, `status`, `output`, `metadata`, `resume`, `cancel`, `delete`,
//! `signal`, `schedule`), or one workflow on an embedded cluster when no
//! head is named (`run` only; its log lives in memory).

use super::NodeArgs;
use super::service::ClientArgs;
use crate::workflow::{LocalGrants, StartRequest, Starter, Status, WorkflowStore, Workflows};
use anyhow::Context;
use clap::{Args, Subcommand};
use prism_proto::v1::{
    CreateScheduleRequest, ListSchedulesRequest, ListWorkflowsRequest, ResumeWorkflowRequest,
    RunWorkflowRequest, ScheduleRequest, SignalWorkflowRequest, StepInfo, VirtualActorRequest,
    WorkflowInfo, WorkflowOutputRequest, WorkflowRequest,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug)]
pub(super) struct WorkflowArgs {
    #[command(subcommand)]
    command: WorkflowCommand,
    #[command(flatten)]
    client: ClientArgs,
}

// `Run` carries the embedded node's options; the enum is parsed once.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum WorkflowCommand {
    /// Start a workflow: an entry task of a module (.wasm), or a pipeline
    /// file (.yaml/.yml, whose `module` names the wasm file). Without a
    /// head (no --address or PRISM_ADDRESS), runs it on an embedded
    /// cluster and prints its output.
    Run {
        /// The module (.wasm) or the pipeline (.yaml).
        file: PathBuf,
        /// The entry task (the first step; not for pipelines).
        #[arg(long, default_value = "main")]
        entry: String,
        /// Its arguments as a JSON array (default: none).
        #[arg(long, default_value = "[]")]
        args: String,
        /// The workflow's id (default: <entry>-<random>).
        #[arg(long)]
        id: Option<String>,
        /// The namespace its steps run in.
        #[arg(long, default_value = crate::cluster::DEFAULT_NAMESPACE)]
        namespace: String,
        /// Wait for it to end and print its output.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// The tenant's workflows.
    List {
        /// Only those of a status (RUNNING, SUCCESSFUL, FAILED, RESUMABLE,
        /// CANCELED; default: all).
        #[arg(long)]
        status: Option<String>,
    },
    /// A workflow's status and its steps.
    Status {
        id: String,
        /// Wait up to this many seconds for it to end (default: 0).
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
    /// The output of a successful workflow, or of one of its steps, as
    /// JSON.
    Output {
        id: String,
        /// A step's name (default: the workflow's output).
        #[arg(long)]
        step: Option<String>,
    },
    /// A workflow and its steps as JSON (inputs, outputs, attempts,
    /// timings).
    Metadata { id: String },
    /// Resume a FAILED or RESUMABLE workflow from the steps it had not
    /// finished (or all of them, with --all).
    Resume {
        id: Option<String>,
        #[arg(long)]
        all: bool,
    },
    /// Cancel a workflow: its running steps stop; it never resumes.
    Cancel { id: String },
    /// Delete an ended workflow and its log.
    Delete { id: String },
    /// Deliver an event to a workflow (PAYLOAD is JSON).
    Signal {
        id: String,
        event: String,
        payload: String,
    },
    /// Cron schedules that start workflows.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Virtual actors: durable state workflows call by id.
    #[command(subcommand)]
    Actor(ActorCommand),
}

#[derive(Subcommand, Debug)]
enum ActorCommand {
    /// A virtual actor's state, as JSON.
    Get {
        id: String,
        #[arg(long, default_value = crate::cluster::DEFAULT_NAMESPACE)]
        namespace: String,
    },
    /// Delete a virtual actor.
    Delete {
        id: String,
        #[arg(long, default_value = crate::cluster::DEFAULT_NAMESPACE)]
        namespace: String,
    },
}

#[derive(Subcommand, Debug)]
enum ScheduleCommand {
    /// Create (or replace) a schedule: each firing starts the entry task
    /// as a workflow `<name>-<time>`.
    Create {
        name: String,
        /// The module (.wasm).
        module: PathBuf,
        /// Five fields (minute hour day month weekday) or six with
        /// seconds first, UTC.
        #[arg(long)]
        cron: String,
        /// The entry task.
        #[arg(long)]
        entry: String,
        /// Its arguments as a JSON array (default: none).
        #[arg(long, default_value = "[]")]
        args: String,
        #[arg(long, default_value = crate::cluster::DEFAULT_NAMESPACE)]
        namespace: String,
        /// Firings missed while the head was down: run-latest, run-all or
        /// skip.
        #[arg(long, default_value = "run-latest")]
        missed: String,
    },
    /// The tenant's schedules.
    List,
    /// Delete a schedule (its workflows stay).
    Delete { name: String },
}

fn print_info(w: &WorkflowInfo) -> anyhow::Result<()> {
    outln!(
        "workflow {} {} (entry {}, namespace {}, runs {}{})",
        w.id,
        w.status,
        w.entry,
        w.namespace,
        w.runs,
        if w.schedule.is_empty() {
            String::new()
        } else {
            format!(", schedule {}", w.schedule)
        }
    )?;
    if !w.error.is_empty() {
        outln!("  error: {}", w.error)?;
    }
    let mut counts: Vec<_> = w.steps.iter().collect();
    counts.sort();
    if !counts.is_empty() {
        let text: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
        outln!("  steps: {}", text.join(", "))?;
    }
    Ok(())
}

fn print_step(s: &StepInfo) -> anyhow::Result<()> {
    let took = if s.ended_at_ms > 0 {
        format!("{} ms", s.ended_at_ms - s.started_at_ms)
    } else {
        "-".into()
    };
    outln!(
        "  {:<28} {:<12} {:<10} attempts {} {}{}",
        s.name,
        s.function,
        s.status,
        s.attempts,
        took,
        if s.error.is_empty() {
            String::new()
        } else {
            format!("  ({})", s.error)
        }
    )?;
    Ok(())
}

fn is_pipeline(file: &Path) -> bool {
    matches!(
        file.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// A pipeline file and its module's bytes (the module path is relative
/// to the file).
fn read_pipeline(file: &Path) -> anyhow::Result<(String, Vec<u8>)> {
    let yaml =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let pipeline = crate::workflow::pipeline::Pipeline::parse(&yaml)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let module = pipeline.module.as_deref().with_context(|| {
        format!(
            "{}: `module` names the pipeline's wasm file",
            file.display()
        )
    })?;
    let path = file.parent().unwrap_or_else(|| Path::new(".")).join(module);
    let wasm =
        std::fs::read(&path).with_context(|| format!("reading module {}", path.display()))?;
    Ok((yaml, wasm))
}

pub(super) fn workflow(args: WorkflowArgs) -> anyhow::Result<i32> {
    if let WorkflowCommand::Run {
        file,
        entry,
        args: json,
        id,
        node,
        ..
    } = &args.command
        && !args.client.given()
    {
        return run_local(file, entry, json, id.clone(), node);
    }
    super::tokio_runtime()?.block_on(async {
        let mut client = args.client.connect().await?;
        match args.command {
            WorkflowCommand::Run {
                file,
                entry,
                args: json,
                id,
                namespace,
                wait,
                ..
            } => {
                let mut request = RunWorkflowRequest {
                    namespace,
                    id: id.unwrap_or_default(),
                    ..Default::default()
                };
                let wasm = if is_pipeline(&file) {
                    let (yaml, wasm) = read_pipeline(&file)?;
                    request.pipeline_yaml = yaml;
                    wasm
                } else {
                    request.entry = entry;
                    request.args_json = json;
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?
                };
                request.module_hash = client.upload_module(wasm).await?.hash;
                let info = client.workflows().run_workflow(request).await?.into_inner();
                if !wait {
                    print_info(&info)?;
                    return Ok(0);
                }
                return wait_and_print(&mut client, &info.id).await;
            }
            WorkflowCommand::List { status } => {
                let request = ListWorkflowsRequest {
                    status: status.unwrap_or_default(),
                    ..Default::default()
                };
                for w in client
                    .workflows()
                    .list_workflows(request)
                    .await?
                    .into_inner()
                    .workflows
                {
                    outln!("{}\t{}\t{}\t{}", w.id, w.status, w.entry, w.namespace)?;
                }
            }
            WorkflowCommand::Status { id, wait } => {
                let request = WorkflowRequest {
                    id: id.clone(),
                    wait_ms: wait.saturating_mul(1000),
                    ..Default::default()
                };
                let info = client.workflows().get_workflow(request).await?.into_inner();
                print_info(&info)?;
                let steps = client
                    .workflows()
                    .list_steps(by_id(&id))
                    .await?
                    .into_inner();
                for s in &steps.steps {
                    print_step(s)?;
                }
                if steps.truncated {
                    outln!("  (more steps not shown)")?;
                }
            }
            WorkflowCommand::Output { id, step } => {
                let request = WorkflowOutputRequest {
                    id,
                    step: step.unwrap_or_default(),
                    ..Default::default()
                };
                let output = client
                    .workflows()
                    .get_workflow_output(request)
                    .await?
                    .into_inner();
                outln!("{}", output.output_json)?;
            }
            WorkflowCommand::Metadata { id } => {
                let info = client
                    .workflows()
                    .get_workflow(by_id(&id))
                    .await?
                    .into_inner();
                let steps = client
                    .workflows()
                    .list_steps(by_id(&id))
                    .await?
                    .into_inner();
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&metadata_json(&info, &steps.steps))?
                )?;
            }
            WorkflowCommand::Resume { id, all } => {
                anyhow::ensure!(id.is_some() != all, "name a workflow or give --all");
                let request = ResumeWorkflowRequest {
                    id: id.unwrap_or_default(),
                    all,
                    ..Default::default()
                };
                let reply = client
                    .workflows()
                    .resume_workflow(request)
                    .await?
                    .into_inner();
                outln!("resumed {}", reply.resumed.len())?;
                for id in reply.resumed {
                    outln!("  {id}")?;
                }
            }
            WorkflowCommand::Cancel { id } => {
                print_info(
                    &client
                        .workflows()
                        .cancel_workflow(by_id(&id))
                        .await?
                        .into_inner(),
                )?;
            }
            WorkflowCommand::Delete { id } => {
                client.workflows().delete_workflow(by_id(&id)).await?;
                outln!("deleted workflow {id}")?;
            }
            WorkflowCommand::Signal { id, event, payload } => {
                let request = SignalWorkflowRequest {
                    id: id.clone(),
                    event: event.clone(),
                    payload_json: payload,
                    ..Default::default()
                };
                let reply = client
                    .workflows()
                    .signal_workflow(request)
                    .await?
                    .into_inner();
                outln!("delivered {event} to {id} (sequence {})", reply.sequence)?;
            }
            WorkflowCommand::Schedule(command) => schedule(&mut client, command).await?,
            WorkflowCommand::Actor(ActorCommand::Get { id, namespace }) => {
                let request = VirtualActorRequest {
                    id,
                    namespace,
                    ..Default::default()
                };
                let state = client
                    .workflows()
                    .get_virtual_actor(request)
                    .await?
                    .into_inner();
                outln!("{}", state.state_json)?;
            }
            WorkflowCommand::Actor(ActorCommand::Delete { id, namespace }) => {
                let request = VirtualActorRequest {
                    id: id.clone(),
                    namespace,
                    ..Default::default()
                };
                client.workflows().delete_virtual_actor(request).await?;
                outln!("deleted virtual actor {id}")?;
            }
        }
        Ok(0)
    })
}

fn by_id(id: &str) -> WorkflowRequest {
    WorkflowRequest {
        id: id.to_string(),
        ..Default::default()
    }
}

async fn wait_and_print(client: &mut prism_client::Client, id: &str) -> anyhow::Result<i32> {
    loop {
        let request = WorkflowRequest {
            id: id.to_string(),
            wait_ms: 60_000,
            ..Default::default()
        };
        let info = client.workflows().get_workflow(request).await?.into_inner();
        match info.status.as_str() {
            "RUNNING" => continue,
            "SUCCESSFUL" => {
                let request = WorkflowOutputRequest {
                    id: id.to_string(),
                    ..Default::default()
                };
                let output = client
                    .workflows()
                    .get_workflow_output(request)
                    .await?
                    .into_inner();
                outln!("{}", output.output_json)?;
                return Ok(0);
            }
            _ => {
                print_info(&info)?;
                return Ok(1);
            }
        }
    }
}

fn metadata_json(info: &WorkflowInfo, steps: &[StepInfo]) -> serde_json::Value {
    serde_json::json!({
        "id": info.id,
        "tenant": info.tenant,
        "namespace": info.namespace,
        "status": info.status,
        "entry": info.entry,
        "module": info.module_hash,
        "error": info.error,
        "runs": info.runs,
        "started_by": info.started_by,
        "schedule": info.schedule,
        "created_at_ms": info.created_at_ms,
        "ended_at_ms": info.ended_at_ms,
        "steps": steps.iter().map(|s| serde_json::json!({
            "name": s.name,
            "function": s.function,
            "status": s.status,
            "attempts": s.attempts,
            "error": s.error,
            "inputs": s.inputs,
            "output": s.output,
            "started_at_ms": s.started_at_ms,
            "ended_at_ms": s.ended_at_ms,
            "duration_ms": (s.ended_at_ms > 0).then(|| s.ended_at_ms - s.started_at_ms),
        })).collect::<Vec<_>>(),
    })
}

async fn schedule(
    client: &mut prism_client::Client,
    command: ScheduleCommand,
) -> anyhow::Result<()> {
    match command {
        ScheduleCommand::Create {
            name,
            module,
            cron,
            entry,
            args,
            namespace,
            missed,
        } => {
            let wasm =
                std::fs::read(&module).with_context(|| format!("reading {}", module.display()))?;
            let module_hash = client.upload_module(wasm).await?.hash;
            let request = CreateScheduleRequest {
                name,
                cron,
                module_hash,
                entry,
                args_json: args,
                namespace,
                missed,
                ..Default::default()
            };
            let s = client
                .workflows()
                .create_schedule(request)
                .await?
                .into_inner();
            outln!(
                "schedule {} ({}), next firing at {} ms",
                s.name,
                s.cron,
                s.next_fire_ms
            )?;
        }
        ScheduleCommand::List => {
            let reply = client
                .workflows()
                .list_schedules(ListSchedulesRequest::default())
                .await?
                .into_inner();
            for s in reply.schedules {
                outln!(
                    "{}\t{}\t{}\t{}\tnext {}",
                    s.name,
                    s.cron,
                    s.entry,
                    s.missed,
                    s.next_fire_ms
                )?;
            }
        }
        ScheduleCommand::Delete { name } => {
            let request = ScheduleRequest {
                name: name.clone(),
                ..Default::default()
            };
            client.workflows().delete_schedule(request).await?;
            outln!("deleted schedule {name}")?;
        }
    }
    Ok(())
}

/// `prism workflow run` without a head: an embedded cluster, a log in
/// memory, the output printed.
fn run_local(
    file: &Path,
    entry: &str,
    args: &str,
    id: Option<String>,
    node: &NodeArgs,
) -> anyhow::Result<i32> {
    let (wasm, entry, root) = if is_pipeline(file) {
        let (yaml, wasm) = read_pipeline(file)?;
        let pipeline = crate::workflow::pipeline::Pipeline::parse(&yaml)?;
        let name = pipeline.name.clone().unwrap_or_else(|| "pipeline".into());
        (wasm, name, pipeline.root()?)
    } else {
        let wasm = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let args = crate::values::json_args(args).map_err(|e| anyhow::anyhow!("--args: {e}"))?;
        let args = args.into_iter().map(|a| a.to_vec()).collect();
        (
            wasm,
            entry.to_string(),
            prism_abi::workflow::StepNode::task(entry, args),
        )
    };
    let config = node.config()?;
    super::tokio_runtime()?.block_on(async {
        let cluster = crate::head::EmbeddedCluster::start(config)?;
        let module = cluster.head().upload_module(bytes::Bytes::from(wasm));
        let workflows = Workflows::new(
            cluster.node().clone(),
            WorkflowStore::in_memory()?,
            Arc::new(LocalGrants),
        );
        let started = workflows
            .start(local_request(module, entry, root, id))
            .await?;
        let ended = workflows
            .wait(&started.tenant, &started.id, Duration::MAX)
            .await?;
        let code = if ended.status == Status::Successful {
            let output = workflows.output(&ended.tenant, &ended.id, None)?;
            let json = crate::head::result_json(&output)?
                .unwrap_or_else(|| "\"(the output is too large to print)\"".into());
            outln!("{json}")?;
            0
        } else {
            eprintln!(
                "workflow {} {}: {}",
                ended.id,
                ended.status.as_str(),
                ended.error.unwrap_or_default()
            );
            1
        };
        cluster.shutdown(Duration::from_secs(5)).await;
        Ok(code)
    })
}

/// A workflow of the embedded cluster's single user.
pub(super) fn local_request(
    module: crate::ids::ModuleHash,
    entry: String,
    root: prism_abi::workflow::StepNode,
    id: Option<String>,
) -> StartRequest {
    let grant = crate::security::JobGrant::local();
    StartRequest {
        tenant: grant.tenant.to_string(),
        id,
        namespace: crate::cluster::DEFAULT_NAMESPACE.to_string(),
        module,
        entry,
        root,
        starter: Starter {
            subject: "local".into(),
            role: crate::security::Role::ClusterAdmin,
        },
        grant,
        schedule: None,
    }
}
