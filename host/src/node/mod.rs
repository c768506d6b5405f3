//! A node: the data plane of one process. It owns the object store, the
//! scheduler and the runtime, and wires them together:
//! - as the scheduler's [`TaskExecutor`] it runs attempts on the runtime;
//! - as each running guest's `GuestHost` (through `TaskHost`) it turns
//!   guest requests into scheduler submissions and object store reads;
//! - as a [`NodeService`] it starts and stops jobs for the head.
//!
//! A guest's `submit` goes straight into the local scheduler: the hot path
//! never leaves the process.
//!
//! The node is one type, [`Node`], whose methods are split by concern:
//!
//! | file | what it holds |
//! |---|---|
//! | `mod.rs` | the node's fields, start-up, links to the cluster, visibility checks, the `TaskExecutor` and `NodeService` roles |
//! | `jobs.rs` | drivers that run here: module, driver, result, task specs |
//! | `guest_host.rs` | `TaskHost`: every `prism_v1` request of a running guest, with its permission checks |
//! | `actor_host.rs` | actors guests create (placement here or elsewhere) and the `ActorEnv` role for local actors |
//! | `remote_actors.rs` | actors on other nodes: calls, creation, names, relocation when their node dies |
//! | `remote_jobs.rs` | attempts other nodes place here, and the job contexts kept for them |
//! | `groups.rs` | placement groups held against their tenants |
//! | `serving.rs` | served applications: their context, requests as tasks, replicas as actors |

mod actor_host;
mod groups;
mod guest_host;
mod jobs;
mod remote_actors;
mod remote_jobs;
mod serving;
#[cfg(test)]
mod tests;

pub use remote_actors::RemoteActorCall;
pub use remote_jobs::RemoteCall;
pub use serving::ServiceContext;

use crate::actors::ActorManager;
use crate::cluster::job::{JobContext, JobSpec, LogSource};
use crate::cluster::placement::PlacementService;
use crate::cluster::{
    ActorDirectory, ClusterError, HeadService, NodeService, NodeStatus, OtherNodes, RemoteActors,
};
use crate::config::NodeConfig;
use crate::gpu::{AdapterSummary, GpuUsageStats, Gpus};
use crate::ids::{ActorId, ObjectId, OwnerId};
use crate::meta::MetaStore;
use crate::objects::ObjectStore;
use crate::objects::named::{NamedObjects, NamedStore};
use crate::runtime::{BoxFuture, Invocation, Reuse, Runtime};
use crate::scheduler::accounts::{Accounts, TenantAccount};
use crate::scheduler::remote::Remote;
use crate::scheduler::resources::{ResourceError, ResourceSet};
use crate::scheduler::{Scheduler, TaskExecutor, TaskRun};
use crate::security::JobGrant;
use crate::security::tenants::{NamespaceRef, TenantId};
use crate::sync::MutexExt;
use crate::task::{Arg, EntryKind};
use bytes::Bytes;
use groups::HeldGroup;
use guest_host::TaskHost;
use prism_abi::{ErrorKind, WireError};
use remote_actors::{NamedElsewhere, Relocatable};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

/// Held while a (tenant, module) compiles; see `Node::load_module`.
type CompileGate = Arc<tokio::sync::Mutex<()>>;

