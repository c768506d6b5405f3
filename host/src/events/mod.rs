//! Task events: what became of every task, driver and actor call of a
//! job, recorded by each node in a bounded per-job buffer and gathered by
//! the head (`prism job tasks`, `prism job task`, `prism job timeline`).
//!
//! Each call is one [`TaskTrace`]: made when the call is submitted on a
//! node (or, for an actor call, when it reaches the actor), then told of
//! each transition — queued (its arguments ready), started on this node
//! or placed on another, blocked and resumed (in `get`/`wait`), ended
//! (an attempt), finished or failed with its cause. An attempt another
//! node placed here gets a trace here too, marked `from_peer`; the head
//! merges the records of one task from every node ([`merge`]).
//!
//! Bounds, per job and node: [`MAX_TASKS_PER_JOB`] records (more are
//! counted, not kept) and [`MAX_DETAIL_BYTES`] of error messages and
//! output lines (past it, failures keep their cause but not their text).
//! A job's records stay [`RETAIN_AFTER_END`] after it ended here, for the
//! head to gather; the head keeps them with the job's log.
//!
//! Files: `mod.rs` (the registry and the recorder), `merge.rs` (one
//! record per task, CPU slots), `timeline.rs` (the Chrome trace),
//! `json.rs` (a record as JSON).

pub mod json;
pub mod merge;
pub mod timeline;

use crate::ids::{JobId, ObjectId};
use crate::sync::MutexExt;
use prism_abi::{ErrorKind, WireError};
use prism_proto::v1 as pb;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Records one node keeps per job (20,000); later calls are counted as
/// unrecorded.
pub const MAX_TASKS_PER_JOB: usize = 20_000;

/// Bytes of error text and output lines one node keeps per job (8 MiB).
pub const MAX_DETAIL_BYTES: usize = 8 << 20;

/// How long a node keeps a job's records after the job ended there (60 s).
pub const RETAIN_AFTER_END: Duration = Duration::from_secs(60);

/// Ended jobs remembered so that a late call does not record again.
const MAX_ENDED_JOBS: usize = 4096;

/// Jobs one node keeps records of at once (4,096); a call of another job
/// past it is not recorded.
const MAX_LIVE_JOBS: usize = 4096;

/// Dependencies listed per task.
const MAX_DEPENDENCIES: usize = 16;
/// Attempts kept per task (the first ones).
const MAX_ATTEMPTS: usize = 16;
/// Blocked spans kept per attempt.
const MAX_BLOCKED_SPANS: usize = 32;
/// Characters of a function name kept.
const MAX_FUNCTION_CHARS: usize = 256;
/// Bytes of an error message kept.
const MAX_ERROR_BYTES: usize = 2048;

/// Unix time in microseconds, read from one monotonic clock per node.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base: Instant,
    unix_us: u64,
}

impl Clock {
    /// A clock reading the system time once.
    pub fn new() -> Self {
        let unix_us = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        Clock {
            base: Instant::now(),
            unix_us,
        }
    }

    /// Now.
    pub fn now_us(&self) -> u64 {
        self.at(Instant::now())
    }

    /// `instant` in unix microseconds.
    pub fn at(&self, instant: Instant) -> u64 {
        let since = instant.saturating_duration_since(self.base).as_micros();
        self.unix_us
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// What kind of call a trace is of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// A task.
    Task,
    /// A job's driver.
    Driver,
    /// A method call on an actor.
    ActorCall,
}

impl CallKind {
    fn as_str(self) -> &'static str {
        match self {
            CallKind::Task => "task",
            CallKind::Driver => "driver",
            CallKind::ActorCall => "actor_call",
        }
    }
}

/// Where a call stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Waiting,
    Queued,
    Running,
    Retrying,
    Finished,
    Failed,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Waiting => "waiting",
            State::Queued => "queued",
            State::Running => "running",
            State::Retrying => "retrying",
            State::Finished => "finished",
            State::Failed => "failed",
        }
    }
}

/// The states a filter may name.
pub const STATES: [&str; 6] = [
    "waiting", "queued", "running", "retrying", "finished", "failed",
];

/// One attempt, as the recorder fills it (made a [`pb::TaskAttempt`]
/// only when read, so that recording allocates nothing per attempt).
#[derive(Clone)]
struct Attempt {
    number: u32,
    /// Where it runs: this node (`None`) or the node it was placed on.
    placed_on: Option<Arc<str>>,
    queued_us: u64,
    started_us: u64,
    ended_us: u64,
    gpus: Vec<u32>,
    blocked: Vec<pb::TimeSpan>,
    blocked_more_us: u64,
    /// `None` while it runs.
    outcome: Option<Result<(), ErrorKind>>,
}

