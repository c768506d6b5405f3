//! The native Rust client of the Prism API (`docs/api.md`).
//!
//! Every connection is TLS, verified against the cluster's CA certificate
//! (`ca.pem` from `prism init`), and every call carries a bearer token.
//! [`ClientConfig::resolve`] finds the address, token and CA the way the
//! CLI does: flags first, then the environment (`PRISM_ADDRESS`,
//! `PRISM_TOKEN`, `PRISM_CA`), then a config file (`PRISM_CONFIG`, default
//! `~/.config/prism/client.json`, with keys `address`, `token` or
//! `token_file`, and `ca`).

use prism_proto::v1::admin_client::AdminClient;
use prism_proto::v1::cluster_client::ClusterClient;
use prism_proto::v1::jobs_client::JobsClient;
use prism_proto::v1::serve_client::ServeClient;
use prism_proto::v1::workflows_client::WorkflowsClient;
use prism_proto::v1::{AppInfo, AppRequest, DeployRequest, ListAppsRequest};
use prism_proto::v1::{
    IssueTokenReply, IssueTokenRequest, ListTenantsRequest, NamespaceInfo, NamespaceRequest,
    PolicyReply, PolicyRequest, RevokeTokenReply, RevokeTokenRequest, TenantInfo, TenantRequest,
};
use prism_proto::v1::{
    JobInfo, JobRequest, JobResult, JoinTokenReply, JoinTokenRequest, ListJobsRequest, LogLine,
    ResultRequest, StatusReply, StatusRequest, SubmitJobRequest, UploadModuleReply,
    UploadModuleRequest,
};
use std::path::{Path, PathBuf};
use tokio_stream::StreamExt;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

pub use prism_proto::v1;

/// Largest message the client sends or accepts (64 MiB, the head's
/// module limit): results and job lists larger than tonic's default 4 MiB
/// still arrive.
pub const MAX_REPLY_BYTES: usize = 64 << 20;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Address, token or CA missing or unreadable.
    #[error("client configuration: {0}")]
    Config(String),
    /// The connection (TCP or TLS) could not be made.
    #[error("cannot connect to {address}: {message}")]
    Connect {
        /// Where to.
        address: String,
        /// Why not.
        message: String,
    },
    /// The head answered with an error status.
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Status(tonic::Status),
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        ClientError::Status(status)
    }
}

impl ClientError {
    /// The gRPC code, for a status from the head.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Status(s) => Some(s.code()),
            _ => None,
        }
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Unauthenticated => "unauthenticated",
        PermissionDenied => "permission denied",
        NotFound => "not found",
        InvalidArgument => "invalid argument",
        FailedPrecondition => "failed precondition",
        Unavailable => "unavailable",
        Aborted => "call failed",
        Internal => "internal error",
        OutOfRange => "too large",
        ResourceExhausted => "refused",
        AlreadyExists => "already exists",
        _ => "error",
    }
}

/// Where the head is and how to prove who we are.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `https://host:port`.
    pub address: String,
    /// The bearer token (a JWT).
    pub token: String,
    /// The cluster CA certificate, PEM.
    pub ca_pem: Vec<u8>,
}

#[derive(serde::Deserialize, Default)]
struct ConfigFile {
    address: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    ca: Option<PathBuf>,
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path)
        .map_err(|e| ClientError::Config(format!("cannot read {what} {}: {e}", path.display())))
}

fn read_token(path: &Path) -> Result<String, ClientError> {
    let bytes = read(path, "token file")?;
    Ok(String::from_utf8_lossy(&bytes).trim().to_string())
}