/// One worker node.
pub struct Node {
    me: Weak<Node>,
    config: NodeConfig,
    objects: Arc<ObjectStore>,
    scheduler: Scheduler,
    runtime: Runtime,
    head: Arc<dyn HeadService>,
    /// The context of every owner running here: jobs whose driver runs
    /// here or that placed calls here, and actors.
    jobs: Mutex<HashMap<OwnerId, Arc<JobContext>>>,
    actors: Arc<ActorManager>,
    meta: Arc<MetaStore>,
    named: Arc<NamedObjects>,
    /// Where guests' named objects go: `named`, or the head's.
    named_remote: Option<Arc<dyn NamedStore>>,
    /// The GPUs, found the first time anything needs them.
    gpus: OnceLock<Gpus>,
    /// The other nodes, in a multi-node cluster.
    remote: Option<Arc<dyn Remote>>,
    /// Their actors.
    remote_actors: Option<Arc<dyn RemoteActors>>,
    /// The cluster-wide actor names, in a multi-node cluster.
    directory: Option<Arc<dyn ActorDirectory>>,
    /// Where placement groups are made.
    placement: Arc<dyn PlacementService>,
    /// Signalled whenever an actor is registered here (calls from other
    /// nodes may arrive before the creation they follow).
    actor_registered: tokio::sync::watch::Sender<u64>,
    /// Actors this node created on other nodes that may restart: where
    /// they are, how to make them again, what they hold, restarts left.
    relocatable: Mutex<HashMap<ActorId, Relocatable>>,
    /// Named actors this node created on other nodes: their tenant,
    /// namespace and name, so that `kill` here frees the name at once.
    named_elsewhere: Mutex<HashMap<ActorId, NamedElsewhere>>,
    /// Actors restarted on another node after theirs died: old id → new.
    moved: Mutex<HashMap<ActorId, ActorId>>,
    /// Actors other nodes placed here whose creation failed, and why.
    /// (the actor's tenant, why).
    failed_actors: Mutex<HashMap<ActorId, (TenantId, WireError)>>,
    /// Owners (jobs, actors) on other nodes that ran tasks here.
    remote_jobs: Mutex<std::collections::HashSet<OwnerId>>,
    /// Logs of other nodes' work running here: by owner, how many calls
    /// run, the node their lines go to meanwhile, and the relay's
    /// generation (see `relay_logs`).
    log_relays: Mutex<HashMap<OwnerId, (usize, String, u64)>>,
    relay_generation: std::sync::atomic::AtomicU64,
    /// What each tenant uses here.
    accounts: Accounts,
    /// The node's metrics (`/metrics`).
    metrics: Arc<crate::metrics::NodeMetrics>,
    /// What became of its jobs' calls (`prism job tasks`).
    events: Arc<crate::events::TaskEvents>,
    /// Jobs the head started here that have not ended, and whether the
    /// head asked to stop them: a stop that comes while the job's module
    /// is still loading keeps its driver from starting at all.
    starting_jobs: Mutex<HashMap<OwnerId, bool>>,
    /// One compilation at a time per (tenant, module): callers that ask
    /// for a module being compiled wait for it and take it from the cache.
    compiling: Mutex<HashMap<(String, crate::ids::ModuleHash), CompileGate>>,
    /// Where guests' calls to served deployments go (set when the
    /// applications exist, after the node starts).
    deployments: std::sync::RwLock<Option<Arc<dyn crate::cluster::DeploymentCalls>>>,
    /// Placement groups guests here made, counted against their tenants:
    /// group → (owning job, tenant, the bundles' total).
    held_groups: Mutex<HashMap<String, HeldGroup>>,
    _temp_dir: Option<tempfile::TempDir>,
}

/// What a node is joined to, fixed when it starts.
pub struct NodeLinks {
    /// Where its guests' placement groups are made.
    pub placement: Arc<dyn PlacementService>,
    /// The rest of a multi-node cluster (`None`: the node is alone, as in
    /// `prism run`).
    pub cluster: Option<ClusterLinks>,
}

/// How a node of a multi-node cluster reaches the rest of it.
pub struct ClusterLinks {
    /// The other nodes: its scheduler places tasks there and pulls
    /// objects from them; its guests' actors may live there.
    pub peers: Arc<dyn OtherNodes>,
    /// The cluster's actor names (the head's).
    pub directory: Arc<dyn ActorDirectory>,
    /// Where guests' named objects go: the head's (`None`: this node's
    /// own, on the head's node).
    pub named: Option<Arc<dyn NamedStore>>,
}

