//! Placement groups across nodes: the head reserves bundles on its own
//! node directly and on workers over `Worker.ReserveBundles`
//! ([`ClusterHosts`]); guests on workers create and remove groups through
//! the head ([`RemotePlacement`]).

use super::HEAD_NODE_ID;
use super::peers::Peers;
use super::registry::Registry;
use crate::cluster::Node;
use crate::cluster::placement::{BundleHosts, HostView, PlacementService};
use crate::ids::JobId;
use crate::runtime::BoxFuture;
use crate::scheduler::resources::ResourceSet;
use prism_abi::{ErrorKind, PlacementGroupInfo, PlacementGroupSpec, WireError};
use prism_proto::v1 as pb;
use prism_proto::v1::node_control_client::NodeControlClient;
use std::sync::{Arc, Weak};
use tonic::transport::Channel;

/// Every live node of the cluster, as the head reserves bundles on them.
pub struct ClusterHosts {
    registry: std::sync::OnceLock<Weak<Registry>>,
    head_node: Weak<Node>,
    peers: Arc<Peers>,
}

impl ClusterHosts {
    /// The head's node and the nodes `peers` reaches; [`ClusterHosts::attach`]
    /// the registry before use.
    pub fn new(head_node: &Arc<Node>, peers: Arc<Peers>) -> Arc<Self> {
        Arc::new(ClusterHosts {
            registry: std::sync::OnceLock::new(),
            head_node: Arc::downgrade(head_node),
            peers,
        })
    }

    /// The registry whose view lists the nodes.
    pub fn attach(&self, registry: &Arc<Registry>) {
        let _ = self.registry.set(Arc::downgrade(registry));
    }
}

impl BundleHosts for ClusterHosts {
    fn hosts(&self) -> Vec<HostView> {
        let Some(registry) = self.registry.get().and_then(Weak::upgrade) else {
            return Vec::new();
        };
        registry
            .view()
            .nodes
            .into_iter()
            .filter(|n| n.alive && (n.node_id == HEAD_NODE_ID || self.peers.has_peer(&n.node_id)))
            .map(|n| HostView {
                total: super::resources_from_proto(n.total.as_ref()),
                available: super::resources_from_proto(n.available.as_ref()),
                node_id: n.node_id,
            })
            .collect()
    }

    fn reserve(
        &self,
        node_id: &str,
        group: &str,
        bundles: Vec<(u32, ResourceSet)>,
    ) -> BoxFuture<'static, Result<(), String>> {
        if node_id == HEAD_NODE_ID {
            let reserved = match self.head_node.upgrade() {
                Some(node) => node.scheduler().reserve_bundles(group, &bundles),
                None => Err("the head's node stopped".into()),
            };
            return Box::pin(async move { reserved });
        }
        let client = self.peers.worker_client(node_id);
        let node_id = node_id.to_string();
        let request = pb::ReserveBundlesRequest {
            group: group.to_string(),
            bundles: bundles
                .iter()
                .map(|(index, r)| pb::Bundle {
                    index: *index,
                    resources: Some(super::resources_to_proto(r)),
                })
                .collect(),
        };
        Box::pin(async move {
            let mut client = client.ok_or_else(|| format!("node {node_id} left the cluster"))?;
            let reply = client
                .reserve_bundles(request)
                .await
                .map_err(|s| format!("node {node_id}: {}", s.message()))?
                .into_inner();
            if reply.refused.is_empty() {
                Ok(())
            } else {
                Err(reply.refused)
            }
        })
    }

    fn release(&self, node_id: &str, group: &str) {
        if node_id == HEAD_NODE_ID {
            if let Some(node) = self.head_node.upgrade() {
                node.scheduler().release_bundles(group);
            }
            return;
        }
        let Some(mut client) = self.peers.worker_client(node_id) else {
            return;
        };
        let request = pb::ReleaseBundlesRequest {
            group: group.to_string(),
        };
        tokio::spawn(async move {
            if let Err(status) = client.release_bundles(request).await {
                tracing::warn!(
                    "releasing placement group bundles failed: {}",
                    status.message()
                );
            }
        });
    }
}

/// Placement groups made by the head, for guests on a worker node.
pub struct RemotePlacement {
    client: NodeControlClient<Channel>,
}

impl RemotePlacement {
    /// Through the head's `NodeControl`.
    pub fn new(client: NodeControlClient<Channel>) -> Arc<Self> {
        Arc::new(RemotePlacement { client })
    }
}

impl PlacementService for RemotePlacement {
    fn create(
        &self,
        owner: JobId,
        tenant: &str,
        spec: PlacementGroupSpec,
    ) -> BoxFuture<'static, Result<PlacementGroupInfo, WireError>> {
        let mut client = self.client.clone();
        let tenant = tenant.to_string();
        Box::pin(async move {
            let system = |m: String| WireError::new(ErrorKind::System, m);
            let spec = rmp_serde::to_vec_named(&spec).map_err(|e| system(e.to_string()))?;
            let reply = client
                .create_placement_group(pb::CreatePlacementGroupRequest {
                    job_id: owner.as_u64(),
                    spec,
                    tenant,
                })
                .await
                .map_err(|s| system(format!("the head: {}", s.message())))?
                .into_inner();
            if !reply.error.is_empty() {
                return Err(WireError::decode(&reply.error)
                    .unwrap_or_else(|e| system(format!("unreadable error: {e}"))));
            }
            rmp_serde::from_slice(&reply.info).map_err(|e| system(e.to_string()))
        })
    }

    fn remove(&self, group: &str) {
        let mut client = self.client.clone();
        let request = pb::RemovePlacementGroupRequest {
            group: group.to_string(),
        };
        tokio::spawn(async move {
            if let Err(status) = client.remove_placement_group(request).await {
                tracing::warn!("removing a placement group failed: {}", status.message());
            }
        });
    }

    fn remove_owned(&self, _owner: JobId) {
        // The head removes a job's groups when the job ends.
    }
}
