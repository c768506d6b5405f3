//! The `prism_v1` host functions (see `docs/abi.md` for the contract).
//!
//! Every pointer a guest passes is bounds-checked against its own linear
//! memory. A guest that passes a bad pointer or length has broken the ABI:
//! its instance traps with a message naming the call, and the task fails
//! with a `trap` error. Everything else a guest can get wrong (a malformed
//! argument buffer, an unknown object, `num_returns` out of range) is a
//! status code it can handle.
//!
//! Blocking calls (`get`, `wait`) are async: the guest's fiber is suspended
//! and its CPU slot is released through [`GuestHost::block`] until the
//! object is ready, the timeout passes, the task is cancelled, or its
//! deadline passes.

mod cluster;

use super::{GuestHost, Interrupt, TaskState};
use crate::ids::{ActorId, ObjectId};
use crate::objects::{Lookup, Object, Watch};
use crate::task::Arg;
use bytes::Bytes;
use prism_abi::{ArgRef, OBJECT_ID_LEN, status};
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use wasmtime::{Caller, Engine, Linker};

/// Most lines of a guest's backtrace a panic's message carries.
const MAX_BACKTRACE_LINES: usize = 48;

/// Names of the host functions, for import checking.
const FUNCTIONS: &[&str] = &[
    "input_read",
    "output",
    "panic_message",
    "submit",
    "put",
    "get",
    "take",
    "take_range",
    "put_parts",
    "wait",
    "cancel",
    "free",
    "log",
    "attempt",
    "store_stats",
    "actor_create",
    "actor_call",
    "actor_lookup",
    "actor_kill",
    "actor_exit",
    "named_put",
    "named_get",
    "named_delete",
    "named_list",
    "pg_create",
    "pg_remove",
    "serve_call",
    "serve_call_method",
    "metric",
];

/// Whether `prism_v1` has a function of this name.
pub(super) fn provides(name: &str) -> bool {
    FUNCTIONS.contains(&name) || super::gpu_abi::FUNCTIONS.contains(&name)
}

/// An ABI violation by the guest: becomes a trap.
#[derive(Debug, thiserror::Error)]
#[error("prism_v1.{call}: {problem}")]
struct AbiViolation {
    call: &'static str,
    problem: String,
}

pub(super) fn violation(call: &'static str, problem: impl Into<String>) -> anyhow::Error {
    AbiViolation {
        call,
        problem: problem.into(),
    }
    .into()
}

pub(super) fn memory(
    call: &'static str,
    caller: &Caller<'_, TaskState>,
) -> anyhow::Result<wasmtime::Memory> {
    caller
        .data()
        .memory
        .ok_or_else(|| violation(call, "the module exports no memory"))
}

pub(super) fn range(
    call: &'static str,
    ptr: i32,
    len: usize,
    size: usize,
) -> anyhow::Result<std::ops::Range<usize>> {
    let start = ptr as u32 as usize;
    let end = start.checked_add(len).filter(|&e| e <= size);
    match end {
        Some(end) => Ok(start..end),
        None => Err(violation(
            call,
            format!("{len} bytes at {start:#x} are outside linear memory"),
        )),
    }
}

pub(super) fn read(
    call: &'static str,
    caller: &Caller<'_, TaskState>,
    ptr: i32,
    len: i32,
) -> anyhow::Result<Vec<u8>> {
    let mem = memory(call, caller)?;
    let data = mem.data(caller);
    let r = range(call, ptr, len as u32 as usize, data.len())?;
    Ok(data[r].to_vec())
}

/// `count` object ids packed at `ptr`.
fn read_ids(
    call: &'static str,
    caller: &Caller<'_, TaskState>,
    ptr: i32,
    count: i32,
) -> anyhow::Result<Vec<ObjectId>> {
    let len = (count as u32 as usize)
        .checked_mul(OBJECT_ID_LEN)
        .filter(|l| *l <= i32::MAX as usize)
        .ok_or_else(|| violation(call, "too many ids"))?;
    let raw = read(call, caller, ptr, len as i32)?;
    Ok(raw
        .chunks_exact(OBJECT_ID_LEN)
        .map(|c| {
            let mut id = [0u8; OBJECT_ID_LEN];
            id.copy_from_slice(c);
            ObjectId::from_bytes(id)
        })
        .collect())
}

