//! Durable workflows: how a step graph crosses between guest and host.
//!
//! A step is described, never submitted, by the guest: a [`StepNode`]
//! (what to run, its arguments, its options) travels as a MessagePack
//! extension value of type [`STEP_EXT`] whose data is the node itself,
//! encoded with [`crate::encode_value`]. Such a value may stand anywhere
//! in a step's argument (alone, inside an array, inside a map): the host
//! runs that step first and puts its output in its place. An object
//! reference a step should read is an extension value of type
//! [`OBJECT_EXT`] holding the 16-byte id; the host reads the object once,
//! checkpoints its value, and passes the value.
//!
//! A task run as a step may return a step node instead of a value (at
//! the top level of its return value): a *continuation*. The host runs
//! it after the task returned, and the step's output is the
//! continuation's output.
//!
//! A task may also return an [`OBJECT_EXT`] value (at the top level):
//! the step's output is then that object's value, which the host reads
//! once and logs.
//!
//! A step with `catch_exceptions` outputs `{"Ok": value}` or `{"Err":
//! StepError}` (serde's form of `Result<T, StepError>`) instead of
//! failing the workflow.

use crate::TaskOptions;
use serde::{Deserialize, Serialize};

/// MessagePack extension type of a step node (`'W'`).
pub const STEP_EXT: i8 = 0x57;

/// MessagePack extension type of an object reference passed to a step
/// (`'O'`): 16 bytes, the object id.
pub const OBJECT_EXT: i8 = 0x4F;

/// MessagePack extension type of the placeholder for a virtual actor's
/// state in a method's arguments (`'S'`, no data).
pub const STATE_EXT: i8 = 0x53;

/// Largest virtual actor state (16 MiB).
pub const MAX_ACTOR_STATE: usize = 16 << 20;

/// Default retries of a step after a failure of any kind (3).
pub const DEFAULT_STEP_RETRIES: u32 = 3;

/// Longest step name (256 bytes).
pub const MAX_STEP_NAME: usize = 256;

/// One step of a workflow, as the guest describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepNode {
    /// What the step does.
    pub kind: StepKind,
    /// The task's arguments, in order: each one MessagePack value, which
    /// may contain step nodes ([`STEP_EXT`]) and object references
    /// ([`OBJECT_EXT`]) anywhere. Empty for timers and events.
    #[serde(default)]
    pub args: Vec<Vec<u8>>,
    /// Steps that must finish before this one starts, whose outputs it
    /// does not take: each the data of a [`STEP_EXT`] value (an encoded
    /// [`StepNode`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<Vec<u8>>,
    /// How it runs.
    #[serde(default)]
    pub options: StepOptions,
}

/// What a step does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StepKind {
    /// Runs task `function` of the workflow's module.
    Task {
        /// The task's name.
        function: String,
    },
    /// Runs task `function` once per element of the first argument (an
    /// array), each call taking the element followed by the remaining
    /// arguments, as steps named `<name>[<i>]`; outputs the array of
    /// their outputs, in order. (A pipeline's parameterized stage.)
    ForEach {
        /// The task's name.
        function: String,
    },
    /// Calls a virtual actor: durable state addressed by `actor` in the
    /// workflow's tenant and namespace, kept by the head. `function` is a
    /// task; a [`STATE_EXT`] value among its arguments is replaced by the
    /// actor's state.
    VirtualActor {
        /// The actor's id.
        actor: String,
        /// The task.
        function: String,
        /// What the call does.
        call: ActorCall,
    },
    /// A durable timer: ends `duration_ms` after it first started (the
    /// deadline is logged, so a restart does not restart the timer).
    /// Outputs nil.
    Sleep {
        /// How long.
        duration_ms: u64,
    },
    /// A durable timer that ends at a wall-clock time. Outputs nil.
    SleepUntil {
        /// Unix time in milliseconds.
        unix_ms: u64,
    },
    /// Waits for the next event `name` delivered to the workflow (`prism
    /// workflow signal`); outputs its payload. Each delivered event is
    /// consumed by exactly one such step.
    Event {
        /// The event's name.
        name: String,
    },
}

