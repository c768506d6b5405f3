//! One run of a workflow: its steps, run as tasks of the run's context
//! on the head's node (and so placed anywhere in the cluster), each
//! output logged before anything uses it.

use super::graph::{self, Slot};
use super::record::{StepRecord, StepStatus, digest};
use super::store::{Op, WorkflowStore};
use super::{MAX_STEPS, now_ms};
use crate::node::{Node, ServiceContext};
use crate::sync::MutexExt;
use bytes::Bytes;
use prism_abi::workflow::{DEFAULT_STEP_RETRIES, StepError, StepKind, StepNode};
use prism_abi::{ErrorKind, WireError};
use rmpv::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Why a step (and so its workflow) did not produce an output.
#[derive(Clone, Debug)]
pub enum StepFailure {
    /// It failed for good: the workflow is FAILED.
    Failed {
        /// The step.
        step: String,
        /// Its last error.
        error: WireError,
    },
    /// The run stopped (cancelled, the head stopping, the log failing):
    /// the workflow is RESUMABLE unless cancelled.
    Stopped(String),
}

type StepResult = Result<Bytes, StepFailure>;

/// A step's output once it exists, shared by whoever uses the step.
type StepCell = Arc<tokio::sync::OnceCell<StepResult>>;

impl From<graph::GraphError> for StepFailure {
    fn from(e: graph::GraphError) -> Self {
        failed("graph", ErrorKind::InvalidArgument, e.to_string())
    }
}

/// A workflow's run.
pub struct Run {
    pub(super) node: Arc<Node>,
    pub(super) store: Arc<WorkflowStore>,
    pub(super) service: ServiceContext,
    pub(super) tenant: String,
    pub(super) id: String,
    /// The namespace its steps (and virtual actors) are in.
    pub(super) namespace: String,
    pub(super) actor_locks: Arc<super::actor::ActorLocks>,
    /// The next derived step number.
    counter: AtomicU64,
    /// Steps started in this run (bounded by [`MAX_STEPS`]).
    started: AtomicU64,
    /// Set when the run is being stopped: failures are then stops.
    pub(super) stopping: AtomicBool,
    /// One cell per step name, with the digest of the step's node: a
    /// step used twice runs once.
    cells: std::sync::Mutex<HashMap<String, (String, StepCell)>>,
    /// Wakes event steps when an event is delivered.
    pub(super) events: tokio::sync::Notify,
    /// The tasks its steps run as.
    tasks: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

fn failed(step: &str, kind: ErrorKind, message: impl Into<String>) -> StepFailure {
    StepFailure::Failed {
        step: step.to_string(),
        error: WireError::new(kind, message),
    }
}

fn two_steps(name: &str) -> StepFailure {
    failed(
        name,
        ErrorKind::InvalidArgument,
        format!("the step name `{name}` is used by two different steps"),
    )
}

impl Run {
    /// A run of `workflow` in `service`.
    pub(super) fn new(
        node: Arc<Node>,
        store: Arc<WorkflowStore>,
        service: ServiceContext,
        workflow: &super::WorkflowRecord,
        actor_locks: Arc<super::actor::ActorLocks>,
    ) -> Arc<Run> {
        Arc::new(Run {
            node,
            store,
            service,
            tenant: workflow.tenant.clone(),
            id: workflow.id.clone(),
            namespace: workflow.namespace.clone(),
            actor_locks,
            counter: AtomicU64::new(workflow.next_step),
            started: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            cells: Default::default(),
            events: Default::default(),
            tasks: Default::default(),
        })
    }

    /// Stops every step of the run.
    pub(super) fn abort(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        for task in self.tasks.locked().drain(..) {
            task.abort();
        }
    }

    fn stopped(&self, why: impl std::fmt::Display) -> StepFailure {
        StepFailure::Stopped(why.to_string())
    }

