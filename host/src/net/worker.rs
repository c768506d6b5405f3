//! The worker process: `prism start --join https://HEAD --dir STATE`.
//!
//! On its first start the node makes its own key, sends a certificate
//! request with a one-time join token, and keeps what the head answers in
//! its state directory (each file 0600):
//! - `node.json`: its id, tag, the head's address, the heartbeat interval;
//! - `node.pem`, `node.key`: its certificate and key;
//! - `ca.pem`: the cluster CA it was given with `--ca`.
//!
//! Later starts reuse them and need no token. The node then serves the
//! `Worker` service (mutual TLS only: callers must present a certificate
//! from the same CA), and heartbeats to the head.

use super::peers::{NodeCredentials, Peers};
use super::worker_service::WorkerService;
use super::{MAX_NODE_MESSAGE, NetError, resources_to_proto};
use crate::cluster::{
    ActorDirectory, ClusterError, DirectoryError, HeadService, HomeNode, JobOutcome, NameClaim,
    Node,
};
use crate::config::NodeConfig;
use crate::ids::ActorId;
use crate::ids::ModuleHash;
use crate::node::{ClusterLinks, NodeLinks};
use crate::objects::named::{NamedError, NamedStore, Tier};
use crate::runtime::BoxFuture;
use bytes::Bytes;
use prism_proto::v1 as pb;
use prism_proto::v1::node_control_client::NodeControlClient;
use prism_proto::v1::worker_server::WorkerServer;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig,
};

/// How to start a worker.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// The head, "https://host:port".
    pub head: String,
    /// The node's state directory.
    pub dir: PathBuf,
    /// The cluster CA (PEM) for the first join; later starts use the copy
    /// in the state directory.
    pub ca_pem: Option<Vec<u8>>,
    /// A one-time join token (first start only).
    pub join_token: Option<String>,
    /// Where to serve the `Worker` service (default 127.0.0.1:0).
    pub listen: SocketAddr,
    /// Where other nodes reach it (default: the bound address).
    pub advertise: Option<String>,
    /// The local node.
    pub node: NodeConfig,
    /// After `shutdown`, how long calls in flight may take to finish
    /// before the worker exits anyway (default 10 s).
    pub shutdown_grace: Duration,
    /// Where to serve the cluster's HTTP applications (default: not
    /// served).
    pub http_listen: Option<SocketAddr>,
    /// The ingress's certificate chain and key (PEM); default: the
    /// node's certificate (valid for `<node id>.node.prism`, from the
    /// cluster CA).
    pub http_tls: Option<(Vec<u8>, Vec<u8>)>,
    /// Where to serve `/metrics` over HTTPS, with the ingress's
    /// certificate (default: not served).
    pub metrics_listen: Option<SocketAddr>,
}

/// What `node.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct NodeIdentity {
    node_id: String,
    node_tag: u32,
    head: String,
    heartbeat_interval_ms: u64,
}

fn state_error(path: &Path, e: impl std::fmt::Display) -> NetError {
    NetError::State(format!("{}: {e}", path.display()))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), NetError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| state_error(path, e))?;
    file.write_all(bytes).map_err(|e| state_error(path, e))?;
    file.sync_all().map_err(|e| state_error(path, e))
}

fn endpoint(url: &str) -> Result<Endpoint, NetError> {
    Endpoint::from_shared(url.to_string())
        .map_err(|e| NetError::Transport(format!("bad head address {url:?}: {e}")))
        .map(|e| {
            e.connect_timeout(Duration::from_secs(5))
                .initial_stream_window_size(super::STREAM_WINDOW)
                .initial_connection_window_size(super::CONNECTION_WINDOW)
                .http2_keep_alive_interval(super::peers::KEEPALIVE_INTERVAL)
                .keep_alive_timeout(super::peers::KEEPALIVE_TIMEOUT)
                .keep_alive_while_idle(true)
        })
}

/// The head's `NodeControl` service as a node's [`HeadService`].
struct RemoteHead {
    client: NodeControlClient<Channel>,
}

