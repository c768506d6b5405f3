//! The demo's workflows row: durable workflows on the embedded cluster
//! (their log in memory): a recursive workflow, a caught failure, an
//! event, a virtual actor and a staged pipeline.

use crate::head::EmbeddedCluster;
use crate::workflow::{LocalGrants, Status, WorkflowStore, Workflows};
use prism_abi::workflow::StepNode;
use std::sync::Arc;
use std::time::Duration;

/// The example's many-models pipeline (its `module` is not used here).
const PIPELINE: &str = include_str!("../../../guest-examples/workflows/many-models.yaml");

/// Runs the workflows and checks their outputs; a summary, or what went
/// wrong.
pub(super) async fn workflows(cluster: &EmbeddedCluster) -> Result<String, String> {
    let module = cluster
        .head()
        .upload_module(bytes::Bytes::from_static(prism_guests::WORKFLOWS));
    let store = WorkflowStore::in_memory().map_err(|e| e.to_string())?;
    let workflows = Workflows::new(cluster.node().clone(), store, Arc::new(LocalGrants));
    let start = |id: &str, root: StepNode| {
        let entry = root.label().to_string();
        workflows.start(super::workflow::local_request(
            module,
            entry,
            root,
            Some(id.into()),
        ))
    };
    let task = |entry: &str, args: &str| -> Result<StepNode, String> {
        let args = crate::values::json_args(args).map_err(|e| e.to_string())?;
        Ok(StepNode::task(
            entry,
            args.into_iter().map(|a| a.to_vec()).collect(),
        ))
    };
    let tenant = crate::security::JobGrant::local().tenant.to_string();
    let output = |id: &'static str| {
        let workflows = &workflows;
        let tenant = &tenant;
        async move {
            let ended = workflows
                .wait(tenant, id, Duration::from_secs(120))
                .await
                .map_err(|e| e.to_string())?;
            if ended.status != Status::Successful {
                return Err(format!(
                    "{id} {}: {}",
                    ended.status.as_str(),
                    ended.error.unwrap_or_default()
                ));
            }
            let bytes = workflows
                .output(tenant, id, None)
                .map_err(|e| e.to_string())?;
            crate::values::msgpack_to_json(&bytes).map_err(|e| e.to_string())
        }
    };
    let fail = |e: crate::workflow::WorkflowError| e.to_string();
    start("factorial", task("factorial", "[5]")?)
        .await
        .map_err(fail)?;
    start("caught", task("caught", r#"["demo"]"#)?)
        .await
        .map_err(fail)?;
    start("greet", task("wait_and_greet", r#"["demo"]"#)?)
        .await
        .map_err(fail)?;
    start("counter", task("count_to", r#"["demo-counter", 3, 10]"#)?)
        .await
        .map_err(fail)?;
    let pipeline =
        crate::workflow::pipeline::Pipeline::parse(PIPELINE).map_err(|e| e.to_string())?;
    start("many-models", pipeline.root().map_err(|e| e.to_string())?)
        .await
        .map_err(fail)?;
    let payload = prism_abi::encode_value(&"approved").map_err(|e| e.to_string())?;
    workflows
        .signal(&tenant, "greet", "approval", payload.into())
        .await
        .map_err(fail)?;
    let factorial = output("factorial").await?;
    let steps = workflows
        .steps(&tenant, "factorial", 100)
        .map_err(fail)?
        .len();
    let caught = output("caught").await?;
    let greet = output("greet").await?;
    let counter = output("counter").await?;
    let trained = output("many-models").await?;
    let summary = format!(
        "factorial(5) = {factorial} in {steps} steps; {caught}; event → {greet}; virtual counter {counter}; pipeline trained {trained} keys"
    );
    let expected = factorial == 120
        && steps == 9
        && caught == "caught: boom"
        && greet == "approved, demo"
        && counter == 30
        && trained == 180;
    if expected { Ok(summary) } else { Err(summary) }
}
