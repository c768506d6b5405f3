//! An ingress on every node: the head publishes its served applications
//! (routes, deployments, the replicas that take requests) and each node
//! serving HTTP keeps a copy ([`Mirror`]) that sends its requests
//! straight to those replicas — a function deployment's task placed by
//! the node's own scheduler, a class replica's actor called on whichever
//! node hosts it — never through the head. The node reports back the
//! load its ingress puts on each deployment, so the head's autoscaler
//! counts it (a request to a deployment at zero replicas starts one) and
//! a retiring version waits for the nodes' requests in flight.
//!
//! What stays the head's: making, replacing and draining replicas,
//! reconfiguring them, health checks. A node's copy of a deployment
//! bounds the requests it sends each replica with the deployment's
//! `max_ongoing_requests` and queues up to `max_queued_requests` itself:
//! the limits hold per ingress.

use super::apps::{Apps, Target, resolve_in, routes_of};
use super::config::AppConfig;
use super::deployment::{Deployment, REMOTE_LOAD_TTL, RemoteLoad};
use super::replicas::ReplicaSet;
use super::routes::RouteTable;
use crate::ids::{ActorId, ModuleHash, OwnerId};
use crate::node::{Node, ServiceContext};
use crate::security::tenants::TenantId;
use crate::sync::{MutexExt, RwLockExt};
use crate::task::JobTicket;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::time::Instant;

/// How often a node serving HTTP syncs with the head (and at once when
/// a request finds a deployment with no replica, then every
/// [`FAST_SYNC_INTERVAL`] while requests wait).
pub const SYNC_INTERVAL: Duration = Duration::from_millis(250);
/// How often a node syncs while requests wait for a replica.
pub const FAST_SYNC_INTERVAL: Duration = Duration::from_millis(20);

/// A served application as the head publishes it to nodes.
#[derive(Clone)]
pub struct AppView {
    /// Its tenant.
    pub tenant: TenantId,
    /// Its configuration.
    pub config: AppConfig,
    /// Its module.
    pub module: ModuleHash,
    /// The owner its handlers and replicas run under (a new one per
    /// version).
    pub owner: OwnerId,
    /// What its handlers run with.
    pub ticket: Arc<JobTicket>,
    /// Each deployment's replicas that take requests: id, and a class
    /// replica's actor.
    pub replicas: Vec<(String, Vec<PublishedReplica>)>,
}

/// A replica as the head publishes it: its id, and a class replica's
/// actor (`None` while it is being replaced).
pub type PublishedReplica = (String, Option<ActorId>);

/// The load a node's ingress puts on one deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentLoad {
    /// The application's tenant.
    pub tenant: TenantId,
    /// The application's owner (its version).
    pub owner: OwnerId,
    /// The deployment's name.
    pub deployment: String,
    /// Requests running.
    pub ongoing: u32,
    /// Requests waiting for a replica (or a batch).
    pub queued: u32,
    /// The replicas requests run on.
    pub busy: Vec<String>,
}

impl Apps {
    /// Every served application as nodes' ingresses need it.
    pub fn view(&self) -> Vec<AppView> {
        let state = self.state.read_locked();
        state
            .apps
            .values()
            .map(|app| AppView {
                tenant: app.tenant.clone(),
                config: app.config.clone(),
                module: app.module,
                owner: app.service.owner(),
                ticket: app.service.ticket(),
                replicas: app
                    .deployments
                    .iter()
                    .map(|d| {
                        let replicas = d
                            .replicas
                            .replicas()
                            .iter()
                            .filter(|r| !r.draining())
                            .map(|r| (r.id.clone(), r.actor()))
                            .collect();
                        (d.config.name.clone(), replicas)
                    })
                    .collect(),
            })
            .collect()
    }

