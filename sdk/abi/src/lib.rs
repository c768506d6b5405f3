//! The `prism_v1` guest/host ABI, shared by the host (`prism-host`) and the
//! guest SDK (`prism`).
//!
//! Everything a guest and the host must agree on byte for byte lives here and
//! nowhere else: the import module name, the export naming convention, status
//! codes, the argument buffer layout, the wire form of errors and task options.
//! `docs/abi.md` describes the same contract for guests written in other
//! languages; a change here is a change there.
//!
//! Values themselves are MessagePack (structs as maps, see
//! [`encode_value`]), so a client in any language can build arguments and read
//! results.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Name of the wasm import module that holds the host functions.
pub const IMPORT_MODULE: &str = "prism_v1";

/// Export name prefix of a task function: `__prism_task_<name>`.
pub const TASK_EXPORT_PREFIX: &str = "__prism_task_";

/// Export name prefix of a job driver (`#[prism::main]`): `__prism_main_<name>`.
pub const MAIN_EXPORT_PREFIX: &str = "__prism_main_";

/// Export name prefix of an actor constructor: `__prism_actor_new_<Class>`.
pub const ACTOR_NEW_PREFIX: &str = "__prism_actor_new_";

/// Export name prefix of an actor method: `__prism_actor_call_<Class>__<method>`.
pub const ACTOR_CALL_PREFIX: &str = "__prism_actor_call_";

/// Export name prefix of a persistent actor's state saver:
/// `__prism_actor_save_<Class>` (outputs the MessagePack state).
pub const ACTOR_SAVE_PREFIX: &str = "__prism_actor_save_";

/// Export name prefix of a persistent actor's state restorer:
/// `__prism_actor_restore_<Class>` (input: the saved state, unwrapped).
pub const ACTOR_RESTORE_PREFIX: &str = "__prism_actor_restore_";

/// Separator between class and method in actor method exports.
pub const METHOD_SEPARATOR: &str = "__";

/// Length in bytes of an actor id as it crosses the ABI.
pub const ACTOR_ID_LEN: usize = 16;

/// Longest name the host accepts, in bytes (256): named objects and their
/// list prefixes, actor names, namespaces, classes and methods, placement
/// group ids. A longer one is refused with `INVALID_ARGUMENT` before the
/// host reads it.
pub const MAX_NAME_LEN: usize = 256;

/// Length in bytes of an object id as it crosses the ABI.
pub const OBJECT_ID_LEN: usize = 16;

/// Arguments whose encoded value is larger than this travel by reference
/// through the object store instead of inline in the task message.
/// The value is 100 KiB.
pub const INLINE_ARG_LIMIT: usize = 100 * 1024;

/// Length of the buffer `prism_v1.store_stats` writes (four little-endian u64s).
pub const STORE_STATS_LEN: usize = 32;

/// Status codes returned by host functions (`i32`).
///
/// Non-negative codes are successes; negative codes are failures the guest
/// can handle. A guest that passes pointers outside its memory is not given a
/// code: its instance traps, because it can no longer be trusted.
pub mod status {
    /// The call succeeded.
    pub const OK: i32 = 0;
    /// `get`: the object holds an error; the staged buffer holds a
    /// MessagePack [`WireError`](super::WireError).
    pub const ERROR_OBJECT: i32 = 1;
    /// An argument was malformed (bad encoding, `num_returns` out of range, …).
    pub const INVALID_ARGUMENT: i32 = -1;
    /// The timeout given to `get` or `wait` expired first.
    pub const TIMEOUT: i32 = -2;
    /// No such object for this caller (freed, never existed, or another tenant's).
    pub const NOT_FOUND: i32 = -3;
    /// The object store refused the value (larger than its capacity).
    pub const STORE_FULL: i32 = -5;
    /// `actor_create`: a live actor already has that name in the namespace.
    pub const NAME_TAKEN: i32 = -6;
    /// The call is only valid inside an actor method (e.g. `actor_exit`).
    pub const NOT_AN_ACTOR: i32 = -7;
    /// A `gpu_*` call failed; `gpu_last_error` stages the MessagePack
    /// [`GpuError`](super::gpu::GpuError) that says why.
    pub const GPU_ERROR: i32 = -8;
    /// The job's tenant policy does not permit this call (e.g. `put` in a
    /// job whose policy denies `PutObject`).
    pub const PERMISSION_DENIED: i32 = -9;
    /// The job's tenant is at one of its quotas (object-store bytes,
    /// actors, queued tasks); nothing was done.
    pub const QUOTA_EXCEEDED: i32 = -10;
}

