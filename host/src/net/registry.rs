//! The head's table of nodes and the `NodeControl` service.
//!
//! A node joins once with a one-time token and a certificate request; the
//! head gives it an id (`node-<hex>`), a tag (2, 3, …; the head's own node
//! is 1) and a certificate, and records it in `head.redb`. From then on
//! the node sends a heartbeat every interval with its resources and load;
//! the answer is the cluster view. A node whose heartbeats stop for the
//! node timeout is declared dead: it leaves every node's view, tasks
//! running there fail over (their calls fail) and its objects read as
//! lost. A node that heartbeats again (it was only cut off, or the head
//! restarted) is alive again.

use super::names::ActorNames;
use super::peers::Peers;
use super::{HEAD_NODE_ID, HEAD_NODE_TAG, actor_id, peer_identity, resources_to_proto};
use crate::cluster::NameClaim;
use crate::cluster::placement::{PlacementGroups, PlacementService};
use crate::cluster::{Head, HeadService, Node};
use crate::ids::ModuleHash;
use crate::meta::HeadStore;
use crate::objects::named::Tier;
use crate::security::{NodeAuthority, join_token_digest, new_join_token};
use crate::sync::MutexExt;
use prism_proto::v1 as pb;
use prism_proto::v1::node_control_server::NodeControl;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tonic::{Request, Response, Status};

/// How the head watches its nodes.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Where nodes reach the head's own node ("host:port").
    pub head_address: String,
    /// How often nodes report (default 1 s).
    pub heartbeat_interval: Duration,
    /// Silence after which a node is declared dead (default 10 s).
    pub node_timeout: Duration,
}

/// A node as `head.redb` keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct NodeRecord {
    id: String,
    tag: u32,
    address: String,
    joined_at: u64,
}

struct NodeEntry {
    record: NodeRecord,
    last: Option<pb::HeartbeatRequest>,
    last_seen: Instant,
    alive: bool,
}

/// The head's table of nodes.
pub struct Registry {
    config: RegistryConfig,
    store: Arc<HeadStore>,
    ca: NodeAuthority,
    head: Arc<Head>,
    head_node: Arc<Node>,
    peers: Arc<Peers>,
    names: Arc<ActorNames>,
    placement: std::sync::OnceLock<Arc<PlacementGroups>>,
    nodes: Mutex<BTreeMap<String, NodeEntry>>,
    /// The tag the next new node gets (tags are never reused).
    next_tag: AtomicU32,
    /// Placement groups of an earlier run of the head, still recorded as
    /// holding bundles on these nodes: freed as each node reports again.
    stale_groups: Mutex<Vec<(String, Vec<String>)>>,
}

