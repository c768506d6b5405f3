//! A node: the worker that runs guests. It owns the object store, the
//! scheduler and the runtime, and wires them together:
//! - as the scheduler's [`TaskExecutor`] it runs attempts on the runtime;
//! - as each running guest's [`GuestHost`] (through [`TaskHost`]) it turns
//!   guest requests into scheduler submissions and object store reads;
//! - as a [`NodeService`] it starts and stops jobs for the head.
//!
//! A guest's `submit` goes straight into the local scheduler: the hot path
//! never leaves the process.

use super::job::{JobContext, JobOutcome, JobSpec, LogSource};
use super::placement::PlacementService;
use super::{
    ActorCreate, ActorDirectory, ActorPlacement, ClusterError, HeadService, NameClaim, NodeService,
    NodeStatus, RemoteActors,
};
use crate::actors::{self, ActorEnv, ActorManager, ActorRecord};
use crate::config::NodeConfig;
use crate::gpu::{AdapterSummary, GpuUsageStats, Gpus};
use crate::ids::{ActorId, JobId, ObjectId};
use crate::meta::MetaStore;
use crate::objects::named::{NamedObjects, NamedStore, Tier};
use crate::objects::{Lookup, Object, ObjectStore, Watch};
use crate::runtime::{
    ActorCreateError, BoxFuture, CancelToken, GuestHost, Instance, InstanceSetup, Invocation,
    InvocationOutcome, LoadedModule, PutError, Reuse, Runtime,
};
use crate::scheduler::accounts::{Accounts, TenantAccount};
use crate::scheduler::remote::Remote;
use crate::scheduler::resources::ResourceSet;
use crate::scheduler::{Lease, Scheduler, SlotHandle, TaskExecutor, TaskRun, TaskSpec, Turn};
use crate::security::JobGrant;
use crate::security::tenants::{scoped, tenant_of};
use crate::task::{Arg, EntryKind};
use bytes::Bytes;
use prism_abi::{ErrorKind, StoreStats, WireError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// One worker node.
pub struct Node {
    me: Weak<Node>,
    config: NodeConfig,
    objects: Arc<ObjectStore>,
    scheduler: Scheduler,
    runtime: Runtime,
    head: Arc<dyn HeadService>,
    jobs: Mutex<HashMap<JobId, Arc<JobContext>>>,
    actors: Arc<ActorManager>,
    meta: Arc<MetaStore>,
    named: Arc<NamedObjects>,
    /// Where guests' named objects go: `named`, or the head's.
    named_remote: OnceLock<Arc<dyn NamedStore>>,
    /// The GPUs, found the first time anything needs them.
    gpus: OnceLock<Gpus>,
    /// The other nodes, once this node is part of a multi-node cluster.
    remote: OnceLock<Arc<dyn Remote>>,
    /// Their actors.
    remote_actors: OnceLock<Arc<dyn RemoteActors>>,
    /// The cluster-wide actor names.
    directory: OnceLock<Arc<dyn ActorDirectory>>,
    /// Where placement groups are made (replaced when the node joins a
    /// multi-node cluster).
    placement: std::sync::RwLock<Option<Arc<dyn PlacementService>>>,
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
    failed_actors: Mutex<HashMap<ActorId, (String, WireError)>>,
    /// Jobs whose driver runs elsewhere and that ran tasks here.
    remote_jobs: Mutex<std::collections::HashSet<JobId>>,
    /// What each tenant uses here.
    accounts: Accounts,
    /// Placement groups guests here made, counted against their tenants:
    /// group → (owning job, tenant, the bundles' total).
    held_groups: Mutex<HashMap<String, HeldGroup>>,
    _temp_dir: Option<tempfile::TempDir>,
}

impl Node {
    /// Starts a node with `config`, reporting to `head`.
    pub fn start(
        config: NodeConfig,
        head: Arc<dyn HeadService>,
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
        let objects = Arc::new(ObjectStore::new(
            config.object_store_capacity,
            data_dir.join("spill"),
        )?);
        let meta = Arc::new(
            MetaStore::open(&data_dir.join("meta.redb"))
                .map_err(|e| ClusterError::Startup(e.to_string()))?,
        );
        let runtime = Runtime::new(&config.runtime, data_dir.join("modules"))
            .map_err(|e| ClusterError::Startup(e.to_string()))?;
        let total = ResourceSet::new(config.cpus, config.memory, &config.resources)
            .map_err(ClusterError::Startup)?;
        Ok(Arc::new_cyclic(|me: &Weak<Node>| {
            let executor: Weak<dyn TaskExecutor> = me.clone();
            let scheduler = Scheduler::new(total, objects.clone(), executor, config.retry_backoff);
            scheduler.limit_instances(
                config.runtime.instance_slots,
                config.runtime.tenant_instance_share,
            );
            Node {
                me: me.clone(),
                scheduler,
                objects,
                runtime,
                head,
                jobs: Mutex::new(HashMap::new()),
                actors: Arc::new(ActorManager::default()),
                named: Arc::new(NamedObjects::new(meta.clone())),
                named_remote: OnceLock::new(),
                meta,
                gpus: OnceLock::new(),
                remote: OnceLock::new(),
                remote_actors: OnceLock::new(),
                directory: OnceLock::new(),
                placement: std::sync::RwLock::new(None),
                actor_registered: tokio::sync::watch::Sender::new(0),
                failed_actors: Mutex::new(HashMap::new()),
                relocatable: Mutex::new(HashMap::new()),
                named_elsewhere: Mutex::new(HashMap::new()),
                moved: Mutex::new(HashMap::new()),
                remote_jobs: Mutex::new(Default::default()),
                accounts: Accounts::default(),
                held_groups: Mutex::new(HashMap::new()),
                config,
                _temp_dir: temp_dir,
            }
        }))
    }

    /// The node's object store.
    pub fn objects(&self) -> &Arc<ObjectStore> {
        &self.objects
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
    ) -> Result<ResourceSet, String> {
        let gpu = prism_abi::gpu::GPU_RESOURCE;
        if resources.contains_key(gpu) {
            return Err(format!(
                "request GPUs with num_gpus, not as the `{gpu}` resource"
            ));
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

    fn job(&self, id: JobId) -> Option<Arc<JobContext>> {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    /// The tenant of a job (or actor context) this node knows.
    pub fn job_tenant(&self, id: JobId) -> Option<String> {
        self.job(id).map(|j| j.grant.tenant.clone())
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
                .is_some_and(|o| o.grant.tenant == job.grant.tenant),
        }
    }

    /// Whether an actor of this node is `tenant`'s (unknown ids are
    /// answered as dead actors by the actor manager anyway).
    fn actor_visible(&self, actor: ActorId, tenant: &str) -> bool {
        self.actors
            .get(actor)
            .is_none_or(|record| tenant_of(&record.namespace) == tenant)
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

    /// Counts a placement group this node's guest made against its
    /// tenant until it is removed or its job ends.
    fn hold_group(
        &self,
        group: String,
        owner: JobId,
        tenant: Arc<TenantAccount>,
        total: ResourceSet,
    ) {
        if self.job(owner).is_none() {
            // Its job ended while it was made; the group goes with it.
            tenant.unhold(&total);
            if let Some(placement) = self.placement() {
                placement.remove(&group);
            }
            return;
        }
        self.held_groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(group, (owner, tenant, total));
    }

    /// A placement group was removed: its bundles no longer count.
    fn release_group(&self, group: &str) {
        let held = self
            .held_groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(group);
        if let Some((_, tenant, total)) = held {
            tenant.unhold(&total);
        }
    }

    /// A job (or actor) ended: its placement groups no longer count.
    fn release_groups_of(&self, owner: JobId) {
        let released: Vec<(String, Arc<TenantAccount>, ResourceSet)> = {
            let mut held = self.held_groups.lock().unwrap_or_else(|e| e.into_inner());
            let groups: Vec<String> = held
                .iter()
                .filter(|(_, (o, _, _))| *o == owner)
                .map(|(g, _)| g.clone())
                .collect();
            groups
                .into_iter()
                .filter_map(|g| held.remove(&g).map(|(_, t, r)| (g, t, r)))
                .collect()
        };
        for (group, tenant, total) in released {
            tenant.unhold(&total);
            // Gone with its owner (a worker leaves removing a job's groups
            // to the head, which does not know an actor's).
            if let Some(placement) = self.placement() {
                placement.remove(&group);
            }
        }
    }

    /// A tenant's usage on this node, if it ran anything here.
    pub fn tenant_account(&self, tenant: &str) -> Option<Arc<TenantAccount>> {
        self.accounts.tenant(tenant)
    }

    /// Makes this node part of a multi-node cluster: its scheduler may
    /// place tasks on the other nodes and pull objects from them. Call once.
    pub fn join_cluster<P: Remote + RemoteActors>(&self, peers: Arc<P>) {
        self.scheduler.set_remote(peers.clone());
        let _ = self.remote.set(peers.clone());
        let _ = self.remote_actors.set(peers);
    }

    /// This node's own named objects (the cluster's, on the head's node).
    pub fn named_objects(&self) -> &Arc<NamedObjects> {
        &self.named
    }

    /// Keeps guests' named objects in `store` (the head's) instead of here.
    pub fn set_named_store(&self, store: Arc<dyn NamedStore>) {
        let _ = self.named_remote.set(store);
    }

    fn named_store(&self) -> Arc<dyn NamedStore> {
        match self.named_remote.get() {
            Some(remote) => remote.clone(),
            None => self.named.clone(),
        }
    }

    /// Makes placement groups through `placement`.
    pub fn set_placement(&self, placement: Arc<dyn PlacementService>) {
        *self.placement.write().unwrap_or_else(|e| e.into_inner()) = Some(placement);
    }

    fn placement(&self) -> Option<Arc<dyn PlacementService>> {
        self.placement
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Names actors through `directory` (the head's) instead of only
    /// locally. Call once, with [`Node::join_cluster`].
    pub fn set_directory(&self, directory: Arc<dyn ActorDirectory>) {
        let _ = self.directory.set(directory);
    }

    /// The id an actor answers to now: restarted on another node after
    /// its node died, it has a new one.
    fn current_actor(&self, mut actor: ActorId) -> ActorId {
        let moved = self.moved.lock().unwrap_or_else(|e| e.into_inner());
        // Chains are short: one hop per node death.
        for _ in 0..64 {
            match moved.get(&actor) {
                Some(next) => actor = *next,
                None => break,
            }
        }
        actor
    }

    /// Sends a call to an actor on this node; its result (or why it could
    /// not be sent) completes `return_id`, which must be pending.
    /// The call is `tenant`'s: another tenant's actor answers as one that
    /// does not exist.
    pub fn call_local_actor(
        &self,
        actor: ActorId,
        method: String,
        args: Vec<Arg>,
        return_id: ObjectId,
        tenant: &str,
    ) {
        let mut args = args;
        match self.actors.get(actor) {
            Some(record) if tenant_of(&record.namespace) != tenant => {
                let _ = self
                    .objects
                    .complete(return_id, Object::Error(Arc::new(no_such_actor(actor))));
                return;
            }
            Some(record) => {
                // A dead actor's context is gone: nothing is pulled for it
                // (the call fails as the actor's death says).
                if let Some(context) = self.job(record.objects_owner) {
                    args = self.scrub_refs(&context, args, false);
                    for arg in &args {
                        if let Arg::Ref(object) = arg {
                            self.fetch_remote(*object, record.objects_owner, tenant);
                        }
                    }
                }
            }
            None => {}
        }
        if let Err(error) = self.actors.call(actor, method, args, return_id) {
            let _ = self
                .objects
                .complete(return_id, Object::Error(Arc::new(error)));
        }
    }

    /// Where `actor` was restarted after its node died, if it was: from
    /// this node's own moves, else from the head's record.
    pub async fn follow_moved_actor(&self, actor: ActorId) -> Option<ActorId> {
        let local = self.current_actor(actor);
        if local != actor {
            return Some(local);
        }
        let directory = self.directory.get()?.clone();
        let moved = directory
            .resolve_move(actor)
            .await
            .filter(|m| *m != actor)?;
        self.moved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(actor, moved);
        Some(moved)
    }

    /// Nodes left the cluster view: actors this node created there that may
    /// restart are created again elsewhere (their constructor runs again,
    /// as after any restart), each use of a restart, and calls from this
    /// node go to the new one. A named one takes its name back.
    pub fn nodes_left(&self, nodes: &[String]) {
        let due: Vec<(ActorId, Relocatable)> = {
            let mut relocatable = self.relocatable.lock().unwrap_or_else(|e| e.into_inner());
            let ids: Vec<ActorId> = relocatable
                .iter()
                .filter(|(_, r)| nodes.contains(&r.node_id))
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| relocatable.remove(&id).map(|r| (id, r)))
                .collect()
        };
        let Some(node) = self.me.upgrade() else {
            return;
        };
        for (old, entry) in due {
            let node = node.clone();
            tokio::spawn(async move { node.relocate(old, entry).await });
        }
    }

    async fn relocate(&self, old: ActorId, mut entry: Relocatable) {
        let Some(remote) = self.remote_actors.get() else {
            return;
        };
        if self.job(entry.create.job).is_none() && !entry.create.options.detached {
            return; // its job ended: it would have died anyway
        }
        let placement = remote.place_actor(
            &entry.request,
            &prism_abi::SchedulingStrategy::Default,
            false,
            false,
        );
        let ActorPlacement::Remote { node_id, tag } = placement else {
            tracing::warn!(actor = %old, "no other node can restart the actor; it stays dead");
            return;
        };
        let new = ActorId::random_with_tag(tag);
        if entry.restarts_left > 0 {
            entry.restarts_left -= 1;
        }
        let namespace = actor_namespace(&entry.create.namespace, &entry.create.options);
        if let (Some(name), Some(directory)) = (&entry.create.options.name, self.directory.get()) {
            directory.release(&namespace, name, old);
            if let Ok(NameClaim::Existing { .. }) = directory
                .claim(
                    &namespace,
                    name,
                    new,
                    &entry.create.class,
                    entry.create.options.detached,
                )
                .await
            {
                tracing::warn!(actor = %old, "its name was taken meanwhile; restarting it unnamed");
                entry.create.options.name = None;
            }
        }
        if let Err(why) = remote.create_actor(&node_id, new, entry.create.clone()) {
            tracing::warn!(actor = %old, "restarting the actor failed: {why}");
            return;
        }
        tracing::info!(actor = %old, now = %new, node = %node_id, "actor restarted on another node");
        if let Some(directory) = self.directory.get() {
            directory.record_move(old, new);
        }
        self.moved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(old, new);
        {
            let mut named = self
                .named_elsewhere
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(n) = named.remove(&old)
                && entry.create.options.name.is_some()
            {
                named.insert(new, n);
            }
        }
        entry.node_id = node_id;
        if entry.restarts_left != 0 {
            self.relocatable
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(new, entry);
        }
    }

    /// The other nodes' actors, if `actor` lives on another node.
    fn actor_elsewhere(&self, actor: ActorId) -> Option<&Arc<dyn RemoteActors>> {
        let tag = actor.node_tag();
        if tag == 0 || tag == crate::ids::node_tag() {
            return None;
        }
        self.remote_actors.get()
    }

    /// Runs one call of an actor on this node for another node: waits (up
    /// to `wait_for_actor`) for the actor to exist if its creation is still
    /// on the way, sends the call, and answers with its result and the log
    /// lines of the caller's job written here meanwhile. `enqueued` runs
    /// once the call is in the actor's mailbox (or has failed).
    pub async fn call_actor_remote(
        &self,
        call: RemoteActorCall,
        wait_for_actor: Duration,
        enqueued: impl FnOnce(),
    ) -> (Result<Bytes, WireError>, Vec<super::job::LogLine>) {
        let mut registered = self.actor_registered.subscribe();
        let deadline = tokio::time::Instant::now() + wait_for_actor;
        let record = loop {
            if let Some(record) = self.actors.get(call.actor) {
                break Some(record);
            }
            let failed = self
                .failed_actors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&call.actor)
                .filter(|(tenant, _)| *tenant == call.tenant)
                .map(|(_, error)| error.clone());
            if let Some(error) = failed {
                enqueued();
                return (Err(error), Vec::new());
            }
            if tokio::time::timeout_at(deadline, registered.changed())
                .await
                .is_err()
            {
                break None;
            }
        };
        let Some(record) = record.filter(|r| tenant_of(&r.namespace) == call.tenant) else {
            enqueued();
            return (Err(no_such_actor(call.actor)), Vec::new());
        };
        let owner = record.objects_owner;
        // References the caller's node let through are checked here too:
        // this node may hold objects the caller's node does not.
        let args = match self.job(owner) {
            Some(context) => {
                let args = self.scrub_refs(&context, call.args, false);
                for arg in &args {
                    if let Arg::Ref(id) = arg {
                        self.fetch_remote(*id, owner, &call.tenant);
                    }
                }
                args
            }
            // A dead actor's context is gone: nothing is pulled for it.
            None => call.args,
        };
        let return_id = ObjectId::random();
        self.objects.create_pending(return_id, owner);
        let sent = self.actors.call(call.actor, call.method, args, return_id);
        enqueued();
        let result = match sent {
            Err(error) => Err(error),
            Ok(()) => {
                self.result_of(return_id, (ErrorKind::ActorDied, "the actor has stopped"))
                    .await
            }
        };
        self.objects.remove(return_id);
        let logs = match (record.owner, self.job(owner)) {
            (Some(job), Some(context)) => self.drain_remote_log(job, &context.log),
            _ => Vec::new(),
        };
        (result, logs)
    }

    /// Creates an actor another node placed here, under the id it chose.
    /// A failure makes the actor dead from the start: its calls say why.
    pub async fn create_actor_remote(
        &self,
        id: ActorId,
        call: RemoteCall,
        class: String,
        mut options: prism_abi::ActorOptions,
    ) -> Result<(), WireError> {
        let context = self.remote_job_context(&call).await?;
        // Placed already: it stays here.
        options.strategy = Default::default();
        let options_name = options.name.clone();
        let options_namespace = actor_namespace(&context.namespace, &options);
        let created = self
            .create_actor_as(
                &context,
                id,
                &class,
                self.scrub_refs(&context, call.args, false),
                options,
                true,
            )
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(error) => {
                let error = match error {
                    ActorCreateError::NameTaken(name) => WireError::new(
                        ErrorKind::ActorDied,
                        format!("an actor named {name:?} already exists in this namespace"),
                    ),
                    ActorCreateError::Invalid(message) => {
                        WireError::new(ErrorKind::InvalidArgument, message)
                    }
                    ActorCreateError::Denied(message) => {
                        WireError::new(ErrorKind::PermissionDenied, message)
                    }
                    ActorCreateError::Quota(message) => {
                        WireError::new(ErrorKind::QuotaExceeded, message)
                    }
                };
                let mut failed = self.failed_actors.lock().unwrap_or_else(|e| e.into_inner());
                if failed.len() >= crate::actors::DEAD_ACTORS_KEPT {
                    failed.clear();
                }
                failed.insert(id, (context.grant.tenant.clone(), error.clone()));
                drop(failed);
                if let (Some(name), Some(directory)) = (&options_name, self.directory.get()) {
                    directory.release(&options_namespace, name, id);
                }
                self.actor_registered.send_modify(|n| *n += 1);
                Err(error)
            }
        }
    }

    /// The live actor named `name` in `namespace`, on any node.
    pub async fn find_named_actor(&self, namespace: &str, name: &str) -> Option<ActorId> {
        if let Some(record) = self.actors.by_name(namespace, name)
            && record.death_reason().is_none()
        {
            return Some(record.id);
        }
        let directory = self.directory.get()?;
        directory.lookup(namespace, name).await.map(|(id, _)| id)
    }

    /// Calls a method of `actor` (on any node) for a client, and waits for
    /// its value.
    pub async fn call_actor_for_client(
        &self,
        actor: ActorId,
        method: &str,
        args: Vec<Bytes>,
        tenant: &str,
    ) -> Result<Bytes, WireError> {
        // The call's objects belong to a job of their own, freed after.
        let actor = self.current_actor(actor);
        let owner = JobId::random();
        let return_id = ObjectId::random();
        let args: Vec<Arg> = args.into_iter().map(Arg::Value).collect();
        match self.actor_elsewhere(actor) {
            // Inline: the actor's node could not pull objects of a job it
            // does not know (the API bounds the arguments at 64 MiB).
            Some(remote) => remote.call_actor(actor, method, args, return_id, owner, tenant),
            None if !self.actor_visible(actor, tenant) => {
                self.objects.create_pending(return_id, owner);
                let _ = self
                    .objects
                    .complete(return_id, Object::Error(Arc::new(no_such_actor(actor))));
            }
            None => {
                let args = match self.by_reference(owner, args) {
                    Ok(args) => args,
                    Err(error) => {
                        self.objects.free_owner(owner);
                        return Err(error);
                    }
                };
                self.objects.create_pending(return_id, owner);
                if let Err(error) = self.actors.call(actor, method.to_string(), args, return_id) {
                    let _ = self
                        .objects
                        .complete(return_id, Object::Error(Arc::new(error)));
                }
            }
        }
        let result = self
            .result_of(return_id, (ErrorKind::ActorDied, "the actor has stopped"))
            .await;
        self.objects.free_owner(owner);
        result
    }

    /// Kills an actor of this node for another node, if it is `tenant`'s.
    pub fn kill_actor(&self, id: ActorId, tenant: &str) {
        if self.actor_visible(id, tenant) {
            self.actors.kill(id);
        }
    }

    /// The grant of a job this node knows.
    pub fn job_grant(&self, id: JobId) -> Option<Arc<JobGrant>> {
        self.job(id).map(|j| j.grant.clone())
    }

    /// Whether object `id` here belongs to a job of `tenant` (for another
    /// node pulling it). An object whose owner this node does not know is
    /// nobody's.
    pub fn object_of_tenant(&self, id: ObjectId, tenant: &str) -> bool {
        match self.objects.owner(id) {
            None => true, // not here: answered as not found
            Some(owner) => self.job(owner).is_some_and(|j| j.grant.tenant == tenant),
        }
    }

    /// The log of a job running here (its driver's node keeps the whole
    /// log; other nodes hand their lines back with each call).
    pub fn job_log(&self, id: JobId) -> Option<Arc<super::job::JobLog>> {
        self.job(id).map(|j| j.log.clone())
    }

    /// The environment of a job this node knows.
    pub fn job_env(&self, id: JobId) -> super::job::JobEnv {
        self.job(id).and_then(|j| j.env.clone())
    }

    /// The namespace of a job this node knows.
    pub fn job_namespace(&self, id: JobId) -> Option<String> {
        self.job(id).map(|j| j.namespace.clone())
    }

    /// Appends lines another node sent back for `job`.
    pub fn append_logs(&self, job: JobId, lines: Vec<super::job::LogLine>) {
        if let Some(context) = self.job(job) {
            for line in lines {
                context.log.push(line.source, &line.function, &line.text);
            }
        }
    }

    /// Pulls `id` here if it lives on another node (see [`Remote::fetch`]).
    fn fetch_remote(&self, id: ObjectId, owner: JobId, tenant: &str) {
        if let Some(remote) = self.remote.get() {
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
                Arg::Ref(_) if submitted && !job.grant.permissions.get_object => Arg::Invalid(
                    "the tenant's policy does not permit this job's guests to read objects (action GetObject)"
                        .into(),
                ),
                Arg::Ref(id) if !self.object_visible(id, job) => Arg::Missing(id),
                other => other,
            })
            .collect()
    }

    /// Runs one attempt of a task another node placed here, to completion,
    /// through this node's scheduler (it queues for resources like any
    /// task, and never moves on). Returns its result and the log lines the
    /// job's guests wrote here meanwhile. Dropping the future cancels it.
    pub async fn execute_remote(
        &self,
        call: RemoteCall,
    ) -> (Result<Bytes, WireError>, Vec<super::job::LogLine>) {
        let mut call = call;
        let context = match self.remote_job_context(&call).await {
            Ok(context) => context,
            Err(error) => return (Err(error), Vec::new()),
        };
        // The placing node checked the references it could; this node may
        // hold objects that node does not.
        call.args = self.scrub_refs(&context, std::mem::take(&mut call.args), false);
        let return_id = ObjectId::random();
        let spec = TaskSpec {
            job: call.job,
            module: call.module,
            entry: EntryKind::Task,
            function: call.function,
            args: call.args,
            request: call.request,
            // The node that placed it retries, possibly elsewhere.
            max_retries: 0,
            max_calls: call.max_calls,
            timeout: call.timeout,
            memory_limit: call.memory_limit.min(self.max_memory(&context.grant)),
            return_id,
            strategy: Default::default(),
            local_only: true,
            bundle: call.bundle,
            first_attempt: call.attempt,
            account: Some(context.account.clone()),
            admitted: false,
        };
        struct CancelOnDrop<'a>(&'a Scheduler, ObjectId);
        impl Drop for CancelOnDrop<'_> {
            fn drop(&mut self) {
                self.0.cancel(self.1);
            }
        }
        let _guard = CancelOnDrop(&self.scheduler, return_id);
        self.scheduler.submit(spec);
        let result = self
            .result_of(
                return_id,
                (ErrorKind::Cancelled, "the task's job has ended here"),
            )
            .await;
        self.objects.remove(return_id);
        // The result goes back to the placing node, which counts it.
        if let Ok(bytes) = &result {
            context.account.release_bytes(bytes.len() as u64);
        }
        (result, self.drain_remote_log(context.id, &context.log))
    }

    /// The lines job `job` wrote into `log` here, to send back, if its
    /// driver runs elsewhere; none if it runs here (this log is the job's).
    fn drain_remote_log(&self, job: JobId, log: &super::job::JobLog) -> Vec<super::job::LogLine> {
        let remote = self
            .remote_jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&job);
        if remote { log.drain() } else { Vec::new() }
    }

    /// The context of another node's job on this node, made on its first
    /// task here.
    async fn remote_job_context(&self, call: &RemoteCall) -> Result<Arc<JobContext>, WireError> {
        if let Some(context) = self.job(call.job) {
            return Ok(context);
        }
        let module = self.load_module(&call.grant.tenant, call.module).await?;
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let context = jobs
            .entry(call.job)
            .or_insert_with(|| {
                Arc::new(JobContext {
                    id: call.job,
                    module,
                    namespace: call.namespace.clone(),
                    log: Default::default(),
                    env: call.env.clone(),
                    account: self.accounts.open_job(&call.grant),
                    sandbox: super::job::sandbox_of(&call.grant),
                    tenant: Arc::from(call.grant.tenant.as_str()),
                    grant: call.grant.clone(),
                })
            })
            .clone();
        self.remote_jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(call.job);
        Ok(context)
    }

    /// Frees the ready objects among `ids` that `job` of `tenant` owns in
    /// this node's store, giving their bytes back to its quota; returns
    /// how many. Nothing is freed for a job unknown here or of another
    /// tenant.
    pub fn free_objects(&self, job: JobId, tenant: &str, ids: &[ObjectId]) -> usize {
        let Some(context) = self.job(job).filter(|c| c.grant.tenant == tenant) else {
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

    /// Forgets a job's context (its work here is over) and drops its idle
    /// warm instances.
    fn close_job_context(&self, job: JobId) -> Option<Arc<JobContext>> {
        let context = self
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&job);
        self.runtime.forget_job(job.as_u64());
        context
    }

    /// Another node's job ended: cancel what it still runs here and free
    /// what it owns. Jobs whose driver runs on this node are not touched.
    pub fn end_remote_job(&self, job: JobId) {
        if !self
            .remote_jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&job)
        {
            return;
        }
        for actor in self.actors.owned_by(job) {
            self.actors.kill(actor);
        }
        self.scheduler.cancel_job(job);
        let freed = self.objects.free_owner(job);
        tracing::debug!(%job, freed, "another node's job ended");
        if let Some(context) = self.close_job_context(job) {
            context.account.free_all();
        }
        self.release_groups_of(job);
    }

    /// Loads a module from the head (or the local cache) on a blocking thread.
    /// Compiled for `tenant` only (see `runtime::modules`).
    async fn load_module(
        &self,
        tenant: &str,
        hash: crate::ids::ModuleHash,
    ) -> Result<Arc<LoadedModule>, WireError> {
        if let Some(m) = self.runtime.modules().get_for(tenant, hash) {
            return Ok(m);
        }
        let bytes = self
            .head
            .module(hash)
            .await
            .map_err(|e| WireError::new(ErrorKind::InvalidModule, e.to_string()))?;
        let node = self
            .me
            .upgrade()
            .ok_or_else(|| WireError::new(ErrorKind::System, "node stopped"))?;
        let tenant = tenant.to_string();
        tokio::task::spawn_blocking(move || node.runtime.modules().load_for(&tenant, &bytes))
            .await
            .map_err(|e| {
                WireError::new(
                    ErrorKind::System,
                    format!("module compilation aborted: {e}"),
                )
            })?
            .map_err(|e| WireError::new(ErrorKind::InvalidModule, e.to_string()))
    }

    /// Runs a job's driver to completion, then cancels what it left running
    /// and frees everything it owns.
    async fn run_job(self: Arc<Self>, spec: JobSpec) -> JobOutcome {
        let started = Instant::now();
        let module = match self
            .load_module(&spec.options.grant.tenant, spec.module)
            .await
        {
            Ok(module) => module,
            Err(error) => {
                return JobOutcome {
                    id: spec.id,
                    result: Err(error),
                    logs: Default::default(),
                    duration: started.elapsed(),
                };
            }
        };
        let env = &spec.options.env;
        let grant = spec.options.grant.clone();
        let log = match &self.config.job_log_dir {
            Some(dir) => super::job::JobLog::with_file(
                &dir.join(format!("{}.log", spec.id)),
                self.config.job_log_max_bytes,
            )
            .unwrap_or_else(|e| {
                tracing::warn!(job = %spec.id, "cannot write the job's log file: {e}");
                Default::default()
            }),
            None => Default::default(),
        };
        let context = Arc::new(JobContext {
            id: spec.id,
            module,
            namespace: spec.namespace.clone(),
            log: Arc::new(log),
            env: (!env.is_empty()).then(|| Arc::new(env.clone())),
            account: self.accounts.open_job(&grant),
            sandbox: super::job::sandbox_of(&grant),
            tenant: Arc::from(grant.tenant.as_str()),
            grant,
        });
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(spec.id, context.clone());
        let result = self.drive(&spec, &context).await;
        for actor in self.actors.owned_by(spec.id) {
            self.actors.kill(actor);
        }
        self.scheduler.cancel_job(spec.id);
        if let Some(placement) = self.placement() {
            placement.remove_owned(spec.id);
        }
        self.relocatable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, r| r.create.job != spec.id || r.create.options.detached);
        self.named_elsewhere
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, n| n.job != Some(spec.id));
        let freed = self.objects.free_owner(spec.id);
        context.account.free_all();
        self.release_groups_of(spec.id);
        if let Some(remote) = self.remote.get() {
            remote.end_job(spec.id);
        }
        tracing::debug!(job = %spec.id, freed, "job ended");
        self.close_job_context(spec.id);
        JobOutcome {
            id: spec.id,
            result,
            logs: {
                context.log.flush();
                Arc::new(context.log.lines())
            },
            duration: started.elapsed(),
        }
    }

    async fn drive(&self, spec: &JobSpec, context: &JobContext) -> Result<Bytes, WireError> {
        let module = &context.module;
        let entry = if module.exports().mains.contains(&spec.entry) {
            EntryKind::Main
        } else if module.exports().tasks.contains(&spec.entry) {
            EntryKind::Task
        } else {
            return Err(WireError::new(
                ErrorKind::FunctionNotFound,
                format!(
                    "the module exports no driver or task named `{}` (drivers: {:?}, tasks: {:?})",
                    spec.entry,
                    module.exports().mains,
                    module.exports().tasks
                ),
            ));
        };
        let want = &spec.options.driver;
        let request = self
            .request(want.num_cpus, want.memory, want.num_gpus, &want.resources)
            .map_err(|e| {
                WireError::new(ErrorKind::InvalidArgument, format!("driver resources: {e}"))
            })?;
        if request.gpu_milli() > 0 && !context.grant.permissions.use_gpu {
            return Err(gpu_denied());
        }
        let return_id = ObjectId::random();
        let driver = TaskSpec {
            job: spec.id,
            module: spec.module,
            entry,
            function: spec.entry.clone(),
            args: spec.args.iter().cloned().map(Arg::Value).collect(),
            // Drivers coordinate; like Ray's, they hold no CPU unless the
            // job asks for some.
            request,
            max_retries: 0,
            max_calls: 1,
            // A namespace's time cap is per task: a driver waits on its
            // tasks, under the node's driver deadline.
            timeout: self.config.runtime.driver_timeout,
            memory_limit: self.max_memory(&context.grant),
            return_id,
            strategy: Default::default(),
            local_only: true,
            bundle: None,
            first_attempt: 0,
            account: Some(context.account.clone()),
            admitted: false,
        };
        self.scheduler.submit(driver);
        self.result_of(
            return_id,
            (ErrorKind::System, "the driver's result vanished"),
        )
        .await
    }

    /// Waits for object `id` and returns its value or error; `gone` is the
    /// error if it vanished meanwhile (its job ended, or its actor).
    async fn result_of(&self, id: ObjectId, gone: (ErrorKind, &str)) -> Result<Bytes, WireError> {
        if let Watch::Pending(rx) = self.objects.watch(id) {
            let _ = rx.await;
        }
        match self.objects.lookup(id) {
            Ok(Lookup::Ready(Object::Value(bytes))) => Ok(bytes),
            Ok(Lookup::Ready(Object::Error(e))) => Err((*e).clone()),
            Ok(_) => Err(WireError::new(gone.0, gone.1)),
            Err(e) => Err(WireError::new(ErrorKind::System, e.to_string())),
        }
    }

    /// Moves large inline values into the store, so call messages stay small.
    fn by_reference(&self, owner: JobId, mut args: Vec<Arg>) -> Result<Vec<Arg>, WireError> {
        for arg in args.iter_mut() {
            if let Arg::Value(bytes) = arg
                && bytes.len() > prism_abi::INLINE_ARG_LIMIT
            {
                let id = self
                    .objects
                    .put(owner, bytes.clone())
                    .map_err(|e| WireError::new(ErrorKind::InvalidArgument, e.to_string()))?;
                *arg = Arg::Ref(id);
            }
        }
        Ok(args)
    }

    /// Creates an actor for a guest of `job`.
    async fn create_actor(
        &self,
        job: &JobContext,
        class: &str,
        args: Vec<Arg>,
        options: prism_abi::ActorOptions,
    ) -> Result<ActorId, ActorCreateError> {
        self.create_actor_as(job, ActorId::random(), class, args, options, false)
            .await
    }

    /// Creates an actor with id `id`; unless `placed` (another node chose
    /// this one), it may go to another node of the cluster instead.
    async fn create_actor_as(
        &self,
        job: &JobContext,
        id: ActorId,
        class: &str,
        args: Vec<Arg>,
        options: prism_abi::ActorOptions,
        placed: bool,
    ) -> Result<ActorId, ActorCreateError> {
        let namespace = actor_namespace(&job.namespace, &options);
        // An actor acts in its own namespace (named objects, saved state)
        // with that namespace's permissions, which the job's grant carries.
        let actor_grant = if namespace == job.namespace {
            job.grant.clone()
        } else {
            let name = crate::security::tenants::namespace_of(&namespace);
            let mut grant = job.grant.in_namespace(name).ok_or_else(|| {
                ActorCreateError::Invalid(format!("there is no namespace {name:?}"))
            })?;
            // Its data directory is its own namespace's: not the job's.
            grant.permissions.read_directory &= grant.capabilities.is_none();
            Arc::new(grant)
        };
        if let Some(name) = &options.name
            && let Some(existing) = self.actors.by_name(&namespace, name)
        {
            if options.get_if_exists && existing.class == class {
                return Ok(existing.id);
            }
            return Err(ActorCreateError::NameTaken(name.clone()));
        }
        let invalid = |m: String| ActorCreateError::Invalid(m);
        let memory = options.memory.unwrap_or(0);
        let request = self
            .request(
                options.num_cpus.unwrap_or(1.0),
                memory,
                options.num_gpus,
                &options.resources,
            )
            .map_err(invalid)?;
        // As in Ray: an actor needs a CPU to be placed but holds none while
        // it lives, unless it asked for CPUs explicitly.
        let mut hold = request.clone();
        if options.num_cpus.is_none() {
            hold.cpu_milli = 0;
        }
        if request.gpu_milli() > 0 && !job.grant.permissions.use_gpu {
            return Err(ActorCreateError::Denied(gpu_denied().message));
        }
        let class_info = job.module.exports().actors.get(class).cloned();
        let max_memory = self.max_memory(&job.grant);
        let args = self
            .by_reference(job.id, args)
            .map_err(|e| invalid(e.message))?;
        let mut unplaceable = None;
        let mut elsewhere = None;
        if !placed
            && class_info.is_some()
            && let Some(remote) = self.remote_actors.get()
        {
            let total = self.scheduler.total();
            let feasible = total.shortfall(&request).is_none();
            let fits = self.scheduler.available().fits(&request);
            match remote.place_actor(&request, &options.strategy, feasible, fits) {
                ActorPlacement::Local => {}
                ActorPlacement::Unschedulable(why) => unplaceable = Some(why),
                ActorPlacement::Remote { node_id, tag } => {
                    elsewhere = Some((remote.clone(), node_id, ActorId::random_with_tag(tag)));
                }
            }
        }
        let id = elsewhere.as_ref().map_or(id, |(_, _, id)| *id);
        // A name is the cluster's: claimed at the head before the actor
        // exists anywhere.
        let directory = self.directory.get().filter(|_| !placed);
        if let (Some(name), Some(directory)) = (&options.name, directory) {
            let claim = directory
                .claim(&namespace, name, id, class, options.detached)
                .await
                .map_err(ActorCreateError::Invalid)?;
            if let NameClaim::Existing {
                id: existing,
                class: existing_class,
            } = claim
            {
                if options.get_if_exists && existing_class == class {
                    return Ok(existing);
                }
                return Err(ActorCreateError::NameTaken(name.clone()));
            }
        }
        let release = |directory: Option<&Arc<dyn ActorDirectory>>| {
            if let (Some(name), Some(directory)) = (&options.name, directory) {
                directory.release(&namespace, name, id);
            }
        };
        if let Some((remote, node_id, id)) = elsewhere {
            let create = ActorCreate {
                job: job.id,
                module: job.module.hash(),
                namespace: job.namespace.clone(),
                class: class.to_string(),
                args,
                options: options.clone(),
                env: job.env.clone(),
                grant: job.grant.clone(),
            };
            let restarts = options.max_restarts.unwrap_or(0);
            if restarts != 0 {
                self.relocatable
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(
                        id,
                        Relocatable {
                            node_id: node_id.clone(),
                            create: create.clone(),
                            request: request.clone(),
                            restarts_left: restarts,
                        },
                    );
            }
            if let Err(why) = remote.create_actor(&node_id, id, create) {
                release(directory);
                return Err(ActorCreateError::Invalid(why));
            }
            if let Some(name) = &options.name {
                self.named_elsewhere
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(
                        id,
                        NamedElsewhere {
                            job: (!options.detached).then_some(job.id),
                            tenant: job.grant.tenant.clone(),
                            namespace: namespace.clone(),
                            name: name.clone(),
                        },
                    );
            }
            return Ok(id);
        }
        let (record, mailbox) = ActorRecord::new(
            id,
            class.to_string(),
            namespace.clone(),
            options.name.clone(),
            (!options.detached).then_some(job.id),
            args,
            hold,
            if memory > 0 { memory } else { max_memory },
            options.max_restarts.unwrap_or(0),
            options.max_task_retries.unwrap_or(0),
            class_info.as_ref().is_some_and(|c| c.persistent),
        );
        // Failures known now make the actor dead from the start; its calls
        // report why.
        let stillborn = if class_info.is_none() {
            Some(WireError::new(
                ErrorKind::FunctionNotFound,
                format!("the module exports no actor class `{class}`"),
            ))
        } else if memory > max_memory {
            Some(WireError::new(
                ErrorKind::Unschedulable,
                format!(
                    "a memory request of {memory} bytes exceeds the per-actor limit of {max_memory} bytes"
                ),
            ))
        } else if let Some(why) = unplaceable {
            Some(WireError::new(
                ErrorKind::Unschedulable,
                format!("no node can host this actor: {why}"),
            ))
        } else {
            self.scheduler.total().shortfall(&request).map(|why| {
                WireError::new(
                    ErrorKind::Unschedulable,
                    format!("no node can host this actor: {why}"),
                )
            })
        };
        let account = self.accounts.open_job(&job.grant);
        if let Err(over) = account.tenant().admit_actor() {
            release(directory);
            return Err(ActorCreateError::Quota(over.to_string()));
        }
        // What it holds for its life counts against the tenant's quotas.
        if let Err(over) = account.tenant().admit_hold(&record.hold) {
            account.tenant().actor_done();
            release(directory);
            return Err(ActorCreateError::Quota(over.to_string()));
        }
        if let Err(taken) = self.actors.register(record.clone()) {
            account.tenant().actor_done();
            account.tenant().unhold(&record.hold);
            release(directory);
            return Err(ActorCreateError::NameTaken(taken.0));
        }
        self.actor_registered.send_modify(|n| *n += 1);
        let context = Arc::new(JobContext {
            id: record.objects_owner,
            module: job.module.clone(),
            namespace: record.namespace.clone(),
            log: job.log.clone(),
            env: job.env.clone(),
            sandbox: super::job::sandbox_of(&actor_grant),
            tenant: Arc::from(actor_grant.tenant.as_str()),
            grant: actor_grant,
            account,
        });
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(record.objects_owner, context);
        // Constructor arguments that live on other nodes come here first
        // (once the actor's context exists: it owns the copies).
        for arg in &record.ctor_args {
            if let Arg::Ref(object) = arg {
                self.fetch_remote(*object, record.objects_owner, &job.grant.tenant);
            }
        }
        let Some(node) = self.me.upgrade() else {
            return Err(ActorCreateError::Invalid("the node is stopping".into()));
        };
        let manager = self.actors.clone();
        let id = record.id;
        match stillborn {
            None => {
                tokio::spawn(actors::supervise(node, manager, record, mailbox));
            }
            Some(error) => {
                tokio::spawn(actors::stillborn(node, manager, record, mailbox, error));
            }
        }
        Ok(id)
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

    /// Builds the spec of a task submitted by a guest of `job`.
    fn task_spec(
        &self,
        job: &JobContext,
        function: &str,
        args: Vec<Arg>,
        options: prism_abi::TaskOptions,
        return_id: ObjectId,
    ) -> Result<TaskSpec, WireError> {
        let invalid = |m: String| WireError::new(ErrorKind::InvalidArgument, m);
        if job.module.entry(EntryKind::Task, function).is_none() {
            return Err(WireError::new(
                ErrorKind::FunctionNotFound,
                format!("the module exports no task named `{function}`"),
            ));
        }
        let max_memory = self.max_memory(&job.grant);
        let memory = options.memory.unwrap_or(0);
        if memory > max_memory {
            return Err(WireError::new(
                ErrorKind::Unschedulable,
                format!(
                    "a memory request of {memory} bytes exceeds the per-task limit of {max_memory} bytes"
                ),
            ));
        }
        let request = self
            .request(
                options.num_cpus.unwrap_or(1.0),
                memory,
                options.num_gpus,
                &options.resources,
            )
            .map_err(invalid)?;
        if request.gpu_milli() > 0 && !job.grant.permissions.use_gpu {
            return Err(gpu_denied());
        }
        if let Some(bundle) = &options.bundle {
            if super::placement::group_tenant(&bundle.group) != Some(job.grant.tenant.as_str()) {
                return Err(invalid(format!(
                    "placement group {} has no bundle {}",
                    bundle.group, bundle.index
                )));
            }
            if request.gpu_milli() > 0 {
                return Err(invalid(
                    "tasks in placement group bundles cannot use GPUs yet".into(),
                ));
            }
            if bundle.node_id.is_empty() {
                return Err(invalid(format!(
                    "placement group {} has no bundle {}",
                    bundle.group, bundle.index
                )));
            }
        }
        let args = self.by_reference(job.id, args)?;
        Ok(TaskSpec {
            job: job.id,
            module: job.module.hash(),
            entry: EntryKind::Task,
            function: function.to_string(),
            args,
            request,
            max_retries: options.max_retries.unwrap_or(3),
            max_calls: options.max_calls.unwrap_or(0),
            timeout: self.call_timeout_for(
                &job.grant,
                options
                    .timeout_ms
                    .map(Duration::from_millis)
                    .unwrap_or(self.config.runtime.task_timeout),
            ),
            memory_limit: if memory > 0 { memory } else { max_memory },
            return_id,
            strategy: options.strategy,
            local_only: false,
            bundle: options.bundle,
            first_attempt: 0,
            account: Some(job.account.clone()),
            admitted: false,
        })
    }
}

