//! GPU compute for tasks and actors that reserved a GPU (`num_gpus`).
//!
//! The host owns the devices; a guest gets handles. Compile a WGSL compute
//! shader, create buffers, upload, dispatch, read back:
//!
//! ```ignore
//! let gpu = prism::gpu::device(0)?;
//! let shader = gpu.shader(SAXPY_WGSL, "main")?;
//! let x = gpu.storage(&xs)?;
//! let y = gpu.storage(&ys)?;
//! let params = gpu.uniform(&[a, 0.0, 0.0, 0.0])?;
//! shader.dispatch(&[bind(0, &params), bind(1, &x), bind(2, &y)], [n.div_ceil(256), 1, 1])?;
//! let result: Vec<f32> = y.read_all()?;
//! ```
//!
//! Everything an instance creates is released when the instance ends (a
//! task's when it returns, an actor's when it dies), or earlier when the
//! [`Buffer`] or [`Shader`] is dropped. Buffers count against the
//! instance's GPU memory budget ([`GpuDeviceInfo::memory_budget`]).
//! Work is ordered: a read sees every dispatch submitted before it.

use crate::sys;
use prism_abi::gpu::{BINDING_LEN, usage};
pub use prism_abi::gpu::{GpuDeviceInfo, GpuError};

/// Result of a GPU call.
pub type GpuResult<T> = std::result::Result<T, GpuError>;

/// The error of the most recent failed call, as the host staged it.
fn last_error(code: i64) -> GpuError {
    if code == prism_abi::status::GPU_ERROR as i64 {
        let mut len = 0u32;
        if sys::gpu_last_error(&mut len) == prism_abi::status::OK
            && let Ok(e) = GpuError::decode(&crate::take_staged(len))
        {
            return e;
        }
    }
    GpuError::Device {
        message: format!("the host answered a GPU call with status {code}"),
    }
}

fn check(code: i32) -> GpuResult<()> {
    if code == prism_abi::status::OK {
        Ok(())
    } else {
        Err(last_error(code as i64))
    }
}

fn handle(code: i64) -> GpuResult<u32> {
    u32::try_from(code).map_err(|_| last_error(code))
}

/// How many devices this task or actor was granted (0 without `num_gpus`).
pub fn device_count() -> usize {
    sys::gpu_device_count().max(0) as usize
}

/// Granted device `index` (0 is the first).
pub fn device(index: u32) -> GpuResult<Device> {
    let device = Device { index };
    device.info()?;
    Ok(device)
}

/// Values that can be copied to and from GPU buffers as they lie in memory
/// (little-endian, no padding). Implemented for `f32`, `u32` and `i32`.
pub trait Element: Copy + Default + sealed::Sealed {}
impl Element for f32 {}
impl Element for u32 {}
impl Element for i32 {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for u32 {}
    impl Sealed for i32 {}
}

fn bytes_of<T: Element>(values: &[T]) -> &[u8] {
    // SAFETY: `Element` is sealed to 4-byte plain numbers without padding;
    // any such slice is a valid byte slice of 4 × its length.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast(), std::mem::size_of_val(values)) }
}

fn bytes_of_mut<T: Element>(values: &mut [T]) -> &mut [u8] {
    // SAFETY: as above; and every bit pattern is a valid f32, u32 or i32.
    unsafe {
        std::slice::from_raw_parts_mut(values.as_mut_ptr().cast(), std::mem::size_of_val(values))
    }
}

/// A granted device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Device {
    index: u32,
}

impl Device {
    /// What the device is, this instance's share of it, and its limits.
    pub fn info(&self) -> GpuResult<GpuDeviceInfo> {
        let mut len = 0u32;
        let code = sys::gpu_device_info(self.index, &mut len);
        check(code)?;
        crate::__private::rmp_serde::from_slice(&crate::take_staged(len)).map_err(|e| {
            GpuError::Device {
                message: format!("could not decode the device info: {e}"),
            }
        })
    }

    /// Compiles a WGSL compute shader; `entry` names its `@compute`
    /// function. Compile errors come back as [`GpuError::Shader`] with the
    /// compiler's message.
    pub fn shader(&self, wgsl: &str, entry: &str) -> GpuResult<Shader> {
        let handle = handle(sys::gpu_shader_create(self.index, wgsl, entry))?;
        Ok(Shader { handle })
    }

    /// A zeroed buffer of `size` bytes (a multiple of 4) for
    /// `var<storage>` bindings.
    pub fn storage_buffer(&self, size: u64) -> GpuResult<Buffer> {
        self.buffer(size, usage::STORAGE)
    }

