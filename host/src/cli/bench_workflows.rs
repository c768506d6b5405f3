//! `prism bench --workflows` (and a section of the full bench): durable
//! workflows on the embedded cluster, with the log in a redb file of its
//! own (every commit a disk sync, as in `head.redb`).
//!
//! - `workflow_step_overhead_ms`: a chain of steps, each continuing with
//!   the next (`countdown`), against the same number of the same kind of
//!   task run one after another without a workflow; the difference per
//!   step is what the engine and the durable log add.
//! - `workflow_fanout_10k_s`: `fan_out(10000)`, 10,002 steps (10,000
//!   squares at once, their sum, the root).
//! - `workflow_resume_10k_ms`: the fan-out after a simulated crash just
//!   before its sum (a new engine on the same log: the workflow RUNNING,
//!   its root continued, its 10,000 squares logged, the sum running): the
//!   time to read the squares back, run the sum and end.

use crate::head::EmbeddedCluster;
use crate::ids::OwnerId;
use crate::task::JobTicket;
use crate::workflow::store::Op;
use crate::workflow::{LocalGrants, Status, StepStatus, WorkflowStore, Workflows};
use anyhow::Context;
use bytes::Bytes;
use prism_abi::workflow::StepNode;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn arg(n: u64) -> Vec<u8> {
    prism_abi::encode_value(&n).unwrap_or_default()
}

async fn run_to_end(
    workflows: &Workflows,
    module: crate::ids::ModuleHash,
    id: &str,
    entry: &str,
    n: u64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let request = super::workflow::local_request(
        module,
        entry.into(),
        StepNode::task(entry, vec![arg(n)]),
        Some(id.into()),
    );
    let record = workflows.start(request).await?;
    let ended = workflows
        .wait(&record.tenant, &record.id, Duration::from_secs(600))
        .await?;
    anyhow::ensure!(
        ended.status == Status::Successful,
        "workflow {id} ended {}: {}",
        ended.status.as_str(),
        ended.error.unwrap_or_default()
    );
    Ok(started.elapsed())
}

/// Measures the workflow figures into `figures`.
pub(super) async fn figures(
    cluster: &EmbeddedCluster,
    quick: bool,
    figures: &mut Map<String, Value>,
) -> anyhow::Result<()> {
    let (chain, fan) = if quick { (200, 2_000) } else { (1_000, 10_000) };
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("workflows.redb");
    let node = cluster.node().clone();
    let module = cluster
        .head()
        .upload_module(Bytes::from_static(prism_guests::WORKFLOWS));
    let store = WorkflowStore::open(&path)?;
    let workflows = Workflows::new(node.clone(), store.clone(), Arc::new(LocalGrants));
    // Compile once, outside any timing.
    run_to_end(&workflows, module, "warm", "countdown", 3).await?;

    // The same tasks without a workflow, one after another.
    let grant = crate::security::JobGrant::local();
    let ticket = Arc::new(JobTicket {
        namespace: crate::security::tenants::NamespaceRef::new(
            &grant.tenant,
            crate::cluster::DEFAULT_NAMESPACE,
        ),
        grant,
        env: None,
        job: None,
    });
    let service = node
        .open_service(OwnerId::random(), module, ticket)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let plain = Instant::now();
    for n in (1..=chain).rev() {
        let options = prism_abi::TaskOptions {
            max_retries: Some(0),
            ..Default::default()
        };
        node.call_context_task(&service, "square", vec![Bytes::from(arg(n))], options)
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    }
    let plain = plain.elapsed();
    node.close_service(&service);
    let chained = run_to_end(&workflows, module, "chain", "countdown", chain).await?;
    let per_step = |d: Duration| d.as_secs_f64() * 1000.0 / chain as f64;
    figures.insert(
        "workflow_step_ms".into(),
        json!(super::bench::round2(per_step(chained))),
    );
    figures.insert(
        "task_sequential_ms".into(),
        json!(super::bench::round2(per_step(plain))),
    );
    figures.insert(
        "workflow_step_overhead_ms".into(),
        json!(super::bench::round2(per_step(chained) - per_step(plain))),
    );

    let fanned = run_to_end(&workflows, module, "fan", "fan_out", fan).await?;
    let key = if quick {
        "workflow_fanout_2k_s"
    } else {
        "workflow_fanout_10k_s"
    };
    figures.insert(
        key.into(),
        json!(super::bench::round2(fanned.as_secs_f64())),
    );

    // A crash just before the sum: a new engine on the same log finds the
    // fan-out RUNNING, its root continued, its 10,000 squares logged and
    // the sum running; it reads the squares back and runs the sum.
    let tenant = crate::security::JobGrant::local().tenant.to_string();
    let mut record = workflows
        .get(&tenant, "fan")
        .context("the fan-out's record")?;
    record.status = Status::Running;
    record.ended_ms = None;
    let mut ops = vec![Op::PutWorkflow(record.clone())];
    for mut step in workflows.steps(&tenant, "fan", usize::MAX)? {
        let status = match step.function.as_str() {
            "fan_out" => StepStatus::Continued,
            "sum" => StepStatus::Running,
            _ => continue,
        };
        step.status = status;
        step.output = None;
        step.ended_ms = None;
        ops.push(Op::PutStep {
            tenant: tenant.clone(),
            workflow: "fan".into(),
            record: step,
        });
    }
    anyhow::ensure!(ops.len() == 3, "the fan-out's root and sum are not logged");
    store.write(ops).await?;
    drop(workflows);
    let again = Workflows::new(node.clone(), store.clone(), Arc::new(LocalGrants));
    let resumed = Instant::now();
    again.recover().await;
    let ended = again
        .wait(&record.tenant, &record.id, Duration::from_secs(600))
        .await?;
    anyhow::ensure!(
        ended.status == Status::Successful,
        "the resumed fan-out failed"
    );
    let key = if quick {
        "workflow_resume_2k_ms"
    } else {
        "workflow_resume_10k_ms"
    };
    figures.insert(
        key.into(),
        json!(super::bench::round2(
            resumed.elapsed().as_secs_f64() * 1000.0
        )),
    );
    Ok(())
}
