//! Transport between nodes, all over gRPC with mutual TLS: the client of
//! the other nodes, the `Worker` service, the worker process. The head's
//! side of membership (joins, heartbeats, dead nodes) is
//! `head::Membership`, served by `api/node_control.rs`.
//!
//! - [`peers`]: one node's view of the others. It implements the
//!   scheduler's [`Remote`](crate::scheduler::remote::Remote): places tasks
//!   on other nodes, runs attempts there, and pulls objects from the node
//!   whose tag their id carries; and the node's
//!   [`RemoteActors`](crate::cluster::RemoteActors) (`peers/actors.rs`).
//!   It reaches its own node only through
//!   [`HomeNode`](crate::cluster::HomeNode) and its object store.
//! - [`placement`]: a worker's guests create placement groups through the
//!   head (`RemotePlacement`).
//! - `calls.rs`: task attempts and actor creations on the wire, both
//!   ways, in one place.
//! - [`grant`]: a job's grant to and from its protobuf message.
//! - [`worker_service`]: the `Worker` service every node serves (the
//!   head's node too): run an attempt, stream an object, end a job.
//! - [`worker`]: the worker process, `prism start --join`: joins, starts
//!   its node with the head's directory, named objects and placement as
//!   its links, heartbeats.
//!
//! Between nodes there is no bearer token: a node proves who it is with
//! its certificate, and the head reads its id from that certificate.

mod calls;
pub mod grant;
pub mod metrics;
pub mod peers;
pub mod placement;
pub mod serving;
pub mod worker;
pub mod worker_service;

use crate::scheduler::resources::ResourceSet;
use prism_abi::{ErrorKind, WireError};
use prism_proto::v1 as pb;
use tonic::Status;

/// Largest message between nodes: task arguments and results travel
/// inline, objects in chunks (1 GiB).
pub const MAX_NODE_MESSAGE: usize = 1 << 30;

/// HTTP/2 flow-control windows between nodes: 8 MiB per stream, 32 MiB
/// per connection (the protocol's default, 64 KiB, caps a bulk transfer
/// at one window per round trip).
pub const STREAM_WINDOW: u32 = 8 << 20;
/// See [`STREAM_WINDOW`].
pub const CONNECTION_WINDOW: u32 = 32 << 20;

/// Objects travel in chunks of this size (1 MiB).
pub const CHUNK_BYTES: usize = 1 << 20;

/// The head node's id in the cluster view.
pub const HEAD_NODE_ID: &str = crate::cluster::HEAD_NODE_ID;

/// The subject of the head's certificate (`prism init`).
pub const HEAD_SUBJECT: &str = "prism head";

/// The head node's tag (workers get 2, 3, …).
pub const HEAD_NODE_TAG: u32 = 1;

