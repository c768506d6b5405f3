//! Actors: long-lived guest instances with state, serving method calls one
//! at a time.
//!
//! # Design
//! Each actor is an [`ActorRecord`] in the node's [`ActorManager`] and one
//! supervising tokio task ([`supervise`]) that owns the actor's
//! [`Instance`](crate::runtime::Instance) and reads its mailbox. The mailbox
//! is a FIFO channel, so calls run one at a time in the order they were
//! sent, which gives every caller FIFO order.
//!
//! ```text
//!   creating ──► alive ──(instance dies, restarts left)──► restarting ──► alive
//!      │           │ \──(kill / exit / no restarts left)──► dead
//!      └─(constructor fails, unschedulable)─────────────────► dead
//! ```
//! - A method returning `Err` is the caller's error; the actor keeps its
//!   state. An instance that dies (panic, trap, memory limit, deadline) is
//!   replaced by a new one from the constructor — or from the saved state of
//!   a persistent actor — while `max_restarts` allows; the failed call's
//!   error says so, and it is retried on the new instance if it was a system
//!   error and `max_task_retries` allows.
//! - A dead actor's pending and later calls get `actor_died` errors that
//!   carry the reason. Its name is freed.
//! - The actor holds its resources (a scheduler [`Lease`]) for its life.
//!
//! The supervisor reaches the rest of the node only through [`ActorEnv`].

use crate::ids::{ActorId, ObjectId, OwnerId};
use crate::metrics::calls::CallSeries;
use crate::objects::{Object, ObjectStore};
use crate::runtime::{BoxFuture, CancelToken, Instance, Invocation, InvocationOutcome};
use crate::scheduler::resources::ResourceSet;
use crate::scheduler::{Lease, SlotHandle, Turn, args_ready, resolve_args};
use crate::sync::MutexExt;
use crate::task::{Arg, EntryKind};
use bytes::Bytes;
use prism_abi::{ErrorKind, WireError};
pub use served::CallEvents;
use served::ServedCall;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;

/// Everything fixed about one actor.
pub struct ActorRecord {
    /// Its id.
    pub id: ActorId,
    /// Its class (the struct's name).
    pub class: String,
    /// The namespace of its name (and of its named objects and state).
    pub namespace: crate::security::tenants::NamespaceRef,
    /// Its name, if it has one.
    pub name: Option<String>,
    /// The owner it ends with (the job, or actor, that created it);
    /// `None` for a detached actor.
    pub owner: Option<OwnerId>,
    /// The owner of the objects the actor itself creates (freed when it dies).
    pub objects_owner: OwnerId,
    /// Constructor arguments.
    pub ctor_args: Vec<Arg>,
    /// Resources held for its life.
    pub hold: ResourceSet,
    /// Cap on its linear memory.
    pub memory_limit: u64,
    /// Restarts allowed; negative is unlimited.
    pub max_restarts: i32,
    /// Retries of a call whose instance died.
    pub max_task_retries: u32,
    /// Whether it saves and restores its state.
    pub persistent: bool,
    mailbox: mpsc::UnboundedSender<ActorMsg>,
    death: Mutex<Option<WireError>>,
    /// Interrupts the running call when the actor is killed.
    kill_switch: Arc<CancelToken>,
}

impl ActorRecord {
    /// A new record and the receiving end of its mailbox.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: ActorId,
        class: String,
        namespace: crate::security::tenants::NamespaceRef,
        name: Option<String>,
        owner: Option<OwnerId>,
        ctor_args: Vec<Arg>,
        hold: ResourceSet,
        memory_limit: u64,
        max_restarts: i32,
        max_task_retries: u32,
        persistent: bool,
    ) -> (Arc<ActorRecord>, mpsc::UnboundedReceiver<ActorMsg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let record = ActorRecord {
            id,
            class,
            namespace,
            name,
            owner,
            objects_owner: OwnerId::random(),
            ctor_args,
            hold,
            memory_limit,
            max_restarts,
            max_task_retries,
            persistent,
            mailbox: tx,
            death: Mutex::new(None),
            kill_switch: Arc::new(CancelToken::default()),
        };
        (Arc::new(record), rx)
    }

    fn death(&self) -> MutexGuard<'_, Option<WireError>> {
        self.death.locked()
    }

    /// Why the actor died, if it did.
    pub fn death_reason(&self) -> Option<WireError> {
        self.death().clone()
    }

    /// The key of its saved state in the durable store.
    pub fn state_key(&self) -> String {
        match &self.name {
            Some(name) => format!("{}:name:{name}", self.class),
            None => format!("{}:id:{}", self.class, self.id),
        }
    }
}

