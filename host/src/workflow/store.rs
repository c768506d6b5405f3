//! The workflow log: workflows, their steps, content-addressed values,
//! delivered events and schedules, in redb (the head's `head.redb`, or an
//! in-memory database for the embedded cluster).
//!
//! Every key starts with the tenant (`<tenant>/…`), so one tenant's
//! records are one key range and no lookup crosses tenants. Writes go
//! through one writer thread that commits whatever has queued up in one
//! transaction (a group commit): a step's output is durable when its
//! write returns, and many steps finishing at once share one disk sync.

use super::record::{ScheduleRecord, StepRecord, WorkflowRecord};
use crate::meta::{HeadStore, MetaError};
use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::sync::Arc;
use std::sync::mpsc;

const WORKFLOWS: TableDefinition<&str, &[u8]> = TableDefinition::new("workflows");
const STEPS: TableDefinition<&str, &[u8]> = TableDefinition::new("workflow_steps");
const VALUES: TableDefinition<&str, &[u8]> = TableDefinition::new("workflow_values");
const EVENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("workflow_events");
const SCHEDULES: TableDefinition<&str, &[u8]> = TableDefinition::new("workflow_schedules");
const ACTORS: TableDefinition<&str, &[u8]> = TableDefinition::new("workflow_actors");

/// Most writes one transaction takes (so one commit stays short).
const MAX_BATCH: usize = 4096;

/// One change to the log.
#[derive(Debug)]
pub enum Op {
    /// Writes a workflow's record.
    PutWorkflow(WorkflowRecord),
    /// Writes a step's record.
    PutStep {
        tenant: String,
        workflow: String,
        record: StepRecord,
    },
    /// Stores a value under its digest (a no-op if it is there).
    PutValue {
        tenant: String,
        workflow: String,
        digest: String,
        value: Bytes,
    },
    /// Appends a delivered event, numbered after the event of that name
    /// with the highest number and at least `not_before`; answers the
    /// number (8 bytes, little-endian).
    PushEvent {
        tenant: String,
        workflow: String,
        name: String,
        not_before: u64,
        payload: Bytes,
    },
    /// Takes the oldest event `name`, if any, and logs `step` as done with
    /// its payload as output — both or neither.
    ConsumeEvent {
        tenant: String,
        workflow: String,
        name: String,
        step: StepRecord,
    },
    /// Writes a schedule.
    PutSchedule(ScheduleRecord),
    /// Records a schedule's last firing, if the schedule still exists.
    MarkFired {
        tenant: String,
        name: String,
        at_ms: u64,
    },
    /// Deletes a schedule.
    DeleteSchedule { tenant: String, name: String },
    /// Writes a virtual actor's state.
    PutActor {
        tenant: String,
        namespace: String,
        actor: String,
        state: Bytes,
    },
    /// Deletes a virtual actor.
    DeleteActor {
        tenant: String,
        namespace: String,
        actor: String,
    },
    /// Deletes everything of a tenant: workflows, steps, values, events,
    /// schedules, virtual actors.
    DeleteTenant { tenant: String },
    /// Raises a workflow's `next_step` to at least `next`.
    BumpCounter {
        tenant: String,
        workflow: String,
        next: u64,
    },
    /// Deletes a workflow and everything logged for it.
    DeleteWorkflow { tenant: String, workflow: String },
}

/// What a batch of writes answered: for a [`Op::ConsumeEvent`], the
/// payload it took.
type Reply = Result<Option<Bytes>, String>;

struct Write {
    ops: Vec<Op>,
    done: tokio::sync::oneshot::Sender<Reply>,
}

enum Backing {
    Head(Arc<HeadStore>),
    Own(Database),
}

impl Backing {
    fn db(&self) -> &Database {
        match self {
            Backing::Head(store) => store.database(),
            Backing::Own(db) => db,
        }
    }
}

/// The workflow log.
pub struct WorkflowStore {
    backing: Arc<Backing>,
    writes: std::sync::Mutex<mpsc::Sender<Write>>,
}

/// Failures of the log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// A record did not decode.
    #[error("a workflow record is corrupt: {0}")]
    Corrupt(String),
    /// The writer thread is gone or the write failed.
    #[error("the workflow log could not be written: {0}")]
    Write(String),
}

fn meta<E: Into<MetaError>>(e: E) -> StoreError {
    StoreError::Meta(e.into())
}

