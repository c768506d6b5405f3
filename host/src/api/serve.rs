//! The head's composition root: [`serve`] builds the head (state, node,
//! membership, services) and serves the API over TLS until shutdown, with
//! the bearer-token check that runs before any request body is decoded.

use super::node_control::NodeControlService;
use super::{Api, ApiError, ApiHandle, HeadOptions, MAX_MODULE_BYTES};
use crate::cluster::HomeNode;
use crate::cluster::placement::PlacementGroups;
use crate::head::{
    ActorNames, Archive, ClusterHosts, EmbeddedCluster, Head, Membership, MembershipConfig,
};
use crate::meta::HeadStore;
use crate::net::peers::{NodeCredentials, Peers};
use crate::net::worker_service::WorkerService;
use crate::net::{HEAD_NODE_ID, HEAD_NODE_TAG, MAX_NODE_MESSAGE};
use crate::node::{ClusterLinks, NodeLinks};
use crate::security::access::AuditLog;
use crate::security::{
    Access, Claims, ClusterFiles, NodeAuthority, Policies, Tenancy, TokenAuthority,
};
use prism_proto::v1::cluster_server::ClusterServer;
use prism_proto::v1::jobs_server::JobsServer;
use prism_proto::v1::node_control_server::NodeControlServer;
use prism_proto::v1::worker_server::WorkerServer;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Status};

/// The claims of a token [`TokenCheck`] verified for this request.
#[derive(Clone)]
pub(super) struct Verified(pub(super) Claims);

/// Checks a client call's bearer token from its headers, before tonic
/// reads the message: a caller without a valid token cannot make the head
/// buffer a body (up to 64 MiB for a module) at all. The handler then
/// decides the call's action with the verified claims.
#[derive(Clone)]
struct TokenCheck(Arc<Api>);

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let claims = self.0.authenticate(&request, "Authenticate")?;
        request.extensions_mut().insert(Verified(claims));
        Ok(request)
    }
}

/// Refuses a call before its message is read unless the caller presented
/// a certificate (which TLS has verified against the cluster CA).
fn require_node_certificate(request: Request<()>) -> Result<Request<()>, Status> {
    if request.peer_certs().is_some_and(|certs| !certs.is_empty()) {
        Ok(request)
    } else {
        Err(Status::unauthenticated(
            "this call needs a node certificate",
        ))
    }
}