    /// Takes node `node`'s report of the load its ingress puts on each
    /// deployment (current and retiring versions): the autoscalers count
    /// it, and a deployment at zero replicas with requests waiting there
    /// starts one (those are returned).
    pub fn report_loads(&self, node: &str, loads: &[DeploymentLoad]) -> Vec<Arc<Deployment>> {
        let mut woken = Vec::new();
        self.mirrored.store(true, Ordering::Release);
        let now = Instant::now();
        let retiring = self.retiring.locked().clone();
        let state = self.state.read_locked();
        let apps = state.apps.values().chain(retiring.iter());
        let mut by_owner: HashMap<(OwnerId, &str), &Arc<Deployment>> = HashMap::new();
        for app in apps {
            for d in &app.deployments {
                by_owner.insert((app.service.owner(), d.config.name.as_str()), d);
            }
        }
        for load in loads {
            let Some(d) = by_owner.get(&(load.owner, load.deployment.as_str())) else {
                continue;
            };
            if d.tenant != load.tenant {
                continue;
            }
            let remote = RemoteLoad {
                load: load.ongoing.saturating_add(load.queued),
                busy: load.busy.clone(),
                at: now,
            };
            d.remote_loads.locked().insert(node.to_string(), remote);
            if load.queued > 0 && d.replicas.active() == 0 {
                d.replicas.demand.notify_one();
                woken.push((*d).clone());
            }
        }
        woken
    }

