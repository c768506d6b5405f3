//! A job's tasks as a Chrome trace (the JSON Perfetto and
//! `chrome://tracing` open): one process per node, one thread per CPU
//! slot (`cpu 0`, `cpu 1`, …), per GPU device (`gpu 0 · 0`, …) and per
//! actor, so a job of 10,000 tasks on a 2-CPU node shows two rows.
//!
//! Each stretch a task ran on a CPU ([`super::merge::segments`]) is a
//! complete event (`ph: "X"`) named by its function, with its task id,
//! attempt, outcome and queue wait in `args`. A task blocked in
//! `get`/`wait` lends its CPU: its waits are async slices ("waiting in
//! get/wait") of its node, which Perfetto stacks in a track of their
//! own, so the CPU rows stay as many as the node's CPUs. An actor call
//! sits on its actor's row, its waits nested `blocked` slices. A
//! dependency is a flow arrow from the end of the task that produced an
//! argument to the start of the task that took it. Times are
//! microseconds since the job's first submission.

use prism_proto::v1 as pb;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// The trace of `tasks` (merged: [`super::merge::merge`]).
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
    let or_now = |us: u64| if us == 0 { now } else { us };
    let mut lanes = Lanes::default();
    let mut events: Vec<Value> = Vec::new();
    // Where each task first started and last ran: (pid, tid, time), for
    // the arrows.
    let mut first_at: HashMap<&str, (u32, u32, u64)> = HashMap::new();
    let mut last_at: HashMap<&str, (u32, u32, u64)> = HashMap::new();
    let mut flow = 0u64;
    let slice = |task: &pb::TaskInfo, attempt: &pb::TaskAttempt, pid, tid, start: u64, end: u64| {
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
        json!({
            "name": task.function,
            "cat": task.kind,
            "ph": "X",
            "pid": pid,
            "tid": tid,
            "ts": rel(start),
            "dur": end.saturating_sub(start).max(1),
            "args": args,
        })
    };
    // Tasks and drivers: their running stretches, in CPU slots.
    for segment in super::merge::segments(tasks) {
        let task = &tasks[segment.task];
        let attempt = &task.attempts[segment.attempt];
        let (pid, tid) = lanes.lane(&attempt.node, slot_name(attempt, segment.slot));
        let end = or_now(segment.end);
        events.push(slice(task, attempt, pid, tid, segment.start, end));
        let id = task.task_id.as_str();
        if first_at.get(id).is_none_or(|f| segment.start < f.2) {
            first_at.insert(id, (pid, tid, segment.start));
        }
        if last_at.get(id).is_none_or(|l| end >= l.2) {
            last_at.insert(id, (pid, tid, end));
        }
    }
    for task in tasks {
        for attempt in task.attempts.iter().filter(|a| a.started_us != 0) {
            let end = or_now(attempt.ended_us);
            if task.kind == "actor_call" {
                // An actor call: on its actor's row, blocked time nested.
                let class = task.function.split('.').next().unwrap_or_default();
                let (pid, tid) =
                    lanes.lane(&attempt.node, format!("actor {class} {}", task.actor_id));
                events.push(slice(task, attempt, pid, tid, attempt.started_us, end));
                for span in &attempt.blocked {
                    events.push(json!({
                        "name": "blocked", "cat": "blocked", "ph": "X", "pid": pid, "tid": tid,
                        "ts": rel(span.start_us),
                        "dur": or_now(span.end_us).min(end).saturating_sub(span.start_us).max(1),
                        "args": {"task": task.task_id},
                    }));
                }
                let id = task.task_id.as_str();
                first_at.entry(id).or_insert((pid, tid, attempt.started_us));
                last_at.insert(id, (pid, tid, end));
                continue;
            }
            // A task's time blocked in get/wait: an async slice of its
            // node (Perfetto stacks overlapping ones in one track).
            let pid = lanes.node(&attempt.node);
            for span in &attempt.blocked {
                flow += 1;
                let common = json!({
                    "name": "waiting in get/wait", "cat": "blocked", "id": flow, "pid": pid, "tid": 0,
                });
                let mut begin = common.clone();
                begin["ph"] = json!("b");
                begin["ts"] = json!(rel(span.start_us));
                begin["args"] = json!({"task": task.task_id, "function": task.function});
                let mut finish = common;
                finish["ph"] = json!("e");
                finish["ts"] = json!(rel(or_now(span.end_us).min(end)));
                events.push(begin);
                events.push(finish);
            }
        }
    }
    // Arguments: from the end of the producer to the start of the taker.
    for task in tasks {
        let Some(&(pid, tid, start)) = first_at.get(task.task_id.as_str()) else {
            continue;
        };
        for dep in &task.depends_on {
            let Some(&(from_pid, from_tid, end)) = last_at.get(dep.as_str()) else {
                continue;
            };
            flow += 1;
            events.push(json!({
                "name": "argument", "cat": "dependency", "ph": "s", "id": flow,
                "pid": from_pid, "tid": from_tid, "ts": rel(end.saturating_sub(1)),
            }));
            events.push(json!({
                "name": "argument", "cat": "dependency", "ph": "f", "bp": "e", "id": flow,
                "pid": pid, "tid": tid, "ts": rel(start),
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

/// The row of a task's stretch in `slot`: `cpu N`, or `gpu D · N` (the
/// trace's threads, the dashboard's rows).
pub fn slot_name(attempt: &pb::TaskAttempt, slot: u32) -> String {
    match attempt.gpus.first() {
        Some(gpu) => format!("gpu {gpu} · {slot}"),
        None => format!("cpu {slot}"),
    }
}

/// Processes (nodes) and threads (slots, GPUs, actors), numbered as met.
#[derive(Default)]
struct Lanes {
    nodes: BTreeMap<String, u32>,
    /// (pid, thread name) → tid.
    threads: BTreeMap<(u32, String), u32>,
}

impl Lanes {
    fn node(&mut self, node: &str) -> u32 {
        let next = self.nodes.len() as u32 + 1;
        *self.nodes.entry(node.to_string()).or_insert(next)
    }

    fn lane(&mut self, node: &str, name: String) -> (u32, u32) {
        let pid = self.node(node);
        let next = self.threads.len() as u32 + 1;
        let tid = *self.threads.entry((pid, name)).or_insert(next);
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
        // Slots are counted per node: each node ran one task at a time.
        assert_eq!(threads, vec!["cpu 0", "cpu 0"]);
        let make = named("make")[0];
        assert_eq!(make["ts"], 10);
        assert_eq!(make["dur"], 90);
        // The consumer ran 120-150 and 250-300, waiting in between.
        let used: Vec<(u64, u64)> = named("use")
            .iter()
            .map(|e| (e["ts"].as_u64().unwrap(), e["dur"].as_u64().unwrap()))
            .collect();
        assert_eq!(used, vec![(120, 30), (250, 50)]);
        let wait = named("waiting in get/wait");
        assert_eq!(wait.len(), 2);
        assert_eq!(wait[0]["ph"], "b");
        assert_eq!(wait[0]["ts"], 150);
        assert_eq!(wait[1]["ph"], "e");
        assert_eq!(wait[1]["ts"], 250);
        assert_eq!(named("argument").len(), 2);
        let start = events.iter().find(|e| e["ph"] == "s").unwrap();
        let end = events.iter().find(|e| e["ph"] == "f").unwrap();
        assert_eq!(start["pid"], make["pid"]);
        assert_eq!(end["ts"], 120);
        assert_eq!(end["bp"], "e");
    }
}
