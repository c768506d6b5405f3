//! [`serve`]: binds the head's port, starts the head
//! ([`HeadProcess::start`]) and serves the API and the node services over
//! TLS until shutdown, with the bearer-token check that runs before any
//! request body is decoded.

use super::node_control::NodeControlService;
use super::{Api, ApiError, ApiHandle, MAX_MODULE_BYTES};
use crate::head::{HeadOptions, HeadProcess};
use crate::net::MAX_NODE_MESSAGE;
use crate::net::worker_service::WorkerService;
use crate::security::access::AuditLog;
use crate::security::{Access, Claims, ClusterFiles, Policies, Tenancy, TokenAuthority};
use prism_proto::v1::cluster_server::ClusterServer;
use prism_proto::v1::jobs_server::JobsServer;
use prism_proto::v1::node_control_server::NodeControlServer;
use prism_proto::v1::worker_server::WorkerServer;
use std::net::SocketAddr;
use std::sync::Arc;
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

/// Where a head process serves, once it does.
#[derive(Clone, Copy, Debug)]
pub struct HeadAddresses {
    /// The gRPC API (and node-to-node services).
    pub api: SocketAddr,
    /// The HTTPS ingress of served applications (`--http-listen`).
    pub http: Option<SocketAddr>,
    /// `/metrics` (`--metrics-listen`).
    pub metrics: Option<SocketAddr>,
    /// The web dashboard (`--dashboard-listen`).
    pub dashboard: Option<SocketAddr>,
}

