//! The `prism_v1.gpu_*` host functions (see `docs/abi.md`, "GPU").
//!
//! Each call works on the instance's [`GpuContext`](crate::gpu::GpuContext).
//! A failure the guest can act on (no GPU granted, over budget, shader
//! error, bad handle) returns `GPU_ERROR` and is kept for `gpu_last_error`;
//! only pointers outside linear memory trap, as everywhere in the ABI.

use super::TaskState;
use super::abi::{block_on, memory, range, read, stage, violation, write};
use bytes::Bytes;
use prism_abi::gpu::{BINDING_LEN, GpuError};
use prism_abi::status;
use std::time::Instant;
use wasmtime::{Caller, Linker};

/// Names of the GPU host functions, for import checking.
pub(super) const FUNCTIONS: &[&str] = &[
    "gpu_device_count",
    "gpu_device_info",
    "gpu_shader_create",
    "gpu_buffer_create",
    "gpu_buffer_write",
    "gpu_buffer_read",
    "gpu_dispatch",
    "gpu_release",
    "gpu_last_error",
];

const ERROR: i64 = status::GPU_ERROR as i64;

/// Turns a context result into the call's return value, keeping the error.
fn answer<T>(
    caller: &mut Caller<'_, TaskState>,
    result: Result<T, GpuError>,
    ok: impl FnOnce(T) -> i64,
) -> i64 {
    match result {
        Ok(value) => ok(value),
        Err(e) => {
            caller.data_mut().gpu.fail(e);
            ERROR
        }
    }
}

fn non_negative(what: &str, value: i64) -> Result<u64, GpuError> {
    u64::try_from(value).map_err(|_| GpuError::Invalid {
        message: format!("{what} must not be negative, got {value}"),
    })
}

fn decode_bindings(bytes: &[u8]) -> Result<Vec<(u32, u32, u32)>, GpuError> {
    if !bytes.len().is_multiple_of(BINDING_LEN) {
        return Err(GpuError::Invalid {
            message: format!(
                "the binding array is {} bytes, not a multiple of {BINDING_LEN}",
                bytes.len()
            ),
        });
    }
    Ok(bytes
        .chunks_exact(BINDING_LEN)
        .map(|c| {
            let word = |i: usize| u32::from_le_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
            (word(0), word(4), word(8))
        })
        .collect())
}

