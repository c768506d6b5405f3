//! Served applications: deploying one (its context on the head's node,
//! its replicas, its routes), redeploying it without failing a request,
//! deleting it, and the route table requests are resolved against.

use super::config::{AppConfig, DeploymentKind};
use super::deployment::Deployment;
use super::replicas::{Replica, ReplicaSet};
use super::routes::{Route, RouteError, RouteTable};
use crate::ids::{ModuleHash, OwnerId};
use crate::meta::{HeadStore, Records};
use crate::node::{Node, ServiceContext};
use crate::security::tenants::{NamespaceRef, TenantId};
use crate::security::{JobGrant, Role};
use crate::sync::{MutexExt, RwLockExt};
use crate::task::JobTicket;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why an application was not deployed or found.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration or module does not make an application.
    #[error("{0}")]
    Invalid(String),
    /// A route is taken, or overlaps another tenant's.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// No such application in the tenant.
    #[error("no app {0}")]
    NotFound(String),
    /// The tenant's quotas do not leave room for its replicas.
    #[error("{0}")]
    Quota(String),
    /// A replica could not be created.
    #[error("{0}")]
    Replica(String),
}

/// Most applications one tenant may have deployed at once.
pub const MAX_APPS_PER_TENANT: usize = 100;

/// Who deployed an application: a head that restarts makes its grant
/// again from these (and the policies then in force).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deployer {
    /// The token's subject.
    pub subject: String,
    /// The token's role.
    pub role: Role,
}

/// An application as `head.redb` keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppRecord {
    /// Its tenant.
    pub tenant: String,
    /// Its configuration, validated.
    pub config: AppConfig,
    /// Its module's digest ("sha256:<hex>").
    pub module: String,
    /// Who deployed it.
    pub deployer: Deployer,
}

/// A deployed application.
pub struct App {
    /// Its tenant.
    pub tenant: TenantId,
    /// Its configuration, validated.
    pub config: AppConfig,
    /// Its module's digest.
    pub module: ModuleHash,
    /// When it was deployed (Unix ms).
    pub deployed_at_ms: u64,
    /// Its deployments, in configuration order.
    pub deployments: Vec<Arc<Deployment>>,
    pub(super) service: ServiceContext,
}

#[derive(Default)]
pub(super) struct State {
    routes: RouteTable,
    /// Route prefix → the deployment it leads to.
    targets: HashMap<String, Arc<Deployment>>,
    pub(super) apps: BTreeMap<(TenantId, String), Arc<App>>,
}

/// Every application of the cluster, served from the head's node.
pub struct Apps {
    node: Arc<Node>,
    pub(super) state: RwLock<State>,
    /// Where deployed applications are recorded (a head process).
    store: Option<Arc<HeadStore>>,
    /// Versions replaced or deleted whose requests still run.
    pub(super) retiring: Arc<Mutex<Vec<Arc<App>>>>,
    /// Whether another node's ingress has synced (so a retiring version
    /// first gives those ingresses time to move to the new one).
    pub(super) mirrored: Arc<AtomicBool>,
}

/// What a request's path resolved to.
pub struct Target {
    /// The deployment the route names (a split, or the deployment
    /// itself): whose `public` setting applies.
    pub routed: Arc<Deployment>,
    /// The deployment that answers.
    pub deployment: Arc<Deployment>,
    /// The path below its prefix.
    pub path: String,
    /// Keeps `deployment` from being retired while the request is in
    /// the ingress.
    pub entered: super::deployment::Entered,
}

