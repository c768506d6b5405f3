//! The head's member nodes ([`Membership`]); the `NodeControl` service
//! that nodes call is `api/node_control.rs`.
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

use super::{ActorNames, Head};
use crate::cluster::Node;
use crate::cluster::placement::PlacementGroups;
use crate::meta::{HeadStore, MetaError};
use crate::net::peers::Peers;
use crate::net::{HEAD_NODE_ID, HEAD_NODE_TAG, resources_to_proto};
use crate::security::{NodeAuthority, join_token_digest, new_join_token};
use crate::sync::MutexExt;
use prism_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Why the head refused a node's call.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The join token is unknown, spent or expired.
    #[error("{0}")]
    Unauthenticated(String),
    /// A node may act only for itself.
    #[error("{0}")]
    NotYours(String),
    /// The node is not a member (it must join again).
    #[error("{0}")]
    UnknownNode(String),
    /// `head.redb` or the CA failed.
    #[error("{0}")]
    Internal(String),
}

impl From<MetaError> for MembershipError {
    fn from(e: MetaError) -> Self {
        MembershipError::Internal(format!("head.redb: {e}"))
    }
}

/// What a node gets when it joins.
pub struct Joined {
    /// Its id (`node-<hex>`).
    pub node_id: String,
    /// Its tag, carried by every id it mints.
    pub tag: u32,
    /// Its certificate, signed by the cluster CA.
    pub cert_pem: String,
    /// How often it must report.
    pub heartbeat_interval: Duration,
}

