//! A job's tasks as a Chrome trace (the JSON Perfetto and
//! `chrome://tracing` open): one process per node, one thread per CPU
//! slot (`cpu 0`, `cpu 1`, …), per GPU device (`gpu 0 · 0`, …) and per
//! actor, so a job of 10,000 tasks on a 2-CPU node shows two rows.
//!
//! Each attempt is a complete event (`ph: "X"`) named by its function,
//! with its task id, attempt, outcome and queue wait in `args`; time it
//! spent blocked in `get`/`wait` is a nested `blocked` slice; a
//! dependency is a flow arrow from the end of the task that produced an
//! argument to the start of the task that took it. Times are
//! microseconds since the job's first submission.

use prism_proto::v1 as pb;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// The trace of `tasks` (merged, with slots: [`super::merge::merge`]).
pub fn chrome_trace(job_id: &str, tasks: &[pb::TaskInfo]) -> Value {
    let origin = tasks
        .iter()
        .map(|t| t.submitted_us)
        .filter(|t| *t > 0)
        .min()
        .unwrap_or(0);
    let now = tasks
        .iter()
        .flat_map(|t| t.attempts.iter().map(|a| a.ended_us.max(a.started_us)))
        .max()
        .unwrap_or(origin);
    let rel = |us: u64| us.saturating_sub(origin);
    let mut lanes = Lanes::default();
    let mut events: Vec<Value> = Vec::new();
    // Where each task's last attempt ran: (pid, tid, end), for the arrows.
    let mut ran_at: HashMap<&str, (u32, u32, u64)> = HashMap::new();
    for task in tasks {
        for attempt in &task.attempts {
            if attempt.started_us == 0 {
                continue;
            }
            let (pid, tid) = lanes.lane(task, attempt);
            let end = if attempt.ended_us == 0 {
                now
            } else {
                attempt.ended_us
            };
            let wait = attempt.queued_us.max(task.submitted_us);
            let mut args = json!({
                "task": task.task_id,
                "attempt": attempt.attempt,
                "state": task.state,
                "outcome": if attempt.outcome.is_empty() { "running" } else { attempt.outcome.as_str() },
                "queue_wait_us": attempt.started_us.saturating_sub(wait),
            });
            if !task.error_kind.is_empty() && attempt.outcome != "ok" {
                args["error"] = json!(task.error);
            }
            events.push(json!({
                "name": task.function,
                "cat": task.kind,
                "ph": "X",
                "pid": pid,
                "tid": tid,
                "ts": rel(attempt.started_us),
                "dur": end.saturating_sub(attempt.started_us).max(1),
                "args": args,
            }));
            for span in &attempt.blocked {
                let until = if span.end_us == 0 { end } else { span.end_us };
                events.push(json!({
                    "name": "blocked",
                    "cat": "blocked",
                    "ph": "X",
                    "pid": pid,
                    "tid": tid,
                    "ts": rel(span.start_us),
                    "dur": until.saturating_sub(span.start_us).max(1),
                    "args": {"task": task.task_id},
                }));
            }
            ran_at.insert(task.task_id.as_str(), (pid, tid, end));
        }
    }
    let mut flow = 0u64;
    for task in tasks {
        let Some(first) = task.attempts.iter().find(|a| a.started_us != 0) else {
            continue;
        };
        let (pid, tid) = lanes.lane(task, first);
        for dep in &task.depends_on {
            let Some((from_pid, from_tid, end)) = ran_at.get(dep.as_str()) else {
                continue;
            };
            flow += 1;
            events.push(json!({
                "name": "argument", "cat": "dependency", "ph": "s", "id": flow,
                "pid": from_pid, "tid": from_tid, "ts": rel(end.saturating_sub(1)),
            }));
            events.push(json!({
                "name": "argument", "cat": "dependency", "ph": "f", "bp": "e", "id": flow,
                "pid": pid, "tid": tid, "ts": rel(first.started_us),
            }));
        }
    }
    let mut metadata = lanes.metadata();
    metadata.extend(events);
    json!({
        "traceEvents": metadata,
        "displayTimeUnit": "ms",
        "otherData": {"job": job_id, "tasks": tasks.len(), "origin_unix_us": origin},
    })
}