/// The key of a workflow: `<tenant>/<id>`.
pub fn workflow_key(tenant: &str, workflow: &str) -> String {
    format!("{tenant}/{workflow}")
}

fn step_key(tenant: &str, workflow: &str, step: &str) -> String {
    format!("{tenant}/{workflow}/{step}")
}

fn value_key(tenant: &str, workflow: &str, digest: &str) -> String {
    format!("{tenant}/{workflow}/{digest}")
}

fn actor_key(tenant: &str, namespace: &str, actor: &str) -> String {
    format!("{tenant}/{namespace}/{actor}")
}

fn event_prefix(tenant: &str, workflow: &str, name: &str) -> String {
    format!("{tenant}/{workflow}/{name}/")
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    rmp_serde::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    prism_abi::encode_value(value).unwrap_or_default()
}

/// The upper bound of a prefix range (`prefix` followed by the largest
/// character our keys use).
fn range_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

impl WorkflowStore {
    /// The log in `head.redb`.
    pub fn in_head(store: Arc<HeadStore>) -> Result<Arc<WorkflowStore>, StoreError> {
        Self::start(Backing::Head(store))
    }

    /// A log in a database file of its own (benchmarks, tools).
    pub fn open(path: &std::path::Path) -> Result<Arc<WorkflowStore>, StoreError> {
        let db = Database::create(path).map_err(meta)?;
        Self::start(Backing::Own(db))
    }

