//! One record per task from what every node recorded, with CPU slots.
//!
//! A task's record lives on the node it was submitted on; an attempt
//! placed on another node is recorded there too (`from_peer`), with what
//! only that node saw (its queue, its start and end, its blocked time).
//! [`merge`] keeps the submitting node's record and takes each attempt
//! from the node that ran it. [`assign_slots`] then numbers each node's
//! CPU slots: an attempt goes to the lowest slot free when it started,
//! so a node shows as many rows as it ran tasks at once, not one per
//! task or worker.

use prism_proto::v1 as pb;
use std::collections::HashMap;

/// The records of one job from every node, one per task, in submission
/// order, with slots assigned.
pub fn merge(records: impl IntoIterator<Item = pb::TaskInfo>) -> Vec<pb::TaskInfo> {
    let mut order: Vec<String> = Vec::new();
    let mut primary: HashMap<String, pb::TaskInfo> = HashMap::new();
    let mut placed: HashMap<String, Vec<pb::TaskAttempt>> = HashMap::new();
    for record in records {
        if record.from_peer {
            placed
                .entry(record.task_id.clone())
                .or_default()
                .extend(record.attempts.iter().cloned());
            if primary.contains_key(&record.task_id) {
                continue;
            }
            // No record from the submitting node (yet): this one stands
            // in, unless the submitting node's comes later.
            order.push(record.task_id.clone());
            primary.insert(record.task_id.clone(), record);
            continue;
        }
        match primary.get(&record.task_id) {
            Some(existing) if !existing.from_peer => {
                // Submitted twice on one node (cannot happen for one
                // result): the first stays.
            }
            Some(_) => {
                primary.insert(record.task_id.clone(), record);
            }
            None => {
                order.push(record.task_id.clone());
                primary.insert(record.task_id.clone(), record);
            }
        }
    }
    let mut out: Vec<pb::TaskInfo> = order
        .into_iter()
        .filter_map(|id| {
            let mut record = primary.remove(&id)?;
            if let Some(attempts) = placed.remove(&id) {
                for attempt in attempts {
                    match record
                        .attempts
                        .iter_mut()
                        .find(|a| a.attempt == attempt.attempt)
                    {
                        // The runner's own account replaces "placed there".
                        Some(mine) if mine.node == attempt.node || mine.ended_us == 0 => {
                            *mine = attempt
                        }
                        Some(mine) => {
                            // The runner saw it end before the placing
                            // node did: keep the runner's times, the
                            // placing node's outcome.
                            let outcome = std::mem::take(&mut mine.outcome);
                            *mine = attempt;
                            if mine.outcome.is_empty() {
                                mine.outcome = outcome;
                            }
                        }
                        None => record.attempts.push(attempt),
                    }
                }
                record.attempts.sort_by_key(|a| a.attempt);
            }
            record.from_peer = false;
            Some(record)
        })
        .collect();
    out.sort_by_key(|t| t.submitted_us);
    assign_slots(&mut out);
    out
}

/// One stretch of an attempt that ran on a CPU: from its start or the
/// end of a blocked span to the next blocked span or its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The task's index.
    pub task: usize,
    /// The attempt's index among the task's attempts.
    pub attempt: usize,
    /// Unix microseconds.
    pub start: u64,
    /// Unix microseconds; 0 while it runs.
    pub end: u64,
    /// Its CPU slot on its node (per GPU device for a GPU task).
    pub slot: u32,
}

/// The running stretches of `attempt`: its run minus its blocked spans
/// (`u64::MAX` stands for "still running").
fn stretches(attempt: &pb::TaskAttempt) -> Vec<(u64, u64)> {
    let end = if attempt.ended_us == 0 {
        u64::MAX
    } else {
        attempt.ended_us
    };
    let mut blocked: Vec<(u64, u64)> = attempt
        .blocked
        .iter()
        .map(|b| (b.start_us, if b.end_us == 0 { end } else { b.end_us }))
        .collect();
    blocked.sort_unstable();
    let mut out = Vec::new();
    let mut from = attempt.started_us;
    for (b0, b1) in blocked {
        let b0 = b0.clamp(from, end);
        if b0 > from {
            out.push((from, b0));
        }
        from = from.max(b1.min(end));
    }
    if end > from {
        out.push((from, end));
    }
    out
}

