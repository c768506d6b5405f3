//! The head's gRPC services: handlers only — authenticate, call the head
//! (`crate::head`), map its answer to a status. TLS only, every client call
//! authenticated with a bearer token (see `docs/api.md` and
//! `proto/prism/v1/prism.proto`).
//!
//! [`serve`] starts a head process (`head::HeadProcess`) and serves the
//! `Jobs`, `Admin` and `Cluster` services to clients and `NodeControl` and
//! `Worker` to nodes. Each client request passes [`Access`] first: the
//! token's signature, expiry, issuer, audience, revocation and tenant are
//! checked, the tenant's Cedar policies decide the action, and every
//! decision is logged (`audit` target). Everything a request names is
//! looked up in the caller's tenant only: another tenant's job, module or
//! actor is not found.
//!
//! Files: `mod.rs` (shared state, `Cluster`), `jobs.rs` (`Jobs`),
//! `apps.rs` (`Serve`: served applications), `admin.rs` (`Admin`), `node_control.rs` (`NodeControl`), `convert.rs`
//! (JSON in and out, the head's errors as statuses), `serve.rs`.

mod admin;
mod apps;
mod convert;
mod dashboard;
mod jobs;
mod metered;
mod node_control;
mod serve;
mod tasks;
mod workflows;

pub use crate::head::{HeadOptions, JobLimits, MAX_ERROR_MESSAGE_BYTES, MAX_RESULT_JSON_BYTES};
pub use admin::{DEFAULT_TOKEN_TTL, MAX_TOKEN_TTL};
pub use convert::MAX_ARGS_JSON_BYTES;
use serve::Verified;
pub use serve::{HeadAddresses, serve};

use crate::cluster::JobOutcome;
use crate::head::EmbeddedCluster;
use crate::head::Membership;
use crate::ids::JobId;
use crate::meta::MetaError;
use crate::net::HEAD_NODE_ID;
use crate::security::{
    Access, AccessError, Action, Claims, PolicyError, Resource, Role, SecurityError, TenancyError,
};
use prism_proto::v1::cluster_server::Cluster;
use prism_proto::v1::{JobInfo, JobResult, LogLine, NodeInfo, StatusReply, StatusRequest};
use prism_proto::v1::{JoinTokenReply, JoinTokenRequest};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// Lifetime of a join token when the request names none (1 hour).
pub const DEFAULT_JOIN_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Largest module accepted by `UploadModule` (64 MiB).
pub const MAX_MODULE_BYTES: usize = 64 << 20;

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The state directory is not a cluster's (run `prism init`).
    #[error(transparent)]
    Security(#[from] SecurityError),
    /// The head could not start.
    #[error(transparent)]
    Head(#[from] crate::head::HeadError),
    /// The head's metadata store (`head.redb`) failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// The tenancy records could not be loaded.
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
    /// The shipped policies did not load.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The listening socket or TLS setup failed.
    #[error("transport: {0}")]
    Transport(String),
}

/// An access refusal as a gRPC status.
fn refused(e: AccessError) -> Status {
    match e {
        AccessError::Unauthenticated(m) => Status::unauthenticated(m),
        AccessError::Denied(m) => Status::permission_denied(m),
        AccessError::NotFound(m) => Status::not_found(m),
    }
}

/// A tenancy failure as a gRPC status.
fn tenancy_status(e: TenancyError) -> Status {
    match e {
        TenancyError::NotFound(_) => Status::not_found(e.to_string()),
        TenancyError::Exists(_) => Status::already_exists(e.to_string()),
        TenancyError::Invalid(_) => Status::invalid_argument(e.to_string()),
        TenancyError::Precondition(_) => Status::failed_precondition(e.to_string()),
        TenancyError::Meta(_) => Status::internal(e.to_string()),
    }
}

/// The services' shared state.
pub struct Api {
    cluster: EmbeddedCluster,
    access: Arc<Access>,
    /// The served applications.
    apps: Arc<crate::serve::Apps>,
    /// Durable workflows (a head process runs them).
    workflows: Option<Arc<crate::workflow::Workflows>>,
    job_limits: JobLimits,
    membership: Arc<Membership>,
    /// Where the head's node is reached, for status output.
    address: String,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Api {
    /// Checks the request's bearer token (valid, not revoked, of a live
    /// tenant). Refusals go to the audit log.
    fn authenticate<T>(&self, request: &Request<T>, action: &str) -> Result<Claims, Status> {
        if let Some(Verified(claims)) = request.extensions().get::<Verified>() {
            return Ok(claims.clone());
        }
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        self.access.authenticate(token, action).map_err(refused)
    }

    /// Decides `action` on `resource` for `claims` (audited).
    fn authorize(
        &self,
        claims: &Claims,
        action: Action,
        resource: Resource<'_>,
    ) -> Result<(), Status> {
        self.access
            .authorize(claims, action, resource)
            .map_err(refused)
    }

    /// The tenant and namespace of a job the caller may see: its own
    /// tenant's (any, for a cluster-admin). Anything else is not found.
    fn job_scope(&self, claims: &Claims, id: JobId) -> Result<(String, String), Status> {
        match self.cluster.head().job_scope(id) {
            Some((tenant, namespace))
                if tenant == claims.tenant || claims.role == Role::ClusterAdmin =>
            {
                Ok((tenant, namespace))
            }
            _ => Err(Status::not_found(format!("no job {id}"))),
        }
    }

    /// Authenticates, finds the job in the caller's tenant and decides
    /// `action` on its namespace.
    fn job_access<T>(
        &self,
        request: &Request<T>,
        action: Action,
        id: &str,
    ) -> Result<JobId, Status> {
        let claims = self.authenticate(request, action.name())?;
        let id = Api::parse_job(id)?;
        let (tenant, namespace) = self.job_scope(&claims, id)?;
        self.authorize(
            &claims,
            action,
            Resource::Namespace {
                tenant: &tenant,
                name: &namespace,
            },
        )?;
        Ok(id)
    }

    fn parse_job(id: &str) -> Result<JobId, Status> {
        JobId::parse(id).ok_or_else(|| Status::invalid_argument(format!("malformed job id {id:?}")))
    }

    /// The log of an ended job: its whole log file, read as it is sent,
    /// or (without one) the tail its record kept.
    fn ended_logs(&self, id: JobId) -> Result<LogStream, Status> {
        let head = self.cluster.head();
        let path = head.archive().map(|a| a.log_file(id));
        if let Some(path) = path.filter(|p| p.exists()) {
            let (tx, rx) = tokio::sync::mpsc::channel(256);
            tokio::task::spawn_blocking(move || {
                use std::io::BufRead;
                let Ok(file) = std::fs::File::open(&path) else {
                    return;
                };
                for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
                    let Ok(l) = serde_json::from_str::<crate::cluster::job::LogLine>(&line) else {
                        continue;
                    };
                    let line = LogLine {
                        function: l.function,
                        source: l.source.as_str().to_string(),
                        text: l.text,
                    };
                    if tx.blocking_send(Ok(line)).is_err() {
                        return;
                    }
                }
            });
            return Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)));
        }
        let lines: Vec<Result<LogLine, Status>> = head
            .job_details(id)
            .map_err(convert::head_store)?
            .logs
            .into_iter()
            .map(|(function, source, text)| {
                Ok(LogLine {
                    function,
                    source,
                    text,
                })
            })
            .collect();
        Ok(Box::pin(tokio_stream::iter(lines)))
    }

    /// The job's record as the API shows it.
    fn info(&self, id: JobId) -> Option<JobInfo> {
        self.cluster.head().job_info(id)
    }

    fn result_of(&self, id: JobId, outcome: &JobOutcome) -> Result<JobResult, Status> {
        let job = self
            .info(id)
            .ok_or_else(|| Status::not_found(format!("no job {id}")))?;
        let value_json = match &outcome.result {
            Ok(bytes) => convert::result_json(bytes)?,
            Err(_) => String::new(),
        };
        Ok(JobResult {
            job: Some(job),
            value_json,
        })
    }
}

