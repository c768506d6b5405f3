//! One instance's view of its GPUs: the devices it was granted, and the
//! buffers and shaders it created, by handle.

use super::{GpuDevice, GpuUsage, Opened};
use prism_abi::gpu::{COPY_ALIGNMENT, GpuDeviceInfo, GpuError, usage};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// A device granted to the instance.
struct Granted {
    device: Arc<GpuDevice>,
    share_milli: u64,
}

/// Something a handle names.
enum Resource {
    Buffer {
        buffer: wgpu::Buffer,
        device: usize,
        size: u64,
    },
    Shader {
        pipeline: wgpu::ComputePipeline,
        device: usize,
    },
}

/// The GPU state of one instance. Dropping it destroys every buffer the
/// instance still holds.
pub struct GpuContext {
    granted: Vec<Granted>,
    budget: u64,
    in_use: u64,
    usage: Arc<GpuUsage>,
    /// Live resources by handle. Handles count up from 1 and are never
    /// reused, so a released handle stays invalid instead of naming a
    /// newer buffer.
    resources: HashMap<u32, Resource>,
    next_handle: u32,
    last_error: Option<GpuError>,
}

/// A read in flight: the copy to a mappable buffer was submitted.
pub struct ReadBack {
    device: wgpu::Device,
    staging: wgpu::Buffer,
    submission: wgpu::SubmissionIndex,
    mapped: oneshot::Receiver<Result<(), wgpu::BufferAsyncError>>,
}

impl ReadBack {
    /// Waits (on a blocking thread) for the copy and the mapping, at most
    /// `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> Result<(), GpuError> {
        let device = self.device.clone();
        let submission = self.submission.clone();
        let polled = tokio::task::spawn_blocking(move || {
            device.poll(wgpu::PollType::Wait {
                submission_index: Some(submission),
                timeout: Some(timeout),
            })
        })
        .await;
        match polled {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(device_error(format!("waiting for the GPU: {e}"))),
            Err(e) => return Err(device_error(format!("waiting for the GPU: {e}"))),
        }
        match (&mut self.mapped).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(device_error(format!("mapping the result: {e}"))),
            Err(_) => Err(device_error("the GPU dropped the read")),
        }
    }

    /// Copies the mapped bytes into `out` (exactly as long as the read).
    pub fn copy_into(self, out: &mut [u8]) -> Result<(), GpuError> {
        {
            let view = self
                .staging
                .slice(..)
                .get_mapped_range()
                .map_err(|e| device_error(format!("reading the result: {e}")))?;
            let n = out.len().min(view.len());
            out[..n].copy_from_slice(&view[..n]);
        }
        self.staging.unmap();
        Ok(())
    }
}

impl Drop for ReadBack {
    fn drop(&mut self) {
        // Destroying an already destroyed buffer is a no-op.
        self.staging.destroy();
    }
}

fn device_error(message: impl Into<String>) -> GpuError {
    GpuError::Device {
        message: message.into(),
    }
}

fn invalid(message: impl Into<String>) -> GpuError {
    GpuError::Invalid {
        message: message.into(),
    }
}

/// The full text of a wgpu error, with its sources (naga's diagnostics
/// live in the source chain).
fn describe(error: &wgpu::Error) -> String {
    let mut text = match error {
        wgpu::Error::Validation { description, .. } | wgpu::Error::Internal { description, .. } => {
            description.clone()
        }
        wgpu::Error::OutOfMemory { .. } => "out of device memory".to_string(),
    };
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        let line = s.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = s.source();
    }
    text
}

/// Runs `f` inside error scopes catching every error kind; returns the
/// first error raised. Scopes are per thread, so `f` must not await.
fn scoped<T>(device: &wgpu::Device, f: impl FnOnce() -> T) -> (T, Option<wgpu::Error>) {
    let internal = device.push_error_scope(wgpu::ErrorFilter::Internal);
    let memory = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let value = f();
    let errors = [validation.pop(), memory.pop(), internal.pop()]
        .into_iter()
        .map(|pop| super::now_or_never(pop).flatten());
    let mut first = None;
    for e in errors {
        if first.is_none() {
            first = e;
        }
    }
    (value, first)
}

impl GpuContext {
    pub(super) fn new(
        granted: Vec<(Arc<GpuDevice>, usize, u64)>,
        budget: u64,
        usage: Arc<GpuUsage>,
    ) -> Self {
        GpuContext {
            granted: granted
                .into_iter()
                .map(|(device, _, share_milli)| Granted {
                    device,
                    share_milli,
                })
                .collect(),
            budget,
            in_use: 0,
            usage,
            resources: HashMap::new(),
            next_handle: 1,
            last_error: None,
        }
    }