/// The deployment a request for `path` goes to through `routes` and
/// `targets` (route prefix → deployment); a split picks its way, found
/// with `find(tenant, app, deployment)`.
pub(super) fn resolve_in(
    routes: &RouteTable,
    targets: &HashMap<String, Arc<Deployment>>,
    path: &str,
    find: impl Fn(&TenantId, &str, &str) -> Option<Arc<Deployment>>,
) -> Option<Target> {
    let (route, rest) = routes.resolve(path)?;
    let routed = targets.get(&route.prefix)?.clone();
    let mut deployment = routed.clone();
    if let Some(way) = deployment.pick_way() {
        deployment = find(&deployment.tenant, &deployment.app, &way)?;
    }
    Some(Target {
        entered: super::deployment::Entered::new(&deployment),
        routed,
        deployment,
        path: rest,
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The routes `config` asks for, as `tenant`'s.
pub(super) fn routes_of(tenant: &TenantId, config: &AppConfig) -> Vec<Route> {
    config
        .deployments
        .iter()
        .filter_map(|d| {
            Some(Route {
                prefix: d.prefix()?,
                tenant: tenant.clone(),
                namespace: config.namespace.clone(),
                deployment: format!("{}/{}", config.name, d.name),
            })
        })
        .collect()
}

impl State {
    /// Swaps `old`'s routes for `new`'s (either may be absent); on a
    /// refusal the table is as it was.
    fn swap_routes(&mut self, old: Option<&App>, new: Option<&App>) -> Result<(), RouteError> {
        let mut table = self.routes.clone();
        if let Some(old) = old {
            for route in routes_of(&old.tenant, &old.config) {
                table.remove(&old.tenant, &route.prefix);
            }
        }
        if let Some(new) = new {
            for route in routes_of(&new.tenant, &new.config) {
                table.add(route)?;
            }
        }
        self.routes = table;
        if let Some(old) = old {
            for prefix in old.deployments.iter().filter_map(|d| d.config.prefix()) {
                self.targets.remove(&prefix);
            }
        }
        if let Some(new) = new {
            for d in &new.deployments {
                if let Some(prefix) = d.config.prefix() {
                    self.targets.insert(prefix, d.clone());
                }
            }
        }
        Ok(())
    }
}

impl Apps {
    /// No applications, served from `node`, whose guests' deployment
    /// handles reach them.
    pub fn new(node: Arc<Node>) -> Arc<Apps> {
        Apps::with_store(node, None)
    }

    /// No applications yet, served from `node`; deployed ones are
    /// recorded in `store` (see [`Apps::records`]).
    pub fn recorded_in(node: Arc<Node>, store: Arc<HeadStore>) -> Arc<Apps> {
        Apps::with_store(node, Some(store))
    }

    fn with_store(node: Arc<Node>, store: Option<Arc<HeadStore>>) -> Arc<Apps> {
        let apps = Arc::new(Apps {
            node: node.clone(),
            state: RwLock::new(State::default()),
            store,
            retiring: Arc::default(),
            mirrored: Arc::default(),
        });
        node.route_deployment_calls(Arc::new(AppsLink(Arc::downgrade(&apps))));
        apps
    }

    /// The applications recorded as deployed (a head restarting deploys
    /// them again). Unreadable records are skipped with a warning.
    pub fn records(&self) -> Vec<AppRecord> {
        let Some(store) = &self.store else {
            return Vec::new();
        };
        match store.records(Records::Apps) {
            Ok(records) => records
                .into_iter()
                .filter_map(|(key, value)| {
                    serde_json::from_slice(&value)
                        .map_err(|e| tracing::warn!(app = %key, "unreadable app record: {e}"))
                        .ok()
                })
                .collect(),
            Err(e) => {
                tracing::error!("reading the app records: {e}");
                Vec::new()
            }
        }
    }

    /// Forgets the record of `tenant`'s application `name`.
    pub fn forget_record(&self, tenant: &str, name: &str) {
        if let Some(store) = &self.store
            && let Err(e) = store.delete_records(Records::Apps, &format!("{tenant}/{name}"), None)
        {
            tracing::error!(%tenant, app = name, "deleting the app record: {e}");
        }
    }

    fn record(&self, app: &App, deployer: &Deployer) {
        let Some(store) = &self.store else { return };
        let record = AppRecord {
            tenant: app.tenant.to_string(),
            config: app.config.clone(),
            module: format!("{:?}", app.module),
            deployer: deployer.clone(),
        };
        let key = format!("{}/{}", app.tenant, app.config.name);
        let written = serde_json::to_vec(&record)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                store
                    .put_record(Records::Apps, &key, &bytes)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            tracing::error!(app = %key, "recording the app: {e}");
        }
    }

    /// The deployment a request for `path` goes to, or `None`.
    pub fn resolve(&self, path: &str) -> Option<Target> {
        let state = self.state.read_locked();
        resolve_in(&state.routes, &state.targets, path, |tenant, app, name| {
            state
                .apps
                .get(&(tenant.clone(), app.to_string()))?
                .deployments
                .iter()
                .find(|d| d.config.name == name)
                .cloned()
        })
    }

    /// Deploys `config` (validated) with `module` in `namespace` of its
    /// tenant, its handlers running with `grant`. An application of the
    /// same name is replaced once the new one is up: requests in flight
    /// finish on the old replicas, new ones go to the new, none fails.
    pub async fn deploy(
        &self,
        namespace: NamespaceRef,
        grant: Arc<JobGrant>,
        config: AppConfig,
        module: ModuleHash,
        deployer: Option<&Deployer>,
    ) -> Result<Arc<App>, ServeError> {
        let tenant = grant.tenant.clone();
        let key = (tenant.clone(), config.name.clone());
        // Refuse a taken route, or one app too many, before starting
        // anything.
        {
            let state = self.state.read_locked();
            let has = state.apps.keys().filter(|(t, _)| *t == tenant).count();
            if !state.apps.contains_key(&key) && has >= MAX_APPS_PER_TENANT {
                return Err(ServeError::Quota(format!(
                    "quota exceeded: a tenant has at most {MAX_APPS_PER_TENANT} applications"
                )));
            }
            let mut table = state.routes.clone();
            if let Some(old) = state.apps.get(&key) {
                for route in routes_of(&old.tenant, &old.config) {
                    table.remove(&tenant, &route.prefix);
                }
            }
            for route in routes_of(&tenant, &config) {
                table.add(route)?;
            }
        }
        if let Some(app) = self
            .reconfigure_in_place(&tenant, &config, module, deployer)
            .await
        {
            return Ok(app);
        }
        let ticket = Arc::new(JobTicket {
            namespace,
            grant,
            env: None,
            job: None,
        });
        let service = self
            .node
            .open_service(OwnerId::random(), module, ticket)
            .await
            .map_err(|e| ServeError::Invalid(format!("module: {}", e.message)))?;
        let app = match self.start(&tenant, &config, module, &service).await {
            Ok(app) => Arc::new(app),
            Err(error) => {
                self.node.close_service(&service);
                return Err(error);
            }
        };
        let old = {
            let mut state = self.state.write_locked();
            let old = state.apps.get(&key).cloned();
            // Checked again: another deploy may have come first.
            let has = state.apps.keys().filter(|(t, _)| *t == tenant).count();
            let refused = if old.is_none() && has >= MAX_APPS_PER_TENANT {
                Some(ServeError::Quota(format!(
                    "quota exceeded: a tenant has at most {MAX_APPS_PER_TENANT} applications"
                )))
            } else {
                state
                    .swap_routes(old.as_deref(), Some(&app))
                    .err()
                    .map(ServeError::from)
            };
            if let Some(error) = refused {
                drop(state);
                self.node.close_service(&service);
                return Err(error);
            }
            state.apps.insert(key, app.clone());
            old
        };
        for d in &app.deployments {
            d.start_autoscaler();
            d.start_health_checks();
        }
        if let Some(deployer) = deployer {
            self.record(&app, deployer);
        }
        if let Some(old) = old {
            tracing::info!(tenant = %tenant, app = %config.name, "app redeployed");
            // The new version serves now; the old one finishes its
            // requests in the background.
            tokio::spawn(retire(
                self.node.clone(),
                old,
                self.retiring.clone(),
                self.mirrored.load(Ordering::Acquire),
            ));
        } else {
            tracing::info!(tenant = %tenant, app = %config.name, "app deployed");
        }
        Ok(app)
    }

    /// A redeploy of the same module whose configuration changes only in
    /// `user_config`: the running replicas get the new configs through
    /// `reconfigure` and keep their state. `None` if it changes more.
    async fn reconfigure_in_place(
        &self,
        tenant: &TenantId,
        config: &AppConfig,
        module: ModuleHash,
        deployer: Option<&Deployer>,
    ) -> Option<Arc<App>> {
        let old = self.get(tenant, &config.name)?;
        let bare = |c: &AppConfig| AppConfig {
            module: String::new(),
            deployments: c
                .deployments
                .iter()
                .map(|d| d.without_user_config())
                .collect(),
            ..c.clone()
        };
        if old.module != module || bare(&old.config) != bare(config) || old.config == *config {
            return None;
        }
        for (deployment, new) in old.deployments.iter().zip(&config.deployments) {
            deployment.reconfigure_all(new.user_config.clone()).await;
        }
        let app = Arc::new(App {
            tenant: tenant.clone(),
            config: config.clone(),
            module,
            deployed_at_ms: now_ms(),
            deployments: old.deployments.clone(),
            service: old.service.clone(),
        });
        self.state
            .write_locked()
            .apps
            .insert((tenant.clone(), config.name.clone()), app.clone());
        if let Some(deployer) = deployer {
            self.record(&app, deployer);
        }
        tracing::info!(tenant = %tenant, app = %config.name, "app reconfigured in place");
        Some(app)
    }

    /// Makes the deployments of an application and their replicas.
    async fn start(
        &self,
        tenant: &TenantId,
        config: &AppConfig,
        module: ModuleHash,
        service: &ServiceContext,
    ) -> Result<App, ServeError> {
        let (tasks, classes) = service.exports();
        let mut deployments = Vec::new();
        for d in &config.deployments {
            let kind = d.kind().map_err(ServeError::Invalid)?;
            let replicas = match &kind {
                DeploymentKind::Function(function) => {
                    if !service.has_task(function) {
                        return Err(ServeError::Invalid(format!(
                            "deployment {}: the module exports no task {function:?} (tasks: {tasks:?})",
                            d.name
                        )));
                    }
                    (0..d.initial_replicas())
                        .map(|i| Replica::function(format!("{}-{i}", d.name)))
                        .collect()
                }
                DeploymentKind::Class { class, .. } => {
                    if !service.has_class(class) {
                        return Err(ServeError::Invalid(format!(
                            "deployment {}: the module exports no actor class {class:?} (classes: {classes:?})",
                            d.name
                        )));
                    }
                    let mut replicas = Vec::new();
                    for _ in 0..d.initial_replicas() {
                        let actor = Deployment::create_replica(
                            &self.node,
                            service,
                            d,
                            d.user_config.as_ref(),
                        )
                        .await?;
                        replicas.push(Replica::class(actor));
                    }
                    replicas
                }
                // Its targets are checked by the config's validation.
                DeploymentKind::Split(_) => Vec::new(),
            };
            let class = matches!(kind, DeploymentKind::Class { .. });
            deployments.push(Arc::new(Deployment::new(
                config,
                d.clone(),
                kind,
                tenant.clone(),
                ReplicaSet::new(
                    replicas,
                    d.max_ongoing_requests,
                    d.max_queued_requests,
                    class,
                ),
                self.node.clone(),
                service.clone(),
            )));
        }
        Ok(App {
            tenant: tenant.clone(),
            config: config.clone(),
            module,
            deployed_at_ms: now_ms(),
            deployments,
            service: service.clone(),
        })
    }

    /// Deletes `tenant`'s application `name`: its routes go at once, its
    /// requests in flight finish, then its replicas stop.
    pub async fn delete(&self, tenant: &TenantId, name: &str) -> Result<(), ServeError> {
        let app = {
            let mut state = self.state.write_locked();
            let key = (tenant.clone(), name.to_string());
            let app = state
                .apps
                .remove(&key)
                .ok_or_else(|| ServeError::NotFound(name.to_string()))?;
            state.swap_routes(Some(&app), None)?;
            app
        };
        self.forget_record(tenant, name);
        tracing::info!(tenant = %tenant, app = name, "app deleted");
        retire(
            self.node.clone(),
            app,
            self.retiring.clone(),
            self.mirrored.load(Ordering::Acquire),
        )
        .await;
        Ok(())
    }

    /// Deletes every application of `tenant` (the tenant was deleted).
    pub async fn delete_tenant(&self, tenant: &TenantId) {
        for name in self.names(tenant) {
            let _ = self.delete(tenant, &name).await;
        }
    }

    /// `tenant`'s application `name`.
    pub fn get(&self, tenant: &TenantId, name: &str) -> Option<Arc<App>> {
        let key = (tenant.clone(), name.to_string());
        self.state.read_locked().apps.get(&key).cloned()
    }

    /// `tenant`'s applications, by name.
    pub fn list(&self, tenant: &TenantId) -> Vec<Arc<App>> {
        self.state
            .read_locked()
            .apps
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, app)| app.clone())
            .collect()
    }

    fn names(&self, tenant: &TenantId) -> Vec<String> {
        self.list(tenant)
            .iter()
            .map(|a| a.config.name.clone())
            .collect()
    }

    /// Stops every application (the head is shutting down; their
    /// records stay).
    pub async fn stop_all(&self) {
        let apps: Vec<Arc<App>> = {
            let mut state = self.state.write_locked();
            let apps = std::mem::take(&mut state.apps);
            state.routes = RouteTable::new();
            state.targets.clear();
            apps.into_values().collect()
        };
        for app in apps {
            for d in &app.deployments {
                d.stop();
            }
            self.node.close_service(&app.service);
        }
    }
}

