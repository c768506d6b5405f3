//! The workloads of `prism bench`. Each driver does the submitting, as a Ray
//! driver would, times itself with the guest's monotonic clock, and returns
//! what it measured. The host harness (`host/src/cli/bench.rs`) runs them
//! and adds the figures only the host can see (memory, process start).

use prism::{Blob, ObjectRef};
use std::time::Instant;

/// Does nothing: the unit of per-task overhead.
#[prism::task]
fn noop() {}

/// An actor that counts its calls.
#[prism::actor]
pub struct Sink {
    calls: u64,
}

#[prism::actor]
impl Sink {
    fn new() -> Self {
        Sink { calls: 0 }
    }

    fn ping(&mut self) -> u64 {
        self.calls += 1;
        self.calls
    }
}

/// Answers an HTTP request with an empty 200: the unit of per-request
/// serving overhead (a function deployment).
#[prism::task]
fn http_noop(_req: prism::http::Request) -> prism::http::Response {
    prism::http::Response::new(200)
}

/// The same as a class deployment's replica.
#[prism::actor]
pub struct HttpNoop {
    requests: u64,
}

#[prism::actor]
impl HttpNoop {
    fn new() -> Self {
        HttpNoop { requests: 0 }
    }

    fn call(&mut self, _req: prism::http::Request) -> prism::http::Response {
        self.requests += 1;
        prism::http::Response::new(200)
    }
}

/// A timing: how many operations in how many seconds.
#[derive(serde::Serialize)]
struct Timing {
    ops: u64,
    seconds: f64,
    /// For batch workloads: how long submitting alone took.
    submit_seconds: Option<f64>,
}

fn timed(ops: u64, start: Instant) -> Timing {
    Timing {
        ops,
        seconds: start.elapsed().as_secs_f64(),
        submit_seconds: None,
    }
}

/// `n` no-op tasks submitted, then all got.
#[prism::main]
fn tasks_async(n: u64) -> prism::Result<Timing> {
    let start = Instant::now();
    let refs: Vec<ObjectRef<()>> = (0..n).map(|_| noop::remote()).collect();
    let submitted = start.elapsed().as_secs_f64();
    prism::get_all(&refs)?;
    Ok(Timing {
        submit_seconds: Some(submitted),
        ..timed(n, start)
    })
}

/// `n` sequential submit + get of a no-op task.
#[prism::main]
fn tasks_sync(n: u64) -> prism::Result<Timing> {
    let start = Instant::now();
    for _ in 0..n {
        prism::get(&noop::remote())?;
    }
    Ok(timed(n, start))
}

/// `n` calls to one actor, then all got.
#[prism::main]
fn actor_calls_async(n: u64) -> prism::Result<Timing> {
    let sink = Sink::remote();
    prism::get(&sink.ping().remote())?;
    let start = Instant::now();
    let refs: Vec<ObjectRef<u64>> = (0..n).map(|_| sink.ping().remote()).collect();
    prism::get_all(&refs)?;
    Ok(timed(n, start))
}

/// `n` sequential call + get.
#[prism::main]
fn actor_calls_sync(n: u64) -> prism::Result<Timing> {
    let sink = Sink::remote();
    prism::get(&sink.ping().remote())?;
    let start = Instant::now();
    for _ in 0..n {
        prism::get(&sink.ping().remote())?;
    }
    Ok(timed(n, start))
}

/// `n` put + get of 100-byte values.
#[prism::main]
fn put_get_small(n: u64) -> prism::Result<Timing> {
    let value = Blob(vec![7u8; 100]);
    let start = Instant::now();
    for _ in 0..n {
        let r = prism::put(&value)?;
        let back: Blob = prism::get(&r)?;
        std::hint::black_box(back);
    }
    Ok(timed(n, start))
}

/// `reps` put + get of `mb` MB values, through the SDK's binary fast path
/// (`put_bytes`, `get_blob`: one copy each way), each value freed once
/// read back, as a Ray driver's refs are when they go out of scope; ops
/// counts the bytes of each put + get once. One untimed round trip first
/// maps the memory every later one reuses (the steady state).
#[prism::main]
fn put_get_large(mb: u64, reps: u64) -> prism::Result<Timing> {
    let value = vec![7u8; (mb * 1_000_000) as usize];
    let round_trip = || -> prism::Result<()> {
        let r = prism::put_bytes(&value)?;
        let back = prism::get_blob(&r)?;
        std::hint::black_box(&back);
        prism::free(&[r])?;
        Ok(())
    };
    round_trip()?;
    let start = Instant::now();
    for _ in 0..reps {
        round_trip()?;
    }
    Ok(timed(mb * 1_000_000 * reps, start))
}

/// Sum of `lo..hi` by recursive tasks with leaves of at most `leaf`.
#[prism::task]
fn sum_range(lo: u64, hi: u64, leaf: u64) -> prism::Result<u64> {
    if hi - lo <= leaf {
        return Ok((lo..hi).sum());
    }
    let mid = lo + (hi - lo) / 2;
    let (a, b) = (
        sum_range::remote(lo, mid, leaf),
        sum_range::remote(mid, hi, leaf),
    );
    Ok(prism::get(&a)? + prism::get(&b)?)
}

/// Sums 0..n by recursive tasks with leaves of `leaf`; checks the result.
#[prism::main]
fn tree_reduce(n: u64, leaf: u64) -> prism::Result<Timing> {
    let start = Instant::now();
    let sum = prism::get(&sum_range::remote(0, n, leaf))?;
    if sum != n.saturating_sub(1) * n / 2 {
        return Err(prism::Error::InvalidArgument(format!("wrong sum {sum}")));
    }
    Ok(timed(1, start))
}

