//! Served applications on this node: the context an application's
//! handlers run in (like a job's, without a driver), requests to function
//! deployments run as tasks of that context, and class-deployment
//! replicas, which are actors it owns. `serve::Apps` drives these.

use super::Node;
use crate::cluster::job::JobContext;
use crate::ids::{ActorId, ModuleHash, OwnerId};
use crate::objects::Object;
use crate::runtime::ActorCreateError;
use crate::sync::{MutexExt, RwLockExt};
use crate::task::{Arg, EntryKind, JobTicket};
use bytes::Bytes;
use prism_abi::{ErrorKind, WireError};
use std::sync::Arc;

/// An application's context on the node that serves it.
#[derive(Clone)]
pub struct ServiceContext(Arc<JobContext>);

impl ServiceContext {
    /// The owner of everything the application's handlers make.
    pub fn owner(&self) -> OwnerId {
        self.0.id
    }

    /// What its handlers run with: namespace, grant, environment.
    pub fn ticket(&self) -> Arc<JobTicket> {
        self.0.ticket.clone()
    }

    /// Its module's digest.
    pub fn module(&self) -> ModuleHash {
        self.0.module.hash()
    }

    /// Whether the module exports a task named `function`.
    pub fn has_task(&self, function: &str) -> bool {
        self.0.module.entry(EntryKind::Task, function).is_some()
    }

    /// Whether the module exports an actor class named `class`.
    pub fn has_class(&self, class: &str) -> bool {
        self.0.module.exports().actors.contains_key(class)
    }

    /// Whether actor class `class` has a method `method`.
    pub fn class_has_method(&self, class: &str, method: &str) -> bool {
        self.0
            .module
            .exports()
            .actors
            .get(class)
            .is_some_and(|c| c.methods.iter().any(|m| m == method))
    }

    /// The task and actor class names the module exports (for errors).
    pub fn exports(&self) -> (Vec<String>, Vec<String>) {
        let exports = self.0.module.exports();
        let mut tasks: Vec<String> = exports.tasks.to_vec();
        tasks.sort();
        let mut classes: Vec<String> = exports.actors.keys().cloned().collect();
        classes.sort();
        (tasks, classes)
    }
}

impl Node {
    /// Sends guests' calls to served deployments to `calls` (the head's
    /// applications, or the head), instead of where they went before.
    pub fn route_deployment_calls(&self, calls: Arc<dyn crate::cluster::DeploymentCalls>) {
        *self.deployments.write_locked() = Some(calls);
    }

    /// Calls a served deployment for a guest of `job`: the result (an
    /// encoded value — for a request, the `Response` — or the error)
    /// completes a new object of the job, whose id is returned at once.
    pub(super) fn call_deployment_for(
        &self,
        job: &JobContext,
        app: &str,
        deployment: &str,
        call: crate::cluster::DeploymentCall,
    ) -> crate::ids::ObjectId {
        let return_id = self.objects.new_object_id();
        self.objects.create_pending(return_id, job.id);
        let Some(calls) = self.deployments.read_locked().clone() else {
            let error = WireError::new(
                ErrorKind::Unschedulable,
                "this node reaches no served applications",
            );
            let _ = self
                .objects
                .complete(return_id, Object::Error(Arc::new(error)));
            return return_id;
        };
        let answer = calls.call_deployment(&job.ticket.grant.tenant, app, deployment, call);
        let objects = self.objects.clone();
        tokio::spawn(async move {
            let object = match answer.await {
                Ok(bytes) => Object::Value(bytes),
                Err(error) => Object::Error(Arc::new(error)),
            };
            let _ = objects.complete(return_id, object);
        });
        return_id
    }

    /// Opens the context of a served application: its module, loaded for
    /// its tenant, and the ticket (namespace, grant, environment) its
    /// handlers run with. `owner` must be new.
    pub async fn open_service(
        &self,
        owner: OwnerId,
        module: ModuleHash,
        ticket: Arc<JobTicket>,
    ) -> Result<ServiceContext, WireError> {
        let module = self.load_module(&ticket.grant.tenant, module).await?;
        Ok(ServiceContext(self.open_local_context(
            owner,
            module,
            ticket,
            Default::default(),
        )))
    }

    /// Opens here the context of an application another node (the head)
    /// serves, for this node's ingress: its requests run here under the
    /// application's owner, module and ticket, as its tasks placed here
    /// would. The head ends it on every node when it closes the
    /// application (`EndJob`).
    pub async fn open_remote_service(
        &self,
        owner: OwnerId,
        module: ModuleHash,
        ticket: Arc<JobTicket>,
    ) -> Result<ServiceContext, WireError> {
        Ok(ServiceContext(
            self.remote_context(owner, module, &ticket).await?,
        ))
    }

    /// Closes an application's context: its replicas die, its requests
    /// in flight are cancelled, what it holds is freed.
    pub fn close_service(&self, service: &ServiceContext) {
        let owner = service.owner();
        if self.jobs.locked().contains_key(&owner) {
            self.end_local_owner(owner, &service.0);
        }
    }