/// Waits (up to the longest request timeout) for an application's
/// requests in flight — at the head and, when other nodes serve HTTP
/// (`mirrored`), at their ingresses, which first get time to move to the
/// new routes — then closes it.
async fn retire(
    node: Arc<Node>,
    app: Arc<App>,
    retiring: Arc<Mutex<Vec<Arc<App>>>>,
    mirrored: bool,
) {
    retiring.locked().push(app.clone());
    if mirrored {
        tokio::time::sleep(2 * super::mirror::SYNC_INTERVAL).await;
    }
    let longest = app
        .config
        .deployments
        .iter()
        .map(|d| d.request_timeout_ms)
        .max()
        .unwrap_or(0);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(longest);
    while app.deployments.iter().any(|d| d.busy()) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for d in &app.deployments {
        d.stop();
    }
    retiring.locked().retain(|a| !Arc::ptr_eq(a, &app));
    node.close_service(&app.service);
}

/// The node's way to its applications (weak: the applications hold the
/// node).
struct AppsLink(std::sync::Weak<Apps>);

impl crate::cluster::DeploymentCalls for AppsLink {
    fn call_deployment(
        &self,
        tenant: &TenantId,
        app: &str,
        deployment: &str,
        call: crate::cluster::DeploymentCall,
    ) -> crate::sync::BoxFuture<'static, Result<bytes::Bytes, prism_abi::WireError>> {
        match self.0.upgrade() {
            Some(apps) => apps.call_deployment(tenant, app, deployment, call),
            None => Box::pin(async {
                Err(prism_abi::WireError::new(
                    prism_abi::ErrorKind::Cancelled,
                    "the served applications stopped",
                ))
            }),
        }
    }
}