/// One call's record, as the recorder fills it.
struct Record {
    state: State,
    /// When it was last queued (0: not yet), for the next attempt.
    queued_us: u64,
    ended_us: u64,
    /// The first attempt (most calls have one: kept inline, so that
    /// recording it allocates nothing) and the others.
    first: Option<Attempt>,
    retries: Vec<Attempt>,
    /// Attempts past [`MAX_ATTEMPTS`].
    attempts_more: u32,
    blocked_since_us: u64,
    error_kind: String,
    error: String,
    output: Vec<String>,
}

/// The record of one call on this node; cheap to share.
pub struct TaskTrace {
    id: ObjectId,
    kind: CallKind,
    function: Arc<str>,
    args_bytes: u64,
    depends_on: Vec<ObjectId>,
    actor: Option<Arc<str>>,
    submitted_us: u64,
    from_peer: bool,
    job: Arc<JobRecords>,
    record: Mutex<Record>,
}

/// What a new trace is of.
pub struct NewCall<'a> {
    /// Its result object.
    pub id: ObjectId,
    /// Task, driver or actor call.
    pub kind: CallKind,
    /// Its function (`Class.method` for an actor call).
    pub function: &'a str,
    /// Bytes of its arguments passed by value.
    pub args_bytes: u64,
    /// The objects it waits for.
    pub depends_on: &'a [ObjectId],
    /// For an actor call, the actor's id.
    pub actor: Option<Arc<str>>,
    /// When it was submitted.
    pub submitted: Instant,
    /// An attempt another node placed here.
    pub from_peer: bool,
}

impl TaskTrace {
    fn now(&self) -> u64 {
        self.job.clock.now_us()
    }

    fn update(&self, f: impl FnOnce(&mut Record, u64)) {
        let now = self.now();
        f(&mut self.record.locked(), now);
    }

    /// Its arguments are ready: it joined a queue.
    pub fn queued(&self) {
        self.update(|r, now| {
            r.queued_us = now;
            if r.state == State::Waiting || r.state == State::Retrying {
                r.state = State::Queued;
            }
        });
    }

    /// Attempt `attempt` started on this node, holding `gpus`.
    pub fn started(&self, attempt: u32, gpus: &[usize]) {
        self.update(|r, now| {
            r.state = State::Running;
            r.start_attempt(attempt, None, now, gpus);
        });
    }

    /// Attempt `attempt` was placed on node `node`.
    pub fn placed(&self, attempt: u32, node: &str) {
        let node: Arc<str> = Arc::from(node);
        self.update(|r, now| {
            r.state = State::Running;
            r.start_attempt(attempt, Some(node), now, &[]);
        });
    }

    /// It waits in `get`/`wait` (its CPU lent out).
    pub fn blocked(&self) {
        self.update(|r, now| r.blocked_since_us = now);
    }

    /// It runs again after [`TaskTrace::blocked`].
    pub fn resumed(&self) {
        self.update(|r, now| {
            let since = std::mem::take(&mut r.blocked_since_us);
            if since == 0 {
                return;
            }
            if let Some(attempt) = r.last_attempt() {
                if attempt.blocked.len() < MAX_BLOCKED_SPANS {
                    attempt.blocked.push(pb::TimeSpan {
                        start_us: since,
                        end_us: now,
                    });
                } else {
                    attempt.blocked_more_us += now.saturating_sub(since);
                }
            }
        });
    }

    /// The current attempt ended with `outcome`; `retry` says whether
    /// another follows.
    pub fn attempt_ended(&self, outcome: Result<(), ErrorKind>, retry: bool) {
        self.update(|r, now| {
            r.end_attempt(now, outcome);
            if retry {
                r.state = State::Retrying;
            }
        });
    }

    /// Its last lines of output (a call that succeeded; a failed one's
    /// come with its error).
    pub fn output(&self, lines: Vec<String>) {
        let bytes: usize = lines.iter().map(String::len).sum();
        if !self.job.take_detail(bytes) {
            return;
        }
        self.record.locked().output = lines;
    }

    /// It ended for good with `result`.
    pub fn finished(&self, result: Result<(), &WireError>) {
        let detail = match result {
            Ok(()) => 0,
            Err(e) => {
                e.message.len().min(MAX_ERROR_BYTES)
                    + e.origin
                        .as_ref()
                        .map_or(0, |o| o.output.iter().map(String::len).sum())
            }
        };
        let keep_detail = detail == 0 || self.job.take_detail(detail);
        self.update(|r, now| {
            r.end_attempt(now, result.map_err(|e| e.kind));
            r.ended_us = now;
            r.blocked_since_us = 0;
            match result {
                Ok(()) => r.state = State::Finished,
                Err(e) => {
                    r.state = State::Failed;
                    r.error_kind = e.kind.to_string();
                    if keep_detail {
                        r.error = cut(&e.message, MAX_ERROR_BYTES);
                        if let Some(origin) = &e.origin
                            && !origin.output.is_empty()
                        {
                            r.output = origin.output.clone();
                        }
                    }
                }
            }
        });
    }

