//! Plain data describing a call, shared by the scheduler (which queues and
//! places calls) and the runtime (which produces them from guest submits).

use crate::ids::ObjectId;
use bytes::Bytes;

/// Which kind of export a call targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A `#[prism::task]` (export `__prism_task_<name>`).
    Task,
    /// A job driver, `#[prism::main]` (export `__prism_main_<name>`).
    Main,
}

impl EntryKind {
    /// The export name of `function` of this kind.
    pub fn export_name(self, function: &str) -> String {
        match self {
            EntryKind::Task => format!("{}{function}", prism_abi::TASK_EXPORT_PREFIX),
            EntryKind::Main => format!("{}{function}", prism_abi::MAIN_EXPORT_PREFIX),
        }
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
}
