//! The GPU part of `prism_v1`: buffer usages, the binding layout of
//! `gpu_dispatch`, device descriptions and the error a failed `gpu_*` call
//! stages.
//!
//! Every `gpu_*` function returns a non-negative value on success (a handle,
//! a count) and [`status::GPU_ERROR`](crate::status::GPU_ERROR) on failure;
//! `gpu_last_error` then stages the [`GpuError`] for `take`. Handles are
//! small integers private to the instance; a handle the instance did not get
//! from the host is an [`GpuError::InvalidHandle`], never a trap.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Buffer usage bits for `gpu_buffer_create`.
pub mod usage {
    /// A storage buffer (`var<storage, read>` or `var<storage, read_write>`).
    pub const STORAGE: i32 = 1;
    /// A uniform buffer (`var<uniform>`).
    pub const UNIFORM: i32 = 2;
}

/// Bytes per entry of the `gpu_dispatch` binding array: three little-endian
/// u32s, `group`, `binding`, buffer handle.
pub const BINDING_LEN: usize = 12;

/// Buffer sizes, offsets and lengths of reads and writes must be multiples
/// of this many bytes.
pub const COPY_ALIGNMENT: u64 = 4;

/// The resource name GPUs are scheduled by (`num_gpus` reserves it).
pub const GPU_RESOURCE: &str = "GPU";

/// One device granted to an instance, as `gpu_device_info` describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuDeviceInfo {
    /// The adapter's name (e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`).
    pub name: String,
    /// The graphics API wgpu drives it through (e.g. `vulkan`).
    pub backend: String,
    /// `discrete`, `integrated`, `virtual`, `cpu` or `other`.
    pub device_type: String,
    /// Share of the device held, in thousandths (250 for `num_gpus = 0.25`).
    pub share_milli: u64,
    /// Bytes of buffers the instance may hold at once on all its devices.
    pub memory_budget: u64,
    /// Largest buffer the device can create.
    pub max_buffer_size: u64,
    /// Largest storage buffer binding.
    pub max_storage_buffer_binding_size: u64,
    /// Largest workgroup count per dimension of one dispatch.
    pub max_workgroups_per_dimension: u32,
    /// Most invocations in one workgroup.
    pub max_invocations_per_workgroup: u32,
}

/// Why a `gpu_*` call failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GpuError {
    /// The task or actor did not reserve a GPU (`num_gpus`), or asked for a
    /// device index beyond what it was granted.
    NotGranted {
        /// What was asked for.
        message: String,
    },
    /// A buffer would take the instance past its GPU memory budget.
    OutOfMemory {
        /// Bytes asked for.
        requested: u64,
        /// Bytes the instance already holds.
        in_use: u64,
        /// The instance's budget.
        budget: u64,
    },
    /// The WGSL shader did not compile; `message` is the compiler's.
    Shader {
        /// The compiler's diagnostics.
        message: String,
    },
    /// No buffer or shader of that handle (never created, released, or of
    /// the wrong type).
    InvalidHandle {
        /// The handle.
        handle: u32,
    },
    /// The request was malformed or failed the device's validation
    /// (misaligned size, binding mismatch, workgroup count over the limit).
    Invalid {
        /// What was wrong.
        message: String,
    },
    /// The device failed (lost, out of device memory, timed out).
    Device {
        /// The driver's or host's message.
        message: String,
    },
}

impl GpuError {
    /// Encodes as MessagePack (a map with a `kind` tag).
    pub fn encode(&self) -> Vec<u8> {
        // Serializing a plain enum of strings and integers cannot fail.
        rmp_serde::to_vec_named(self).unwrap_or_default()
    }

    /// Decodes from MessagePack.
    pub fn decode(bytes: &[u8]) -> Result<Self, crate::AbiError> {
        rmp_serde::from_slice(bytes).map_err(|e| crate::AbiError::Malformed(e.to_string()))
    }
}

impl fmt::Display for GpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuError::NotGranted { message } => write!(f, "no GPU granted: {message}"),
            GpuError::OutOfMemory {
                requested,
                in_use,
                budget,
            } => write!(
                f,
                "GPU memory budget exceeded: {requested} bytes requested, {in_use} of {budget} in use"
            ),
            GpuError::Shader { message } => write!(f, "shader compilation failed: {message}"),
            GpuError::InvalidHandle { handle } => write!(f, "invalid GPU handle {handle}"),
            GpuError::Invalid { message } => write!(f, "invalid GPU request: {message}"),
            GpuError::Device { message } => write!(f, "GPU device error: {message}"),
        }
    }
}

impl std::error::Error for GpuError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_round_trip() {
        for e in [
            GpuError::NotGranted {
                message: "num_gpus is 0".into(),
            },
            GpuError::OutOfMemory {
                requested: 8,
                in_use: 4,
                budget: 10,
            },
            GpuError::Shader {
                message: "expected `;`".into(),
            },
            GpuError::InvalidHandle { handle: 7 },
        ] {
            assert_eq!(GpuError::decode(&e.encode()).unwrap(), e);
        }
        assert!(GpuError::decode(b"\xc1").is_err());
    }
}
