//! The head's API: gRPC (tonic) over TLS only, every call authenticated
//! with a bearer token (see `docs/api.md` and `proto/prism/v1/prism.proto`).
//!
//! [`serve`] starts an embedded cluster (head and one node in this process)
//! and serves the `Jobs`, `Admin` and `Cluster` services on it. Each
//! request passes [`Access`] first: the token's signature, expiry, issuer,
//! audience, revocation and tenant are checked, the tenant's Cedar
//! policies decide the action, and every decision is logged (`audit`
//! target). Everything a request names is looked up in the caller's
//! tenant only: another tenant's job, module or actor is not found.

mod admin;
mod history;
mod jobs;
mod records;
mod serve;

pub use admin::{DEFAULT_TOKEN_TTL, MAX_TOKEN_TTL};
pub use history::JobLimits;
pub use records::{MAX_ARGS_JSON_BYTES, MAX_ERROR_MESSAGE_BYTES, MAX_RESULT_JSON_BYTES};
use serve::Verified;
pub use serve::serve;

use crate::sync::MutexExt;
use history::JobHistory;
use records::{JobDetails, JobMeta, StoredJob};

use crate::cluster::{EmbeddedCluster, JobOutcome, JobStatus};
use crate::config::NodeConfig;
use crate::ids::JobId;
use crate::meta::{HeadStore, MetaError};
use crate::net::HEAD_NODE_ID;
use crate::net::registry::Registry;
use crate::security::{
    Access, AccessError, Action, Claims, PolicyError, Resource, Role, SecurityError, TenancyError,
};
use prism_proto::v1::cluster_server::Cluster;
use prism_proto::v1::{
    JobInfo, JobResult, JobState, LogLine, NodeInfo, StatusReply, StatusRequest,
};
use prism_proto::v1::{JoinTokenReply, JoinTokenRequest};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// Lifetime of a join token when the request names none (1 hour).
pub const DEFAULT_JOIN_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// How the head runs: where it listens and how it watches its nodes.
#[derive(Clone, Debug)]
pub struct HeadOptions {
    /// Where to serve (default 127.0.0.1:7443).
    pub listen: SocketAddr,
    /// Where nodes reach the head (default: the bound address).
    pub advertise: Option<String>,
    /// How often worker nodes report (default 1 s).
    pub heartbeat_interval: std::time::Duration,
    /// Silence after which a node is declared dead (default 10 s).
    pub node_timeout: std::time::Duration,
    /// The head's own node.
    pub node: NodeConfig,
    /// Where every authorization decision is appended, one JSON object
    /// per line (default: `<state-dir>/audit.log`).
    pub audit_log: Option<std::path::PathBuf>,
    /// After the shutdown signal, how long calls in flight (result waits,
    /// log streams) may take before the head exits anyway (default 10 s).
    pub shutdown_grace: std::time::Duration,
    /// Per-tenant bounds on live and ended jobs (see [`JobLimits`]).
    pub job_limits: JobLimits,
}

impl HeadOptions {
    /// The defaults, serving on `listen` with `node`.
    pub fn new(listen: SocketAddr, node: NodeConfig) -> Self {
        HeadOptions {
            listen,
            advertise: None,
            heartbeat_interval: std::time::Duration::from_secs(1),
            node_timeout: std::time::Duration::from_secs(10),
            node,
            audit_log: None,
            shutdown_grace: std::time::Duration::from_secs(10),
            job_limits: JobLimits::default(),
        }
    }
}