impl TaskExecutor for Node {
    fn execute(&self, run: TaskRun) -> BoxFuture<'static, Result<Bytes, WireError>> {
        let node = self.me.upgrade();
        Box::pin(async move {
            let node = node.ok_or_else(|| WireError::new(ErrorKind::System, "the node stopped"))?;
            let job = node
                .job(run.spec.job)
                .ok_or_else(|| WireError::new(ErrorKind::Cancelled, "the task's job has ended"))?;
            let module = job.module.clone();
            let host = Arc::new(TaskHost {
                node: node.clone(),
                job: job.clone(),
                slot: run.slot.clone(),
                function: run.spec.function.clone(),
            });
            let call = Invocation {
                entry: run.spec.entry,
                function: run.spec.function.clone(),
                input: run.input,
                attempt: run.attempt,
                timeout: run.spec.timeout,
                memory_limit: run.spec.memory_limit,
                cancel: run.cancel,
                env: job.env.clone(),
                sandbox: job.sandbox.clone(),
                // Drivers run once per job; tasks may share warm instances
                // within their job.
                reuse: (run.spec.entry == EntryKind::Task).then(|| Reuse {
                    job: job.id.as_u64(),
                    tenant: job.tenant.clone(),
                    max_calls: run.spec.max_calls,
                }),
            };
            let gpu = node.gpu_context(run.slot.gpus());
            let outcome = node.runtime.invoke(module, call, host, gpu).await;
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
            outcome.result
        })
    }
}