impl Node {
    /// Starts a node with `config`, reporting to `head`. `tag` is the
    /// number the head gave this node when it joined (0 in an embedded
    /// cluster): every object and actor id the node mints carries it, so
    /// an id says where its object or actor lives. `links` makes what the
    /// node is joined to, given the node (not yet started: keep it weak)
    /// and its object store.
    pub fn start(
        config: NodeConfig,
        head: Arc<dyn HeadService>,
        tag: u32,
        links: impl FnOnce(&Weak<Node>, &Arc<ObjectStore>) -> NodeLinks,
    ) -> Result<Arc<Node>, ClusterError> {
        if config.resources.contains_key(prism_abi::gpu::GPU_RESOURCE) {
            return Err(ClusterError::Startup(
                "`GPU` is not a custom resource: the node discovers its GPUs (see the gpu settings)"
                    .into(),
            ));
        }
        let (data_dir, temp_dir) = match &config.data_dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let temp = tempfile::Builder::new().prefix("prism-node-").tempdir()?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        std::fs::create_dir_all(&data_dir)?;
        let objects = Arc::new(ObjectStore::with_tag(
            config.object_store_capacity,
            data_dir.join("spill"),
            tag,
        )?);
        let meta = Arc::new(
            MetaStore::open(&data_dir.join("meta.redb"))
                .map_err(|e| ClusterError::Startup(e.to_string()))?,
        );
        let runtime = Runtime::new(&config.runtime, data_dir.join("modules"))
            .map_err(|e| ClusterError::Startup(e.to_string()))?;
        let total = ResourceSet::new(config.cpus, config.memory, &config.resources)
            .map_err(|e| ClusterError::Startup(e.to_string()))?;
        let metrics =
            crate::metrics::NodeMetrics::new(config.metrics.enabled, config.metrics.guest_series);
        Ok(Arc::new_cyclic(|me: &Weak<Node>| {
            let links = links(me, &objects);
            let (remote, remote_actors, directory, named_remote) = match links.cluster {
                Some(cluster) => {
                    let remote: Arc<dyn Remote> = cluster.peers.clone();
                    let actors: Arc<dyn RemoteActors> = cluster.peers;
                    (
                        Some(remote),
                        Some(actors),
                        Some(cluster.directory),
                        cluster.named,
                    )
                }
                None => (None, None, None, None),
            };
            let executor: Weak<dyn TaskExecutor> = me.clone();
            let scheduler = Scheduler::new(
                total,
                objects.clone(),
                executor,
                remote.clone(),
                config.retry_backoff,
            );
            scheduler.limit_instances(
                config.runtime.instance_slots,
                config.runtime.tenant_instance_share,
            );
            let events = Arc::new(crate::events::TaskEvents::new(
                remote.as_ref().map_or("head", |r| r.local_id()),
            ));
            if config.task_events {
                scheduler.record_events(events.clone());
            }
            Node {
                events,
                me: me.clone(),
                scheduler,
                objects,
                runtime,
                head,
                jobs: Mutex::new(HashMap::new()),
                actors: Arc::new(ActorManager::default()),
                named: Arc::new(NamedObjects::new(meta.clone())),
                named_remote,
                meta,
                gpus: OnceLock::new(),
                remote,
                remote_actors,
                directory,
                placement: links.placement,
                actor_registered: tokio::sync::watch::Sender::new(0),
                failed_actors: Mutex::new(HashMap::new()),
                relocatable: Mutex::new(HashMap::new()),
                named_elsewhere: Mutex::new(HashMap::new()),
                moved: Mutex::new(HashMap::new()),
                remote_jobs: Mutex::new(Default::default()),
                log_relays: Mutex::new(HashMap::new()),
                relay_generation: std::sync::atomic::AtomicU64::new(0),
                accounts: Accounts::new(metrics.clone()),
                metrics,
                held_groups: Mutex::new(HashMap::new()),
                deployments: std::sync::RwLock::new(None),
                starting_jobs: Mutex::new(HashMap::new()),
                compiling: Mutex::new(HashMap::new()),
                config,
                _temp_dir: temp_dir,
            }
        }))
    }