/// A message to an actor's supervisor.
pub enum ActorMsg {
    /// Run a method; the result goes to `return_id`.
    Call {
        /// The method's name.
        method: String,
        /// Its arguments.
        args: Vec<Arg>,
        /// Where its result goes.
        return_id: ObjectId,
        /// When it was sent.
        sent: std::time::Instant,
        /// The id its record among the job's task events carries, if not
        /// `return_id` (a call another node placed here: that node's).
        recorded_as: Option<ObjectId>,
    },
    /// Stop now, without restart.
    Kill,
}

/// A name is already held by a live actor.
#[derive(Debug, thiserror::Error)]
#[error("an actor named {0:?} already exists in this namespace")]
pub struct NameTaken(pub String);

#[derive(Default)]
struct Registry {
    actors: HashMap<ActorId, Arc<ActorRecord>>,
    names: HashMap<(String, String), ActorId>,
    /// Dead actors, oldest first: kept so that calls can say why an actor
    /// died, but only the most recent [`DEAD_ACTORS_KEPT`].
    dead: std::collections::VecDeque<ActorId>,
}

/// How many dead actors' records (and death reasons) a node keeps: 10,000.
/// Calls to an actor forgotten beyond that fail as calls to an unknown id.
pub const DEAD_ACTORS_KEPT: usize = 10_000;

/// The actors of one node, by id and by (namespace, name).
#[derive(Default)]
pub struct ActorManager {
    registry: Mutex<Registry>,
}

impl ActorManager {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.locked()
    }

    /// Registers a new actor, claiming its name.
    pub fn register(&self, record: Arc<ActorRecord>) -> Result<(), NameTaken> {
        let mut registry = self.lock();
        if let Some(name) = &record.name {
            let key = (record.namespace.key().to_string(), name.clone());
            if registry.names.contains_key(&key) {
                return Err(NameTaken(name.clone()));
            }
            registry.names.insert(key, record.id);
        }
        registry.actors.insert(record.id, record);
        Ok(())
    }

    /// The actor with this id, alive or dead.
    pub fn get(&self, id: ActorId) -> Option<Arc<ActorRecord>> {
        self.lock().actors.get(&id).cloned()
    }

    /// The live actor named `name` in the namespace whose key is
    /// `namespace` ([`NamespaceRef::key`](crate::security::tenants::NamespaceRef::key)).
    pub fn by_name(&self, namespace: &str, name: &str) -> Option<Arc<ActorRecord>> {
        let registry = self.lock();
        let id = registry
            .names
            .get(&(namespace.to_string(), name.to_string()))?;
        registry.actors.get(id).cloned()
    }

    /// Sends a call; an unknown or dead actor is an `actor_died` error.
    pub fn call(
        &self,
        id: ActorId,
        method: String,
        args: Vec<Arg>,
        return_id: ObjectId,
    ) -> Result<(), WireError> {
        self.call_recorded(id, method, args, return_id, None)
    }

    /// [`ActorManager::call`], recorded among the job's task events under
    /// `recorded_as` (the caller's id of a call another node placed).
    pub fn call_recorded(
        &self,
        id: ActorId,
        method: String,
        args: Vec<Arg>,
        return_id: ObjectId,
        recorded_as: Option<ObjectId>,
    ) -> Result<(), WireError> {
        let Some(record) = self.get(id) else {
            return Err(WireError::new(
                ErrorKind::ActorDied,
                format!("no actor with id {id} exists (or it died long ago)"),
            ));
        };
        if let Some(reason) = record.death_reason() {
            return Err(reason);
        }
        record
            .mailbox
            .send(ActorMsg::Call {
                method,
                args,
                return_id,
                sent: std::time::Instant::now(),
                recorded_as,
            })
            .map_err(|_| {
                record.death_reason().unwrap_or_else(|| {
                    WireError::new(ErrorKind::ActorDied, "the actor has stopped")
                })
            })
    }

    /// Kills an actor (no restart) at once: its name is freed, later calls
    /// fail, and a running call is interrupted. Unknown or dead actors are
    /// ignored.
    pub fn kill(&self, id: ActorId) {
        let Some(record) = self.get(id) else { return };
        if record.death_reason().is_some() {
            return;
        }
        self.mark_dead(
            &record,
            WireError::new(ErrorKind::ActorDied, "the actor was killed"),
        );
        record.kill_switch.cancel();
        let _ = record.mailbox.send(ActorMsg::Kill);
    }

    /// Live actors that end with `job`.
    pub fn owned_by(&self, job: OwnerId) -> Vec<ActorId> {
        self.lock()
            .actors
            .values()
            .filter(|r| r.owner == Some(job) && r.death_reason().is_none())
            .map(|r| r.id)
            .collect()
    }

    /// Kills every live actor (node shutdown).
    pub fn kill_all(&self) {
        let ids: Vec<ActorId> = self.lock().actors.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
    }

    /// Live actors.
    pub fn live(&self) -> usize {
        self.lock()
            .actors
            .values()
            .filter(|r| r.death_reason().is_none())
            .count()
    }

    /// Records an actor's death and frees its name.
    fn mark_dead(&self, record: &ActorRecord, reason: WireError) {
        let mut registry = self.lock();
        let first_death = record.death().replace(reason).is_none();
        if first_death {
            registry.dead.push_back(record.id);
            while registry.dead.len() > DEAD_ACTORS_KEPT {
                if let Some(old) = registry.dead.pop_front() {
                    registry.actors.remove(&old);
                }
            }
        }
        if let Some(name) = &record.name {
            let key = (record.namespace.key().to_string(), name.clone());
            if registry.names.get(&key) == Some(&record.id) {
                registry.names.remove(&key);
            }
        }
    }
}