/// A live placement group as `head.redb` keeps it.
#[derive(Serialize, Deserialize)]
struct GroupRecord {
    nodes: Vec<String>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Registry {
    /// The registry of a head, with the nodes `store` remembers (dead until
    /// they heartbeat). `peers` is the head's own node's view, kept current.
    pub fn new(
        config: RegistryConfig,
        store: Arc<HeadStore>,
        ca: NodeAuthority,
        head: Arc<Head>,
        head_node: Arc<Node>,
        peers: Arc<Peers>,
        names: Arc<ActorNames>,
    ) -> Result<Arc<Self>, crate::meta::MetaError> {
        let mut nodes = BTreeMap::new();
        for (id, bytes) in store.nodes()? {
            match serde_json::from_slice::<NodeRecord>(&bytes) {
                Ok(record) => {
                    nodes.insert(
                        id,
                        // Alive until proven otherwise: a node that does
                        // not report within the node timeout is declared
                        // dead then (other nodes must not drop it just
                        // because this head is new).
                        NodeEntry {
                            record,
                            last: None,
                            last_seen: Instant::now(),
                            alive: true,
                        },
                    );
                }
                Err(e) => tracing::warn!("head.redb: unreadable record of node {id}: {e}"),
            }
        }
        let next_tag = nodes
            .values()
            .map(|e| e.record.tag)
            .max()
            .unwrap_or(HEAD_NODE_TAG)
            .max(HEAD_NODE_TAG)
            + 1;
        // Groups recorded by an earlier run ended with their jobs; their
        // bundles on the head's own node went with that process.
        let mut stale_groups = Vec::new();
        for (id, bytes) in store.groups()? {
            let mut nodes = serde_json::from_slice::<GroupRecord>(&bytes)
                .map(|g| g.nodes)
                .unwrap_or_default();
            nodes.retain(|n| n != HEAD_NODE_ID);
            nodes.sort();
            nodes.dedup();
            if nodes.is_empty() {
                store.delete_group(&id)?;
            } else {
                stale_groups.push((id, nodes));
            }
        }
        Ok(Arc::new(Registry {
            next_tag: AtomicU32::new(next_tag),
            stale_groups: Mutex::new(stale_groups),
            config,
            store,
            ca,
            head,
            head_node,
            peers,
            names,
            placement: std::sync::OnceLock::new(),
            nodes: Mutex::new(nodes),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, NodeEntry>> {
        self.nodes.locked()
    }

    /// The cluster's placement groups, for `NodeControl` (set once).
    pub fn set_placement(&self, placement: Arc<PlacementGroups>) {
        let _ = self.placement.set(placement);
    }

    /// A new one-time join token valid for `ttl`; returns it and its expiry.
    pub fn create_join_token(&self, ttl: Duration) -> Result<(String, u64), Status> {
        let (token, digest) =
            new_join_token().map_err(|e| Status::internal(format!("join token: {e}")))?;
        let expires = unix_now().saturating_add(ttl.as_secs());
        self.store
            .put_join_token(&digest, expires)
            .map_err(|e| Status::internal(format!("could not record the join token: {e}")))?;
        Ok((token, expires))
    }

    /// The cluster view: the head's node and every known node.
    pub fn view(&self) -> pb::ClusterView {
        let scheduler = self.head_node.scheduler();
        let stats = scheduler.stats();
        let mut nodes = vec![pb::PeerInfo {
            node_id: HEAD_NODE_ID.to_string(),
            node_tag: HEAD_NODE_TAG,
            address: self.config.head_address.clone(),
            total: Some(resources_to_proto(&scheduler.total())),
            available: Some(resources_to_proto(&scheduler.available())),
            pending_tasks: stats.pending as u64,
            running_tasks: stats.running as u64,
            alive: true,
        }];
        for entry in self.lock().values() {
            let last = entry.last.as_ref();
            nodes.push(pb::PeerInfo {
                node_id: entry.record.id.clone(),
                node_tag: entry.record.tag,
                address: entry.record.address.clone(),
                total: last.and_then(|l| l.total.clone()),
                available: last.and_then(|l| l.available.clone()),
                pending_tasks: last.map_or(0, |l| l.pending_tasks),
                running_tasks: last.map_or(0, |l| l.running_tasks),
                alive: entry.alive,
            });
        }
        pb::ClusterView {
            nodes,
            usage_elsewhere: Default::default(),
        }
    }

    /// What each tenant uses on every alive node but `except` (a worker's
    /// id; `None`: every worker, for the head's own node), from their last
    /// reports, plus the head's node when `except` names a worker.
    pub fn usage_elsewhere(
        &self,
        except: Option<&str>,
    ) -> std::collections::HashMap<String, crate::scheduler::accounts::Usage> {
        let mut sum: std::collections::HashMap<String, crate::scheduler::accounts::Usage> =
            Default::default();
        for entry in self.lock().values() {
            if !entry.alive || Some(entry.record.id.as_str()) == except {
                continue;
            }
            if let Some(last) = &entry.last {
                for (tenant, usage) in super::usage_from_proto(&last.usage) {
                    sum.entry(tenant).or_default().add(&usage);
                }
            }
        }
        if except.is_some() {
            for (tenant, usage) in self.head_node.tenant_usage() {
                sum.entry(tenant).or_default().add(&usage);
            }
        }
        sum
    }

    /// Status rows of the worker nodes (the head's own row is the API's).
    pub fn statuses(&self) -> Vec<pb::NodeInfo> {
        self.lock()
            .values()
            .map(|entry| {
                let last = entry.last.clone().unwrap_or_default();
                let show = |r: Option<&pb::Resources>| super::resources_from_proto(r).to_string();
                pb::NodeInfo {
                    total: show(last.total.as_ref()),
                    available: show(last.available.as_ref()),
                    running_tasks: last.running_tasks,
                    pending_tasks: last.pending_tasks,
                    gpus: last.gpus.clone(),
                    node_id: entry.record.id.clone(),
                    address: entry.record.address.clone(),
                    state: if entry.alive { "alive" } else { "dead" }.to_string(),
                    executed_tasks: last.executed_tasks,
                    last_seen_ms: entry.last_seen.elapsed().as_millis() as u64,
                }
            })
            .collect()
    }

    /// Declares nodes silent for the node timeout dead; refreshes the
    /// head node's view. Runs every heartbeat interval until the registry
    /// is dropped.
    pub async fn watch_nodes(self: Arc<Self>) {
        let me = Arc::downgrade(&self);
        drop(self);
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            let Some(registry) = me.upgrade() else { return };
            let mut died = Vec::new();
            for entry in registry.lock().values_mut() {
                if entry.alive && entry.last_seen.elapsed() > registry.config.node_timeout {
                    entry.alive = false;
                    died.push((entry.record.id.clone(), entry.record.tag));
                }
            }
            for (id, _) in &died {
                tracing::warn!(node = %id, "no heartbeat for {:?}: node declared dead", registry.config.node_timeout);
            }
            registry.buried(&died);
            registry.peers.update(&registry.view());
        }
    }

    /// What follows nodes' deaths: their actor names are freed and their
    /// use no longer counts against quotas.
    fn buried(&self, died: &[(String, u32)]) {
        for (_, tag) in died {
            self.names.release_node(*tag);
        }
        if !died.is_empty() {
            // A dead node's work is gone: it no longer counts.
            self.head_node
                .set_usage_elsewhere(self.usage_elsewhere(None));
        }
    }

    /// Frees on `node_id` the bundles of an earlier run's groups.
    fn release_stale_groups(&self, node_id: &str) {
        let mut stale = self.stale_groups.locked();
        if stale.is_empty() {
            return;
        }
        let Some(client) = self.peers.worker_client(node_id) else {
            return;
        };
        for (group, nodes) in stale.iter_mut() {
            if !nodes.iter().any(|n| n == node_id) {
                continue;
            }
            nodes.retain(|n| n != node_id);
            let mut client = client.clone();
            let request = pb::ReleaseBundlesRequest {
                group: group.clone(),
            };
            tokio::spawn(async move {
                let _ = client.release_bundles(request).await;
            });
            if nodes.is_empty()
                && let Err(e) = self.store.delete_group(group)
            {
                tracing::warn!("could not forget placement group {group}: {e}");
            }
        }
        stale.retain(|(_, nodes)| !nodes.is_empty());
    }

    fn persist(&self, record: &NodeRecord) -> Result<(), Status> {
        let bytes = serde_json::to_vec(record).map_err(|e| Status::internal(e.to_string()))?;
        self.store
            .put_node(&record.id, &bytes)
            .map_err(|e| Status::internal(format!("could not record the node: {e}")))
    }
}

/// The `NodeControl` service over a shared [`Registry`].
#[derive(Clone)]
pub struct NodeControlService(pub Arc<Registry>);

#[tonic::async_trait]
impl NodeControl for NodeControlService {
    async fn join(
        &self,
        request: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::JoinReply>, Status> {
        let registry = &self.0;
        let r = request.into_inner();
        if r.advertise.is_empty() {
            return Err(Status::invalid_argument(
                "a joining node must say where it listens",
            ));
        }
        let digest = join_token_digest(&r.join_token);
        // Spent first: a token admits one request, whatever becomes of it.
        let expires = registry
            .store
            .take_join_token(&digest)
            .map_err(|e| Status::internal(e.to_string()))?;
        match expires {
            None => {
                tracing::info!(target: "audit", action = "join", decision = "deny", reason = "unknown or spent join token");
                return Err(Status::unauthenticated(
                    "invalid or already used join token",
                ));
            }
            Some(at) if at < unix_now() => {
                tracing::info!(target: "audit", action = "join", decision = "deny", reason = "expired join token");
                return Err(Status::unauthenticated("join token expired"));
            }
            Some(_) => {}
        }
        // Always a new node: an id is never handed to another process.
        let id = {
            let mut bytes = [0u8; 6];
            getrandom::fill(&mut bytes).map_err(|e| Status::internal(e.to_string()))?;
            format!("node-{}", hex::encode(bytes))
        };
        let tag = registry.next_tag.fetch_add(1, Ordering::Relaxed);
        let cert_pem = registry
            .ca
            .sign_node(&r.csr_pem, &id)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let record = NodeRecord {
            id: id.clone(),
            tag,
            address: r.advertise.clone(),
            joined_at: unix_now(),
        };
        registry.persist(&record)?;
        registry.lock().insert(
            id.clone(),
            NodeEntry {
                record,
                last: None,
                last_seen: Instant::now(),
                alive: false,
            },
        );
        tracing::info!(target: "audit", action = "join", decision = "allow", node = %id, address = %r.advertise);
        Ok(Response::new(pb::JoinReply {
            node_id: id,
            node_tag: tag,
            cert_pem,
            heartbeat_interval_ms: registry.config.heartbeat_interval.as_millis() as u64,
        }))
    }

    async fn leave(
        &self,
        request: Request<pb::LeaveRequest>,
    ) -> Result<Response<pb::LeaveReply>, Status> {
        let caller = peer_identity(&request)?;
        let node_id = request.into_inner().node_id;
        if caller != node_id {
            return Err(Status::permission_denied("a node may only leave itself"));
        }
        let died = {
            let mut nodes = self.0.lock();
            let entry = nodes
                .get_mut(&node_id)
                .ok_or_else(|| Status::not_found("unknown node"))?;
            let was_alive = std::mem::replace(&mut entry.alive, false);
            was_alive.then(|| (entry.record.id.clone(), entry.record.tag))
        };
        tracing::info!(node = %node_id, "node left the cluster");
        if let Some(died) = died {
            self.0.buried(&[died]);
            self.0.peers.update(&self.0.view());
        }
        Ok(Response::new(pb::LeaveReply {}))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::ClusterView>, Status> {
        let caller = peer_identity(&request)?;
        let beat = request.into_inner();
        if caller != beat.node_id {
            return Err(Status::permission_denied(
                "a node may only report for itself",
            ));
        }
        let mut came_back = false;
        let changed_address = {
            let mut nodes = self.0.lock();
            let entry = nodes
                .get_mut(&beat.node_id)
                .ok_or_else(|| Status::not_found("unknown node: join again"))?;
            if !entry.alive || entry.last.is_none() {
                // Dead until now, or reporting to this head for the first
                // time.
                tracing::info!(node = %beat.node_id, "node is alive");
                came_back = true;
            }
            entry.alive = true;
            entry.last_seen = Instant::now();
            let changed = !beat.address.is_empty() && beat.address != entry.record.address;
            if changed {
                entry.record.address = beat.address.clone();
            }
            entry.last = Some(beat);
            changed.then(|| entry.record.clone())
        };
        if let Some(record) = changed_address {
            self.0.persist(&record)?;
        }
        let mut view = self.0.view();
        self.0.peers.update(&view);
        view.usage_elsewhere = super::usage_to_proto(&self.0.usage_elsewhere(Some(&caller)));
        self.0
            .head_node
            .set_usage_elsewhere(self.0.usage_elsewhere(None));
        if came_back {
            self.0.release_stale_groups(&caller);
        }
        Ok(Response::new(view))
    }

    async fn get_module(
        &self,
        request: Request<pb::ModuleRequest>,
    ) -> Result<Response<pb::ModuleReply>, Status> {
        peer_identity(&request)?;
        let hash = ModuleHash::parse(&request.get_ref().hash)
            .ok_or_else(|| Status::invalid_argument("malformed module hash"))?;
        let wasm = self
            .0
            .head
            .module(hash)
            .await
            .map_err(|e| Status::not_found(e.to_string()))?;
        Ok(Response::new(pb::ModuleReply {
            wasm: wasm.to_vec(),
        }))
    }

    async fn claim_actor_name(
        &self,
        request: Request<pb::ClaimActorNameRequest>,
    ) -> Result<Response<pb::ActorNameReply>, Status> {
        peer_identity(&request)?;
        let r = request.into_inner();
        let id = actor_id(&r.actor_id)?;
        let claim = self
            .0
            .names
            .claim_now(&r.namespace, &r.name, id, &r.class, r.detached)
            .map_err(Status::internal)?;
        Ok(Response::new(match claim {
            NameClaim::Claimed => pb::ActorNameReply {
                claimed: true,
                ..Default::default()
            },
            NameClaim::Existing { id, class } => pb::ActorNameReply {
                claimed: false,
                actor_id: id.as_bytes().to_vec(),
                class,
            },
        }))
    }

    async fn lookup_actor_name(
        &self,
        request: Request<pb::LookupActorNameRequest>,
    ) -> Result<Response<pb::ActorNameReply>, Status> {
        peer_identity(&request)?;
        let r = request.get_ref();
        let found = self.0.names.lookup_now(&r.namespace, &r.name);
        Ok(Response::new(match found {
            Some((id, class)) => pb::ActorNameReply {
                claimed: false,
                actor_id: id.as_bytes().to_vec(),
                class,
            },
            None => pb::ActorNameReply::default(),
        }))
    }

    async fn release_actor_name(
        &self,
        request: Request<pb::ReleaseActorNameRequest>,
    ) -> Result<Response<pb::ReleaseActorNameReply>, Status> {
        peer_identity(&request)?;
        let r = request.into_inner();
        let id = actor_id(&r.actor_id)?;
        if r.name.is_empty() {
            if r.tenant.is_empty() {
                return Err(Status::invalid_argument("a name or a tenant is required"));
            }
            self.0.names.release_actor_now(&r.tenant, id);
        } else {
            self.0.names.release_now(&r.namespace, &r.name, id);
        }
        Ok(Response::new(pb::ReleaseActorNameReply {}))
    }

    async fn create_placement_group(
        &self,
        request: Request<pb::CreatePlacementGroupRequest>,
    ) -> Result<Response<pb::CreatePlacementGroupReply>, Status> {
        peer_identity(&request)?;
        let r = request.into_inner();
        let spec = rmp_serde::from_slice(&r.spec)
            .map_err(|e| Status::invalid_argument(format!("placement group spec: {e}")))?;
        let placement = self
            .0
            .placement
            .get()
            .ok_or_else(|| Status::unavailable("placement groups are not ready"))?;
        let created = placement
            .create(crate::ids::JobId::from_u64(r.job_id), &r.tenant, spec)
            .await;
        Ok(Response::new(match created {
            Ok(info) => pb::CreatePlacementGroupReply {
                info: rmp_serde::to_vec_named(&info)
                    .map_err(|e| Status::internal(e.to_string()))?,
                error: Vec::new(),
            },
            Err(error) => pb::CreatePlacementGroupReply {
                info: Vec::new(),
                error: error.encode(),
            },
        }))
    }

    async fn remove_placement_group(
        &self,
        request: Request<pb::RemovePlacementGroupRequest>,
    ) -> Result<Response<pb::RemovePlacementGroupReply>, Status> {
        peer_identity(&request)?;
        if let Some(placement) = self.0.placement.get() {
            placement.remove(&request.get_ref().group);
        }
        Ok(Response::new(pb::RemovePlacementGroupReply {}))
    }

    async fn named_put(
        &self,
        request: Request<pb::NamedPutRequest>,
    ) -> Result<Response<pb::NamedReply>, Status> {
        peer_identity(&request)?;
        let r = request.into_inner();
        let tier = if r.durable {
            Tier::Durable
        } else {
            Tier::Memory
        };
        self.0
            .head_node
            .named_objects()
            .put(&r.namespace, &r.name, r.value.into(), tier)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::NamedReply::default()))
    }

    async fn named_get(
        &self,
        request: Request<pb::NamedRequest>,
    ) -> Result<Response<pb::NamedReply>, Status> {
        peer_identity(&request)?;
        let r = request.get_ref();
        let value = self
            .0
            .head_node
            .named_objects()
            .get(&r.namespace, &r.name)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::NamedReply {
            found: value.is_some(),
            value: value.map(|v| v.to_vec()).unwrap_or_default(),
            names: Vec::new(),
        }))
    }

    async fn named_delete(
        &self,
        request: Request<pb::NamedRequest>,
    ) -> Result<Response<pb::NamedReply>, Status> {
        peer_identity(&request)?;
        let r = request.get_ref();
        let found = self
            .0
            .head_node
            .named_objects()
            .delete(&r.namespace, &r.name)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::NamedReply {
            found,
            ..Default::default()
        }))
    }

