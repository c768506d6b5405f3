//! The `Worker` service: what nodes ask of each other. Every call needs a
//! node certificate (mutual TLS); the head's port, which also serves
//! clients without certificates, checks for one on each call.

use super::calls::{ActorCreation, actor_creation, args_from_proto, object_id, remote_call};
use super::peers::chunks;
use super::{actor_id, peer_identity};
use crate::cluster::{LogLine, Node, RemoteActorCall};
use crate::ids::{ActorId, OwnerId};
use crate::objects::{Lookup, Object};
use crate::sync::MutexExt;
use prism_proto::v1 as pb;
use prism_proto::v1::worker_server::Worker;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// How long an actor message waits for the ones numbered before it (30 s:
/// longer than a creation that fetches and compiles the module); a
/// predecessor lost on the way (its sender failed) is then skipped.
const TURN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a call waits for the actor's creation to arrive (30 s).
const ACTOR_ARRIVAL_TIMEOUT: Duration = Duration::from_secs(30);

/// The order of actor messages: per (actor, calling node), the sequence
/// number whose turn it is.
#[derive(Default)]
struct Turns {
    next: Mutex<HashMap<(ActorId, String), u64>>,
    advanced: tokio::sync::watch::Sender<u64>,
}

impl Turns {
    /// Waits until message `seq` from `caller` to `actor` may go.
    async fn wait(&self, actor: ActorId, caller: &str, seq: u64) {
        let key = (actor, caller.to_string());
        let mut advanced = self.advanced.subscribe();
        let deadline = tokio::time::Instant::now() + TURN_TIMEOUT;
        loop {
            let next = *self.next.locked().get(&key).unwrap_or(&0);
            if seq <= next {
                return;
            }
            if tokio::time::timeout_at(deadline, advanced.changed())
                .await
                .is_err()
            {
                tracing::warn!(%actor, %caller, seq, next, "actor messages before this one never came; going on");
                return;
            }
        }
    }

    /// Message `seq` went: the next one may.
    fn done(&self, actor: ActorId, caller: &str, seq: u64) {
        {
            let mut next = self.next.locked();
            let entry = next.entry((actor, caller.to_string())).or_insert(0);
            *entry = (*entry).max(seq + 1);
        }
        self.advanced.send_modify(|n| *n += 1);
    }
}

/// The `Worker` service of one node.
#[derive(Clone)]
pub struct WorkerService {
    node: Arc<Node>,
    turns: Arc<Turns>,
}

impl WorkerService {
    /// Serves `node`.
    pub fn new(node: Arc<Node>) -> Self {
        WorkerService {
            node,
            turns: Arc::default(),
        }
    }
}

fn reply(
    result: Result<bytes::Bytes, prism_abi::WireError>,
    logs: Vec<LogLine>,
) -> pb::ExecuteTaskReply {
    let outcome = match result {
        Ok(value) => pb::execute_task_reply::Outcome::Value(value),
        Err(error) => pb::execute_task_reply::Outcome::Error(error.encode().into()),
    };
    pb::ExecuteTaskReply {
        outcome: Some(outcome),
        logs: logs.into_iter().map(super::log_line_to_proto).collect(),
    }
}

/// The node id of a caller named by its certificate's subject.
fn node_id_of(subject: &str) -> String {
    if subject == super::HEAD_SUBJECT {
        super::HEAD_NODE_ID.to_string()
    } else {
        subject.to_string()
    }
}

/// Log lines taken from one AppendLogs request (a job's log keeps at
/// most 10,000 anyway).
const MAX_PUSHED_LINES: usize = 10_000;