/// What a supervisor needs from its node.
pub trait ActorEnv: Send + Sync + 'static {
    /// The node's object store.
    fn objects(&self) -> &ObjectStore;
    /// Holds the actor's resources for its life.
    fn lease(&self, record: &ActorRecord) -> BoxFuture<'static, Lease>;
    /// Waits for the actor's turn to run code (a CPU, if it holds none of
    /// its own; see [`crate::scheduler::Scheduler::turn`]).
    fn turn(&self, record: &ActorRecord, slot: &Arc<SlotHandle>) -> BoxFuture<'static, Turn>;
    /// A fresh instance of the actor's module (constructor not yet run).
    fn instantiate(
        &self,
        record: &Arc<ActorRecord>,
        slot: Arc<SlotHandle>,
    ) -> BoxFuture<'static, Result<Instance, InvocationOutcome>>;
    /// Puts a call's captured output into the right log.
    fn record_output(&self, record: &ActorRecord, function: &str, outcome: &InvocationOutcome);
    /// The saved state of a persistent actor.
    fn load_state(&self, record: &ActorRecord) -> Option<Vec<u8>>;
    /// Saves a persistent actor's state.
    fn save_state(&self, record: &ActorRecord, state: &[u8]);
    /// Wall-clock budget of one method call of `record`.
    fn call_timeout(&self, record: &ActorRecord) -> Duration;
    /// The actor is dead: release what the node keeps for it.
    fn ended(&self, record: &ActorRecord);
    /// The series of calls of `method` of `record`'s class, if metrics
    /// are on.
    fn call_series(&self, record: &ActorRecord, method: &str) -> Option<Arc<CallSeries>>;
    /// Where `record`'s calls are recorded, if its job records them.
    fn call_events(&self, record: &ActorRecord) -> Option<CallEvents>;
}

/// Most methods one actor keeps looked-up series of (a guest calling
/// made-up method names gets them looked up each time).
const MAX_METHOD_SERIES: usize = 64;

/// Runs an actor from creation to death.
pub async fn supervise<E: ActorEnv>(
    env: Arc<E>,
    manager: Arc<ActorManager>,
    record: Arc<ActorRecord>,
    mut mailbox: mpsc::UnboundedReceiver<ActorMsg>,
) {
    let lease = env.lease(&record).await;
    // Resolve the constructor's arguments once: restarts must not depend on
    // objects that the creating job may free when it ends.
    args_ready(env.objects(), &record.ctor_args).await;
    let ctor_input = resolve_args(env.objects(), &record.ctor_args);
    let started = match turn(&*env, &record, &lease).await {
        Some(turn) => {
            let started = start(&*env, &record, &lease, &ctor_input).await;
            drop(turn);
            started
        }
        None => Err(record
            .death_reason()
            .unwrap_or_else(|| WireError::new(ErrorKind::ActorDied, "the actor was killed"))),
    };
    let death = match started {
        Ok(instance) => serve(&*env, &record, &lease, &ctor_input, instance, &mut mailbox).await,
        Err(e) => WireError {
            kind: ErrorKind::ActorDied,
            message: format!("the actor's constructor failed ({}): {}", e.kind, e.message),
            payload: e.payload,
            attempts: 1,
            origin: None,
        },
    };
    drop(lease);
    bury(&*env, &manager, &record, mailbox, death);
}