/// Failures of the network layer.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// TLS, connection or listening failed.
    #[error("transport: {0}")]
    Transport(String),
    /// The head refused or failed a call.
    #[error("the head answered {code:?}: {message}")]
    Refused {
        /// The gRPC code.
        code: tonic::Code,
        /// Its message.
        message: String,
    },
    /// The node's state directory is unusable.
    #[error("{0}")]
    State(String),
    /// Certificates or keys.
    #[error(transparent)]
    Security(#[from] crate::security::SecurityError),
    /// The local node could not start.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

impl From<Status> for NetError {
    fn from(status: Status) -> Self {
        NetError::Refused {
            code: status.code(),
            message: status.message().to_string(),
        }
    }
}

/// A resource set as it crosses the wire.
pub fn resources_to_proto(set: &ResourceSet) -> pb::Resources {
    pb::Resources {
        cpu_milli: set.cpu_milli,
        memory: set.memory,
        custom: set.custom.iter().map(|(k, v)| (k.clone(), *v)).collect(),
    }
}

/// A resource set from the wire (`None` reads as nothing).
pub fn resources_from_proto(set: Option<&pb::Resources>) -> ResourceSet {
    match set {
        None => ResourceSet::default(),
        Some(r) => ResourceSet {
            cpu_milli: r.cpu_milli,
            memory: r.memory,
            custom: r.custom.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        },
    }
}

/// Checks that a call between nodes came with a client certificate (the
/// TLS layer has verified it against the cluster CA), and returns the
/// subject it names: the calling node's id, or "prism head".
pub fn peer_identity<T>(request: &tonic::Request<T>) -> Result<String, Status> {
    let certs = request
        .peer_certs()
        .filter(|certs| !certs.is_empty())
        .ok_or_else(|| Status::unauthenticated("this call needs a node certificate"))?;
    crate::security::certificate_subject(certs[0].as_ref())
        .ok_or_else(|| Status::unauthenticated("unreadable node certificate"))
}

/// An actor id from the wire (16 bytes).
pub fn actor_id(bytes: &[u8]) -> Result<crate::ids::ActorId, Status> {
    <[u8; 16]>::try_from(bytes)
        .map(crate::ids::ActorId::from_bytes)
        .map_err(|_| Status::invalid_argument("an actor id is 16 bytes"))
}

/// A failed call to another node, as the task that needed it sees it.
pub fn unreachable(node: &str, status: &Status) -> WireError {
    WireError::new(
        ErrorKind::WorkerDied,
        format!("node {node} failed or is unreachable: {}", status.message()),
    )
}

/// Tenants' use as the heartbeat carries it.
pub fn usage_to_proto(
    usage: &std::collections::HashMap<String, crate::scheduler::accounts::Usage>,
) -> std::collections::HashMap<String, pb::TenantUsage> {
    usage
        .iter()
        .map(|(tenant, u)| {
            (
                tenant.clone(),
                pb::TenantUsage {
                    queued_tasks: u.queued_tasks,
                    actors: u.actors,
                    object_bytes: u.object_bytes,
                    cpu_milli: u.cpu_milli,
                    memory: u.memory,
                    gpu_milli: u.gpu_milli,
                },
            )
        })
        .collect()
}

/// Tenants' use from a heartbeat or view.
pub fn usage_from_proto(
    usage: &std::collections::HashMap<String, pb::TenantUsage>,
) -> std::collections::HashMap<String, crate::scheduler::accounts::Usage> {
    usage
        .iter()
        .map(|(tenant, u)| {
            (
                tenant.clone(),
                crate::scheduler::accounts::Usage {
                    queued_tasks: u.queued_tasks,
                    actors: u.actors,
                    object_bytes: u.object_bytes,
                    cpu_milli: u.cpu_milli,
                    memory: u.memory,
                    gpu_milli: u.gpu_milli,
                },
            )
        })
        .collect()
}

/// Runs `serve` (a server that stops accepting when its shutdown signal
/// fires, then waits for the calls in flight) but gives those calls at
/// most `grace` from when `begun` fires: a service manager's stop is
/// answered in bounded time, whatever a client keeps open.
pub async fn serve_with_grace<E: std::fmt::Display>(
    serve: impl std::future::Future<Output = Result<(), E>>,
    begun: tokio::sync::oneshot::Receiver<()>,
    grace: std::time::Duration,
) -> Result<(), E> {
    tokio::pin!(serve);
    let grace_over = async {
        if begun.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        served = &mut serve => served,
        _ = grace_over => {
            tracing::warn!(?grace, "shutdown grace over: exiting with calls still open");
            Ok(())
        }
    }
}

/// A log line as it crosses between nodes.
pub(crate) fn log_line_to_proto(line: crate::cluster::LogLine) -> prism_proto::v1::LogLine {
    prism_proto::v1::LogLine {
        function: line.function,
        source: line.source.as_str().to_string(),
        text: line.text,
    }
}

/// A log line another node sent, its function marked with that node
/// (`function@node`).
pub(crate) fn log_line_from(peer: &str, line: prism_proto::v1::LogLine) -> crate::cluster::LogLine {
    crate::cluster::LogLine {
        source: crate::cluster::LogSource::from_name(&line.source),
        function: format!("{}@{peer}", line.function),
        text: line.text,
    }
}