type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::ObjectChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Worker for WorkerService {
    async fn execute_task(
        &self,
        request: Request<pb::ExecuteTaskRequest>,
    ) -> Result<Response<pb::ExecuteTaskReply>, Status> {
        let caller = peer_identity(&request)?;
        let mut call = remote_call(request.into_inner())?;
        call.placed_by = node_id_of(&caller);
        tracing::debug!(%caller, function = %call.function, "running a task for another node");
        let (result, logs) = self.node.execute_remote(call).await;
        Ok(Response::new(reply(result, logs)))
    }

    async fn create_actor(
        &self,
        request: Request<pb::CreateActorRequest>,
    ) -> Result<Response<pb::CreateActorReply>, Status> {
        let caller = format!("{}#{}", peer_identity(&request)?, request.get_ref().epoch);
        let seq = request.get_ref().seq;
        let ActorCreation {
            id,
            call,
            class,
            options,
        } = actor_creation(request.into_inner())?;
        if id.node_tag() != self.node.objects().node_tag() {
            return Err(Status::invalid_argument(
                "that actor id is not for this node",
            ));
        }
        self.turns.wait(id, &caller, seq).await;
        let created = self
            .node
            .create_actor_remote(id, call, class, options)
            .await;
        self.turns.done(id, &caller, seq);
        Ok(Response::new(pb::CreateActorReply {
            error: created.err().map(|e| e.encode()).unwrap_or_default(),
        }))
    }

    async fn call_actor(
        &self,
        request: Request<pb::CallActorRequest>,
    ) -> Result<Response<pb::ExecuteTaskReply>, Status> {
        let node = peer_identity(&request)?;
        let caller = format!("{node}#{}", request.get_ref().epoch);
        let r = request.into_inner();
        let actor = actor_id(&r.actor_id)?;
        let call = RemoteActorCall {
            placed_by: node_id_of(&node),
            caller_owner: OwnerId::from_u64(r.caller_owner),
            recorded_as: (!r.task_id.is_empty())
                .then(|| super::calls::object_id(&r.task_id))
                .transpose()?,
            actor,
            method: r.method,
            args: args_from_proto(r.args)?,
            tenant: crate::security::tenants::TenantId::new(&r.tenant),
        };
        self.turns.wait(actor, &caller, r.seq).await;
        let turns = self.turns.clone();
        let (result, logs) = self
            .node
            .call_actor_remote(call, ACTOR_ARRIVAL_TIMEOUT, move || {
                turns.done(actor, &caller, r.seq)
            })
            .await;
        Ok(Response::new(reply(result, logs)))
    }

    async fn kill_actor(
        &self,
        request: Request<pb::KillActorRequest>,
    ) -> Result<Response<pb::KillActorReply>, Status> {
        let caller = format!("{}#{}", peer_identity(&request)?, request.get_ref().epoch);
        let actor = actor_id(&request.get_ref().actor_id)?;
        let seq = request.get_ref().seq;
        self.turns.wait(actor, &caller, seq).await;
        self.node.kill_actor(
            actor,
            &crate::security::tenants::TenantId::new(&request.get_ref().tenant),
        );
        self.turns.done(actor, &caller, seq);
        Ok(Response::new(pb::KillActorReply {}))
    }

    type FetchObjectStream = ChunkStream;

    async fn fetch_object(
        &self,
        request: Request<pb::FetchObjectRequest>,
    ) -> Result<Response<Self::FetchObjectStream>, Status> {
        peer_identity(&request)?;
        let id = object_id(&request.get_ref().object_id)?;
        if !self.node.object_of_tenant(
            id,
            &crate::security::tenants::TenantId::new(&request.get_ref().tenant),
        ) {
            // Exactly as an object that does not exist.
            return Err(Status::not_found(format!("no object {id} here")));
        }
        let objects = self.node.objects().clone();
        let object = loop {
            match objects.lookup(id) {
                Ok(Lookup::Ready(object)) => break object,
                Ok(Lookup::Pending(rx)) => {
                    let _ = rx.await;
                }
                Ok(Lookup::NotFound) => {
                    return Err(Status::not_found(format!("no object {id} here")));
                }
                Err(e) => return Err(Status::internal(e.to_string())),
            }
        };
        // It may have appeared (as another tenant's) while we waited.
        if !self.node.object_of_tenant(
            id,
            &crate::security::tenants::TenantId::new(&request.get_ref().tenant),
        ) {
            return Err(Status::not_found(format!("no object {id} here")));
        }
        let messages: Vec<Result<pb::ObjectChunk, Status>> = match object {
            Object::Error(error) => vec![Ok(pb::ObjectChunk {
                part: Some(pb::object_chunk::Part::Error(error.encode().into())),
                total_size: 0,
            })],
            Object::Value(bytes) => {
                let total = bytes.len() as u64;
                chunks(&bytes)
                    .enumerate()
                    .map(|(i, data)| {
                        Ok(pb::ObjectChunk {
                            part: Some(pb::object_chunk::Part::Data(data)),
                            total_size: if i == 0 { total } else { 0 },
                        })
                    })
                    .collect()
            }
        };
        Ok(Response::new(Box::pin(tokio_stream::iter(messages))))
    }

    type TaskRecordsStream = Pin<Box<dyn Stream<Item = Result<pb::TaskPage, Status>> + Send>>;

    async fn task_records(
        &self,
        request: Request<pb::TaskRecordsRequest>,
    ) -> Result<Response<Self::TaskRecordsStream>, Status> {
        peer_identity(&request)?;
        let job = crate::ids::JobId::from_u64(request.get_ref().job_id);
        let (tasks, unrecorded) = self
            .node
            .events()
            .job(job)
            .map(|records| records.snapshot())
            .unwrap_or_default();
        let pages = crate::events::merge::pages(&job.to_string(), tasks, unrecorded);
        Ok(Response::new(Box::pin(tokio_stream::iter(
            pages.into_iter().map(Ok),
        ))))
    }

    async fn append_logs(
        &self,
        request: Request<pb::AppendLogsRequest>,
    ) -> Result<Response<pb::AppendLogsReply>, Status> {
        let caller = peer_identity(&request)?;
        let r = request.into_inner();
        let lines = r
            .lines
            .into_iter()
            .take(MAX_PUSHED_LINES)
            .map(|l| super::log_line_from(&caller, l))
            .collect();
        self.node.append_logs(OwnerId::from_u64(r.job_id), lines);
        Ok(Response::new(pb::AppendLogsReply {}))
    }

    async fn end_job(
        &self,
        request: Request<pb::EndJobRequest>,
    ) -> Result<Response<pb::EndJobReply>, Status> {
        peer_identity(&request)?;
        self.node
            .end_remote_job(OwnerId::from_u64(request.get_ref().job_id));
        Ok(Response::new(pb::EndJobReply {}))
    }

    async fn free_objects(
        &self,
        request: Request<pb::FreeObjectsRequest>,
    ) -> Result<Response<pb::FreeObjectsReply>, Status> {
        peer_identity(&request)?;
        let r = request.into_inner();
        let ids = r
            .object_ids
            .iter()
            .map(|raw| object_id(raw))
            .collect::<Result<Vec<_>, _>>()?;
        let freed = self.node.free_objects(
            OwnerId::from_u64(r.job_id),
            &crate::security::tenants::TenantId::new(&r.tenant),
            &ids,
        );
        Ok(Response::new(pb::FreeObjectsReply {
            freed: freed as u32,
        }))
    }

    async fn reserve_bundles(
        &self,
        request: Request<pb::ReserveBundlesRequest>,
    ) -> Result<Response<pb::ReserveBundlesReply>, Status> {
        let caller = peer_identity(&request)?;
        if caller != super::HEAD_SUBJECT {
            return Err(Status::permission_denied("only the head reserves bundles"));
        }
        let r = request.into_inner();
        let bundles: Vec<_> = r
            .bundles
            .iter()
            .map(|b| (b.index, super::resources_from_proto(b.resources.as_ref())))
            .collect();
        let refused = self
            .node
            .scheduler()
            .reserve_bundles(&r.group, &bundles)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        Ok(Response::new(pb::ReserveBundlesReply { refused }))
    }

    async fn release_bundles(
        &self,
        request: Request<pb::ReleaseBundlesRequest>,
    ) -> Result<Response<pb::ReleaseBundlesReply>, Status> {
        let caller = peer_identity(&request)?;
        if caller != super::HEAD_SUBJECT {
            return Err(Status::permission_denied("only the head releases bundles"));
        }
        self.node
            .scheduler()
            .release_bundles(&request.get_ref().group);
        Ok(Response::new(pb::ReleaseBundlesReply {}))
    }
}
