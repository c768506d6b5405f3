//! A call's arguments: waiting for the objects it takes, building its
//! input from them, and what its record among its job's task events
//! says of them.

use super::{Shared, TaskSpec};
use crate::events::{CallKind, NewCall, TaskTrace};
use crate::objects::{Lookup, Object, ObjectStore, Watch};
use crate::task::{Arg, EntryKind};
use bytes::Bytes;
use prism_abi::{ErrorKind, WireError};
use std::sync::Arc;
use std::time::Instant;

impl Shared {
    /// Starts the record of `spec` among its job's task events.
    pub(super) fn trace(&self, spec: &TaskSpec, submitted: Instant) -> Option<Arc<TaskTrace>> {
        let events = self.events.get()?;
        let job = spec.ticket.as_ref()?.job?;
        let kind = match spec.entry {
            EntryKind::Task => CallKind::Task,
            EntryKind::Main => CallKind::Driver,
            _ => return None,
        };
        let (args_bytes, depends_on) = Arg::summary(&spec.args);
        events.record(
            job,
            NewCall {
                id: spec.recorded_as.unwrap_or(spec.return_id),
                kind,
                function: &spec.function,
                args_bytes,
                depends_on: &depends_on,
                actor: None,
                submitted,
                from_peer: spec.from_peer,
            },
        )
    }
}

/// Waits until every `Ref` argument's object is ready (or gone).
pub async fn args_ready(objects: &ObjectStore, args: &[Arg]) {
    for arg in args {
        if let Arg::Ref(id) = arg
            && let Watch::Pending(rx) = objects.watch(*id)
        {
            let _ = rx.await;
        }
    }
}

/// Builds a call's input buffer: the MessagePack array of its arguments,
/// with `Ref` arguments replaced by their objects' values. An argument whose
/// object holds an error fails the call with that error.
pub fn resolve_args(objects: &ObjectStore, args: &[Arg]) -> Result<Bytes, WireError> {
    let mut values: Vec<Bytes> = Vec::with_capacity(args.len());
    for (i, arg) in args.iter().enumerate() {
        match arg {
            Arg::Value(b) => values.push(b.clone()),
            Arg::Invalid(m) => return Err(WireError::new(ErrorKind::InvalidArgument, m.clone())),
            Arg::Missing(id) => return Err(Arg::not_found(i, *id)),
            Arg::Ref(id) => match objects.lookup(*id) {
                Ok(Lookup::Ready(Object::Value(b))) => values.push(b),
                Ok(Lookup::Ready(Object::Error(e))) => {
                    let mut e = (*e).clone();
                    // The chain goes into the message; the origin becomes
                    // the task that could not run.
                    e.message = match e.origin.take() {
                        Some(o) => format!(
                            "argument {i} failed because task {} ({}) failed: {}",
                            o.function, o.task, e.message
                        ),
                        None => format!("argument {i} failed: {}", e.message),
                    };
                    return Err(e);
                }
                Ok(Lookup::NotFound) | Ok(Lookup::Pending(_)) => {
                    return Err(Arg::not_found(i, *id));
                }
                Err(e) => return Err(WireError::new(ErrorKind::System, e.to_string())),
            },
        }
    }
    Ok(Bytes::from(prism_abi::build_input(
        values.iter().map(|b| b.as_ref()),
    )))
}
