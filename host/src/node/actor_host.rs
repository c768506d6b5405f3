//! Actors created by guests here: placement (here or on another node),
//! names, and the node as the [`ActorEnv`] that hosts local actors.

use super::{NamedElsewhere, Node, Relocatable, TaskHost, actor_namespace, gpu_denied};
use crate::actors::{self, ActorEnv, ActorRecord};
use crate::cluster::job::{JobContext, LogSource};
use crate::cluster::{ActorCreate, ActorPlacement, NameClaim};
use crate::ids::ActorId;
use crate::objects::ObjectStore;
use crate::runtime::{
    ActorCreateError, BoxFuture, CancelToken, Instance, InstanceSetup, InvocationOutcome,
};
use crate::scheduler::{Lease, SlotHandle, Turn};
use crate::sync::MutexExt;
use crate::task::{Arg, JobTicket};
use prism_abi::{ErrorKind, WireError};
use std::sync::Arc;
use std::time::Duration;

impl Node {
    /// Creates an actor for a guest of `job`.
    pub(super) async fn create_actor(
        &self,
        job: &JobContext,
        class: &str,
        args: Vec<Arg>,
        options: prism_abi::ActorOptions,
    ) -> Result<ActorId, ActorCreateError> {
        let id = ActorId::random_with_tag(self.objects.node_tag());
        self.create_actor_as(job, id, class, args, options, false)
            .await
    }

    /// Creates an actor with id `id`; unless `placed` (another node chose
    /// this one), it may go to another node of the cluster instead.
    pub(super) async fn create_actor_as(
        &self,
        job: &JobContext,
        id: ActorId,
        class: &str,
        args: Vec<Arg>,
        options: prism_abi::ActorOptions,
        placed: bool,
    ) -> Result<ActorId, ActorCreateError> {
        let namespace = actor_namespace(&job.ticket.namespace, &options);
        // An actor acts in its own namespace (named objects, saved state)
        // with that namespace's permissions, which the job's grant carries.
        let actor_grant = if namespace == job.ticket.namespace {
            job.ticket.grant.clone()
        } else {
            let name = namespace.namespace();
            let mut grant = job.ticket.grant.in_namespace(name).ok_or_else(|| {
                ActorCreateError::Invalid(format!("there is no namespace {name:?}"))
            })?;
            // Its data directory is its own namespace's: not the job's.
            grant.permissions.read_directory &= grant.capabilities.is_none();
            Arc::new(grant)
        };
        if let Some(name) = &options.name
            && let Some(existing) = self.actors.by_name(namespace.key(), name)
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
            .map_err(|e| invalid(e.to_string()))?;
        // As in Ray: an actor needs a CPU to be placed but holds none while
        // it lives, unless it asked for CPUs explicitly.
        let mut hold = request.clone();
        if options.num_cpus.is_none() {
            hold.cpu_milli = 0;
        }
        if request.gpu_milli() > 0 && !job.ticket.grant.permissions.use_gpu {
            return Err(ActorCreateError::Denied(gpu_denied().message));
        }
        let class_info = job.module.exports().actors.get(class).cloned();
        let max_memory = self.max_memory(&job.ticket.grant);
        let args = self
            .by_reference(job.id, args)
            .map_err(|e| invalid(e.message))?;
        let mut unplaceable = None;
        let mut elsewhere = None;
        if !placed
            && class_info.is_some()
            && let Some(remote) = self.remote_actors.as_ref()
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
        // Whatever is taken from here on is given back if creation fails.
        let mut rollback = Rollback::default();
        // A name is the cluster's: claimed at the head before the actor
        // exists anywhere.
        let directory = self.directory.as_ref().filter(|_| !placed);
        if let (Some(name), Some(directory)) = (&options.name, directory) {
            let claim = directory
                .claim(namespace.key(), name, id, class, options.detached)
                .await
                .map_err(|e| ActorCreateError::Invalid(e.to_string()))?;
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
            let (key, name) = (namespace.key().to_string(), name.clone());
            rollback.push(move || directory.release(&key, &name, id));
        }
        if let Some((remote, node_id, id)) = elsewhere {
            let create = ActorCreate {
                owner: job.id,
                module: job.module.hash(),
                ticket: job.ticket.clone(),
                class: class.to_string(),
                args,
                options: options.clone(),
            };
            // Known before the request goes out: that node may die before
            // it answers, and the actor is restarted from this record.
            let restarts = options.max_restarts.unwrap_or(0);
            if restarts != 0 {
                self.relocatable.locked().insert(
                    id,
                    Relocatable {
                        node_id: node_id.clone(),
                        create: create.clone(),
                        request: request.clone(),
                        restarts_left: restarts,
                    },
                );
                rollback.push(move || {
                    self.relocatable.locked().remove(&id);
                });
            }
            remote
                .create_actor(&node_id, id, create)
                .map_err(|why| ActorCreateError::Invalid(why.to_string()))?;
            rollback.done();
            if let Some(name) = &options.name {
                self.named_elsewhere.locked().insert(
                    id,
                    NamedElsewhere {
                        job: (!options.detached).then_some(job.id),
                        tenant: job.ticket.grant.tenant.clone(),
                        namespace: namespace.key().to_string(),
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
        let account = self.accounts.open_job(&job.ticket.grant);
        let tenant = account.tenant().clone();
        tenant
            .admit_actor()
            .map_err(|over| ActorCreateError::Quota(over.to_string()))?;
        rollback.push({
            let tenant = tenant.clone();
            move || tenant.actor_done()
        });
        // What it holds for its life counts against the tenant's quotas.
        tenant
            .admit_hold(&record.hold)
            .map_err(|over| ActorCreateError::Quota(over.to_string()))?;
        rollback.push({
            let hold = record.hold.clone();
            move || tenant.unhold(&hold)
        });
        let Some(node) = self.me.upgrade() else {
            return Err(ActorCreateError::Invalid("the node is stopping".into()));
        };
        self.actors
            .register(record.clone())
            .map_err(|taken| ActorCreateError::NameTaken(taken.0))?;
        rollback.done();
        self.actor_registered.send_modify(|n| *n += 1);
        let context = Arc::new(JobContext {
            id: record.objects_owner,
            module: job.module.clone(),
            log: job.log.clone(),
            sandbox: crate::cluster::job::sandbox_of(&actor_grant),
            tenant: Arc::from(actor_grant.tenant.as_str()),
            ticket: Arc::new(JobTicket {
                namespace: record.namespace.clone(),
                grant: actor_grant,
                env: job.ticket.env.clone(),
                job: job.ticket.job,
            }),
            account,
        });
        self.jobs.locked().insert(record.objects_owner, context);
        // Constructor arguments that live on other nodes come here first
        // (once the actor's context exists: it owns the copies).
        for arg in &record.ctor_args {
            if let Arg::Ref(object) = arg {
                self.fetch_remote(*object, record.objects_owner, &job.ticket.grant.tenant);
            }
        }
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
}

/// What a creation took (a name, quota), given back in reverse order if
/// the creation fails: every step pushed runs when the guard is dropped,
/// unless [`Rollback::done`] was called.
#[derive(Default)]
struct Rollback<'a> {
    steps: Vec<Box<dyn FnOnce() + Send + 'a>>,
}

impl<'a> Rollback<'a> {
    fn push(&mut self, step: impl FnOnce() + Send + 'a) {
        self.steps.push(Box::new(step));
    }

    /// The creation succeeded: nothing is given back.
    fn done(&mut self) {
        self.steps.clear();
    }
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        while let Some(step) = self.steps.pop() {
            step();
        }
    }
}

impl ActorEnv for Node {
    fn call_events(&self, record: &ActorRecord) -> Option<crate::actors::CallEvents> {
        if !self.config.task_events {
            return None;
        }
        let job = self.jobs.locked().get(&record.objects_owner)?.ticket.job?;
        Some(crate::actors::CallEvents {
            events: self.events.clone(),
            job,
        })
    }

    fn call_series(
        &self,
        record: &ActorRecord,
        method: &str,
    ) -> Option<Arc<crate::metrics::calls::CallSeries>> {
        let tenant = crate::security::tenants::TenantId::new(record.namespace.tenant());
        let metrics = self.metrics.tenant(&tenant)?;
        Some(
            metrics
                .actor_calls
                .get(&format!("{}.{method}", record.class)),
        )
    }

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
                timeout: node.call_timeout_for(&job.ticket.grant, node.config.runtime.task_timeout),
                gpu,
                env: job.ticket.env.clone(),
                sandbox: job.sandbox.clone(),
                lend_sleeps: false,
            };
            let metrics = job.account.tenant().metrics().cloned();
            let host = Arc::new(TaskHost::new(node.clone(), job, slot, record.class.clone()));
            let making = std::time::Instant::now();
            let made = node
                .runtime
                .instantiate(module, host, setup, &Arc::new(CancelToken::default()))
                .await;
            if let (Ok(_), Some(metrics)) = (&made, metrics) {
                metrics.instance(Some(making.elapsed()));
            }
            made
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
            .get_actor_state(record.namespace.key(), &record.state_key())
        {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(actor = %record.id, error = %e, "reading saved actor state failed");
                None
            }
        }
    }