/// Every task attempt's running stretches (not actor calls', which show
/// on their actor's row), each in a CPU slot: per node (and per GPU
/// device), a stretch takes the lowest slot free at its start. A guest
/// blocked in `get`/`wait` lends its CPU, so a node shows about as many
/// slots as it has CPUs, however many guests wait, and a task's
/// stretches before and after a wait may sit in different slots.
pub fn segments(tasks: &[pb::TaskInfo]) -> Vec<Segment> {
    // (node, lane group, start, end, task, attempt)
    let mut runs: Vec<(&str, i64, u64, u64, usize, usize)> = Vec::new();
    for (t, task) in tasks.iter().enumerate() {
        if task.kind == "actor_call" {
            continue;
        }
        for (a, attempt) in task.attempts.iter().enumerate() {
            if attempt.started_us == 0 {
                continue;
            }
            let group = attempt.gpus.first().map_or(-1, |g| i64::from(*g));
            for (start, end) in stretches(attempt) {
                runs.push((&attempt.node, group, start, end, t, a));
            }
        }
    }
    runs.sort_unstable();
    let mut lanes: HashMap<(&str, i64), Vec<u64>> = HashMap::new();
    let mut out = Vec::with_capacity(runs.len());
    for (node, group, start, end, task, attempt) in runs {
        let ends = lanes.entry((node, group)).or_default();
        let slot = match ends.iter().position(|free_at| *free_at <= start) {
            Some(slot) => {
                ends[slot] = end;
                slot
            }
            None => {
                ends.push(end);
                ends.len() - 1
            }
        };
        out.push(Segment {
            task,
            attempt,
            start,
            end: if end == u64::MAX { 0 } else { end },
            slot: u32::try_from(slot).unwrap_or(u32::MAX),
        });
    }
    out
}

/// Sets each attempt's slot: that of its first running stretch
/// ([`segments`]). Actor calls keep slot 0.
pub fn assign_slots(tasks: &mut [pb::TaskInfo]) {
    let mut first: HashMap<(usize, usize), (u64, u32)> = HashMap::new();
    for s in segments(tasks) {
        let entry = first
            .entry((s.task, s.attempt))
            .or_insert((s.start, s.slot));
        if s.start < entry.0 {
            *entry = (s.start, s.slot);
        }
    }
    for ((t, a), (_, slot)) in first {
        tasks[t].attempts[a].slot = slot;
    }
}

/// Ends the records of calls still unfinished when their job ended at
/// `ended_us` (unix microseconds): the job's end cancelled them, whatever
/// their nodes say later. An archived job's records are final.
pub fn end_unfinished(tasks: &mut [pb::TaskInfo], ended_us: u64) {
    for task in tasks {
        if task.state == "finished" || task.state == "failed" {
            continue;
        }
        task.state = "failed".to_string();
        task.error_kind = "cancelled".to_string();
        task.error = "the job ended before this call did".to_string();
        task.ended_us = ended_us.max(task.submitted_us);
        for attempt in &mut task.attempts {
            if attempt.ended_us == 0 {
                attempt.ended_us = ended_us.max(attempt.started_us);
                attempt.outcome = "cancelled".to_string();
            }
            for span in &mut attempt.blocked {
                if span.end_us == 0 {
                    span.end_us = attempt.ended_us;
                }
            }
        }
    }
}

/// Tasks per [`pb::TaskPage`] (200).
pub const PAGE_TASKS: usize = 200;

/// `tasks` in pages of [`PAGE_TASKS`] (at least one page), the first
/// carrying `unrecorded`.
pub fn pages(job_id: &str, tasks: Vec<pb::TaskInfo>, unrecorded: u64) -> Vec<pb::TaskPage> {
    let mut pages: Vec<pb::TaskPage> = Vec::with_capacity(tasks.len() / PAGE_TASKS + 1);
    let mut tasks = tasks.into_iter().peekable();
    loop {
        let page: Vec<pb::TaskInfo> = tasks.by_ref().take(PAGE_TASKS).collect();
        if page.is_empty() && !pages.is_empty() {
            break;
        }
        pages.push(pb::TaskPage {
            tasks: page,
            unrecorded: if pages.is_empty() { unrecorded } else { 0 },
            job_id: job_id.to_string(),
        });
        if tasks.peek().is_none() {
            break;
        }
    }
    pages
}

