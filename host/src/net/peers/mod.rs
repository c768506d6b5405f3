//! One node's view of the other nodes, and the scheduler's way to use
//! them ([`Remote`]).
//!
//! The view comes from the head with every heartbeat answer. Between
//! heartbeats the node keeps its own count of what it has placed on each
//! other node (CPU in flight), so that a burst of tasks spreads instead of
//! landing on whichever node looked emptiest at the last heartbeat. A node
//! that fails a call is left out for a while (it is probably dying; the
//! head will say so once its heartbeats stop).

mod actors;

use super::{CHUNK_BYTES, MAX_NODE_MESSAGE, NetError, resources_from_proto};
use crate::cluster::{HomeNode, LogLine, LogSource};
use crate::ids::{ActorId, ObjectId, OwnerId};
use crate::objects::Object;
use crate::objects::ObjectStore;
use crate::runtime::{BoxFuture, CancelToken};
use crate::scheduler::TaskSpec;
use crate::scheduler::remote::{Pick, Placement, Remote, Reservation};
use crate::scheduler::resources::ResourceSet;
use crate::sync::{MutexExt, RwLockExt};
use bytes::{Bytes, BytesMut};
use prism_abi::{ErrorKind, WireError};
use prism_proto::v1 as pb;
use prism_proto::v1::worker_client::WorkerClient;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// How long a node that failed a call is left out of placement (5 s).
const SUSPECT_FOR: Duration = Duration::from_secs(5);

/// HTTP/2 pings between nodes: every 5 s, and a connection that does not
/// answer one within 10 s is dead.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// See [`KEEPALIVE_INTERVAL`].
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Zero-CPU tasks placed on one node at once, at most (1,024).
const MAX_ZERO_CPU_IN_FLIGHT: u64 = 1024;

/// This node's credentials for calling other nodes.
#[derive(Clone)]
pub struct NodeCredentials {
    /// The cluster CA (PEM).
    pub ca_pem: Vec<u8>,
    /// This node's certificate (PEM).
    pub cert_pem: Vec<u8>,
    /// Its key (PEM).
    pub key_pem: Vec<u8>,
}

