//! The cluster: a head (control plane) and nodes (workers), connected only
//! through the [`HeadService`] and [`NodeService`] traits.
//!
//! The head lives in [`crate::head`], the node in [`crate::node`];
//! `head::EmbeddedCluster` wires one of each in a single process through
//! direct calls on those traits: the same head and node code that runs as
//! separate processes when the traits are carried over the network, not a
//! second implementation.
//!
//! - [`job`]: what a job is on its way through: the [`JobSpec`] a client
//!   submits, the context a node keeps while it runs, its log, its
//!   [`JobOutcome`].
//! - [`placement`]: placement groups (planning, and the traits through
//!   which guests ask for groups and bundles are reserved on nodes).
//! - The node itself lives in [`crate::node`]; this module re-exports
//!   [`Node`].

pub mod job;

pub mod placement;

pub use crate::node::{Node, RemoteActorCall, RemoteCall};
pub use job::{DriverResources, JobOptions, JobOutcome, JobSpec, LogLine, LogSource};

use crate::ids::{JobId, ModuleHash};
use crate::runtime::BoxFuture;
use bytes::Bytes;
use prism_abi::StoreStats;

/// The id of the node of an embedded cluster, and of the head's own node
/// in a multi-node cluster: `head`.
pub const HEAD_NODE_ID: &str = "head";

/// The namespace of jobs that do not name one: `default`.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Failures of cluster operations.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No module with that hash was uploaded.
    #[error("module {0} not found")]
    ModuleNotFound(ModuleHash),
    /// No job with that id.
    #[error("job {0} not found")]
    JobNotFound(JobId),
    /// The cluster has no node to run work on.
    #[error("the cluster has no nodes")]
    NoNodes,
    /// The node is shutting down.
    #[error("the node has stopped")]
    NodeStopped,
    /// A node could not start.
    #[error("node startup failed: {0}")]
    Startup(String),
    /// Local I/O failed (data directory).
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The object store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::objects::StoreError),
}

/// What a node asks of the head.
pub trait HeadService: Send + Sync + 'static {
    /// The bytes of an uploaded module.
    fn module(&self, hash: ModuleHash) -> BoxFuture<'static, Result<Bytes, ClusterError>>;
    /// Reports that a job ended.
    fn job_finished(&self, outcome: JobOutcome) -> BoxFuture<'static, ()>;
}

/// What the head asks of a node.
pub trait NodeService: Send + Sync + 'static {
    /// Starts a job's driver; returns once it is accepted.
    fn start_job(&self, spec: JobSpec) -> BoxFuture<'static, Result<(), ClusterError>>;
    /// Cancels everything a job still runs on this node.
    fn stop_job(&self, job: JobId) -> BoxFuture<'static, ()>;
    /// Resources, load and store statistics.
    fn status(&self) -> BoxFuture<'static, NodeStatus>;
    /// What this node and the others recorded of `job`'s calls, one
    /// record per task, and how many they did not record.
    fn task_records(
        &self,
        job: JobId,
    ) -> BoxFuture<'static, (Vec<prism_proto::v1::TaskInfo>, u64)> {
        let _ = job;
        Box::pin(async { (Vec::new(), 0) })
    }
}

/// Where a new actor lives, as [`RemoteActors::place_actor`] decides.
pub enum ActorPlacement {
    /// On this node.
    Local,
    /// On another node.
    Remote {
        /// Its id.
        node_id: String,
        /// Its tag, for the actor's id.
        tag: u32,
    },
    /// Nowhere: the reason.
    Unschedulable(String),
}

/// An actor to create on another node.
#[derive(Clone)]
pub struct ActorCreate {
    /// Who creates it: the job or actor it ends with (unless detached).
    pub owner: crate::ids::OwnerId,
    /// Its module.
    pub module: ModuleHash,
    /// Who it is created for: the job's namespace, grant and environment.
    pub ticket: std::sync::Arc<crate::task::JobTicket>,
    /// The actor's class.
    pub class: String,
    /// Constructor arguments.
    pub args: Vec<crate::task::Arg>,
    /// Its options.
    pub options: prism_abi::ActorOptions,
}

/// A node that left the cluster (its id).
#[derive(Clone, Debug, thiserror::Error)]
#[error("node {0:?} left the cluster")]
pub struct NodeLeft(pub String);

/// The actors of other nodes, as a node uses them. Actor ids carry the tag
/// of the node that hosts them, so calls go straight there.
pub trait RemoteActors: Send + Sync + 'static {
    /// Picks the node for an actor holding `request`.
    fn place_actor(
        &self,
        request: &crate::scheduler::resources::ResourceSet,
        strategy: &prism_abi::SchedulingStrategy,
        local_feasible: bool,
        local_fits: bool,
    ) -> ActorPlacement;
    /// Creates actor `id` (minted with the node's tag) on node `node_id`;
    /// returns at once (the creation completes there, before any later
    /// call from this node).
    fn create_actor(
        &self,
        node_id: &str,
        id: crate::ids::ActorId,
        create: ActorCreate,
    ) -> Result<(), NodeLeft>;
    /// Calls a method of an actor on another node; the result (or error)
    /// appears under `return_id`, owned by `owner`.
    fn call_actor(
        &self,
        actor: crate::ids::ActorId,
        method: &str,
        args: Vec<crate::task::Arg>,
        return_id: crate::ids::ObjectId,
        owner: crate::ids::OwnerId,
        tenant: &crate::security::tenants::TenantId,
    );
    /// Kills an actor of `tenant` on another node (another tenant's is
    /// left alone).
    fn kill_actor(&self, actor: crate::ids::ActorId, tenant: &crate::security::tenants::TenantId);
}