/// Fits a linear model on 256×8 synthetic data with 50 gradient steps.
#[prism::task]
fn fit(seed: u64) -> f64 {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let truth: Vec<f64> = (0..8).map(|_| next()).collect();
    let rows: Vec<(Vec<f64>, f64)> = (0..256)
        .map(|_| {
            let x: Vec<f64> = (0..8).map(|_| next()).collect();
            let y = x.iter().zip(&truth).map(|(a, b)| a * b).sum();
            (x, y)
        })
        .collect();
    let mut w = [0.0f64; 8];
    for _ in 0..50 {
        let mut grad = [0.0f64; 8];
        for (x, y) in &rows {
            let err: f64 = x.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() - y;
            for (g, xi) in grad.iter_mut().zip(x) {
                *g += err * xi;
            }
        }
        for (wi, g) in w.iter_mut().zip(grad) {
            *wi -= 0.5 * g / rows.len() as f64;
        }
    }
    w.iter().zip(&truth).map(|(a, b)| (a - b).abs()).sum()
}

/// `n` model fits in parallel tasks.
#[prism::main]
fn small_models(n: u64) -> prism::Result<Timing> {
    let start = Instant::now();
    let refs: Vec<ObjectRef<f64>> = (0..n).map(fit::remote).collect();
    prism::get_all(&refs)?;
    Ok(timed(n, start))
}

/// Creates `n` detached idle actors (waiting until each is constructed) and
/// keeps their handles as the named object `bench/actors`.
#[prism::main]
fn create_actors(n: u64) -> prism::Result<Timing> {
    let start = Instant::now();
    let sinks: Vec<SinkHandle> = (0..n)
        .map(|_| Sink::options().detached().remote())
        .collect::<prism::Result<_>>()?;
    let refs: Vec<ObjectRef<u64>> = sinks.iter().map(|s| s.ping().remote()).collect();
    prism::get_all(&refs)?;
    let timing = timed(n, start);
    prism::put_named("bench/actors", &sinks)?;
    Ok(timing)
}

/// Kills the actors `create_actors` left; returns how many.
#[prism::main]
fn kill_actors() -> prism::Result<u64> {
    let sinks: Vec<SinkHandle> = prism::get_named("bench/actors")?;
    for s in &sinks {
        prism::kill(s)?;
    }
    prism::delete_named("bench/actors")?;
    Ok(sinks.len() as u64)
}

/// Submits `n` no-op tasks, then drains them all.
#[prism::main]
fn queued(n: u64) -> prism::Result<Timing> {
    tasks_async(n)
}

/// Returns at once (cold start probe).
#[prism::main]
fn ready() -> u64 {
    1
}

const SAXPY: &str = r#"
struct Params { a: f32, n: u32, pad0: u32, pad1: u32 };
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.y * 65535u * 256u + id.x;
    if (i < params.n) {
        y[i] = params.a * x[i] + y[i];
    }
}
"#;

/// GPU timings: saxpy throughput and one dispatch's round trip.
#[derive(serde::Serialize, serde::Deserialize)]
struct GpuTiming {
    device: String,
    /// Bytes the kernels moved (12 per element: read x, read y, write y).
    saxpy_bytes: u64,
    saxpy_seconds: f64,
    /// Median of dispatch + 4-byte read back, in microseconds.
    dispatch_latency_us: f64,
}

/// `reps` saxpy dispatches over `n` floats (uploaded once), then a tiny
/// kernel's dispatch + read round trip `rounds` times.
#[prism::task]
fn gpu_kernels(n: u32, reps: u32, rounds: u32) -> prism::Result<GpuTiming> {
    use prism::gpu::{self, bind};
    let device = gpu::device(0)?;
    let shader = device.shader(SAXPY, "main")?;
    let params = device.uniform(&[1.0001f32.to_bits(), n, 0, 0])?;
    let x = device.storage(&vec![1.0f32; n as usize])?;
    let y = device.storage(&vec![0.5f32; n as usize])?;
    let groups = n.div_ceil(256);
    let grid = [groups.min(65535), groups.div_ceil(65535), 1];
    let bindings = [bind(0, &params), bind(1, &x), bind(2, &y)];
    // Warm up (first dispatch compiles the pipeline in the driver).
    shader.dispatch(&bindings, grid)?;
    let mut probe = [0f32; 1];
    y.read_into(0, &mut probe)?;
    let start = Instant::now();
    for _ in 0..reps {
        shader.dispatch(&bindings, grid)?;
    }
    y.read_into(0, &mut probe)?;
    let saxpy_seconds = start.elapsed().as_secs_f64();

    let one = device.uniform(&[1.0f32.to_bits(), 1, 0, 0])?;
    let tiny = [bind(0, &one), bind(1, &x), bind(2, &y)];
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            shader.dispatch(&tiny, [1, 1, 1])?;
            y.read_into(0, &mut probe)?;
            Ok(t.elapsed().as_secs_f64() * 1e6)
        })
        .collect::<Result<_, prism::gpu::GpuError>>()?;
    samples.sort_by(f64::total_cmp);
    Ok(GpuTiming {
        device: device.info()?.name,
        saxpy_bytes: 12 * n as u64 * reps as u64,
        saxpy_seconds,
        dispatch_latency_us: samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN),
    })
}

/// Runs [`gpu_kernels`] on one GPU.
#[prism::main]
fn gpu(n: u32, reps: u32, rounds: u32) -> prism::Result<GpuTiming> {
    prism::get(&gpu_kernels::options().num_gpus(1.0).remote(n, reps, rounds))
}