/// Largest module accepted by `UploadModule` (64 MiB).
pub const MAX_MODULE_BYTES: usize = 64 << 20;

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The state directory is not a cluster's (run `prism init`).
    #[error(transparent)]
    Security(#[from] SecurityError),
    /// The embedded node could not start.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
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
    access: Access,
    /// Held while a submission is admitted (quota check to record).
    admission: tokio::sync::Mutex<()>,
    /// Jobs that have not ended.
    jobs: Mutex<HashMap<JobId, JobMeta>>,
    /// The records of ended jobs, of this run of the head and earlier
    /// ones; their results and log tails are in `head.redb` only.
    ended: Mutex<HashMap<JobId, JobInfo>>,
    /// The ended jobs per tenant, oldest first, and the bounds on them.
    history: Mutex<JobHistory>,
    job_limits: JobLimits,
    store: Arc<HeadStore>,
    /// Where each job's whole log is written (`<state>/logs`).
    log_dir: std::path::PathBuf,
    registry: Arc<Registry>,
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
        let live = self
            .lock()
            .get(&id)
            .map(|meta| (meta.tenant.clone(), meta.namespace.clone()));
        let scope = live.or_else(|| {
            self.ended_lock().get(&id).map(|info| {
                let tenant = if info.tenant.is_empty() {
                    crate::security::DEFAULT_TENANT.to_string()
                } else {
                    info.tenant.clone()
                };
                (tenant, info.namespace.clone())
            })
        });
        match scope {
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

    /// Jobs of `tenant` that have not ended.
    fn running_jobs(&self, tenant: &str) -> u64 {
        let ids: Vec<JobId> = self
            .lock()
            .iter()
            .filter(|(_, m)| m.tenant == tenant)
            .map(|(id, _)| *id)
            .collect();
        let head = self.cluster.head();
        ids.into_iter()
            .filter(|id| {
                matches!(
                    head.job_status(*id),
                    Some(JobStatus::Pending | JobStatus::Running)
                )
            })
            .count() as u64
    }

    fn parse_job(id: &str) -> Result<JobId, Status> {
        JobId::parse(id).ok_or_else(|| Status::invalid_argument(format!("malformed job id {id:?}")))
    }

    /// Writes the record of a job just submitted to `head.redb`.
    fn persist_submitted(&self, id: JobId) {
        if let Some(info) = self.info(id) {
            self.write_record(id, &info, 0);
        }
    }

    fn write_record(&self, id: JobId, info: &JobInfo, disk_bytes: u64) {
        let record = StoredJob {
            info: info.clone(),
            value_json: String::new(),
            logs: Vec::new(),
            disk_bytes,
        };
        match serde_json::to_vec(&record) {
            Ok(bytes) => {
                if let Err(e) = self.store.put_job(&id.to_string(), &bytes) {
                    tracing::error!("could not record {id} in head.redb: {e}");
                }
            }
            Err(e) => tracing::error!("could not encode the record of {id}: {e}"),
        }
    }

    /// Records a job's end: its details and final record go to
    /// `head.redb`, its record stays in memory, and the head forgets its
    /// outcome (result and log tail).
    fn finish(&self, id: JobId, outcome: &JobOutcome) {
        let Some(info) = self.info(id) else { return };
        let (value_json, too_large) = match &outcome.result {
            Ok(bytes) => match records::result_json(bytes) {
                Ok(Some(text)) => (text, false),
                Ok(None) => (String::new(), true),
                Err(e) => {
                    tracing::warn!("the result of {id}: {}", e.message());
                    (String::new(), false)
                }
            },
            Err(_) => (String::new(), false),
        };
        let details = JobDetails {
            value_json,
            too_large,
            logs: outcome
                .logs
                .iter()
                .map(|l| {
                    (
                        l.function.clone(),
                        l.source.as_str().to_string(),
                        l.text.clone(),
                    )
                })
                .collect(),
        };
        let mut disk_bytes = self.log_file_bytes(id);
        match serde_json::to_vec(&details) {
            Ok(bytes) => {
                disk_bytes += bytes.len() as u64;
                if let Err(e) = self.store.put_job_details(&id.to_string(), &bytes) {
                    tracing::error!("could not record the result of {id} in head.redb: {e}");
                }
            }
            Err(e) => tracing::error!("could not encode the result of {id}: {e}"),
        }
        self.write_record(id, &info, disk_bytes);
        let tenant = info.tenant.clone();
        // Ended before it stops being live, so a reader finds it in one
        // of the two tables at every moment.
        self.ended_lock().insert(id, info);
        self.lock().remove(&id);
        self.cluster.head().forget_job(id);
        let forget = self.history.locked().ended(&tenant, id, disk_bytes);
        self.forget_ended(&forget);
    }

    /// The size of job `id`'s log file (0 if it has none).
    fn log_file_bytes(&self, id: JobId) -> u64 {
        std::fs::metadata(self.log_dir.join(format!("{id}.log"))).map_or(0, |m| m.len())
    }

    /// Forgets ended jobs past their tenant's history: record, details
    /// and log file. A client asking for one is told there is no such job.
    fn forget_ended(&self, ids: &[JobId]) {
        for id in ids {
            self.ended_lock().remove(id);
            if let Err(e) = self.store.delete_job(&id.to_string()) {
                tracing::error!("could not forget {id} in head.redb: {e}");
            }
            let path = self.log_dir.join(format!("{id}.log"));
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::error!("could not remove {}: {e}", path.display());
            }
        }
        if !ids.is_empty() {
            tracing::debug!(jobs = ids.len(), "forgot ended jobs past the history bound");
        }
    }

    /// What an ended job left, from `head.redb`.
    fn details(&self, id: JobId) -> Result<JobDetails, Status> {
        let bytes = self
            .store
            .job_details(&id.to_string())
            .map_err(|e| Status::internal(format!("head.redb: {e}")))?;
        Ok(bytes
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default())
    }

    /// The log of an ended job: its whole log file, read as it is sent,
    /// or (without one) the tail its record kept.
    fn ended_logs(&self, id: JobId) -> Result<LogStream, Status> {
        let path = self.log_dir.join(format!("{id}.log"));
        if path.exists() {
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
        let lines: Vec<Result<LogLine, Status>> = self
            .details(id)?
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

    fn ended_lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, JobInfo>> {
        self.ended.locked()
    }

    fn meta_or_not_found(&self, id: JobId) -> Result<(), Status> {
        if self.lock().contains_key(&id) || self.ended_lock().contains_key(&id) {
            Ok(())
        } else {
            Err(Status::not_found(format!("no job {id}")))
        }
    }

    /// Stops every live job (the head is shutting down): each ends as
    /// stopped, recorded as such.
    async fn stop_all_jobs(&self) {
        let ids: Vec<JobId> = {
            let mut jobs = self.lock();
            for meta in jobs.values_mut() {
                meta.stop_requested = true;
            }
            jobs.keys().copied().collect()
        };
        if ids.is_empty() {
            return;
        }
        tracing::info!(jobs = ids.len(), "shutting down: stopping the running jobs");
        let head = self.cluster.head();
        for id in &ids {
            head.stop_job(*id).await;
        }
        for id in ids {
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(2), head.wait_job(id)).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, JobMeta>> {
        self.jobs.locked()
    }

    /// The job's record as the API shows it.
    fn info(&self, id: JobId) -> Option<JobInfo> {
        if let Some(info) = self.ended_lock().get(&id) {
            return Some(info.clone());
        }
        let head = self.cluster.head();
        let ended = || self.ended_lock().get(&id).cloned();
        let Some(status) = head.job_status(id) else {
            return ended();
        };
        let outcome = head.job_outcome(id);
        let jobs = self.lock();
        let Some(meta) = jobs.get(&id) else {
            drop(jobs);
            return ended();
        };
        let mut info = JobInfo {
            id: id.to_string(),
            state: JobState::Pending as i32,
            module_hash: format!("{:?}", meta.module),
            entry: meta.entry.clone(),
            namespace: meta.namespace.clone(),
            tenant: meta.tenant.clone(),
            submitted_by: meta.submitted_by.clone(),
            submitted_at_ms: meta.submitted_at_ms,
            ..Default::default()
        };
        let state = match (status, &outcome) {
            (JobStatus::Pending, _) => JobState::Pending,
            (JobStatus::Running, _) => JobState::Running,
            (JobStatus::Succeeded, _) => JobState::Succeeded,
            (JobStatus::Failed, Some(o))
                if meta.stop_requested
                    && matches!(&o.result, Err(e) if e.kind == prism_abi::ErrorKind::Cancelled) =>
            {
                JobState::Stopped
            }
            (JobStatus::Failed, _) => JobState::Failed,
        };
        info.state = state as i32;
        if let Some(o) = &outcome {
            info.ended_at_ms = meta.submitted_at_ms + o.duration.as_millis() as i64;
            if let Err(e) = &o.result {
                info.error_kind = e.kind.to_string();
                info.error_message = records::cut(&e.message, MAX_ERROR_MESSAGE_BYTES);
            }
        }
        Some(info)
    }

    fn result_of(&self, id: JobId, outcome: &JobOutcome) -> Result<JobResult, Status> {
        let job = self
            .info(id)
            .ok_or_else(|| Status::not_found(format!("no job {id}")))?;
        let value_json = match &outcome.result {
            Ok(bytes) => records::result_json(bytes)?.ok_or_else(records::too_large)?,
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
        nodes.extend(self.0.registry.statuses());
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
        let (token, expires_at) = self.0.registry.create_join_token(ttl)?;
        Ok(Response::new(JoinTokenReply {
            token,
            expires_at: expires_at as i64,
        }))
    }
}
