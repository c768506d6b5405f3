//! `prism job tasks`, `prism job task`, `prism job failures` and `prism
//! job timeline`: a job's task records, printed or written as a trace.

use super::output::escape_terminal;
use prism_client::v1::{TaskAttempt, TaskInfo};
use std::collections::BTreeMap;
use std::path::Path;

/// Milliseconds between two unix-microsecond times, for a column.
fn ms(from: u64, to: u64) -> String {
    if from == 0 || to == 0 || to < from {
        return "-".into();
    }
    format!("{:.1}ms", (to - from) as f64 / 1000.0)
}

/// Where an attempt ran: `node/cpu N` (or `gpu D`, or the actor).
fn place(task: &TaskInfo, attempt: &TaskAttempt) -> String {
    if task.kind == "actor_call" {
        return format!("{}/actor", attempt.node);
    }
    match attempt.gpus.first() {
        Some(gpu) => format!("{}/gpu {gpu}", attempt.node),
        None => format!("{}/cpu {}", attempt.node, attempt.slot),
    }
}

/// Prints one line per task; `unrecorded` tasks are mentioned at the end.
pub(super) fn print_tasks(tasks: &[TaskInfo], unrecorded: u64) -> anyhow::Result<()> {
    outln!(
        "{:<32}  {:<24} {:<9} {:<18} {:>3} {:>9} {:>9}  CAUSE",
        "TASK",
        "FUNCTION",
        "STATE",
        "WHERE",
        "TRY",
        "WAITED",
        "RAN"
    )?;
    for task in tasks {
        let last = task.attempts.last();
        let first_start = task.attempts.first().map_or(0, |a| a.started_us);
        outln!(
            "{:<32}  {:<24} {:<9} {:<18} {:>3} {:>9} {:>9}  {}",
            escape_terminal(&task.task_id),
            escape_terminal(&task.function),
            escape_terminal(&task.state),
            last.map_or("-".into(), |a| escape_terminal(&place(task, a))
                .into_owned()),
            task.attempts.len(),
            ms(task.submitted_us, first_start),
            last.map_or("-".into(), |a| ms(a.started_us, a.ended_us)),
            escape_terminal(&task.error_kind),
        )?;
    }
    let failed = tasks.iter().filter(|t| t.state == "failed").count();
    outln!("{} tasks, {failed} failed", tasks.len())?;
    if unrecorded > 0 {
        outln!("{unrecorded} more were not recorded (past the per-job bound of a node)")?;
    }
    Ok(())
}

/// Prints everything recorded of one task.
pub(super) fn print_task(task: &TaskInfo, job: &str) -> anyhow::Result<()> {
    let e = |s: &str| escape_terminal(s).into_owned();
    outln!("task       {}", e(&task.task_id))?;
    outln!("job        {}", e(job))?;
    outln!("function   {} ({})", e(&task.function), e(&task.kind))?;
    if !task.actor_id.is_empty() {
        outln!("actor      {}", e(&task.actor_id))?;
    }
    outln!("state      {}", e(&task.state))?;
    outln!("submitted  on {}", e(&task.node))?;
    outln!("arguments  {} bytes by value", task.args_bytes)?;
    if task.depends_on.is_empty() {
        outln!("depends on nothing")?;
    } else {
        outln!("depends on {}", e(&task.depends_on.join(", ")))?;
    }
    if task.ended_us > 0 {
        outln!("took       {}", ms(task.submitted_us, task.ended_us))?;
    }
    for a in &task.attempts {
        let blocked: u64 = a
            .blocked
            .iter()
            .map(|s| s.end_us.max(s.start_us) - s.start_us)
            .sum::<u64>()
            + a.blocked_more_us;
        outln!(
            "attempt {}  on {}: waited {}, ran {}, blocked {:.1}ms, {}",
            a.attempt,
            e(&place(task, a)),
            ms(a.queued_us.max(task.submitted_us), a.started_us),
            ms(a.started_us, a.ended_us),
            blocked as f64 / 1000.0,
            if a.outcome.is_empty() {
                "running".to_string()
            } else {
                e(&a.outcome)
            },
        )?;
    }
    if task.attempts_unrecorded > 0 {
        outln!("({} more attempts not recorded)", task.attempts_unrecorded)?;
    }
    if !task.error_kind.is_empty() {
        outln!("error      {}: {}", e(&task.error_kind), e(&task.error))?;
    }
    if !task.output.is_empty() {
        outln!("output (last lines):")?;
        for line in &task.output {
            outln!("  {}", e(line))?;
        }
    }
    Ok(())
}

/// Prints a job's failed tasks grouped by cause, each with its error
/// chain and last output lines.
pub(super) fn print_failures(tasks: &[TaskInfo]) -> anyhow::Result<()> {
    let mut by_cause: BTreeMap<&str, Vec<&TaskInfo>> = BTreeMap::new();
    for task in tasks.iter().filter(|t| t.state == "failed") {
        by_cause.entry(&task.error_kind).or_default().push(task);
    }
    if by_cause.is_empty() {
        outln!("no failed tasks")?;
        return Ok(());
    }
    for (cause, failed) in &by_cause {
        outln!("{}: {} tasks", escape_terminal(cause), failed.len())?;
        for task in failed {
            outln!(
                "  {} {}: {}",
                escape_terminal(&task.task_id),
                escape_terminal(&task.function),
                escape_terminal(&task.error)
            )?;
            for line in &task.output {
                outln!("    | {}", escape_terminal(line))?;
            }
        }
    }
    Ok(())
}

/// Writes the job's Chrome trace to `path`; says where and what.
pub(super) fn write_timeline(job: &str, tasks: &[TaskInfo], path: &Path) -> anyhow::Result<()> {
    let trace = crate::events::timeline::chrome_trace(job, tasks);
    let bytes = serde_json::to_vec(&trace)?;
    std::fs::write(path, bytes)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    outln!(
        "wrote the timeline of {} tasks to {} (open it in https://ui.perfetto.dev)",
        tasks.len(),
        path.display()
    )?;
    Ok(())
}
