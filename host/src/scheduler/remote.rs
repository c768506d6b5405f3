//! The other nodes of a multi-node cluster, as the scheduler sees them.
//!
//! A node of a multi-node cluster gives its scheduler a [`Remote`] when
//! it starts ([`super::Scheduler::new`]). The scheduler then places tasks the
//! local node cannot run now (or whose strategy asks for another node) on
//! a node that [`Remote::reserve`] picks, runs the attempt there through
//! [`Remote::execute`], and pulls argument objects that live on other
//! nodes into the local store with [`Remote::fetch`] before a task waits
//! for them.

use super::TaskSpec;
use super::resources::ResourceSet;
use crate::ids::{ObjectId, OwnerId};
use crate::runtime::{BoxFuture, CancelToken};
use bytes::Bytes;
use prism_abi::WireError;
use std::sync::Arc;

/// How [`Remote::reserve`] picks a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick<'a> {
    /// The least-loaded other node that can run the request.
    LeastLoaded,
    /// The next node in round robin over every node that can run the
    /// request, this one included.
    Spread,
    /// The node with this id.
    Node(&'a str),
}

/// The outcome of [`Remote::reserve`].
pub enum Placement {
    /// Run it here.
    Local,
    /// Run it on another node; the reservation ends when it is dropped.
    Remote(Box<dyn Reservation>),
    /// No node has room now; wait.
    Wait,
}

/// A slot held on another node for one attempt.
pub trait Reservation: Send + Sync {
    /// The node's id.
    fn node_id(&self) -> &str;
}

/// The rest of the cluster.
pub trait Remote: Send + Sync + 'static {
    /// This node's id.
    fn local_id(&self) -> &str;
    /// Whether another live node's total resources fit `request`.
    fn feasible(&self, request: &ResourceSet) -> bool;
    /// Whether another node with this id is alive.
    fn has_node(&self, id: &str) -> bool;
    /// Whether another node with this id is alive and its total resources
    /// fit `request`.
    fn node_can_hold(&self, id: &str, request: &ResourceSet) -> bool;
    /// Picks where `request` runs. `local_feasible` says whether this node
    /// could ever run it, `local_fits` whether it could now.
    fn reserve(
        &self,
        request: &ResourceSet,
        pick: Pick<'_>,
        local_feasible: bool,
        local_fits: bool,
    ) -> Placement;
    /// Runs one attempt of `spec` on the reserved node. Dropping the future
    /// cancels the attempt there.
    fn execute(
        &self,
        reservation: Box<dyn Reservation>,
        spec: Arc<TaskSpec>,
        attempt: u32,
        cancel: Arc<CancelToken>,
    ) -> BoxFuture<'static, Result<Bytes, WireError>>;
    /// If `id` lives on another node and is not here, registers it here as
    /// pending (owned by `owner`) and starts pulling it. Concurrent calls
    /// for one id pull it once.
    fn fetch(&self, id: ObjectId, owner: OwnerId, tenant: &crate::security::tenants::TenantId);
    /// Tells every other node that `job` ended: they free what it owns.
    fn end_job(&self, job: OwnerId);
    /// Sends `lines` that `job`'s guests wrote here to node `node` (which
    /// placed the attempt that runs them), for the job's log there; gives
    /// up quietly if it cannot.
    fn push_logs(&self, node: &str, job: OwnerId, lines: Vec<crate::cluster::job::LogLine>);
    /// What every other node recorded of `job`'s calls (nodes that do
    /// not answer in time are left out), and how many they did not record.
    fn task_records(
        &self,
        job: crate::ids::JobId,
    ) -> BoxFuture<'static, (Vec<prism_proto::v1::TaskInfo>, u64)>;
    /// Asks every other node to free its ready copies of `ids` owned by
    /// `job` of `tenant`; resolves when each answered or gave up.
    fn free(
        &self,
        job: OwnerId,
        tenant: &crate::security::tenants::TenantId,
        ids: &[ObjectId],
    ) -> BoxFuture<'static, ()>;
}