    /// A context with no devices (the instance reserved no GPU). Costs
    /// no allocation: most instances get this one.
    pub fn none() -> Self {
        static NOBODY: std::sync::OnceLock<Arc<GpuUsage>> = std::sync::OnceLock::new();
        GpuContext::new(Vec::new(), 0, NOBODY.get_or_init(Arc::default).clone())
    }

    /// Devices granted to the instance.
    pub fn device_count(&self) -> usize {
        self.granted.len()
    }

    /// Remembers `error` for `gpu_last_error`.
    pub fn fail(&mut self, error: GpuError) {
        self.last_error = Some(error);
    }

    /// The last error, once.
    pub fn take_last_error(&mut self) -> Option<GpuError> {
        self.last_error.take()
    }

    /// Bytes of buffers the instance holds.
    pub fn in_use(&self) -> u64 {
        self.in_use
    }

    fn granted(&self, index: u32) -> Result<&Granted, GpuError> {
        if self.granted.is_empty() {
            return Err(GpuError::NotGranted {
                message: "this task or actor reserved no GPU; set num_gpus to use one".into(),
            });
        }
        self.granted
            .get(index as usize)
            .ok_or_else(|| GpuError::NotGranted {
                message: format!("device {index} requested, {} granted", self.granted.len()),
            })
    }

    fn opened(&self, index: u32) -> Result<&Opened, GpuError> {
        self.granted(index)?.device.open().map_err(device_error)
    }

    /// Describes granted device `index`.
    pub fn device_info(&self, index: u32) -> Result<GpuDeviceInfo, GpuError> {
        let g = self.granted(index)?;
        let s = g.device.summary();
        Ok(GpuDeviceInfo {
            name: s.name.clone(),
            backend: s.backend.clone(),
            device_type: s.device_type.clone(),
            share_milli: g.share_milli,
            memory_budget: self.budget,
            max_buffer_size: s.max_buffer_size,
            max_storage_buffer_binding_size: s.max_storage_buffer_binding_size,
            max_workgroups_per_dimension: s.max_workgroups_per_dimension,
            max_invocations_per_workgroup: s.max_invocations_per_workgroup,
        })
    }

    fn insert(&mut self, resource: Resource) -> Result<u32, GpuError> {
        let handle = self.next_handle;
        // Handles are returned as non-negative i64s; 2^32 - 1 creations in
        // one instance is the end of the line.
        self.next_handle = handle
            .checked_add(1)
            .ok_or_else(|| invalid("this instance has used up its GPU handles"))?;
        self.resources.insert(handle, resource);
        Ok(handle)
    }

    fn resource(&self, handle: u32) -> Option<&Resource> {
        self.resources.get(&handle)
    }

    fn buffer(&self, handle: u32) -> Result<(&wgpu::Buffer, usize, u64), GpuError> {
        match self.resource(handle) {
            Some(Resource::Buffer {
                buffer,
                device,
                size,
            }) => Ok((buffer, *device, *size)),
            _ => Err(GpuError::InvalidHandle { handle }),
        }
    }