pub mod gpu;
pub mod http;
pub mod metrics;
pub mod workflow;

/// Storage tiers of named objects (`prism_v1.named_put`).
pub mod tier {
    /// Kept in the node's memory: fast, lost when the node restarts.
    pub const MEMORY: i32 = 0;
    /// Written to the node's durable metadata store: survives restarts.
    pub const DURABLE: i32 = 1;
}

/// Kinds passed to `prism_v1.output`.
pub mod output_kind {
    /// The buffer is the MessagePack return value.
    pub const VALUE: i32 = 0;
    /// The buffer is a MessagePack [`WireError`](super::WireError) of kind
    /// `application` (the task returned `Err`).
    pub const APPLICATION_ERROR: i32 = 1;
}

/// Log levels passed to `prism_v1.log`.
pub mod log_level {
    /// Error.
    pub const ERROR: i32 = 1;
    /// Warning.
    pub const WARN: i32 = 2;
    /// Information (the default of the SDK's `prism::log`).
    pub const INFO: i32 = 3;
    /// Debugging detail.
    pub const DEBUG: i32 = 4;
}

/// What went wrong with a task, as seen by whoever reads its result.
///
/// Application errors (`Application`, `Panic`) are the guest's own and are
/// never retried. System errors (`Trap`, `MemoryLimitExceeded`,
/// `DeadlineExceeded`, `WorkerDied`) mean the instance was killed and are
/// retried up to the task's `max_retries`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The task returned `Err`; `payload` may hold the serialized error value.
    Application,
    /// The guest panicked; `message` is the panic message and location.
    Panic,
    /// The instance trapped (unreachable, out-of-bounds access, stack overflow, …).
    Trap,
    /// The instance tried to grow its linear memory past its limit.
    MemoryLimitExceeded,
    /// The task ran past its wall-clock deadline and was interrupted.
    DeadlineExceeded,
    /// The task was cancelled before it produced a value.
    Cancelled,
    /// No node could ever satisfy the task's resource request.
    Unschedulable,
    /// The module is malformed, failed validation, or imports something the host lacks.
    InvalidModule,
    /// The module exports no task or driver of that name.
    FunctionNotFound,
    /// The arguments could not be encoded, decoded or resolved.
    InvalidArgument,
    /// An argument object does not exist for this caller.
    ObjectNotFound,
    /// The worker running the task died.
    WorkerDied,
    /// The actor is dead (killed, exited, constructor failed, or out of
    /// restarts), or no such actor exists.
    ActorDied,
    /// The host failed for a reason that is not the guest's (disk, internal).
    System,
    /// The only copy of an object was on a node that died or left.
    ObjectLost,
    /// The job's tenant policy does not permit what was asked (a task
    /// submission, an actor, GPU use).
    PermissionDenied,
    /// The job's tenant is at one of its quotas; nothing was admitted.
    QuotaExceeded,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 17] = [
        ErrorKind::Application,
        ErrorKind::Panic,
        ErrorKind::Trap,
        ErrorKind::MemoryLimitExceeded,
        ErrorKind::DeadlineExceeded,
        ErrorKind::Cancelled,
        ErrorKind::Unschedulable,
        ErrorKind::InvalidModule,
        ErrorKind::FunctionNotFound,
        ErrorKind::InvalidArgument,
        ErrorKind::ObjectNotFound,
        ErrorKind::WorkerDied,
        ErrorKind::ActorDied,
        ErrorKind::System,
        ErrorKind::ObjectLost,
        ErrorKind::PermissionDenied,
        ErrorKind::QuotaExceeded,
    ];

    /// Its position in [`ErrorKind::ALL`].
    pub fn index(self) -> usize {
        match self {
            ErrorKind::Application => 0,
            ErrorKind::Panic => 1,
            ErrorKind::Trap => 2,
            ErrorKind::MemoryLimitExceeded => 3,
            ErrorKind::DeadlineExceeded => 4,
            ErrorKind::Cancelled => 5,
            ErrorKind::Unschedulable => 6,
            ErrorKind::InvalidModule => 7,
            ErrorKind::FunctionNotFound => 8,
            ErrorKind::InvalidArgument => 9,
            ErrorKind::ObjectNotFound => 10,
            ErrorKind::WorkerDied => 11,
            ErrorKind::ActorDied => 12,
            ErrorKind::System => 13,
            ErrorKind::ObjectLost => 14,
            ErrorKind::PermissionDenied => 15,
            ErrorKind::QuotaExceeded => 16,
        }
    }

    /// Whether a failure of this kind is retried (within `max_retries`).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Trap
                | ErrorKind::MemoryLimitExceeded
                | ErrorKind::DeadlineExceeded
                | ErrorKind::WorkerDied
        )
    }

    /// Stable snake_case name, as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Application => "application",
            ErrorKind::Panic => "panic",
            ErrorKind::Trap => "trap",
            ErrorKind::MemoryLimitExceeded => "memory_limit_exceeded",
            ErrorKind::DeadlineExceeded => "deadline_exceeded",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Unschedulable => "unschedulable",
            ErrorKind::InvalidModule => "invalid_module",
            ErrorKind::FunctionNotFound => "function_not_found",
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::ObjectNotFound => "object_not_found",
            ErrorKind::WorkerDied => "worker_died",
            ErrorKind::ActorDied => "actor_died",
            ErrorKind::ObjectLost => "object_lost",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::QuotaExceeded => "quota_exceeded",
            ErrorKind::System => "system",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error stored in an object when a task fails, MessagePack-encoded as a