/// An actor that could not be created at all (unknown class, impossible
/// resources): dead from the start, its calls get `error`.
pub async fn stillborn<E: ActorEnv>(
    env: Arc<E>,
    manager: Arc<ActorManager>,
    record: Arc<ActorRecord>,
    mailbox: mpsc::UnboundedReceiver<ActorMsg>,
    error: WireError,
) {
    let death = WireError {
        kind: ErrorKind::ActorDied,
        message: format!(
            "the actor could not be created ({}): {}",
            error.kind, error.message
        ),
        payload: None,
        attempts: 1,
        origin: None,
    };
    bury(&*env, &manager, &record, mailbox, death);
}

/// Records the death, fails every call still in the mailbox, and lets the
/// node release what it kept for the actor.
fn bury<E: ActorEnv>(
    env: &E,
    manager: &ActorManager,
    record: &ActorRecord,
    mut mailbox: mpsc::UnboundedReceiver<ActorMsg>,
    death: WireError,
) {
    tracing::debug!(actor = %record.id, class = %record.class, reason = %death.message, "actor died");
    manager.mark_dead(record, death.clone());
    mailbox.close();
    while let Ok(msg) = mailbox.try_recv() {
        if let ActorMsg::Call { return_id, .. } = msg {
            complete(env.objects(), return_id, Err(death.clone()));
        }
    }
    env.ended(record);
}