impl NodeService for Node {
    fn start_job(&self, spec: JobSpec) -> BoxFuture<'static, Result<(), ClusterError>> {
        let node = self.me.upgrade();
        Box::pin(async move {
            let node = node.ok_or(ClusterError::NodeStopped)?;
            let head = node.head.clone();
            tokio::spawn(async move {
                let outcome = node.run_job(spec).await;
                head.job_finished(outcome).await;
            });
            Ok(())
        })
    }

    fn stop_job(&self, job: JobId) -> BoxFuture<'static, ()> {
        let cancelled = self.scheduler.cancel_job(job);
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
}

/// An actor this node created on another node, kept to restart it
/// elsewhere if that node dies.
struct Relocatable {
    node_id: String,
    create: ActorCreate,
    request: ResourceSet,
    /// Negative: unlimited.
    restarts_left: i32,
}

/// A placement group counted against its tenant: the job that made it,
/// the tenant's account, and the total of its bundles.
type HeldGroup = (JobId, Arc<TenantAccount>, ResourceSet);

/// A call of an actor on this node from another node.
pub struct RemoteActorCall {
    /// The actor.
    pub actor: ActorId,
    /// The method.
    pub method: String,
    /// Its arguments; references are pulled from where they live.
    pub args: Vec<Arg>,
    /// The caller's tenant: another tenant's actor answers as a dead one.
    pub tenant: String,
}

