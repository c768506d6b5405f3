//! The `Serve` service: deploy, read, list and delete served
//! applications (`crate::serve::Apps`).

use super::convert::module_owned;
use super::{ApiHandle, refused};
use crate::ids::ModuleHash;
use crate::security::tenants::{NamespaceRef, TenantId};
use crate::security::{Action, Resource};
use crate::serve::{App, AppConfig, AppRecord, Deployer, DeploymentKind, ServeError};
use prism_proto::v1::serve_server::Serve;
use prism_proto::v1::{
    AppInfo, AppRequest, DeleteReply, DeployRequest, DeploymentInfo, ListAppsReply,
    ListAppsRequest, ReplicaInfo,
};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tonic::{Request, Response, Status};

fn serve_status(e: ServeError) -> Status {
    match e {
        ServeError::Invalid(m) => Status::invalid_argument(m),
        ServeError::Route(e) => match e {
            crate::serve::RouteError::Invalid(..) => Status::invalid_argument(e.to_string()),
            _ => Status::already_exists(e.to_string()),
        },
        ServeError::NotFound(m) => Status::not_found(format!("no app {m}")),
        ServeError::Quota(m) => Status::resource_exhausted(m),
        ServeError::Replica(m) => Status::failed_precondition(m),
    }
}

/// What the API says of an application.
fn app_info(app: &App) -> AppInfo {
    AppInfo {
        tenant: app.tenant.to_string(),
        name: app.config.name.clone(),
        namespace: app.config.namespace.clone(),
        module_hash: format!("{:?}", app.module),
        deployed_at_ms: app.deployed_at_ms as i64,
        config_json: serde_json::to_string(&app.config).unwrap_or_default(),
        deployments: app
            .deployments
            .iter()
            .map(|d| {
                let (kind, handler) = match &d.kind {
                    DeploymentKind::Function(f) => ("function", f.clone()),
                    DeploymentKind::Split(ways) => (
                        "split",
                        ways.iter()
                            .map(|(to, w)| format!("{to}:{w}"))
                            .collect::<Vec<_>>()
                            .join(","),
                    ),
                    DeploymentKind::Class { class, method } => {
                        ("class", format!("{class}.{method}"))
                    }
                };
                let c = &d.counters;
                DeploymentInfo {
                    name: d.config.name.clone(),
                    kind: kind.into(),
                    handler,
                    route_prefix: d.config.prefix().unwrap_or_default(),
                    public: d.config.public,
                    replicas: d
                        .replicas
                        .replicas()
                        .iter()
                        .map(|r| ReplicaInfo {
                            id: r.id.clone(),
                            ongoing: r.ongoing(),
                            served: r.served.load(Ordering::Relaxed),
                            up: !r.draining() && (kind == "function" || r.actor().is_some()),
                        })
                        .collect(),
                    queued: d.replicas.queued() as u64,
                    answered: c.answered.load(Ordering::Relaxed),
                    overloaded: c.overloaded.load(Ordering::Relaxed),
                    timed_out: c.timed_out.load(Ordering::Relaxed),
                    failed: c.failed.load(Ordering::Relaxed),
                    rate_limited: c.rate_limited.load(Ordering::Relaxed),
                    unhealthy: c.unhealthy.load(Ordering::Relaxed),
                }
            })
            .collect(),
    }
}

impl super::Api {
    /// Deploys again every application recorded in `head.redb` (the head
    /// restarted), each with a grant made from its deployer's subject and
    /// role under the policies in force now. One that cannot come back
    /// (its tenant or namespace is gone, the policies no longer permit
    /// it, its module is missing) is dropped with an error in the log.
    pub(super) async fn restore_apps(&self) {
        for record in self.apps.records() {
            let name = record.config.name.clone();
            match self.restore_app(record.clone()).await {
                Ok(()) => tracing::info!(tenant = %record.tenant, app = %name, "app restored"),
                Err(why) => {
                    tracing::error!(tenant = %record.tenant, app = %name, "app not restored: {why}");
                    self.apps.forget_record(&record.tenant, &name);
                }
            }
        }
    }

