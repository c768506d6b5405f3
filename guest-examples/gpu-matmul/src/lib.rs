//! C = A·B for 256×256 matrices on the GPU (a tiled WGSL kernel with
//! workgroup shared memory), checked against the CPU.

use prism::gpu::{self, bind};

const TILE: u32 = 16;

const MATMUL: &str = r#"
struct Dims { n: u32, pad0: u32, pad1: u32, pad2: u32 };
@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

var<workgroup> tile_a: array<array<f32, 16>, 16>;
var<workgroup> tile_b: array<array<f32, 16>, 16>;

@compute @workgroup_size(16, 16)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let n = dims.n;
    let row = gid.y;
    let col = gid.x;
    var acc = 0.0;
    let tiles = (n + 15u) / 16u;
    for (var t = 0u; t < tiles; t = t + 1u) {
        let ac = t * 16u + lid.x;
        let br = t * 16u + lid.y;
        tile_a[lid.y][lid.x] = select(0.0, a[row * n + ac], row < n && ac < n);
        tile_b[lid.y][lid.x] = select(0.0, b[br * n + col], br < n && col < n);
        workgroupBarrier();
        for (var k = 0u; k < 16u; k = k + 1u) {
            acc = acc + tile_a[lid.y][k] * tile_b[k][lid.x];
        }
        workgroupBarrier();
    }
    if (row < n && col < n) {
        c[row * n + col] = acc;
    }
}
"#;

/// A deterministic n×n matrix with entries in [-1, 1].
fn matrix(n: usize, salt: usize) -> Vec<f32> {
    (0..n * n)
        .map(|i| (((i * 7 + salt * 13) % 17) as f32 - 8.0) / 8.0)
        .collect()
}

/// What the task reports.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Checked {
    /// Matrix size.
    pub n: u32,
    /// Largest |gpu - cpu| over all entries.
    pub max_abs_error: f32,
    /// Whether every entry matched within 1e-4 · (1 + |cpu|).
    pub matches_cpu: bool,
    /// Trace of C.
    pub trace: f64,
}

/// Multiplies two seeded n×n matrices on the GPU and checks the product.
#[prism::task]
fn matmul(n: u32) -> prism::Result<Checked> {
    let size = n as usize;
    let (a, b) = (matrix(size, 1), matrix(size, 2));
    let device = gpu::device(0)?;
    let shader = device.shader(MATMUL, "main")?;
    let dims = device.uniform(&[n, 0, 0, 0])?;
    let (ga, gb) = (device.storage(&a)?, device.storage(&b)?);
    let gc = device.storage_buffer(4 * (size * size) as u64)?;
    let groups = n.div_ceil(TILE);
    shader.dispatch(
        &[bind(0, &dims), bind(1, &ga), bind(2, &gb), bind(3, &gc)],
        [groups, groups, 1],
    )?;
    let c: Vec<f32> = gc.read_all()?;

    let mut max_abs_error = 0.0f32;
    let mut matches_cpu = true;
    for i in 0..size {
        for j in 0..size {
            let cpu: f32 = (0..size).map(|k| a[i * size + k] * b[k * size + j]).sum();
            let err = (c[i * size + j] - cpu).abs();
            max_abs_error = max_abs_error.max(err);
            matches_cpu &= err <= 1e-4 * (1.0 + cpu.abs());
        }
    }
    Ok(Checked {
        n,
        max_abs_error,
        matches_cpu,
        trace: (0..size).map(|i| c[i * size + i] as f64).sum(),
    })
}

/// Multiplies 256×256 matrices (or `n`×`n`) on half a GPU.
#[prism::main]
fn main(n: Option<u32>) -> prism::Result<Checked> {
    prism::get(&matmul::options().num_gpus(0.5).remote(n.unwrap_or(256)))
}
