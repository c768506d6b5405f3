//! The node as seen by one running guest ([`TaskHost`]): every request a
//! guest makes through `prism_v1`, with its permission checks.

use super::{Node, denied, no_such_actor};
use crate::cluster::job::{JobContext, LogSource};
use crate::ids::{ActorId, ObjectId};
use crate::objects::named::{NamedError, Tier};
use crate::objects::{Lookup, Object, Watch};
use crate::runtime::{ActorCreateError, BoxFuture, GuestHost, PutError};
use crate::scheduler::SlotHandle;
use crate::scheduler::resources::ResourceSet;
use crate::security::tenants::NamespaceRef;
use crate::sync::MutexExt;
use crate::task::Arg;
use bytes::Bytes;
use prism_abi::{ErrorKind, StoreStats, WireError};
use std::sync::Arc;

/// The node as seen by one running guest: its job, its CPU slot.
pub(super) struct TaskHost {
    pub(super) node: Arc<Node>,
    pub(super) job: Arc<JobContext>,
    pub(super) slot: Arc<SlotHandle>,
    pub(super) function: String,
    /// Its last lines of output, for the error of a call that fails.
    pub(super) recent: std::sync::Mutex<std::collections::VecDeque<String>>,
    /// Whether it has written any output line yet.
    wrote: std::sync::atomic::AtomicBool,
}

/// Longest output line an error's origin keeps, in characters.
const MAX_ORIGIN_LINE_CHARS: usize = 256;