/// How the head watches its nodes.
#[derive(Clone, Debug)]
pub struct MembershipConfig {
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

/// The head's table of nodes: who joined, who reports, who died.
pub struct Membership {
    config: MembershipConfig,
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

impl Membership {
    /// The membership of a head, with the nodes `store` remembers (dead until
    /// they heartbeat). `peers` is the head's own node's view, kept current.
    pub fn new(
        config: MembershipConfig,
        store: Arc<HeadStore>,
        ca: NodeAuthority,
        head: Arc<Head>,
        head_node: Arc<Node>,
        peers: Arc<Peers>,
        names: Arc<ActorNames>,
    ) -> Result<Arc<Self>, MetaError> {
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
        Ok(Arc::new(Membership {
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
    pub fn create_join_token(&self, ttl: Duration) -> Result<(String, u64), MembershipError> {
        let (token, digest) =
            new_join_token().map_err(|e| MembershipError::Internal(format!("join token: {e}")))?;
        let expires = unix_now().saturating_add(ttl.as_secs());
        self.store.put_join_token(&digest, expires)?;
        Ok((token, expires))
    }

    /// The head.
    pub fn head(&self) -> &Arc<Head> {
        &self.head
    }

    /// The head's own node.
    pub fn head_node(&self) -> &Arc<Node> {
        &self.head_node
    }

    /// The cluster's actor names.
    pub fn names(&self) -> &Arc<ActorNames> {
        &self.names
    }

    /// The cluster's placement groups, once set.
    pub fn placement(&self) -> Option<&Arc<PlacementGroups>> {
        self.placement.get()
    }

    /// Admits a node that presents a valid one-time `join_token`: signs
    /// its certificate request and records it (not alive until its first
    /// heartbeat).
    pub fn join(
        &self,
        join_token: &str,
        advertise: &str,
        csr_pem: &str,
    ) -> Result<Joined, MembershipError> {
        if advertise.is_empty() {
            return Err(MembershipError::Invalid(
                "a joining node must say where it listens".into(),
            ));
        }
        let digest = join_token_digest(join_token);
        // Spent first: a token admits one request, whatever becomes of it.
        match self.store.take_join_token(&digest)? {
            None => {
                tracing::info!(target: "audit", action = "join", decision = "deny", reason = "unknown or spent join token");
                return Err(MembershipError::Unauthenticated(
                    "invalid or already used join token".into(),
                ));
            }
            Some(at) if at < unix_now() => {
                tracing::info!(target: "audit", action = "join", decision = "deny", reason = "expired join token");
                return Err(MembershipError::Unauthenticated(
                    "join token expired".into(),
                ));
            }
            Some(_) => {}
        }
        // Always a new node: an id is never handed to another process.
        let id = {
            let mut bytes = [0u8; 6];
            getrandom::fill(&mut bytes).map_err(|e| MembershipError::Internal(e.to_string()))?;
            format!("node-{}", hex::encode(bytes))
        };
        let tag = self.next_tag.fetch_add(1, Ordering::Relaxed);
        let cert_pem = self
            .ca
            .sign_node(csr_pem, &id)
            .map_err(|e| MembershipError::Invalid(e.to_string()))?;
        let record = NodeRecord {
            id: id.clone(),
            tag,
            address: advertise.to_string(),
            joined_at: unix_now(),
        };
        self.persist(&record)?;
        self.lock().insert(
            id.clone(),
            NodeEntry {
                record,
                last: None,
                last_seen: Instant::now(),
                alive: false,
            },
        );
        tracing::info!(target: "audit", action = "join", decision = "allow", node = %id, address = %advertise);
        Ok(Joined {
            node_id: id,
            tag,
            cert_pem,
            heartbeat_interval: self.config.heartbeat_interval,
        })
    }

    /// Node `caller` leaves the cluster (as if it died, at once).
    pub fn leave(&self, caller: &str, node_id: &str) -> Result<(), MembershipError> {
        if caller != node_id {
            return Err(MembershipError::NotYours(
                "a node may only leave itself".into(),
            ));
        }
        let died = {
            let mut nodes = self.lock();
            let entry = nodes
                .get_mut(node_id)
                .ok_or_else(|| MembershipError::UnknownNode("unknown node".into()))?;
            let was_alive = std::mem::replace(&mut entry.alive, false);
            was_alive.then(|| (entry.record.id.clone(), entry.record.tag))
        };
        tracing::info!(node = %node_id, "node left the cluster");
        if let Some(died) = died {
            self.buried(&[died]);
            self.peers.update(&self.view());
        }
        Ok(())
    }

    /// Node `caller` reports; the answer is the cluster view with what
    /// each tenant uses elsewhere.
    pub fn heartbeat(
        &self,
        caller: &str,
        beat: pb::HeartbeatRequest,
    ) -> Result<pb::ClusterView, MembershipError> {
        if caller != beat.node_id {
            return Err(MembershipError::NotYours(
                "a node may only report for itself".into(),
            ));
        }
        self.head_node
            .metrics()
            .heartbeats
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut came_back = false;
        let changed_address = {
            let mut nodes = self.lock();
            let entry = nodes
                .get_mut(&beat.node_id)
                .ok_or_else(|| MembershipError::UnknownNode("unknown node: join again".into()))?;
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
            self.persist(&record)?;
        }
        let mut view = self.view();
        self.peers.update(&view);
        view.usage_elsewhere = crate::net::usage_to_proto(&self.usage_elsewhere(Some(caller)));
        self.head_node
            .set_usage_elsewhere(self.usage_elsewhere(None));
        if came_back {
            self.release_stale_groups(caller);
        }
        Ok(view)
    }

    /// Nodes alive, the head's own included.
    pub fn alive(&self) -> u64 {
        1 + self.lock().values().filter(|e| e.alive).count() as u64
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
                for (tenant, usage) in crate::net::usage_from_proto(&last.usage) {
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

    /// What each tenant uses on every alive node, the head's included
    /// (workers as of their last reports).
    pub fn cluster_usage(
        &self,
    ) -> std::collections::HashMap<String, crate::scheduler::accounts::Usage> {
        let mut sum = self.usage_elsewhere(None);
        for (tenant, usage) in self.head_node.tenant_usage() {
            sum.entry(tenant).or_default().add(&usage);
        }
        sum
    }

    /// Status rows of the worker nodes (the head's own row is the API's).
    pub fn statuses(&self) -> Vec<pb::NodeInfo> {
        self.lock()
            .values()
            .map(|entry| {
                let last = entry.last.clone().unwrap_or_default();
                let show =
                    |r: Option<&pb::Resources>| crate::net::resources_from_proto(r).to_string();
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
    /// head node's view. Runs every heartbeat interval until the membership
    /// is dropped.
    pub async fn watch_nodes(self: Arc<Self>) {
        let me = Arc::downgrade(&self);
        drop(self);
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            let Some(membership) = me.upgrade() else {
                return;
            };
            let mut died = Vec::new();
            for entry in membership.lock().values_mut() {
                if entry.alive && entry.last_seen.elapsed() > membership.config.node_timeout {
                    entry.alive = false;
                    died.push((entry.record.id.clone(), entry.record.tag));
                }
            }
            for (id, _) in &died {
                tracing::warn!(node = %id, "no heartbeat for {:?}: node declared dead", membership.config.node_timeout);
            }
            membership
                .head_node
                .metrics()
                .node_deaths
                .fetch_add(died.len() as u64, std::sync::atomic::Ordering::Relaxed);
            membership.buried(&died);
            membership.peers.update(&membership.view());
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

    fn persist(&self, record: &NodeRecord) -> Result<(), MembershipError> {
        let bytes =
            serde_json::to_vec(record).map_err(|e| MembershipError::Internal(e.to_string()))?;
        Ok(self.store.put_node(&record.id, &bytes)?)
    }
}

/// The live placement groups as `head.redb` keeps them (the nodes that
/// hold their bundles), so that a restarted head frees what an earlier run
/// reserved (see [`Membership::new`]).
pub struct GroupLog(pub Arc<HeadStore>);

impl crate::cluster::placement::GroupRecords for GroupLog {
    fn created(&self, id: &str, nodes: &[String]) {
        let record = GroupRecord {
            nodes: nodes.to_vec(),
        };
        match serde_json::to_vec(&record) {
            Ok(bytes) => {
                if let Err(e) = self.0.put_group(id, &bytes) {
                    tracing::warn!("could not record placement group {id}: {e}");
                }
            }
            Err(e) => tracing::warn!("could not encode placement group {id}: {e}"),
        }
    }

    fn removed(&self, id: &str) {
        if let Err(e) = self.0.delete_group(id) {
            tracing::warn!("could not forget placement group {id}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::{HeadOptions, HeadProcess};
    use crate::security::node_key_and_request;

    /// A head process on a fresh state directory; membership with a 1 s
    /// heartbeat and a 10 s node timeout.
    fn head(dir: &std::path::Path) -> HeadProcess {
        crate::security::init(dir, &["127.0.0.1".into()]).expect("init");
        let node = crate::config::NodeConfig {
            cpus: 1.0,
            data_dir: Some(dir.join("data")),
            ..Default::default()
        };
        let options = HeadOptions::new("127.0.0.1:0".parse().unwrap(), node);
        HeadProcess::start(dir, &options, "127.0.0.1:7443").expect("the head starts")
    }

    fn beat(node_id: &str) -> pb::HeartbeatRequest {
        pb::HeartbeatRequest {
            node_id: node_id.to_string(),
            address: "10.0.0.2:7444".into(),
            ..Default::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_join_token_admits_one_node_which_reports_only_for_itself() {
        let dir = tempfile::tempdir().unwrap();
        let process = head(dir.path());
        let members = &process.membership;
        let (token, _) = members.create_join_token(Duration::from_secs(60)).unwrap();
        let (_, csr) = node_key_and_request().unwrap();
        assert!(matches!(
            members.join(&token, "", &csr),
            Err(MembershipError::Invalid(_))
        ));
        // The refusal above spent nothing: the address is checked first.
        let joined = members.join(&token, "10.0.0.2:7444", &csr).unwrap();
        assert!(joined.node_id.starts_with("node-"));
        assert_eq!(joined.tag, HEAD_NODE_TAG + 1);
        assert!(joined.cert_pem.contains("BEGIN CERTIFICATE"));
        // A token admits one node.
        assert!(matches!(
            members.join(&token, "10.0.0.3:7444", &csr),
            Err(MembershipError::Unauthenticated(_))
        ));
        assert!(matches!(
            members.join("made-up", "10.0.0.3:7444", &csr),
            Err(MembershipError::Unauthenticated(_))
        ));

        // Not alive until it reports; only for itself.
        let state = |id: &str| {
            members
                .statuses()
                .into_iter()
                .find(|n| n.node_id == id)
                .map(|n| n.state)
        };
        assert_eq!(state(&joined.node_id).as_deref(), Some("dead"));
        assert!(matches!(
            members.heartbeat("node-other", beat(&joined.node_id)),
            Err(MembershipError::NotYours(_))
        ));
        assert!(matches!(
            members.heartbeat("node-gone", beat("node-gone")),
            Err(MembershipError::UnknownNode(_))
        ));
        let view = members
            .heartbeat(&joined.node_id, beat(&joined.node_id))
            .unwrap();
        assert!(
            view.nodes
                .iter()
                .any(|n| n.node_id == joined.node_id && n.alive)
        );
        assert!(view.nodes.iter().any(|n| n.node_id == HEAD_NODE_ID));
        assert_eq!(state(&joined.node_id).as_deref(), Some("alive"));

        assert!(matches!(
            members.leave("node-other", &joined.node_id),
            Err(MembershipError::NotYours(_))
        ));
        members.leave(&joined.node_id, &joined.node_id).unwrap();
        assert_eq!(state(&joined.node_id).as_deref(), Some("dead"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_expired_join_token_is_refused_and_members_outlive_the_head() {
        let dir = tempfile::tempdir().unwrap();
        let node_id = {
            let process = head(dir.path());
            let members = &process.membership;
            let (_, csr) = node_key_and_request().unwrap();
            let (expired, _) = members.create_join_token(Duration::ZERO).unwrap();
            // Expiry is in whole seconds: let it pass.
            std::thread::sleep(Duration::from_millis(1100));
            assert!(matches!(
                members.join(&expired, "10.0.0.2:7444", &csr),
                Err(MembershipError::Unauthenticated(m)) if m.contains("expired")
            ));
            let (token, _) = members.create_join_token(Duration::from_secs(60)).unwrap();
            let joined = members.join(&token, "10.0.0.2:7444", &csr).unwrap();
            let HeadProcess {
                cluster,
                membership,
                store,
                ..
            } = process;
            drop((membership, store));
            assert!(cluster.shutdown(Duration::from_secs(5)).await);
            joined.node_id
        };
        // A restarted head knows the node (alive until the node timeout
        // says otherwise) and gives the next node a new tag.
        let process = HeadProcess::start(
            dir.path(),
            &HeadOptions::new(
                "127.0.0.1:0".parse().unwrap(),
                crate::config::NodeConfig {
                    cpus: 1.0,
                    data_dir: Some(dir.path().join("data")),
                    ..Default::default()
                },
            ),
            "127.0.0.1:7443",
        )
        .unwrap();
        let members = &process.membership;
        let known = members.statuses();
        assert_eq!(known.len(), 1);
        assert_eq!(known[0].node_id, node_id);
        assert_eq!(known[0].state, "alive");
        let (token, _) = members.create_join_token(Duration::from_secs(60)).unwrap();
        let (_, csr) = node_key_and_request().unwrap();
        let next = members.join(&token, "10.0.0.3:7444", &csr).unwrap();
        assert_eq!(next.tag, HEAD_NODE_TAG + 2);
    }
}
