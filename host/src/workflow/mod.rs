//! Durable workflows: step graphs whose outputs the head logs, so that a
//! workflow resumed after a crash (of the head, a node, the client)
//! reruns only the steps that had not finished.
//!
//! - `record.rs`: what the log keeps (workflows, steps, schedules);
//! - `store.rs`: the log in redb, with group commits;
//! - `graph.rs`: step graphs as MessagePack (nested steps, objects, names);
//! - `exec.rs`: one run of a workflow, step by step;
//! - `schedule.rs`: cron schedules;
//! - `pipeline.rs`: declarative (YAML) pipelines.
//!
//! A workflow runs on the head's node in a context of its own (like a
//! served application's), with the grant of whoever started it: its
//! steps are tasks of that context, placed anywhere in the cluster.

mod actor;
mod exec;
pub mod graph;
pub mod pipeline;
pub mod record;
pub mod schedule;
pub mod store;

pub use exec::StepFailure;
pub use record::{ScheduleRecord, Starter, Status, StepRecord, StepStatus, WorkflowRecord};
pub use store::{StoreError, WorkflowStore};

use crate::ids::{ModuleHash, OwnerId};
use crate::node::Node;
use crate::security::tenants::JobGrant;
use crate::security::tenants::NamespaceRef;
use crate::sync::MutexExt;
use crate::task::JobTicket;
use bytes::Bytes;
use exec::Run;
use prism_abi::workflow::StepNode;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use store::Op;

/// Most steps one run of a workflow starts (100,000).
pub const MAX_STEPS: u64 = 100_000;
/// Most workflows one tenant may have running at once (100).
pub const MAX_RUNNING_PER_TENANT: usize = 100;
/// Most workflows one tenant may keep in the log, ended or not (10,000).
pub const MAX_STORED_PER_TENANT: usize = 10_000;
/// Largest event payload (1 MiB).
pub const MAX_EVENT_BYTES: usize = 1 << 20;
/// Most undelivered events one workflow may hold (1,000).
pub const MAX_PENDING_EVENTS: usize = 1_000;
/// Longest workflow id (128 bytes).
pub const MAX_ID_LEN: usize = 128;

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Why a workflow call is refused.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// No such workflow (or step) in the tenant.
    #[error("{0}")]
    NotFound(String),
    /// A workflow with that id exists.
    #[error("workflow {0} already exists")]
    AlreadyExists(String),
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The workflow is not in a state that allows this.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A bound of the tenant or the workflow is reached.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What starts a workflow.
pub struct StartRequest {
    /// Its tenant.
    pub tenant: String,
    /// Its id (default: `<entry>-<random>`).
    pub id: Option<String>,
    /// The namespace its steps run in.
    pub namespace: String,
    /// Its module (uploaded).
    pub module: ModuleHash,
    /// What it was started from, for listings (the entry task, a file).
    pub entry: String,
    /// Its root step (unnamed steps get derived names; the root, if
    /// unnamed, is named after `entry`).
    pub root: StepNode,
    /// Who starts it.
    pub starter: Starter,
    /// What its steps may do.
    pub grant: Arc<JobGrant>,
    /// The schedule that fires it, if one does.
    pub schedule: Option<String>,
}

/// A workflow reserved by [`Workflows::reserve`]: released when dropped.
struct Reservation<'a> {
    workflows: &'a Workflows,
    key: (String, String),
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.workflows.starting.locked().remove(&self.key);
    }
}

/// Makes the grant of a workflow that resumes without a caller (after a
/// head restart, or fired by a schedule).
pub trait GrantSource: Send + Sync {
    /// The grant of `starter` in `tenant`'s `namespace`, under the
    /// policies in force now.
    fn grant(
        &self,
        tenant: &str,
        namespace: &str,
        starter: &Starter,
    ) -> Result<Arc<JobGrant>, String>;
}

/// The single-user embedded cluster's grants: [`JobGrant::local`].
pub struct LocalGrants;

impl GrantSource for LocalGrants {
    fn grant(&self, _: &str, _: &str, _: &Starter) -> Result<Arc<JobGrant>, String> {
        Ok(JobGrant::local())
    }
}