    /// The record as it stands.
    pub fn to_proto(&self) -> pb::TaskInfo {
        let r = self.record.locked();
        let mut attempts: Vec<pb::TaskAttempt> = r
            .first
            .iter()
            .chain(r.retries.iter())
            .map(|a| pb::TaskAttempt {
                attempt: a.number,
                node: a.placed_on.as_deref().unwrap_or(&self.job.node).to_string(),
                queued_us: a.queued_us,
                started_us: a.started_us,
                ended_us: a.ended_us,
                gpus: a.gpus.clone(),
                blocked: a.blocked.clone(),
                blocked_more_us: a.blocked_more_us,
                outcome: match a.outcome {
                    None => String::new(),
                    Some(Ok(())) => "ok".to_string(),
                    Some(Err(kind)) => kind.to_string(),
                },
                slot: 0,
            })
            .collect();
        // A blocked span still open counts until now.
        if r.blocked_since_us != 0
            && let Some(last) = attempts.last_mut()
        {
            last.blocked.push(pb::TimeSpan {
                start_us: r.blocked_since_us,
                end_us: 0,
            });
        }
        pb::TaskInfo {
            task_id: self.id.to_string(),
            function: self.function.to_string(),
            kind: self.kind.as_str().to_string(),
            state: r.state.as_str().to_string(),
            args_bytes: self.args_bytes,
            depends_on: self.depends_on.iter().map(|d| d.to_string()).collect(),
            node: self.job.node.clone(),
            submitted_us: self.submitted_us,
            ended_us: r.ended_us,
            attempts,
            error_kind: r.error_kind.clone(),
            error: r.error.clone(),
            output: r.output.clone(),
            actor_id: self.actor.as_deref().unwrap_or_default().to_string(),
            from_peer: self.from_peer,
            attempts_unrecorded: r.attempts_more,
        }
    }
}

impl Record {
    fn start_attempt(
        &mut self,
        number: u32,
        placed_on: Option<Arc<str>>,
        now: u64,
        gpus: &[usize],
    ) {
        if self.first.is_some() as usize + self.retries.len() >= MAX_ATTEMPTS {
            self.attempts_more += 1;
            return;
        }
        let attempt = Attempt {
            number,
            placed_on,
            queued_us: std::mem::take(&mut self.queued_us),
            started_us: now,
            ended_us: 0,
            gpus: gpus
                .iter()
                .map(|g| u32::try_from(*g).unwrap_or(u32::MAX))
                .collect(),
            blocked: Vec::new(),
            blocked_more_us: 0,
            outcome: None,
        };
        match self.first {
            None => self.first = Some(attempt),
            Some(_) => self.retries.push(attempt),
        }
    }

    fn last_attempt(&mut self) -> Option<&mut Attempt> {
        match self.retries.last_mut() {
            Some(last) => Some(last),
            None => self.first.as_mut(),
        }
    }

    fn end_attempt(&mut self, now: u64, outcome: Result<(), ErrorKind>) {
        let Some(attempt) = self.last_attempt() else {
            return;
        };
        if attempt.ended_us != 0 {
            return;
        }
        attempt.ended_us = now;
        attempt.outcome = Some(outcome);
    }
}

/// A function's name as records keep it: at most 256 characters.
pub fn function_name(name: &str) -> Arc<str> {
    if name.len() <= MAX_FUNCTION_CHARS {
        return Arc::from(name);
    }
    let cut: String = name.chars().take(MAX_FUNCTION_CHARS).collect();
    Arc::from(cut)
}

/// Cuts `text` to at most `max` bytes on a character boundary.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// A job's records, and the function name of the last one (shared by
/// the next call of the same function instead of copied).
#[derive(Default)]
struct JobTasks {
    traces: Vec<Arc<TaskTrace>>,
    last_function: Option<Arc<str>>,
}

/// One job's records on this node.
pub struct JobRecords {
    node: String,
    clock: Clock,
    tasks: Mutex<JobTasks>,
    unrecorded: AtomicU64,
    detail_bytes: AtomicUsize,
}