impl ClientConfig {
    /// Resolves each setting from its flag, else the environment, else the
    /// config file.
    pub fn resolve(
        address: Option<String>,
        token: Option<String>,
        token_file: Option<PathBuf>,
        ca: Option<PathBuf>,
    ) -> Result<Self, ClientError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let file_path = env("PRISM_CONFIG")
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".config/prism/client.json")));
        let file: ConfigFile = match &file_path {
            Some(p) if p.exists() => serde_json::from_slice(&read(p, "config file")?)
                .map_err(|e| ClientError::Config(format!("{}: {e}", p.display())))?,
            _ => ConfigFile::default(),
        };
        let address = address
            .or_else(|| env("PRISM_ADDRESS"))
            .or(file.address)
            .ok_or_else(|| {
                ClientError::Config("no address: pass --address or set PRISM_ADDRESS".into())
            })?;
        let token = match (token, token_file) {
            (Some(t), _) => t,
            (None, Some(f)) => read_token(&f)?,
            (None, None) => match (env("PRISM_TOKEN"), file.token, file.token_file) {
                (Some(t), _, _) | (None, Some(t), _) => t,
                (None, None, Some(f)) => read_token(&f)?,
                (None, None, None) => {
                    return Err(ClientError::Config(
                        "no token: pass --token or --token-file, or set PRISM_TOKEN".into(),
                    ));
                }
            },
        };
        let ca = ca
            .or_else(|| env("PRISM_CA").map(PathBuf::from))
            .or(file.ca)
            .ok_or_else(|| {
                ClientError::Config("no CA certificate: pass --ca or set PRISM_CA".into())
            })?;
        Ok(ClientConfig {
            address,
            token,
            ca_pem: read(&ca, "CA certificate")?,
        })
    }
}

