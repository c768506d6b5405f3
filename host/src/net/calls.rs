//! Work sent to another node, on the wire: a task attempt
//! (`ExecuteTaskRequest`) and an actor creation (`CreateActorRequest`),
//! converted from what the placing node holds ([`TaskSpec`],
//! [`ActorCreate`]) and into what the receiving node runs
//! ([`RemoteCall`]), in this one place. Both carry the job's
//! [`JobTicket`]: its namespace, environment and grant.

use super::grant::{grant_from_proto, grant_to_proto};
use super::{resources_from_proto, resources_to_proto};
use crate::cluster::{ActorCreate, RemoteCall};
use crate::ids::{ActorId, ModuleHash, ObjectId, OwnerId};
use crate::scheduler::{BundleRef, TaskSpec};
use crate::security::tenants::NamespaceRef;
use crate::task::{Arg, JobEnv, JobTicket};
use bytes::Bytes;
use prism_proto::v1 as pb;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tonic::Status;

/// Attempt `attempt` of `spec`, for the node that will run it.
pub(super) fn execute_request(
    spec: &TaskSpec,
    ticket: &JobTicket,
    attempt: u32,
) -> pb::ExecuteTaskRequest {
    pb::ExecuteTaskRequest {
        job_id: spec.owner.as_u64(),
        module_hash: format!("{:?}", spec.module),
        namespace: ticket.namespace.key().to_string(),
        function: spec.function.clone(),
        args: args_to_proto(&spec.args),
        request: Some(resources_to_proto(&spec.request)),
        timeout_ms: spec.timeout.as_millis().min(u64::MAX as u128) as u64,
        memory_limit: spec.memory_limit,
        attempt,
        in_bundle: spec.bundle.is_some(),
        bundle_group: spec
            .bundle
            .as_ref()
            .map(|b| b.group.clone())
            .unwrap_or_default(),
        bundle_index: spec.bundle.as_ref().map_or(0, |b| b.index),
        env: env_to_proto(&ticket.env),
        grant: Some(grant_to_proto(&ticket.grant)),
        max_calls: spec.max_calls,
        root_job: ticket.job.map_or(0, |j| j.as_u64()),
        task_id: spec.return_id.as_bytes().to_vec(),
    }
}

/// The attempt another node sent, as this node runs it.
pub(super) fn remote_call(r: pb::ExecuteTaskRequest) -> Result<RemoteCall, Status> {
    let task = (!r.task_id.is_empty())
        .then(|| object_id(&r.task_id))
        .transpose()?;
    Ok(RemoteCall {
        placed_by: String::new(),
        task,
        owner: OwnerId::from_u64(r.job_id),
        module: module_hash(&r.module_hash)?,
        ticket: ticket_from_proto(r.namespace, r.env, r.grant, r.root_job)?,
        function: r.function,
        args: args_from_proto(r.args)?,
        request: resources_from_proto(r.request.as_ref()),
        timeout: Duration::from_millis(r.timeout_ms),
        memory_limit: r.memory_limit,
        bundle: r.in_bundle.then(|| BundleRef {
            group: r.bundle_group,
            index: r.bundle_index,
            node_id: String::new(),
        }),
        attempt: r.attempt,
        max_calls: r.max_calls,
    })
}

/// The creation of actor `id` on another node: message `seq` of this
/// process (`epoch`) to that actor.
pub(super) fn create_actor_request(
    id: ActorId,
    seq: u64,
    epoch: u64,
    create: &ActorCreate,
) -> pb::CreateActorRequest {
    pb::CreateActorRequest {
        actor_id: id.as_bytes().to_vec(),
        seq,
        job_id: create.owner.as_u64(),
        module_hash: format!("{:?}", create.module),
        namespace: create.ticket.namespace.key().to_string(),
        class: create.class.clone(),
        args: args_to_proto(&create.args),
        options: create.options.encode(),
        epoch,
        env: env_to_proto(&create.ticket.env),
        grant: Some(grant_to_proto(&create.ticket.grant)),
        root_job: create.ticket.job.map_or(0, |j| j.as_u64()),
    }
}

/// An actor creation another node sent.
pub(super) struct ActorCreation {
    /// The actor's id (minted for this node).
    pub(super) id: ActorId,
    /// Its job, module, ticket and constructor arguments.
    pub(super) call: RemoteCall,
    /// Its class.
    pub(super) class: String,
    /// Its options.
    pub(super) options: prism_abi::ActorOptions,
}

/// The actor creation another node sent, as this node makes it.
pub(super) fn actor_creation(r: pb::CreateActorRequest) -> Result<ActorCreation, Status> {
    let id = super::actor_id(&r.actor_id)?;
    let options = prism_abi::ActorOptions::decode(&r.options)
        .map_err(|e| Status::invalid_argument(format!("actor options: {e}")))?;
    let call = RemoteCall {
        placed_by: String::new(),
        task: None,
        owner: OwnerId::from_u64(r.job_id),
        module: module_hash(&r.module_hash)?,
        ticket: ticket_from_proto(r.namespace, r.env, r.grant, r.root_job)?,
        function: r.class.clone(),
        args: args_from_proto(r.args)?,
        request: Default::default(),
        timeout: Duration::ZERO,
        memory_limit: 0,
        bundle: None,
        attempt: 0,
        max_calls: 1,
    };
    Ok(ActorCreation {
        id,
        call,
        class: r.class,
        options,
    })
}