/// Whether `task` passes the filters of a ListTasks request.
pub fn matches(task: &pb::TaskInfo, state: &str, cause: &str, task_id: &str) -> bool {
    (state.is_empty() || task.state == state)
        && (cause.is_empty() || task.error_kind == cause)
        && (task_id.is_empty() || task.task_id == task_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(n: u32, node: &str, start: u64, end: u64) -> pb::TaskAttempt {
        pb::TaskAttempt {
            attempt: n,
            node: node.into(),
            started_us: start,
            ended_us: end,
            outcome: "ok".into(),
            ..Default::default()
        }
    }

    fn task(id: &str, node: &str, submitted: u64, attempts: Vec<pb::TaskAttempt>) -> pb::TaskInfo {
        pb::TaskInfo {
            task_id: id.into(),
            function: "f".into(),
            kind: "task".into(),
            state: "finished".into(),
            node: node.into(),
            submitted_us: submitted,
            attempts,
            ..Default::default()
        }
    }

    #[test]
    fn the_runner_s_attempt_replaces_the_placing_node_s() {
        let mut placed = attempt(0, "node-b", 10, 50);
        placed.outcome = "ok".into();
        let head = task("t1", "head", 1, vec![placed]);
        let mut ran = attempt(0, "node-b", 12, 48);
        ran.blocked.push(pb::TimeSpan {
            start_us: 20,
            end_us: 30,
        });
        let mut peer = task("t1", "node-b", 11, vec![ran]);
        peer.from_peer = true;
        // Either order: the peer's record may be gathered first.
        for records in [vec![head.clone(), peer.clone()], vec![peer, head]] {
            let merged = merge(records);
            assert_eq!(merged.len(), 1);
            let t = &merged[0];
            assert_eq!(t.node, "head");
            assert!(!t.from_peer);
            assert_eq!(t.attempts.len(), 1);
            assert_eq!(t.attempts[0].started_us, 12);
            assert_eq!(t.attempts[0].blocked.len(), 1);
        }
    }

    #[test]
    fn a_retry_on_another_node_is_a_second_attempt() {
        let mut first = attempt(0, "head", 10, 20);
        first.outcome = "worker_died".into();
        let head = task("t1", "head", 1, vec![first, attempt(1, "node-b", 30, 40)]);
        let mut peer = task("t1", "node-b", 29, vec![attempt(1, "node-b", 31, 39)]);
        peer.from_peer = true;
        let merged = merge([head, peer]);
        let attempts = &merged[0].attempts;
        assert_eq!(attempts.len(), 2);
        assert_eq!(attempts[0].outcome, "worker_died");
        assert_eq!(attempts[1].started_us, 31);
    }

    #[test]
    fn slots_are_as_many_as_ran_at_once_per_node() {
        // Three tasks overlap on the head, then a fourth reuses slot 0;
        // one on node-b starts its own slot 0.
        let mut tasks = vec![
            task("a", "head", 0, vec![attempt(0, "head", 1, 10)]),
            task("b", "head", 0, vec![attempt(0, "head", 2, 20)]),
            task("c", "head", 0, vec![attempt(0, "head", 3, 5)]),
            task("d", "head", 0, vec![attempt(0, "head", 10, 30)]),
            task("e", "head", 0, vec![attempt(0, "node-b", 3, 9)]),
        ];
        assign_slots(&mut tasks);
        let slots: Vec<u32> = tasks.iter().map(|t| t.attempts[0].slot).collect();
        assert_eq!(slots, vec![0, 1, 2, 0, 0]);
    }

    #[test]
    fn a_thousand_short_tasks_one_at_a_time_share_one_slot() {
        let mut tasks: Vec<pb::TaskInfo> = (0..1000u64)
            .map(|i| {
                task(
                    &i.to_string(),
                    "head",
                    i,
                    vec![attempt(0, "head", i * 10 + 1, i * 10 + 11)],
                )
            })
            .collect();
        assign_slots(&mut tasks);
        assert!(tasks.iter().all(|t| t.attempts[0].slot == 0));
    }

    #[test]
    fn a_blocked_guest_lends_its_slot_to_the_tasks_it_waits_for() {
        // The parent runs 1-10, waits 10-50 for two children, runs 50-60;
        // on a node with one CPU everything fits in slot 0.
        let mut parent = attempt(0, "head", 1, 60);
        parent.blocked.push(pb::TimeSpan {
            start_us: 10,
            end_us: 50,
        });
        let tasks = vec![
            task("p", "head", 0, vec![parent]),
            task("a", "head", 0, vec![attempt(0, "head", 11, 30)]),
            task("b", "head", 0, vec![attempt(0, "head", 30, 49)]),
        ];
        let segments = segments(&tasks);
        assert_eq!(segments.len(), 4);
        assert!(segments.iter().all(|s| s.slot == 0), "{segments:?}");
        let parent: Vec<(u64, u64)> = segments
            .iter()
            .filter(|s| s.task == 0)
            .map(|s| (s.start, s.end))
            .collect();
        assert_eq!(parent, vec![(1, 10), (50, 60)]);
    }

    #[test]
    fn calls_unfinished_when_their_job_ended_are_archived_cancelled() {
        let mut running = task("r", "head", 5, vec![attempt(0, "head", 10, 0)]);
        running.state = "running".into();
        running.attempts[0].outcome.clear();
        running.attempts[0].blocked.push(pb::TimeSpan {
            start_us: 20,
            end_us: 0,
        });
        let done = task("d", "head", 5, vec![attempt(0, "head", 10, 30)]);
        let mut tasks = vec![running, done.clone()];
        end_unfinished(&mut tasks, 100);
        assert_eq!(tasks[0].state, "failed");
        assert_eq!(tasks[0].error_kind, "cancelled");
        assert_eq!(tasks[0].ended_us, 100);
        assert_eq!(tasks[0].attempts[0].ended_us, 100);
        assert_eq!(tasks[0].attempts[0].outcome, "cancelled");
        assert_eq!(tasks[0].attempts[0].blocked[0].end_us, 100);
        assert_eq!(tasks[1], done);
    }

    #[test]
    fn filters_match_state_cause_and_id() {
        let mut failed = task("x", "head", 0, vec![]);
        failed.state = "failed".into();
        failed.error_kind = "panic".into();
        assert!(matches(&failed, "failed", "panic", ""));
        assert!(matches(&failed, "", "", "x"));
        assert!(!matches(&failed, "finished", "", ""));
        assert!(!matches(&failed, "", "trap", ""));
        assert!(!matches(&failed, "", "", "y"));
    }
}