impl crate::cluster::DeploymentCalls for Apps {
    fn call_deployment(
        &self,
        tenant: &TenantId,
        app: &str,
        deployment: &str,
        call: crate::cluster::DeploymentCall,
    ) -> crate::sync::BoxFuture<'static, Result<bytes::Bytes, prism_abi::WireError>> {
        // A split chooses its way here as at the ingress.
        let target = self.get(tenant, app).and_then(|app| {
            let find = |name: &str| {
                app.deployments
                    .iter()
                    .find(|d| d.config.name == name)
                    .cloned()
            };
            let target = find(deployment)?;
            match target.pick_way() {
                Some(way) => find(&way),
                None => Some(target),
            }
        });
        let entered = target.as_ref().map(super::deployment::Entered::new);
        let (app, deployment) = (app.to_string(), deployment.to_string());
        Box::pin(async move {
            use prism_abi::{ErrorKind, WireError};
            let _entered = entered;
            let Some(target) = target else {
                return Err(WireError::new(
                    ErrorKind::InvalidArgument,
                    format!("no deployment {deployment} in an app {app} of this tenant"),
                ));
            };
            let request = match call {
                crate::cluster::DeploymentCall::Method { method, args } => {
                    return target.call_method(&method, args).await;
                }
                crate::cluster::DeploymentCall::Request(request) => request,
            };
            let request: prism_abi::http::Request =
                rmp_serde::from_slice(&request).map_err(|e| {
                    WireError::new(
                        ErrorKind::InvalidArgument,
                        format!("not a prism::http::Request: {e}"),
                    )
                })?;
            let limit = target.config.max_body_bytes;
            let response = if request.body.len() as u64 > limit {
                prism_abi::http::Response::text(&format!("the body is larger than {limit} bytes"))
                    .with_status(413)
            } else {
                target.call(request).await.response
            };
            prism_abi::encode_value(&response)
                .map(bytes::Bytes::from)
                .map_err(|e| WireError::new(ErrorKind::System, e.to_string()))
        })
    }
}