/// Adds the bearer token to every request.
#[derive(Clone)]
pub struct BearerToken(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel that sends the bearer token with every call.
pub type Authed = InterceptedService<Channel, BearerToken>;

/// A connection to the head.
#[derive(Clone)]
pub struct Client {
    jobs: JobsClient<Authed>,
    cluster: ClusterClient<Authed>,
    admin: AdminClient<Authed>,
    serve: ServeClient<Authed>,
    workflows: WorkflowsClient<Authed>,
}

impl Client {
    /// Connects over TLS, verifying the head against the CA.
    pub async fn connect(config: &ClientConfig) -> Result<Self, ClientError> {
        let connect_error = |message: String| ClientError::Connect {
            address: config.address.clone(),
            message,
        };
        if !config.address.starts_with("https://") {
            return Err(ClientError::Config(format!(
                "the address must start with https:// (Prism speaks TLS only), got {}",
                config.address
            )));
        }
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&config.ca_pem));
        let channel = Endpoint::from_shared(config.address.clone())
            .map_err(|e| connect_error(e.to_string()))?
            .tls_config(tls)
            .map_err(|e| connect_error(e.to_string()))?
            .connect()
            .await
            .map_err(|e| connect_error(error_chain(&e)))?;
        let token = format!("Bearer {}", config.token);
        let token = if config.token.is_empty() {
            None
        } else {
            Some(
                token
                    .parse()
                    .map_err(|_| ClientError::Config("the token is not valid ASCII".into()))?,
            )
        };
        let auth = BearerToken(token);
        Ok(Client {
            jobs: JobsClient::with_interceptor(channel.clone(), auth.clone())
                .max_decoding_message_size(MAX_REPLY_BYTES)
                .max_encoding_message_size(MAX_REPLY_BYTES),
            cluster: ClusterClient::with_interceptor(channel.clone(), auth.clone()),
            serve: ServeClient::with_interceptor(channel.clone(), auth.clone()),
            workflows: WorkflowsClient::with_interceptor(channel.clone(), auth.clone())
                .max_decoding_message_size(MAX_REPLY_BYTES)
                .max_encoding_message_size(MAX_REPLY_BYTES),
            admin: AdminClient::with_interceptor(channel, auth),
        })
    }

    /// The `Workflows` service (durable workflows and schedules), with
    /// the token.
    pub fn workflows(&mut self) -> &mut WorkflowsClient<Authed> {
        &mut self.workflows
    }

    /// Uploads a module (deduplicated by content).
    pub async fn upload_module(&mut self, wasm: Vec<u8>) -> Result<UploadModuleReply, ClientError> {
        Ok(self
            .jobs
            .upload_module(UploadModuleRequest { wasm })
            .await?
            .into_inner())
    }

    /// Starts `entry` of an uploaded module with JSON `args_json`.
    pub async fn submit(
        &mut self,
        module_hash: &str,
        entry: &str,
        args_json: &str,
        namespace: &str,
    ) -> Result<JobInfo, ClientError> {
        Ok(self
            .jobs
            .submit_job(SubmitJobRequest {
                module_hash: module_hash.into(),
                entry: entry.into(),
                args_json: args_json.into(),
                namespace: namespace.into(),
                ..Default::default()
            })
            .await?
            .into_inner())
    }

    /// Starts a job as `request` says in full (environment variables,
    /// the driver's resources).
    pub async fn submit_request(
        &mut self,
        request: SubmitJobRequest,
    ) -> Result<JobInfo, ClientError> {
        Ok(self.jobs.submit_job(request).await?.into_inner())
    }

    /// One job's record.
    pub async fn job(&mut self, id: &str) -> Result<JobInfo, ClientError> {
        Ok(self
            .jobs
            .get_job(JobRequest { id: id.into() })
            .await?
            .into_inner())
    }

    /// Every job, newest first.
    pub async fn list(&mut self) -> Result<Vec<JobInfo>, ClientError> {
        Ok(self
            .jobs
            .list_jobs(ListJobsRequest {})
            .await?
            .into_inner()
            .jobs)
    }

    /// The job's result; with `wait`, once it has ended.
    pub async fn result(&mut self, id: &str, wait: bool) -> Result<JobResult, ClientError> {
        Ok(self
            .jobs
            .get_result(ResultRequest {
                id: id.into(),
                wait,
            })
            .await?
            .into_inner())
    }

    /// The job's log lines (waits for the job to end).
    pub async fn logs(&mut self, id: &str) -> Result<Vec<LogLine>, ClientError> {
        let mut lines = Vec::new();
        self.follow_logs(id, |line| lines.push(line)).await?;
        Ok(lines)
    }

    /// Calls `each` with every line of the job's log as it arrives, from
    /// the first, until the job ends.
    pub async fn follow_logs(
        &mut self,
        id: &str,
        mut each: impl FnMut(LogLine),
    ) -> Result<(), ClientError> {
        let mut stream = self
            .jobs
            .stream_logs(JobRequest { id: id.into() })
            .await?
            .into_inner();
        while let Some(line) = stream.next().await {
            each(line?);
        }
        Ok(())
    }

    /// The tasks of a job as its nodes recorded them (`state` and `cause`
    /// filter; empty: all), and how many were not recorded.
    pub async fn list_tasks(
        &mut self,
        job_id: &str,
        state: &str,
        cause: &str,
    ) -> Result<(Vec<prism_proto::v1::TaskInfo>, u64), ClientError> {
        self.tasks(prism_proto::v1::ListTasksRequest {
            job_id: job_id.into(),
            state: state.into(),
            cause: cause.into(),
            task_id: String::new(),
        })
        .await
        .map(|(tasks, unrecorded, _)| (tasks, unrecorded))
    }

    /// One task's record (its id as errors name it), searched in `job_id`
    /// or, if empty, among the newest jobs the caller may read; with the
    /// job it belongs to.
    pub async fn task(
        &mut self,
        job_id: &str,
        task_id: &str,
    ) -> Result<(prism_proto::v1::TaskInfo, String), ClientError> {
        let (tasks, _, job) = self
            .tasks(prism_proto::v1::ListTasksRequest {
                job_id: job_id.into(),
                state: String::new(),
                cause: String::new(),
                task_id: task_id.into(),
            })
            .await?;
        let task = tasks.into_iter().next().ok_or_else(|| {
            ClientError::from(tonic::Status::not_found(format!("no task {task_id}")))
        })?;
        Ok((task, job))
    }

    async fn tasks(
        &mut self,
        request: prism_proto::v1::ListTasksRequest,
    ) -> Result<(Vec<prism_proto::v1::TaskInfo>, u64, String), ClientError> {
        let mut stream = self.jobs.list_tasks(request).await?.into_inner();
        let mut tasks = Vec::new();
        let mut unrecorded = 0;
        let mut job = String::new();
        while let Some(page) = stream.next().await {
            let page = page?;
            unrecorded += page.unrecorded;
            job = page.job_id;
            tasks.extend(page.tasks);
        }
        Ok((tasks, unrecorded, job))
    }

    /// Calls `method` of the actor named `name` in `namespace` (empty:
    /// `default`) with JSON `args_json`; returns its value as JSON.
    pub async fn call_actor(
        &mut self,
        namespace: &str,
        name: &str,
        method: &str,
        args_json: &str,
    ) -> Result<String, ClientError> {
        Ok(self
            .jobs
            .call_named_actor(prism_proto::v1::NamedActorCallRequest {
                namespace: namespace.into(),
                name: name.into(),
                method: method.into(),
                args_json: args_json.into(),
            })
            .await?
            .into_inner()
            .value_json)
    }

    /// Stops a job.
    pub async fn stop(&mut self, id: &str) -> Result<JobInfo, ClientError> {
        Ok(self
            .jobs
            .stop_job(JobRequest { id: id.into() })
            .await?
            .into_inner())
    }

    /// The cluster's nodes.
    pub async fn status(&mut self) -> Result<StatusReply, ClientError> {
        Ok(self.cluster.status(StatusRequest {}).await?.into_inner())
    }

    /// Creates a tenant (cluster-admin). `quotas_json` as in
    /// `TenantRequest` (empty: unlimited); `weight` 0 means 1.
    pub async fn create_tenant(
        &mut self,
        name: &str,
        weight: f64,
        quotas_json: &str,
    ) -> Result<TenantInfo, ClientError> {
        Ok(self
            .admin
            .create_tenant(TenantRequest {
                tenant: name.into(),
                weight,
                quotas_json: quotas_json.into(),
            })
            .await?
            .into_inner())
    }

    /// Every tenant the caller may see.
    pub async fn tenants(&mut self) -> Result<Vec<TenantInfo>, ClientError> {
        Ok(self
            .admin
            .list_tenants(ListTenantsRequest {})
            .await?
            .into_inner()
            .tenants)
    }

    /// Deletes a tenant (cluster-admin; refused while it runs jobs).
    pub async fn delete_tenant(&mut self, name: &str) -> Result<(), ClientError> {
        self.admin
            .delete_tenant(TenantRequest {
                tenant: name.into(),
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// Replaces a tenant's quotas (and its weight, if `weight` > 0).
    pub async fn set_quotas(
        &mut self,
        tenant: &str,
        quotas_json: &str,
        weight: f64,
    ) -> Result<TenantInfo, ClientError> {
        Ok(self
            .admin
            .set_quotas(TenantRequest {
                tenant: tenant.into(),
                weight,
                quotas_json: quotas_json.into(),
            })
            .await?
            .into_inner())
    }

    /// Creates a namespace (or with `update`, replaces its capabilities).
    /// An empty `tenant` is the token's.
    pub async fn put_namespace(
        &mut self,
        tenant: &str,
        name: &str,
        capabilities_json: &str,
        update: bool,
    ) -> Result<NamespaceInfo, ClientError> {
        Ok(self
            .admin
            .put_namespace(NamespaceRequest {
                tenant: tenant.into(),
                name: name.into(),
                capabilities_json: capabilities_json.into(),
                update,
            })
            .await?
            .into_inner())
    }

    /// A tenant's namespaces (empty: the token's tenant).
    pub async fn namespaces(&mut self, tenant: &str) -> Result<Vec<NamespaceInfo>, ClientError> {
        Ok(self
            .admin
            .list_namespaces(TenantRequest {
                tenant: tenant.into(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .namespaces)
    }

    /// Deletes a namespace.
    pub async fn delete_namespace(&mut self, tenant: &str, name: &str) -> Result<(), ClientError> {
        self.admin
            .delete_namespace(NamespaceRequest {
                tenant: tenant.into(),
                name: name.into(),
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// Issues a token of `tenant` (empty: the caller's) for `subject`.
    pub async fn issue_token(
        &mut self,
        tenant: &str,
        subject: &str,
        role: &str,
        ttl_secs: u64,
    ) -> Result<IssueTokenReply, ClientError> {
        Ok(self
            .admin
            .issue_token(IssueTokenRequest {
                tenant: tenant.into(),
                subject: subject.into(),
                role: role.into(),
                ttl_secs,
            })
            .await?
            .into_inner())
    }

    /// Revokes a token, given the token itself or (cluster-admin) its id.
    pub async fn revoke_token(
        &mut self,
        token: &str,
        id: &str,
    ) -> Result<RevokeTokenReply, ClientError> {
        Ok(self
            .admin
            .revoke_token(RevokeTokenRequest {
                token: token.into(),
                id: id.into(),
            })
            .await?
            .into_inner())
    }

    /// Replaces a tenant's policy set (empty text: removes it).
    pub async fn set_policy(
        &mut self,
        tenant: &str,
        policies: &str,
    ) -> Result<PolicyReply, ClientError> {
        Ok(self
            .admin
            .set_policy(PolicyRequest {
                tenant: tenant.into(),
                policies: policies.into(),
            })
            .await?
            .into_inner())
    }

    /// A tenant's own policy set.
    pub async fn policy(&mut self, tenant: &str) -> Result<PolicyReply, ClientError> {
        Ok(self
            .admin
            .get_policy(TenantRequest {
                tenant: tenant.into(),
                ..Default::default()
            })
            .await?
            .into_inner())
    }

    /// A one-time token for a node to join with, valid for `ttl_secs`
    /// (0: the head's default, one hour). Needs a cluster-admin token.
    pub async fn create_join_token(
        &mut self,
        ttl_secs: u64,
    ) -> Result<JoinTokenReply, ClientError> {
        Ok(self
            .cluster
            .create_join_token(JoinTokenRequest { ttl_secs })
            .await?
            .into_inner())
    }

    /// Deploys (or replaces) an application: its configuration as JSON
    /// and an uploaded module's hash.
    pub async fn deploy_app(
        &mut self,
        config_json: &str,
        module_hash: &str,
    ) -> Result<AppInfo, ClientError> {
        Ok(self
            .serve
            .deploy(DeployRequest {
                config_json: config_json.into(),
                module_hash: module_hash.into(),
                ..Default::default()
            })
            .await?
            .into_inner())
    }

    /// One application of the token's tenant, with its replicas' load.
    pub async fn app(&mut self, name: &str) -> Result<AppInfo, ClientError> {
        Ok(self
            .serve
            .get_app(AppRequest {
                name: name.into(),
                ..Default::default()
            })
            .await?
            .into_inner())
    }

    /// The token's tenant's applications.
    pub async fn apps(&mut self) -> Result<Vec<AppInfo>, ClientError> {
        Ok(self
            .serve
            .list_apps(ListAppsRequest::default())
            .await?
            .into_inner()
            .apps)
    }

    /// Deletes an application: routes first, then its replicas once its
    /// requests in flight are answered.
    pub async fn delete_app(&mut self, name: &str) -> Result<(), ClientError> {
        self.serve
            .delete_app(AppRequest {
                name: name.into(),
                ..Default::default()
            })
            .await?;
        Ok(())
    }
}

/// An error with its sources, for connection failures (TLS errors are
/// several layers down).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
