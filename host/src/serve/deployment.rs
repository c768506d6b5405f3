//! One deployment: its replicas and how a request reaches one of them
//! and comes back as a response, with the refusals (503, 504) and
//! failures (500 with an error id the head's log carries) on the way.
//! A class replica whose actor died or hung is replaced.

use super::apps::ServeError;
use super::config::{AppConfig, DeploymentConfig, DeploymentKind};
use super::replicas::{Refusal, Replica, ReplicaSet};
use crate::ids::ActorId;
use crate::node::{Node, ServiceContext};
use crate::security::tenants::TenantId;
use crate::sync::MutexExt;
use bytes::Bytes;
use prism_abi::ErrorKind;
use prism_abi::http::{Request, Response};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// What a deployment's requests came to.
#[derive(Default)]
pub struct Counters {
    /// Answered by a handler (any status it chose).
    pub answered: AtomicU64,
    /// Refused with 503: every replica and the queue were full.
    pub overloaded: AtomicU64,
    /// Answered 504: no answer within the request timeout.
    pub timed_out: AtomicU64,
    /// Answered 500: the handler trapped, panicked or answered garbage.
    pub failed: AtomicU64,
    /// Refused with 429: over the tenant's requests/s quota.
    pub rate_limited: AtomicU64,
    /// Replicas replaced after a failed health check.
    pub unhealthy: AtomicU64,
}

/// A deployment of an application.
pub struct Deployment {
    /// Its application's name.
    pub app: String,
    /// Its tenant.
    pub tenant: TenantId,
    /// Its namespace.
    pub namespace: String,
    /// Its configuration.
    pub config: DeploymentConfig,
    /// What answers its requests.
    pub kind: DeploymentKind,
    /// Its replicas.
    pub replicas: ReplicaSet,
    /// What its requests came to.
    pub counters: Counters,
    pub(super) node: Arc<Node>,
    pub(super) service: ServiceContext,
    pub(super) stopped: AtomicBool,
    /// The number of the next function replica (its id's suffix).
    pub(super) next_replica: AtomicU64,
    /// A split's running weights (smooth weighted round robin).
    split_weights: Mutex<Vec<i64>>,
    /// What class replicas' `reconfigure` gets (changed in place by a
    /// redeploy that changes only this).
    pub(super) user_config: std::sync::RwLock<Option<serde_json::Value>>,
    /// Where a batching deployment's requests wait to be gathered
    /// (started with the first request).
    pub(super) batcher: std::sync::OnceLock<tokio::sync::mpsc::Sender<super::batch::Waiting>>,
    /// A copy on a node's ingress of the head's deployment: it calls the
    /// replicas the head publishes and never makes or replaces one.
    pub(super) mirror: bool,
    /// The load other nodes' ingresses put on it (head side), by node.
    pub(super) remote_loads: Mutex<std::collections::HashMap<String, RemoteLoad>>,
    /// Requests an ingress routed here that have not been answered yet
    /// (reading their body, waiting for a replica, running): a retired
    /// version stays until they end.
    pub(super) entered: AtomicU64,
}

/// A request routed to a deployment, until it is answered
/// ([`Deployment::entered`]).
pub struct Entered(Arc<Deployment>);