    /// Compiles a WGSL compute shader and builds its pipeline for `entry`.
    pub fn create_shader(
        &mut self,
        device: u32,
        source: &str,
        entry: &str,
    ) -> Result<u32, GpuError> {
        let opened = self.opened(device)?;
        let (module, error) = scoped(&opened.device, || {
            opened
                .device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some("guest shader"),
                    source: wgpu::ShaderSource::Wgsl(Cow::Borrowed(source)),
                })
        });
        if let Some(e) = error {
            return Err(GpuError::Shader {
                message: describe(&e),
            });
        }
        let (pipeline, error) = scoped(&opened.device, || {
            opened
                .device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some("guest pipeline"),
                    layout: None,
                    module: &module,
                    entry_point: Some(entry),
                    compilation_options: Default::default(),
                    cache: None,
                })
        });
        if let Some(e) = error {
            return Err(GpuError::Shader {
                message: describe(&e),
            });
        }
        self.insert(Resource::Shader {
            pipeline,
            device: device as usize,
        })
    }

    /// Creates a zeroed buffer of `size` bytes with `usage` bits.
    pub fn create_buffer(
        &mut self,
        device: u32,
        size: u64,
        usage_bits: i32,
    ) -> Result<u32, GpuError> {
        let granted = self.granted(device)?;
        let limit = granted.device.summary().max_buffer_size;
        if size == 0 || !size.is_multiple_of(COPY_ALIGNMENT) {
            return Err(invalid(format!(
                "buffer size must be a positive multiple of {COPY_ALIGNMENT}, got {size}"
            )));
        }
        if size > limit {
            return Err(invalid(format!(
                "buffer of {size} bytes exceeds the device's largest buffer ({limit} bytes)"
            )));
        }
        let known = usage::STORAGE | usage::UNIFORM;
        if usage_bits & !known != 0 || usage_bits & known == 0 {
            return Err(invalid(format!(
                "buffer usage must be STORAGE (1), UNIFORM (2) or both, got {usage_bits}"
            )));
        }
        if self.in_use.saturating_add(size) > self.budget {
            return Err(GpuError::OutOfMemory {
                requested: size,
                in_use: self.in_use,
                budget: self.budget,
            });
        }
        let mut wgpu_usage = wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        if usage_bits & usage::STORAGE != 0 {
            wgpu_usage |= wgpu::BufferUsages::STORAGE;
        }
        if usage_bits & usage::UNIFORM != 0 {
            wgpu_usage |= wgpu::BufferUsages::UNIFORM;
        }
        let opened = self.opened(device)?;
        let (buffer, error) = scoped(&opened.device, || {
            opened.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("guest buffer"),
                size,
                usage: wgpu_usage,
                mapped_at_creation: false,
            })
        });
        if let Some(e) = error {
            buffer.destroy();
            return Err(match e {
                wgpu::Error::OutOfMemory { .. } => device_error("the device is out of memory"),
                e => invalid(describe(&e)),
            });
        }
        let handle = self.insert(Resource::Buffer {
            buffer,
            device: device as usize,
            size,
        })?;
        self.in_use += size;
        self.usage.add(size);
        Ok(handle)
    }

    fn check_range(size: u64, offset: u64, len: u64) -> Result<(), GpuError> {
        if !offset.is_multiple_of(COPY_ALIGNMENT) || !len.is_multiple_of(COPY_ALIGNMENT) {
            return Err(invalid(format!(
                "offset and length must be multiples of {COPY_ALIGNMENT} (got {offset} and {len})"
            )));
        }
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(invalid(format!(
                "{len} bytes at offset {offset} do not fit in a buffer of {size} bytes"
            )));
        }
        Ok(())
    }

    /// Writes `data` into buffer `handle` at `offset`.
    pub fn write_buffer(&self, handle: u32, offset: u64, data: &[u8]) -> Result<(), GpuError> {
        let (buffer, device, size) = self.buffer(handle)?;
        Self::check_range(size, offset, data.len() as u64)?;
        if data.is_empty() {
            return Ok(());
        }
        let opened = self.opened(device as u32)?;
        let ((), error) = scoped(&opened.device, || {
            opened.queue.write_buffer(buffer, offset, data)
        });
        match error {
            Some(e) => Err(invalid(describe(&e))),
            None => Ok(()),
        }
    }

    /// Starts reading `len` bytes of buffer `handle` at `offset`: submits
    /// the copy after all work submitted so far.
    pub fn begin_read(&self, handle: u32, offset: u64, len: u64) -> Result<ReadBack, GpuError> {
        let (buffer, device, size) = self.buffer(handle)?;
        Self::check_range(size, offset, len)?;
        let opened = self.opened(device as u32)?;
        let (read, error) = scoped(&opened.device, || {
            let staging = opened.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("read back"),
                size: len.max(COPY_ALIGNMENT),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut encoder = opened
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            if len > 0 {
                encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, len);
            }
            let submission = opened.queue.submit([encoder.finish()]);
            let (tx, rx) = oneshot::channel();
            staging.map_async(wgpu::MapMode::Read, .., move |result| {
                let _ = tx.send(result);
            });
            ReadBack {
                device: opened.device.clone(),
                staging,
                submission,
                mapped: rx,
            }
        });
        match error {
            Some(e) => Err(invalid(describe(&e))),
            None => Ok(read),
        }
    }

    /// Runs shader `shader` over `workgroups`, with `bindings` of
    /// `(group, binding, buffer handle)`.
    pub fn dispatch(
        &self,
        shader: u32,
        bindings: &[(u32, u32, u32)],
        workgroups: [u32; 3],
    ) -> Result<(), GpuError> {
        let (pipeline, device) = match self.resource(shader) {
            Some(Resource::Shader { pipeline, device }) => (pipeline, *device),
            _ => return Err(GpuError::InvalidHandle { handle: shader }),
        };
        let max = self
            .granted(device as u32)?
            .device
            .summary()
            .max_workgroups_per_dimension;
        if workgroups.iter().any(|&n| n > max) {
            return Err(invalid(format!(
                "workgroup counts {workgroups:?} exceed the device's limit of {max} per dimension"
            )));
        }
        let mut groups: Vec<(u32, Vec<(u32, &wgpu::Buffer)>)> = Vec::new();
        for &(group, binding, handle) in bindings {
            let (buffer, on, _) = self.buffer(handle)?;
            if on != device {
                return Err(invalid(format!(
                    "buffer {handle} lives on device {on}, the shader on device {device}"
                )));
            }
            match groups.iter_mut().find(|(g, _)| *g == group) {
                Some((_, entries)) => entries.push((binding, buffer)),
                None => groups.push((group, vec![(binding, buffer)])),
            }
        }
        let opened = self.opened(device as u32)?;
        let ((), error) = scoped(&opened.device, || {
            let bind_groups: Vec<(u32, wgpu::BindGroup)> = groups
                .iter()
                .map(|(group, entries)| {
                    let layout = pipeline.get_bind_group_layout(*group);
                    let entries: Vec<wgpu::BindGroupEntry> = entries
                        .iter()
                        .map(|(binding, buffer)| wgpu::BindGroupEntry {
                            binding: *binding,
                            resource: buffer.as_entire_binding(),
                        })
                        .collect();
                    let bind_group = opened.device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: None,
                        layout: &layout,
                        entries: &entries,
                    });
                    (*group, bind_group)
                })
                .collect();
            let mut encoder = opened
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: None,
                    timestamp_writes: None,
                });
                pass.set_pipeline(pipeline);
                for (group, bind_group) in &bind_groups {
                    pass.set_bind_group(*group, bind_group, &[]);
                }
                pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
            }
            opened.queue.submit([encoder.finish()]);
        });
        match error {
            Some(e) => Err(invalid(describe(&e))),
            None => Ok(()),
        }
    }

    /// Frees a buffer or shader.
    pub fn release(&mut self, handle: u32) -> Result<(), GpuError> {
        let resource = self
            .resources
            .remove(&handle)
            .ok_or(GpuError::InvalidHandle { handle })?;
        if let Resource::Buffer { buffer, size, .. } = resource {
            buffer.destroy();
            self.in_use -= size;
            self.usage.remove(size);
        }
        Ok(())
    }
}