    async fn restore_app(&self, record: AppRecord) -> Result<(), String> {
        let mut claims = self.access.tokens().claims_for(
            &record.deployer.subject,
            record.deployer.role,
            std::time::Duration::from_secs(60),
        );
        claims.tenant = TenantId::new(&record.tenant);
        let namespace = self
            .access
            .namespace(&record.tenant, &record.config.namespace)
            .map_err(|e| e.to_string())?;
        let resource = Resource::Namespace {
            tenant: &record.tenant,
            name: &record.config.namespace,
        };
        self.access
            .authorize(&claims, Action::DeployApp, resource)
            .map_err(|e| e.to_string())?;
        if record.config.deployments.iter().any(|d| d.public) {
            self.access
                .authorize(&claims, Action::PublishRoute, resource)
                .map_err(|e| e.to_string())?;
        }
        let grant = self
            .access
            .job_grant(&claims, &record.tenant, &namespace)
            .map_err(|e| e.to_string())?;
        let module = ModuleHash::parse(&record.module)
            .ok_or_else(|| format!("malformed module hash {:?}", record.module))?;
        let namespace = NamespaceRef::new(&claims.tenant, &record.config.namespace);
        self.apps
            .deploy(namespace, Arc::new(grant), record.config, module, None)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

impl ApiHandle {
    /// Authenticates and finds the tenant a serving call acts in.
    fn serving_tenant<T>(
        &self,
        request: &Request<T>,
        action: Action,
        named: &str,
    ) -> Result<(crate::security::Claims, TenantId), Status> {
        let claims = self.0.authenticate(request, action.name())?;
        let tenant = self
            .0
            .access
            .acting_tenant(&claims, named)
            .map_err(refused)?;
        Ok((claims, tenant))
    }

    fn app_of(&self, tenant: &TenantId, name: &str) -> Result<Arc<App>, Status> {
        self.0
            .apps
            .get(tenant, name)
            .ok_or_else(|| Status::not_found(format!("no app {name}")))
    }
}

#[tonic::async_trait]
impl Serve for ApiHandle {
    async fn deploy(&self, request: Request<DeployRequest>) -> Result<Response<AppInfo>, Status> {
        let (claims, tenant) =
            self.serving_tenant(&request, Action::DeployApp, &request.get_ref().tenant)?;
        let r = request.into_inner();
        let config = AppConfig::from_json(&r.config_json)
            .and_then(AppConfig::validate)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let namespace_record = self
            .0
            .access
            .namespace(&tenant, &config.namespace)
            .map_err(refused)?;
        let resource = Resource::Namespace {
            tenant: &tenant,
            name: &config.namespace,
        };
        self.0.authorize(&claims, Action::DeployApp, resource)?;
        if config.deployments.iter().any(|d| d.public) {
            self.0.authorize(&claims, Action::PublishRoute, resource)?;
        }
        let module = ModuleHash::parse(&r.module_hash).ok_or_else(|| {
            Status::invalid_argument(format!("malformed module hash {:?}", r.module_hash))
        })?;
        module_owned(&self.0, &claims, &tenant, module)?;
        let grant = self
            .0
            .access
            .job_grant(&claims, &tenant, &namespace_record)
            .map_err(refused)?;
        let namespace = NamespaceRef::new(&tenant, &config.namespace);
        let app = self
            .0
            .apps
            .deploy(
                namespace,
                Arc::new(grant),
                config,
                module,
                Some(&Deployer {
                    subject: claims.sub.clone(),
                    role: claims.role,
                }),
            )
            .await
            .map_err(serve_status)?;
        Ok(Response::new(app_info(&app)))
    }

    async fn get_app(&self, request: Request<AppRequest>) -> Result<Response<AppInfo>, Status> {
        let (claims, tenant) =
            self.serving_tenant(&request, Action::ReadJob, &request.get_ref().tenant)?;
        let app = self.app_of(&tenant, &request.get_ref().name)?;
        self.0.authorize(
            &claims,
            Action::ReadJob,
            Resource::Namespace {
                tenant: &tenant,
                name: &app.config.namespace,
            },
        )?;
        Ok(Response::new(app_info(&app)))
    }

    async fn list_apps(
        &self,
        request: Request<ListAppsRequest>,
    ) -> Result<Response<ListAppsReply>, Status> {
        let (claims, tenant) =
            self.serving_tenant(&request, Action::ReadJob, &request.get_ref().tenant)?;
        let apps = self
            .0
            .apps
            .list(&tenant)
            .iter()
            .filter(|app| {
                let resource = Resource::Namespace {
                    tenant: &tenant,
                    name: &app.config.namespace,
                };
                self.0.authorize(&claims, Action::ReadJob, resource).is_ok()
            })
            .map(|app| app_info(app))
            .collect();
        Ok(Response::new(ListAppsReply { apps }))
    }

    async fn delete_app(
        &self,
        request: Request<AppRequest>,
    ) -> Result<Response<DeleteReply>, Status> {
        let (claims, tenant) =
            self.serving_tenant(&request, Action::DeployApp, &request.get_ref().tenant)?;
        let name = request.get_ref().name.clone();
        let app = self.app_of(&tenant, &name)?;
        self.0.authorize(
            &claims,
            Action::DeployApp,
            Resource::Namespace {
                tenant: &tenant,
                name: &app.config.namespace,
            },
        )?;
        self.0
            .apps
            .delete(&tenant, &name)
            .await
            .map_err(serve_status)?;
        Ok(Response::new(DeleteReply {}))
    }
}