/// Serves the API for the cluster in `state_dir` on `listen` (and served
/// applications, metrics and the dashboard where `options` say) until
/// `shutdown` resolves. Calls `ready` with the bound addresses once they
/// accept connections. Must run inside a multi-threaded tokio runtime.
pub async fn serve(
    state_dir: &std::path::Path,
    options: HeadOptions,
    ready: impl FnOnce(HeadAddresses),
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ApiError> {
    let files = ClusterFiles::new(state_dir);
    let authority = TokenAuthority::load(&files)?;
    let policies = Policies::new()?;
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
    let HeadProcess {
        cluster,
        membership,
        store,
        credentials,
    } = HeadProcess::start(state_dir, &options, &address)?;
    let head_node = cluster.node().clone();
    let apps = crate::serve::Apps::recorded_in(head_node.clone(), store.clone());
    let tenancy = Arc::new(Tenancy::load(store.clone())?);
    let audit_path = options
        .audit_log
        .clone()
        .unwrap_or_else(|| state_dir.join("audit.log"));
    let access = Arc::new(Access::new(
        authority,
        tenancy,
        policies,
        Some(
            AuditLog::open(&audit_path)
                .map_err(|e| ApiError::Transport(format!("{}: {e}", audit_path.display())))?,
        ),
    )?);
    // Who may call a route: the head's ingress and other nodes' (through
    // NodeControl) ask the same checks.
    let gate = crate::serve::HeadGate::new(access.clone());
    // The certificate of the HTTPS ingress and `/metrics`: --http-cert,
    // or the head's.
    let https_tls = || {
        let own = (
            credentials.cert_pem.as_slice(),
            credentials.key_pem.as_slice(),
        );
        crate::serve::Ingress::tls_or(options.http_tls.as_ref(), own)
            .map_err(|e| ApiError::Transport(e.to_string()))
    };
    // The HTTPS ingress of served applications.
    let (http_bound, ingress_stop) = match options.http_listen {
        Some(http_listen) => {
            let listener = tokio::net::TcpListener::bind(http_listen)
                .await
                .map_err(|e| ApiError::Transport(format!("cannot listen on {http_listen}: {e}")))?;
            let bound = listener
                .local_addr()
                .map_err(|e| ApiError::Transport(e.to_string()))?;
            let tls = https_tls()?;
            let ingress = crate::serve::Ingress::with_body_budget(
                crate::serve::Routes::Head(apps.clone()),
                Some(gate.clone()),
                crate::serve::MAX_BUFFERED_BODY_BYTES,
            );
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(ingress.serve(listener, tls, async move {
                let _ = stop_rx.await;
            }));
            (Some(bound), Some(stop_tx))
        }
        None => (None, None),
    };
    // `/metrics`, with the ingress's certificate.
    let (metrics_bound, metrics_stop) = match options.metrics_listen {
        Some(listen) => {
            let tls = https_tls()?;
            let endpoint = crate::metrics::http::MetricsEndpoint::new(
                head_node.metrics().clone(),
                Arc::new(HeadGauges {
                    membership: membership.clone(),
                }),
                crate::metrics::http::HeadMetricsGate::new(gate.clone()),
            );
            let (bound, stop) = endpoint
                .start(listen, tls)
                .await
                .map_err(|e| ApiError::Transport(format!("cannot listen on {listen}: {e}")))?;
            (Some(bound), Some(stop))
        }
        None => (None, None),
    };
    // Durable workflows, logged in head.redb; their runs without a
    // caller get their starters' grants under the policies in force.
    let workflow_store = crate::workflow::WorkflowStore::in_head(store.clone())
        .map_err(|e| ApiError::Transport(format!("the workflow log: {e}")))?;
    let workflows = crate::workflow::Workflows::new(
        head_node.clone(),
        workflow_store,
        Arc::new(super::workflows::ApiGrants(access.clone())),
    );
    let api = ApiHandle(Arc::new(Api {
        cluster,
        access,
        apps: apps.clone(),
        workflows: Some(workflows.clone()),
        job_limits: options.job_limits,
        membership: membership.clone(),
        address,
    }));
    // The dashboard, with the ingress's certificate.
    let (dashboard_bound, dashboard_stop) = match options.dashboard_listen {
        Some(listen) => {
            let tls = https_tls()?;
            let (bound, stop) = crate::dashboard::Dashboard::new(api.clone())
                .start(listen, tls)
                .await
                .map_err(|e| ApiError::Transport(format!("cannot listen on {listen}: {e}")))?;
            (Some(bound), Some(stop))
        }
        None => (None, None),
    };
    // Workflows that were running when the head stopped resume; the
    // schedules fire.
    tokio::spawn({
        let workflows = workflows.clone();
        async move {
            workflows.recover().await;
            workflows.start_scheduler();
        }
    });
    // The applications deployed before the head stopped come back.
    tokio::spawn({
        let api = api.0.clone();
        async move { api.restore_apps().await }
    });
    let identity = Identity::from_pem(&credentials.cert_pem, &credentials.key_pem);
    // Clients authenticate with tokens, nodes with certificates from the
    // cluster CA: a certificate is optional on this port, but one that is
    // presented must verify, and node calls check that there was one.
    let tls = ServerTlsConfig::new()
        .identity(identity)
        .client_ca_root(Certificate::from_pem(&credentials.ca_pem))
        .client_auth_optional(true);
    let check = TokenCheck(api.0.clone());
    let stopping = api.0.clone();
    let metered = super::metered::layer(head_node.metrics().clone());
    let server = Server::builder()
        .initial_stream_window_size(crate::net::STREAM_WINDOW)
        .initial_connection_window_size(crate::net::CONNECTION_WINDOW)
        .tls_config(tls)
        .map_err(|e| ApiError::Transport(e.to_string()))?
        .tcp_nodelay(true)
        .layer(metered)
        .add_service(tonic::service::interceptor::InterceptedService::new(
            JobsServer::new(api.clone()).max_decoding_message_size(MAX_MODULE_BYTES),
            check.clone(),
        ))
        .add_service(ClusterServer::with_interceptor(api.clone(), check.clone()))
        .add_service(
            prism_proto::v1::serve_server::ServeServer::with_interceptor(
                api.clone(),
                check.clone(),
            ),
        )
        .add_service(
            prism_proto::v1::workflows_server::WorkflowsServer::with_interceptor(
                api.clone(),
                check.clone(),
            ),
        )
        .add_service(prism_proto::v1::admin_server::AdminServer::with_interceptor(api, check))
        // NodeControl takes Join from callers without a certificate, so
        // what it reads is bounded like the API (64 MiB); the Worker
        // service checks the certificate before it reads a message.
        .add_service(
            NodeControlServer::new(NodeControlService {
                membership,
                apps,
                gate,
            })
            .max_decoding_message_size(MAX_MODULE_BYTES)
            .max_encoding_message_size(MAX_NODE_MESSAGE),
        )
        .add_service(tonic::service::interceptor::InterceptedService::new(
            WorkerServer::new(WorkerService::new(head_node))
                .max_decoding_message_size(MAX_NODE_MESSAGE)
                .max_encoding_message_size(MAX_NODE_MESSAGE),
            require_node_certificate,
        ));
    ready(HeadAddresses {
        api: bound,
        http: http_bound,
        metrics: metrics_bound,
        dashboard: dashboard_bound,
    });
    // On shutdown: stop accepting, stop the running jobs (their records
    // end as stopped, and their waiters get answers), and give calls in
    // flight the grace, no more.
    let (begun_tx, begun_rx) = tokio::sync::oneshot::channel::<()>();
    let stop = async move {
        shutdown.await;
        let _ = begun_tx.send(());
        if let Some(stop) = ingress_stop {
            let _ = stop.send(());
        }
        drop(metrics_stop);
        drop(dashboard_stop);
        stopping.apps.stop_all().await;
        if let Some(workflows) = &stopping.workflows {
            workflows.stop_all();
        }
        stopping.cluster.head().stop_all_jobs().await;
    };
    crate::net::serve_with_grace(
        server.serve_with_incoming_shutdown(
            // A listener of our own gets no socket options from the
            // builder: without TCP_NODELAY a small reply can wait 40 ms
            // for the peer's delayed ACK.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            stop,
        ),
        begun_rx,
        options.shutdown_grace,
    )
    .await
    .map_err(|e| ApiError::Transport(e.to_string()))
}

/// The head's gauges: its node's, and the nodes alive.
struct HeadGauges {
    membership: Arc<crate::head::Membership>,
}

impl crate::metrics::GaugeSource for HeadGauges {
    fn gauges(&self) -> crate::metrics::NodeGauges {
        let mut gauges = self.membership.head_node().metric_gauges();
        gauges.nodes_alive = Some(self.membership.alive());
        gauges
    }
}
