//! The nodes the head reserves placement-group bundles on: its own node
//! directly, workers over `Worker.ReserveBundles` ([`ClusterHosts`]).

use super::Membership;
use crate::cluster::Node;
use crate::cluster::placement::{BundleHosts, HostView};
use crate::net::HEAD_NODE_ID;
use crate::net::peers::Peers;
use crate::runtime::BoxFuture;
use crate::scheduler::ReserveError;
use crate::scheduler::resources::ResourceSet;
use prism_proto::v1 as pb;
use std::sync::{Arc, Weak};

/// Every live node of the cluster, as the head reserves bundles on them.
pub struct ClusterHosts {
    membership: std::sync::OnceLock<Weak<Membership>>,
    head_node: Weak<Node>,
    peers: Arc<Peers>,
}

impl ClusterHosts {
    /// The head's node and the nodes `peers` reaches; [`ClusterHosts::attach`]
    /// the membership before use.
    pub fn new(head_node: Weak<Node>, peers: Arc<Peers>) -> Arc<Self> {
        Arc::new(ClusterHosts {
            membership: std::sync::OnceLock::new(),
            head_node,
            peers,
        })
    }

    /// The membership whose view lists the nodes.
    pub fn attach(&self, membership: &Arc<Membership>) {
        let _ = self.membership.set(Arc::downgrade(membership));
    }
}

impl BundleHosts for ClusterHosts {
    fn hosts(&self) -> Vec<HostView> {
        let Some(membership) = self.membership.get().and_then(Weak::upgrade) else {
            return Vec::new();
        };
        membership
            .view()
            .nodes
            .into_iter()
            .filter(|n| n.alive && (n.node_id == HEAD_NODE_ID || self.peers.has_peer(&n.node_id)))
            .map(|n| HostView {
                total: crate::net::resources_from_proto(n.total.as_ref()),
                available: crate::net::resources_from_proto(n.available.as_ref()),
                node_id: n.node_id,
            })
            .collect()
    }

    fn reserve(
        &self,
        node_id: &str,
        group: &str,
        bundles: Vec<(u32, ResourceSet)>,
    ) -> BoxFuture<'static, Result<(), ReserveError>> {
        if node_id == HEAD_NODE_ID {
            let reserved = match self.head_node.upgrade() {
                Some(node) => node.scheduler().reserve_bundles(group, &bundles),
                None => Err(ReserveError::NodeGone("the head's node stopped".into())),
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
                    resources: Some(crate::net::resources_to_proto(r)),
                })
                .collect(),
        };
        Box::pin(async move {
            let mut client = client.ok_or_else(|| {
                ReserveError::NodeGone(format!("node {node_id} left the cluster"))
            })?;
            let reply = client
                .reserve_bundles(request)
                .await
                .map_err(|s| ReserveError::Refused(format!("node {node_id}: {}", s.message())))?
                .into_inner();
            if reply.refused.is_empty() {
                Ok(())
            } else {
                Err(ReserveError::Refused(reply.refused))
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