/// map `{kind, message, payload, attempts, origin}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// What kind of failure this is.
    pub kind: ErrorKind,
    /// Human-readable description (the guest's message where there is one).
    pub message: String,
    /// For `application` errors: the MessagePack-encoded error value, if the
    /// error type was serializable.
    #[serde(default, with = "opt_bytes")]
    pub payload: Option<Vec<u8>>,
    /// How many times the task was attempted (1 = no retries happened).
    #[serde(default)]
    pub attempts: u32,
    /// The task whose result holds this error (set by the host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Box<ErrorOrigin>>,
}

/// The task a failure is the result of: which one, where it ran, and
/// the last lines it wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorOrigin {
    /// The id of its result object (hex).
    pub task: String,
    /// Its function.
    pub function: String,
    /// The tag of the node it ran on, or was to run on (`prism status`
    /// lists nodes by id and tag).
    pub node: u32,
    /// Its last lines of stdout and stderr (at most
    /// [`MAX_ORIGIN_OUTPUT_LINES`]), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output: Vec<String>,
}

/// Most output lines an [`ErrorOrigin`] carries.
pub const MAX_ORIGIN_OUTPUT_LINES: usize = 10;

impl WireError {
    /// A new error of `kind` with `message`, no payload, one attempt.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        WireError {
            kind,
            message: message.into(),
            payload: None,
            attempts: 1,
            origin: None,
        }
    }

    /// Encodes as MessagePack.
    pub fn encode(&self) -> Vec<u8> {
        // A struct of strings, bytes and integers always serializes.
        rmp_serde::to_vec_named(self).unwrap_or_default()
    }

    /// Decodes from MessagePack.
    pub fn decode(bytes: &[u8]) -> Result<Self, AbiError> {
        rmp_serde::from_slice(bytes).map_err(|e| AbiError::Malformed(e.to_string()))
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for WireError {}

/// Per-call task options as they cross the ABI (MessagePack map). `None`
/// means "the node's default"; an empty options buffer means all defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskOptions {
    /// CPU slots to reserve while running (fractional). Default 1 for tasks, 0 for drivers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_cpus: Option<f64>,
    /// Memory in bytes to reserve; also the cap on the instance's linear
    /// memory. Default: no reservation, the node's per-task limit (256 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// GPUs to reserve (fractional below 1, whole numbers above). Default 0:
    /// the task may not use a GPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_gpus: Option<f64>,
    /// Custom resources to reserve, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, f64>,
    /// Retries after system errors. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Tasks one instance may run, one after another, before it is
    /// discarded: tasks of one job and function may share a warm instance
    /// (globals and heap carry over, as in a Ray worker process). 1 gives
    /// every task a fresh instance. Default: no limit (tasks that use GPUs
    /// always get a fresh one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_calls: Option<u32>,
    /// Wall-clock deadline per attempt in milliseconds. Default: the node's
    /// task timeout (300 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Where the task may run. Default [`SchedulingStrategy::Default`].
    #[serde(default, skip_serializing_if = "SchedulingStrategy::is_default")]
    pub strategy: SchedulingStrategy,
    /// Run in this bundle of a placement group, on its node, from the
    /// resources the bundle holds (the strategy is then ignored). Default:
    /// no placement group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<BundleRef>,
}

