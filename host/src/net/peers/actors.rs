//! Actors on other nodes, as seen from this one: placing them, creating
//! them there, sending them calls in order, killing them.

use super::{AWAIT_NODE_VERDICT, AWAIT_RESTART, Caller, Peer, Peers, outcome};
use crate::cluster::{ActorCreate, ActorPlacement, NodeLeft, RemoteActors};
use crate::ids::{ActorId, ObjectId, OwnerId};
use crate::objects::Object;
use crate::scheduler::SchedulingStrategy;
use crate::scheduler::remote::{Pick, Placement, Remote};
use crate::scheduler::resources::ResourceSet;
use crate::sync::MutexExt;
use crate::task::Arg;
use prism_abi::{ErrorKind, WireError};
use prism_proto::v1 as pb;
use std::sync::Arc;
use std::time::Duration;

impl Peers {
    /// The next sequence number of this node's messages to `actor`.
    fn next_seq(&self, actor: ActorId) -> u64 {
        let mut seqs = self.actor_seqs.locked();
        let seq = seqs.entry(actor).or_insert(0);
        *seq += 1;
        *seq - 1
    }

    /// Hosting on `node_id` (still in the view, or gone meanwhile).
    fn remote_placement(&self, node_id: &str) -> ActorPlacement {
        match self.peer(node_id) {
            Some(peer) => ActorPlacement::Remote {
                node_id: peer.id.clone(),
                tag: peer.tag,
            },
            None => ActorPlacement::Unschedulable(format!("node {node_id:?} left the cluster")),
        }
    }

