//! Actors that live on other nodes: calls routed to them, creation
//! there, names in the cluster directory, and restarting them elsewhere
//! when their node dies (relocation).

use super::{Node, RemoteCall, actor_namespace, no_such_actor};
use crate::cluster::{ActorCreate, ActorPlacement, NameClaim, RemoteActors};
use crate::ids::{ActorId, ObjectId, OwnerId};
use crate::objects::Object;
use crate::runtime::ActorCreateError;
use crate::scheduler::resources::ResourceSet;
use crate::sync::MutexExt;
use crate::task::Arg;
use bytes::Bytes;
use prism_abi::{ErrorKind, WireError};
use std::sync::Arc;
use std::time::Duration;

impl Node {
    /// The id an actor answers to now: restarted on another node after
    /// its node died, it has a new one.
    pub(super) fn current_actor(&self, mut actor: ActorId) -> ActorId {
        let moved = self.moved.locked();
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
        tenant: &crate::security::tenants::TenantId,
    ) {
        let mut args = args;
        match self.actors.get(actor) {
            Some(record) if record.namespace.tenant() != tenant.as_str() => {
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
        let directory = self.directory.as_ref()?.clone();
        let moved = directory
            .resolve_move(actor)
            .await
            .filter(|m| *m != actor)?;
        self.moved.locked().insert(actor, moved);
        Some(moved)
    }

    /// Nodes left the cluster view: actors this node created there that may
    /// restart are created again elsewhere (their constructor runs again,
    /// as after any restart), each use of a restart, and calls from this
    /// node go to the new one. A named one takes its name back.
    pub fn nodes_left(&self, nodes: &[String]) {
        let due: Vec<(ActorId, Relocatable)> = {
            let mut relocatable = self.relocatable.locked();
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

    pub(super) async fn relocate(&self, old: ActorId, mut entry: Relocatable) {
        let Some(remote) = self.remote_actors.as_ref() else {
            return;
        };
        if self.job(entry.create.owner).is_none() && !entry.create.options.detached {
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
        let namespace = actor_namespace(&entry.create.ticket.namespace, &entry.create.options);
        if let (Some(name), Some(directory)) = (&entry.create.options.name, self.directory.as_ref())
        {
            directory.release(namespace.key(), name, old);
            if let Ok(NameClaim::Existing { .. }) = directory
                .claim(
                    namespace.key(),
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
        if let Some(directory) = self.directory.as_ref() {
            directory.record_move(old, new);
        }
        self.moved.locked().insert(old, new);
        {
            let mut named = self.named_elsewhere.locked();
            if let Some(n) = named.remove(&old)
                && entry.create.options.name.is_some()
            {
                named.insert(new, n);
            }
        }
        entry.node_id = node_id;
        if entry.restarts_left != 0 {
            self.relocatable.locked().insert(new, entry);
        }
    }

    /// The other nodes' actors, if `actor` lives on another node.
    pub(super) fn actor_elsewhere(&self, actor: ActorId) -> Option<&Arc<dyn RemoteActors>> {
        let tag = actor.node_tag();
        if tag == 0 || tag == self.objects.node_tag() {
            return None;
        }
        self.remote_actors.as_ref()
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
    ) -> (Result<Bytes, WireError>, Vec<crate::cluster::job::LogLine>) {
        let mut registered = self.actor_registered.subscribe();
        let deadline = tokio::time::Instant::now() + wait_for_actor;
        let record = loop {
            if let Some(record) = self.actors.get(call.actor) {
                break Some(record);
            }
            let failed = self
                .failed_actors
                .locked()
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
        let Some(record) = record.filter(|r| r.namespace.tenant() == call.tenant.as_str()) else {
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
        let return_id = self.objects.new_object_id();
        self.objects.create_pending(return_id, owner);
        let context = self.job(owner);
        let _relay = match (record.owner, &context) {
            (Some(_), Some(context)) => {
                self.relay_logs(context, call.caller_owner, &call.placed_by)
            }
            _ => None,
        };
        let sent =
            self.actors
                .call_recorded(call.actor, call.method, args, return_id, call.recorded_as);
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
        let options_namespace = actor_namespace(&context.ticket.namespace, &options);
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
                let mut failed = self.failed_actors.locked();
                if failed.len() >= crate::actors::DEAD_ACTORS_KEPT {
                    failed.clear();
                }
                failed.insert(id, (context.ticket.grant.tenant.clone(), error.clone()));
                drop(failed);
                if let (Some(name), Some(directory)) = (&options_name, self.directory.as_ref()) {
                    directory.release(options_namespace.key(), name, id);
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
        let directory = self.directory.as_ref()?;
        directory.lookup(namespace, name).await.map(|(id, _)| id)
    }

    /// Calls a method of `actor` (on any node) for a client, and waits for
    /// its value.
    pub async fn call_actor_for_client(
        &self,
        actor: ActorId,
        method: &str,
        args: Vec<Bytes>,
        tenant: &crate::security::tenants::TenantId,
    ) -> Result<Bytes, WireError> {
        // The call's objects belong to a job of their own, freed after.
        let actor = self.current_actor(actor);
        let owner = OwnerId::random();
        let return_id = self.objects.new_object_id();
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
    pub fn kill_actor(&self, id: ActorId, tenant: &crate::security::tenants::TenantId) {
        if self.actor_visible(id, tenant) {
            self.actors.kill(id);
        }
    }
}

/// An actor this node created on another node, kept to restart it
/// elsewhere if that node dies.
pub(super) struct Relocatable {
    pub(super) node_id: String,
    pub(super) create: ActorCreate,
    pub(super) request: ResourceSet,
    /// Negative: unlimited.
    pub(super) restarts_left: i32,
}

/// A call of an actor on this node from another node.
pub struct RemoteActorCall {
    /// The node that placed the call (where the actor's log lines go
    /// while it runs); empty if not known.
    pub placed_by: String,
    /// The owner its result belongs to on that node (whose log takes the
    /// lines).
    pub caller_owner: OwnerId,
    /// The call's id on that node, for its record among the job's task
    /// events.
    pub recorded_as: Option<ObjectId>,
    /// The actor.
    pub actor: ActorId,
    /// The method.
    pub method: String,
    /// Its arguments; references are pulled from where they live.
    pub args: Vec<Arg>,
    /// The caller's tenant: another tenant's actor answers as a dead one.
    pub tenant: crate::security::tenants::TenantId,
}

/// A named actor this node created on another node.
pub(super) struct NamedElsewhere {
    /// Its job, unless it is detached (it then outlives the job).
    pub(super) job: Option<OwnerId>,
    pub(super) tenant: crate::security::tenants::TenantId,
    pub(super) namespace: String,
    pub(super) name: String,
}