impl HeadService for RemoteHead {
    fn module(&self, hash: ModuleHash) -> BoxFuture<'static, Result<Bytes, ClusterError>> {
        let mut client = self.client.clone();
        Box::pin(async move {
            client
                .get_module(pb::ModuleRequest {
                    hash: format!("{hash:?}"),
                })
                .await
                .map(|r| Bytes::from(r.into_inner().wasm))
                .map_err(|_| ClusterError::ModuleNotFound(hash))
        })
    }

    fn job_finished(&self, outcome: JobOutcome) -> BoxFuture<'static, ()> {
        // Drivers run on the head's node only.
        tracing::warn!(job = %outcome.id, "a worker node ran a driver; its outcome is dropped");
        Box::pin(async {})
    }
}

/// The head's directory of actor names, over `NodeControl`.
struct RemoteDirectory {
    client: NodeControlClient<Channel>,
}

fn named(reply: pb::ActorNameReply) -> Option<(ActorId, String)> {
    let id = <[u8; 16]>::try_from(reply.actor_id.as_slice()).ok()?;
    Some((ActorId::from_bytes(id), reply.class))
}

impl ActorDirectory for RemoteDirectory {
    fn claim(
        &self,
        namespace: &str,
        name: &str,
        id: ActorId,
        class: &str,
        detached: bool,
    ) -> BoxFuture<'static, Result<NameClaim, DirectoryError>> {
        let mut client = self.client.clone();
        let request = pb::ClaimActorNameRequest {
            namespace: namespace.to_string(),
            name: name.to_string(),
            actor_id: id.as_bytes().to_vec(),
            class: class.to_string(),
            detached,
        };
        Box::pin(async move {
            let reply = client
                .claim_actor_name(request)
                .await
                .map_err(|s| DirectoryError::Head(s.message().to_string()))?
                .into_inner();
            if reply.claimed {
                return Ok(NameClaim::Claimed);
            }
            let (id, class) = named(reply).ok_or(DirectoryError::NoHolder)?;
            Ok(NameClaim::Existing { id, class })
        })
    }

    fn lookup(&self, namespace: &str, name: &str) -> BoxFuture<'static, Option<(ActorId, String)>> {
        let mut client = self.client.clone();
        let request = pb::LookupActorNameRequest {
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        Box::pin(async move {
            let reply = client.lookup_actor_name(request).await.ok()?.into_inner();
            named(reply)
        })
    }

    fn record_move(&self, old: ActorId, new: ActorId) {
        let mut client = self.client.clone();
        let request = pb::ActorMovedRequest {
            actor_id: old.as_bytes().to_vec(),
            new_id: new.as_bytes().to_vec(),
        };
        tokio::spawn(async move {
            if let Err(status) = client.actor_moved(request).await {
                tracing::warn!(
                    "could not record a restarted actor at the head: {}",
                    status.message()
                );
            }
        });
    }

    fn resolve_move(&self, id: ActorId) -> BoxFuture<'static, Option<ActorId>> {
        let mut client = self.client.clone();
        let request = pb::ActorMovedRequest {
            actor_id: id.as_bytes().to_vec(),
            new_id: Vec::new(),
        };
        Box::pin(async move {
            let reply = client.find_moved_actor(request).await.ok()?.into_inner();
            <[u8; 16]>::try_from(reply.new_id.as_slice())
                .ok()
                .map(ActorId::from_bytes)
        })
    }

    fn release(&self, namespace: &str, name: &str, id: ActorId) {
        self.send_release(pb::ReleaseActorNameRequest {
            namespace: namespace.to_string(),
            name: name.to_string(),
            actor_id: id.as_bytes().to_vec(),
            tenant: String::new(),
        });
    }

    fn release_actor(&self, tenant: &crate::security::tenants::TenantId, id: ActorId) {
        self.send_release(pb::ReleaseActorNameRequest {
            actor_id: id.as_bytes().to_vec(),
            tenant: tenant.to_string(),
            ..Default::default()
        });
    }
}