/// A task attempt another node placed on this one.
pub struct RemoteCall {
    /// Its job (whose driver runs elsewhere).
    pub job: JobId,
    /// The job's module.
    pub module: crate::ids::ModuleHash,
    /// The job's namespace.
    pub namespace: String,
    /// The task's name.
    pub function: String,
    /// Its arguments; references are pulled from where they live.
    pub args: Vec<Arg>,
    /// What it holds while it runs.
    pub request: ResourceSet,
    /// Wall-clock budget.
    pub timeout: Duration,
    /// Linear memory cap in bytes (at most this node's per-task limit).
    pub memory_limit: u64,
    /// The placement group bundle it runs in.
    pub bundle: Option<crate::scheduler::BundleRef>,
    /// Which attempt this is (0 for the first).
    pub attempt: u32,
    /// Tasks one warm instance may run (0: no limit).
    pub max_calls: u32,
    /// The job's environment variables.
    pub env: super::job::JobEnv,
    /// The job's tenant and what its guests may do.
    pub grant: Arc<JobGrant>,
}

/// The node as seen by one running guest: its job, its CPU slot.
struct TaskHost {
    node: Arc<Node>,
    job: Arc<JobContext>,
    slot: Arc<SlotHandle>,
    function: String,
}

impl TaskHost {
    /// Makes `return_id` an object of the job holding `error`; returns it.
    fn failed(&self, return_id: ObjectId, error: WireError) -> ObjectId {
        self.node.objects.create_pending(return_id, self.job.id);
        let _ = self
            .node
            .objects
            .complete(return_id, Object::Error(Arc::new(error)));
        return_id
    }
}