impl Drop for GpuContext {
    fn drop(&mut self) {
        for (_, resource) in self.resources.drain() {
            if let Resource::Buffer { buffer, size, .. } = resource {
                buffer.destroy();
                self.usage.remove(size);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Gpus;
    use crate::config::GpuConfig;
    use prism_abi::gpu::{GpuError, usage};
    use std::time::Duration;

    const DOUBLE: &str = r#"
        @group(0) @binding(0) var<storage, read_write> data: array<f32>;
        @compute @workgroup_size(64)
        fn main(@builtin(global_invocation_id) id: vec3<u32>) {
            if (id.x < arrayLength(&data)) { data[id.x] = data[id.x] * 2.0; }
        }
    "#;

    /// The node's GPUs; these tests need one (scripts/install-deps.sh
    /// installs Mesa's software Vulkan on machines without one).
    fn gpus(budget: u64) -> Gpus {
        let gpus = Gpus::discover(&GpuConfig {
            memory_per_instance: budget,
            ..GpuConfig::default()
        });
        assert!(
            gpus.count() > 0,
            "no Vulkan adapter found: run scripts/install-deps.sh (Mesa's lavapipe)"
        );
        gpus
    }

    fn f32s(bytes: &[u8]) -> Vec<f32> {
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_shader_runs_and_its_buffers_are_freed_with_the_context() {
        let gpus = gpus(1 << 20);
        let mut ctx = gpus.context(&[(0, 1000)]);
        let shader = ctx.create_shader(0, DOUBLE, "main").unwrap();
        let buffer = ctx.create_buffer(0, 4 * 100, usage::STORAGE).unwrap();
        let input: Vec<u8> = (0..100).flat_map(|i| (i as f32).to_le_bytes()).collect();
        ctx.write_buffer(buffer, 0, &input).unwrap();
        ctx.dispatch(shader, &[(0, 0, buffer)], [2, 1, 1]).unwrap();
        let mut read = ctx.begin_read(buffer, 0, 400).unwrap();
        read.wait(Duration::from_secs(30)).await.unwrap();
        let mut out = vec![0u8; 400];
        read.copy_into(&mut out).unwrap();
        let expected: Vec<f32> = (0..100).map(|i| 2.0 * i as f32).collect();
        assert_eq!(f32s(&out), expected);
        assert_eq!(gpus.usage().live_buffers, 1);
        assert_eq!(gpus.usage().live_bytes, 400);
        drop(ctx);
        assert_eq!(gpus.usage().live_buffers, 0);
        assert_eq!(gpus.usage().live_bytes, 0);
    }

    #[test]
    fn compile_errors_carry_the_compilers_message() {
        let gpus = gpus(1 << 20);
        let mut ctx = gpus.context(&[(0, 250)]);
        let err = ctx
            .create_shader(
                0,
                "@compute @workgroup_size(1) fn main() { let x = ; }",
                "main",
            )
            .unwrap_err();
        let GpuError::Shader { message } = err else {
            panic!("expected a shader error, got {err:?}");
        };
        assert!(message.contains("expected"), "{message}");
        let err = ctx.create_shader(0, DOUBLE, "missing").unwrap_err();
        assert!(matches!(err, GpuError::Shader { .. }), "{err:?}");
    }

    #[test]
    fn budget_alignment_handles_and_grants_are_checked() {
        let gpus = gpus(1024);
        let mut ctx = gpus.context(&[(0, 500)]);
        let a = ctx.create_buffer(0, 1000, usage::STORAGE).unwrap();
        assert_eq!(
            ctx.create_buffer(0, 100, usage::STORAGE).unwrap_err(),
            GpuError::OutOfMemory {
                requested: 100,
                in_use: 1000,
                budget: 1024
            }
        );
        assert!(matches!(
            ctx.create_buffer(0, 6, usage::STORAGE),
            Err(GpuError::Invalid { .. })
        ));
        assert!(matches!(
            ctx.create_buffer(0, 8, 64),
            Err(GpuError::Invalid { .. })
        ));
        assert!(matches!(
            ctx.write_buffer(a, 996, &[0u8; 8]),
            Err(GpuError::Invalid { .. })
        ));
        // Releasing gives the budget back; a released handle is invalid.
        ctx.release(a).unwrap();
        assert_eq!(ctx.release(a), Err(GpuError::InvalidHandle { handle: a }));
        assert_eq!(
            ctx.write_buffer(77, 0, &[0u8; 4]),
            Err(GpuError::InvalidHandle { handle: 77 })
        );
        // A new buffer gets a new handle; the released one stays invalid.
        let b = ctx.create_buffer(0, 1024, usage::UNIFORM).unwrap();
        assert_ne!(b, a);
        assert_eq!(
            ctx.write_buffer(a, 0, &[0u8; 4]),
            Err(GpuError::InvalidHandle { handle: a })
        );
        assert!(matches!(
            ctx.create_buffer(1, 4, usage::STORAGE),
            Err(GpuError::NotGranted { .. })
        ));
        // An instance that reserved no GPU gets none.
        let mut none = gpus.context(&[]);
        assert!(matches!(
            none.create_shader(0, DOUBLE, "main"),
            Err(GpuError::NotGranted { .. })
        ));
    }

    #[test]
    fn binding_mismatches_are_errors_not_panics() {
        let gpus = gpus(1 << 20);
        let mut ctx = gpus.context(&[(0, 1000)]);
        let shader = ctx.create_shader(0, DOUBLE, "main").unwrap();
        let uniform = ctx.create_buffer(0, 16, usage::UNIFORM).unwrap();
        // A uniform buffer where the shader wants storage.
        let err = ctx
            .dispatch(shader, &[(0, 0, uniform)], [1, 1, 1])
            .unwrap_err();
        assert!(matches!(err, GpuError::Invalid { .. }), "{err:?}");
        // No binding at all.
        let err = ctx.dispatch(shader, &[], [1, 1, 1]).unwrap_err();
        assert!(matches!(err, GpuError::Invalid { .. }), "{err:?}");
        // A group the shader does not have.
        let storage = ctx.create_buffer(0, 16, usage::STORAGE).unwrap();
        let err = ctx
            .dispatch(shader, &[(0, 0, storage), (3, 0, storage)], [1, 1, 1])
            .unwrap_err();
        assert!(matches!(err, GpuError::Invalid { .. }), "{err:?}");
        let err = ctx
            .dispatch(shader, &[(0, 0, storage)], [u32::MAX, 1, 1])
            .unwrap_err();
        assert!(matches!(err, GpuError::Invalid { .. }), "{err:?}");
    }
}
