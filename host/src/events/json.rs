//! A task record as JSON, for `prism job tasks --json` and the
//! dashboard.

use prism_proto::v1::TaskInfo;
use serde_json::{Value, json};

/// A task as JSON (`prism job tasks --json`, the dashboard).
pub fn task_json(task: &TaskInfo) -> Value {
    json!({
        "task_id": task.task_id,
        "function": task.function,
        "kind": task.kind,
        "state": task.state,
        "node": task.node,
        "actor_id": task.actor_id,
        "args_bytes": task.args_bytes,
        "depends_on": task.depends_on,
        "submitted_us": task.submitted_us,
        "ended_us": task.ended_us,
        "error_kind": task.error_kind,
        "error": task.error,
        "output": task.output,
        "attempts": task.attempts.iter().map(|a| json!({
            "attempt": a.attempt,
            "node": a.node,
            "slot": a.slot,
            "gpus": a.gpus,
            "queued_us": a.queued_us,
            "started_us": a.started_us,
            "ended_us": a.ended_us,
            "outcome": a.outcome,
            "blocked": a.blocked.iter().map(|s| json!([s.start_us, s.end_us])).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}
