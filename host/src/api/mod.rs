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
mod records;

pub use admin::{DEFAULT_TOKEN_TTL, MAX_TOKEN_TTL};
pub use history::JobLimits;
pub use records::{MAX_ARGS_JSON_BYTES, MAX_ERROR_MESSAGE_BYTES, MAX_RESULT_JSON_BYTES};

use crate::sync::MutexExt;
use history::JobHistory;
use records::{JobDetails, JobMeta, StoredJob, json_args};

use crate::cluster::placement::PlacementGroups;
use crate::cluster::{EmbeddedCluster, JobOutcome, JobStatus};
use crate::config::NodeConfig;
use crate::ids::{JobId, ModuleHash};
use crate::meta::{HeadStore, MetaError};
use crate::net::names::ActorNames;
use crate::net::peers::{NodeCredentials, Peers};
use crate::net::placement::ClusterHosts;
use crate::net::registry::{NodeControlService, Registry, RegistryConfig};
use crate::net::worker_service::WorkerService;
use crate::net::{HEAD_NODE_ID, HEAD_NODE_TAG, MAX_NODE_MESSAGE};
use crate::security::access::AuditLog;
use crate::security::tenants::scoped;
use crate::security::{
    Access, AccessError, Action, Claims, ClusterFiles, NodeAuthority, Policies, PolicyError,
    Resource, Role, SecurityError, Tenancy, TenancyError, TokenAuthority,
};
use bytes::Bytes;
use prism_proto::v1::cluster_server::{Cluster, ClusterServer};
use prism_proto::v1::jobs_server::{Jobs, JobsServer};
use prism_proto::v1::node_control_server::NodeControlServer;
use prism_proto::v1::worker_server::WorkerServer;
use prism_proto::v1::{
    JobInfo, JobRequest, JobResult, JobState, ListJobsReply, ListJobsRequest, LogLine, NodeInfo,
    ResultRequest, StatusReply, StatusRequest, SubmitJobRequest, UploadModuleReply,
    UploadModuleRequest,
};
use prism_proto::v1::{
    JoinTokenReply, JoinTokenRequest, NamedActorCallReply, NamedActorCallRequest,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio_stream::Stream;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
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
impl Jobs for ApiHandle {
    async fn upload_module(
        &self,
        request: Request<UploadModuleRequest>,
    ) -> Result<Response<UploadModuleReply>, Status> {
        let claims = self.0.authenticate(&request, "UploadModule")?;
        self.0.authorize(
            &claims,
            Action::UploadModule,
            Resource::Tenant(&claims.tenant),
        )?;
        let wasm = request.into_inner().wasm;
        if wasm.is_empty() {
            return Err(Status::invalid_argument("the module is empty"));
        }
        let hash = ModuleHash::of(&wasm);
        let head = self.0.cluster.head();
        let tenancy = self.0.access.tenancy();
        let key = format!("{hash:?}");
        // Whether *this tenant* uploaded it: telling a tenant that some
        // other tenant holds these bytes would leak what it runs.
        let existed = tenancy.has_module(&claims.tenant, &key);
        if !head.has_module(hash) {
            self.0
                .store
                .put_module(&format!("{hash:?}"), &wasm)
                .map_err(|e| Status::internal(format!("could not store the module: {e}")))?;
        }
        head.upload_module(Bytes::from(wasm));
        tenancy
            .add_module(&claims.tenant, &key)
            .map_err(tenancy_status)?;
        Ok(Response::new(UploadModuleReply {
            hash: format!("{hash:?}"),
            existed,
        }))
    }

    async fn submit_job(
        &self,
        request: Request<SubmitJobRequest>,
    ) -> Result<Response<JobInfo>, Status> {
        let claims = self.0.authenticate(&request, "SubmitJob")?;
        let r = request.into_inner();
        let tenant = self
            .0
            .access
            .acting_tenant(&claims, &r.tenant)
            .map_err(refused)?;
        let namespace = if r.namespace.is_empty() {
            crate::cluster::DEFAULT_NAMESPACE.to_string()
        } else {
            r.namespace
        };
        let namespace_record = self
            .0
            .access
            .namespace(&tenant, &namespace)
            .map_err(refused)?;
        self.0.authorize(
            &claims,
            Action::SubmitJob,
            Resource::Namespace {
                tenant: &tenant,
                name: &namespace,
            },
        )?;
        let mut env: Vec<(String, String)> = r.env.into_iter().collect();
        env.sort();
        crate::cluster::job::check_env(&env)
            .map_err(|e| Status::invalid_argument(format!("env: {e}")))?;
        if !env.is_empty() && !namespace_record.capabilities.env {
            return Err(Status::permission_denied(format!(
                "namespace {namespace} does not grant environment variables (capability env)"
            )));
        }
        let grant = self
            .0
            .access
            .job_grant(&claims, &tenant, &namespace_record)
            .map_err(refused)?;
        let job_quota = grant.quotas.jobs;
        let options = crate::cluster::JobOptions {
            env,
            driver: crate::cluster::DriverResources {
                num_cpus: r.num_cpus,
                num_gpus: (r.num_gpus > 0.0).then_some(r.num_gpus),
                memory: r.memory,
                resources: r.resources.into_iter().collect(),
            },
            grant: Arc::new(grant),
        };
        let module = ModuleHash::parse(&r.module_hash).ok_or_else(|| {
            Status::invalid_argument(format!("malformed module hash {:?}", r.module_hash))
        })?;
        let entry = if r.entry.is_empty() {
            "main".to_string()
        } else {
            r.entry
        };
        let head = self.0.cluster.head();
        let tenancy = self.0.access.tenancy();
        let key = format!("{module:?}");
        // A cluster-admin acting in another tenant may run what it
        // uploaded itself; the module is then that tenant's too.
        let owned = tenancy.has_module(&tenant, &key)
            || (tenant != claims.tenant && tenancy.has_module(&claims.tenant, &key));
        if !head.has_module(module) || !owned {
            return Err(Status::not_found(format!(
                "no module {module:?}; upload it first"
            )));
        }
        // Parsed only once the cheap checks passed; bounded in size.
        let args = json_args(&r.args_json)?;
        tenancy.add_module(&tenant, &key).map_err(tenancy_status)?;
        let submitted_at_ms = now_ms();
        let admission = self.0.admission.lock().await;
        // The head's own bound applies whatever the quota says.
        let live_bound = self.0.job_limits.live_per_tenant;
        let limit = job_quota.map_or(live_bound, |q| q.min(live_bound));
        let running = self.0.running_jobs(&tenant);
        if running >= limit {
            self.0.access.audit(serde_json::json!({
                "subject": claims.sub,
                "tenant": tenant,
                "action": "SubmitJob",
                "decision": "deny",
                "reason": format!("quota exceeded: {running} of {limit} jobs"),
            }));
            return Err(Status::resource_exhausted(format!(
                "quota exceeded: tenant {tenant} runs {running} of {limit} jobs"
            )));
        }
        let id = head
            .submit_job(module, &scoped(&tenant, &namespace), &entry, args, options)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        self.0.lock().insert(
            id,
            JobMeta {
                module,
                entry,
                tenant,
                namespace,
                submitted_by: claims.sub,
                submitted_at_ms,
                stop_requested: false,
            },
        );
        drop(admission);
        self.0.persist_submitted(id);
        let api = self.0.clone();
        tokio::spawn(async move {
            if let Ok(outcome) = api.cluster.head().wait_job(id).await {
                api.finish(id, &outcome);
            }
        });
        self.0
            .info(id)
            .map(Response::new)
            .ok_or_else(|| Status::internal("the job vanished"))
    }

    async fn get_job(&self, request: Request<JobRequest>) -> Result<Response<JobInfo>, Status> {
        let id = self
            .0
            .job_access(&request, Action::ReadJob, &request.get_ref().id)?;
        self.0
            .info(id)
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("no job {id}")))
    }

    async fn list_jobs(
        &self,
        request: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsReply>, Status> {
        let claims = self.0.authenticate(&request, "ReadJob")?;
        let mut ids: Vec<JobId> = self.0.lock().keys().copied().collect();
        ids.extend(self.0.ended_lock().keys().copied());
        // The caller's tenant's jobs, in namespaces it may read.
        let mut jobs: Vec<JobInfo> = ids
            .into_iter()
            .filter(|id| {
                self.0.job_scope(&claims, *id).is_ok_and(|(tenant, ns)| {
                    self.0
                        .access
                        .policies()
                        .decide(
                            crate::security::Principal {
                                subject: &claims.sub,
                                tenant: &claims.tenant,
                                role: claims.role,
                            },
                            Action::ReadJob,
                            Resource::Namespace {
                                tenant: &tenant,
                                name: &ns,
                            },
                        )
                        .allowed
                })
            })
            .filter_map(|id| self.0.info(id))
            .collect();
        jobs.sort_by(|a, b| {
            b.submitted_at_ms
                .cmp(&a.submitted_at_ms)
                .then(a.id.cmp(&b.id))
        });
        Ok(Response::new(ListJobsReply { jobs }))
    }

    async fn get_result(
        &self,
        request: Request<ResultRequest>,
    ) -> Result<Response<JobResult>, Status> {
        let id = self
            .0
            .job_access(&request, Action::ReadJob, &request.get_ref().id)?;
        self.0.meta_or_not_found(id)?;
        let head = self.0.cluster.head();
        let outcome = if request.get_ref().wait {
            head.wait_job(id).await.ok()
        } else {
            head.job_outcome(id)
        };
        if let Some(outcome) = outcome {
            return self.0.result_of(id, &outcome).map(Response::new);
        }
        // Ended and recorded (its outcome forgotten), or still running.
        let ended = self.0.ended_lock().get(&id).cloned();
        match ended {
            Some(info) => Ok(Response::new(JobResult {
                job: Some(info),
                value_json: self.0.details(id)?.value()?,
            })),
            None => Err(Status::failed_precondition(format!(
                "job {id} has not ended"
            ))),
        }
    }

    type StreamLogsStream = LogStream;

    async fn stream_logs(
        &self,
        request: Request<JobRequest>,
    ) -> Result<Response<Self::StreamLogsStream>, Status> {
        let id = self
            .0
            .job_access(&request, Action::ReadLogs, &request.get_ref().id)?;
        self.0.meta_or_not_found(id)?;
        if self.0.ended_lock().contains_key(&id) {
            return self.0.ended_logs(id).map(Response::new);
        }
        // A job just submitted may still be loading its module: its log
        // appears once its driver starts.
        let mut running_log = None;
        loop {
            if let Some(log) = self.0.cluster.node().job_log(id) {
                running_log = Some(log);
                break;
            }
            if self.0.cluster.head().job_outcome(id).is_some() {
                break;
            }
            if self.0.ended_lock().contains_key(&id) {
                return self.0.ended_logs(id).map(Response::new);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if let Some(log) = running_log {
            // Running: follow the log as lines arrive, until the job ends.
            let head = self.0.cluster.head().clone();
            let (tx, rx) = tokio::sync::mpsc::channel(256);
            tokio::spawn(async move {
                let mut appended = log.appended();
                let mut cursor = 0;
                let mut ended = false;
                loop {
                    let (lines, next) = log.since(cursor);
                    cursor = next;
                    for l in lines {
                        let line = LogLine {
                            function: l.function,
                            source: l.source.as_str().to_string(),
                            text: l.text,
                        };
                        if tx.send(Ok(line)).await.is_err() {
                            return;
                        }
                    }
                    if ended {
                        return;
                    }
                    tokio::select! {
                        changed = appended.changed() => ended = changed.is_err(),
                        _ = head.wait_job(id) => ended = true,
                    }
                }
            });
            return Ok(Response::new(Box::pin(
                tokio_stream::wrappers::ReceiverStream::new(rx),
            )));
        }
        // It ended before its log could be followed.
        let _ = self.0.cluster.head().wait_job(id).await;
        for _ in 0..1000 {
            if self.0.ended_lock().contains_key(&id) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        self.0.ended_logs(id).map(Response::new)
    }

    async fn call_named_actor(
        &self,
        request: Request<NamedActorCallRequest>,
    ) -> Result<Response<NamedActorCallReply>, Status> {
        let claims = self.0.authenticate(&request, "CallActor")?;
        let r = request.into_inner();
        let namespace = if r.namespace.is_empty() {
            crate::cluster::DEFAULT_NAMESPACE
        } else {
            &r.namespace
        };
        if r.name.is_empty() || r.method.is_empty() {
            return Err(Status::invalid_argument("name and method are required"));
        }
        if [&r.name, &r.method, &r.namespace]
            .iter()
            .any(|n| n.len() > prism_abi::MAX_NAME_LEN)
        {
            return Err(Status::invalid_argument(format!(
                "names are at most {} bytes",
                prism_abi::MAX_NAME_LEN
            )));
        }
        self.0.authorize(
            &claims,
            Action::CallActor,
            Resource::Namespace {
                tenant: &claims.tenant,
                name: namespace,
            },
        )?;
        let args = json_args(&r.args_json)?;
        let node = self.0.cluster.node();
        let actor = node
            .find_named_actor(&scoped(&claims.tenant, namespace), &r.name)
            .await
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no actor named {:?} in namespace {namespace:?}",
                    r.name
                ))
            })?;
        let value = node
            .call_actor_for_client(actor, &r.method, args, &claims.tenant)
            .await
            .map_err(|e| Status::aborted(format!("{}: {}", e.kind, e.message)))?;
        let value_json = records::result_json(&value)?.ok_or_else(records::too_large)?;
        Ok(Response::new(NamedActorCallReply { value_json }))
    }

    async fn stop_job(&self, request: Request<JobRequest>) -> Result<Response<JobInfo>, Status> {
        let id = self
            .0
            .job_access(&request, Action::StopJob, &request.get_ref().id)?;
        {
            let mut jobs = self.0.lock();
            match jobs.get_mut(&id) {
                Some(meta) => meta.stop_requested = true,
                // It has ended already.
                None if self.0.ended_lock().contains_key(&id) => {}
                None => return Err(Status::not_found(format!("no job {id}"))),
            }
        }
        let head = self.0.cluster.head();
        head.stop_job(id).await;
        // The driver ends promptly once cancelled; answer with its end.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), head.wait_job(id)).await;
        self.0
            .info(id)
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("no job {id}")))
    }
}

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