    /// The node's object store.
    pub fn objects(&self) -> &Arc<ObjectStore> {
        &self.objects
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Arc<crate::metrics::NodeMetrics> {
        &self.metrics
    }

    /// The node's task events.
    pub fn events(&self) -> &Arc<crate::events::TaskEvents> {
        &self.events
    }

    /// The node's scheduler.
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// The node's runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The node's actors.
    pub fn actors(&self) -> &Arc<ActorManager> {
        &self.actors
    }

    /// The node's GPUs, found on first use and then offered to the
    /// scheduler. Finding them loads the machine's Vulkan drivers (tens of
    /// milliseconds, and threads that must not race process exit), so a
    /// node whose work never asks for a GPU never pays for it: the first
    /// `num_gpus` request, `status` or `gpu_adapters` does.
    fn gpus(&self) -> &Gpus {
        self.gpus.get_or_init(|| {
            let gpus = Gpus::discover(&self.config.gpu);
            self.scheduler.add_gpus(gpus.count());
            gpus
        })
    }

    /// Whether the node has looked for its GPUs yet.
    pub fn gpus_found(&self) -> bool {
        self.gpus.get().is_some()
    }

    /// The GPUs the node offers, indexed as guests see them.
    pub fn gpu_adapters(&self) -> Vec<AdapterSummary> {
        self.gpus().adapters()
    }

    /// What the node holds and uses now, for `/metrics`.
    pub fn metric_gauges(&self) -> crate::metrics::NodeGauges {
        let (total, available) = (self.scheduler.total(), self.scheduler.available());
        let mut resources = vec![
            (
                "cpus".to_string(),
                total.cpu_milli as f64 / 1000.0,
                available.cpu_milli as f64 / 1000.0,
            ),
            (
                "memory_bytes".to_string(),
                total.memory as f64,
                available.memory as f64,
            ),
        ];
        for (name, milli) in &total.custom {
            let free = available.custom.get(name).copied().unwrap_or(0);
            resources.push((name.clone(), *milli as f64 / 1000.0, free as f64 / 1000.0));
        }
        let stats = self.scheduler.stats();
        let gpu = self
            .gpus
            .get()
            .filter(|g| g.count() > 0)
            .map(|g| g.usage())
            .map(|u| (u.live_buffers, u.live_bytes));
        crate::metrics::NodeGauges {
            resources,
            pending_tasks: stats.pending as u64,
            running_tasks: stats.running as u64,
            store: self.objects.stats(),
            pulled: self.objects.pulled(),
            gpu,
            tenants: self.accounts.all().iter().map(|t| t.gauges()).collect(),
            nodes_alive: None,
        }
    }

    /// GPU buffers alive in this node's instances.
    pub fn gpu_usage(&self) -> GpuUsageStats {
        self.gpus().usage()
    }

    /// The GPU context of an instance holding `assignment`.
    fn gpu_context(&self, assignment: &[(usize, u64)]) -> crate::gpu::GpuContext {
        if assignment.is_empty() {
            crate::gpu::GpuContext::none()
        } else {
            self.gpus().context(assignment)
        }
    }

    /// The resources a task or actor asks for: `num_gpus` becomes the `GPU`
    /// resource, which may not be named directly.
    fn request(
        &self,
        num_cpus: f64,
        memory: u64,
        num_gpus: Option<f64>,
        resources: &std::collections::BTreeMap<String, f64>,
    ) -> Result<ResourceSet, ResourceError> {
        let gpu = prism_abi::gpu::GPU_RESOURCE;
        if resources.contains_key(gpu) {
            return Err(ResourceError::GpuByName(gpu.to_string()));
        }
        let mut request = ResourceSet::new(num_cpus, memory, resources)?;
        if let Some(n) = num_gpus {
            let milli = crate::scheduler::resources::to_milli(n)?;
            crate::scheduler::resources::GpuShares::validate(milli)?;
            if milli > 0 {
                // The scheduler knows the node's GPUs only once they are found.
                self.gpus();
                request.custom.insert(gpu.to_string(), milli);
            }
        }
        Ok(request)
    }

    fn job(&self, id: OwnerId) -> Option<Arc<JobContext>> {
        self.jobs.locked().get(&id).cloned()
    }

    /// Whether owner `id` runs here (a job's driver or an actor, or
    /// calls another node placed here).
    pub fn has_job(&self, id: OwnerId) -> bool {
        self.job(id).is_some()
    }

    /// The tenant of an owner (job or actor) this node knows.
    pub fn job_tenant(&self, id: OwnerId) -> Option<TenantId> {
        self.job(id).map(|j| j.ticket.grant.tenant.clone())
    }

    /// Whether a guest of `job` may see object `id`: only objects of its
    /// own tenant's jobs. Another tenant's object is not found, exactly
    /// as a non-existent one.
    fn object_visible(&self, id: ObjectId, job: &JobContext) -> bool {
        match self.objects.owner(id) {
            None => true, // not here (yet): not found, or pulled for this job
            Some(owner) if owner == job.id => true,
            Some(owner) => self
                .job(owner)
                .is_some_and(|o| o.ticket.grant.tenant == job.ticket.grant.tenant),
        }
    }

    /// Whether an actor of this node is `tenant`'s (unknown ids are
    /// answered as dead actors by the actor manager anyway).
    fn actor_visible(&self, actor: ActorId, tenant: &TenantId) -> bool {
        self.actors
            .get(actor)
            .is_none_or(|record| record.namespace.tenant() == tenant.as_str())
    }

    /// What each tenant uses on this node, for the other nodes' quotas.
    pub fn tenant_usage(&self) -> HashMap<String, crate::scheduler::accounts::Usage> {
        self.accounts.usage()
    }

    /// What each tenant uses on the other nodes (the latest report):
    /// quotas here count it with this node's own use.
    pub fn set_usage_elsewhere(&self, usage: HashMap<String, crate::scheduler::accounts::Usage>) {
        self.accounts.set_elsewhere(usage);
    }

    /// A tenant's usage on this node, if it ran anything here.
    pub fn tenant_account(&self, tenant: &TenantId) -> Option<Arc<TenantAccount>> {
        self.accounts.tenant(tenant)
    }

    /// This node's own named objects (the cluster's, on the head's node).
    pub fn named_objects(&self) -> &Arc<NamedObjects> {
        &self.named
    }

    fn named_store(&self) -> Arc<dyn NamedStore> {
        match &self.named_remote {
            Some(remote) => remote.clone(),
            None => self.named.clone(),
        }
    }

    fn placement(&self) -> Option<Arc<dyn PlacementService>> {
        Some(self.placement.clone())
    }

    /// Whether object `id` here belongs to a job of `tenant` (for another
    /// node pulling it). An object whose owner this node does not know is
    /// nobody's.
    pub fn object_of_tenant(&self, id: ObjectId, tenant: &TenantId) -> bool {
        match self.objects.owner(id) {
            None => true, // not here: answered as not found
            Some(owner) => self
                .job(owner)
                .is_some_and(|j| j.ticket.grant.tenant == *tenant),
        }
    }

    /// The log of a job running here (its driver's node keeps the whole
    /// log; other nodes hand their lines back with each call).
    pub fn job_log(&self, id: crate::ids::JobId) -> Option<Arc<crate::cluster::job::JobLog>> {
        self.job(OwnerId::of_job(id)).map(|j| j.log.clone())
    }

    /// Appends lines another node sent back for `job`.
    pub fn append_logs(&self, job: OwnerId, lines: Vec<crate::cluster::job::LogLine>) {
        if let Some(context) = self.job(job) {
            for line in lines {
                context.log.push(line.source, &line.function, &line.text);
            }
        }
    }

    /// Pulls `id` here if it lives on another node (see [`Remote::fetch`]).
    fn fetch_remote(&self, id: ObjectId, owner: OwnerId, tenant: &TenantId) {
        if let Some(remote) = &self.remote {
            remote.fetch(id, owner, tenant);
        }
    }

    /// `args` as a guest of `job` may pass them: a reference to an object
    /// the job may not see becomes [`Arg::Missing`] (the call fails with
    /// `object_not_found`, as for an object that does not exist), and,
    /// where the call is made (`submitted`), without `GetObject` no
    /// reference passes at all. (Where it runs, references may also be
    /// large values the caller's node moved into the store.)
    fn scrub_refs(&self, job: &JobContext, args: Vec<Arg>, submitted: bool) -> Vec<Arg> {
        args.into_iter()
            .map(|arg| match arg {
                Arg::Ref(_) if submitted && !job.ticket.grant.permissions.get_object => Arg::Invalid(
                    "the tenant's policy does not permit this job's guests to read objects (action GetObject)"
                        .into(),
                ),
                Arg::Ref(id) if !self.object_visible(id, job) => Arg::Missing(id),
                other => other,
            })
            .collect()
    }

    /// Frees the ready objects among `ids` that `job` of `tenant` owns in
    /// this node's store, giving their bytes back to its quota; returns
    /// how many. Nothing is freed for a job unknown here or of another
    /// tenant.
    pub fn free_objects(&self, job: OwnerId, tenant: &TenantId, ids: &[ObjectId]) -> usize {
        let Some(context) = self.job(job).filter(|c| c.ticket.grant.tenant == *tenant) else {
            return 0;
        };
        let mut freed = 0;
        for id in ids {
            if let Some(bytes) = self.objects.free(job, *id) {
                context.account.release_bytes(bytes);
                freed += 1;
            }
        }
        freed
    }

    /// The largest linear memory a guest of a job with `grant` may have:
    /// the node's cap, or its namespace's if lower.
    fn max_memory(&self, grant: &JobGrant) -> u64 {
        let node = self.config.runtime.max_task_memory;
        grant
            .capabilities
            .as_ref()
            .and_then(|c| c.max_task_memory)
            .map_or(node, |cap| cap.min(node))
    }

    /// `asked`, cut to the namespace's time cap of a job with `grant`.
    fn call_timeout_for(&self, grant: &JobGrant, asked: Duration) -> Duration {
        grant
            .capabilities
            .as_ref()
            .and_then(|c| c.max_task_time_ms)
            .map_or(asked, |cap| asked.min(Duration::from_millis(cap)))
    }
}

impl TaskExecutor for Node {
    fn execute(&self, run: TaskRun) -> BoxFuture<'static, Result<Bytes, WireError>> {
        let node = self.me.upgrade();
        Box::pin(async move {
            let node = node.ok_or_else(|| WireError::new(ErrorKind::System, "the node stopped"))?;
            let job = node
                .job(run.spec.owner)
                .ok_or_else(|| WireError::new(ErrorKind::Cancelled, "the task's job has ended"))?;
            let module = job.module.clone();
            let host = Arc::new(TaskHost::new(
                node.clone(),
                job.clone(),
                run.slot.clone(),
                run.spec.function.clone(),
            ));
            let output = host.clone();
            let call = Invocation {
                entry: run.spec.entry,
                function: run.spec.function.clone(),
                input: run.input,
                attempt: run.attempt,
                timeout: run.spec.timeout,
                memory_limit: run.spec.memory_limit,
                cancel: run.cancel,
                env: job.ticket.env.clone(),
                sandbox: job.sandbox.clone(),
                // Drivers run once per job; tasks may share warm instances
                // within their job.
                reuse: (run.spec.entry == EntryKind::Task).then(|| Reuse {
                    job: job.id.as_u64(),
                    tenant: job.tenant.clone(),
                    max_calls: run.spec.max_calls,
                }),
                metrics: job.account.tenant().metrics().cloned(),
            };
            let gpu = node.gpu_context(run.slot.gpus());
            let mut outcome = node.runtime.invoke(module, call, host, gpu).await;
            let function = &run.spec.function;
            job.log
                .push_output(LogSource::Stdout, function, &outcome.stdout);
            job.log
                .push_output(LogSource::Stderr, function, &outcome.stderr);
            if outcome.output_dropped > 0 {
                job.log.push(
                    LogSource::System,
                    function,
                    &format!(
                        "{} bytes of output dropped over the per-task cap",
                        outcome.output_dropped
                    ),
                );
            }
            if let Err(e) = &outcome.result
                && e.kind.is_retryable()
            {
                job.log.push(
                    LogSource::System,
                    function,
                    &format!("attempt {} failed ({}): {}", run.attempt, e.kind, e.message),
                );
            }
            if let Err(e) = &mut outcome.result {
                output.remember(&outcome.stdout);
                output.remember(&outcome.stderr);
                e.origin = Some(Box::new(prism_abi::ErrorOrigin {
                    task: run.spec.return_id.to_string(),
                    function: run.spec.function.clone(),
                    node: node.objects.node_tag(),
                    output: output.recent_output(),
                }));
            } else if let Some(trace) = &run.trace {
                // What it wrote without a final newline is still here;
                // complete lines were remembered as they were written.
                output.remember(&outcome.stdout);
                output.remember(&outcome.stderr);
                let lines = output.recent_output();
                if !lines.is_empty() {
                    trace.output(lines);
                }
            }
            outcome.result
        })
    }
}

