//! The Prism guest SDK.
//!
//! Write ordinary Rust functions, mark them `#[prism::task]`, compile the
//! crate to `wasm32-wasip1` as a `cdylib`, and Prism runs each call in its own
//! isolated WebAssembly instance:
//!
//! ```ignore
//! #[prism::task]
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! #[prism::main]
//! fn main(n: u64) -> prism::Result<u64> {
//!     let refs: Vec<_> = (0..n).map(square::remote).collect();
//!     Ok(prism::get_all(&refs)?.into_iter().sum())
//! }
//! ```
//!
//! `square::remote(x)` submits a task and returns an [`ObjectRef`] at once;
//! [`get`] blocks (suspending the guest, not a thread) until the value exists.
//! An argument may be a value or an `ObjectRef` of the parameter's type: a ref
//! passed directly is resolved to its value before the callee runs, while refs
//! nested inside data reach the callee as refs, as in Ray.
//!
//! Values are serialized as MessagePack with structs as maps, so clients in
//! any language can build arguments and read results.
//!
//! Durable workflows are graphs of `name::step(..)` calls whose outputs
//! the head logs and never recomputes: see [`workflow`].
//!
//! Errors are values: every call that talks to the host returns
//! [`Result`], with [`Error`] telling application errors (the task returned
//! `Err` or panicked; never retried) from system errors (the instance was
//! killed; retried up to `max_retries`).

use serde::{Serialize, de::DeserializeOwned};
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

pub use actor::{
    Actor, ActorCall, ActorHandle, ActorId, ActorOptions, exit_actor, get_actor, get_actor_in, kill,
};
pub use blob::{Blob, get_blob, put_bytes};
pub use named::{Tier, delete_named, get_named, list_named, put_named, put_named_in};
pub use placement::{Bundle, PlacementGroup, PlacementStrategy, placement_group};
pub use pool::ActorPool;
pub use prism_abi::{ErrorKind, StoreStats};
pub use prism_macros::{actor, main, task};

#[doc(hidden)]
pub mod __private;
mod actor;
mod blob;
pub mod gpu;
pub mod http;
pub mod metrics;
mod named;
mod placement;
mod pool;
pub mod serve;
mod sys;
pub mod workflow;

/// Result type of every SDK call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An unforgeable 128-bit object id, scoped to the job's tenant.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(pub [u8; 16]);

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// A typed reference to an object that exists now or will when its task ends.
///
/// Cheap to copy; serializes as its 16-byte id (MessagePack bin), so refs can
/// travel inside other values.
pub struct ObjectRef<T> {
    id: ObjectId,
    _type: PhantomData<fn() -> T>,
}

impl<T> ObjectRef<T> {
    /// Wraps a raw id. The type is the caller's claim; a wrong claim surfaces
    /// as a deserialization error on [`get`].
    pub fn from_id(id: ObjectId) -> Self {
        ObjectRef {
            id,
            _type: PhantomData,
        }
    }

    /// The object's id.
    pub fn id(&self) -> ObjectId {
        self.id
    }
}

impl<T> Clone for ObjectRef<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for ObjectRef<T> {}
impl<T> PartialEq for ObjectRef<T> {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}
impl<T> Eq for ObjectRef<T> {}
impl<T> fmt::Debug for ObjectRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectRef({:?})", self.id)
    }
}

impl<T> Serialize for ObjectRef<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.id.0)
    }
}

impl<'de, T> serde::Deserialize<'de> for ObjectRef<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = [u8; 16];
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a 16-byte object id")
            }
            fn visit_bytes<E: serde::de::Error>(
                self,
                v: &[u8],
            ) -> std::result::Result<[u8; 16], E> {
                v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<[u8; 16], A::Error> {
                let mut out = [0u8; 16];
                for (i, b) in out.iter_mut().enumerate() {
                    *b = seq
                        .next_element()?
                        .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                Ok(out)
            }
        }
        Ok(ObjectRef::from_id(ObjectId(d.deserialize_bytes(V)?)))
    }
}