/// How a placement group's bundles are spread over nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlacementStrategy {
    /// On as few nodes as possible.
    #[default]
    Pack,
    /// On as many nodes as possible.
    Spread,
    /// All on one node, or the group is not created.
    StrictPack,
    /// Each on a different node, or the group is not created.
    StrictSpread,
}

/// What `prism_v1.pg_create` takes (MessagePack).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlacementGroupSpec {
    /// The bundles: amounts by resource name (`CPU`, `memory` in bytes,
    /// or a custom resource). GPUs cannot be held in bundles yet.
    pub bundles: Vec<BTreeMap<String, f64>>,
    /// How to spread them.
    #[serde(default)]
    pub strategy: PlacementStrategy,
}

/// A created placement group (what `prism_v1.pg_create` stages).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementGroupInfo {
    /// Its id: the tenant, a dot and 32 hex digits.
    pub id: String,
    /// The node holding each bundle, in bundle order.
    pub nodes: Vec<String>,
}

/// One bundle of a placement group, as task options name it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BundleRef {
    /// The group's id (32 hex digits).
    pub group: String,
    /// The bundle's index.
    pub index: u32,
    /// The node that holds the bundle.
    pub node_id: String,
}

/// Where in the cluster a task may run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchedulingStrategy {
    /// On the submitting node while it has room, else on the least-loaded
    /// node that can run it (Ray's hybrid policy).
    #[default]
    Default,
    /// Round robin over every node that can run it.
    Spread,
    /// On the node with this id (as `prism status` shows it). With `soft`,
    /// anywhere (as `Default`) when that node is gone or cannot run it;
    /// otherwise the task fails `unschedulable`.
    Node {
        /// The node's id.
        node_id: String,
        /// Fall back to other nodes.
        soft: bool,
    },
}

impl SchedulingStrategy {
    /// Whether this is [`SchedulingStrategy::Default`].
    pub fn is_default(&self) -> bool {
        *self == SchedulingStrategy::Default
    }
}

impl TaskOptions {
    /// True when every option is left at its default.
    pub fn is_default(&self) -> bool {
        *self == TaskOptions::default()
    }

    /// Encodes as MessagePack; the empty buffer for all-default options.
    pub fn encode(&self) -> Vec<u8> {
        encode_options(self)
    }

    /// Decodes from MessagePack; the empty buffer means all defaults.
    pub fn decode(bytes: &[u8]) -> Result<Self, AbiError> {
        decode_options(bytes)
    }
}

/// Options maps are sent empty when every option is at its default, so the
/// common call carries no options bytes at all.
fn encode_options<T: Serialize + Default + PartialEq>(options: &T) -> Vec<u8> {
    if *options == T::default() {
        return Vec::new();
    }
    // A struct of options always serializes.
    rmp_serde::to_vec_named(options).unwrap_or_default()
}

fn decode_options<T: serde::de::DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, AbiError> {
    if bytes.is_empty() {
        return Ok(T::default());
    }
    rmp_serde::from_slice(bytes).map_err(|e| AbiError::Malformed(e.to_string()))
}

/// Options of `prism_v1.actor_create` (MessagePack map; empty buffer = all
/// defaults).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ActorOptions {
    /// CPUs held for the actor's whole life. Default: 1 to place it, 0
    /// held while it lives (as in Ray).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_cpus: Option<f64>,
    /// Memory in bytes held for its life; also caps its linear memory.
    /// Default: no reservation, the node's per-task limit (256 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// GPUs held for its life (fractional below 1, whole numbers above).
    /// Default 0: the actor may not use a GPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_gpus: Option<f64>,
    /// Custom resources held for its life. Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, f64>,
    /// Restarts after the instance dies (panic, trap, limit); -1 unlimited.
    /// Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<i32>,
    /// Retries of a method call whose instance died, on the restarted
    /// actor. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_task_retries: Option<u32>,
    /// Name, unique among live actors of the namespace. Default: unnamed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Namespace of the name. Default: the job's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Outlive the creating job. Default false (the actor ends with its job).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub detached: bool,
    /// With a name: return the live actor of that name instead of failing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub get_if_exists: bool,
    /// Which node hosts it. Default [`SchedulingStrategy::Default`]: the
    /// creating node while it has room, else the least-loaded node that has.
    #[serde(default, skip_serializing_if = "SchedulingStrategy::is_default")]
    pub strategy: SchedulingStrategy,
}