impl RemoteDirectory {
    fn send_release(&self, request: pb::ReleaseActorNameRequest) {
        let mut client = self.client.clone();
        tokio::spawn(async move {
            if let Err(status) = client.release_actor_name(request).await {
                tracing::warn!(
                    "could not free an actor name at the head: {}",
                    status.message()
                );
            }
        });
    }
}

/// The head's served applications, over `NodeControl`.
struct RemoteDeployments {
    client: NodeControlClient<Channel>,
}

impl crate::cluster::DeploymentCalls for RemoteDeployments {
    fn call_deployment(
        &self,
        tenant: &crate::security::tenants::TenantId,
        app: &str,
        deployment: &str,
        call: crate::cluster::DeploymentCall,
    ) -> BoxFuture<'static, Result<Bytes, prism_abi::WireError>> {
        let mut client = self.client.clone();
        let mut request = pb::CallDeploymentRequest {
            tenant: tenant.to_string(),
            app: app.to_string(),
            deployment: deployment.to_string(),
            ..Default::default()
        };
        match call {
            crate::cluster::DeploymentCall::Request(bytes) => request.request = bytes.to_vec(),
            crate::cluster::DeploymentCall::Method { method, args } => {
                request.method = method;
                request.args = args.into_iter().map(|a| a.to_vec()).collect();
            }
        }
        Box::pin(async move {
            let reply = client
                .call_deployment(request)
                .await
                .map_err(|status| super::unreachable(super::HEAD_NODE_ID, &status))?
                .into_inner();
            super::peers::reply_outcome(reply.outcome, super::HEAD_NODE_ID)
        })
    }
}

/// The head's named objects, over `NodeControl`.
struct RemoteNamed {
    client: NodeControlClient<Channel>,
}

fn head_failed(status: tonic::Status) -> NamedError {
    NamedError::Head(status.message().to_string())
}

impl NamedStore for RemoteNamed {
    fn put(
        &self,
        ns: &str,
        name: &str,
        value: Bytes,
        tier: Tier,
    ) -> BoxFuture<'static, Result<(), NamedError>> {
        let mut client = self.client.clone();
        let request = pb::NamedPutRequest {
            namespace: ns.to_string(),
            name: name.to_string(),
            value: value.to_vec(),
            durable: tier == Tier::Durable,
        };
        Box::pin(async move {
            client.named_put(request).await.map_err(head_failed)?;
            Ok(())
        })
    }

    fn get(&self, ns: &str, name: &str) -> BoxFuture<'static, Result<Option<Bytes>, NamedError>> {
        let mut client = self.client.clone();
        let request = pb::NamedRequest {
            namespace: ns.to_string(),
            name: name.to_string(),
        };
        Box::pin(async move {
            let reply = client
                .named_get(request)
                .await
                .map_err(head_failed)?
                .into_inner();
            Ok(reply.found.then(|| Bytes::from(reply.value)))
        })
    }

    fn delete(&self, ns: &str, name: &str) -> BoxFuture<'static, Result<bool, NamedError>> {
        let mut client = self.client.clone();
        let request = pb::NamedRequest {
            namespace: ns.to_string(),
            name: name.to_string(),
        };
        Box::pin(async move {
            Ok(client
                .named_delete(request)
                .await
                .map_err(head_failed)?
                .into_inner()
                .found)
        })
    }

    fn list(&self, ns: &str, prefix: &str) -> BoxFuture<'static, Result<Vec<String>, NamedError>> {
        let mut client = self.client.clone();
        let request = pb::NamedRequest {
            namespace: ns.to_string(),
            name: prefix.to_string(),
        };
        Box::pin(async move {
            Ok(client
                .named_list(request)
                .await
                .map_err(head_failed)?
                .into_inner()
                .names)
        })
    }
}