    /// Runs `node` (named) once per run, however often it is used.
    pub(super) fn run_step(
        self: &Arc<Self>,
        node: StepNode,
    ) -> crate::sync::BoxFuture<'static, StepResult> {
        let run = self.clone();
        Box::pin(async move {
            let name = node.options.name.clone().unwrap_or_default();
            let node_digest = digest(&node.encode());
            let cell = {
                let mut cells = run.cells.locked();
                let (known, cell) = cells
                    .entry(name.clone())
                    .or_insert_with(|| (node_digest.clone(), Default::default()));
                if *known != node_digest {
                    return Err(two_steps(&name));
                }
                cell.clone()
            };
            // Each step runs as a task of its own, so a chain of
            // continuations thousands deep is not a stack of polls.
            cell.get_or_init(|| async {
                let task = tokio::spawn(run.clone().execute(name, node, node_digest));
                {
                    let mut tasks = run.tasks.locked();
                    // Finished steps' handles go, so they free their tasks.
                    if tasks.len() >= 1024 && tasks.len().is_power_of_two() {
                        tasks.retain(|t| !t.is_finished());
                    }
                    tasks.push(task.abort_handle());
                }
                // A step started while the run was being stopped stops too.
                if run.stopping.load(Ordering::Relaxed) {
                    task.abort();
                }
                task.await
                    .unwrap_or_else(|e| Err(StepFailure::Stopped(format!("a step stopped: {e}"))))
            })
            .await
            .clone()
        })
    }

    /// Stores `value` (content-addressed) with `ops`, durably.
    async fn log(&self, mut ops: Vec<Op>) -> Result<(), StepFailure> {
        if ops.is_empty() {
            return Ok(());
        }
        ops.shrink_to_fit();
        self.store
            .write(ops)
            .await
            .map(|_| ())
            .map_err(|e| self.stopped(e))
    }

    fn put_value(&self, value: &Bytes) -> (String, Op) {
        let digest = digest(value);
        (
            digest.clone(),
            Op::PutValue {
                tenant: self.tenant.clone(),
                workflow: self.id.clone(),
                digest,
                value: value.clone(),
            },
        )
    }

    fn put_step(&self, record: StepRecord) -> Op {
        Op::PutStep {
            tenant: self.tenant.clone(),
            workflow: self.id.clone(),
            record,
        }
    }

    fn stored(&self, digest: &str) -> StepResult {
        match self.store.value(&self.tenant, &self.id, digest) {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(self.stopped(format!("the logged value {digest} is missing"))),
            Err(e) => Err(self.stopped(e)),
        }
    }

    async fn execute(
        self: Arc<Self>,
        name: String,
        node: StepNode,
        node_digest: String,
    ) -> StepResult {
        let previous = self
            .store
            .step(&self.tenant, &self.id, &name)
            .map_err(|e| self.stopped(e))?;
        if let Some(previous) = &previous {
            if previous.node != node_digest {
                return Err(two_steps(&name));
            }
            match previous.status {
                StepStatus::Done => {
                    let digest = previous.output.clone().unwrap_or_default();
                    return self.stored(&digest);
                }
                StepStatus::Continued => {
                    let next = previous
                        .continuation
                        .as_deref()
                        .map(StepNode::decode)
                        .transpose()
                        .ok()
                        .flatten()
                        .ok_or_else(|| self.stopped("a logged continuation does not decode"))?;
                    let mut record = previous.clone();
                    return self.continue_with(&node, &mut record, next).await;
                }
                StepStatus::Running | StepStatus::Failed => {}
            }
        }
        if self.started.fetch_add(1, Ordering::Relaxed) >= MAX_STEPS {
            return Err(failed(
                &name,
                ErrorKind::InvalidArgument,
                format!("the workflow started more than {MAX_STEPS} steps in one run"),
            ));
        }
        let mut record = previous.unwrap_or_else(|| StepRecord {
            name: name.clone(),
            function: node.label().to_string(),
            node: node_digest,
            status: StepStatus::Running,
            attempts: 0,
            inputs: Vec::new(),
            output: None,
            continuation: None,
            deadline_ms: None,
            error: None,
            started_ms: now_ms(),
            ended_ms: None,
        });
        // Steps it waits for, then its arguments' steps, all at once.
        let mut waits = tokio::task::JoinSet::new();
        for after in &node.after {
            let inner = StepNode::decode(after)
                .map_err(|e| failed(&name, ErrorKind::InvalidArgument, e.to_string()))?;
            waits.spawn(self.run_step(inner));
        }
        let args = self.resolve_args(&name, &node.args).await?;
        while let Some(done) = waits.join_next().await {
            done.map_err(|e| self.stopped(e))??;
        }
        match &node.kind {
            StepKind::Task { function } => self.run_task(&node, function, args, &mut record).await,
            StepKind::ForEach { function } => {
                self.for_each(&node, function, args, &mut record).await
            }
            StepKind::VirtualActor {
                actor,
                function,
                call,
            } => {
                self.actor_call(&node, actor, function, *call, args, &mut record)
                    .await
            }
            StepKind::Sleep { duration_ms } => {
                let deadline = record
                    .deadline_ms
                    .unwrap_or(now_ms().saturating_add(*duration_ms));
                self.sleep_until(&mut record, deadline).await
            }
            StepKind::SleepUntil { unix_ms } => self.sleep_until(&mut record, *unix_ms).await,
            StepKind::Event { name: event } => self.wait_for_event(&mut record, event).await,
        }
    }

