//! y = a·x + y over a million floats on the GPU, checked against the CPU.
//!
//! The task reserves one GPU (`num_gpus`); the host grants it a device and
//! the guest compiles a WGSL kernel, uploads x and y, dispatches one
//! invocation per element and reads y back.

use prism::gpu::{self, bind};

const SAXPY: &str = r#"
struct Params { a: f32, n: u32, pad0: u32, pad1: u32 };
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i < params.n) {
        y[i] = params.a * x[i] + y[i];
    }
}
"#;

/// Deterministic inputs: x[i] and y[i] in [-1, 1).
fn inputs(n: usize, seed: u32) -> (Vec<f32>, Vec<f32>) {
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    let mut next = move || {
        // xorshift32
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state as f32 / u32::MAX as f32) * 2.0 - 1.0
    };
    let x = (0..n).map(|_| next()).collect();
    let y = (0..n).map(|_| next()).collect();
    (x, y)
}

/// What the task reports.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Checked {
    /// Elements computed.
    pub n: u32,
    /// The device that ran it.
    pub device: String,
    /// Largest |gpu - cpu| over all elements.
    pub max_abs_error: f32,
    /// Whether every element matched within 1e-5 · (1 + |cpu|).
    pub matches_cpu: bool,
    /// Sum of the GPU's results (for eyeballing).
    pub checksum: f64,
}

/// Computes a·x + y for `n` seeded elements on the GPU and checks it.
#[prism::task]
fn saxpy(a: f32, n: u32, seed: u32) -> prism::Result<Checked> {
    let (x, y) = inputs(n as usize, seed);
    let device = gpu::device(0)?;
    let shader = device.shader(SAXPY, "main")?;
    let params = device.uniform(&[a.to_bits(), n, 0, 0])?;
    let xs = device.storage(&x)?;
    let ys = device.storage(&y)?;
    shader.dispatch(
        &[bind(0, &params), bind(1, &xs), bind(2, &ys)],
        [n.div_ceil(256), 1, 1],
    )?;
    let out: Vec<f32> = ys.read_all()?;

    let mut max_abs_error = 0.0f32;
    let mut matches_cpu = true;
    for i in 0..n as usize {
        let cpu = a * x[i] + y[i];
        let err = (out[i] - cpu).abs();
        max_abs_error = max_abs_error.max(err);
        matches_cpu &= err <= 1e-5 * (1.0 + cpu.abs());
    }
    Ok(Checked {
        n,
        device: device.info()?.name,
        max_abs_error,
        matches_cpu,
        checksum: out.iter().map(|v| *v as f64).sum(),
    })
}

/// Runs saxpy over `n` elements (default 1,048,576) with a = 2.5 on one GPU.
#[prism::main]
fn main(n: Option<u32>) -> prism::Result<Checked> {
    let n = n.unwrap_or(1 << 20);
    prism::get(&saxpy::options().num_gpus(1.0).remote(2.5, n, 7))
}