impl crate::cluster::HomeNode for Node {
    fn job_runs(&self, job: OwnerId) -> bool {
        self.has_job(job)
    }

    fn append_logs(&self, job: OwnerId, lines: Vec<crate::cluster::job::LogLine>) {
        Node::append_logs(self, job, lines);
    }

    fn view_changed(&self, left: &[String]) {
        if !left.is_empty() {
            self.nodes_left(left);
        }
        self.scheduler.poke();
    }

    fn follow_moved_actor(&self, actor: ActorId) -> BoxFuture<'_, Option<ActorId>> {
        Box::pin(Node::follow_moved_actor(self, actor))
    }

    fn call_local_actor(
        &self,
        actor: ActorId,
        method: String,
        args: Vec<Arg>,
        return_id: ObjectId,
        tenant: &TenantId,
    ) {
        Node::call_local_actor(self, actor, method, args, return_id, tenant);
    }
}

impl NodeService for Node {
    fn start_job(&self, spec: JobSpec) -> BoxFuture<'static, Result<(), ClusterError>> {
        let node = self.me.upgrade();
        Box::pin(async move {
            let node = node.ok_or(ClusterError::NodeStopped)?;
            let head = node.head.clone();
            let owner = OwnerId::of_job(spec.id);
            node.starting_jobs.locked().insert(owner, false);
            tokio::spawn(async move {
                let outcome = node.clone().run_job(spec).await;
                node.starting_jobs.locked().remove(&owner);
                head.job_finished(outcome).await;
            });
            Ok(())
        })
    }

    fn stop_job(&self, job: crate::ids::JobId) -> BoxFuture<'static, ()> {
        let owner = OwnerId::of_job(job);
        // First marked, then cancelled: a driver submitted after the mark
        // cancels itself (see `Node::drive`), one submitted before is
        // cancelled here.
        if let Some(stopped) = self.starting_jobs.locked().get_mut(&owner) {
            *stopped = true;
        }
        let cancelled = self.scheduler.cancel_job(owner);
        tracing::debug!(%job, cancelled, "job stopped");
        Box::pin(async {})
    }

    fn status(&self) -> BoxFuture<'static, NodeStatus> {
        // First: the totals include GPUs once they are found.
        let gpus = self.gpus();
        let status = NodeStatus {
            total: self.scheduler.total().to_string(),
            available: self.scheduler.available().to_string(),
            scheduler: self.scheduler.stats(),
            store: self.objects.stats(),
            store_capacity: self.objects.capacity(),
            gpus: gpus.adapters(),
            gpu_usage: gpus.usage(),
        };
        Box::pin(async move { status })
    }

    fn task_records(
        &self,
        job: crate::ids::JobId,
    ) -> BoxFuture<'static, (Vec<prism_proto::v1::TaskInfo>, u64)> {
        let (mine, mut unrecorded) = self
            .events
            .job(job)
            .map(|records| records.snapshot())
            .unwrap_or_default();
        let others = self.remote.as_ref().map(|r| r.task_records(job));
        Box::pin(async move {
            let mut all = mine;
            if let Some(others) = others {
                let (theirs, missed) = others.await;
                all.extend(theirs);
                unrecorded += missed;
            }
            (crate::events::merge::merge(all), unrecorded)
        })
    }
}