    /// The arguments of a step with every nested step run and every
    /// object read, each one encoded value.
    async fn resolve_args(
        self: &Arc<Self>,
        step: &str,
        args: &[Vec<u8>],
    ) -> Result<Vec<Bytes>, StepFailure> {
        let bad = |e: graph::GraphError| failed(step, ErrorKind::InvalidArgument, e.to_string());
        let mut values = Vec::with_capacity(args.len());
        let mut pending = tokio::task::JoinSet::new();
        for (index, arg) in args.iter().enumerate() {
            let value = graph::parse(arg).map_err(bad)?;
            for (slot_index, slot) in graph::slots(&value).map_err(bad)?.into_iter().enumerate() {
                let run = self.clone();
                pending.spawn(async move {
                    let out = match slot {
                        Slot::Step(node) => run.run_step(*node).await,
                        Slot::Checkpoint(digest) => {
                            match run.store.value(&run.tenant, &run.id, &digest) {
                                Ok(Some(value)) => Ok(value),
                                Ok(None) => Err(failed(
                                    "checkpoint",
                                    ErrorKind::InvalidArgument,
                                    format!("no checkpointed value {digest}"),
                                )),
                                Err(e) => Err(run.stopped(e)),
                            }
                        }
                        Slot::Object(id) => run
                            .node
                            .context_object(&run.service, crate::ids::ObjectId::from_bytes(id))
                            .await
                            .map_err(|error| StepFailure::Failed {
                                step: "object".into(),
                                error,
                            }),
                    };
                    (index, slot_index, out)
                });
            }
            values.push(value);
        }
        let mut outputs: Vec<Vec<(usize, Value)>> = vec![Vec::new(); args.len()];
        while let Some(joined) = pending.join_next().await {
            let (index, slot_index, out) = joined.map_err(|e| self.stopped(e))?;
            let bytes = out?;
            let value = graph::parse(&bytes).map_err(bad)?;
            outputs[index].push((slot_index, value));
        }
        let mut resolved = Vec::with_capacity(args.len());
        for (mut value, mut outs) in values.into_iter().zip(outputs) {
            if !outs.is_empty() {
                outs.sort_by_key(|(i, _)| *i);
                let outs: Vec<Value> = outs.into_iter().map(|(_, v)| v).collect();
                graph::fill(&mut value, &outs).map_err(bad)?;
            }
            resolved.push(Bytes::from(graph::write(&value)));
        }
        Ok(resolved)
    }

    /// Stores a step's arguments (content-addressed) and names them in
    /// its record; the writes go with the step's end.
    pub(super) fn input_ops(&self, args: &[Bytes], record: &mut StepRecord) -> Vec<Op> {
        let mut ops = Vec::with_capacity(args.len() + 1);
        record.inputs = args
            .iter()
            .map(|arg| {
                let (digest, op) = self.put_value(arg);
                ops.push(op);
                digest
            })
            .collect();
        ops
    }