/// The claims of a token [`TokenCheck`] verified for this request.
#[derive(Clone)]
struct Verified(Claims);

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
    // Every id the head's node mints says it lives there.
    crate::ids::set_node_tag(HEAD_NODE_TAG);
    // Each job's whole log, one file per job (bounded per job).
    let log_dir = state_dir.join("logs");
    std::fs::create_dir_all(&log_dir)
        .map_err(|e| ApiError::Transport(format!("{}: {e}", log_dir.display())))?;
    let mut node_config = options.node.clone();
    node_config.job_log_dir = Some(log_dir.clone());
    let cluster = EmbeddedCluster::start(node_config)?;
    let store = Arc::new(HeadStore::open(&state_dir.join("head.redb"))?);
    for (hash, wasm) in store.modules()? {
        let stored = cluster.head().upload_module(Bytes::from(wasm));
        if format!("{stored:?}") != hash {
            tracing::warn!(
                "head.redb: module {hash} does not match its bytes; kept under {stored:?}"
            );
        }
    }
    let mut ended = HashMap::new();
    let mut ended_order: Vec<(i64, JobId, String, u64)> = Vec::new();
    for (id, bytes) in store.jobs()? {
        let (Some(job_id), Ok(mut record)) = (
            JobId::parse(&id),
            serde_json::from_slice::<StoredJob>(&bytes),
        ) else {
            tracing::warn!("head.redb: unreadable record of {id}; ignored");
            continue;
        };
        let running = [JobState::Pending as i32, JobState::Running as i32];
        let inline = !record.value_json.is_empty() || !record.logs.is_empty();
        if inline {
            // Written before details were kept apart: move them out, so
            // the next start reads the record alone.
            let details = JobDetails {
                value_json: std::mem::take(&mut record.value_json),
                too_large: false,
                logs: std::mem::take(&mut record.logs),
            };
            if let Ok(bytes) = serde_json::to_vec(&details) {
                store.put_job_details(&id, &bytes)?;
            }
        }
        let was_running = running.contains(&record.info.state);
        if was_running {
            // It ran in a head process that is gone; so is its driver.
            record.info.state = JobState::Failed as i32;
            record.info.error_kind = prism_abi::ErrorKind::WorkerDied.to_string();
            record.info.error_message = "the head restarted while the job ran".into();
        }
        let unmeasured = record.disk_bytes == 0;
        if unmeasured {
            let log =
                std::fs::metadata(log_dir.join(format!("{job_id}.log"))).map_or(0, |m| m.len());
            record.disk_bytes = store.job_details_len(&id)? + log;
        }
        if (inline || was_running || unmeasured)
            && let Ok(bytes) = serde_json::to_vec(&record)
        {
            store.put_job(&id, &bytes)?;
        }
        let ended_at = record.info.ended_at_ms.max(record.info.submitted_at_ms);
        ended_order.push((
            ended_at,
            job_id,
            record.info.tenant.clone(),
            record.disk_bytes,
        ));
        ended.insert(job_id, record.info);
    }
    // The history bounds hold across restarts (and when they were lowered).
    ended_order.sort();
    let mut history = JobHistory::new(options.job_limits);
    let mut forget = Vec::new();
    for (_, id, tenant, bytes) in ended_order {
        forget.extend(history.ended(&tenant, id, bytes));
    }
    let head_node = cluster.node().clone();
    let peers = Peers::new(HEAD_NODE_ID, HEAD_NODE_TAG, &head_node, credentials.clone());
    head_node.join_cluster(peers.clone());
    let peers_for_placement = peers.clone();
    let names = ActorNames::load(store.clone())?;
    head_node.set_directory(names.clone());
    let registry = Registry::new(
        RegistryConfig {
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
    let hosts = ClusterHosts::new(&head_node, peers_for_placement);
    hosts.attach(&registry);
    let placement = PlacementGroups::new(hosts);
    registry.set_placement(placement.clone());
    placement.record_in(registry.clone());
    head_node.set_placement(Arc::new(placement));
    tokio::spawn(registry.clone().watch_nodes());
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
        admission: tokio::sync::Mutex::new(()),
        jobs: Mutex::new(HashMap::new()),
        ended: Mutex::new(ended),
        history: Mutex::new(history),
        job_limits: options.job_limits,
        store,
        log_dir,
        registry: registry.clone(),
        address,
    }));
    api.0.forget_ended(&forget);
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
            NodeControlServer::new(NodeControlService(registry))
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
        stopping.stop_all_jobs().await;
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