pub(super) fn write(
    call: &'static str,
    caller: &mut Caller<'_, TaskState>,
    ptr: i32,
    bytes: &[u8],
) -> anyhow::Result<()> {
    let mem = memory(call, caller)?;
    let data = mem.data_mut(caller);
    let r = range(call, ptr, bytes.len(), data.len())?;
    data[r].copy_from_slice(bytes);
    Ok(())
}

/// Reads a 16-byte id (object or actor) from guest memory.
fn read_id16(
    call: &'static str,
    caller: &Caller<'_, TaskState>,
    ptr: i32,
) -> anyhow::Result<[u8; 16]> {
    let bytes = read(call, caller, ptr, OBJECT_ID_LEN as i32)?;
    let mut id = [0u8; OBJECT_ID_LEN];
    id.copy_from_slice(&bytes);
    Ok(id)
}

fn read_id(
    call: &'static str,
    caller: &Caller<'_, TaskState>,
    ptr: i32,
) -> anyhow::Result<ObjectId> {
    read_id16(call, caller, ptr).map(ObjectId::from_bytes)
}

/// A name: valid UTF-8 of at most [`prism_abi::MAX_NAME_LEN`] bytes
/// (None otherwise, which callers answer with `INVALID_ARGUMENT`). Names
/// end up in the head's tables and in every node's maps, so they are
/// bounded before they are even read.
fn read_str(
    call: &'static str,
    caller: &Caller<'_, TaskState>,
    ptr: i32,
    len: i32,
) -> anyhow::Result<Option<String>> {
    if len as u32 as usize > prism_abi::MAX_NAME_LEN {
        return Ok(None);
    }
    Ok(String::from_utf8(read(call, caller, ptr, len)?).ok())
}

fn read_actor_id(
    call: &'static str,
    caller: &Caller<'_, TaskState>,
    ptr: i32,
) -> anyhow::Result<ActorId> {
    read_id16(call, caller, ptr).map(ActorId::from_bytes)
}

/// Decodes a submit-style argument buffer into owned arguments.
fn decode_args(bytes: &[u8]) -> Option<Vec<Arg>> {
    let args = prism_abi::decode_args(bytes).ok()?;
    Some(
        args.into_iter()
            .map(|a| match a {
                ArgRef::Value(v) => Arg::Value(Bytes::copy_from_slice(v)),
                ArgRef::Ref(id) => Arg::Ref(ObjectId::from_bytes(id)),
                ArgRef::Invalid(m) => Arg::Invalid(m.to_string()),
            })
            .collect(),
    )
}

/// Stages `bytes` for `take` and writes their length to `out_len`.
pub(super) fn stage(
    call: &'static str,
    caller: &mut Caller<'_, TaskState>,
    out_len: i32,
    bytes: Bytes,
) -> anyhow::Result<()> {
    write(call, caller, out_len, &(bytes.len() as u32).to_le_bytes())?;
    let state = caller.data_mut();
    state.staged = Some(bytes);
    state.staged_object = None;
    Ok(())
}

/// Stores a value for `put`/`put_parts` and writes its id to `out_id`.
fn store(
    call: &'static str,
    caller: &mut Caller<'_, TaskState>,
    out_id: i32,
    value: Bytes,
) -> anyhow::Result<i32> {
    match caller.data().host.put(value) {
        Ok(id) => {
            write(call, caller, out_id, id.as_bytes())?;
            Ok(status::OK)
        }
        Err(super::PutError::Store(crate::objects::StoreError::TooLarge { .. })) => {
            Ok(status::STORE_FULL)
        }
        Err(super::PutError::Denied) => Ok(status::PERMISSION_DENIED),
        Err(super::PutError::Quota(_)) => Ok(status::QUOTA_EXCEEDED),
        Err(e) => Err(violation(call, format!("the object store failed: {e}"))),
    }
}

fn timeout_of(ms: i64) -> Option<Duration> {
    (ms >= 0).then(|| Duration::from_millis(ms as u64))
}

/// How a blocking wait ended.
pub(super) enum Woken {
    Ready,
    TimedOut,
}

/// Blocks the guest (releasing its CPU) until `ready` resolves, `timeout`
/// passes, or the task is cancelled or out of time.
pub(super) async fn block_on<F: Future<Output = ()>>(
    host: &Arc<dyn GuestHost>,
    cancel: &super::CancelToken,
    deadline: Instant,
    timeout: Option<Duration>,
    ready: F,
) -> anyhow::Result<Woken> {
    host.block();
    let timeout_sleep = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let woken = tokio::select! {
            // Poll the work first: short calls finish on their first poll,
            // and the other branches then never arm a timer.
            biased;
        _ = ready => Woken::Ready,
        _ = timeout_sleep => Woken::TimedOut,
        _ = cancel.cancelled() => return Err(Interrupt::Cancelled.into()),
        _ = tokio::time::sleep_until(deadline.into()) => return Err(Interrupt::Deadline.into()),
    };
    host.unblock().await;
    Ok(woken)
}