impl GuestHost for TaskHost {
    fn submit(&self, function: &str, args: Vec<Arg>, options: prism_abi::TaskOptions) -> ObjectId {
        let return_id = ObjectId::random();
        let args = self.node.scrub_refs(&self.job, args, true);
        let spec = if self.job.grant.permissions.call_task {
            self.node
                .task_spec(&self.job, function, args, options, return_id)
        } else {
            Err(denied("submit tasks (action CallTask)"))
        };
        let spec = spec.and_then(|mut spec| {
            let tenant = self.job.account.tenant();
            tenant
                .admit_task()
                .map_err(|e| WireError::new(ErrorKind::QuotaExceeded, e.to_string()))?;
            spec.admitted = true;
            Ok(spec)
        });
        match spec {
            Ok(spec) => {
                self.node.scheduler.submit(spec);
                return_id
            }
            Err(error) => self.failed(return_id, error),
        }
    }

    fn put(&self, bytes: Bytes) -> Result<ObjectId, PutError> {
        if !self.job.grant.permissions.put_object {
            return Err(PutError::Denied);
        }
        let size = bytes.len() as u64;
        self.job
            .account
            .admit_bytes(size)
            .map_err(|e| PutError::Quota(e.to_string()))?;
        self.node
            .objects
            .put_counted(self.job.id, bytes)
            .map_err(|e| {
                self.job.account.release_bytes(size);
                PutError::Store(e)
            })
    }