/// Why an SDK call or a task failed.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// A task failed; `kind` says how (see [`ErrorKind`]), `message` says why.
    Task {
        /// The failure's kind.
        kind: ErrorKind,
        /// The guest's or host's message.
        message: String,
        /// For application errors, the serialized error value, if any.
        payload: Option<Vec<u8>>,
        /// How many attempts were made.
        attempts: u32,
        /// The task whose result this is: id, function, node and its
        /// last output lines.
        origin: Option<Box<prism_abi::ErrorOrigin>>,
    },
    /// [`get_timeout`] or [`wait`] ran out of time; the task keeps running.
    Timeout,
    /// No such object for this job (never existed, freed, or another tenant's).
    ObjectNotFound,
    /// No live actor of that name and class in that namespace (never
    /// created, killed, or another tenant's).
    ActorNotFound(String),
    /// An actor of that name already lives in that namespace.
    ActorNameTaken(String),
    /// The call was malformed (e.g. `wait` with `num_returns` out of range).
    InvalidArgument(String),
    /// A value could not be serialized or deserialized.
    Serialization(String),
    /// The object store refused the value.
    StoreFull,
    /// The job's tenant policy does not permit the call.
    PermissionDenied,
    /// The job's tenant is at a quota; nothing was done.
    QuotaExceeded,
    /// The SDK was called outside a Prism guest (e.g. in a native unit test).
    NotInGuest,
    /// A GPU call failed (see [`gpu`]).
    Gpu(gpu::GpuError),
    /// The host answered with a status this SDK does not know.
    Host(i32),
}

impl Error {
    /// The task failure kind, if this is a task failure.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            Error::Task { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// Whether the task was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.kind() == Some(ErrorKind::Cancelled)
    }

    /// Decodes the payload of an application error into its original type.
    pub fn payload<E: DeserializeOwned>(&self) -> Option<E> {
        match self {
            Error::Task {
                payload: Some(p), ..
            } => rmp_serde::from_slice(p).ok(),
            _ => None,
        }
    }

    pub(crate) fn from_status(code: i32) -> Error {
        use prism_abi::status;
        match code {
            status::TIMEOUT => Error::Timeout,
            status::NOT_FOUND => Error::ObjectNotFound,
            status::STORE_FULL => Error::StoreFull,
            status::PERMISSION_DENIED => Error::PermissionDenied,
            status::QUOTA_EXCEEDED => Error::QuotaExceeded,
            status::INVALID_ARGUMENT => Error::InvalidArgument("rejected by the host".into()),
            sys::NOT_IN_GUEST => Error::NotInGuest,
            other => Error::Host(other),
        }
    }
}

impl From<gpu::GpuError> for Error {
    fn from(e: gpu::GpuError) -> Self {
        Error::Gpu(e)
    }
}

impl From<prism_abi::WireError> for Error {
    fn from(e: prism_abi::WireError) -> Self {
        Error::Task {
            kind: e.kind,
            message: e.message,
            payload: e.payload,
            attempts: e.attempts,
            origin: e.origin,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Task { kind, message, .. } => write!(f, "task failed ({kind}): {message}"),
            Error::Timeout => f.write_str("timed out waiting for the object"),
            Error::ObjectNotFound => f.write_str("object not found"),
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::Serialization(m) => write!(f, "serialization failed: {m}"),
            Error::StoreFull => f.write_str("object store is full"),
            Error::PermissionDenied => f.write_str("permission denied by the tenant's policy"),
            Error::QuotaExceeded => f.write_str("quota exceeded"),
            Error::ActorNotFound(name) => write!(f, "no actor named {name:?}"),
            Error::ActorNameTaken(name) => {
                write!(
                    f,
                    "an actor named {name:?} already exists in this namespace"
                )
            }
            Error::NotInGuest => f.write_str("the Prism SDK only works inside a Prism guest"),
            Error::Gpu(e) => e.fmt(f),
            Error::Host(code) => write!(f, "host returned unknown status {code}"),
        }
    }
}

impl std::error::Error for Error {}

/// Options for one task call, built with chained setters. Unset options take
/// the node's defaults (documented on each setter).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskOptions {
    wire: prism_abi::TaskOptions,
}

impl TaskOptions {
    /// All defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// CPU slots to hold while running; fractional values share a core.
    /// Default 1. A task blocked in [`get`] gives its CPU back until it resumes.
    pub fn num_cpus(mut self, cpus: f64) -> Self {
        self.wire.num_cpus = Some(cpus);
        self
    }

    /// GPUs to hold while running: a fraction (0.25) shares one device with
    /// other fractional tasks, whole numbers take whole devices. Default 0:
    /// the task may not use a GPU (see [`gpu`]).
    pub fn num_gpus(mut self, gpus: f64) -> Self {
        self.wire.num_gpus = Some(gpus);
        self
    }

    /// Bytes of memory to reserve on the node; also caps the instance's linear
    /// memory. Default: no reservation, and the node's per-task limit (256 MiB).
    pub fn memory(mut self, bytes: u64) -> Self {
        self.wire.memory = Some(bytes);
        self
    }

    /// Reserves `amount` of a custom resource the node declares in its config.
    /// Default: none.
    pub fn resource(mut self, name: impl Into<String>, amount: f64) -> Self {
        self.wire.resources.insert(name.into(), amount);
        self
    }