/// Processes (nodes) and threads (slots, GPUs, actors), numbered as met.
#[derive(Default)]
struct Lanes {
    nodes: BTreeMap<String, u32>,
    /// (pid, thread name) → tid.
    threads: BTreeMap<(u32, String), u32>,
}

impl Lanes {
    fn lane(&mut self, task: &pb::TaskInfo, attempt: &pb::TaskAttempt) -> (u32, u32) {
        let next_pid = self.nodes.len() as u32 + 1;
        let pid = *self.nodes.entry(attempt.node.clone()).or_insert(next_pid);
        let name = if task.kind == "actor_call" {
            let class = task.function.split('.').next().unwrap_or_default();
            format!("actor {class} {}", task.actor_id)
        } else if let Some(gpu) = attempt.gpus.first() {
            format!("gpu {gpu} · {}", attempt.slot)
        } else {
            format!("cpu {}", attempt.slot)
        };
        let next_tid = self.threads.len() as u32 + 1;
        let tid = *self.threads.entry((pid, name)).or_insert(next_tid);
        (pid, tid)
    }

    fn metadata(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for (node, pid) in &self.nodes {
            out.push(json!({
                "name": "process_name", "ph": "M", "pid": pid, "tid": 0,
                "args": {"name": format!("node {node}")},
            }));
            out.push(json!({
                "name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0,
                "args": {"sort_index": pid},
            }));
        }
        for ((pid, name), tid) in &self.threads {
            // CPU slots first, in order; then GPUs; then actors.
            let sort = match name.strip_prefix("cpu ") {
                Some(n) => n.parse::<u64>().unwrap_or(0),
                None if name.starts_with("gpu ") => 1_000_000 + u64::from(*tid),
                None => 2_000_000 + u64::from(*tid),
            };
            out.push(json!({
                "name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                "args": {"name": name},
            }));
            out.push(json!({
                "name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid,
                "args": {"sort_index": sort},
            }));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(node: &str, slot: u32, start: u64, end: u64) -> pb::TaskAttempt {
        pb::TaskAttempt {
            node: node.into(),
            slot,
            started_us: start,
            ended_us: end,
            outcome: "ok".into(),
            ..Default::default()
        }
    }

    #[test]
    fn nodes_are_processes_slots_are_threads_and_arguments_are_arrows() {
        let producer = pb::TaskInfo {
            task_id: "p".into(),
            function: "make".into(),
            kind: "task".into(),
            state: "finished".into(),
            submitted_us: 1000,
            attempts: vec![attempt("head", 0, 1010, 1100)],
            ..Default::default()
        };
        let mut blocked = attempt("node-b", 1, 1120, 1300);
        blocked.blocked.push(pb::TimeSpan {
            start_us: 1150,
            end_us: 1250,
        });
        let consumer = pb::TaskInfo {
            task_id: "c".into(),
            function: "use".into(),
            kind: "task".into(),
            state: "finished".into(),
            submitted_us: 1001,
            depends_on: vec!["p".into()],
            attempts: vec![blocked],
            ..Default::default()
        };
        let trace = chrome_trace("job-1", &[producer, consumer]);
        let events = trace["traceEvents"].as_array().unwrap();
        let named = |n: &str| -> Vec<&Value> { events.iter().filter(|e| e["name"] == n).collect() };
        let processes: Vec<&str> = named("process_name")
            .iter()
            .map(|e| e["args"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(processes, vec!["node head", "node node-b"]);
        let threads: Vec<&str> = named("thread_name")
            .iter()
            .map(|e| e["args"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(threads, vec!["cpu 0", "cpu 1"]);
        let make = named("make")[0];
        assert_eq!(make["ts"], 10);
        assert_eq!(make["dur"], 90);
        let blocked = named("blocked")[0];
        assert_eq!(blocked["ts"], 150);
        assert_eq!(blocked["dur"], 100);
        assert_eq!(named("argument").len(), 2);
        let start = events.iter().find(|e| e["ph"] == "s").unwrap();
        let end = events.iter().find(|e| e["ph"] == "f").unwrap();
        assert_eq!(start["pid"], make["pid"]);
        assert_eq!(end["ts"], 120);
        assert_eq!(end["bp"], "e");
    }
}