    /// Waits (up to [`FAST_SYNC_INTERVAL`] × 5) for `woken` deployments
    /// to have a replica, so that the node that asked for one gets it in
    /// the same sync.
    pub async fn first_replicas(woken: &[Arc<Deployment>]) {
        let deadline = Instant::now() + FAST_SYNC_INTERVAL * 5;
        while woken.iter().any(|d| d.replicas.active() == 0) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// One application as a node's ingress has it.
struct MirroredApp {
    owner: OwnerId,
    config: AppConfig,
    service: ServiceContext,
    deployments: Vec<Arc<Deployment>>,
}

#[derive(Default)]
struct MirrorState {
    routes: RouteTable,
    targets: HashMap<String, Arc<Deployment>>,
    apps: HashMap<(TenantId, String), MirroredApp>,
}

/// A node's copy of the head's served applications, for its ingress.
pub struct Mirror {
    node: Arc<Node>,
    state: RwLock<MirrorState>,
    /// Versions replaced or deleted whose requests here still run.
    retiring: Mutex<Vec<MirroredApp>>,
    /// Signalled when a request finds a deployment with no replica: the
    /// node should sync now.
    pub wake: Arc<tokio::sync::Notify>,
}

impl Mirror {
    /// No applications yet, on `node`.
    pub fn new(node: Arc<Node>) -> Arc<Mirror> {
        Arc::new(Mirror {
            node,
            state: RwLock::default(),
            retiring: Mutex::default(),
            wake: Arc::default(),
        })
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

    /// Whether requests here wait for a replica.
    pub fn waiting(&self) -> bool {
        let state = self.state.read_locked();
        state
            .apps
            .values()
            .flat_map(|a| &a.deployments)
            .any(|d| d.replicas.queued() > 0)
    }

    /// The load this node's ingress puts on each deployment it has
    /// (retiring versions included, until their requests end).
    pub fn loads(&self) -> Vec<DeploymentLoad> {
        let state = self.state.read_locked();
        let retiring = self.retiring.locked();
        state
            .apps
            .values()
            .chain(retiring.iter())
            .flat_map(|app| {
                app.deployments.iter().map(|d| DeploymentLoad {
                    tenant: d.tenant.clone(),
                    owner: app.owner,
                    deployment: d.config.name.clone(),
                    ongoing: d.replicas.ongoing(),
                    queued: (d.replicas.queued() + d.batch_waiting()) as u32,
                    busy: d
                        .replicas
                        .replicas()
                        .iter()
                        .filter(|r| r.ongoing() > 0)
                        .map(|r| r.id.clone())
                        .collect(),
                })
            })
            .collect()
    }

    /// Makes the copy `apps`, as the head published them: new versions
    /// open here, replicas follow, routes swap in one step, and versions
    /// that went away retire ([`Mirror::retire_idle`]). Whether every
    /// application could open here.
    pub async fn apply(&self, apps: Vec<AppView>) -> bool {
        let mut complete = true;
        let mut fresh: HashMap<(TenantId, String), MirroredApp> = HashMap::new();
        let mut kept = Vec::new();
        for view in apps {
            let key = (view.tenant.clone(), view.config.name.clone());
            let current = {
                let state = self.state.read_locked();
                state
                    .apps
                    .get(&key)
                    .filter(|a| a.owner == view.owner)
                    .map(|a| {
                        (
                            a.config == view.config,
                            a.deployments.clone(),
                            a.service.clone(),
                        )
                    })
            };
            let (deployments, service) = match current {
                Some((true, deployments, service)) => (deployments, service),
                other => {
                    // A new version, or the same one with a new config
                    // (reconfigured in place): new copies of its
                    // deployments.
                    let service = match other {
                        Some((_, _, service)) => service,
                        None => match self
                            .node
                            .open_remote_service(view.owner, view.module, view.ticket.clone())
                            .await
                        {
                            Ok(service) => service,
                            Err(e) => {
                                tracing::warn!(tenant = %view.tenant, app = %view.config.name, "cannot serve the app here: {}", e.message);
                                complete = false;
                                continue;
                            }
                        },
                    };
                    (self.copies(&view, &service), service)
                }
            };
            for (name, replicas) in &view.replicas {
                if let Some(d) = deployments.iter().find(|d| d.config.name == *name) {
                    d.replicas.sync(replicas);
                }
            }
            kept.push(key.clone());
            fresh.insert(
                key,
                MirroredApp {
                    owner: view.owner,
                    config: view.config,
                    service,
                    deployments,
                },
            );
        }
        let mut routes = RouteTable::new();
        let mut targets = HashMap::new();
        for ((tenant, _), app) in &fresh {
            for route in routes_of(tenant, &app.config) {
                let prefix = route.prefix.clone();
                if routes.add(route).is_ok()
                    && let Some(d) = app
                        .deployments
                        .iter()
                        .find(|d| d.config.prefix().as_deref() == Some(prefix.as_str()))
                {
                    targets.insert(prefix, d.clone());
                }
            }
        }
        let old = {
            let mut state = self.state.write_locked();
            let old = std::mem::take(&mut state.apps);
            *state = MirrorState {
                routes,
                targets,
                apps: fresh,
            };
            old
        };
        let state = self.state.read_locked();
        let mut retiring = self.retiring.locked();
        for (key, app) in old {
            if state.apps.get(&key).is_none_or(|a| a.owner != app.owner) {
                retiring.push(app);
            }
        }
        complete
    }

    /// Forgets the versions that went away once their requests here have
    /// ended. (Their context on this node is the head's to end: it ends
    /// an application's owner on every node once the version retired
    /// there too.)
    pub fn retire_idle(&self) {
        self.retiring.locked().retain(|app| {
            let busy = app.deployments.iter().any(|d| d.busy());
            if !busy {
                for d in &app.deployments {
                    d.stop();
                }
            }
            busy
        });
    }

    /// Copies of `view`'s deployments on this node, with no replica yet.
    fn copies(&self, view: &AppView, service: &ServiceContext) -> Vec<Arc<Deployment>> {
        let mut copies = Vec::new();
        for d in &view.config.deployments {
            let Ok(kind) = d.kind() else {
                continue;
            };
            let class = matches!(kind, super::config::DeploymentKind::Class { .. });
            let replicas = ReplicaSet::new(
                Vec::new(),
                d.max_ongoing_requests,
                d.max_queued_requests,
                class,
            );
            let copy = Arc::new(
                Deployment::new(
                    &view.config,
                    d.clone(),
                    kind,
                    view.tenant.clone(),
                    replicas,
                    self.node.clone(),
                    service.clone(),
                )
                .into_mirror(),
            );
            // A request finding no replica wakes the sync.
            let wake = self.wake.clone();
            let weak = Arc::downgrade(&copy);
            tokio::spawn(async move {
                // Holds the copy at most a second after it is dropped.
                while let Some(d) = weak.upgrade() {
                    if d.stopped.load(Ordering::Acquire) {
                        return;
                    }
                    let notified = d.replicas.demand.notified();
                    if tokio::time::timeout(REMOTE_LOAD_TTL, notified)
                        .await
                        .is_ok()
                    {
                        wake.notify_one();
                    }
                }
            });
            copies.push(copy);
        }
        copies
    }

    /// Stops every copy (the node is shutting down).
    pub fn stop_all(&self) {
        let apps = std::mem::take(&mut self.state.write_locked().apps);
        let retiring = std::mem::take(&mut *self.retiring.locked());
        for app in apps.into_values().chain(retiring) {
            for d in &app.deployments {
                d.stop();
            }
        }
    }
}
