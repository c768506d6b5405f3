//! GPU contracts: fractional sharing, grants, budgets, shader errors and
//! release at instance end.

use prism::gpu::{self, GpuError, bind};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const INCREMENT: &str = r#"
@group(0) @binding(0) var<storage, read_write> data: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < arrayLength(&data)) { data[id.x] = data[id.x] + 1u; }
}
"#;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Runs the increment kernel over `n` zeros; returns the sum (= n).
fn increment(n: u32) -> Result<u64, GpuError> {
    let device = gpu::device(0)?;
    let shader = device.shader(INCREMENT, "main")?;
    let data = device.storage(&vec![0u32; n as usize])?;
    shader.dispatch(&[bind(0, &data)], [n.div_ceil(64), 1, 1])?;
    Ok(data.read_all::<u32>()?.iter().map(|v| *v as u64).sum())
}

/// Uses the GPU, then holds its share for `hold_ms`; returns its
/// [start, end) in Unix milliseconds and the kernel's sum.
#[prism::task]
fn gpu_window(hold_ms: u64) -> prism::Result<(u64, u64, u64)> {
    let start = now_ms();
    let sum = increment(256)?;
    std::thread::sleep(Duration::from_millis(hold_ms));
    Ok((start, now_ms(), sum))
}

/// Submits `n` `gpu_window` tasks of `share` GPU each (and a tenth of a
/// CPU, so CPUs are not what limits them); returns their windows.
#[prism::main]
fn gpu_packing(n: u32, share: f64, hold_ms: u64) -> prism::Result<Vec<(u64, u64, u64)>> {
    let refs: Vec<_> = (0..n)
        .map(|_| {
            gpu_window::options()
                .num_gpus(share)
                .num_cpus(0.1)
                .remote(hold_ms)
        })
        .collect();
    prism::get_all(&refs)
}

/// Tries to use a GPU; returns the error, if any.
#[prism::task]
fn gpu_try(case: String, arg: u64) -> Option<GpuError> {
    let result = (|| -> Result<(), GpuError> {
        let device = gpu::device(0)?;
        match case.as_str() {
            "dispatch" => {
                increment(64)?;
            }
            "allocate" => {
                let _buffer = device.storage_buffer(arg)?;
            }
            "allocate_twice" => {
                let _a = device.storage_buffer(arg)?;
                let _b = device.storage_buffer(arg)?;
            }
            "shader" => {
                device.shader(
                    "@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }",
                    "main",
                )?;
            }
            "leak" => {
                // Buffers the guest never frees: the host frees them when
                // the instance ends.
                for _ in 0..4 {
                    std::mem::forget(device.storage(&[1.0f32; 1024])?);
                }
            }
            other => panic!("unknown case {other}"),
        }
        Ok(())
    })();
    result.err()
}

/// Runs `gpu_try(case, arg)` with `num_gpus` (none when 0).
#[prism::main]
fn gpu_case(case: String, arg: u64, num_gpus: f64) -> prism::Result<Option<GpuError>> {
    let options = if num_gpus > 0.0 {
        gpu_try::options().num_gpus(num_gpus)
    } else {
        gpu_try::options()
    };
    prism::get(&options.remote(case, arg))
}

/// Holds GPU buffers across calls.
#[prism::actor]
pub struct GpuHolder {
    buffers: Vec<gpu::Buffer>,
}

#[prism::actor]
impl GpuHolder {
    fn new() -> Self {
        GpuHolder {
            buffers: Vec::new(),
        }
    }

    /// Allocates and fills one more buffer of `floats` floats.
    fn hold(&mut self, floats: u32) -> prism::Result<usize> {
        let device = gpu::device(0)?;
        self.buffers
            .push(device.storage(&vec![1.5f32; floats as usize])?);
        Ok(self.buffers.len())
    }

    /// The sum of every held buffer's contents (read back from the GPU).
    fn total(&self) -> prism::Result<f64> {
        let mut sum = 0.0;
        for b in &self.buffers {
            sum += b.read_all::<f32>()?.iter().map(|v| *v as f64).sum::<f64>();
        }
        Ok(sum)
    }
}

/// Creates a detached holder named `name` on `share` of a GPU, fills
/// `count` buffers of `floats` floats, reads them back; returns (buffers
/// held, sum of their contents). The holder outlives the job.
#[prism::main]
fn gpu_hold(share: f64, count: u32, floats: u32, name: String) -> prism::Result<(usize, f64)> {
    let holder = GpuHolder::options()
        .num_gpus(share)
        .name(&name)
        .detached()
        .remote()?;
    let mut held = 0;
    for _ in 0..count {
        held = prism::get(&holder.hold(floats).remote())?;
    }
    let sum = prism::get(&holder.total().remote())?;
    Ok((held, sum))
}

/// Kills the named holder.
#[prism::main]
fn gpu_release_holder(name: String) -> prism::Result<bool> {
    let holder = prism::get_actor::<GpuHolder>(&name)?;
    prism::kill(&holder)?;
    Ok(true)
}

/// Asks for more GPUs than any node has, and for an uneven 1.5.
#[prism::main]
fn gpu_impossible() -> prism::Result<Vec<(String, String)>> {
    let report = |r: prism::Result<(u64, u64, u64)>| match r {
        Ok(_) => ("ok".to_string(), String::new()),
        Err(e) => (
            e.kind().map(|k| k.to_string()).unwrap_or_default(),
            e.to_string(),
        ),
    };
    Ok(vec![
        report(prism::get(&gpu_window::options().num_gpus(64.0).remote(0))),
        report(prism::get(&gpu_window::options().num_gpus(1.5).remote(0))),
    ])
}