/// Joins (first start) or rejoins the cluster and runs the worker until
/// `shutdown` resolves. Calls `ready` with the node id and the address it
/// serves on.
pub async fn run_worker(
    options: WorkerOptions,
    ready: impl FnOnce(&str, SocketAddr, Option<SocketAddr>, Option<SocketAddr>),
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), NetError> {
    std::fs::create_dir_all(&options.dir).map_err(|e| state_error(&options.dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&options.dir, std::fs::Permissions::from_mode(0o700));
    }
    let paths = (
        options.dir.join("node.json"),
        options.dir.join("node.pem"),
        options.dir.join("node.key"),
        options.dir.join("ca.pem"),
    );
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| NetError::Transport(format!("cannot listen on {}: {e}", options.listen)))?;
    let bound = listener
        .local_addr()
        .map_err(|e| NetError::Transport(e.to_string()))?;
    let advertise = match &options.advertise {
        Some(a) => a.clone(),
        None if bound.ip().is_unspecified() => {
            return Err(NetError::State(format!(
                "listening on {bound}: say where other nodes reach this one with --advertise HOST:PORT"
            )));
        }
        None => bound.to_string(),
    };

    let identity = if paths.0.exists() {
        let bytes = std::fs::read(&paths.0).map_err(|e| state_error(&paths.0, e))?;
        serde_json::from_slice::<NodeIdentity>(&bytes).map_err(|e| state_error(&paths.0, e))?
    } else {
        let ca_pem = options.ca_pem.clone().ok_or_else(|| {
            NetError::State("the first start of a node needs the cluster CA (--ca)".into())
        })?;
        let token = options.join_token.clone().ok_or_else(|| {
            NetError::State(
                "the first start of a node needs a join token (--join-token or PRISM_JOIN_TOKEN; \
                 make one with `prism node join-token`)"
                    .into(),
            )
        })?;
        let (key_pem, csr_pem) = crate::security::node_key_and_request()?;
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca_pem));
        let channel = endpoint(&options.head)?
            .tls_config(tls)
            .map_err(|e| NetError::Transport(e.to_string()))?
            .connect()
            .await
            .map_err(|e| NetError::Transport(format!("cannot reach the head: {e}")))?;
        let reply = NodeControlClient::new(channel)
            .join(pb::JoinRequest {
                join_token: token,
                csr_pem,
                advertise: advertise.clone(),
                total: Some(resources_to_proto(&total_of(&options.node)?)),
            })
            .await?
            .into_inner();
        write_private(&paths.3, &ca_pem)?;
        write_private(&paths.2, key_pem.as_bytes())?;
        write_private(&paths.1, reply.cert_pem.as_bytes())?;
        let identity = NodeIdentity {
            node_id: reply.node_id,
            node_tag: reply.node_tag,
            head: options.head.clone(),
            heartbeat_interval_ms: reply.heartbeat_interval_ms.max(50),
        };
        let json = serde_json::to_vec_pretty(&identity).map_err(|e| state_error(&paths.0, e))?;
        write_private(&paths.0, &json)?;
        identity
    };
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| state_error(p, e));
    let credentials = NodeCredentials {
        ca_pem: read(&paths.3)?,
        cert_pem: read(&paths.1)?,
        key_pem: read(&paths.2)?,
    };

    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&credentials.ca_pem))
        .identity(Identity::from_pem(
            &credentials.cert_pem,
            &credentials.key_pem,
        ));
    let head_channel = endpoint(&identity.head)?
        .tls_config(tls)
        .map_err(|e| NetError::Transport(e.to_string()))?
        .connect_lazy();
    let control = NodeControlClient::new(head_channel)
        .max_decoding_message_size(MAX_NODE_MESSAGE)
        .max_encoding_message_size(MAX_NODE_MESSAGE);
    let mut config = options.node.clone();
    if config.data_dir.is_none() {
        config.data_dir = Some(options.dir.join("data"));
    }
    // Every id this node mints says it lives here.
    let mut peers = None;
    let node = Node::start(
        config,
        Arc::new(RemoteHead {
            client: control.clone(),
        }),
        identity.node_tag,
        |node, objects| {
            let home: std::sync::Weak<dyn HomeNode> = node.clone();
            let made = Peers::new(
                &identity.node_id,
                identity.node_tag,
                home,
                objects.clone(),
                credentials.clone(),
            );
            peers = Some(made.clone());
            NodeLinks {
                placement: super::placement::RemotePlacement::new(control.clone()),
                cluster: Some(ClusterLinks {
                    peers: made,
                    directory: Arc::new(RemoteDirectory {
                        client: control.clone(),
                    }),
                    named: Some(Arc::new(RemoteNamed {
                        client: control.clone(),
                    })),
                }),
            }
        },
    )?;
    let peers = peers.ok_or_else(|| NetError::State("the node did not start".into()))?;
    // Guests here call served deployments through the head.
    node.route_deployment_calls(Arc::new(RemoteDeployments {
        client: control.clone(),
    }));
    if options.node.gpu.enabled {
        // Other nodes place GPU tasks here only once the GPUs are offered.
        let found = node.clone();
        let _ = tokio::task::spawn_blocking(move || found.gpu_adapters()).await;
    }

    let server = Server::builder()
        .initial_stream_window_size(super::STREAM_WINDOW)
        .initial_connection_window_size(super::CONNECTION_WINDOW)
        .tls_config(
            ServerTlsConfig::new()
                .identity(Identity::from_pem(
                    &credentials.cert_pem,
                    &credentials.key_pem,
                ))
                .client_ca_root(Certificate::from_pem(&credentials.ca_pem)),
        )
        .map_err(|e| NetError::Transport(e.to_string()))?
        .tcp_nodelay(true)
        .add_service(
            WorkerServer::new(WorkerService::new(node.clone()))
                .max_decoding_message_size(MAX_NODE_MESSAGE)
                .max_encoding_message_size(MAX_NODE_MESSAGE),
        );
    // The certificate of the ingress and `/metrics`: --http-cert, or the
    // node's own.
    let https_tls = || {
        let own = (
            credentials.cert_pem.as_slice(),
            credentials.key_pem.as_slice(),
        );
        crate::serve::Ingress::tls_or(options.http_tls.as_ref(), own)
            .map_err(|e| NetError::State(e.to_string()))
    };
    // The node's own HTTPS ingress, routing to replicas on any node.
    let http = match options.http_listen {
        Some(http_listen) => {
            let listener = tokio::net::TcpListener::bind(http_listen)
                .await
                .map_err(|e| NetError::Transport(format!("cannot listen on {http_listen}: {e}")))?;
            let bound = listener
                .local_addr()
                .map_err(|e| NetError::Transport(e.to_string()))?;
            let tls = https_tls()?;
            let mirror = crate::serve::Mirror::new(node.clone());
            let sync = tokio::spawn(super::serving::sync_served_apps(
                control.clone(),
                mirror.clone(),
            ));
            let gate = super::serving::RemoteGate::new(control.clone());
            let ingress = crate::serve::Ingress::with_body_budget(
                crate::serve::Routes::Node(mirror.clone()),
                Some(gate),
                crate::serve::MAX_BUFFERED_BODY_BYTES,
            );
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(ingress.serve(listener, tls, async move {
                let _ = stop_rx.await;
            }));
            Some((bound, mirror, sync, stop_tx))
        }
        None => None,
    };
    // `/metrics`, answering tokens through the head.
    let metrics = match options.metrics_listen {
        Some(listen) => {
            let tls = https_tls()?;
            let gauges: Arc<dyn crate::metrics::GaugeSource> = node.clone();
            let endpoint = crate::metrics::http::MetricsEndpoint::new(
                node.metrics().clone(),
                gauges,
                Arc::new(super::metrics::RemoteMetricsGate::new(control.clone())),
            );
            let started = endpoint
                .start(listen, tls)
                .await
                .map_err(|e| NetError::Transport(format!("cannot listen on {listen}: {e}")))?;
            Some(started)
        }
        None => None,
    };
    let leave_client = control.clone();
    let beat = tokio::spawn(heartbeat(
        control,
        node.clone(),
        peers,
        identity.node_id.clone(),
        advertise.clone(),
        Duration::from_millis(identity.heartbeat_interval_ms),
    ));
    ready(
        &identity.node_id,
        bound,
        http.as_ref().map(|h| h.0),
        metrics.as_ref().map(|m| m.0),
    );
    // On shutdown: stop beating, tell the head this node leaves (so its
    // tasks move now rather than after the node timeout), then let calls
    // in flight finish within the grace.
    let (begun_tx, begun_rx) = tokio::sync::oneshot::channel::<()>();
    let beat_handle = beat.abort_handle();
    let node_id = identity.node_id.clone();
    let leaving = async move {
        shutdown.await;
        let _ = begun_tx.send(());
        beat_handle.abort();
        let mut client = leave_client;
        let request = pb::LeaveRequest { node_id };
        match tokio::time::timeout(Duration::from_secs(5), client.leave(request)).await {
            Ok(Ok(_)) => tracing::info!("left the cluster"),
            Ok(Err(e)) => tracing::warn!("could not tell the head this node leaves: {e}"),
            Err(_) => tracing::warn!("the head did not answer the leave in time"),
        }
    };
    let served = crate::net::serve_with_grace(
        server.serve_with_incoming_shutdown(
            // A listener of our own gets no socket options from the
            // builder: without TCP_NODELAY a small reply can wait 40 ms
            // for the peer's delayed ACK.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            leaving,
        ),
        begun_rx,
        options.shutdown_grace,
    )
    .await;
    beat.abort();
    if let Some((_, mirror, sync, stop)) = http {
        let _ = stop.send(());
        sync.abort();
        mirror.stop_all();
    }
    node.actors().kill_all();
    served.map_err(|e| NetError::Transport(e.to_string()))
}