    async fn named_list(
        &self,
        request: Request<pb::NamedRequest>,
    ) -> Result<Response<pb::NamedReply>, Status> {
        peer_identity(&request)?;
        let r = request.get_ref();
        let names = self
            .0
            .head_node
            .named_objects()
            .list(&r.namespace, &r.name)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::NamedReply {
            names,
            ..Default::default()
        }))
    }

    async fn actor_moved(
        &self,
        request: Request<pb::ActorMovedRequest>,
    ) -> Result<Response<pb::ActorMovedReply>, Status> {
        peer_identity(&request)?;
        let r = request.get_ref();
        self.0
            .names
            .record_move_now(actor_id(&r.actor_id)?, actor_id(&r.new_id)?);
        Ok(Response::new(pb::ActorMovedReply::default()))
    }

    async fn find_moved_actor(
        &self,
        request: Request<pb::ActorMovedRequest>,
    ) -> Result<Response<pb::ActorMovedReply>, Status> {
        peer_identity(&request)?;
        let moved = self
            .0
            .names
            .resolve_move_now(actor_id(&request.get_ref().actor_id)?);
        Ok(Response::new(pb::ActorMovedReply {
            new_id: moved.map(|id| id.as_bytes().to_vec()).unwrap_or_default(),
        }))
    }
}

impl crate::cluster::placement::GroupRecords for Registry {
    fn created(&self, id: &str, nodes: &[String]) {
        let record = GroupRecord {
            nodes: nodes.to_vec(),
        };
        match serde_json::to_vec(&record) {
            Ok(bytes) => {
                if let Err(e) = self.store.put_group(id, &bytes) {
                    tracing::warn!("could not record placement group {id}: {e}");
                }
            }
            Err(e) => tracing::warn!("could not encode placement group {id}: {e}"),
        }
    }

    fn removed(&self, id: &str) {
        if let Err(e) = self.store.delete_group(id) {
            tracing::warn!("could not forget placement group {id}: {e}");
        }
    }
}
