//! Plain data describing a call, shared by the scheduler (which queues and
//! places calls) and the runtime (which produces them from guest submits),
//! and the identity ([`JobTicket`]) every call carries.

use crate::ids::ObjectId;
use crate::security::JobGrant;
use bytes::Bytes;
use std::sync::Arc;

/// Environment variables a job's guests see (WASI `environ`); `None` for
/// none.
pub type JobEnv = Option<Arc<Vec<(String, String)>>>;

/// Who a call runs for: its job's namespace, grant and environment. Every
/// call a job makes carries its job's ticket, so an attempt placed on
/// another node takes its identity with it instead of asking the node
/// that placed it.
#[derive(Debug)]
pub struct JobTicket {
    /// The job's namespace.
    pub namespace: crate::security::tenants::NamespaceRef,
    /// Its tenant, and what its guests may do.
    pub grant: Arc<JobGrant>,
    /// Environment variables its guests see.
    pub env: JobEnv,
    /// The job whose task records its calls go into (`None`: recorded
    /// nowhere, e.g. a served application's replicas).
    pub job: Option<crate::ids::JobId>,
}

/// Which kind of export a call targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A `#[prism::task]` (export `__prism_task_<name>`).
    Task,
    /// A job driver, `#[prism::main]` (export `__prism_main_<name>`).
    Main,
    /// An actor constructor; the function is the class name.
    ActorNew,
    /// An actor method; the function is `<Class>__<method>`.
    ActorMethod,
    /// A persistent actor's state saver; the function is the class name.
    ActorSave,
    /// A persistent actor's state restorer; the function is the class name.
    ActorRestore,
}

impl EntryKind {
    /// The export name of `function` of this kind.
    pub fn export_name(self, function: &str) -> String {
        match self {
            EntryKind::Task => format!("{}{function}", prism_abi::TASK_EXPORT_PREFIX),
            EntryKind::Main => format!("{}{function}", prism_abi::MAIN_EXPORT_PREFIX),
            EntryKind::ActorNew => format!("{}{function}", prism_abi::ACTOR_NEW_PREFIX),
            EntryKind::ActorMethod => format!("{}{function}", prism_abi::ACTOR_CALL_PREFIX),
            EntryKind::ActorSave => format!("{}{function}", prism_abi::ACTOR_SAVE_PREFIX),
            EntryKind::ActorRestore => format!("{}{function}", prism_abi::ACTOR_RESTORE_PREFIX),
        }
    }

    /// What a person calls this kind of entry, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            EntryKind::Task => "task",
            EntryKind::Main => "driver",
            EntryKind::ActorNew => "actor class",
            EntryKind::ActorMethod => "actor method",
            EntryKind::ActorSave | EntryKind::ActorRestore => "persistent actor class",
        }
    }

    /// The function name of method `method` of actor `class`.
    pub fn method_function(class: &str, method: &str) -> String {
        format!("{class}{}{method}", prism_abi::METHOD_SEPARATOR)
    }
}

/// One argument of a call.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    /// An inline MessagePack value.
    Value(Bytes),
    /// An object whose value the callee receives (resolved before it runs).
    Ref(ObjectId),
    /// The caller could not encode this argument; the call fails with
    /// `invalid_argument` without running.
    Invalid(String),
    /// A reference to an object the caller may not see (another tenant's):
    /// the call fails with `object_not_found`, exactly as for an object
    /// that does not exist. Never sent to another node.
    Missing(ObjectId),
}

impl Arg {
    /// What task records say of `args`: the bytes passed by value, and
    /// the objects taken by reference, in order.
    pub fn summary(args: &[Arg]) -> (u64, Vec<crate::ids::ObjectId>) {
        let mut bytes = 0u64;
        let mut refs = Vec::new();
        for arg in args {
            match arg {
                Arg::Value(b) => bytes += b.len() as u64,
                Arg::Ref(id) => refs.push(*id),
                Arg::Invalid(_) | Arg::Missing(_) => {}
            }
        }
        (bytes, refs)
    }

    /// The error of argument `index` naming object `id`, which the caller
    /// cannot see or which does not exist.
    pub fn not_found(index: usize, id: ObjectId) -> prism_abi::WireError {
        prism_abi::WireError::new(
            prism_abi::ErrorKind::ObjectNotFound,
            format!("argument {index} refers to object {id}, which does not exist"),
        )
    }
}