    fn lookup(&self, id: ObjectId) -> Lookup {
        if !self.job.grant.permissions.get_object {
            return Lookup::Ready(Object::Error(Arc::new(denied(
                "get objects (action GetObject)",
            ))));
        }
        self.node
            .fetch_remote(id, self.job.id, &self.job.grant.tenant);
        if !self.node.object_visible(id, &self.job) {
            return Lookup::NotFound;
        }
        match self.node.objects.lookup(id) {
            Ok(found) => found,
            Err(e) => Lookup::Ready(Object::Error(Arc::new(WireError::new(
                ErrorKind::System,
                e.to_string(),
            )))),
        }
    }

    fn watch(&self, id: ObjectId) -> Watch {
        if !self.job.grant.permissions.get_object {
            return Watch::Ready;
        }
        self.node
            .fetch_remote(id, self.job.id, &self.job.grant.tenant);
        if !self.node.object_visible(id, &self.job) {
            return Watch::NotFound;
        }
        self.node.objects.watch(id)
    }

    fn cancel(&self, id: ObjectId) {
        if self.node.objects.owner(id) == Some(self.job.id) {
            self.node.scheduler.cancel(id);
        }
    }

    fn free(&self, ids: Vec<ObjectId>) -> BoxFuture<'static, usize> {
        if ids.is_empty() {
            return Box::pin(async { 0 });
        }
        let tenant = &self.job.grant.tenant;
        let freed = self.node.free_objects(self.job.id, tenant, &ids);
        let elsewhere = self
            .node
            .remote
            .get()
            .map(|remote| remote.free(self.job.id, tenant, &ids));
        Box::pin(async move {
            if let Some(elsewhere) = elsewhere {
                elsewhere.await;
            }
            freed
        })
    }

    fn block(&self) {
        self.slot.block()
    }

    fn unblock(&self) -> BoxFuture<'static, ()> {
        self.slot.unblock()
    }

    fn log(&self, level: i32, line: &str) {
        tracing::debug!(job = %self.job.id, function = %self.function, level, "{line}");
        self.job.log.push(LogSource::Guest, &self.function, line);
    }

    fn store_stats(&self) -> StoreStats {
        self.node.objects.stats_of(self.job.id)
    }

    fn actor_create(
        &self,
        class: &str,
        args: Vec<Arg>,
        options: prism_abi::ActorOptions,
    ) -> BoxFuture<'static, Result<ActorId, ActorCreateError>> {
        if !self.job.grant.permissions.create_actor {
            return Box::pin(async {
                Err(ActorCreateError::Denied(
                    denied("create actors (action CreateActor)").message,
                ))
            });
        }
        let args = self.node.scrub_refs(&self.job, args, true);
        if let Some(Arg::Invalid(message)) = args.iter().find(|a| matches!(a, Arg::Invalid(_))) {
            let error = ActorCreateError::Invalid(message.clone());
            return Box::pin(async move { Err(error) });
        }
        let node = self.node.clone();
        let job = self.job.clone();
        let class = class.to_string();
        Box::pin(async move { node.create_actor(&job, &class, args, options).await })
    }

    fn actor_call(&self, actor: ActorId, method: &str, args: Vec<Arg>) -> ObjectId {
        let actor = self.node.current_actor(actor);
        let return_id = ObjectId::random();
        let refused = if !self.job.grant.permissions.call_actor {
            Some(denied("call actors (action CallActor)"))
        } else if self.node.actor_elsewhere(actor).is_none()
            && !self.node.actor_visible(actor, &self.job.grant.tenant)
        {
            Some(no_such_actor(actor))
        } else {
            None
        };
        if let Some(error) = refused {
            return self.failed(return_id, error);
        }
        let args = self.node.scrub_refs(&self.job, args, true);
        // Refused here, not sent: the wire has no form for it.
        if let Some(Arg::Invalid(message)) = args.iter().find(|a| matches!(a, Arg::Invalid(_))) {
            let error = WireError::new(ErrorKind::InvalidArgument, message.clone());
            return self.failed(return_id, error);
        }
        if let Some(remote) = self.node.actor_elsewhere(actor) {
            match self.node.by_reference(self.job.id, args) {
                Ok(args) => remote.call_actor(
                    actor,
                    method,
                    args,
                    return_id,
                    self.job.id,
                    &self.job.grant.tenant,
                ),
                Err(error) => return self.failed(return_id, error),
            }
            return return_id;
        }
        self.node.objects.create_pending(return_id, self.job.id);
        for arg in &args {
            if let Arg::Ref(object) = arg {
                self.node
                    .fetch_remote(*object, self.job.id, &self.job.grant.tenant);
            }
        }
        let sent = self.node.by_reference(self.job.id, args).and_then(|args| {
            self.node
                .actors
                .call(actor, method.to_string(), args, return_id)
        });
        if let Err(error) = sent {
            let _ = self
                .node
                .objects
                .complete(return_id, Object::Error(Arc::new(error)));
        }
        return_id
    }

    fn actor_lookup(
        &self,
        namespace: &str,
        name: &str,
        class: &str,
    ) -> BoxFuture<'static, Option<ActorId>> {
        let namespace = if namespace.is_empty() {
            self.job.namespace.clone()
        } else {
            scoped(&self.job.grant.tenant, namespace)
        };
        let namespace = namespace.as_str();
        let local = self
            .node
            .actors
            .by_name(namespace, name)
            .filter(|r| r.class == class && r.death_reason().is_none())
            .map(|r| r.id);
        let found = match (local, self.node.directory.get()) {
            (Some(id), _) => return Box::pin(async move { Some(id) }),
            (None, None) => return Box::pin(async { None }),
            (None, Some(directory)) => directory.lookup(namespace, name),
        };
        let class = class.to_string();
        Box::pin(async move {
            found
                .await
                .filter(|(_, found_class)| *found_class == class)
                .map(|(id, _)| id)
        })
    }

    fn actor_kill(&self, actor: ActorId) {
        let actor = self.node.current_actor(actor);
        if !self.job.grant.permissions.call_actor {
            return;
        }
        {
            // Only the tenant's own actor stops being restarted.
            let mut relocatable = self
                .node
                .relocatable
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if relocatable
                .get(&actor)
                .is_some_and(|r| r.create.grant.tenant == self.job.grant.tenant)
            {
                relocatable.remove(&actor);
            }
        }
        match self.node.actor_elsewhere(actor) {
            Some(remote) => {
                remote.kill_actor(actor, &self.job.grant.tenant);
                // A name this node claimed for it is free once `kill`
                // returns, as for a local actor (its node releases it
                // again, harmlessly, when the actor ends there).
                let named = {
                    let mut named = self
                        .node
                        .named_elsewhere
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    match named.get(&actor) {
                        Some(n) if n.tenant == self.job.grant.tenant => named.remove(&actor),
                        _ => None,
                    }
                };
                match (named, self.node.directory.get()) {
                    (Some(named), Some(directory)) => {
                        directory.release(&named.namespace, &named.name, actor)
                    }
                    // Created by another node: whatever name it holds in
                    // this tenant goes (its node checks the kill is ours).
                    (None, Some(directory)) => {
                        directory.release_actor(&self.job.grant.tenant, actor)
                    }
                    _ => {}
                }
            }
            None => {
                if self.node.actor_visible(actor, &self.job.grant.tenant) {
                    self.node.actors.kill(actor);
                    // The name is free once `kill` returns, as it is in
                    // the node's own table: the directory's copy is not
                    // left to the actor's loop ending later.
                    if let (Some(record), Some(directory)) =
                        (self.node.actors.get(actor), self.node.directory.get())
                        && let Some(name) = &record.name
                    {
                        directory.release(&record.namespace, name, actor);
                    }
                }
            }
        }
    }

    fn pg_create(
        &self,
        spec: prism_abi::PlacementGroupSpec,
    ) -> BoxFuture<'static, Result<prism_abi::PlacementGroupInfo, WireError>> {
        if !self.job.grant.permissions.call_task {
            return Box::pin(async {
                Err(denied(
                    "reserve resources for tasks (placement groups need action CallTask)",
                ))
            });
        }
        // The bundles count against the tenant's quotas while they exist.
        let mut total = ResourceSet::default();
        for bundle in &spec.bundles {
            if let Ok(set) = super::placement::bundle_resources(bundle) {
                total.give(&set);
            }
        }
        let tenant_account = self.job.account.tenant().clone();
        if let Err(over) = tenant_account.admit_hold(&total) {
            let error = WireError::new(ErrorKind::QuotaExceeded, over.to_string());
            return Box::pin(async move { Err(error) });
        }
        let placement = self.node.placement();
        let owner = self.job.id;
        let tenant = self.job.grant.tenant.clone();
        let node = self.node.clone();
        // On its own task, so that the charge is settled even if the guest
        // is cancelled while it waits.
        let creation = tokio::spawn(async move {
            let created = match placement {
                Some(placement) => placement.create(owner, &tenant, spec).await,
                None => Err(WireError::new(
                    ErrorKind::Unschedulable,
                    "this node cannot make placement groups",
                )),
            };
            match &created {
                Ok(info) => node.hold_group(info.id.clone(), owner, tenant_account, total),
                Err(_) => tenant_account.unhold(&total),
            }
            created
        });
        Box::pin(async move {
            creation.await.unwrap_or_else(|e| {
                Err(WireError::new(
                    ErrorKind::System,
                    format!("placement group creation failed: {e}"),
                ))
            })
        })
    }

    fn pg_remove(&self, group: &str) {
        // Another tenant's group is not found: nothing happens.
        if super::placement::group_tenant(group) != Some(self.job.grant.tenant.as_str()) {
            return;
        }
        self.node.release_group(group);
        if let Some(placement) = self.node.placement() {
            placement.remove(group);
        }
    }

    fn named_put(
        &self,
        name: &str,
        value: Bytes,
        tier: Tier,
    ) -> BoxFuture<'static, Result<(), String>> {
        self.node
            .named_store()
            .put(&self.job.namespace, name, value, tier)
    }

    fn named_get(&self, name: &str) -> BoxFuture<'static, Result<Option<Bytes>, String>> {
        self.node.named_store().get(&self.job.namespace, name)
    }

    fn named_delete(&self, name: &str) -> BoxFuture<'static, Result<bool, String>> {
        self.node.named_store().delete(&self.job.namespace, name)
    }

    fn named_list(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<String>, String>> {
        self.node.named_store().list(&self.job.namespace, prefix)
    }

    fn permissions(&self) -> crate::security::GuestPermissions {
        self.job.grant.permissions
    }
}