/// What a call to a virtual actor does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActorCall {
    /// If the actor does not exist, runs the task, whose output is its
    /// first state; else runs nothing. Outputs nil.
    GetOrCreate,
    /// Runs the task, which returns `[new state, result]`; saves the
    /// state and logs the result in one transaction. Outputs the result.
    /// Calls to one actor run one at a time.
    Update,
    /// Runs the task, which returns the result only; writes nothing, and
    /// may run beside other reads.
    Read,
}

/// How a step runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepOptions {
    /// Its id within the workflow. Default: derived from the function's
    /// name and the step's place in the graph (`factorial`, `mul#2`, …),
    /// stable across resumes. Names are unique within a workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Retries after a failure of any kind (an application error, a trap,
    /// a lost node). Default [`DEFAULT_STEP_RETRIES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Output `{"Ok": value}` or `{"Err": StepError}` instead of failing
    /// the workflow. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub catch_exceptions: bool,
    /// The task's resources and deadline (its `max_retries` is ignored:
    /// the step's applies).
    #[serde(default)]
    pub task: TaskOptions,
}

/// Why a step failed, as a step with `catch_exceptions` outputs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepError {
    /// The last attempt's error kind (`application`, `panic`, `trap`, …).
    pub kind: crate::ErrorKind,
    /// Its message.
    pub message: String,
    /// How many times the step ran.
    pub attempts: u32,
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} after {} attempt(s): {}",
            self.kind.as_str(),
            self.attempts,
            self.message
        )
    }
}

impl StepNode {
    /// A task step with default options.
    pub fn task(function: &str, args: Vec<Vec<u8>>) -> StepNode {
        StepNode {
            kind: StepKind::Task {
                function: function.to_string(),
            },
            args,
            after: Vec::new(),
            options: StepOptions::default(),
        }
    }

    /// The node as the data of a [`STEP_EXT`] value.
    pub fn encode(&self) -> Vec<u8> {
        crate::encode_value(self).unwrap_or_default()
    }

    /// A node from the data of a [`STEP_EXT`] value.
    pub fn decode(data: &[u8]) -> Result<StepNode, rmp_serde::decode::Error> {
        rmp_serde::from_slice(data)
    }

    /// The node as a whole MessagePack value (the extension value).
    pub fn to_value_bytes(&self) -> Vec<u8> {
        let data = self.encode();
        let mut out = Vec::with_capacity(data.len() + 6);
        // Writing to a Vec cannot fail.
        let _ = rmp::encode::write_ext_meta(&mut out, data.len() as u32, STEP_EXT);
        out.extend_from_slice(&data);
        out
    }

    /// The function (or the kind of timer or event) for names and logs.
    pub fn label(&self) -> &str {
        match &self.kind {
            StepKind::Task { function }
            | StepKind::ForEach { function }
            | StepKind::VirtualActor { function, .. } => function,
            StepKind::Sleep { .. } | StepKind::SleepUntil { .. } => "sleep",
            StepKind::Event { .. } => "event",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_round_trips_as_an_extension_value() {
        let mut node = StepNode::task("mul", vec![crate::encode_value(&5u64).unwrap()]);
        node.options.name = Some("m".into());
        node.options.catch_exceptions = true;
        let bytes = node.to_value_bytes();
        let mut rd = &bytes[..];
        let meta = rmp::decode::read_ext_meta(&mut rd).unwrap();
        assert_eq!(meta.typeid, STEP_EXT);
        assert_eq!(meta.size as usize, rd.len());
        assert_eq!(StepNode::decode(rd).unwrap(), node);
    }

    #[test]
    fn a_caught_result_reads_back_as_a_result() {
        let err: Result<u64, StepError> = Err(StepError {
            kind: crate::ErrorKind::Application,
            message: "no".into(),
            attempts: 4,
        });
        let bytes = crate::encode_value(&err).unwrap();
        let back: Result<u64, StepError> = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, err);
        let ok: Result<u64, StepError> = Ok(7);
        let bytes = crate::encode_value(&ok).unwrap();
        assert_eq!(
            rmp_serde::from_slice::<Result<u64, StepError>>(&bytes).unwrap(),
            ok
        );
    }
}