/// A shared [`Api`], for the generated service traits.
#[derive(Clone)]
pub struct ApiHandle(Arc<Api>);

type LogStream = Pin<Box<dyn Stream<Item = Result<LogLine, Status>> + Send>>;

#[tonic::async_trait]
impl Cluster for ApiHandle {
    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        // Any valid token may see the nodes (no tenant's data is shown).
        self.0.authenticate(&request, "ReadStatus")?;
        let mut nodes: Vec<NodeInfo> = self
            .0
            .cluster
            .head()
            .node_statuses()
            .await
            .into_iter()
            .map(|n| NodeInfo {
                total: n.total,
                available: n.available,
                running_tasks: n.scheduler.running as u64,
                pending_tasks: n.scheduler.pending as u64,
                gpus: n
                    .gpus
                    .iter()
                    .map(|g| format!("{}: {} ({}, {})", g.index, g.name, g.backend, g.device_type))
                    .collect(),
                node_id: HEAD_NODE_ID.to_string(),
                address: self.0.address.clone(),
                state: "alive".to_string(),
                executed_tasks: n.scheduler.executed,
                last_seen_ms: 0,
            })
            .collect();
        nodes.extend(self.0.membership.statuses());
        Ok(Response::new(StatusReply { nodes }))
    }

    async fn create_join_token(
        &self,
        request: Request<JoinTokenRequest>,
    ) -> Result<Response<JoinTokenReply>, Status> {
        let claims = self.0.authenticate(&request, "ManageCluster")?;
        self.0
            .authorize(&claims, Action::ManageCluster, Resource::Cluster)?;
        let ttl = match request.get_ref().ttl_secs {
            0 => DEFAULT_JOIN_TOKEN_TTL,
            secs => std::time::Duration::from_secs(secs),
        };
        let (token, expires_at) = self
            .0
            .membership
            .create_join_token(ttl)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(JoinTokenReply {
            token,
            expires_at: expires_at as i64,
        }))
    }
}