impl ActorEnv for Node {
    fn objects(&self) -> &ObjectStore {
        &self.objects
    }

    fn lease(&self, record: &ActorRecord) -> BoxFuture<'static, Lease> {
        let scheduler = self.scheduler.clone();
        let hold = record.hold.clone();
        // Charged to its tenant when the actor was admitted.
        let tenant = self
            .job(record.objects_owner)
            .map(|context| context.account.tenant().clone());
        Box::pin(async move { scheduler.lease(hold, tenant).await })
    }

    fn turn(&self, record: &ActorRecord, slot: &Arc<SlotHandle>) -> BoxFuture<'static, Turn> {
        let scheduler = self.scheduler.clone();
        let slot = slot.clone();
        let job = record.objects_owner;
        let account = self.job(job).map(|context| context.account.clone());
        Box::pin(async move { scheduler.turn(&slot, job, account).await })
    }

    fn instantiate(
        &self,
        record: &Arc<ActorRecord>,
        slot: Arc<SlotHandle>,
    ) -> BoxFuture<'static, Result<Instance, InvocationOutcome>> {
        let node = self.me.upgrade();
        let record = record.clone();
        Box::pin(async move {
            let fail = |m: &str| InvocationOutcome::failed(ErrorKind::System, m.to_string());
            let node = node.ok_or_else(|| fail("the node stopped"))?;
            let job = node
                .job(record.objects_owner)
                .ok_or_else(|| fail("the actor's context is gone"))?;
            let module = job.module.clone();
            let gpu = node.gpu_context(slot.gpus());
            let setup = InstanceSetup {
                program: record.class.clone(),
                memory_limit: record.memory_limit,
                actor: true,
                timeout: node.call_timeout_for(&job.grant, node.config.runtime.task_timeout),
                gpu,
                env: job.env.clone(),
                sandbox: job.sandbox.clone(),
                lend_sleeps: false,
            };
            let host = Arc::new(TaskHost {
                node: node.clone(),
                job,
                slot,
                function: record.class.clone(),
            });
            node.runtime
                .instantiate(module, host, setup, &Arc::new(CancelToken::default()))
                .await
        })
    }

    fn record_output(&self, record: &ActorRecord, function: &str, outcome: &InvocationOutcome) {
        let Some(job) = self.job(record.objects_owner) else {
            return;
        };
        let function = format!("{}.{function}", record.class);
        job.log
            .push_output(LogSource::Stdout, &function, &outcome.stdout);
        job.log
            .push_output(LogSource::Stderr, &function, &outcome.stderr);
    }

    fn load_state(&self, record: &ActorRecord) -> Option<Vec<u8>> {
        match self
            .meta
            .get_actor_state(&record.namespace, &record.state_key())
        {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(actor = %record.id, error = %e, "reading saved actor state failed");
                None
            }
        }
    }

    fn save_state(&self, record: &ActorRecord, state: &[u8]) {
        if let Err(e) = self
            .meta
            .put_actor_state(&record.namespace, &record.state_key(), state)
        {
            tracing::warn!(actor = %record.id, error = %e, "saving actor state failed");
        }
    }

    fn call_timeout(&self, record: &ActorRecord) -> Duration {
        let node = self.config.runtime.task_timeout;
        match self.job(record.objects_owner) {
            Some(job) => self.call_timeout_for(&job.grant, node),
            None => node,
        }
    }

    fn ended(&self, record: &ActorRecord) {
        if let Some(placement) = self.placement() {
            placement.remove_owned(record.objects_owner);
        }
        if let (Some(name), Some(directory)) = (&record.name, self.directory.get()) {
            directory.release(&record.namespace, name, record.id);
        }
        // What the actor created dies with it, as a job's does.
        for actor in self.actors.owned_by(record.objects_owner) {
            self.actors.kill(actor);
        }
        self.scheduler.cancel_job(record.objects_owner);
        self.objects.free_owner(record.objects_owner);
        if let Some(context) = self.job(record.objects_owner) {
            context.account.tenant().actor_done();
            context.account.tenant().unhold(&record.hold);
            context.account.free_all();
        }
        self.release_groups_of(record.objects_owner);
        self.close_job_context(record.objects_owner);
    }
}

/// The scoped namespace an actor lives in: the one its options name, in
/// the creating job's tenant, or else the job's. A guest cannot name a
/// namespace of another tenant: every name it gives is put under its own.
/// A named actor this node created on another node.
struct NamedElsewhere {
    /// Its job, unless it is detached (it then outlives the job).
    job: Option<JobId>,
    tenant: String,
    namespace: String,
    name: String,
}

fn actor_namespace(job_namespace: &str, options: &prism_abi::ActorOptions) -> String {
    match options.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        Some(ns) => scoped(tenant_of(job_namespace), ns),
        None => job_namespace.to_string(),
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
