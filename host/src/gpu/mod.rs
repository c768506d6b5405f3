//! GPUs for guests, through wgpu.
//!
//! Guests never touch a device. The node discovers its adapters at start
//! ([`Gpus::discover`]) and offers them to the scheduler as the `GPU`
//! resource, one unit per adapter. A task or actor that reserves `num_gpus`
//! is given shares of particular devices (the scheduler's
//! [`GpuShares`](crate::scheduler::resources::GpuShares) decides which), and
//! its instance gets a [`GpuContext`] bound to exactly those devices: every
//! buffer and shader it creates lives in that context, counts against its
//! memory budget, and is destroyed when the instance ends. An instance that
//! reserved no GPU has an empty context and every GPU call fails with
//! `NotGranted`.
//!
//! wgpu devices are opened lazily, on the first GPU call that needs one,
//! and shared by every instance (and every node) in the process; accounting
//! is per instance and per node.

mod context;

pub use context::{GpuContext, ReadBack};

use crate::config::GpuConfig;
use serde::Serialize;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

/// What the node tells about one adapter (`prism status`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AdapterSummary {
    /// Index among the node's GPUs (the device index guests use).
    pub index: usize,
    /// The adapter's name.
    pub name: String,
    /// The API wgpu drives it through.
    pub backend: String,
    /// `discrete`, `integrated`, `virtual`, `cpu` or `other`.
    pub device_type: String,
    /// Driver name and version.
    pub driver: String,
    /// Largest buffer the device can create.
    pub max_buffer_size: u64,
    /// Largest storage buffer binding.
    pub max_storage_buffer_binding_size: u64,
    /// Largest workgroup count per dimension.
    pub max_workgroups_per_dimension: u32,
    /// Most invocations per workgroup.
    pub max_invocations_per_workgroup: u32,
}

/// One adapter found in this process, with its device once opened.
pub(crate) struct GpuDevice {
    adapter: wgpu::Adapter,
    summary: AdapterSummary,
    opened: OnceLock<Result<Opened, String>>,
}

/// An open device.
pub(crate) struct Opened {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
}