    /// A storage buffer holding `values`.
    pub fn storage<T: Element>(&self, values: &[T]) -> GpuResult<Buffer> {
        let buffer = self.storage_buffer(std::mem::size_of_val(values) as u64)?;
        buffer.write(0, values)?;
        Ok(buffer)
    }

    /// A uniform buffer holding `values` (`var<uniform>`; WGSL wants its
    /// size a multiple of 16 bytes).
    pub fn uniform<T: Element>(&self, values: &[T]) -> GpuResult<Buffer> {
        let buffer = self.buffer(std::mem::size_of_val(values) as u64, usage::UNIFORM)?;
        buffer.write(0, values)?;
        Ok(buffer)
    }

    fn buffer(&self, size: u64, usage: i32) -> GpuResult<Buffer> {
        let handle = handle(sys::gpu_buffer_create(self.index, size, usage))?;
        Ok(Buffer { handle, size })
    }
}

/// A buffer on a device. Dropping it frees it.
#[derive(Debug)]
pub struct Buffer {
    handle: u32,
    size: u64,
}

impl Buffer {
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Writes `values` at byte `offset` (a multiple of 4).
    pub fn write<T: Element>(&self, offset: u64, values: &[T]) -> GpuResult<()> {
        check(sys::gpu_buffer_write(self.handle, offset, bytes_of(values)))
    }

    /// Reads `out.len()` values from byte `offset`, after all work
    /// submitted so far has finished.
    pub fn read_into<T: Element>(&self, offset: u64, out: &mut [T]) -> GpuResult<()> {
        check(sys::gpu_buffer_read(self.handle, offset, bytes_of_mut(out)))
    }

    /// Reads the whole buffer as values of `T`.
    pub fn read_all<T: Element>(&self) -> GpuResult<Vec<T>> {
        let mut out = vec![T::default(); self.size as usize / std::mem::size_of::<T>()];
        self.read_into(0, &mut out)?;
        Ok(out)
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        sys::gpu_release(self.handle);
    }
}

/// A compiled compute shader (pipeline). Dropping it frees it.
#[derive(Debug)]
pub struct Shader {
    handle: u32,
}

/// One buffer bound to `@group(g) @binding(b)`.
#[derive(Clone, Copy, Debug)]
pub struct Binding<'a> {
    group: u32,
    binding: u32,
    buffer: &'a Buffer,
}

/// Binds `buffer` to `@group(0) @binding(binding)`.
pub fn bind(binding: u32, buffer: &Buffer) -> Binding<'_> {
    Binding {
        group: 0,
        binding,
        buffer,
    }
}

impl<'a> Binding<'a> {
    /// Binds `buffer` to `@group(group) @binding(binding)`.
    pub fn at(group: u32, binding: u32, buffer: &'a Buffer) -> Self {
        Binding {
            group,
            binding,
            buffer,
        }
    }
}

fn encode_bindings(bindings: &[Binding<'_>]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(bindings.len() * BINDING_LEN);
    for b in bindings {
        for word in [b.group, b.binding, b.buffer.handle] {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
    }
    bytes
}

impl Shader {
    /// Runs the shader over `workgroups` (x, y, z) with `bindings`. Returns
    /// once the work is submitted; read a buffer to wait for it.
    pub fn dispatch(&self, bindings: &[Binding<'_>], workgroups: [u32; 3]) -> GpuResult<()> {
        check(sys::gpu_dispatch(
            self.handle,
            &encode_bindings(bindings),
            workgroups,
        ))
    }
}

impl Drop for Shader {
    fn drop(&mut self) {
        sys::gpu_release(self.handle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_encode_as_little_endian_triples() {
        let buffer = std::mem::ManuallyDrop::new(Buffer { handle: 7, size: 4 });
        let bytes = encode_bindings(&[bind(2, &buffer), Binding::at(1, 0, &buffer)]);
        assert_eq!(bytes.len(), 2 * BINDING_LEN);
        assert_eq!(&bytes[..12], &[0, 0, 0, 0, 2, 0, 0, 0, 7, 0, 0, 0]);
        assert_eq!(&bytes[12..16], &[1, 0, 0, 0]);
    }

    #[test]
    fn outside_a_guest_there_is_no_gpu() {
        assert_eq!(device_count(), 0);
        assert!(matches!(device(0), Err(GpuError::Device { .. })));
    }

    #[test]
    fn elements_are_viewed_as_their_bytes() {
        assert_eq!(bytes_of(&[1.0f32]), &1.0f32.to_le_bytes());
        let mut v = [0u32; 2];
        bytes_of_mut(&mut v).copy_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(v, [1, 2]);
    }
}