    /// Retries after system errors (trap, limit hit, deadline, worker lost).
    /// Application errors are never retried. Default 3.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.wire.max_retries = Some(retries);
        self
    }

    /// Tasks one instance may run, one after another, before it is thrown
    /// away. Tasks of one job and function may share a warm instance, so
    /// globals and the heap carry over between them (as in a Ray worker);
    /// `max_calls(1)` gives this task a fresh instance of its own. Instances
    /// are never shared between jobs or tenants, and never after a trap.
    /// Default: no limit.
    pub fn max_calls(mut self, calls: u32) -> Self {
        self.wire.max_calls = Some(calls);
        self
    }

    /// Wall-clock deadline of each attempt. Default: the node's task timeout
    /// (300 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.wire.timeout_ms = Some(timeout.as_millis().min(u64::MAX as u128) as u64);
        self
    }

    /// Runs the task on any node of the cluster in turn (round robin over
    /// the nodes that can run it) instead of on the submitting node first.
    /// Default: the submitting node while it has room, then the least-loaded
    /// other node.
    pub fn spread(mut self) -> Self {
        self.wire.strategy = prism_abi::SchedulingStrategy::Spread;
        self
    }

    /// Runs the task on the node `node_id` (as `prism status` names it).
    /// With `soft`, another node runs it when that one is gone or cannot;
    /// otherwise the task then fails `unschedulable`. Default: any node.
    pub fn node(mut self, node_id: impl Into<String>, soft: bool) -> Self {
        self.wire.strategy = prism_abi::SchedulingStrategy::Node {
            node_id: node_id.into(),
            soft,
        };
        self
    }

    /// Runs the task in bundle `index` of placement group `group`: on the
    /// node holding it, from the resources it holds (the scheduling
    /// strategy is then ignored). Default: no placement group.
    pub fn placement_group(mut self, group: &PlacementGroup, index: u32) -> Self {
        self.wire.bundle = Some(group.bundle(index));
        self
    }

    /// The options as they cross the ABI.
    pub fn to_wire(&self) -> &prism_abi::TaskOptions {
        &self.wire
    }
}

/// Something that can be passed where a task parameter of type `T` is
/// expected: a `T` (sent inline, or through the store when large) or an
/// [`ObjectRef<T>`] (resolved to its value before the callee runs).
pub trait IntoArg<T> {
    /// Appends this argument to a submit buffer.
    fn append_to(self, buf: &mut Vec<u8>);
}

impl<T: Serialize> IntoArg<T> for T {
    fn append_to(self, buf: &mut Vec<u8>) {
        append_value(&self, buf)
    }
}

impl<T> IntoArg<T> for ObjectRef<T> {
    fn append_to(self, buf: &mut Vec<u8>) {
        prism_abi::encode_ref_arg(buf, &self.id.0)
    }
}

impl<T> IntoArg<T> for &ObjectRef<T> {
    fn append_to(self, buf: &mut Vec<u8>) {
        prism_abi::encode_ref_arg(buf, &self.id.0)
    }
}

fn append_value<T: Serialize + ?Sized>(value: &T, buf: &mut Vec<u8>) {
    match prism_abi::encode_value(value) {
        Ok(bytes) => prism_abi::encode_value_arg(buf, &bytes),
        Err(e) => prism_abi::encode_invalid_arg(buf, &e.to_string()),
    }
}

fn timeout_ms(timeout: Option<Duration>) -> i64 {
    match timeout {
        None => -1,
        Some(d) => d.as_millis().min(i64::MAX as u128) as i64,
    }
}

/// Stores `value` in the object store and returns a reference to it.
pub fn put<T: Serialize>(value: &T) -> Result<ObjectRef<T>> {
    let bytes = encode_exact(value)?;
    let mut id = [0u8; 16];
    match sys::put(&bytes, &mut id) {
        prism_abi::status::OK => Ok(ObjectRef::from_id(ObjectId(id))),
        code => Err(Error::from_status(code)),
    }
}

/// Blocks until the object exists and returns its value, or the task's error.
pub fn get<T: DeserializeOwned>(r: &ObjectRef<T>) -> Result<T> {
    get_raw(r.id, None).and_then(|bytes| decode(&bytes))
}

/// Like [`get`], but gives up after `timeout` with [`Error::Timeout`]. The
/// task producing the object keeps running.
pub fn get_timeout<T: DeserializeOwned>(r: &ObjectRef<T>, timeout: Duration) -> Result<T> {
    get_raw(r.id, Some(timeout)).and_then(|bytes| decode(&bytes))
}