/// Serves calls until the actor dies; returns why it died.
async fn serve<E: ActorEnv>(
    env: &E,
    record: &Arc<ActorRecord>,
    lease: &Lease,
    ctor_input: &Result<Bytes, WireError>,
    mut instance: Instance,
    mailbox: &mut mpsc::UnboundedReceiver<ActorMsg>,
) -> WireError {
    let mut restarts: u32 = 0;
    let events = env.call_events(record);
    let actor_id: Arc<str> = Arc::from(record.id.to_string());
    // Each method's series and recorded name, looked up once per actor.
    let mut series_by_method: HashMap<String, (Option<Arc<CallSeries>>, Arc<str>)> = HashMap::new();
    while let Some(msg) = mailbox.recv().await {
        if let Some(death) = record.death_reason() {
            if let ActorMsg::Call { return_id, .. } = msg {
                complete(env.objects(), return_id, Err(death.clone()));
            }
            return death;
        }
        let (method, args, return_id, sent, recorded_as) = match msg {
            ActorMsg::Kill => return WireError::new(ErrorKind::ActorDied, "the actor was killed"),
            ActorMsg::Call {
                method,
                args,
                return_id,
                sent,
                recorded_as,
            } => (method, args, return_id, sent, recorded_as),
        };
        let (series, function) = match series_by_method.get(&method) {
            Some(known) => known.clone(),
            None => {
                let known = (
                    env.call_series(record, &method),
                    crate::events::function_name(&format!("{}.{method}", record.class)),
                );
                if series_by_method.len() < MAX_METHOD_SERIES {
                    series_by_method.insert(method.clone(), known.clone());
                }
                known
            }
        };
        let trace = events.as_ref().and_then(|e| {
            let id = recorded_as.unwrap_or(return_id);
            e.record(&actor_id, &function, id, &args, sent)
        });
        let served = ServedCall {
            objects: env.objects(),
            class: &record.class,
            method,
            return_id,
            series,
            sent,
            trace,
        };
        let method = &served.method;
        args_ready(env.objects(), &args).await;
        if let Some(trace) = &served.trace {
            trace.queued();
        }
        let input = match resolve_args(env.objects(), &args) {
            Ok(input) => input,
            Err(e) => {
                served.fail(e);
                continue;
            }
        };
        let function = EntryKind::method_function(&record.class, method);
        let Some(_turn) = turn(env, record, lease).await else {
            let death = record
                .death_reason()
                .unwrap_or_else(|| WireError::new(ErrorKind::ActorDied, "the actor was killed"));
            served.fail(death.clone());
            return death;
        };
        let started = std::time::Instant::now();
        if let Some(series) = &served.series {
            series.queue_wait.observe(started - sent);
        }
        let mut attempt = 0;
        let (result, exit) = loop {
            served.started(lease, attempt);
            let call = invocation(
                env,
                record,
                EntryKind::ActorMethod,
                &function,
                input.clone(),
                attempt,
            );
            let outcome = instance.call(call).await;
            env.record_output(record, method, &outcome);
            let exit = outcome.exit_requested;
            match outcome.result {
                Ok(value) => {
                    if record.persistent {
                        save(env, record, &mut instance).await;
                    }
                    break (Ok(value), exit);
                }
                // The guest's own error: the actor keeps its state.
                Err(e) if !instance.is_dead() => break (Err(e), exit),
                Err(mut e) => {
                    if let Some(death) = record.death_reason() {
                        served.fail(death.clone());
                        return death;
                    }
                    let allowed = record.max_restarts < 0 || restarts < record.max_restarts as u32;
                    if !allowed {
                        e.message = format!("{} (the actor died: no restarts left)", e.message);
                        served.fail(e.clone());
                        return WireError::new(
                            ErrorKind::ActorDied,
                            format!(
                                "the actor died after a failed call ({}): {}",
                                e.kind, e.message
                            ),
                        );
                    }
                    restarts += 1;
                    match start(env, record, lease, ctor_input).await {
                        Ok(fresh) => instance = fresh,
                        Err(restart) => {
                            e.message = format!(
                                "{} (restarting the actor failed: {})",
                                e.message, restart.message
                            );
                            served.fail(e);
                            return WireError::new(
                                ErrorKind::ActorDied,
                                format!("restarting the actor failed: {}", restart.message),
                            );
                        }
                    }
                    if e.kind.is_retryable() && attempt < record.max_task_retries {
                        if let Some(trace) = &served.trace {
                            trace.attempt_ended(Err(e.kind), true);
                        }
                        attempt += 1;
                        continue;
                    }
                    e.message = format!(
                        "{} (the actor was restarted, restart {restarts})",
                        e.message
                    );
                    e.attempts = attempt + 1;
                    break (Err(e), false);
                }
            }
        };
        served.end(result, Some(started));
        lease.trace_calls(None);
        if exit {
            return WireError::new(ErrorKind::ActorDied, "the actor exited");
        }
    }
    WireError::new(ErrorKind::ActorDied, "the node stopped")
}

/// The actor's turn to run code, or `None` if it is killed first.
async fn turn<E: ActorEnv>(env: &E, record: &ActorRecord, lease: &Lease) -> Option<Turn> {
    tokio::select! {
        turn = env.turn(record, lease.slot()) => Some(turn),
        _ = record.kill_switch.cancelled() => None,
    }
}

fn invocation<E: ActorEnv>(
    env: &E,
    record: &ActorRecord,
    entry: EntryKind,
    function: &str,
    input: Bytes,
    attempt: u32,
) -> Invocation {
    Invocation {
        entry,
        function: function.to_string(),
        input,
        attempt,
        timeout: env.call_timeout(record),
        // The instance's memory cap was fixed when it was created.
        memory_limit: u64::MAX,
        cancel: record.kill_switch.clone(),
        // The instance's environment was fixed when it was created.
        env: None,
        sandbox: Default::default(),
        // An actor keeps its own instance.
        reuse: None,
        // Counted when the actor's instance is made.
        metrics: None,
    }
}

/// A new instance with the actor's state: restored if persistent and saved,
/// else constructed.
async fn start<E: ActorEnv>(
    env: &E,
    record: &Arc<ActorRecord>,
    lease: &Lease,
    ctor_input: &Result<Bytes, WireError>,
) -> Result<Instance, WireError> {
    let mut instance = env
        .instantiate(record, lease.slot().clone())
        .await
        .map_err(|o| {
            o.result
                .err()
                .unwrap_or_else(|| WireError::new(ErrorKind::System, "instantiation failed"))
        })?;
    let saved = if record.persistent {
        env.load_state(record)
    } else {
        None
    };
    let outcome = match saved {
        Some(state) => {
            let call = invocation(
                env,
                record,
                EntryKind::ActorRestore,
                &record.class,
                Bytes::from(state),
                0,
            );
            instance.call(call).await
        }
        None => {
            let input = ctor_input.clone()?;
            instance
                .call(invocation(
                    env,
                    record,
                    EntryKind::ActorNew,
                    &record.class,
                    input,
                    0,
                ))
                .await
        }
    };
    env.record_output(record, "new", &outcome);
    outcome.result?;
    if record.persistent {
        save(env, record, &mut instance).await;
    }
    Ok(instance)
}