impl ActorOptions {
    /// Encodes as MessagePack; the empty buffer for all-default options.
    pub fn encode(&self) -> Vec<u8> {
        encode_options(self)
    }

    /// Decodes from MessagePack; the empty buffer means all defaults.
    pub fn decode(bytes: &[u8]) -> Result<Self, AbiError> {
        decode_options(bytes)
    }
}

/// Errors in decoding ABI buffers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AbiError {
    /// A buffer did not follow its documented layout.
    #[error("malformed ABI buffer: {0}")]
    Malformed(String),
}

/// Tag bytes of the argument buffer passed to `prism_v1.submit`.
pub mod arg_tag {
    /// `u32 LE length` then that many bytes of MessagePack value.
    pub const VALUE: u8 = 0;
    /// 16 bytes of object id; the callee receives the object's value.
    pub const REF: u8 = 1;
    /// `u32 LE length` then a UTF-8 message: the caller failed to encode this
    /// argument; the task fails with `invalid_argument` without running.
    pub const INVALID: u8 = 2;
}

/// One argument decoded from a submit buffer, borrowing from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgRef<'a> {
    /// An inline MessagePack value.
    Value(&'a [u8]),
    /// A reference to an object whose value the callee receives.
    Ref([u8; OBJECT_ID_LEN]),
    /// The caller could not encode this argument.
    Invalid(&'a str),
}

/// Appends an inline value argument to a submit buffer.
pub fn encode_value_arg(buf: &mut Vec<u8>, value: &[u8]) {
    buf.push(arg_tag::VALUE);
    buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
    buf.extend_from_slice(value);
}

/// Appends a by-reference argument to a submit buffer.
pub fn encode_ref_arg(buf: &mut Vec<u8>, id: &[u8; OBJECT_ID_LEN]) {
    buf.push(arg_tag::REF);
    buf.extend_from_slice(id);
}

/// Appends an argument the caller failed to encode.
pub fn encode_invalid_arg(buf: &mut Vec<u8>, message: &str) {
    buf.push(arg_tag::INVALID);
    buf.extend_from_slice(&(message.len() as u32).to_le_bytes());
    buf.extend_from_slice(message.as_bytes());
}

/// Decodes a submit argument buffer.
pub fn decode_args(mut buf: &[u8]) -> Result<Vec<ArgRef<'_>>, AbiError> {
    let mut args = Vec::new();
    while let Some((&tag, rest)) = buf.split_first() {
        buf = rest;
        match tag {
            arg_tag::VALUE | arg_tag::INVALID => {
                let (len, rest) = split_len(buf)?;
                if rest.len() < len {
                    return Err(AbiError::Malformed(format!(
                        "argument {} claims {len} bytes, {} remain",
                        args.len(),
                        rest.len()
                    )));
                }
                let (bytes, rest) = rest.split_at(len);
                buf = rest;
                if tag == arg_tag::VALUE {
                    args.push(ArgRef::Value(bytes));
                } else {
                    let message = std::str::from_utf8(bytes).map_err(|_| {
                        AbiError::Malformed("invalid argument message is not UTF-8".into())
                    })?;
                    args.push(ArgRef::Invalid(message));
                }
            }
            arg_tag::REF => {
                if buf.len() < OBJECT_ID_LEN {
                    return Err(AbiError::Malformed(format!(
                        "argument {} is a truncated object id",
                        args.len()
                    )));
                }
                let (id, rest) = buf.split_at(OBJECT_ID_LEN);
                buf = rest;
                let mut out = [0u8; OBJECT_ID_LEN];
                out.copy_from_slice(id);
                args.push(ArgRef::Ref(out));
            }
            other => {
                return Err(AbiError::Malformed(format!(
                    "argument {} has unknown tag {other}",
                    args.len()
                )));
            }
        }
    }
    Ok(args)
}

fn split_len(buf: &[u8]) -> Result<(usize, &[u8]), AbiError> {
    if buf.len() < 4 {
        return Err(AbiError::Malformed("truncated argument length".into()));
    }
    let (len, rest) = buf.split_at(4);
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    Ok((len, rest))
}