/// The scoped namespace an actor lives in: the one its options name, in
/// the creating job's tenant, or else the job's. A guest cannot name a
/// namespace of another tenant: every name it gives is put under its own.
fn actor_namespace(
    job_namespace: &NamespaceRef,
    options: &prism_abi::ActorOptions,
) -> NamespaceRef {
    match options.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        Some(ns) => NamespaceRef::new(job_namespace.tenant(), ns),
        None => job_namespace.clone(),
    }
}

/// The error of a GPU request the job's policy does not permit.
fn gpu_denied() -> WireError {
    WireError::new(
        ErrorKind::PermissionDenied,
        "the tenant's policy does not permit this job to use GPUs (action UseGpu)",
    )
}

/// The error of a guest call the job's policy does not permit.
fn denied(action: &str) -> WireError {
    WireError::new(
        ErrorKind::PermissionDenied,
        format!("the tenant's policy does not permit this job's guests to {action}"),
    )
}

/// The error of a call to an actor that does not exist for the caller
/// (another tenant's actor answers exactly so).
fn no_such_actor(actor: ActorId) -> WireError {
    WireError::new(
        ErrorKind::ActorDied,
        format!("no actor with id {actor} exists (or it died long ago)"),
    )
}

impl crate::metrics::GaugeSource for Node {
    fn gauges(&self) -> crate::metrics::NodeGauges {
        self.metric_gauges()
    }
}