async fn save<E: ActorEnv>(env: &E, record: &ActorRecord, instance: &mut Instance) {
    let outcome = instance
        .call(invocation(
            env,
            record,
            EntryKind::ActorSave,
            &record.class,
            Bytes::new(),
            0,
        ))
        .await;
    match outcome.result {
        Ok(state) => env.save_state(record, &state),
        Err(e) => tracing::warn!(actor = %record.id, error = %e, "saving the actor's state failed"),
    }
}

fn complete(objects: &ObjectStore, id: ObjectId, result: Result<Bytes, WireError>) {
    let object = match result {
        Ok(bytes) => Object::Value(bytes),
        Err(e) => Object::Error(Arc::new(e)),
    };
    if let Err(e) = objects.complete(id, object) {
        tracing::warn!(object = %id, error = %e, "storing an actor call's result failed");
    }
}

mod served;

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: Option<&str>) -> (Arc<ActorRecord>, mpsc::UnboundedReceiver<ActorMsg>) {
        ActorRecord::new(
            ActorId::random(),
            "Counter".into(),
            crate::security::tenants::NamespaceRef::new("acme", "ns"),
            name.map(str::to_string),
            None,
            Vec::new(),
            ResourceSet::default(),
            1 << 20,
            0,
            0,
            false,
        )
    }

    #[test]
    fn names_are_unique_per_namespace_until_death() {
        let manager = ActorManager::default();
        let (a, _rx_a) = record(Some("c"));
        let (b, _rx_b) = record(Some("c"));
        manager.register(a.clone()).unwrap();
        assert!(manager.register(b.clone()).is_err());
        assert_eq!(manager.by_name("acme/ns", "c").unwrap().id, a.id);
        assert!(manager.by_name("acme/other", "c").is_none());
        assert!(manager.by_name("zeta/ns", "c").is_none());
        manager.mark_dead(&a, WireError::new(ErrorKind::ActorDied, "killed"));
        assert!(manager.by_name("acme/ns", "c").is_none());
        manager.register(b.clone()).unwrap();
        assert_eq!(manager.by_name("acme/ns", "c").unwrap().id, b.id);
    }

    #[test]
    fn only_the_most_recent_dead_actors_are_remembered() {
        let manager = ActorManager::default();
        let mut first = None;
        for _ in 0..DEAD_ACTORS_KEPT + 5 {
            let (a, _rx) = record(None);
            manager.register(a.clone()).unwrap();
            manager.mark_dead(&a, WireError::new(ErrorKind::ActorDied, "killed"));
            manager.mark_dead(&a, WireError::new(ErrorKind::ActorDied, "killed twice"));
            first.get_or_insert(a.id);
        }
        assert_eq!(manager.lock().actors.len(), DEAD_ACTORS_KEPT);
        let err = manager
            .call(first.unwrap(), "inc".into(), vec![], ObjectId::random())
            .unwrap_err();
        assert!(err.message.contains("no actor with id"), "{}", err.message);
    }

    #[test]
    fn calls_to_dead_or_unknown_actors_are_actor_died() {
        let manager = ActorManager::default();
        let (a, mut rx) = record(None);
        manager.register(a.clone()).unwrap();
        manager
            .call(a.id, "inc".into(), vec![], ObjectId::random())
            .unwrap();
        assert!(matches!(rx.try_recv(), Ok(ActorMsg::Call { .. })));
        manager.mark_dead(
            &a,
            WireError::new(ErrorKind::ActorDied, "the actor was killed"),
        );
        let err = manager
            .call(a.id, "inc".into(), vec![], ObjectId::random())
            .unwrap_err();
        assert_eq!(err.message, "the actor was killed");
        let err = manager
            .call(ActorId::random(), "inc".into(), vec![], ObjectId::random())
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::ActorDied);
    }
}