impl TaskHost {
    /// The node as seen by a call of `function` of `job` holding `slot`.
    pub(super) fn new(
        node: Arc<Node>,
        job: Arc<JobContext>,
        slot: Arc<SlotHandle>,
        function: String,
    ) -> TaskHost {
        TaskHost {
            node,
            job,
            slot,
            function,
            recent: std::sync::Mutex::default(),
            wrote: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Keeps the last lines of `text` among the call's recent output.
    pub(super) fn remember(&self, text: &[u8]) {
        if text.is_empty() {
            return;
        }
        self.wrote.store(true, std::sync::atomic::Ordering::Relaxed);
        let text = String::from_utf8_lossy(text);
        let mut recent = self.recent.locked();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if recent.len() == prism_abi::MAX_ORIGIN_OUTPUT_LINES {
                recent.pop_front();
            }
            recent.push_back(line.chars().take(MAX_ORIGIN_LINE_CHARS).collect());
        }
    }

    /// The call's last output lines, oldest first.
    pub(super) fn recent_output(&self) -> Vec<String> {
        if !self.wrote.load(std::sync::atomic::Ordering::Relaxed) {
            return Vec::new();
        }
        self.recent.locked().iter().cloned().collect()
    }
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
    fn metric(
        &self,
        update: &prism_abi::metrics::MetricUpdate,
    ) -> Result<(), crate::metrics::GuestMetricError> {
        let job = self.job.id.to_string();
        let origin = crate::metrics::Origin {
            tenant: self.job.account.tenant().name(),
            namespace: self.job.ticket.namespace.namespace(),
            job: &job,
        };
        self.node.metrics.guest.record(origin, update)
    }

    fn submit(&self, function: &str, args: Vec<Arg>, options: prism_abi::TaskOptions) -> ObjectId {
        let return_id = self.node.objects.new_object_id();
        let args = self.node.scrub_refs(&self.job, args, true);
        let spec = if self.job.ticket.grant.permissions.call_task {
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

    fn serve_call(
        &self,
        app: &str,
        deployment: &str,
        call: crate::cluster::DeploymentCall,
    ) -> ObjectId {
        if !self.job.ticket.grant.permissions.call_task {
            let return_id = self.node.objects.new_object_id();
            return self.failed(
                return_id,
                denied("call served deployments (action CallTask)"),
            );
        }
        self.node
            .call_deployment_for(&self.job, app, deployment, call)
    }

    fn put(&self, bytes: Bytes) -> Result<ObjectId, PutError> {
        if !self.job.ticket.grant.permissions.put_object {
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
        if !self.job.ticket.grant.permissions.get_object {
            return Lookup::Ready(Object::Error(Arc::new(denied(
                "get objects (action GetObject)",
            ))));
        }
        self.node
            .fetch_remote(id, self.job.id, &self.job.ticket.grant.tenant);
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
        if !self.job.ticket.grant.permissions.get_object {
            return Watch::Ready;
        }
        self.node
            .fetch_remote(id, self.job.id, &self.job.ticket.grant.tenant);
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
        let tenant = &self.job.ticket.grant.tenant;
        let freed = self.node.free_objects(self.job.id, tenant, &ids);
        let elsewhere = self
            .node
            .remote
            .as_ref()
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

    fn output(&self, stderr: bool, lines: &[u8]) {
        let source = if stderr {
            LogSource::Stderr
        } else {
            LogSource::Stdout
        };
        self.job.log.push_output(source, &self.function, lines);
        self.remember(lines);
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
        if !self.job.ticket.grant.permissions.create_actor {
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
        let return_id = self.node.objects.new_object_id();
        let refused = if !self.job.ticket.grant.permissions.call_actor {
            Some(denied("call actors (action CallActor)"))
        } else if self.node.actor_elsewhere(actor).is_none()
            && !self
                .node
                .actor_visible(actor, &self.job.ticket.grant.tenant)
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
                    &self.job.ticket.grant.tenant,
                ),
                Err(error) => return self.failed(return_id, error),
            }
            return return_id;
        }
        self.node.objects.create_pending(return_id, self.job.id);
        for arg in &args {
            if let Arg::Ref(object) = arg {
                self.node
                    .fetch_remote(*object, self.job.id, &self.job.ticket.grant.tenant);
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
            self.job.ticket.namespace.clone()
        } else {
            NamespaceRef::new(&self.job.ticket.grant.tenant, namespace)
        };
        let namespace = namespace.key();
        let local = self
            .node
            .actors
            .by_name(namespace, name)
            .filter(|r| r.class == class && r.death_reason().is_none())
            .map(|r| r.id);
        let found = match (local, self.node.directory.as_ref()) {
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
        if !self.job.ticket.grant.permissions.call_actor {
            return;
        }
        {
            // Only the tenant's own actor stops being restarted.
            let mut relocatable = self.node.relocatable.locked();
            if relocatable
                .get(&actor)
                .is_some_and(|r| r.create.ticket.grant.tenant == self.job.ticket.grant.tenant)
            {
                relocatable.remove(&actor);
            }
        }
        match self.node.actor_elsewhere(actor) {
            Some(remote) => {
                remote.kill_actor(actor, &self.job.ticket.grant.tenant);
                // A name this node claimed for it is free once `kill`
                // returns, as for a local actor (its node releases it
                // again, harmlessly, when the actor ends there).
                let named = {
                    let mut named = self.node.named_elsewhere.locked();
                    match named.get(&actor) {
                        Some(n) if self.job.ticket.grant.tenant == n.tenant => named.remove(&actor),
                        _ => None,
                    }
                };
                match (named, self.node.directory.as_ref()) {
                    (Some(named), Some(directory)) => {
                        directory.release(&named.namespace, &named.name, actor)
                    }
                    // Created by another node: whatever name it holds in
                    // this tenant goes (its node checks the kill is ours).
                    (None, Some(directory)) => {
                        directory.release_actor(&self.job.ticket.grant.tenant, actor)
                    }
                    _ => {}
                }
            }
            None => {
                if self
                    .node
                    .actor_visible(actor, &self.job.ticket.grant.tenant)
                {
                    self.node.actors.kill(actor);
                    // The name is free once `kill` returns, as it is in
                    // the node's own table: the directory's copy is not
                    // left to the actor's loop ending later.
                    if let (Some(record), Some(directory)) =
                        (self.node.actors.get(actor), self.node.directory.as_ref())
                        && let Some(name) = &record.name
                    {
                        directory.release(record.namespace.key(), name, actor);
                    }
                }
            }
        }
    }

    fn pg_create(
        &self,
        spec: prism_abi::PlacementGroupSpec,
    ) -> BoxFuture<'static, Result<prism_abi::PlacementGroupInfo, WireError>> {
        if !self.job.ticket.grant.permissions.call_task {
            return Box::pin(async {
                Err(denied(
                    "reserve resources for tasks (placement groups need action CallTask)",
                ))
            });
        }
        // The bundles count against the tenant's quotas while they exist.
        let mut total = ResourceSet::default();
        for bundle in &spec.bundles {
            if let Ok(set) = crate::cluster::placement::bundle_resources(bundle) {
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
        let tenant = self.job.ticket.grant.tenant.clone();
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
        if crate::cluster::placement::group_tenant(group)
            != Some(self.job.ticket.grant.tenant.as_str())
        {
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
    ) -> BoxFuture<'static, Result<(), NamedError>> {
        self.node
            .named_store()
            .put(self.job.ticket.namespace.key(), name, value, tier)
    }

    fn named_get(&self, name: &str) -> BoxFuture<'static, Result<Option<Bytes>, NamedError>> {
        self.node
            .named_store()
            .get(self.job.ticket.namespace.key(), name)
    }

    fn named_delete(&self, name: &str) -> BoxFuture<'static, Result<bool, NamedError>> {
        self.node
            .named_store()
            .delete(self.job.ticket.namespace.key(), name)
    }

    fn named_list(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<String>, NamedError>> {
        self.node
            .named_store()
            .list(self.job.ticket.namespace.key(), prefix)
    }

    fn permissions(&self) -> crate::security::GuestPermissions {
        self.job.ticket.grant.permissions
    }
}