/// The other nodes of a multi-node cluster, as one node uses them: for
/// tasks and objects ([`Remote`](crate::scheduler::remote::Remote)) and
/// for actors ([`RemoteActors`]).
pub trait OtherNodes: crate::scheduler::remote::Remote + RemoteActors {}

impl<T: crate::scheduler::remote::Remote + RemoteActors> OtherNodes for T {}

/// Where a guest's calls to served deployments go (`prism::serve`
/// handles): the head's applications (`serve::Apps`) on the head's node,
/// the head over `NodeControl` on a worker.
pub trait DeploymentCalls: Send + Sync + 'static {
    /// Makes `call` to deployment `deployment` of `tenant`'s application
    /// `app`; its encoded value (for a request, the encoded `Response`),
    /// or why there is none.
    fn call_deployment(
        &self,
        tenant: &crate::security::tenants::TenantId,
        app: &str,
        deployment: &str,
        call: DeploymentCall,
    ) -> BoxFuture<'static, Result<bytes::Bytes, prism_abi::WireError>>;
}

/// What a guest asks of a deployment.
#[derive(Clone, Debug)]
pub enum DeploymentCall {
    /// An encoded `prism_abi::http::Request`, answered as the ingress
    /// would (replicas, queue, batching, split, timeout, body limit).
    Request(bytes::Bytes),
    /// A method of a class deployment's replica, with encoded values.
    Method {
        /// The method.
        method: String,
        /// Its arguments.
        args: Vec<bytes::Bytes>,
    },
}

/// What a node's client of the other nodes asks of, or tells, its own
/// node (the node implements it; the client holds it weakly). Objects
/// the client pulls go to the node's store directly.
pub trait HomeNode: Send + Sync + 'static {
    /// Whether `job` still runs on this node (a call of an ended job is
    /// not started elsewhere).
    fn job_runs(&self, job: crate::ids::OwnerId) -> bool;
    /// Log lines another node sent back for `job`.
    fn append_logs(&self, job: crate::ids::OwnerId, lines: Vec<LogLine>);
    /// The cluster view changed: nodes `left` it (maybe none), others may
    /// have gained room.
    fn view_changed(&self, left: &[String]);
    /// Where an actor whose node died was restarted, if it was.
    fn follow_moved_actor(
        &self,
        actor: crate::ids::ActorId,
    ) -> BoxFuture<'_, Option<crate::ids::ActorId>>;
    /// Calls `method` of `actor`, which lives on this node, for `tenant`;
    /// the result completes `return_id`.
    fn call_local_actor(
        &self,
        actor: crate::ids::ActorId,
        method: String,
        args: Vec<crate::task::Arg>,
        return_id: crate::ids::ObjectId,
        tenant: &crate::security::tenants::TenantId,
    );
}

/// The answer to [`ActorDirectory::claim`].
pub enum NameClaim {
    /// The name is now the new actor's.
    Claimed,
    /// Another actor holds it.
    Existing {
        /// That actor.
        id: crate::ids::ActorId,
        /// Its class.
        class: String,
    },
}

/// Why the directory could not record a name.
#[derive(Clone, Debug, thiserror::Error)]
pub enum DirectoryError {
    /// `head.redb` did not take it.
    #[error("could not record the actor's name: {0}")]
    Unrecorded(String),
    /// The head could not be reached.
    #[error("the head could not record the actor's name: {0}")]
    Head(String),
    /// The head refused the name without saying who holds it.
    #[error("the head answered without a holder")]
    NoHolder,
}

/// The cluster-wide names of actors, kept by the head (in `head.redb`, so
/// detached actors' names outlive a head restart).
pub trait ActorDirectory: Send + Sync + 'static {
    /// Claims `name` in `namespace` for actor `id` of `class`.
    fn claim(
        &self,
        namespace: &str,
        name: &str,
        id: crate::ids::ActorId,
        class: &str,
        detached: bool,
    ) -> BoxFuture<'static, Result<NameClaim, DirectoryError>>;
    /// The actor holding `name` in `namespace`, and its class.
    fn lookup(
        &self,
        namespace: &str,
        name: &str,
    ) -> BoxFuture<'static, Option<(crate::ids::ActorId, String)>>;
    /// Frees `name` if actor `id` still holds it.
    fn release(&self, namespace: &str, name: &str, id: crate::ids::ActorId);
    /// Frees whatever name actor `id` holds in a namespace of `tenant`
    /// (a node that kills an actor it did not create knows no name).
    fn release_actor(&self, tenant: &crate::security::tenants::TenantId, id: crate::ids::ActorId);
    /// Records that actor `old` was restarted on another node as `new`.
    fn record_move(&self, old: crate::ids::ActorId, new: crate::ids::ActorId);
    /// Where actor `id` was restarted, if it was (following every move).
    fn resolve_move(
        &self,
        id: crate::ids::ActorId,
    ) -> BoxFuture<'static, Option<crate::ids::ActorId>>;
}

/// A node's view of itself, for status output.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NodeStatus {
    /// Total resources offered.
    pub total: String,
    /// Resources not held by running tasks.
    pub available: String,
    /// Task counters.
    pub scheduler: crate::scheduler::SchedulerStats,
    /// Object store statistics.
    pub store: StoreStats,
    /// Object store in-memory capacity in bytes.
    pub store_capacity: u64,
    /// The GPUs offered, indexed as guests see them.
    pub gpus: Vec<crate::gpu::AdapterSummary>,
    /// GPU buffers alive in the node's instances.
    pub gpu_usage: crate::gpu::GpuUsageStats,
}