/// Gets every object, in the order given. Fails with the first error met.
pub fn get_all<T: DeserializeOwned>(refs: &[ObjectRef<T>]) -> Result<Vec<T>> {
    refs.iter().map(get).collect()
}

/// The `(ready, pending)` halves returned by [`wait`].
pub type Split<T> = (Vec<ObjectRef<T>>, Vec<ObjectRef<T>>);

/// Waits until `num_returns` of `refs` are ready or `timeout` passes, and
/// splits them into `(ready, pending)`, each in the order of `refs`.
///
/// Ray's contract: an empty `refs` returns `([], [])` at once; `num_returns`
/// must be between 1 and `refs.len()` and refs must be distinct, else
/// [`Error::InvalidArgument`]; `ready` holds at most `num_returns` refs; a
/// `None` timeout waits as long as it takes. An object holding an error
/// counts as ready.
pub fn wait<T>(
    refs: &[ObjectRef<T>],
    num_returns: usize,
    timeout: Option<Duration>,
) -> Result<Split<T>> {
    if refs.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    validate_wait(refs, num_returns)?;
    let mut ids = Vec::with_capacity(refs.len() * 16);
    for r in refs {
        ids.extend_from_slice(&r.id.0);
    }
    let mut flags = vec![0u8; refs.len()];
    let code = sys::wait(
        &ids,
        refs.len(),
        num_returns,
        timeout_ms(timeout),
        &mut flags,
    );
    if code < 0 {
        return Err(Error::from_status(code));
    }
    Ok(split_ready(refs, &flags, num_returns))
}

fn validate_wait<T>(refs: &[ObjectRef<T>], num_returns: usize) -> Result<()> {
    if num_returns == 0 || num_returns > refs.len() {
        return Err(Error::InvalidArgument(format!(
            "num_returns must be between 1 and the number of refs ({}), got {num_returns}",
            refs.len()
        )));
    }
    let mut seen = std::collections::HashSet::with_capacity(refs.len());
    if !refs.iter().all(|r| seen.insert(r.id)) {
        return Err(Error::InvalidArgument(
            "wait requires distinct object refs".into(),
        ));
    }
    Ok(())
}

fn split_ready<T>(refs: &[ObjectRef<T>], flags: &[u8], num_returns: usize) -> Split<T> {
    let mut ready = Vec::new();
    let mut pending = Vec::new();
    for (r, &f) in refs.iter().zip(flags) {
        if f != 0 && ready.len() < num_returns {
            ready.push(*r);
        } else {
            pending.push(*r);
        }
    }
    (ready, pending)
}

/// Cancels the task producing `r`. A queued task never runs; a running one is
/// interrupted. Either way its ref then yields an error of kind
/// [`ErrorKind::Cancelled`]. Cancelling a finished task does nothing.
pub fn cancel<T>(r: &ObjectRef<T>) -> Result<()> {
    match sys::cancel(&r.id.0) {
        prism_abi::status::OK => Ok(()),
        code => Err(Error::from_status(code)),
    }
}

/// Frees objects this job made once nothing needs them any more, in this
/// node's store and on every other node of the cluster (the call returns
/// once each node answered). Until a job ends, its objects are otherwise
/// all kept; freeing large ones lets the store reuse their memory. A later
/// `get` of a freed object fails with [`Error::ObjectNotFound`].
///
/// Only ready objects of the calling job are freed: a pending one (its
/// task still running), another job's, or an unknown one is left as it
/// is. Returns how many of `refs` were freed on this node.
pub fn free<T>(refs: &[ObjectRef<T>]) -> Result<usize> {
    let ids: Vec<u8> = refs.iter().flat_map(|r| r.id.0).collect();
    match sys::free(&ids, refs.len()) {
        n if n >= 0 => Ok(n as usize),
        code => Err(Error::from_status(code)),
    }
}

/// Which attempt of this task is running: 0 for the first, 1 after one retry, ….
pub fn attempt() -> u32 {
    sys::attempt().max(0) as u32
}

/// Writes a line to the job's log.
pub fn log(message: impl AsRef<str>) {
    sys::log(prism_abi::log_level::INFO, message.as_ref())
}

/// The node's object store statistics.
pub fn store_stats() -> Result<StoreStats> {
    let mut buf = [0u8; prism_abi::STORE_STATS_LEN];
    match sys::store_stats(&mut buf) {
        0 => Ok(StoreStats::from_bytes(&buf)),
        code => Err(Error::from_status(code)),
    }
}

