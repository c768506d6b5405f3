//! Placement groups for guests on a worker node: created and removed
//! through the head ([`RemotePlacement`]). The head's side, which
//! reserves bundles on every node, is `head::ClusterHosts`.

use crate::cluster::placement::PlacementService;
use crate::ids::OwnerId;
use crate::runtime::BoxFuture;
use prism_abi::{ErrorKind, PlacementGroupInfo, PlacementGroupSpec, WireError};
use prism_proto::v1 as pb;
use prism_proto::v1::node_control_client::NodeControlClient;
use std::sync::Arc;
use tonic::transport::Channel;

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
        owner: OwnerId,
        tenant: &crate::security::tenants::TenantId,
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

    fn remove_owned(&self, _owner: OwnerId) {
        // The head removes a job's groups when the job ends.
    }
}