    /// A log in memory (the embedded cluster: durable for the process's
    /// life only).
    pub fn in_memory() -> Result<Arc<WorkflowStore>, StoreError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(meta)?;
        Self::start(Backing::Own(db))
    }

    fn start(backing: Backing) -> Result<Arc<WorkflowStore>, StoreError> {
        let txn = backing.db().begin_write().map_err(meta)?;
        for table in [WORKFLOWS, STEPS, VALUES, EVENTS, SCHEDULES, ACTORS] {
            txn.open_table(table).map_err(meta)?;
        }
        txn.commit().map_err(meta)?;
        let backing = Arc::new(backing);
        let (tx, rx) = mpsc::channel::<Write>();
        let writer = backing.clone();
        std::thread::Builder::new()
            .name("prism-workflow-log".into())
            .spawn(move || write_loop(&writer, rx))
            .map_err(|e| StoreError::Write(e.to_string()))?;
        Ok(Arc::new(WorkflowStore {
            backing,
            writes: std::sync::Mutex::new(tx),
        }))
    }

    /// Commits `ops` (with whatever else is queued) and returns once they
    /// are durable.
    pub async fn write(&self, ops: Vec<Op>) -> Result<Option<Bytes>, StoreError> {
        let (done, answer) = tokio::sync::oneshot::channel();
        {
            let writes = self
                .writes
                .lock()
                .map_err(|_| StoreError::Write("the writer is poisoned".into()))?;
            writes
                .send(Write { ops, done })
                .map_err(|_| StoreError::Write("the writer stopped".into()))?;
        }
        answer
            .await
            .map_err(|_| StoreError::Write("the writer stopped".into()))?
            .map_err(StoreError::Write)
    }

    /// Queues `ops` without waiting for them (records whose loss in a
    /// crash only costs a status line, e.g. "running").
    pub fn write_later(&self, ops: Vec<Op>) {
        let (done, _) = tokio::sync::oneshot::channel();
        if let Ok(writes) = self.writes.lock() {
            let _ = writes.send(Write { ops, done });
        }
    }

    fn get(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.backing.db().begin_read().map_err(meta)?;
        let table = txn.open_table(table).map_err(meta)?;
        Ok(table.get(key).map_err(meta)?.map(|v| v.value().to_vec()))
    }

    /// How many keys start with `prefix` (values are not read).
    fn count(
        &self,
        table: TableDefinition<&str, &[u8]>,
        prefix: &str,
    ) -> Result<usize, StoreError> {
        let txn = self.backing.db().begin_read().map_err(meta)?;
        let table = txn.open_table(table).map_err(meta)?;
        let end = range_end(prefix);
        let mut n = 0;
        for entry in table.range(prefix..end.as_str()).map_err(meta)? {
            entry.map_err(meta)?;
            n += 1;
        }
        Ok(n)
    }

    fn scan(
        &self,
        table: TableDefinition<&str, &[u8]>,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.backing.db().begin_read().map_err(meta)?;
        let table = txn.open_table(table).map_err(meta)?;
        let end = range_end(prefix);
        let mut out = Vec::new();
        for entry in table.range(prefix..end.as_str()).map_err(meta)? {
            let (k, v) = entry.map_err(meta)?;
            out.push((k.value().to_string(), v.value().to_vec()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// How many workflows a tenant keeps.
    pub fn workflow_count(&self, tenant: &str) -> Result<usize, StoreError> {
        self.count(WORKFLOWS, &format!("{tenant}/"))
    }

    /// A workflow's record.
    pub fn workflow(&self, tenant: &str, id: &str) -> Result<Option<WorkflowRecord>, StoreError> {
        self.get(WORKFLOWS, &workflow_key(tenant, id))?
            .map(|b| decode(&b))
            .transpose()
    }

    /// A tenant's workflows (every tenant's with `tenant` = None), by id.
    pub fn workflows(&self, tenant: Option<&str>) -> Result<Vec<WorkflowRecord>, StoreError> {
        let prefix = tenant.map(|t| format!("{t}/")).unwrap_or_default();
        self.scan(WORKFLOWS, &prefix, usize::MAX)?
            .iter()
            .map(|(_, v)| decode(v))
            .collect()
    }

    /// A step's record.
    pub fn step(
        &self,
        tenant: &str,
        workflow: &str,
        step: &str,
    ) -> Result<Option<StepRecord>, StoreError> {
        self.get(STEPS, &step_key(tenant, workflow, step))?
            .map(|b| decode(&b))
            .transpose()
    }

    /// A workflow's steps (at most `limit`), by name.
    pub fn steps(
        &self,
        tenant: &str,
        workflow: &str,
        limit: usize,
    ) -> Result<Vec<StepRecord>, StoreError> {
        self.scan(STEPS, &format!("{tenant}/{workflow}/"), limit)?
            .iter()
            .map(|(_, v)| decode(v))
            .collect()
    }

    /// A stored value.
    pub fn value(
        &self,
        tenant: &str,
        workflow: &str,
        digest: &str,
    ) -> Result<Option<Bytes>, StoreError> {
        Ok(self
            .get(VALUES, &value_key(tenant, workflow, digest))?
            .map(Bytes::from))
    }

    /// Every event waiting for a workflow (any name).
    pub fn pending_events(&self, tenant: &str, workflow: &str) -> Result<usize, StoreError> {
        self.count(EVENTS, &format!("{tenant}/{workflow}/"))
    }

    /// A virtual actor's state.
    pub fn actor(
        &self,
        tenant: &str,
        namespace: &str,
        actor: &str,
    ) -> Result<Option<Bytes>, StoreError> {
        Ok(self
            .get(ACTORS, &actor_key(tenant, namespace, actor))?
            .map(Bytes::from))
    }

    /// How many virtual actors a tenant has.
    pub fn actors(&self, tenant: &str) -> Result<usize, StoreError> {
        self.count(ACTORS, &format!("{tenant}/"))
    }

    /// A tenant's schedules (every tenant's with None).
    pub fn schedules(&self, tenant: Option<&str>) -> Result<Vec<ScheduleRecord>, StoreError> {
        let prefix = tenant.map(|t| format!("{t}/")).unwrap_or_default();
        self.scan(SCHEDULES, &prefix, usize::MAX)?
            .iter()
            .map(|(_, v)| decode(v))
            .collect()
    }
}

fn write_loop(backing: &Backing, rx: mpsc::Receiver<Write>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let mut ops = batch[0].ops.len();
        while ops < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => {
                    ops += next.ops.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        match commit(backing.db(), &mut batch) {
            Ok(replies) => {
                for (write, reply) in batch.into_iter().zip(replies) {
                    let _ = write.done.send(Ok(reply));
                }
            }
            Err(e) => {
                tracing::error!("the workflow log could not be written: {e}");
                for write in batch {
                    let _ = write.done.send(Err(e.to_string()));
                }
            }
        }
    }
}

fn commit(db: &Database, batch: &mut [Write]) -> Result<Vec<Option<Bytes>>, MetaError> {
    let txn = db.begin_write()?;
    let mut replies = Vec::with_capacity(batch.len());
    {
        let mut workflows = txn.open_table(WORKFLOWS)?;
        let mut steps = txn.open_table(STEPS)?;
        let mut values = txn.open_table(VALUES)?;
        let mut events = txn.open_table(EVENTS)?;
        let mut schedules = txn.open_table(SCHEDULES)?;
        let mut actors = txn.open_table(ACTORS)?;
        for write in batch.iter_mut() {
            let mut reply = None;
            for op in write.ops.drain(..) {
                match op {
                    Op::PutWorkflow(record) => {
                        let key = workflow_key(&record.tenant, &record.id);
                        workflows.insert(key.as_str(), encode(&record).as_slice())?;
                    }
                    Op::PutStep {
                        tenant,
                        workflow,
                        record,
                    } => {
                        let key = step_key(&tenant, &workflow, &record.name);
                        steps.insert(key.as_str(), encode(&record).as_slice())?;
                    }
                    Op::PutValue {
                        tenant,
                        workflow,
                        digest,
                        value,
                    } => {
                        let key = value_key(&tenant, &workflow, &digest);
                        if values.get(key.as_str())?.is_none() {
                            values.insert(key.as_str(), value.as_ref())?;
                        }
                    }
                    Op::PushEvent {
                        tenant,
                        workflow,
                        name,
                        not_before,
                        payload,
                    } => {
                        let prefix = event_prefix(&tenant, &workflow, &name);
                        let end = range_end(&prefix);
                        let last = events
                            .range(prefix.as_str()..end.as_str())?
                            .next_back()
                            .transpose()?
                            .and_then(|(k, _)| k.value().rsplit('/').next()?.parse::<u64>().ok())
                            .unwrap_or(0);
                        let seq = last.saturating_add(1).max(not_before);
                        let key = format!("{prefix}{seq:020}");
                        events.insert(key.as_str(), payload.as_ref())?;
                        reply = Some(Bytes::copy_from_slice(&seq.to_le_bytes()));
                    }
                    Op::ConsumeEvent {
                        tenant,
                        workflow,
                        name,
                        mut step,
                    } => {
                        let prefix = event_prefix(&tenant, &workflow, &name);
                        let end = range_end(&prefix);
                        let oldest = events
                            .range(prefix.as_str()..end.as_str())?
                            .next()
                            .transpose()?
                            .map(|(k, v)| (k.value().to_string(), v.value().to_vec()));
                        if let Some((key, payload)) = oldest {
                            events.remove(key.as_str())?;
                            let payload = Bytes::from(payload);
                            let digest = super::record::digest(&payload);
                            let vkey = value_key(&tenant, &workflow, &digest);
                            if values.get(vkey.as_str())?.is_none() {
                                values.insert(vkey.as_str(), payload.as_ref())?;
                            }
                            step.output = Some(digest);
                            let skey = step_key(&tenant, &workflow, &step.name);
                            steps.insert(skey.as_str(), encode(&step).as_slice())?;
                            reply = Some(payload);
                        }
                    }
                    Op::BumpCounter {
                        tenant,
                        workflow,
                        next,
                    } => {
                        let key = workflow_key(&tenant, &workflow);
                        let found = workflows.get(key.as_str())?.map(|v| v.value().to_vec());
                        if let Some(mut record) =
                            found.and_then(|b| rmp_serde::from_slice::<WorkflowRecord>(&b).ok())
                            && record.next_step < next
                        {
                            record.next_step = next;
                            workflows.insert(key.as_str(), encode(&record).as_slice())?;
                        }
                    }
                    Op::PutActor {
                        tenant,
                        namespace,
                        actor,
                        state,
                    } => {
                        let key = actor_key(&tenant, &namespace, &actor);
                        actors.insert(key.as_str(), state.as_ref())?;
                    }
                    Op::DeleteActor {
                        tenant,
                        namespace,
                        actor,
                    } => {
                        reply = actors
                            .remove(actor_key(&tenant, &namespace, &actor).as_str())?
                            .map(|v| Bytes::from(v.value().to_vec()));
                    }
                    Op::PutSchedule(record) => {
                        let key = workflow_key(&record.tenant, &record.name);
                        schedules.insert(key.as_str(), encode(&record).as_slice())?;
                    }
                    Op::MarkFired {
                        tenant,
                        name,
                        at_ms,
                    } => {
                        let key = workflow_key(&tenant, &name);
                        let found = schedules.get(key.as_str())?.map(|v| v.value().to_vec());
                        if let Some(mut record) =
                            found.and_then(|b| rmp_serde::from_slice::<ScheduleRecord>(&b).ok())
                        {
                            record.last_fired_ms = Some(at_ms);
                            schedules.insert(key.as_str(), encode(&record).as_slice())?;
                        }
                    }
                    Op::DeleteSchedule { tenant, name } => {
                        schedules.remove(workflow_key(&tenant, &name).as_str())?;
                    }
                    Op::DeleteTenant { tenant } => {
                        let prefix = format!("{tenant}/");
                        let end = range_end(&prefix);
                        for table in [
                            &mut workflows,
                            &mut steps,
                            &mut values,
                            &mut events,
                            &mut schedules,
                            &mut actors,
                        ] {
                            table.retain_in(prefix.as_str()..end.as_str(), |_, _| false)?;
                        }
                    }
                    Op::DeleteWorkflow { tenant, workflow } => {
                        workflows.remove(workflow_key(&tenant, &workflow).as_str())?;
                        let prefix = format!("{tenant}/{workflow}/");
                        let end = range_end(&prefix);
                        for table in [&mut steps, &mut values, &mut events] {
                            table.retain_in(prefix.as_str()..end.as_str(), |_, _| false)?;
                        }
                    }
                }
            }
            replies.push(reply);
        }
    }
    txn.commit()?;
    Ok(replies)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::record::{StepRecord, StepStatus};

    fn step(name: &str) -> StepRecord {
        StepRecord {
            name: name.into(),
            function: "f".into(),
            node: "n".into(),
            status: StepStatus::Running,
            attempts: 1,
            inputs: Vec::new(),
            output: None,
            continuation: None,
            deadline_ms: None,
            error: None,
            started_ms: 1,
            ended_ms: None,
        }
    }

    fn put_step(tenant: &str, name: &str) -> Op {
        Op::PutStep {
            tenant: tenant.into(),
            workflow: "w".into(),
            record: step(name),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_all_commit_and_stay_in_their_tenant() {
        let store = WorkflowStore::in_memory().unwrap();
        let mut writes = tokio::task::JoinSet::new();
        for i in 0..200 {
            let store = store.clone();
            writes
                .spawn(async move { store.write(vec![put_step("acme", &format!("s{i}"))]).await });
        }
        while let Some(done) = writes.join_next().await {
            done.unwrap().unwrap();
        }
        store.write(vec![put_step("zeta", "s0")]).await.unwrap();
        assert_eq!(store.steps("acme", "w", usize::MAX).unwrap().len(), 200);
        assert_eq!(store.steps("zeta", "w", usize::MAX).unwrap().len(), 1);
        // A tenant's deletion takes its records only.
        store
            .write(vec![Op::DeleteTenant {
                tenant: "acme".into(),
            }])
            .await
            .unwrap();
        assert!(store.steps("acme", "w", usize::MAX).unwrap().is_empty());
        assert_eq!(store.steps("zeta", "w", usize::MAX).unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_event_is_consumed_once_with_the_step_that_takes_it() {
        let store = WorkflowStore::in_memory().unwrap();
        let consume = |name: &str| Op::ConsumeEvent {
            tenant: "acme".into(),
            workflow: "w".into(),
            name: "go".into(),
            step: step(name),
        };
        assert_eq!(store.write(vec![consume("e0")]).await.unwrap(), None);
        assert!(
            store.step("acme", "w", "e0").unwrap().is_none(),
            "nothing taken, nothing logged"
        );
        let mut numbers = Vec::new();
        for payload in ["first", "second"] {
            let seq = store
                .write(vec![Op::PushEvent {
                    tenant: "acme".into(),
                    workflow: "w".into(),
                    name: "go".into(),
                    not_before: 5,
                    payload: Bytes::from(payload),
                }])
                .await
                .unwrap()
                .unwrap();
            numbers.push(u64::from_le_bytes(seq.as_ref().try_into().unwrap()));
        }
        // Numbered in order, never twice.
        assert_eq!(numbers, [5, 6]);
        assert_eq!(store.pending_events("acme", "w").unwrap(), 2);
        let first = store.write(vec![consume("e1")]).await.unwrap();
        assert_eq!(first.as_deref(), Some(&b"first"[..]));
        let logged = store.step("acme", "w", "e1").unwrap().unwrap();
        let digest = logged.output.unwrap();
        assert_eq!(
            store.value("acme", "w", &digest).unwrap().as_deref(),
            Some(&b"first"[..])
        );
        let second = store.write(vec![consume("e2")]).await.unwrap();
        assert_eq!(second.as_deref(), Some(&b"second"[..]));
        assert_eq!(store.write(vec![consume("e3")]).await.unwrap(), None);
        assert_eq!(store.pending_events("acme", "w").unwrap(), 0);
    }
}