    /// Runs task `function` of `service` on `request` (one encoded
    /// argument) and returns its encoded value. The task runs as any
    /// task of the application would: on a warm instance, on any node,
    /// under the tenant's quotas, within `options.timeout_ms`.
    pub async fn call_service_task(
        &self,
        service: &ServiceContext,
        function: &str,
        request: Bytes,
        options: prism_abi::TaskOptions,
    ) -> Result<Bytes, WireError> {
        self.call_context_task(service, function, vec![request], options)
            .await
    }

    /// Runs task `function` of `service` on `args` (each one encoded
    /// argument) and returns its encoded value, as
    /// [`Node::call_service_task`] does.
    pub async fn call_context_task(
        &self,
        service: &ServiceContext,
        function: &str,
        args: Vec<Bytes>,
        options: prism_abi::TaskOptions,
    ) -> Result<Bytes, WireError> {
        let context = &service.0;
        let return_id = self.objects.new_object_id();
        let args = self.by_reference(context.id, args.into_iter().map(Arg::Value).collect())?;
        // Large arguments moved into the store for the call: freed with it.
        let moved: Vec<_> = args
            .iter()
            .filter_map(|a| match a {
                Arg::Ref(id) => Some(*id),
                _ => None,
            })
            .collect();
        let result = async {
            let mut spec = self.task_spec(context, function, args, options, return_id)?;
            context
                .account
                .tenant()
                .admit_task()
                .map_err(|e| WireError::new(ErrorKind::QuotaExceeded, e.to_string()))?;
            spec.admitted = true;
            self.scheduler.submit(spec);
            self.result_of(return_id, (ErrorKind::Cancelled, "the application stopped"))
                .await
        }
        .await;
        self.objects.free(context.id, return_id);
        for id in moved {
            self.objects.free(context.id, id);
        }
        result
    }

    /// The value of object `id`, as `service`'s guests would read it
    /// (another tenant's object is not found); waits while it is pending.
    pub async fn context_object(
        &self,
        service: &ServiceContext,
        id: crate::ids::ObjectId,
    ) -> Result<Bytes, WireError> {
        let context = &service.0;
        let not_found = || WireError::new(ErrorKind::ObjectNotFound, format!("no object {id}"));
        if !context.ticket.grant.permissions.get_object {
            return Err(WireError::new(
                ErrorKind::PermissionDenied,
                "the policy does not permit GetObject",
            ));
        }
        if !self.object_visible(id, context) {
            return Err(not_found());
        }
        if self.objects.owner(id).is_none() {
            self.fetch_remote(id, context.id, &context.ticket.grant.tenant);
        }
        self.result_of(id, (ErrorKind::ObjectNotFound, "the object vanished"))
            .await
    }

    /// Creates a replica of a class deployment: an actor of `class`
    /// owned by `service`, given `args` (each one encoded argument).
    pub async fn create_service_actor(
        &self,
        service: &ServiceContext,
        class: &str,
        args: Vec<Bytes>,
        options: prism_abi::ActorOptions,
    ) -> Result<ActorId, ActorCreateError> {
        let args = args.into_iter().map(Arg::Value).collect();
        self.create_actor(&service.0, class, args, options).await
    }

    /// Calls `method` of a replica `actor` of `service` with `args` and
    /// returns its encoded value.
    pub async fn call_service_actor(
        &self,
        service: &ServiceContext,
        actor: ActorId,
        method: &str,
        args: Vec<Bytes>,
    ) -> Result<Bytes, WireError> {
        let context = &service.0;
        let actor = self.current_actor(actor);
        let return_id = self.objects.new_object_id();
        let args = self.by_reference(context.id, args.into_iter().map(Arg::Value).collect())?;
        match self.actor_elsewhere(actor) {
            Some(remote) => remote.call_actor(
                actor,
                method,
                args,
                return_id,
                context.id,
                &context.ticket.grant.tenant,
            ),
            None => {
                self.objects.create_pending(return_id, context.id);
                if let Err(error) = self.actors.call(actor, method.to_string(), args, return_id) {
                    let _ = self
                        .objects
                        .complete(return_id, Object::Error(Arc::new(error)));
                }
            }
        }
        let result = self
            .result_of(return_id, (ErrorKind::ActorDied, "the replica has stopped"))
            .await;
        self.objects.free(context.id, return_id);
        result
    }

    /// Drops the idle warm instances of `service` here (its function
    /// deployments scaled to zero); how many.
    pub fn drop_service_instances(&self, service: &ServiceContext) -> usize {
        self.runtime.forget_job(service.owner().as_u64())
    }

    /// Stops a replica (it is not restarted).
    pub fn kill_service_actor(&self, service: &ServiceContext, actor: ActorId) {
        let actor = self.current_actor(actor);
        match self.actor_elsewhere(actor) {
            Some(remote) => remote.kill_actor(actor, &service.0.ticket.grant.tenant),
            None => self.actors.kill(actor),
        }
    }
}