impl Entered {
    /// Counts a request routed to `deployment`.
    pub(super) fn new(deployment: &Arc<Deployment>) -> Entered {
        deployment.entered.fetch_add(1, Ordering::AcqRel);
        Entered(deployment.clone())
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        self.0.entered.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a node's ingress said of its requests to a deployment.
pub(super) struct RemoteLoad {
    /// Requests running and waiting there.
    pub load: u32,
    /// The replicas they run on.
    pub busy: Vec<String>,
    /// When it said so.
    pub at: Instant,
}

/// How long a node's report of its ingress's load counts.
pub(super) const REMOTE_LOAD_TTL: Duration = Duration::from_secs(1);

/// Why a replica gave no value.
pub(super) enum Failure {
    /// Not within the request timeout: 504.
    TimedOut,
    /// The tenant's quota is full: 503.
    Overloaded(String),
    /// The handler trapped, panicked, or the replica is gone: 500.
    Failed(String),
}

/// A handler's answer, and which replica gave it.
#[derive(Clone)]
pub struct Answer {
    /// The response.
    pub response: Response,
    /// The replica's id (`None`: refused before reaching one).
    pub replica: Option<String>,
}

fn error_response(status: u16, message: &str) -> Response {
    Response::json(&serde_json::json!({ "error": message })).with_status(status)
}

/// Smooth weighted round robin: the index of the next way, given each
/// way's running weight in `current` (updated).
fn smooth_pick(ways: &[(String, u32)], current: &mut [i64]) -> usize {
    let total: i64 = ways.iter().map(|(_, w)| i64::from(*w)).sum();
    let mut best = 0;
    for (i, (_, weight)) in ways.iter().enumerate() {
        current[i] += i64::from(*weight);
        if current[i] > current[best] {
            best = i;
        }
    }
    current[best] -= total;
    best
}

/// A fresh id for a failed request, to find it in the logs.
fn error_id() -> String {
    hex::encode(&crate::ids::ObjectId::random().as_bytes()[8..])
}

impl Deployment {
    /// A deployment of `app`.
    pub fn new(
        app: &AppConfig,
        config: DeploymentConfig,
        kind: DeploymentKind,
        tenant: TenantId,
        replicas: ReplicaSet,
        node: Arc<Node>,
        service: ServiceContext,
    ) -> Deployment {
        let split_weights = match &kind {
            DeploymentKind::Split(ways) => vec![0; ways.len()],
            _ => Vec::new(),
        };
        Deployment {
            app: app.name.clone(),
            tenant,
            namespace: app.namespace.clone(),
            kind,
            replicas,
            counters: Counters::default(),
            next_replica: AtomicU64::new(u64::from(config.initial_replicas())),
            user_config: std::sync::RwLock::new(config.user_config.clone()),
            config,
            split_weights: Mutex::new(split_weights),
            batcher: std::sync::OnceLock::new(),
            node,
            service,
            stopped: AtomicBool::new(false),
            mirror: false,
            remote_loads: Mutex::default(),
            entered: AtomicU64::new(0),
        }
    }

    /// This deployment as a copy on a node's ingress (see `mirror`).
    pub(super) fn into_mirror(mut self) -> Deployment {
        self.mirror = true;
        self
    }

    /// Requests other nodes' ingresses run or hold for it now (head
    /// side; reports older than [`REMOTE_LOAD_TTL`] are forgotten).
    pub(super) fn remote_load(&self) -> u32 {
        let now = Instant::now();
        let mut loads = self.remote_loads.locked();
        loads.retain(|_, l| now.duration_since(l.at) < REMOTE_LOAD_TTL);
        loads.values().map(|l| l.load).sum()
    }

    /// Whether other nodes' ingresses serve it (head side).
    pub(super) fn is_mirrored(&self) -> bool {
        !self.remote_loads.locked().is_empty()
    }

    /// Whether another node's ingress has requests running on replica
    /// `id` (head side).
    pub(super) fn remote_busy(&self, id: &str) -> bool {
        let now = Instant::now();
        self.remote_loads
            .locked()
            .values()
            .any(|l| now.duration_since(l.at) < REMOTE_LOAD_TTL && l.busy.iter().any(|b| b == id))
    }

    /// Creates one class replica: an actor that restarts in place when a
    /// call traps (the call answers 500; the next request gets a fresh
    /// instance), given `user_config` through its `reconfigure` method
    /// (if its class has one) before it takes requests.
    pub async fn create_replica(
        node: &Node,
        service: &ServiceContext,
        config: &DeploymentConfig,
        user_config: Option<&serde_json::Value>,
    ) -> Result<ActorId, ServeError> {
        let DeploymentKind::Class { class, .. } = config.kind().map_err(ServeError::Invalid)?
        else {
            return Err(ServeError::Invalid(
                "a function deployment has no actors".into(),
            ));
        };
        let args = config
            .init_args
            .iter()
            .map(crate::values::json_to_msgpack)
            .collect();
        let options = prism_abi::ActorOptions {
            num_cpus: config.num_cpus,
            memory: config.memory,
            num_gpus: config.num_gpus,
            resources: config.resources.clone(),
            max_restarts: Some(-1),
            ..Default::default()
        };
        let actor = node
            .create_service_actor(service, &class, args, options)
            .await
            .map_err(|e| match e {
                crate::runtime::ActorCreateError::Quota(m) => ServeError::Quota(m),
                other => ServeError::Replica(format!("deployment {}: {other}", config.name)),
            })?;
        if let Some(user_config) = user_config
            && let Err(e) =
                super::hooks::reconfigure(node, service, &class, actor, user_config).await
        {
            node.kill_service_actor(service, actor);
            return Err(ServeError::Replica(format!(
                "deployment {}: reconfigure failed: {e}",
                config.name
            )));
        }
        Ok(actor)
    }

    /// For a split, the deployment the next request goes to: each gets
    /// its weight's share, spread evenly (smooth weighted round robin, so
    /// 70/30 sends 7 of every 10 consecutive requests one way). `None`
    /// for other kinds.
    pub fn pick_way(&self) -> Option<String> {
        let DeploymentKind::Split(ways) = &self.kind else {
            return None;
        };
        let best = smooth_pick(ways, &mut self.split_weights.locked());
        Some(ways[best].0.clone())
    }

    /// Whether requests are running or waiting.
    pub fn busy(&self) -> bool {
        self.entered.load(Ordering::Acquire) > 0
            || self.replicas.ongoing() > 0
            || self.replicas.queued() > 0
            || self.batch_waiting() > 0
            || self.remote_load() > 0
    }

    /// No more replacements: the application is going away.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
    }

    /// Answers `request` with one of the replicas (in a batch, if the
    /// deployment batches).
    pub async fn call(self: &Arc<Self>, request: Request) -> Answer {
        if matches!(self.kind, DeploymentKind::Split(_)) {
            return Self::not_callable();
        }
        if self.config.batch.is_some() {
            return self.call_batched(request).await;
        }
        let deadline = Instant::now() + Duration::from_millis(self.config.request_timeout_ms);
        let slot = match self.slot(deadline, 1).await {
            Ok(slot) => slot,
            Err(answer) => return answer,
        };
        let replica = &slot.replica;
        let input = match prism_abi::encode_value(&request) {
            Ok(bytes) => Bytes::from(bytes),
            Err(e) => {
                return Answer {
                    response: error_response(400, &format!("the request cannot be encoded: {e}")),
                    replica: None,
                };
            }
        };
        let output = match self.invoke(replica, input, deadline).await {
            Ok(output) => output,
            Err(failure) => return self.failure(Some(replica), failure, 1),
        };
        match rmp_serde::from_slice::<Response>(&output) {
            Ok(response) if response.status_is_valid() => self
                .answered(replica, vec![response])
                .pop()
                .unwrap_or_else(Self::not_callable),
            Ok(response) => self.failure(
                Some(replica),
                Failure::Failed(format!("the handler answered status {}", response.status)),
                1,
            ),
            Err(e) => self.failure(
                Some(replica),
                Failure::Failed(format!(
                    "the handler did not return a prism::http::Response: {e}"
                )),
                1,
            ),
        }
    }

    /// A replica for `requests` requests (one call), or the refusal
    /// each of them gets.
    pub(super) async fn slot(
        &self,
        deadline: Instant,
        requests: u64,
    ) -> Result<super::replicas::Slot<'_>, Answer> {
        match self.replicas.acquire(deadline).await {
            Ok(slot) => Ok(slot),
            Err(Refusal::Overloaded) => {
                self.counters
                    .overloaded
                    .fetch_add(requests, Ordering::Relaxed);
                Err(Answer {
                    response: error_response(503, "every replica is busy; retry later")
                        .with_header("retry-after", "1"),
                    replica: None,
                })
            }
            Err(Refusal::TimedOut) => {
                self.counters
                    .timed_out
                    .fetch_add(requests, Ordering::Relaxed);
                Err(Answer {
                    response: error_response(504, "no replica was free within the timeout"),
                    replica: None,
                })
            }
        }
    }