impl GpuDevice {
    /// The open device, opening it on first use.
    pub(crate) fn open(&self) -> Result<&Opened, String> {
        self.opened
            .get_or_init(|| {
                let limits = self.adapter.limits();
                let request = self.adapter.request_device(&wgpu::DeviceDescriptor {
                    label: Some("prism"),
                    required_features: wgpu::Features::empty(),
                    // Guests get what the adapter can do, not WebGPU's
                    // conservative defaults.
                    required_limits: limits,
                    experimental_features: wgpu::ExperimentalFeatures::disabled(),
                    memory_hints: wgpu::MemoryHints::Performance,
                    trace: wgpu::Trace::Off,
                });
                let (device, queue) = now_or_never(request)
                    .ok_or_else(|| "the device did not open synchronously".to_string())?
                    .map_err(|e| format!("could not open {}: {e}", self.summary.name))?;
                // Every call runs inside error scopes; an error that escapes
                // them must not take the process down (wgpu's default
                // handler panics).
                device.on_uncaptured_error(Arc::new(|e: wgpu::Error| {
                    tracing::warn!("uncaptured GPU error: {e}");
                }));
                Ok(Opened { device, queue })
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    pub(crate) fn summary(&self) -> &AdapterSummary {
        &self.summary
    }
}

/// Live GPU buffers of one node's instances, for status and tests.
#[derive(Debug, Default)]
pub(crate) struct GpuUsage {
    buffers: AtomicU64,
    bytes: AtomicU64,
}

impl GpuUsage {
    fn add(&self, bytes: u64) {
        self.buffers.fetch_add(1, Ordering::SeqCst);
        self.bytes.fetch_add(bytes, Ordering::SeqCst);
    }

    fn remove(&self, bytes: u64) {
        self.buffers.fetch_sub(1, Ordering::SeqCst);
        self.bytes.fetch_sub(bytes, Ordering::SeqCst);
    }
}

/// A snapshot of [`Gpus::usage`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GpuUsageStats {
    /// GPU buffers alive in instances of this node.
    pub live_buffers: u64,
    /// Their bytes.
    pub live_bytes: u64,
}

/// The GPUs one node offers.
pub struct Gpus {
    devices: Vec<Arc<GpuDevice>>,
    budget: u64,
    usage: Arc<GpuUsage>,
}

impl Gpus {
    /// The adapters of this machine that `config` admits (none when GPUs are
    /// disabled). Discovery failures mean no GPUs, with a warning: a node
    /// without GPUs is still a node.
    pub fn discover(config: &GpuConfig) -> Gpus {
        let devices = if config.enabled {
            inventory()
                .iter()
                .filter(|d| {
                    config.adapters.is_empty()
                        || config
                            .adapters
                            .iter()
                            .any(|wanted| match wanted.parse::<usize>() {
                                Ok(index) => d.summary.index == index,
                                Err(_) => d
                                    .summary
                                    .name
                                    .to_lowercase()
                                    .contains(&wanted.to_lowercase()),
                            })
                })
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        Gpus {
            devices,
            budget: config.memory_per_instance,
            usage: Arc::default(),
        }
    }

    /// How many GPUs the node offers.
    pub fn count(&self) -> usize {
        self.devices.len()
    }

    /// What the node offers, indexed as guests see it.
    pub fn adapters(&self) -> Vec<AdapterSummary> {
        self.devices
            .iter()
            .enumerate()
            .map(|(index, d)| AdapterSummary {
                index,
                ..d.summary.clone()
            })
            .collect()
    }

    /// Buffers alive in this node's instances.
    pub fn usage(&self) -> GpuUsageStats {
        GpuUsageStats {
            live_buffers: self.usage.buffers.load(Ordering::SeqCst),
            live_bytes: self.usage.bytes.load(Ordering::SeqCst),
        }
    }

    /// The context of an instance holding `assignment` (from its scheduler
    /// slot); empty when it holds no GPU.
    pub fn context(&self, assignment: &[(usize, u64)]) -> GpuContext {
        let granted = assignment
            .iter()
            .filter_map(|&(index, share)| Some((self.devices.get(index)?.clone(), index, share)))
            .collect();
        GpuContext::new(granted, self.budget, self.usage.clone())
    }
}

/// Every Vulkan adapter of this machine, found once per process.
fn inventory() -> &'static [Arc<GpuDevice>] {
    static INVENTORY: OnceLock<Vec<Arc<GpuDevice>>> = OnceLock::new();
    INVENTORY.get_or_init(|| {
        let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
        descriptor.backends = wgpu::Backends::VULKAN;
        // No validation layers, in debug and release builds alike: wgpu's
        // own validation still checks every call.
        descriptor.flags = wgpu::InstanceFlags::empty();
        let instance = wgpu::Instance::new(descriptor);
        let Some(adapters) = now_or_never(instance.enumerate_adapters(wgpu::Backends::VULKAN))
        else {
            tracing::warn!("GPU discovery did not finish synchronously; offering no GPUs");
            return Vec::new();
        };
        adapters
            .into_iter()
            .enumerate()
            .map(|(index, adapter)| {
                let info = adapter.get_info();
                let limits = adapter.limits();
                let summary = AdapterSummary {
                    index,
                    name: info.name.clone(),
                    backend: info.backend.to_str().to_string(),
                    device_type: device_type(info.device_type).to_string(),
                    driver: format!("{} {}", info.driver, info.driver_info)
                        .trim()
                        .to_string(),
                    max_buffer_size: limits.max_buffer_size,
                    max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
                    max_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
                    max_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
                };
                tracing::debug!(name = %summary.name, backend = %summary.backend, "found GPU");
                Arc::new(GpuDevice {
                    adapter,
                    summary,
                    opened: OnceLock::new(),
                })
            })
            .collect()
    })
}

fn device_type(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::DiscreteGpu => "discrete",
        wgpu::DeviceType::IntegratedGpu => "integrated",
        wgpu::DeviceType::VirtualGpu => "virtual",
        wgpu::DeviceType::Cpu => "cpu",
        wgpu::DeviceType::Other => "other",
    }
}

/// Polls a future once. wgpu's native futures (device requests, error
/// scopes) are ready when created; `None` means this one was not.
pub(crate) fn now_or_never<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(value) => Some(value),
        Poll::Pending => None,
    }
}