struct Running {
    run: Arc<Run>,
    task: tokio::task::AbortHandle,
    /// Fires when the run ends.
    ended: tokio::sync::watch::Receiver<bool>,
}

/// The workflows of a cluster, run from its head's node.
pub struct Workflows {
    node: Arc<Node>,
    store: Arc<WorkflowStore>,
    grants: Arc<dyn GrantSource>,
    running: std::sync::Mutex<HashMap<(String, String), Running>>,
    /// Workflows being started or resumed (not yet in `running`).
    starting: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
    actor_locks: Arc<actor::ActorLocks>,
    me: std::sync::Weak<Workflows>,
}

/// Checks a workflow (or schedule) id: 1 to 128 bytes of ASCII letters,
/// digits, `.`, `_`, `-`, `:`.
pub fn check_id(id: &str) -> Result<(), WorkflowError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if ok {
        Ok(())
    } else {
        Err(WorkflowError::InvalidArgument(format!(
            "workflow id {id:?} is not valid (1 to {MAX_ID_LEN} of A-Z a-z 0-9 . _ - :)"
        )))
    }
}

/// Checks an event name (as a workflow id).
pub fn check_event(name: &str) -> Result<(), WorkflowError> {
    check_id(name).map_err(|_| {
        WorkflowError::InvalidArgument(format!(
            "event name {name:?} is not valid (1 to {MAX_ID_LEN} of A-Z a-z 0-9 . _ - :)"
        ))
    })
}

impl Workflows {
    /// The workflows logged in `store`, run on `node`.
    pub fn new(
        node: Arc<Node>,
        store: Arc<WorkflowStore>,
        grants: Arc<dyn GrantSource>,
    ) -> Arc<Workflows> {
        Arc::new_cyclic(|me| Workflows {
            node,
            store,
            grants,
            running: Default::default(),
            starting: Default::default(),
            actor_locks: Default::default(),
            me: me.clone(),
        })
    }

    /// The log.
    pub fn store(&self) -> &Arc<WorkflowStore> {
        &self.store
    }

    /// Where grants of runs without a caller come from.
    pub fn grants(&self) -> &Arc<dyn GrantSource> {
        &self.grants
    }

    fn not_found(id: &str) -> WorkflowError {
        WorkflowError::NotFound(format!("no workflow {id}"))
    }

    /// A workflow of `tenant`.
    pub fn get(&self, tenant: &str, id: &str) -> Result<WorkflowRecord, WorkflowError> {
        self.store
            .workflow(tenant, id)?
            .ok_or_else(|| Self::not_found(id))
    }