fn module_hash(text: &str) -> Result<ModuleHash, Status> {
    ModuleHash::parse(text).ok_or_else(|| Status::invalid_argument("malformed module hash"))
}

fn ticket_from_proto(
    namespace: String,
    env: HashMap<String, String>,
    grant: Option<pb::JobGrant>,
    root_job: u64,
) -> Result<Arc<JobTicket>, Status> {
    Ok(Arc::new(JobTicket {
        namespace: NamespaceRef::parse(&namespace),
        grant: grant_from_proto(grant)?,
        env: env_from_proto(env),
        job: (root_job != 0).then(|| crate::ids::JobId::from_u64(root_job)),
    }))
}

fn env_to_proto(env: &JobEnv) -> HashMap<String, String> {
    env.as_ref()
        .map(|e| e.iter().cloned().collect())
        .unwrap_or_default()
}

/// A job's environment as it arrived (sorted by name).
fn env_from_proto(env: HashMap<String, String>) -> JobEnv {
    if env.is_empty() {
        return None;
    }
    let mut env: Vec<(String, String)> = env.into_iter().collect();
    env.sort();
    Some(Arc::new(env))
}

/// Call arguments on the wire.
pub(super) fn args_to_proto(args: &[Arg]) -> Vec<pb::TaskArg> {
    args.iter()
        .map(|arg| pb::TaskArg {
            arg: Some(match arg {
                Arg::Value(bytes) => pb::task_arg::Arg::Value(bytes.clone()),
                Arg::Ref(id) => pb::task_arg::Arg::ObjectId(Bytes::copy_from_slice(id.as_bytes())),
                // Refused before anything is sent; never reaches here.
                Arg::Invalid(m) => pb::task_arg::Arg::Value(Bytes::from(m.clone())),
                Arg::Missing(id) => {
                    pb::task_arg::Arg::MissingObjectId(Bytes::copy_from_slice(id.as_bytes()))
                }
            }),
        })
        .collect()
}

/// Call arguments as they arrived; `INVALID_ARGUMENT` for an empty one or
/// an object id that is not 16 bytes.
pub(super) fn args_from_proto(args: Vec<pb::TaskArg>) -> Result<Vec<Arg>, Status> {
    args.into_iter()
        .map(|arg| match arg.arg {
            Some(pb::task_arg::Arg::Value(bytes)) => Ok(Arg::Value(bytes)),
            Some(pb::task_arg::Arg::ObjectId(id)) => Ok(Arg::Ref(object_id(&id)?)),
            Some(pb::task_arg::Arg::MissingObjectId(id)) => Ok(Arg::Missing(object_id(&id)?)),
            None => Err(Status::invalid_argument("an argument is empty")),
        })
        .collect()
}

/// An object id as it arrived.
pub(super) fn object_id(bytes: &[u8]) -> Result<ObjectId, Status> {
    <[u8; 16]>::try_from(bytes)
        .map(ObjectId::from_bytes)
        .map_err(|_| Status::invalid_argument("an object id is 16 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::JobGrant;

    fn ticket() -> JobTicket {
        JobTicket {
            namespace: NamespaceRef::new("acme", "prod"),
            grant: JobGrant::local(),
            env: Some(Arc::new(vec![
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "2".to_string()),
            ])),
            job: Some(crate::ids::JobId::from_u64(7)),
        }
    }

    #[test]
    fn an_actor_creation_arrives_as_it_was_sent() {
        let ticket = Arc::new(ticket());
        let create = ActorCreate {
            owner: OwnerId::random(),
            module: ModuleHash::of(b"m"),
            ticket: ticket.clone(),
            class: "Counter".into(),
            args: vec![
                Arg::Value(Bytes::from_static(b"\x01")),
                Arg::Ref(ObjectId::random()),
            ],
            options: prism_abi::ActorOptions::default(),
        };
        let id = ActorId::random_with_tag(3);
        let arrived = actor_creation(create_actor_request(id, 7, 9, &create)).unwrap();
        assert_eq!(arrived.id, id);
        assert_eq!(arrived.class, "Counter");
        assert_eq!(arrived.call.owner, create.owner);
        assert_eq!(arrived.call.module, create.module);
        assert_eq!(arrived.call.ticket.namespace, ticket.namespace);
        assert_eq!(arrived.call.ticket.env, ticket.env);
        assert_eq!(*arrived.call.ticket.grant, *ticket.grant);
        assert_eq!(arrived.call.args.len(), 2);
    }

    #[test]
    fn a_malformed_call_is_refused_with_invalid_argument() {
        let mut bad_hash = create_actor_request(
            ActorId::random(),
            0,
            0,
            &ActorCreate {
                owner: OwnerId::random(),
                module: ModuleHash::of(b"m"),
                ticket: Arc::new(ticket()),
                class: "C".into(),
                args: Vec::new(),
                options: Default::default(),
            },
        );
        bad_hash.module_hash = "not a hash".into();
        let status = actor_creation(bad_hash).err().expect("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);

        let empty_arg = pb::ExecuteTaskRequest {
            module_hash: format!("{:?}", ModuleHash::of(b"m")),
            args: vec![pb::TaskArg { arg: None }],
            grant: Some(grant_to_proto(&JobGrant::local())),
            ..Default::default()
        };
        let status = remote_call(empty_arg).err().expect("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let no_grant = pb::ExecuteTaskRequest {
            module_hash: format!("{:?}", ModuleHash::of(b"m")),
            ..Default::default()
        };
        assert!(remote_call(no_grant).is_err());
    }
}