impl JobRecords {
    /// Takes `bytes` of the job's detail budget, if it has them.
    fn take_detail(&self, bytes: usize) -> bool {
        self.detail_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                let total = used.checked_add(bytes)?;
                (total <= MAX_DETAIL_BYTES).then_some(total)
            })
            .is_ok()
    }

    /// Every record, in the order they were made, and how many calls were
    /// not recorded.
    pub fn snapshot(&self) -> (Vec<pb::TaskInfo>, u64) {
        let tasks: Vec<Arc<TaskTrace>> = self.tasks.locked().traces.clone();
        (
            tasks.iter().map(|t| t.to_proto()).collect(),
            self.unrecorded.load(Ordering::Relaxed),
        )
    }
}

/// Hashes a job id as itself: ids are random 64-bit numbers, and every
/// recorded call looks its job up.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type ById = std::hash::BuildHasherDefault<IdHasher>;

#[derive(Default)]
struct Jobs {
    live: HashMap<JobId, Arc<JobRecords>, ById>,
    /// Jobs that ended here, oldest first, with when their records go.
    ended: VecDeque<(JobId, Instant)>,
    /// The same jobs, to look up.
    ended_ids: HashSet<JobId>,
}

/// Every job's records on one node.
pub struct TaskEvents {
    node: String,
    clock: Clock,
    jobs: Mutex<Jobs>,
}

impl TaskEvents {
    /// The registry of the node named `node`.
    pub fn new(node: &str) -> Self {
        TaskEvents {
            node: node.to_string(),
            clock: Clock::new(),
            jobs: Mutex::default(),
        }
    }

    /// Starts the record of a call of `job`; `None` once the job ended
    /// here, or past its bound (counted).
    pub fn record(&self, job: JobId, call: NewCall<'_>) -> Option<Arc<TaskTrace>> {
        let records = {
            let mut jobs = self.jobs.locked();
            if jobs.ended_ids.contains(&job)
                || (jobs.live.len() >= MAX_LIVE_JOBS && !jobs.live.contains_key(&job))
            {
                return None;
            }
            jobs.live
                .entry(job)
                .or_insert_with(|| {
                    Arc::new(JobRecords {
                        node: self.node.clone(),
                        clock: self.clock,
                        tasks: Mutex::default(),
                        unrecorded: AtomicU64::new(0),
                        detail_bytes: AtomicUsize::new(0),
                    })
                })
                .clone()
        };
        let mut tasks = records.tasks.locked();
        if tasks.traces.len() >= MAX_TASKS_PER_JOB {
            records.unrecorded.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let depends_on: Vec<ObjectId> = call
            .depends_on
            .iter()
            .take(MAX_DEPENDENCIES)
            .copied()
            .collect();
        let trace = Arc::new(TaskTrace {
            id: call.id,
            kind: call.kind,
            function: match &tasks.last_function {
                Some(last) if **last == *call.function => last.clone(),
                _ => {
                    let name = function_name(call.function);
                    tasks.last_function = Some(name.clone());
                    name
                }
            },
            args_bytes: call.args_bytes,
            depends_on,
            actor: call.actor,
            submitted_us: self.clock.at(call.submitted),
            from_peer: call.from_peer,
            job: records.clone(),
            record: Mutex::new(Record {
                state: State::Waiting,
                queued_us: 0,
                ended_us: 0,
                first: None,
                retries: Vec::new(),
                attempts_more: 0,
                blocked_since_us: 0,
                error_kind: String::new(),
                error: String::new(),
                output: Vec::new(),
            }),
        });
        tasks.traces.push(trace.clone());
        Some(trace)
    }

    /// The job's records here, if it has any.
    pub fn job(&self, job: JobId) -> Option<Arc<JobRecords>> {
        let mut jobs = self.jobs.locked();
        Self::purge(&mut jobs);
        jobs.live.get(&job).cloned()
    }

    /// The job ended here: its records go after [`RETAIN_AFTER_END`], and
    /// no call of it is recorded again.
    pub fn job_ended(&self, job: JobId) {
        let mut jobs = self.jobs.locked();
        Self::purge(&mut jobs);
        if !jobs.ended_ids.insert(job) {
            return;
        }
        if jobs.ended.len() >= MAX_ENDED_JOBS
            && let Some((old, _)) = jobs.ended.pop_front()
        {
            jobs.live.remove(&old);
            jobs.ended_ids.remove(&old);
        }
        jobs.ended
            .push_back((job, Instant::now() + RETAIN_AFTER_END));
    }

    fn purge(jobs: &mut Jobs) {
        let now = Instant::now();
        let Jobs { live, ended, .. } = jobs;
        for (id, until) in ended.iter() {
            if *until <= now {
                live.remove(id);
            }
        }
    }
}

#[cfg(test)]
mod tests;