/// Adds the GPU functions to `linker`.
pub(super) fn add_to_linker(linker: &mut Linker<TaskState>) -> anyhow::Result<()> {
    let m = prism_abi::IMPORT_MODULE;

    linker.func_wrap(m, "gpu_device_count", |caller: Caller<'_, TaskState>| {
        caller.data().gpu.device_count() as i32
    })?;

    linker.func_wrap(
        m,
        "gpu_device_info",
        |mut caller: Caller<'_, TaskState>, index: i32, out_len: i32| -> anyhow::Result<i32> {
            write("gpu_device_info", &mut caller, out_len, &[0u8; 4])?;
            match caller.data().gpu.device_info(index as u32) {
                Ok(info) => {
                    let bytes = prism_abi::encode_value(&info).map_err(|e| {
                        violation("gpu_device_info", format!("encoding failed: {e}"))
                    })?;
                    stage("gpu_device_info", &mut caller, out_len, Bytes::from(bytes))?;
                    Ok(status::OK)
                }
                Err(e) => {
                    caller.data_mut().gpu.fail(e);
                    Ok(status::GPU_ERROR)
                }
            }
        },
    )?;

    linker.func_wrap(
        m,
        "gpu_shader_create",
        |mut caller: Caller<'_, TaskState>,
         device: i32,
         src_ptr: i32,
         src_len: i32,
         entry_ptr: i32,
         entry_len: i32|
         -> anyhow::Result<i64> {
            let source = read("gpu_shader_create", &caller, src_ptr, src_len)?;
            let entry = read("gpu_shader_create", &caller, entry_ptr, entry_len)?;
            let result = match (String::from_utf8(source), String::from_utf8(entry)) {
                (Ok(source), Ok(entry)) => {
                    caller
                        .data_mut()
                        .gpu
                        .create_shader(device as u32, &source, &entry)
                }
                _ => Err(GpuError::Invalid {
                    message: "the shader source and entry point must be UTF-8".into(),
                }),
            };
            Ok(answer(&mut caller, result, i64::from))
        },
    )?;

    linker.func_wrap(
        m,
        "gpu_buffer_create",
        |mut caller: Caller<'_, TaskState>, device: i32, size: i64, usage: i32| -> i64 {
            let result = non_negative("size", size).and_then(|size| {
                caller
                    .data_mut()
                    .gpu
                    .create_buffer(device as u32, size, usage)
            });
            answer(&mut caller, result, i64::from)
        },
    )?;

    linker.func_wrap(
        m,
        "gpu_buffer_write",
        |mut caller: Caller<'_, TaskState>,
         buffer: i32,
         offset: i64,
         ptr: i32,
         len: i32|
         -> anyhow::Result<i32> {
            let mem = memory("gpu_buffer_write", &caller)?;
            let data = mem.data(&caller);
            let r = range("gpu_buffer_write", ptr, len as u32 as usize, data.len())?;
            let result = non_negative("offset", offset).and_then(|offset| {
                caller
                    .data()
                    .gpu
                    .write_buffer(buffer as u32, offset, &data[r])
            });
            Ok(answer(&mut caller, result, |()| 0) as i32)
        },
    )?;

    linker.func_wrap_async(
        m,
        "gpu_buffer_read",
        |mut caller: Caller<'_, TaskState>, (buffer, offset, ptr, len): (i32, i64, i32, i32)| {
            Box::new(async move {
                let mem = memory("gpu_buffer_read", &caller)?;
                let r = range(
                    "gpu_buffer_read",
                    ptr,
                    len as u32 as usize,
                    mem.data_size(&caller),
                )?;
                let begun = non_negative("offset", offset).and_then(|offset| {
                    caller
                        .data()
                        .gpu
                        .begin_read(buffer as u32, offset, r.len() as u64)
                });
                let mut pending = match begun {
                    Ok(p) => p,
                    Err(e) => {
                        caller.data_mut().gpu.fail(e);
                        return Ok(status::GPU_ERROR);
                    }
                };
                let state = caller.data();
                let (host, cancel, deadline) =
                    (state.host.clone(), state.cancel.clone(), state.deadline);
                let remaining = deadline.saturating_duration_since(Instant::now());
                let mut waited = None;
                block_on(&host, &cancel, deadline, None, async {
                    waited = Some(pending.wait(remaining).await);
                })
                .await?;
                let result = match waited {
                    Some(Ok(())) => pending.copy_into(&mut mem.data_mut(&mut caller)[r]),
                    Some(Err(e)) => Err(e),
                    None => Err(GpuError::Device {
                        message: "the read did not finish".into(),
                    }),
                };
                Ok(answer(&mut caller, result, |()| 0) as i32)
            })
        },
    )?;

    linker.func_wrap(
        m,
        "gpu_dispatch",
        |mut caller: Caller<'_, TaskState>,
         shader: i32,
         bindings_ptr: i32,
         bindings_len: i32,
         x: i32,
         y: i32,
         z: i32|
         -> anyhow::Result<i32> {
            let bytes = read("gpu_dispatch", &caller, bindings_ptr, bindings_len)?;
            let result = decode_bindings(&bytes).and_then(|bindings| {
                caller
                    .data()
                    .gpu
                    .dispatch(shader as u32, &bindings, [x as u32, y as u32, z as u32])
            });
            Ok(answer(&mut caller, result, |()| 0) as i32)
        },
    )?;

    linker.func_wrap(
        m,
        "gpu_release",
        |mut caller: Caller<'_, TaskState>, handle: i32| -> i32 {
            let result = caller.data_mut().gpu.release(handle as u32);
            answer(&mut caller, result, |()| 0) as i32
        },
    )?;

    linker.func_wrap(
        m,
        "gpu_last_error",
        |mut caller: Caller<'_, TaskState>, out_len: i32| -> anyhow::Result<i32> {
            write("gpu_last_error", &mut caller, out_len, &[0u8; 4])?;
            match caller.data_mut().gpu.take_last_error() {
                Some(e) => {
                    stage(
                        "gpu_last_error",
                        &mut caller,
                        out_len,
                        Bytes::from(e.encode()),
                    )?;
                    Ok(status::OK)
                }
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_decode_as_little_endian_triples() {
        let mut bytes = Vec::new();
        for w in [0u32, 1, 7, 1, 0, 9] {
            bytes.extend_from_slice(&w.to_le_bytes());
        }
        assert_eq!(decode_bindings(&bytes).unwrap(), vec![(0, 1, 7), (1, 0, 9)]);
        assert!(matches!(
            decode_bindings(&bytes[..13]),
            Err(GpuError::Invalid { .. })
        ));
    }
}