/// Builds a task's input buffer: a MessagePack array of its resolved
/// arguments, in order. Each part must already be one complete MessagePack
/// value, so the concatenation is valid MessagePack.
pub fn build_input<'a>(values: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = rmp::encode::write_array_len(&mut out, values.len() as u32);
    for v in values {
        out.extend_from_slice(v);
    }
    out
}

/// Pads an input array shorter than `arity` with MessagePack nils, so
/// trailing `Option` parameters may be omitted by the caller. Anything that
/// is not an array shorter than `arity` is returned unchanged (decoding then
/// reports the mismatch).
pub fn pad_input(input: Vec<u8>, arity: u32) -> Vec<u8> {
    let mut cursor = input.as_slice();
    let Ok(len) = rmp::decode::read_array_len(&mut cursor) else {
        return input;
    };
    if len >= arity {
        return input;
    }
    let mut out = Vec::with_capacity(input.len() + (arity - len) as usize + 4);
    let _ = rmp::encode::write_array_len(&mut out, arity);
    out.extend_from_slice(cursor);
    out.extend(std::iter::repeat_n(0xc0u8, (arity - len) as usize));
    out
}

/// Serializes a value the way Prism does everywhere: MessagePack with
/// structs as maps (so other languages see field names).
pub fn encode_value<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    let mut out = Vec::new();
    write_value(&mut out, value)?;
    Ok(out)
}

/// Writes `value` as [`encode_value`] does. Sequences of `u8` (`Vec<u8>`,
/// `&[u8]`, `Box<[u8]>`) become one MessagePack `bin`, as `serde_bytes`
/// would make them: a copy, not one integer per byte. They decode back
/// into the same types (a `bin` reads as a sequence of bytes), and read as
/// an array of numbers in JSON.
pub fn write_value<W: std::io::Write, T: Serialize + ?Sized>(
    out: &mut W,
    value: &T,
) -> Result<(), rmp_serde::encode::Error> {
    let mut serializer = rmp_serde::Serializer::new(out)
        .with_struct_map()
        .with_bytes(rmp_serde::config::BytesMode::ForceIterables);
    value.serialize(&mut serializer)
}

/// Store statistics in the layout `prism_v1.store_stats` writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStats {
    /// Objects currently held (in memory or spilled).
    pub objects: u64,
    /// Bytes of object values held in memory.
    pub bytes_in_memory: u64,
    /// Bytes of object values spilled to disk.
    pub bytes_spilled: u64,
    /// Objects currently spilled to disk.
    pub spilled_objects: u64,
}