/// Encodes `value` into a buffer of exactly the right size: a first pass
/// only counts bytes (cheap, even for large binary values), so the second
/// never reallocates and copies what it already wrote.
pub(crate) fn encode_exact<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let serialization = |e: rmp_serde::encode::Error| Error::Serialization(e.to_string());
    let mut count = Count(0);
    prism_abi::write_value(&mut count, value).map_err(serialization)?;
    let mut bytes = Vec::with_capacity(count.0);
    prism_abi::write_value(&mut bytes, value).map_err(serialization)?;
    Ok(bytes)
}

/// Copies the value staged by the last `get`-like call into a new buffer.
pub(crate) fn take_staged(len: u32) -> Vec<u8> {
    let mut buf = vec![0u8; len as usize];
    sys::take(&mut buf);
    buf
}

fn get_raw(id: ObjectId, timeout: Option<Duration>) -> Result<Vec<u8>> {
    let mut len = 0u32;
    let code = sys::get(&id.0, timeout_ms(timeout), &mut len);
    match code {
        prism_abi::status::OK | prism_abi::status::ERROR_OBJECT => {
            let buf = take_staged(len);
            if code == prism_abi::status::OK {
                Ok(buf)
            } else {
                Err(prism_abi::WireError::decode(&buf)
                    .map(Error::from)
                    .unwrap_or_else(|e| Error::Serialization(e.to_string())))
            }
        }
        code => Err(Error::from_status(code)),
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    rmp_serde::from_slice(bytes).map_err(|e| Error::Serialization(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(n: u8) -> ObjectRef<u64> {
        ObjectRef::from_id(ObjectId([n; 16]))
    }

    #[test]
    fn object_refs_serialize_as_16_bytes_and_back() {
        let refs = vec![r(1), r(2)];
        let bytes = prism_abi::encode_value(&refs).unwrap();
        let back: Vec<ObjectRef<u64>> = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, refs);
    }

    #[test]
    // `&r(4)` is the point: it exercises the by-reference implementation.
    #[allow(clippy::needless_borrows_for_generic_args)]
    fn values_and_refs_encode_as_their_arg_kinds() {
        let mut buf = Vec::new();
        IntoArg::<u64>::append_to(5u64, &mut buf);
        IntoArg::<u64>::append_to(r(3), &mut buf);
        IntoArg::<u64>::append_to(&r(4), &mut buf);
        // A ref passed where the parameter itself is a ref travels as a value.
        IntoArg::<ObjectRef<u64>>::append_to(r(5), &mut buf);
        let args = prism_abi::decode_args(&buf).unwrap();
        assert!(matches!(args[0], prism_abi::ArgRef::Value(_)));
        assert_eq!(args[1], prism_abi::ArgRef::Ref([3; 16]));
        assert_eq!(args[2], prism_abi::ArgRef::Ref([4; 16]));
        assert!(matches!(args[3], prism_abi::ArgRef::Value(_)));
    }

    #[test]
    fn wait_validates_like_ray() {
        assert_eq!(wait::<u64>(&[], 1, None).unwrap(), (vec![], vec![]));
        assert!(matches!(
            wait(&[r(1)], 2, None),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            wait(&[r(1)], 0, None),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            wait(&[r(1), r(1)], 1, None),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn split_ready_keeps_order_and_caps_ready() {
        let refs = [r(1), r(2), r(3), r(4)];
        let (ready, pending) = split_ready(&refs, &[1, 0, 1, 1], 2);
        assert_eq!(ready, vec![r(1), r(3)]);
        assert_eq!(pending, vec![r(2), r(4)]);
    }

    #[test]
    fn off_wasm_host_calls_say_so() {
        assert_eq!(get(&r(1)), Err(Error::NotInGuest));
        assert_eq!(put(&1u8), Err(Error::NotInGuest));
    }

    #[test]
    fn options_builder_sets_wire_fields() {
        let o = TaskOptions::new()
            .num_cpus(0.5)
            .memory(1 << 20)
            .resource("ssd", 1.0)
            .max_retries(0)
            .timeout(Duration::from_millis(250));
        let w = o.to_wire();
        assert_eq!(w.num_cpus, Some(0.5));
        assert_eq!(w.memory, Some(1 << 20));
        assert_eq!(w.resources.get("ssd"), Some(&1.0));
        assert_eq!(w.max_retries, Some(0));
        assert_eq!(w.timeout_ms, Some(250));
    }

    #[test]
    fn application_error_payload_decodes() {
        let e = Error::Task {
            kind: ErrorKind::Application,
            message: "m".into(),
            payload: Some(prism_abi::encode_value(&42u32).unwrap()),
            attempts: 1,
            origin: None,
        };
        assert_eq!(e.payload::<u32>(), Some(42));
    }
}