    /// Calls the handler on `replica` with one encoded argument; its
    /// encoded value, or why there is none. A class replica that hangs
    /// past the deadline or died is replaced.
    pub(super) async fn invoke(
        self: &Arc<Self>,
        replica: &Arc<Replica>,
        input: Bytes,
        deadline: Instant,
    ) -> Result<Bytes, Failure> {
        let called = match &self.kind {
            DeploymentKind::Function(function) => {
                let options = prism_abi::TaskOptions {
                    num_cpus: self.config.num_cpus,
                    memory: self.config.memory,
                    num_gpus: self.config.num_gpus,
                    resources: self.config.resources.clone(),
                    // A request is not retried: its handler may not be
                    // idempotent.
                    max_retries: Some(0),
                    timeout_ms: Some(self.config.request_timeout_ms),
                    ..Default::default()
                };
                let call = self
                    .node
                    .call_service_task(&self.service, function, input, options);
                tokio::time::timeout_at(deadline, call).await
            }
            DeploymentKind::Split(_) => {
                return Err(Failure::Failed("a split has no replicas".into()));
            }
            DeploymentKind::Class { method, .. } => {
                match self
                    .call_replica(replica, method, vec![input], deadline)
                    .await
                {
                    Some(called) => called,
                    None => return Err(Failure::Failed("the replica is being replaced".into())),
                }
            }
        };
        match called {
            Err(_) => Err(Failure::TimedOut),
            Ok(Err(e)) if e.kind == ErrorKind::DeadlineExceeded => Err(Failure::TimedOut),
            Ok(Err(e)) if e.kind == ErrorKind::QuotaExceeded => Err(Failure::Overloaded(e.message)),
            Ok(Err(e)) => Err(Failure::Failed(format!("{}: {}", e.kind, e.message))),
            Ok(Ok(bytes)) => Ok(bytes),
        }
    }