impl StoreStats {
    /// Encodes as four little-endian u64s.
    pub fn to_bytes(&self) -> [u8; STORE_STATS_LEN] {
        let mut out = [0u8; STORE_STATS_LEN];
        for (i, v) in [
            self.objects,
            self.bytes_in_memory,
            self.bytes_spilled,
            self.spilled_objects,
        ]
        .into_iter()
        .enumerate()
        {
            out[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Decodes four little-endian u64s.
    pub fn from_bytes(bytes: &[u8; STORE_STATS_LEN]) -> Self {
        let field = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            u64::from_le_bytes(b)
        };
        StoreStats {
            objects: field(0),
            bytes_in_memory: field(1),
            bytes_spilled: field(2),
            spilled_objects: field(3),
        }
    }
}

mod opt_bytes {
    //! `Option<Vec<u8>>` as MessagePack bin (not an array of integers).
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_bytes(b),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Option<Vec<u8>>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes or nil")
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_bytes(self)
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(Some(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Self::Value, E> {
                Ok(Some(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(Some(out))
            }
        }
        d.deserialize_option(V)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_error_kind_is_listed_once_at_its_index() {
        for (i, kind) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i, "{kind}");
        }
    }

    use super::*;

    #[test]
    fn args_round_trip_in_order() {
        let mut buf = Vec::new();
        encode_value_arg(&mut buf, &[0x05]);
        encode_ref_arg(&mut buf, &[7u8; OBJECT_ID_LEN]);
        encode_invalid_arg(&mut buf, "nope");
        encode_value_arg(&mut buf, &[]);
        let args = decode_args(&buf).unwrap();
        assert_eq!(
            args,
            vec![
                ArgRef::Value(&[0x05]),
                ArgRef::Ref([7u8; OBJECT_ID_LEN]),
                ArgRef::Invalid("nope"),
                ArgRef::Value(&[]),
            ]
        );
    }

    #[test]
    fn truncated_or_unknown_args_are_malformed() {
        assert!(decode_args(&[arg_tag::VALUE, 10, 0, 0, 0, 1]).is_err());
        assert!(decode_args(&[arg_tag::REF, 1, 2]).is_err());
        assert!(decode_args(&[9]).is_err());
        assert!(decode_args(&[arg_tag::VALUE, 1]).is_err());
        assert_eq!(decode_args(&[]).unwrap(), vec![]);
    }

    #[test]
    fn input_is_a_msgpack_array_of_the_values() {
        let a = encode_value(&5u64).unwrap();
        let b = encode_value("x").unwrap();
        let input = build_input([a.as_slice(), b.as_slice()].into_iter());
        let (x, y): (u64, String) = rmp_serde::from_slice(&input).unwrap();
        assert_eq!((x, y.as_str()), (5, "x"));
    }

    #[test]
    fn short_inputs_are_padded_with_nils() {
        let a = encode_value(&5u64).unwrap();
        let input = build_input([a.as_slice()].into_iter());
        let (x, y): (u64, Option<String>) =
            rmp_serde::from_slice(&pad_input(input.clone(), 2)).unwrap();
        assert_eq!((x, y), (5, None));
        assert_eq!(pad_input(input.clone(), 1), input);
        assert_eq!(pad_input(vec![0xc1], 3), vec![0xc1]);
    }

    #[test]
    fn wire_error_round_trips_with_payload() {
        let mut e = WireError::new(ErrorKind::Application, "overdraft");
        e.payload = Some(vec![1, 2, 3]);
        e.attempts = 2;
        assert_eq!(WireError::decode(&e.encode()).unwrap(), e);
        let plain = WireError::new(ErrorKind::Cancelled, "cancelled");
        assert_eq!(WireError::decode(&plain.encode()).unwrap(), plain);
    }

    #[test]
    fn default_options_encode_empty() {
        assert!(TaskOptions::default().encode().is_empty());
        assert_eq!(TaskOptions::decode(&[]).unwrap(), TaskOptions::default());
        let o = TaskOptions {
            num_cpus: Some(0.5),
            max_retries: Some(0),
            ..Default::default()
        };
        assert_eq!(TaskOptions::decode(&o.encode()).unwrap(), o);
    }

    #[test]
    fn actor_options_round_trip() {
        assert!(ActorOptions::default().encode().is_empty());
        let o = ActorOptions {
            name: Some("counter".into()),
            max_restarts: Some(-1),
            detached: true,
            ..Default::default()
        };
        assert_eq!(ActorOptions::decode(&o.encode()).unwrap(), o);
    }

    #[test]
    fn only_system_errors_retry() {
        assert!(ErrorKind::Trap.is_retryable());
        assert!(ErrorKind::WorkerDied.is_retryable());
        assert!(!ErrorKind::Application.is_retryable());
        assert!(!ErrorKind::Panic.is_retryable());
        assert!(!ErrorKind::Cancelled.is_retryable());
    }

    #[test]
    fn store_stats_round_trip() {
        let s = StoreStats {
            objects: 1,
            bytes_in_memory: 2,
            bytes_spilled: 3,
            spilled_objects: 4,
        };
        assert_eq!(StoreStats::from_bytes(&s.to_bytes()), s);
    }

    #[test]
    fn byte_vectors_encode_as_bin_and_decode_back() {
        let bytes: Vec<u8> = (0..=255).collect();
        let encoded = encode_value(&bytes).unwrap();
        assert_eq!(encoded[0], 0xc5, "bin 16");
        assert_eq!(encoded.len(), 3 + 256);
        let back: Vec<u8> = rmp_serde::from_slice(&encoded).unwrap();
        assert_eq!(back, bytes);
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct S {
            data: Vec<u8>,
            words: Vec<u32>,
            flags: Vec<bool>,
        }
        let s = S {
            data: vec![1, 200],
            words: vec![7, 300],
            flags: vec![true],
        };
        let back: S = rmp_serde::from_slice(&encode_value(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        // What older encoders wrote (an array of integers) still decodes.
        let old = rmp_serde::to_vec_named(&bytes).unwrap();
        let back: Vec<u8> = rmp_serde::from_slice(&old).unwrap();
        assert_eq!(back, bytes);
    }
}