/// Builds the linker: WASI plus `prism_v1`.
pub(super) fn linker(engine: &Engine) -> anyhow::Result<Linker<TaskState>> {
    let mut linker = Linker::new(engine);
    super::wasi::add_to_linker(&mut linker)?;
    super::gpu_abi::add_to_linker(&mut linker)?;
    let m = prism_abi::IMPORT_MODULE;

    linker.func_wrap(
        m,
        "input_read",
        |mut caller: Caller<'_, TaskState>, ptr: i32| {
            let input = caller.data().input.clone();
            write("input_read", &mut caller, ptr, &input)
        },
    )?;

    linker.func_wrap(
        m,
        "output",
        |mut caller: Caller<'_, TaskState>, kind: i32, ptr: i32, len: i32| {
            let bytes = read("output", &caller, ptr, len)?;
            let state = caller.data_mut();
            if state.output.is_none() {
                state.output = Some((kind, bytes));
            }
            Ok(())
        },
    )?;

    linker.func_wrap(
        m,
        "panic_message",
        |mut caller: Caller<'_, TaskState>, ptr: i32, len: i32| {
            let bytes = read("panic_message", &caller, ptr, len)?;
            // The guest's own frames where it panicked, named from its
            // module's name section (and file:line where it has DWARF and
            // WASMTIME_BACKTRACE_DETAILS=1): never the host's.
            let frames = wasmtime::WasmBacktrace::capture(&caller).to_string();
            let mut message = String::from_utf8_lossy(&bytes).into_owned();
            let mut lines = frames.lines();
            if let Some(first) = lines.next() {
                message.push('\n');
                message.push_str(first);
                for line in lines.by_ref().take(MAX_BACKTRACE_LINES) {
                    message.push('\n');
                    message.push_str(line);
                }
                if lines.next().is_some() {
                    message.push_str("\n  …");
                }
            }
            caller.data_mut().panic = Some(message);
            Ok(())
        },
    )?;

    linker.func_wrap(
        m,
        "submit",
        |mut caller: Caller<'_, TaskState>,
         fn_ptr: i32,
         fn_len: i32,
         args_ptr: i32,
         args_len: i32,
         opts_ptr: i32,
         opts_len: i32,
         out_id: i32|
         -> anyhow::Result<i32> {
            let function = read("submit", &caller, fn_ptr, fn_len)?;
            let args = read("submit", &caller, args_ptr, args_len)?;
            let opts = read("submit", &caller, opts_ptr, opts_len)?;
            // Validate the output pointer before doing anything observable.
            write("submit", &mut caller, out_id, &[0u8; OBJECT_ID_LEN])?;
            let Ok(function) = String::from_utf8(function) else {
                return Ok(status::INVALID_ARGUMENT);
            };
            let Some(args) = decode_args(&args) else {
                return Ok(status::INVALID_ARGUMENT);
            };
            let Ok(options) = prism_abi::TaskOptions::decode(&opts) else {
                return Ok(status::INVALID_ARGUMENT);
            };
            let id = caller.data().host.submit(&function, args, options);
            write("submit", &mut caller, out_id, id.as_bytes())?;
            Ok(status::OK)
        },
    )?;

    linker.func_wrap(
        m,
        "put",
        |mut caller: Caller<'_, TaskState>,
         ptr: i32,
         len: i32,
         out_id: i32|
         -> anyhow::Result<i32> {
            write("put", &mut caller, out_id, &[0u8; OBJECT_ID_LEN])?;
            let memory = memory("put", &caller)?;
            let data = memory.data(&caller);
            let r = range("put", ptr, len as u32 as usize, data.len())?;
            let value = crate::objects::buffers::concat(&[&data[r]]);
            store("put", &mut caller, out_id, value)
        },
    )?;

    linker.func_wrap_async(
        m,
        "get",
        |mut caller: Caller<'_, TaskState>, (id_ptr, timeout_ms, out_len): (i32, i64, i32)| {
            Box::new(async move {
                let id = read_id("get", &caller, id_ptr)?;
                write("get", &mut caller, out_len, &[0u8; 4])?;
                let host = caller.data().host.clone();
                let object = match host.lookup(id) {
                    Lookup::Ready(object) => object,
                    Lookup::NotFound => return Ok(status::NOT_FOUND),
                    Lookup::Pending(rx) => {
                        let (cancel, deadline) =
                            (caller.data().cancel.clone(), caller.data().deadline);
                        let ready = async {
                            let _ = rx.await;
                        };
                        match block_on(&host, &cancel, deadline, timeout_of(timeout_ms), ready)
                            .await?
                        {
                            Woken::TimedOut => return Ok(status::TIMEOUT),
                            Woken::Ready => match host.lookup(id) {
                                Lookup::Ready(object) => object,
                                Lookup::NotFound | Lookup::Pending(_) => {
                                    return Ok(status::NOT_FOUND);
                                }
                            },
                        }
                    }
                };
                let (code, staged) = match object {
                    Object::Value(bytes) => (status::OK, bytes),
                    Object::Error(error) => (status::ERROR_OBJECT, Bytes::from(error.encode())),
                };
                stage("get", &mut caller, out_len, staged)?;
                caller.data_mut().staged_object = Some(id);
                Ok(code)
            })
        },
    )?;

    linker.func_wrap(m, "take", |mut caller: Caller<'_, TaskState>, ptr: i32| {
        let Some(staged) = caller.data_mut().staged.take() else {
            return Err(violation("take", "nothing is staged: call get first"));
        };
        write("take", &mut caller, ptr, &staged)
    })?;

    linker.func_wrap(
        m,
        "take_range",
        |mut caller: Caller<'_, TaskState>, ptr: i32, offset: i32, len: i32| {
            let Some(staged) = caller.data().staged.clone() else {
                return Err(violation("take_range", "nothing is staged: call get first"));
            };
            let (offset, len) = (offset as u32 as usize, len as u32 as usize);
            let Some(part) = offset
                .checked_add(len)
                .and_then(|end| staged.get(offset..end))
            else {
                return Err(violation(
                    "take_range",
                    format!(
                        "{len} bytes at offset {offset} are outside the {} staged bytes",
                        staged.len()
                    ),
                ));
            };
            write("take_range", &mut caller, ptr, part)
        },
    )?;

    linker.func_wrap(
        m,
        "put_parts",
        |mut caller: Caller<'_, TaskState>,
         parts_ptr: i32,
         count: i32,
         out_id: i32|
         -> anyhow::Result<i32> {
            let count = count as u32 as usize;
            let table_len = count
                .checked_mul(8)
                .filter(|l| *l <= i32::MAX as usize)
                .ok_or_else(|| violation("put_parts", "too many parts"))?;
            let table = read("put_parts", &caller, parts_ptr, table_len as i32)?;
            write("put_parts", &mut caller, out_id, &[0u8; OBJECT_ID_LEN])?;
            let parts: Vec<(i32, i32)> = table
                .chunks_exact(8)
                .map(|c| {
                    let ptr = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    let len = i32::from_le_bytes([c[4], c[5], c[6], c[7]]);
                    (ptr, len)
                })
                .collect();
            // One buffer (recycled if large), one copy of each part.
            let memory = memory("put_parts", &caller)?;
            let data = memory.data(&caller);
            let slices = parts
                .iter()
                .map(|(ptr, len)| {
                    range("put_parts", *ptr, *len as u32 as usize, data.len()).map(|r| &data[r])
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            // Parts may overlap, so their total is bounded only here: by
            // what an instance of this limit could read back.
            let limit = caller.data().limiter.memory_limit();
            slices
                .iter()
                .try_fold(0usize, |sum, part| sum.checked_add(part.len()))
                .filter(|total| *total <= limit)
                .ok_or_else(|| {
                    violation(
                        "put_parts",
                        format!("the parts add up to more than this instance's memory limit of {limit} bytes"),
                    )
                })?;
            let value = crate::objects::buffers::concat(&slices);
            store("put_parts", &mut caller, out_id, value)
        },
    )?;

    linker.func_wrap_async(
        m,
        "wait",
        |mut caller: Caller<'_, TaskState>,
         (ids_ptr, count, num_returns, timeout_ms, out_ptr): (i32, i32, i32, i64, i32)| {
            Box::new(async move {
                let ids = read_ids("wait", &caller, ids_ptr, count)?;
                let count = ids.len();
                write("wait", &mut caller, out_ptr, &vec![0u8; count])?;
                if count == 0 {
                    return Ok(0);
                }
                let num_returns = num_returns as u32 as usize;
                let distinct = ids.iter().collect::<std::collections::HashSet<_>>().len() == count;
                if num_returns == 0 || num_returns > count || !distinct {
                    return Ok(status::INVALID_ARGUMENT);
                }
                let host = caller.data().host.clone();
                let (cancel, deadline) = (caller.data().cancel.clone(), caller.data().deadline);
                let timeout = timeout_of(timeout_ms);
                let until = timeout.map(|t| Instant::now() + t);
                loop {
                    let mut flags = vec![0u8; count];
                    let mut pending: Vec<oneshot::Receiver<()>> = Vec::new();
                    for (flag, id) in flags.iter_mut().zip(&ids) {
                        match host.watch(*id) {
                            // Unknown objects count as ready: `get` on them
                            // reports `ObjectNotFound` instead of hanging.
                            Watch::NotFound | Watch::Ready => *flag = 1,
                            Watch::Pending(rx) => pending.push(rx),
                        }
                    }
                    let ready = flags.iter().filter(|f| **f != 0).count();
                    let remaining = until.map(|u| u.saturating_duration_since(Instant::now()));
                    if ready >= num_returns
                        || remaining == Some(Duration::ZERO)
                        || pending.is_empty()
                    {
                        write("wait", &mut caller, out_ptr, &flags)?;
                        return Ok(ready as i32);
                    }
                    let any = std::future::poll_fn(|cx| {
                        for rx in pending.iter_mut() {
                            if std::pin::Pin::new(rx).poll(cx).is_ready() {
                                return Poll::Ready(());
                            }
                        }
                        Poll::Pending
                    });
                    if let Woken::TimedOut =
                        block_on(&host, &cancel, deadline, remaining, any).await?
                    {
                        // Loop once more to report what is ready now.
                        continue;
                    }
                }
            })
        },
    )?;

    linker.func_wrap(
        m,
        "cancel",
        |caller: Caller<'_, TaskState>, id_ptr: i32| -> anyhow::Result<i32> {
            let id = read_id("cancel", &caller, id_ptr)?;
            caller.data().host.cancel(id);
            Ok(status::OK)
        },
    )?;

    linker.func_wrap_async(
        m,
        "free",
        |mut caller: Caller<'_, TaskState>, (ids_ptr, count): (i32, i32)| {
            Box::new(async move {
                let ids = read_ids("free", &caller, ids_ptr, count)?;
                // A freed object's bytes leave the stage too, so that its
                // memory can be reused at once.
                let state = caller.data_mut();
                if state.staged_object.is_some_and(|s| ids.contains(&s)) {
                    state.staged = None;
                    state.staged_object = None;
                }
                let freed = caller.data().host.free(ids).await;
                Ok(freed.min(i32::MAX as usize) as i32)
            })
        },
    )?;

    linker.func_wrap(
        m,
        "log",
        |caller: Caller<'_, TaskState>, level: i32, ptr: i32, len: i32| -> anyhow::Result<()> {
            let bytes = read("log", &caller, ptr, len)?;
            caller
                .data()
                .host
                .log(level, &String::from_utf8_lossy(&bytes));
            Ok(())
        },
    )?;

    linker.func_wrap(
        m,
        "metric",
        |caller: Caller<'_, TaskState>, ptr: i32, len: i32| -> anyhow::Result<i32> {
            use crate::metrics::GuestMetricError;
            if !(0..=prism_abi::metrics::MAX_METRIC_UPDATE_LEN as i32).contains(&len) {
                return Ok(status::INVALID_ARGUMENT);
            }
            let bytes = read("metric", &caller, ptr, len)?;
            let Ok(update) = prism_abi::metrics::MetricUpdate::decode(&bytes) else {
                return Ok(status::INVALID_ARGUMENT);
            };
            Ok(match caller.data().host.metric(&update) {
                Ok(()) => status::OK,
                Err(GuestMetricError::TooManySeries { .. }) => status::QUOTA_EXCEEDED,
                Err(_) => status::INVALID_ARGUMENT,
            })
        },
    )?;

    linker.func_wrap(m, "attempt", |caller: Caller<'_, TaskState>| -> i32 {
        caller.data().attempt.min(i32::MAX as u32) as i32
    })?;

    cluster::add_cluster_calls(&mut linker)?;

    linker.func_wrap(
        m,
        "store_stats",
        |mut caller: Caller<'_, TaskState>, ptr: i32| {
            let stats = caller.data().host.store_stats().to_bytes();
            write("store_stats", &mut caller, ptr, &stats)
        },
    )?;

    Ok(linker)
}