    /// Calls `method` of a class replica's actor with `args` until
    /// `deadline`; replaces the replica if it hung or died. `None` if the
    /// replica has no actor now (it is being replaced).
    async fn call_replica(
        self: &Arc<Self>,
        replica: &Arc<Replica>,
        method: &str,
        args: Vec<Bytes>,
        deadline: Instant,
    ) -> Option<Result<Result<Bytes, prism_abi::WireError>, tokio::time::error::Elapsed>> {
        let actor = replica.actor()?;
        let call = self
            .node
            .call_service_actor(&self.service, actor, method, args);
        let called = tokio::time::timeout_at(deadline, call).await;
        let hung = called.is_err();
        let died = matches!(&called, Ok(Err(e)) if e.kind == ErrorKind::ActorDied);
        if hung || died {
            self.replace(replica, actor);
        }
        Some(called)
    }

    /// Calls `method` of one of a class deployment's replicas (the least
    /// loaded with room) with `args` (encoded values), for a handle: its
    /// encoded value, or why there is none, as a task error.
    pub async fn call_method(
        self: &Arc<Self>,
        method: &str,
        args: Vec<Bytes>,
    ) -> Result<Bytes, prism_abi::WireError> {
        use prism_abi::WireError;
        if !matches!(self.kind, DeploymentKind::Class { .. }) {
            return Err(WireError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "deployment {} is not a class deployment: it has no methods to call",
                    self.config.name
                ),
            ));
        }
        let timeout = Duration::from_millis(self.config.request_timeout_ms);
        let deadline = Instant::now() + timeout;
        let slot = self.replicas.acquire(deadline).await.map_err(|refusal| {
            let (kind, why) = match refusal {
                Refusal::Overloaded => (
                    ErrorKind::Unschedulable,
                    "every replica and the queue are full",
                ),
                Refusal::TimedOut => (
                    ErrorKind::DeadlineExceeded,
                    "no replica was free within the timeout",
                ),
            };
            WireError::new(kind, format!("deployment {}: {why}", self.config.name))
        })?;
        let replica = &slot.replica;
        match self.call_replica(replica, method, args, deadline).await {
            Some(Ok(Ok(value))) => {
                replica.served.fetch_add(1, Ordering::Relaxed);
                Ok(value)
            }
            Some(Ok(Err(error))) => Err(error),
            Some(Err(_)) => Err(WireError::new(
                ErrorKind::DeadlineExceeded,
                format!("no answer within {timeout:?}"),
            )),
            None => Err(WireError::new(
                ErrorKind::ActorDied,
                "the replica is being replaced",
            )),
        }
    }

    /// Counts `responses` as answered by `replica`.
    pub(super) fn answered(&self, replica: &Replica, responses: Vec<Response>) -> Vec<Answer> {
        let n = responses.len() as u64;
        self.counters.answered.fetch_add(n, Ordering::Relaxed);
        replica.served.fetch_add(n, Ordering::Relaxed);
        responses
            .into_iter()
            .map(|response| Answer {
                response,
                replica: Some(replica.id.clone()),
            })
            .collect()
    }

    /// The answer each of `requests` requests gets for `failure`: 504,
    /// 503, or 500 with an error id that the head's log carries with the
    /// cause.
    pub(super) fn failure(
        &self,
        replica: Option<&Replica>,
        failure: Failure,
        requests: u64,
    ) -> Answer {
        let replica_id = replica.map(|r| r.id.clone());
        let response = match failure {
            Failure::TimedOut => {
                self.counters
                    .timed_out
                    .fetch_add(requests, Ordering::Relaxed);
                error_response(504, "the handler did not answer within the timeout")
            }
            Failure::Overloaded(why) => {
                self.counters
                    .overloaded
                    .fetch_add(requests, Ordering::Relaxed);
                error_response(503, &why).with_header("retry-after", "1")
            }
            Failure::Failed(cause) => {
                self.counters.failed.fetch_add(requests, Ordering::Relaxed);
                let id = error_id();
                tracing::warn!(
                    error_id = %id,
                    tenant = %self.tenant,
                    app = %self.app,
                    deployment = %self.config.name,
                    replica = replica_id.as_deref().unwrap_or("-"),
                    requests,
                    "request failed: {cause}"
                );
                Response::json(&serde_json::json!({
                    "error": "the handler failed",
                    "error_id": id,
                }))
                .with_status(500)
                .with_header("x-prism-error-id", &id)
            }
        };
        Answer {
            response,
            replica: replica_id,
        }
    }

    /// A split's requests go to its targets (`Apps::resolve`), never to
    /// the split itself.
    fn not_callable() -> Answer {
        Answer {
            response: error_response(500, "a split deployment has no replicas to call"),
            replica: None,
        }
    }

    /// Replaces a class replica whose actor died or hung: the old actor
    /// is killed, a new one takes its place (requests go to the other
    /// replicas meanwhile).
    pub(super) fn replace(self: &Arc<Self>, replica: &Arc<Replica>, actor: ActorId) {
        // A mirror's replicas are the head's to replace.
        if self.mirror || replica.actor() != Some(actor) || self.stopped.load(Ordering::Acquire) {
            return;
        }
        replica.take_actor();
        self.node.kill_service_actor(&self.service, actor);
        let me = self.clone();
        let replica = replica.clone();
        tokio::spawn(async move {
            let mut wait = Duration::from_millis(50);
            while !me.stopped.load(Ordering::Acquire) && !replica.draining() {
                let user_config = me.current_user_config();
                match Self::create_replica(&me.node, &me.service, &me.config, user_config.as_ref())
                    .await
                {
                    Ok(fresh) => {
                        replica.set_actor(fresh);
                        tracing::info!(app = %me.app, deployment = %me.config.name, replica = %replica.id, "replica replaced");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(app = %me.app, deployment = %me.config.name, "replacing a replica failed: {e}");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_sends_each_way_its_share_spread_evenly() {
        let ways = vec![("v1".to_string(), 30), ("v2".to_string(), 70)];
        let mut current = vec![0; 2];
        let picks: Vec<usize> = (0..10).map(|_| smooth_pick(&ways, &mut current)).collect();
        assert_eq!(picks.iter().filter(|i| **i == 0).count(), 3);
        // Never three of v1 in a row, nor more than three of v2.
        assert!(!picks.windows(2).any(|w| w == [0, 0]), "{picks:?}");
        // A zero weight gets nothing.
        let ways = vec![("v1".to_string(), 100), ("v2".to_string(), 0)];
        let mut current = vec![0; 2];
        assert!((0..50).all(|_| smooth_pick(&ways, &mut current) == 0));
    }
}