    /// Runs the step's task until it returns a value, at most 1 +
    /// `max_retries` times; the error is the last attempt's.
    pub(super) async fn attempts(
        &self,
        node: &StepNode,
        function: &str,
        args: &[Bytes],
        record: &mut StepRecord,
    ) -> Result<Result<Bytes, WireError>, StepFailure> {
        let retries = node.options.max_retries.unwrap_or(DEFAULT_STEP_RETRIES);
        let mut options = node.options.task.clone();
        // The step retries; each attempt is one task.
        options.max_retries = Some(0);
        let mut tries = 0u32;
        loop {
            tries += 1;
            record.attempts += 1;
            record.status = StepStatus::Running;
            // Losing "running" in a crash costs a status line, not work.
            self.store.write_later(vec![self.put_step(record.clone())]);
            let outcome = self
                .node
                .call_context_task(&self.service, function, args.to_vec(), options.clone())
                .await;
            if self.stopping.load(Ordering::Relaxed) {
                return Err(self.stopped("the run stopped"));
            }
            match outcome {
                Ok(output) => return Ok(Ok(output)),
                Err(error) => {
                    record.error = Some(format!("{}: {}", error.kind.as_str(), error.message));
                    if tries > retries {
                        return Ok(Err(error));
                    }
                    tracing::debug!(workflow = %self.id, step = %record.name, "step failed, retrying: {}", error.message);
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(tries.min(20)))).await;
                }
            }
        }
    }

    /// A step out of retries: its error as data (`catch_exceptions`), or
    /// logged as failed.
    pub(super) async fn failure(
        &self,
        node: &StepNode,
        record: &mut StepRecord,
        error: WireError,
        mut ops: Vec<Op>,
    ) -> StepResult {
        if node.options.catch_exceptions {
            let output = caught_err(&error, record.attempts);
            return self.finish(record, output, ops).await;
        }
        record.status = StepStatus::Failed;
        record.ended_ms = Some(now_ms());
        ops.push(self.put_step(record.clone()));
        self.log(ops).await?;
        Err(StepFailure::Failed {
            step: record.name.clone(),
            error,
        })
    }

    async fn run_task(
        self: &Arc<Self>,
        node: &StepNode,
        function: &str,
        args: Vec<Bytes>,
        record: &mut StepRecord,
    ) -> StepResult {
        let name = record.name.clone();
        let mut ops = self.input_ops(&args, record);
        let output = match self.attempts(node, function, &args, record).await? {
            Ok(output) => output,
            Err(error) => return self.failure(node, record, error, ops).await,
        };
        if let Some(next) = graph::continuation(&output) {
            let mut next =
                next.map_err(|e| failed(&name, ErrorKind::InvalidArgument, e.to_string()))?;
            self.prepare(&name, &mut next).await?;
            // A continuation holding its own step would wait for itself.
            if graph::contains_name(&next, &name)
                .map_err(|e| failed(&name, ErrorKind::InvalidArgument, e.to_string()))?
            {
                return Err(failed(
                    &name,
                    ErrorKind::InvalidArgument,
                    format!("step {name} continues with a step of its own name"),
                ));
            }
            record.status = StepStatus::Continued;
            record.continuation = Some(next.encode());
            ops.push(self.put_step(record.clone()));
            ops.push(Op::BumpCounter {
                tenant: self.tenant.clone(),
                workflow: self.id.clone(),
                next: self.counter.load(Ordering::Relaxed),
            });
            self.log(ops).await?;
            return self.continue_with(node, record, next).await;
        }
        // An object returned in place of the value: its value is the
        // output, read once and logged.
        let output = match graph::returned_object(&output) {
            Some(id) => match self
                .node
                .context_object(&self.service, crate::ids::ObjectId::from_bytes(id))
                .await
            {
                Ok(value) => value,
                Err(error) => return self.failure(node, record, error, ops).await,
            },
            None => output,
        };
        let output = if node.options.catch_exceptions {
            caught_ok(&output)
        } else {
            output
        };
        self.finish(record, output, ops).await
    }

    /// Runs `function` once per element of the first argument, as steps
    /// `<name>[<i>]`, all at once; outputs their outputs as an array.
    async fn for_each(
        self: &Arc<Self>,
        node: &StepNode,
        function: &str,
        args: Vec<Bytes>,
        record: &mut StepRecord,
    ) -> StepResult {
        let name = record.name.clone();
        let bad = |m: String| failed(&name, ErrorKind::InvalidArgument, m);
        let (first, rest) = args
            .split_first()
            .ok_or_else(|| bad("a for-each step takes an array as its first argument".into()))?;
        let Value::Array(items) = graph::parse(first).map_err(|e| bad(e.to_string()))? else {
            return Err(bad(
                "a for-each step's first argument is not an array".into()
            ));
        };
        if items.len() as u64 > MAX_STEPS {
            return Err(bad(format!(
                "{} elements: at most {MAX_STEPS} steps",
                items.len()
            )));
        }
        record.attempts = 1;
        self.store.write_later(vec![self.put_step(record.clone())]);
        let mut children = tokio::task::JoinSet::new();
        for (i, item) in items.iter().enumerate() {
            let mut child_args = Vec::with_capacity(args.len());
            child_args.push(graph::write(item));
            child_args.extend(rest.iter().map(|a| a.to_vec()));
            let mut child = StepNode::task(function, child_args);
            child.options = node.options.clone();
            child.options.name = Some(format!("{name}[{i}]"));
            let run = self.clone();
            children.spawn(async move { (i, run.run_step(child).await) });
        }
        let mut outputs = vec![Value::Nil; items.len()];
        while let Some(joined) = children.join_next().await {
            let (i, out) = joined.map_err(|e| self.stopped(e))?;
            outputs[i] = graph::parse(&out?).map_err(|e| bad(e.to_string()))?;
        }
        let output = Bytes::from(graph::write(&Value::Array(outputs)));
        self.finish(record, output, Vec::new()).await
    }

    /// Names a continuation's steps and checkpoints its objects.
    async fn prepare(&self, step: &str, next: &mut StepNode) -> Result<(), StepFailure> {
        // Numbers are taken one by one from the run's counter, so steps
        // that continue at the same time never share a name.
        graph::name_steps_with(next, &mut || {
            self.counter.fetch_add(1, Ordering::Relaxed) + 1
        })
        .map_err(|e| failed(step, ErrorKind::InvalidArgument, e.to_string()))?;
        let checkpoint = |id: [u8; 16]| async move {
            let value = self
                .node
                .context_object(&self.service, crate::ids::ObjectId::from_bytes(id))
                .await
                .map_err(|error| StepFailure::Failed {
                    step: step.to_string(),
                    error,
                })?;
            let (digest, op) = self.put_value(&value);
            self.log(vec![op]).await?;
            Ok::<String, StepFailure>(digest)
        };
        graph::checkpoint_objects(next, &checkpoint).await
    }

    async fn continue_with(
        self: &Arc<Self>,
        node: &StepNode,
        record: &mut StepRecord,
        next: StepNode,
    ) -> StepResult {
        let output = match self.run_step(next).await {
            Ok(output) if node.options.catch_exceptions => caught_ok(&output),
            Ok(output) => output,
            Err(StepFailure::Failed { error, .. }) if node.options.catch_exceptions => {
                caught_err(&error, record.attempts)
            }
            Err(e) => return Err(e),
        };
        // Not waited for: until it is durable, a replay finds the step
        // continued and reads the continuation's logged output instead.
        // The log's writes commit in order, so anything logged later that
        // used this output commits with it.
        let (digest, op) = self.put_value(&output);
        record.status = StepStatus::Done;
        record.output = Some(digest);
        record.ended_ms = Some(now_ms());
        self.store
            .write_later(vec![op, self.put_step(record.clone())]);
        Ok(output)
    }

    /// Logs `record` as done with `output`, durably, and returns it.
    pub(super) async fn finish(
        &self,
        record: &mut StepRecord,
        output: Bytes,
        mut ops: Vec<Op>,
    ) -> StepResult {
        let (digest, op) = self.put_value(&output);
        ops.push(op);
        record.status = StepStatus::Done;
        record.output = Some(digest);
        record.ended_ms = Some(now_ms());
        ops.push(self.put_step(record.clone()));
        self.log(ops).await?;
        Ok(output)
    }

    async fn sleep_until(&self, record: &mut StepRecord, deadline: u64) -> StepResult {
        if record.deadline_ms != Some(deadline) {
            record.deadline_ms = Some(deadline);
            record.attempts = 1;
            self.log(vec![self.put_step(record.clone())]).await?;
        }
        let now = now_ms();
        if deadline > now {
            tokio::time::sleep(Duration::from_millis(deadline - now)).await;
        }
        self.finish(record, nil(), Vec::new()).await
    }

    async fn wait_for_event(&self, record: &mut StepRecord, event: &str) -> StepResult {
        record.attempts = 1;
        self.log(vec![self.put_step(record.clone())]).await?;
        loop {
            let woken = self.events.notified();
            let mut done = record.clone();
            done.status = StepStatus::Done;
            done.ended_ms = Some(now_ms());
            let taken = self
                .store
                .write(vec![Op::ConsumeEvent {
                    tenant: self.tenant.clone(),
                    workflow: self.id.clone(),
                    name: event.to_string(),
                    step: done,
                }])
                .await
                .map_err(|e| self.stopped(e))?;
            if let Some(payload) = taken {
                return Ok(payload);
            }
            // A delivery wakes it; the timeout is a safety net.
            let _ = tokio::time::timeout(Duration::from_secs(5), woken).await;
        }
    }
}

fn nil() -> Bytes {
    Bytes::from_static(&[0xc0])
}

/// `{"Ok": output}`.
pub(super) fn caught_ok(output: &[u8]) -> Bytes {
    let value = graph::parse(output).unwrap_or(Value::Nil);
    Bytes::from(graph::write(&Value::Map(vec![(Value::from("Ok"), value)])))
}

/// `{"Err": StepError}`.
fn caught_err(error: &WireError, attempts: u32) -> Bytes {
    let caught: Result<(), StepError> = Err(StepError {
        kind: error.kind,
        message: error.message.clone(),
        attempts,
    });
    Bytes::from(prism_abi::encode_value(&caught).unwrap_or_default())
}