    /// `tenant`'s workflows, newest first, optionally of one status.
    pub fn list(
        &self,
        tenant: &str,
        status: Option<Status>,
    ) -> Result<Vec<WorkflowRecord>, WorkflowError> {
        let mut all = self.store.workflows(Some(tenant))?;
        all.retain(|w| status.is_none_or(|s| w.status == s));
        all.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(a.id.cmp(&b.id)));
        Ok(all)
    }

    /// A workflow's steps (at most `limit`), by name.
    pub fn steps(
        &self,
        tenant: &str,
        id: &str,
        limit: usize,
    ) -> Result<Vec<StepRecord>, WorkflowError> {
        self.get(tenant, id)?;
        Ok(self.store.steps(tenant, id, limit)?)
    }

    /// Starts a workflow.
    pub async fn start(&self, request: StartRequest) -> Result<WorkflowRecord, WorkflowError> {
        let id = match &request.id {
            Some(id) => id.clone(),
            None => format!(
                "{}-{}",
                request
                    .entry
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric())
                    .take(32)
                    .collect::<String>(),
                hex::encode(crate::ids::random_bytes::<6>())
            ),
        };
        check_id(&id)?;
        let Some(_reserved) = self.reserve(&request.tenant, &id)? else {
            return Err(WorkflowError::AlreadyExists(id));
        };
        if self.store.workflow(&request.tenant, &id)?.is_some() {
            return Err(WorkflowError::AlreadyExists(id));
        }
        let stored = self.store.workflow_count(&request.tenant)?;
        if stored >= MAX_STORED_PER_TENANT {
            return Err(WorkflowError::ResourceExhausted(format!(
                "tenant {} keeps {stored} workflows, the most it may (delete ended ones)",
                request.tenant
            )));
        }
        let mut root = request.root;
        let mut counter = 0;
        let root_name = match &root.kind {
            prism_abi::workflow::StepKind::Task { function } => function.clone(),
            _ => root.label().to_string(),
        };
        graph::name_steps(&mut root, Some(&root_name), &mut counter)
            .map_err(|e| WorkflowError::InvalidArgument(e.to_string()))?;
        let now = now_ms();
        let record = WorkflowRecord {
            tenant: request.tenant.clone(),
            id: id.clone(),
            namespace: request.namespace.clone(),
            module: format!("{:?}", request.module),
            root: root.encode(),
            entry: request.entry,
            status: Status::Running,
            error: None,
            output: None,
            starter: request.starter,
            schedule: request.schedule,
            created_ms: now,
            updated_ms: now,
            ended_ms: None,
            runs: 1,
            next_step: counter,
        };
        self.store
            .write(vec![Op::PutWorkflow(record.clone())])
            .await?;
        self.launch(record.clone(), request.grant).await;
        Ok(record)
    }

    /// Reserves a workflow for one start or resume at a time: none while
    /// it runs or another start of it is under way (`None`), and none past
    /// the tenant's [`MAX_RUNNING_PER_TENANT`], counting the runs being
    /// started, checked under the same locks so that concurrent starts
    /// cannot overshoot it.
    fn reserve(&self, tenant: &str, id: &str) -> Result<Option<Reservation<'_>>, WorkflowError> {
        let key = (tenant.to_string(), id.to_string());
        let running = self.running.locked();
        let mut starting = self.starting.locked();
        if running.contains_key(&key) || starting.contains(&key) {
            return Ok(None);
        }
        let live = running.keys().filter(|(t, _)| t == tenant).count()
            + starting.iter().filter(|(t, _)| t == tenant).count();
        if live >= MAX_RUNNING_PER_TENANT {
            return Err(WorkflowError::ResourceExhausted(format!(
                "tenant {tenant} runs {live} workflows, the most it may at once"
            )));
        }
        starting.insert(key.clone());
        Ok(Some(Reservation {
            workflows: self,
            key,
        }))
    }

    /// Whether a run of the workflow is live or starting.
    fn active(&self, key: &(String, String)) -> bool {
        self.running.locked().contains_key(key) || self.starting.locked().contains(key)
    }

    /// Starts a run of `record` (RUNNING, logged).
    async fn launch(&self, record: WorkflowRecord, grant: Arc<JobGrant>) {
        let key = (record.tenant.clone(), record.id.clone());
        let Some(module) = ModuleHash::parse(&record.module) else {
            self.end(
                &key,
                None,
                Status::Resumable,
                Some(format!("malformed module digest {}", record.module)),
                None,
            )
            .await;
            return;
        };
        let ticket = Arc::new(JobTicket {
            namespace: NamespaceRef::new(&grant.tenant, &record.namespace),
            grant,
            env: None,
            job: None,
        });
        let service = match self
            .node
            .open_service(OwnerId::random(), module, ticket)
            .await
        {
            Ok(service) => service,
            Err(e) => {
                let why = format!("the module could not be loaded: {}", e.message);
                self.end(&key, None, Status::Resumable, Some(why), None)
                    .await;
                return;
            }
        };
        let run = Run::new(
            self.node.clone(),
            self.store.clone(),
            service,
            &record,
            self.actor_locks.clone(),
        );
        let root = match StepNode::decode(&record.root) {
            Ok(root) => root,
            Err(e) => {
                self.node.close_service(&run.service);
                self.end(
                    &key,
                    None,
                    Status::Failed,
                    Some(format!("the root step does not decode: {e}")),
                    None,
                )
                .await;
                return;
            }
        };
        let (ended_tx, ended) = tokio::sync::watch::channel(false);
        let me = self.me.clone();
        // Registered before it runs, so that it ends after it is there;
        // not at all if it was cancelled (or deleted) while it started.
        let mut running = self.running.locked();
        let still = self
            .store
            .workflow(&key.0, &key.1)
            .ok()
            .flatten()
            .is_some_and(|r| r.status == Status::Running);
        if !still || running.contains_key(&key) {
            drop(running);
            self.node.close_service(&run.service);
            return;
        }
        let task = tokio::spawn({
            let run = run.clone();
            let key = key.clone();
            async move {
                let result = run.run_step(root).await;
                // Steps still running (beside one that failed) stop.
                run.abort();
                if let Some(me) = me.upgrade() {
                    me.node.close_service(&run.service);
                    let run = Some(&run);
                    match result {
                        Ok(output) => {
                            let digest = record::digest(&output);
                            me.end(&key, run, Status::Successful, None, Some(digest))
                                .await
                        }
                        Err(StepFailure::Failed { step, error }) => {
                            let why =
                                format!("step {step}: {}: {}", error.kind.as_str(), error.message);
                            me.end(&key, run, Status::Failed, Some(why), None).await
                        }
                        Err(StepFailure::Stopped(why)) => {
                            me.end(&key, run, Status::Resumable, Some(why), None).await
                        }
                    }
                }
                let _ = ended_tx.send(true);
            }
        });
        running.insert(
            key,
            Running {
                run,
                task: task.abort_handle(),
                ended,
            },
        );
    }

    /// Records how a run ended (unless it was cancelled meanwhile).
    async fn end(
        &self,
        key: &(String, String),
        run: Option<&Arc<Run>>,
        status: Status,
        error: Option<String>,
        output: Option<String>,
    ) {
        if let Some(run) = run {
            let mut running = self.running.locked();
            if running.get(key).is_some_and(|r| Arc::ptr_eq(&r.run, run)) {
                running.remove(key);
            }
        }
        let Ok(Some(mut record)) = self.store.workflow(&key.0, &key.1) else {
            return;
        };
        if record.status == Status::Canceled {
            return;
        }
        let now = now_ms();
        record.status = status;
        record.error = error;
        record.output = output;
        record.updated_ms = now;
        record.ended_ms = (status != Status::Resumable).then_some(now);
        if let Err(e) = self.store.write(vec![Op::PutWorkflow(record)]).await {
            tracing::error!(workflow = %key.1, "could not record the workflow's end: {e}");
        }
    }

    /// Waits for a workflow to end (at most `wait`) and returns its
    /// record.
    pub async fn wait(
        &self,
        tenant: &str,
        id: &str,
        wait: Duration,
    ) -> Result<WorkflowRecord, WorkflowError> {
        let ended = self
            .running
            .locked()
            .get(&(tenant.to_string(), id.to_string()))
            .map(|r| r.ended.clone());
        if let Some(mut ended) = ended {
            let _ = tokio::time::timeout(wait, ended.wait_for(|e| *e)).await;
        }
        self.get(tenant, id)
    }

    /// The output of a workflow (or of one of its steps), encoded.
    pub fn output(
        &self,
        tenant: &str,
        id: &str,
        step: Option<&str>,
    ) -> Result<Bytes, WorkflowError> {
        let record = self.get(tenant, id)?;
        let digest = match step {
            None => match (record.status, record.output) {
                (Status::Successful, Some(digest)) => digest,
                (status, _) => {
                    return Err(WorkflowError::FailedPrecondition(format!(
                        "workflow {id} is {}{}",
                        status.as_str(),
                        record.error.map(|e| format!(": {e}")).unwrap_or_default()
                    )));
                }
            },
            Some(name) => {
                let step = self.store.step(tenant, id, name)?.ok_or_else(|| {
                    WorkflowError::NotFound(format!("workflow {id} has no step {name}"))
                })?;
                match (step.status, step.output) {
                    (StepStatus::Done, Some(digest)) => digest,
                    (status, _) => {
                        return Err(WorkflowError::FailedPrecondition(format!(
                            "step {name} is {}",
                            status.as_str()
                        )));
                    }
                }
            }
        };
        self.store
            .value(tenant, id, &digest)?
            .ok_or_else(|| WorkflowError::NotFound(format!("the output {digest} is missing")))
    }

    /// Resumes a FAILED or RESUMABLE workflow (or a RUNNING one that no
    /// run holds, after a head restart) with `grant`.
    pub async fn resume(
        &self,
        tenant: &str,
        id: &str,
        grant: Option<Arc<JobGrant>>,
    ) -> Result<WorkflowRecord, WorkflowError> {
        let mut record = self.get(tenant, id)?;
        let Some(_reserved) = self.reserve(tenant, id)? else {
            return Err(WorkflowError::FailedPrecondition(format!(
                "workflow {id} is running"
            )));
        };
        if !(record.status.resumable() || record.status == Status::Running) {
            return Err(WorkflowError::FailedPrecondition(format!(
                "workflow {id} is {}: only FAILED and RESUMABLE workflows resume",
                record.status.as_str()
            )));
        }
        let grant = match grant {
            Some(grant) => grant,
            None => self
                .grants
                .grant(tenant, &record.namespace, &record.starter)
                .map_err(WorkflowError::FailedPrecondition)?,
        };
        record.status = Status::Running;
        record.error = None;
        record.ended_ms = None;
        record.runs += 1;
        record.updated_ms = now_ms();
        self.store
            .write(vec![Op::PutWorkflow(record.clone())])
            .await?;
        self.launch(record.clone(), grant).await;
        Ok(record)
    }

    /// Resumes every resumable workflow of `tenant` in the namespaces
    /// `grant_for` gives a grant for; returns their ids.
    pub async fn resume_all(
        &self,
        tenant: &str,
        grant_for: impl Fn(&str) -> Option<Arc<JobGrant>>,
    ) -> Result<Vec<String>, WorkflowError> {
        let mut resumed = Vec::new();
        for record in self.list(tenant, None)? {
            if !record.status.resumable() {
                continue;
            }
            if let Some(grant) = grant_for(&record.namespace) {
                match self.resume(tenant, &record.id, Some(grant)).await {
                    Ok(_) => resumed.push(record.id),
                    Err(WorkflowError::ResourceExhausted(_)) => break,
                    Err(_) => {}
                }
            }
        }
        Ok(resumed)
    }

    /// Resumes the workflows that were RUNNING when the head stopped,
    /// each with its starter's grant under today's policies.
    pub async fn recover(&self) {
        let Ok(all) = self.store.workflows(None) else {
            tracing::error!("the workflow log could not be read");
            return;
        };
        for record in all.into_iter().filter(|r| r.status == Status::Running) {
            match self.resume(&record.tenant, &record.id, None).await {
                Ok(_) => {
                    tracing::info!(tenant = %record.tenant, workflow = %record.id, "workflow resumed")
                }
                Err(e) => {
                    let key = (record.tenant.clone(), record.id.clone());
                    if self.active(&key) {
                        // Resumed by a caller first.
                        continue;
                    }
                    tracing::warn!(tenant = %record.tenant, workflow = %record.id, "workflow not resumed: {e}");
                    self.end(
                        &key,
                        None,
                        Status::Resumable,
                        Some(format!("not resumed after a restart: {e}")),
                        None,
                    )
                    .await;
                }
            }
        }
    }

    /// Cancels a running (or resumable) workflow: its steps stop, and it
    /// never resumes.
    pub async fn cancel(&self, tenant: &str, id: &str) -> Result<WorkflowRecord, WorkflowError> {
        let mut record = self.get(tenant, id)?;
        if matches!(record.status, Status::Successful | Status::Canceled) {
            return Err(WorkflowError::FailedPrecondition(format!(
                "workflow {id} is {}",
                record.status.as_str()
            )));
        }
        let now = now_ms();
        record.status = Status::Canceled;
        record.error = Some("cancelled".into());
        record.updated_ms = now;
        record.ended_ms = Some(now);
        self.store
            .write(vec![Op::PutWorkflow(record.clone())])
            .await?;
        let running = self
            .running
            .locked()
            .remove(&(tenant.to_string(), id.to_string()));
        if let Some(running) = running {
            running.run.abort();
            running.task.abort();
            self.node.close_service(&running.run.service);
        }
        Ok(record)
    }

    /// Deletes an ended workflow and everything logged for it.
    pub async fn delete(&self, tenant: &str, id: &str) -> Result<(), WorkflowError> {
        let record = self.get(tenant, id)?;
        if record.status == Status::Running {
            return Err(WorkflowError::FailedPrecondition(format!(
                "workflow {id} is RUNNING: cancel it first"
            )));
        }
        self.store
            .write(vec![Op::DeleteWorkflow {
                tenant: tenant.to_string(),
                workflow: id.to_string(),
            }])
            .await?;
        Ok(())
    }

    /// Delivers event `name` with `payload` (one encoded value) to a
    /// workflow; returns once it is logged. Each delivered event reaches
    /// exactly one `wait_for_event` step.
    pub async fn signal(
        &self,
        tenant: &str,
        id: &str,
        name: &str,
        payload: Bytes,
    ) -> Result<u64, WorkflowError> {
        check_event(name)?;
        let record = self.get(tenant, id)?;
        if matches!(record.status, Status::Successful | Status::Canceled) {
            return Err(WorkflowError::FailedPrecondition(format!(
                "workflow {id} is {}: it takes no more events",
                record.status.as_str()
            )));
        }
        if payload.len() > MAX_EVENT_BYTES {
            return Err(WorkflowError::InvalidArgument(format!(
                "the event's payload is {} bytes, more than {MAX_EVENT_BYTES}",
                payload.len()
            )));
        }
        if self.store.pending_events(tenant, id)? >= MAX_PENDING_EVENTS {
            return Err(WorkflowError::ResourceExhausted(format!(
                "workflow {id} holds {MAX_PENDING_EVENTS} undelivered events"
            )));
        }
        // The writer numbers it, after the highest waiting and after the
        // clock, so that two signals never share a number and one
        // consumed and deleted is never reused.
        let numbered = self
            .store
            .write(vec![Op::PushEvent {
                tenant: tenant.to_string(),
                workflow: id.to_string(),
                name: name.to_string(),
                not_before: now_ms().saturating_mul(1000),
                payload,
            }])
            .await?;
        let seq = numbered
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map(u64::from_le_bytes)
            .unwrap_or_default();
        if let Some(running) = self
            .running
            .locked()
            .get(&(tenant.to_string(), id.to_string()))
        {
            running.run.events.notify_waiters();
        }
        Ok(seq)
    }

    /// A virtual actor's state, encoded.
    pub fn actor_state(
        &self,
        tenant: &str,
        namespace: &str,
        actor: &str,
    ) -> Result<Bytes, WorkflowError> {
        self.store.actor(tenant, namespace, actor)?.ok_or_else(|| {
            WorkflowError::NotFound(format!("no virtual actor {actor} in namespace {namespace}"))
        })
    }

    /// Deletes a virtual actor (waits for the call that changes it, if
    /// one runs).
    pub async fn delete_actor(
        &self,
        tenant: &str,
        namespace: &str,
        actor: &str,
    ) -> Result<(), WorkflowError> {
        let lock = self.actor_locks.of(format!("{tenant}/{namespace}/{actor}"));
        let _held = lock.lock().await;
        let removed = self
            .store
            .write(vec![Op::DeleteActor {
                tenant: tenant.to_string(),
                namespace: namespace.to_string(),
                actor: actor.to_string(),
            }])
            .await?;
        if removed.is_none() {
            return Err(WorkflowError::NotFound(format!(
                "no virtual actor {actor} in namespace {namespace}"
            )));
        }
        Ok(())
    }

    /// Forgets a deleted tenant: its runs stop, and its workflows,
    /// schedules and virtual actors are deleted.
    pub async fn delete_tenant(&self, tenant: &str) -> Result<(), WorkflowError> {
        let runs: Vec<Running> = {
            let mut running = self.running.locked();
            let keys: Vec<_> = running
                .keys()
                .filter(|(t, _)| t == tenant)
                .cloned()
                .collect();
            keys.iter().filter_map(|k| running.remove(k)).collect()
        };
        for running in runs {
            running.run.abort();
            running.task.abort();
            self.node.close_service(&running.run.service);
        }
        self.store
            .write(vec![Op::DeleteTenant {
                tenant: tenant.to_string(),
            }])
            .await?;
        Ok(())
    }

    /// Stops every run (the head is stopping): they stay RUNNING in the
    /// log and resume when it is back.
    pub fn stop_all(&self) {
        for (_, running) in self.running.locked().drain() {
            running.run.abort();
            running.task.abort();
            self.node.close_service(&running.run.service);
        }
    }
}