/// Serves the API for the cluster in `state_dir` on `listen` until
/// `shutdown` resolves. Calls `ready` with the bound address once it
/// accepts connections. Must run inside a multi-threaded tokio runtime.
pub async fn serve(
    state_dir: &std::path::Path,
    options: HeadOptions,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ApiError> {
    let files = ClusterFiles::new(state_dir);
    let authority = TokenAuthority::load(&files)?;
    let policies = Policies::new()?;
    let node_authority = NodeAuthority::load(&files)?;
    let credentials = NodeCredentials {
        ca_pem: files.read(&files.ca_cert())?,
        cert_pem: files.read(&files.head_cert())?,
        key_pem: files.read(&files.head_key())?,
    };
    let identity = Identity::from_pem(&credentials.cert_pem, &credentials.key_pem);
    let listen = options.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| ApiError::Transport(format!("cannot listen on {listen}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| ApiError::Transport(e.to_string()))?;
    let address = match &options.advertise {
        Some(a) => a.clone(),
        None if bound.ip().is_unspecified() => format!("127.0.0.1:{}", bound.port()),
        None => bound.to_string(),
    };
    // Each job's whole log, one file per job (bounded per job).
    let log_dir = state_dir.join("logs");
    std::fs::create_dir_all(&log_dir)
        .map_err(|e| ApiError::Transport(format!("{}: {e}", log_dir.display())))?;
    let mut node_config = options.node.clone();
    node_config.job_log_dir = Some(log_dir.clone());
    let store = Arc::new(HeadStore::open(&state_dir.join("head.redb"))?);
    let head = Head::with_archive(
        Archive::new(store.clone(), log_dir.clone()),
        options.job_limits,
    )?;
    let names = ActorNames::load(store.clone())?;
    // The head's node reaches the workers through `peers`, names actors
    // in `names` and makes placement groups across every node.
    let mut wired = None;
    // Every id the head's node mints says it lives there.
    let cluster =
        EmbeddedCluster::start_linked(head, node_config, HEAD_NODE_TAG, |node, objects| {
            let home: Weak<dyn HomeNode> = node.clone();
            let peers = Peers::new(
                HEAD_NODE_ID,
                HEAD_NODE_TAG,
                home,
                objects.clone(),
                credentials.clone(),
            );
            let hosts = ClusterHosts::new(node.clone(), peers.clone());
            let placement = PlacementGroups::new(hosts.clone());
            wired = Some((peers.clone(), hosts, placement.clone()));
            NodeLinks {
                placement: Arc::new(placement),
                cluster: Some(ClusterLinks {
                    peers,
                    directory: names.clone(),
                    named: None,
                }),
            }
        })?;
    let (peers, hosts, placement) =
        wired.ok_or_else(|| ApiError::Transport("the head's node did not start".into()))?;
    let head_node = cluster.node().clone();
    let membership = Membership::new(
        MembershipConfig {
            head_address: address.clone(),
            heartbeat_interval: options.heartbeat_interval,
            node_timeout: options.node_timeout,
        },
        store.clone(),
        node_authority,
        cluster.head().clone(),
        head_node.clone(),
        peers,
        names,
    )?;
    hosts.attach(&membership);
    membership.set_placement(placement.clone());
    placement.record_in(membership.clone());
    tokio::spawn(membership.clone().watch_nodes());
    let tenancy = Arc::new(Tenancy::load(store.clone())?);
    let audit_path = options
        .audit_log
        .clone()
        .unwrap_or_else(|| state_dir.join("audit.log"));
    let api = ApiHandle(Arc::new(Api {
        cluster,
        access: Access::new(
            authority,
            tenancy,
            policies,
            Some(
                AuditLog::open(&audit_path)
                    .map_err(|e| ApiError::Transport(format!("{}: {e}", audit_path.display())))?,
            ),
        )?,
        job_limits: options.job_limits,
        membership: membership.clone(),
        address,
    }));
    // Clients authenticate with tokens, nodes with certificates from the
    // cluster CA: a certificate is optional on this port, but one that is
    // presented must verify, and node calls check that there was one.
    let tls = ServerTlsConfig::new()
        .identity(identity)
        .client_ca_root(Certificate::from_pem(&credentials.ca_pem))
        .client_auth_optional(true);
    let check = TokenCheck(api.0.clone());
    let stopping = api.0.clone();
    let server = Server::builder()
        .initial_stream_window_size(crate::net::STREAM_WINDOW)
        .initial_connection_window_size(crate::net::CONNECTION_WINDOW)
        .tls_config(tls)
        .map_err(|e| ApiError::Transport(e.to_string()))?
        .tcp_nodelay(true)
        .add_service(tonic::service::interceptor::InterceptedService::new(
            JobsServer::new(api.clone()).max_decoding_message_size(MAX_MODULE_BYTES),
            check.clone(),
        ))
        .add_service(ClusterServer::with_interceptor(api.clone(), check.clone()))
        .add_service(prism_proto::v1::admin_server::AdminServer::with_interceptor(api, check))
        // NodeControl takes Join from callers without a certificate, so
        // what it reads is bounded like the API (64 MiB); the Worker
        // service checks the certificate before it reads a message.
        .add_service(
            NodeControlServer::new(NodeControlService(membership))
                .max_decoding_message_size(MAX_MODULE_BYTES)
                .max_encoding_message_size(MAX_NODE_MESSAGE),
        )
        .add_service(tonic::service::interceptor::InterceptedService::new(
            WorkerServer::new(WorkerService::new(head_node))
                .max_decoding_message_size(MAX_NODE_MESSAGE)
                .max_encoding_message_size(MAX_NODE_MESSAGE),
            require_node_certificate,
        ));
    ready(bound);
    // On shutdown: stop accepting, stop the running jobs (their records
    // end as stopped, and their waiters get answers), and give calls in
    // flight the grace, no more.
    let (begun_tx, begun_rx) = tokio::sync::oneshot::channel::<()>();
    let stop = async move {
        shutdown.await;
        let _ = begun_tx.send(());
        stopping.cluster.head().stop_all_jobs().await;
    };
    crate::net::serve_with_grace(
        server.serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            stop,
        ),
        begun_rx,
        options.shutdown_grace,
    )
    .await
    .map_err(|e| ApiError::Transport(e.to_string()))
}