impl NodeCredentials {
    /// A channel to node `node_id` at `address` ("host:port"), presenting
    /// this node's certificate, whose own certificate must be from the
    /// cluster CA and name that node (the head's: its host). Connects on
    /// first use.
    pub fn channel(&self, node_id: &str, address: &str) -> Result<Channel, NetError> {
        let server_name = if node_id == super::HEAD_NODE_ID {
            host_of(address)
        } else {
            crate::security::node_server_name(node_id)
        };
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .domain_name(server_name);
        Ok(Endpoint::from_shared(format!("https://{address}"))
            .map_err(|e| NetError::Transport(format!("bad address {address:?}: {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .initial_stream_window_size(super::STREAM_WINDOW)
            .initial_connection_window_size(super::CONNECTION_WINDOW)
            .tcp_nodelay(true)
            // A machine that vanishes without closing its connections is
            // noticed within seconds, not at the next TCP timeout.
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .tls_config(tls)
            .map_err(|e| NetError::Transport(e.to_string()))?
            .connect_lazy())
    }
}

/// The host part of "host:port" (brackets of an IPv6 address removed).
pub fn host_of(address: &str) -> String {
    let host = match address.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => address,
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

struct Peer {
    id: String,
    tag: u32,
    info: Mutex<pb::PeerInfo>,
    client: Mutex<(String, WorkerClient<Channel>)>,
    /// CPU (thousandths) of attempts this node has running there.
    inflight_cpu: AtomicU64,
    /// Attempts this node has running there.
    inflight: AtomicU64,
    suspect_until: Mutex<Option<Instant>>,
    /// Becomes true when the node leaves the view (declared dead): calls
    /// still waiting on it fail at once.
    removed: tokio::sync::watch::Sender<bool>,
}

impl Peer {
    /// Resolves once the node has left the view.
    async fn gone(&self) {
        let mut removed = self.removed.subscribe();
        let _ = removed.wait_for(|gone| *gone).await;
    }

    fn total(&self) -> ResourceSet {
        resources_from_proto(self.info.locked().total.as_ref())
    }

    fn usable(&self) -> bool {
        match *self.suspect_until.locked() {
            Some(until) => Instant::now() >= until,
            None => true,
        }
    }

    fn suspect(&self) {
        *self.suspect_until.locked() = Some(Instant::now() + SUSPECT_FOR);
    }

    /// Load as this node sees it: CPU used at the last heartbeat plus what
    /// this node placed since, over the total.
    fn load(&self) -> f64 {
        let info = self.info.locked();
        let total = info.total.as_ref().map_or(0, |t| t.cpu_milli).max(1);
        let free = info.available.as_ref().map_or(0, |a| a.cpu_milli);
        let used = total.saturating_sub(free) + self.inflight_cpu.load(Ordering::Relaxed);
        used as f64 / total as f64 + info.pending_tasks as f64 * 1e-3
    }

    /// Whether another attempt of `cpu` thousandths may go there now.
    fn has_room(&self, cpu: u64, total: &ResourceSet) -> bool {
        if cpu == 0 {
            return self.inflight.load(Ordering::Relaxed) < MAX_ZERO_CPU_IN_FLIGHT;
        }
        self.inflight_cpu.load(Ordering::Relaxed) + cpu <= total.cpu_milli
    }

    fn client(&self) -> WorkerClient<Channel> {
        self.client.locked().1.clone()
    }
}

/// A slot held on a peer for one attempt.
struct PeerSlot {
    peer: Arc<Peer>,
    cpu: u64,
}

impl PeerSlot {
    fn new(peer: Arc<Peer>, cpu: u64) -> Self {
        peer.inflight_cpu.fetch_add(cpu, Ordering::Relaxed);
        peer.inflight.fetch_add(1, Ordering::Relaxed);
        PeerSlot { peer, cpu }
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        self.peer
            .inflight_cpu
            .fetch_sub(self.cpu, Ordering::Relaxed);
        self.peer.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Reservation for PeerSlot {
    fn node_id(&self) -> &str {
        &self.peer.id
    }
}

/// The other nodes of the cluster, as one node sees and uses them.
pub struct Peers {
    local_id: String,
    local_tag: u32,
    /// This node, told of view changes and asked about its jobs.
    node: Weak<dyn HomeNode>,
    /// This node's object store, where pulled objects go.
    objects: Arc<ObjectStore>,
    credentials: NodeCredentials,
    nodes: RwLock<BTreeMap<String, Arc<Peer>>>,
    /// Tags of nodes that were in the view and left it: their objects are
    /// lost.
    gone: Mutex<HashSet<u32>>,
    spread: AtomicUsize,
    pulling: Mutex<HashSet<ObjectId>>,
    /// Objects their holder refused to a tenant (another tenant's, or
    /// gone): not asked for again for that tenant, so a `get` or `wait`
    /// on one is answered here as not found.
    refused: Mutex<Refusals>,
    /// The next sequence number of this node's messages to each actor on
    /// another node.
    actor_seqs: Mutex<HashMap<ActorId, u64>>,
    /// Drawn when this process starts: a restarted process numbers its
    /// actor messages from 0 again without being taken for the old one.
    epoch: u64,
    me: Weak<Peers>,
}

impl Peers {
    /// The view of `node` (id `local_id`, tag `local_tag`, its store
    /// `objects`), calling others with `credentials`. Empty until
    /// [`Peers::update`].
    pub fn new(
        local_id: &str,
        local_tag: u32,
        node: Weak<dyn HomeNode>,
        objects: Arc<ObjectStore>,
        credentials: NodeCredentials,
    ) -> Arc<Peers> {
        Arc::new_cyclic(|me| Peers {
            local_id: local_id.to_string(),
            local_tag,
            node,
            objects,
            credentials,
            nodes: RwLock::new(BTreeMap::new()),
            gone: Mutex::new(HashSet::new()),
            spread: AtomicUsize::new(0),
            pulling: Mutex::new(HashSet::new()),
            refused: Mutex::new(Refusals::default()),
            actor_seqs: Mutex::new(HashMap::new()),
            epoch: {
                let mut bytes = [0u8; 8];
                // Without randomness the epoch is 0, as before epochs existed.
                let _ = getrandom::fill(&mut bytes);
                u64::from_le_bytes(bytes)
            },
            me: me.clone(),
        })
    }

    /// Takes the head's latest view: other live nodes are added or
    /// updated, the rest removed. Wakes the local scheduler: there may be
    /// room elsewhere now.
    pub fn update(&self, view: &pb::ClusterView) {
        let mut left = Vec::new();
        {
            let mut nodes = self.nodes.write_locked();
            let mut seen = HashSet::new();
            for info in &view.nodes {
                if info.node_id == self.local_id || !info.alive {
                    continue;
                }
                seen.insert(info.node_id.clone());
                if let Some(peer) = nodes.get(&info.node_id) {
                    let mut client = peer.client.locked();
                    if client.0 != info.address
                        && let Ok(channel) = self.credentials.channel(&info.node_id, &info.address)
                    {
                        *client = (info.address.clone(), worker_client(channel));
                    }
                    drop(client);
                    *peer.info.locked() = info.clone();
                    continue;
                }
                match self.credentials.channel(&info.node_id, &info.address) {
                    Ok(channel) => {
                        nodes.insert(
                            info.node_id.clone(),
                            Arc::new(Peer {
                                id: info.node_id.clone(),
                                tag: info.node_tag,
                                info: Mutex::new(info.clone()),
                                client: Mutex::new((info.address.clone(), worker_client(channel))),
                                inflight_cpu: AtomicU64::new(0),
                                inflight: AtomicU64::new(0),
                                suspect_until: Mutex::new(None),
                                removed: tokio::sync::watch::Sender::new(false),
                            }),
                        );
                    }
                    Err(e) => tracing::warn!(node = %info.node_id, "cannot reach node: {e}"),
                }
            }
            let mut gone = self.gone.locked();
            nodes.retain(|id, peer| {
                let keep = seen.contains(id);
                if !keep {
                    tracing::warn!(node = %id, "node left the cluster view");
                    gone.insert(peer.tag);
                    peer.removed.send_replace(true);
                    left.push(id.clone());
                }
                keep
            });
            for info in &view.nodes {
                if !info.alive {
                    gone.insert(info.node_tag);
                }
            }
        }
        if let Some(node) = self.node.upgrade() {
            node.view_changed(&left);
        }
    }

    /// Whether `node_id` is another live node.
    pub fn has_peer(&self, node_id: &str) -> bool {
        self.read().contains_key(node_id)
    }

    /// A client of another node's `Worker` service.
    pub fn worker_client(&self, node_id: &str) -> Option<WorkerClient<Channel>> {
        self.peer(node_id).map(|p| p.client())
    }

    /// The ids of the other live nodes.
    pub fn node_ids(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Peer>>> {
        self.nodes.read_locked()
    }

    fn peer(&self, id: &str) -> Option<Arc<Peer>> {
        self.read().get(id).cloned()
    }

    /// Peers that could ever run `request`, usable now, in id order.
    fn candidates(&self, request: &ResourceSet) -> Vec<(Arc<Peer>, ResourceSet)> {
        self.read()
            .values()
            .filter(|p| p.usable())
            .map(|p| (p.clone(), p.total()))
            .filter(|(_, total)| total.fits(request))
            .collect()
    }

    fn least_loaded(&self, request: &ResourceSet) -> Placement {
        let best = self
            .candidates(request)
            .into_iter()
            .filter(|(p, total)| p.has_room(request.cpu_milli, total))
            .min_by(|(a, _), (b, _)| a.load().total_cmp(&b.load()));
        match best {
            Some((peer, _)) => Placement::Remote(Box::new(PeerSlot::new(peer, request.cpu_milli))),
            None => Placement::Wait,
        }
    }

    async fn pull(
        self: Arc<Self>,
        peer_id: String,
        client: WorkerClient<Channel>,
        id: ObjectId,
        tenant: String,
    ) {
        let mut client = client;
        let request = pb::FetchObjectRequest {
            object_id: id.as_bytes().to_vec(),
            tenant: tenant.clone(),
        };
        // No object larger than this node's store could hold it anyway.
        let capacity = self.objects.capacity() as usize;
        let fetched: Result<Object, tonic::Status> = async {
            let mut stream = client.fetch_object(request).await?.into_inner();
            let mut buf = BytesMut::new();
            let mut first = true;
            while let Some(chunk) = stream.message().await? {
                if first {
                    buf.reserve((chunk.total_size as usize).min(capacity));
                    first = false;
                }
                match chunk.part {
                    Some(pb::object_chunk::Part::Data(data)) => {
                        if buf.len() + data.len() > capacity {
                            return Ok(Object::Error(Arc::new(WireError::new(
                                ErrorKind::System,
                                format!("object {id} is larger than this node's object store"),
                            ))));
                        }
                        buf.extend_from_slice(&data)
                    }
                    Some(pb::object_chunk::Part::Error(error)) => {
                        let error = WireError::decode(&error).unwrap_or_else(|e| {
                            WireError::new(ErrorKind::System, format!("unreadable error: {e}"))
                        });
                        return Ok(Object::Error(Arc::new(error)));
                    }
                    None => {}
                }
            }
            Ok(Object::Value(buf.freeze()))
        }
        .await;
        let object = match fetched {
            Ok(object) => {
                if let Object::Value(bytes) = &object {
                    self.objects.count_pulled(bytes.len() as u64);
                }
                object
            }
            Err(status) if status.code() == tonic::Code::NotFound => {
                // Nothing (for this tenant) there: leave nothing here
                // either, so the id reads as unknown to every job, and a
                // later pull for the object's own tenant starts afresh.
                // (Refused and done pulling first: a waiter woken by the
                // removal looks again at once.)
                self.refused.locked().insert((id, tenant));
                self.pulling.locked().remove(&id);
                self.objects.remove(id);
                return;
            }
            Err(status) => {
                if let Some(peer) = self.peer(&peer_id) {
                    peer.suspect();
                }
                Object::Error(Arc::new(WireError::new(
                    ErrorKind::ObjectLost,
                    format!(
                        "object {id} lived on node {peer_id}, which failed: {}",
                        status.message()
                    ),
                )))
            }
        };
        if let Err(e) = self.objects.complete(id, object) {
            tracing::warn!(%id, "storing a pulled object failed: {e}");
        }
        self.pulling.locked().remove(&id);
    }
}

/// The result of a task or actor call another node ran; its log lines
/// join `job`'s log here.
fn outcome(
    node: &dyn HomeNode,
    job: OwnerId,
    peer: &str,
    reply: pb::ExecuteTaskReply,
) -> Result<Bytes, WireError> {
    if !reply.logs.is_empty() {
        node.append_logs(
            job,
            reply
                .logs
                .into_iter()
                .map(|l| super::log_line_from(peer, l))
                .collect(),
        );
    }
    reply_outcome(reply.outcome, peer)
}

/// A call's value or error as `peer` sent it.
pub(crate) fn reply_outcome(
    outcome: Option<pb::execute_task_reply::Outcome>,
    peer: &str,
) -> Result<Bytes, WireError> {
    match outcome {
        Some(pb::execute_task_reply::Outcome::Value(value)) => Ok(value),
        Some(pb::execute_task_reply::Outcome::Error(error)) => Err(WireError::decode(&error)
            .unwrap_or_else(|e| {
                WireError::new(ErrorKind::System, format!("unreadable error: {e}"))
            })),
        None => Err(WireError::new(
            ErrorKind::System,
            format!("node {peer} answered without an outcome"),
        )),
    }
}

/// How long a call to an actor whose node cannot be reached waits for the
/// head to declare that node dead (the default node timeout is 10 s).
const AWAIT_NODE_VERDICT: Duration = Duration::from_secs(30);

/// How long, after its node's death, a call waits for the actor's restart
/// elsewhere to be recorded.
const AWAIT_RESTART: Duration = Duration::from_secs(3);

fn worker_client(channel: Channel) -> WorkerClient<Channel> {
    WorkerClient::new(channel)
        .max_decoding_message_size(MAX_NODE_MESSAGE)
        .max_encoding_message_size(MAX_NODE_MESSAGE)
}

impl Remote for Peers {
    fn local_id(&self) -> &str {
        &self.local_id
    }

    fn feasible(&self, request: &ResourceSet) -> bool {
        self.read().values().any(|p| p.total().fits(request))
    }

    fn has_node(&self, id: &str) -> bool {
        self.read().contains_key(id)
    }

    fn node_can_hold(&self, id: &str, request: &ResourceSet) -> bool {
        self.peer(id).is_some_and(|p| p.total().fits(request))
    }

    fn reserve(
        &self,
        request: &ResourceSet,
        pick: Pick<'_>,
        local_feasible: bool,
        local_fits: bool,
    ) -> Placement {
        match pick {
            Pick::LeastLoaded => self.least_loaded(request),
            Pick::Node(id) => match self.peer(id) {
                // The chosen node queues what it cannot start yet.
                Some(peer) => Placement::Remote(Box::new(PeerSlot::new(peer, request.cpu_milli))),
                None => Placement::Wait,
            },
            Pick::Spread => {
                let candidates = self.candidates(request);
                let slots = candidates.len() + usize::from(local_feasible);
                if slots == 0 {
                    return Placement::Wait;
                }
                let turn = self.spread.fetch_add(1, Ordering::Relaxed) % slots;
                match candidates.get(turn) {
                    Some((peer, total)) if peer.has_room(request.cpu_milli, total) => {
                        Placement::Remote(Box::new(PeerSlot::new(peer.clone(), request.cpu_milli)))
                    }
                    None if local_fits => Placement::Local,
                    // The node whose turn it is has no room: the least
                    // loaded one that has takes it, or this one.
                    _ => match self.least_loaded(request) {
                        Placement::Wait if local_fits => Placement::Local,
                        placement => placement,
                    },
                }
            }
        }
    }

    fn execute(
        &self,
        reservation: Box<dyn Reservation>,
        spec: Arc<TaskSpec>,
        attempt: u32,
        _cancel: Arc<CancelToken>,
    ) -> BoxFuture<'static, Result<Bytes, WireError>> {
        let peer = self.peer(reservation.node_id());
        let node = self.node.upgrade();
        Box::pin(async move {
            // Held until the attempt ends.
            let _reservation = reservation;
            let node = node.ok_or_else(|| WireError::new(ErrorKind::System, "the node stopped"))?;
            let Some(peer) = peer else {
                return Err(WireError::new(
                    ErrorKind::WorkerDied,
                    "the node chosen for the task left the cluster",
                ));
            };
            // The call carries who it runs for; the node is asked only
            // whether its job is still running here (a call of an ended
            // job is not started elsewhere).
            let ticket = spec.ticket.clone().ok_or_else(|| {
                WireError::new(
                    ErrorKind::System,
                    "a call without a job cannot run elsewhere",
                )
            })?;
            if !node.job_runs(spec.owner) {
                return Err(WireError::new(
                    ErrorKind::Cancelled,
                    "the task's job has ended",
                ));
            }
            let request = crate::net::calls::execute_request(&spec, &ticket, attempt);
            let mut client = peer.client();
            let call = client.execute_task(request);
            let answered = tokio::select! {
                answered = call => answered,
                _ = peer.gone() => Err(tonic::Status::unavailable("the node was declared dead")),
            };
            let reply = match answered {
                Ok(reply) => reply.into_inner(),
                Err(status) => {
                    peer.suspect();
                    let error = super::unreachable(&peer.id, &status);
                    node.append_logs(
                        spec.owner,
                        vec![LogLine {
                            source: LogSource::System,
                            function: spec.function.clone(),
                            text: format!(
                                "attempt {attempt} failed ({}): {}",
                                error.kind, error.message
                            ),
                        }],
                    );
                    return Err(error);
                }
            };
            outcome(node.as_ref(), spec.owner, &peer.id, reply)
        })
    }

    fn fetch(&self, id: ObjectId, owner: OwnerId, tenant: &crate::security::tenants::TenantId) {
        let tag = id.node_tag();
        if tag == 0 || tag == self.local_tag {
            return;
        }
        let Some(node) = self.node.upgrade() else {
            return;
        };
        if self.objects.owner(id).is_some() {
            return;
        }
        let peer = self.read().values().find(|p| p.tag == tag).cloned();
        let Some(peer) = peer else {
            if self.gone.locked().contains(&tag) {
                self.objects.create_pending(id, owner);
                let error = WireError::new(
                    ErrorKind::ObjectLost,
                    format!("object {id} lived on a node that left the cluster"),
                );
                let _ = self.objects.complete(id, Object::Error(Arc::new(error)));
            }
            // An unknown tag: a forged or mistyped id, not found like any.
            return;
        };
        // The holder checks that the object is the puller's tenant's; one
        // it refused this tenant is not asked for again.
        let tenant = tenant.to_string();
        if self.refused.locked().contains(&(id, tenant.clone())) {
            return;
        }
        // Pulled only for a job (or actor) this node knows: it owns the
        // copy and frees it when it ends.
        if !node.job_runs(owner) {
            return;
        }
        if !self.pulling.locked().insert(id) {
            return;
        }
        self.objects.create_pending(id, owner);
        let Some(me) = self.me.upgrade() else {
            return;
        };
        let client = peer.client();
        tokio::spawn(me.pull(peer.id.clone(), client, id, tenant));
    }

    fn free(
        &self,
        job: OwnerId,
        tenant: &crate::security::tenants::TenantId,
        ids: &[ObjectId],
    ) -> BoxFuture<'static, ()> {
        let request = pb::FreeObjectsRequest {
            job_id: job.as_u64(),
            tenant: tenant.to_string(),
            object_ids: ids.iter().map(|id| id.as_bytes().to_vec()).collect(),
        };
        let mut calls = tokio::task::JoinSet::new();
        for peer in self.read().values() {
            let mut client = peer.client();
            let request = request.clone();
            calls.spawn(async move {
                let call = client.free_objects(request);
                // A node that does not answer frees the job's copies when
                // the job ends.
                let _ = tokio::time::timeout(FREE_TIMEOUT, call).await;
            });
        }
        Box::pin(async move { while calls.join_next().await.is_some() {} })
    }

    fn task_records(&self, job: crate::ids::JobId) -> BoxFuture<'static, (Vec<pb::TaskInfo>, u64)> {
        let mut calls = tokio::task::JoinSet::new();
        for peer in self.read().values() {
            let mut client = peer.client();
            calls.spawn(async move {
                let gather = async {
                    let mut stream = client
                        .task_records(pb::TaskRecordsRequest {
                            job_id: job.as_u64(),
                        })
                        .await?
                        .into_inner();
                    let mut pages = Vec::new();
                    while let Some(page) = stream.message().await? {
                        pages.push(page);
                    }
                    Ok::<_, tonic::Status>(pages)
                };
                match tokio::time::timeout(RECORDS_TIMEOUT, gather).await {
                    Ok(Ok(pages)) => pages,
                    _ => Vec::new(),
                }
            });
        }
        Box::pin(async move {
            let mut tasks = Vec::new();
            let mut unrecorded = 0;
            while let Some(done) = calls.join_next().await {
                for page in done.unwrap_or_default() {
                    unrecorded += page.unrecorded;
                    tasks.extend(page.tasks);
                }
            }
            (tasks, unrecorded)
        })
    }

    fn push_logs(&self, node: &str, job: OwnerId, lines: Vec<LogLine>) {
        let Some(mut client) = self.worker_client(node) else {
            return;
        };
        let request = pb::AppendLogsRequest {
            job_id: job.as_u64(),
            lines: lines.into_iter().map(super::log_line_to_proto).collect(),
        };
        tokio::spawn(async move {
            let _ = tokio::time::timeout(FREE_TIMEOUT, client.append_logs(request)).await;
        });
    }

    fn end_job(&self, job: OwnerId) {
        for peer in self.read().values() {
            let mut client = peer.client();
            tokio::spawn(async move {
                let _ = client
                    .end_job(pb::EndJobRequest {
                        job_id: job.as_u64(),
                    })
                    .await;
            });
        }
    }
}

/// Who an actor call is for: the job owning its result, and its tenant.
struct Caller {
    owner: OwnerId,
    tenant: crate::security::tenants::TenantId,
}

/// How long gathering a job's task records waits for each other node
/// (10 s).
const RECORDS_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `free` waits for each other node (5 s).
const FREE_TIMEOUT: Duration = Duration::from_secs(5);

/// Most refusals remembered (100,000); the oldest are forgotten first.
const MAX_REFUSALS: usize = 100_000;

/// (object, tenant) pairs a holder refused, oldest first out.
#[derive(Default)]
struct Refusals {
    set: HashSet<(ObjectId, String)>,
    order: std::collections::VecDeque<(ObjectId, String)>,
}

impl Refusals {
    fn insert(&mut self, key: (ObjectId, String)) {
        if self.set.insert(key.clone()) {
            self.order.push_back(key);
        }
        while self.order.len() > MAX_REFUSALS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    fn contains(&self, key: &(ObjectId, String)) -> bool {
        self.set.contains(key)
    }
}

/// Splits `bytes` into [`CHUNK_BYTES`] pieces without copying.
pub fn chunks(bytes: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    (0..bytes.len().div_ceil(CHUNK_BYTES).max(1)).map(move |i| {
        let start = i * CHUNK_BYTES;
        bytes.slice(start..(start + CHUNK_BYTES).min(bytes.len()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_split_from_ports() {
        assert_eq!(host_of("127.0.0.1:7443"), "127.0.0.1");
        assert_eq!(host_of("[::1]:80"), "::1");
        assert_eq!(host_of("node.example"), "node.example");
    }

    #[test]
    fn chunks_cover_the_value_without_gaps() {
        let value = Bytes::from(vec![7u8; CHUNK_BYTES * 2 + 5]);
        let parts: Vec<Bytes> = chunks(&value).collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.iter().map(Bytes::len).sum::<usize>(), value.len());
        assert_eq!(chunks(&Bytes::new()).count(), 1);
    }
}