    fn save_state(&self, record: &ActorRecord, state: &[u8]) {
        if let Err(e) =
            self.meta
                .put_actor_state(record.namespace.key(), &record.state_key(), state)
        {
            tracing::warn!(actor = %record.id, error = %e, "saving actor state failed");
        }
    }

    fn call_timeout(&self, record: &ActorRecord) -> Duration {
        let node = self.config.runtime.task_timeout;
        match self.job(record.objects_owner) {
            Some(job) => self.call_timeout_for(&job.ticket.grant, node),
            None => node,
        }
    }

    fn ended(&self, record: &ActorRecord) {
        if let Some(placement) = self.placement() {
            placement.remove_owned(record.objects_owner);
        }
        if let (Some(name), Some(directory)) = (&record.name, self.directory.as_ref()) {
            directory.release(record.namespace.key(), name, record.id);
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

#[cfg(test)]
mod tests {
    use super::Rollback;
    use std::sync::Mutex;

    #[test]
    fn a_rollback_undoes_in_reverse_unless_done() {
        let undone = Mutex::new(Vec::new());
        {
            let mut rollback = Rollback::default();
            rollback.push(|| undone.lock().unwrap().push("name"));
            rollback.push(|| undone.lock().unwrap().push("quota"));
        }
        assert_eq!(*undone.lock().unwrap(), vec!["quota", "name"]);
        undone.lock().unwrap().clear();
        {
            let mut rollback = Rollback::default();
            rollback.push(|| undone.lock().unwrap().push("name"));
            rollback.done();
        }
        assert!(undone.lock().unwrap().is_empty());
    }
}
