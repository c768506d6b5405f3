//! The `Worker` service: what nodes ask of each other. Every call needs a
//! node certificate (mutual TLS); the head's port, which also serves
//! clients without certificates, checks for one on each call.

use super::peer_identity;
use super::peers::chunks;
use crate::cluster::{LogSource, Node, RemoteCall};
use crate::ids::{JobId, ModuleHash, ObjectId};
use crate::objects::{Lookup, Object};
use crate::task::Arg;
use prism_proto::v1 as pb;
use prism_proto::v1::worker_server::Worker;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// The `Worker` service of one node.
#[derive(Clone)]
pub struct WorkerService {
    node: Arc<Node>,
}

impl WorkerService {
    /// Serves `node`.
    pub fn new(node: Arc<Node>) -> Self {
        WorkerService { node }
    }
}

fn object_id(bytes: &[u8]) -> Result<ObjectId, Status> {
    <[u8; 16]>::try_from(bytes)
        .map(ObjectId::from_bytes)
        .map_err(|_| Status::invalid_argument("an object id is 16 bytes"))
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::ObjectChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Worker for WorkerService {
    async fn execute_task(
        &self,
        request: Request<pb::ExecuteTaskRequest>,
    ) -> Result<Response<pb::ExecuteTaskReply>, Status> {
        let caller = peer_identity(&request)?;
        let r = request.into_inner();
        let module = ModuleHash::parse(&r.module_hash)
            .ok_or_else(|| Status::invalid_argument("malformed module hash"))?;
        let mut args = Vec::with_capacity(r.args.len());
        for arg in r.args {
            args.push(match arg.arg {
                Some(pb::task_arg::Arg::Value(bytes)) => Arg::Value(bytes),
                Some(pb::task_arg::Arg::ObjectId(id)) => Arg::Ref(object_id(&id)?),
                None => return Err(Status::invalid_argument("an argument is empty")),
            });
        }
        tracing::debug!(%caller, function = %r.function, "running a task for another node");
        let call = RemoteCall {
            job: JobId::from_u64(r.job_id),
            module,
            namespace: r.namespace,
            function: r.function,
            args,
            request: super::resources_from_proto(r.request.as_ref()),
            timeout: Duration::from_millis(r.timeout_ms),
            memory_limit: r.memory_limit,
        };
        let (result, logs) = self.node.execute_remote(call).await;
        let outcome = match result {
            Ok(value) => pb::execute_task_reply::Outcome::Value(value),
            Err(error) => pb::execute_task_reply::Outcome::Error(error.encode().into()),
        };
        Ok(Response::new(pb::ExecuteTaskReply {
            outcome: Some(outcome),
            logs: logs
                .into_iter()
                .map(|l| pb::LogLine {
                    function: l.function,
                    source: match l.source {
                        LogSource::Stdout => "stdout",
                        LogSource::Stderr => "stderr",
                        LogSource::Guest => "log",
                        LogSource::System => "prism",
                    }
                    .to_string(),
                    text: l.text,
                })
                .collect(),
        }))
    }

    type FetchObjectStream = ChunkStream;

    async fn fetch_object(
        &self,
        request: Request<pb::FetchObjectRequest>,
    ) -> Result<Response<Self::FetchObjectStream>, Status> {
        peer_identity(&request)?;
        let id = object_id(&request.get_ref().object_id)?;
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

    async fn end_job(
        &self,
        request: Request<pb::EndJobRequest>,
    ) -> Result<Response<pb::EndJobReply>, Status> {
        peer_identity(&request)?;
        self.node
            .end_remote_job(JobId::from_u64(request.get_ref().job_id));
        Ok(Response::new(pb::EndJobReply {}))
    }
}
