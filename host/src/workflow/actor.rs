//! Virtual actors: durable state addressed by an id in a tenant's
//! namespace, kept in the workflow log; their methods are tasks that
//! take the state. A call that changes the state saves it and logs the
//! step in one transaction; calls that change one actor run one at a
//! time, reads beside them.

use super::exec::{Run, StepFailure};
use super::graph;
use super::record::StepRecord;
use super::store::Op;
use crate::sync::MutexExt;
use bytes::Bytes;
use prism_abi::workflow::{ActorCall, MAX_ACTOR_STATE, STATE_EXT, StepNode};
use prism_abi::{ErrorKind, WireError};
use rmpv::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// Most virtual actors one tenant may have (10,000).
pub const MAX_ACTORS_PER_TENANT: usize = 10_000;

/// One lock per virtual actor that calls change.
#[derive(Default)]
pub struct ActorLocks(std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl ActorLocks {
    pub(super) fn of(&self, key: String) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.0.locked();
        // Locks nobody holds or waits for go.
        if locks.len() > 1024 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(key).or_default().clone()
    }
}

fn invalid(step: &str, message: impl Into<String>) -> StepFailure {
    StepFailure::Failed {
        step: step.to_string(),
        error: WireError::new(ErrorKind::InvalidArgument, message),
    }
}

/// `args` with every state placeholder replaced by `state`.
fn with_state(
    step: &str,
    args: &[Bytes],
    state: Option<&Bytes>,
) -> Result<Vec<Bytes>, StepFailure> {
    let state = state
        .map(|s| graph::parse(s))
        .transpose()
        .map_err(|e| invalid(step, e.to_string()))?;
    let mut out = Vec::with_capacity(args.len());
    for arg in args {
        let mut value = graph::parse(arg).map_err(|e| invalid(step, e.to_string()))?;
        replace_state(&mut value, state.as_ref(), 0).map_err(|m| invalid(step, m))?;
        out.push(Bytes::from(graph::write(&value)));
    }
    Ok(out)
}

fn replace_state(value: &mut Value, state: Option<&Value>, depth: usize) -> Result<(), String> {
    if depth > graph::MAX_DEPTH {
        return Err("an argument is nested too deeply".into());
    }
    match value {
        Value::Ext(STATE_EXT, _) => match state {
            Some(state) => *value = state.clone(),
            None => return Err("a constructor cannot take the actor's state".into()),
        },
        Value::Array(items) => {
            for item in items {
                replace_state(item, state, depth + 1)?;
            }
        }
        Value::Map(entries) => {
            for (k, v) in entries {
                replace_state(k, state, depth + 1)?;
                replace_state(v, state, depth + 1)?;
            }
        }
        _ => {}
    }
    Ok(())
}

impl Run {
    /// Runs a call to virtual actor `actor` (see [`ActorCall`]).
    pub(super) async fn actor_call(
        self: &Arc<Self>,
        node: &StepNode,
        actor: &str,
        function: &str,
        call: ActorCall,
        args: Vec<Bytes>,
        record: &mut StepRecord,
    ) -> Result<Bytes, StepFailure> {
        let step = record.name.clone();
        super::check_id(actor).map_err(|e| invalid(&step, e.to_string()))?;
        let namespace = self.namespace.clone();
        let stopped = |e: super::StoreError| StepFailure::Stopped(e.to_string());
        // Changes wait for the actor's lock; reads do not.
        let lock = (call != ActorCall::Read).then(|| {
            self.actor_locks
                .of(format!("{}/{namespace}/{actor}", self.tenant))
        });
        let _held = match &lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        let state = self
            .store
            .actor(&self.tenant, &namespace, actor)
            .map_err(stopped)?;
        if call == ActorCall::GetOrCreate && state.is_some() {
            return self.finish(record, nil(), Vec::new()).await;
        }
        // Refusals fail the step like its task's errors (a step that
        // catches exceptions gets them as data).
        if call != ActorCall::GetOrCreate && state.is_none() {
            let error = WireError::new(
                ErrorKind::ActorDied,
                format!(
                    "no virtual actor {actor} in namespace {namespace} (get_or_create it first)"
                ),
            );
            return self.failure(node, record, error, Vec::new()).await;
        }
        if call == ActorCall::GetOrCreate
            && self.store.actors(&self.tenant).map_err(stopped)? >= MAX_ACTORS_PER_TENANT
        {
            let error = WireError::new(
                ErrorKind::QuotaExceeded,
                format!(
                    "tenant {} has {MAX_ACTORS_PER_TENANT} virtual actors, the most it may",
                    self.tenant
                ),
            );
            return self.failure(node, record, error, Vec::new()).await;
        }
        let args = with_state(&step, &args, state.as_ref())?;
        let mut ops = self.input_ops(&args, record);
        let output = match self.attempts(node, function, &args, record).await? {
            Ok(output) => output,
            Err(error) => return self.failure(node, record, error, ops).await,
        };
        let (new_state, result) = match call {
            ActorCall::Read => (None, output),
            ActorCall::GetOrCreate => (Some(output), nil()),
            ActorCall::Update => {
                match graph::parse(&output).map_err(|e| invalid(&step, e.to_string()))? {
                    Value::Array(mut pair) if pair.len() == 2 => {
                        let result = pair.pop().unwrap_or(Value::Nil);
                        let state = pair.pop().unwrap_or(Value::Nil);
                        (
                            Some(Bytes::from(graph::write(&state))),
                            Bytes::from(graph::write(&result)),
                        )
                    }
                    _ => {
                        return Err(invalid(
                            &step,
                            format!(
                                "method {function} of a virtual actor must return (new state, result)"
                            ),
                        ));
                    }
                }
            }
        };
        if let Some(state) = new_state {
            if state.len() > MAX_ACTOR_STATE {
                let error = WireError::new(
                    ErrorKind::QuotaExceeded,
                    format!(
                        "virtual actor {actor}'s state would be {} bytes, more than {MAX_ACTOR_STATE}",
                        state.len()
                    ),
                );
                return self.failure(node, record, error, Vec::new()).await;
            }
            ops.push(Op::PutActor {
                tenant: self.tenant.clone(),
                namespace,
                actor: actor.to_string(),
                state,
            });
        }
        let result = if node.options.catch_exceptions {
            super::exec::caught_ok(&result)
        } else {
            result
        };
        self.finish(record, result, ops).await
    }
}

fn nil() -> Bytes {
    Bytes::from_static(&[0xc0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_placeholder_is_replaced_anywhere_and_refused_without_state() {
        let placeholder = Value::Ext(STATE_EXT, Vec::new());
        let arg = Bytes::from(graph::write(&Value::Array(vec![
            placeholder.clone(),
            Value::from(3),
        ])));
        let state = Bytes::from(graph::write(&Value::from(27)));
        let out = with_state("s", std::slice::from_ref(&arg), Some(&state)).unwrap();
        assert_eq!(
            graph::parse(&out[0]).unwrap(),
            Value::Array(vec![Value::from(27), Value::from(3)])
        );
        assert!(with_state("s", &[arg], None).is_err());
        let plain = Bytes::from(graph::write(&Value::from(1)));
        assert_eq!(
            with_state("s", std::slice::from_ref(&plain), None).unwrap(),
            vec![plain]
        );
    }
}
