//! The demo's task-events row: a job's tasks as the node recorded them,
//! its failures by cause, and its timeline written for Perfetto.

use crate::head::EmbeddedCluster;
use crate::values::json_args;
use std::collections::BTreeMap;

/// Runs tree-reduce and the failures example again, reads back their
/// task records, and writes tree-reduce's timeline next to the system's
/// temporary files; a summary, or what went wrong.
pub(super) async fn task_events(cluster: &EmbeddedCluster) -> Result<String, String> {
    let run = |module: &'static [u8], args: &'static str| async move {
        let args = json_args(args).map_err(|e| e.to_string())?;
        let outcome = cluster
            .run(module, "main", args)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(cluster.head().job_tasks(outcome.id).await)
    };
    let (reduce, _) = run(prism_guests::TREE_REDUCE, "[65536, 1024]").await?;
    let (failures, _) = run(prism_guests::FAILURES, "[]").await?;
    let rows: std::collections::BTreeSet<(String, u32)> = reduce
        .iter()
        .flat_map(|t| t.attempts.iter().map(|a| (a.node.clone(), a.slot)))
        .collect();
    let mut causes: BTreeMap<&str, usize> = BTreeMap::new();
    for task in failures.iter().filter(|t| t.state == "failed") {
        *causes.entry(task.error_kind.as_str()).or_default() += 1;
    }
    let path = std::env::temp_dir().join("prism-demo-timeline.json");
    let trace = crate::events::timeline::chrome_trace("tree-reduce", &reduce);
    let bytes = serde_json::to_vec(&trace).map_err(|e| e.to_string())?;
    std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let causes_text: Vec<String> = causes.iter().map(|(c, n)| format!("{c}×{n}")).collect();
    let summary = format!(
        "tree-reduce: {} tasks on {} slot rows, timeline in {}; failures: {}",
        reduce.len(),
        rows.len(),
        path.display(),
        causes_text.join(" ")
    );
    let finished = reduce.iter().all(|t| t.state == "finished");
    if reduce.len() >= 64 && finished && !causes.is_empty() && rows.len() < reduce.len() {
        Ok(summary)
    } else {
        Err(summary)
    }
}