fn total_of(config: &NodeConfig) -> Result<crate::scheduler::resources::ResourceSet, NetError> {
    crate::scheduler::resources::ResourceSet::new(config.cpus, config.memory, &config.resources)
        .map_err(|e| NetError::State(e.to_string()))
}

/// Reports to the head every `interval` and takes its view in return.
async fn heartbeat(
    mut control: NodeControlClient<Channel>,
    node: Arc<Node>,
    peers: Arc<Peers>,
    node_id: String,
    address: String,
    interval: Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        let scheduler = node.scheduler();
        let stats = scheduler.stats();
        let store = node.objects().stats();
        let gpus = if node.gpus_found() {
            node.gpu_adapters()
                .iter()
                .map(|g| format!("{}: {} ({}, {})", g.index, g.name, g.backend, g.device_type))
                .collect()
        } else {
            Vec::new()
        };
        let beat = pb::HeartbeatRequest {
            node_id: node_id.clone(),
            total: Some(resources_to_proto(&scheduler.total())),
            available: Some(resources_to_proto(&scheduler.available())),
            pending_tasks: stats.pending as u64,
            running_tasks: stats.running as u64,
            executed_tasks: stats.executed,
            gpus,
            store_objects: store.objects,
            store_bytes: store.bytes_in_memory + store.bytes_spilled,
            address: address.clone(),
            usage: super::usage_to_proto(&node.tenant_usage()),
        };
        let call = tokio::time::timeout(
            interval.max(Duration::from_secs(2)),
            control.heartbeat(beat),
        );
        match call.await {
            Ok(Ok(view)) => {
                if failing {
                    tracing::info!("the head answers heartbeats again");
                    failing = false;
                }
                let view = view.into_inner();
                node.set_usage_elsewhere(super::usage_from_proto(&view.usage_elsewhere));
                peers.update(&view);
            }
            Ok(Err(status)) => {
                if !failing {
                    tracing::warn!("heartbeat refused: {}", status.message());
                    failing = true;
                }
            }
            Err(_) => {
                if !failing {
                    tracing::warn!("heartbeat timed out; the head may be down");
                    failing = true;
                }
            }
        }
    }
}