    /// Sends one actor call for `caller`; its result completes
    /// `return_id`. If the actor's node is gone and `follow` is set, asks
    /// where the actor was restarted and sends the call there instead.
    fn send_actor_call(
        &self,
        actor: ActorId,
        method: String,
        args: Vec<Arg>,
        return_id: ObjectId,
        caller: Caller,
        follow: bool,
    ) {
        let Caller { owner, tenant } = caller;
        let Some(me) = self.me.upgrade() else { return };
        let peer = self.actor_host(actor);
        let request = peer.as_ref().map(|_| pb::CallActorRequest {
            actor_id: actor.as_bytes().to_vec(),
            seq: self.next_seq(actor),
            method: method.clone(),
            args: crate::net::calls::args_to_proto(&args),
            epoch: self.epoch,
            tenant: tenant.to_string(),
            caller_owner: owner.as_u64(),
            task_id: return_id.as_bytes().to_vec(),
        });
        tokio::spawn(async move {
            let reply = match (&peer, request) {
                (Some(peer), Some(request)) => {
                    let mut client = peer.client();
                    Some(tokio::select! {
                        reply = client.call_actor(request) => reply,
                        _ = peer.gone() => Err(tonic::Status::unavailable("the node was declared dead")),
                    })
                }
                _ => None,
            };
            let Some(node) = me.node.upgrade() else {
                return;
            };
            let result = match (reply, &peer) {
                (Some(Ok(reply)), Some(peer)) => {
                    outcome(node.as_ref(), owner, &peer.id, reply.into_inner())
                }
                (failed, _) => {
                    let mut verdict = true;
                    if let (Some(Err(status)), Some(peer)) = (&failed, &peer) {
                        peer.suspect();
                        // Unreachable, not yet declared dead: wait for the
                        // head's verdict, after which a restart elsewhere
                        // is known, rather than calling the actor dead.
                        if follow && status.code() == tonic::Code::Unavailable {
                            verdict = tokio::time::timeout(AWAIT_NODE_VERDICT, peer.gone())
                                .await
                                .is_ok();
                        }
                    }
                    // Its node is gone: it may live on elsewhere (the
                    // restart is recorded shortly after the node's death).
                    if follow && verdict {
                        let deadline = tokio::time::Instant::now() + AWAIT_RESTART;
                        loop {
                            if let Some(moved) = node.follow_moved_actor(actor).await {
                                if moved.node_tag() == me.local_tag {
                                    node.call_local_actor(moved, method, args, return_id, &tenant);
                                } else {
                                    let caller = Caller { owner, tenant };
                                    me.send_actor_call(
                                        moved, method, args, return_id, caller, false,
                                    );
                                }
                                return;
                            }
                            if tokio::time::Instant::now() >= deadline {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                    let why = match failed {
                        Some(Err(status)) => status.message().to_string(),
                        _ => "it left the cluster".to_string(),
                    };
                    // A node that cannot be reached but was not declared
                    // dead may come back: the caller may try again.
                    let kind = if verdict {
                        ErrorKind::ActorDied
                    } else {
                        ErrorKind::WorkerDied
                    };
                    Err(WireError::new(
                        kind,
                        format!("actor {actor} lived on a node that failed or left: {why}"),
                    ))
                }
            };
            let object = match result {
                Ok(bytes) => Object::Value(bytes),
                Err(error) => Object::Error(Arc::new(error)),
            };
            let _ = me.objects.complete(return_id, object);
        });
    }

    /// The peer hosting `actor` (by its id's tag).
    fn actor_host(&self, actor: ActorId) -> Option<Arc<Peer>> {
        let tag = actor.node_tag();
        self.read().values().find(|p| p.tag == tag).cloned()
    }

    /// Where an actor goes when its strategy leaves the choice open.
    fn place_actor_anywhere(
        &self,
        request: &ResourceSet,
        local_feasible: bool,
        local_fits: bool,
    ) -> ActorPlacement {
        if local_fits {
            return ActorPlacement::Local;
        }
        if let Placement::Remote(slot) = self.least_loaded(request) {
            return self.remote_placement(slot.node_id());
        }
        if local_feasible {
            return ActorPlacement::Local;
        }
        match self
            .candidates(request)
            .into_iter()
            .min_by(|(a, _), (b, _)| a.load().total_cmp(&b.load()))
        {
            Some((peer, _)) => ActorPlacement::Remote {
                node_id: peer.id.clone(),
                tag: peer.tag,
            },
            // Nowhere: the local node's check says why.
            None => ActorPlacement::Local,
        }
    }
}

impl RemoteActors for Peers {
    fn place_actor(
        &self,
        request: &ResourceSet,
        strategy: &SchedulingStrategy,
        local_feasible: bool,
        local_fits: bool,
    ) -> ActorPlacement {
        match strategy {
            SchedulingStrategy::Default => {
                self.place_actor_anywhere(request, local_feasible, local_fits)
            }
            SchedulingStrategy::Spread => {
                match self.reserve(request, Pick::Spread, local_feasible, local_fits) {
                    Placement::Remote(slot) => self.remote_placement(slot.node_id()),
                    Placement::Local => ActorPlacement::Local,
                    Placement::Wait => {
                        self.place_actor_anywhere(request, local_feasible, local_fits)
                    }
                }
            }
            SchedulingStrategy::Node { node_id, soft } => {
                if *node_id == self.local_id {
                    if local_feasible || !*soft {
                        // (An infeasible one is dead from the start there.)
                        ActorPlacement::Local
                    } else {
                        self.place_actor_anywhere(request, local_feasible, local_fits)
                    }
                } else if self.node_can_hold(node_id, request) {
                    self.remote_placement(node_id)
                } else if *soft {
                    self.place_actor_anywhere(request, local_feasible, local_fits)
                } else if self.has_node(node_id) {
                    ActorPlacement::Unschedulable(format!("node {node_id:?} cannot hold it"))
                } else {
                    ActorPlacement::Unschedulable(format!("node {node_id:?} is not alive"))
                }
            }
        }
    }

    fn create_actor(
        &self,
        node_id: &str,
        id: ActorId,
        create: ActorCreate,
    ) -> Result<(), NodeLeft> {
        let peer = self
            .peer(node_id)
            .ok_or_else(|| NodeLeft(node_id.to_string()))?;
        let seq = self.next_seq(id);
        let request = crate::net::calls::create_actor_request(id, seq, self.epoch, &create);
        let mut client = peer.client();
        tokio::spawn(async move {
            match client.create_actor(request).await {
                Ok(reply) if !reply.get_ref().error.is_empty() => {
                    tracing::info!(actor = %id, "creating an actor on another node failed; its calls say why");
                }
                Ok(_) => {}
                Err(status) => {
                    tracing::warn!(actor = %id, "creating an actor on another node failed: {}", status.message());
                }
            }
        });
        Ok(())
    }

    fn call_actor(
        &self,
        actor: ActorId,
        method: &str,
        args: Vec<Arg>,
        return_id: ObjectId,
        owner: OwnerId,
        tenant: &crate::security::tenants::TenantId,
    ) {
        self.objects.create_pending(return_id, owner);
        self.send_actor_call(
            actor,
            method.to_string(),
            args,
            return_id,
            Caller {
                owner,
                tenant: tenant.clone(),
            },
            true,
        );
    }

    fn kill_actor(&self, actor: ActorId, tenant: &crate::security::tenants::TenantId) {
        let Some(peer) = self.actor_host(actor) else {
            return;
        };
        let request = pb::KillActorRequest {
            actor_id: actor.as_bytes().to_vec(),
            seq: self.next_seq(actor),
            epoch: self.epoch,
            tenant: tenant.to_string(),
        };
        let mut client = peer.client();
        tokio::spawn(async move {
            let _ = client.kill_actor(request).await;
        });
    }
}
