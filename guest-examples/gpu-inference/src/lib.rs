//! A GPU inference actor: it uploads a small MLP's weights (64 → 128 → 10,
//! ReLU) to GPU buffers once, in its constructor, and serves predictions
//! from them; the buffers stay resident for the actor's life.

use prism::gpu::{self, Buffer, Device, Shader, bind};

const INPUTS: usize = 64;
const HIDDEN: usize = 128;
const OUTPUTS: usize = 10;

/// One dense layer: y = W·x + b, optionally through ReLU.
const DENSE: &str = r#"
struct Dims { inputs: u32, outputs: u32, relu: u32, pad: u32 };
@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let o = id.x;
    if (o >= dims.outputs) { return; }
    var acc = bias[o];
    for (var i = 0u; i < dims.inputs; i = i + 1u) {
        acc = acc + w[o * dims.inputs + i] * x[i];
    }
    if (dims.relu == 1u) { acc = max(acc, 0.0); }
    y[o] = acc;
}
"#;

/// The model's parameters, generated from a seed.
#[derive(Clone)]
pub struct Weights {
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: Vec<f32>,
}

impl Weights {
    /// Deterministic small weights.
    pub fn seeded(seed: u32) -> Self {
        let mut state = seed.wrapping_mul(747_796_405).max(1);
        let mut next = move |scale: f32| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            ((state as f32 / u32::MAX as f32) * 2.0 - 1.0) * scale
        };
        let mut fill = |n: usize, scale: f32| (0..n).map(|_| next(scale)).collect::<Vec<_>>();
        Weights {
            w1: fill(HIDDEN * INPUTS, 0.2),
            b1: fill(HIDDEN, 0.1),
            w2: fill(OUTPUTS * HIDDEN, 0.2),
            b2: fill(OUTPUTS, 0.1),
        }
    }

    /// The same forward pass on the CPU.
    pub fn predict_cpu(&self, x: &[f32]) -> Vec<f32> {
        let dense = |w: &[f32], b: &[f32], x: &[f32], outputs: usize, relu: bool| {
            (0..outputs)
                .map(|o| {
                    let acc = b[o] + (0..x.len()).map(|i| w[o * x.len() + i] * x[i]).sum::<f32>();
                    if relu { acc.max(0.0) } else { acc }
                })
                .collect::<Vec<f32>>()
        };
        let h = dense(&self.w1, &self.b1, x, HIDDEN, true);
        dense(&self.w2, &self.b2, &h, OUTPUTS, false)
    }
}

/// The i-th request's input vector.
fn request(i: u32) -> Vec<f32> {
    (0..INPUTS)
        .map(|j| (((i as usize * 31 + j * 17) % 23) as f32 - 11.0) / 11.0)
        .collect()
}

/// A model served from GPU memory.
#[prism::actor]
pub struct Mlp {
    shader: Shader,
    dims1: Buffer,
    dims2: Buffer,
    w1: Buffer,
    b1: Buffer,
    w2: Buffer,
    b2: Buffer,
    input: Buffer,
    hidden: Buffer,
    output: Buffer,
    uploads: u32,
    served: u32,
}

#[prism::actor]
impl Mlp {
    fn new(seed: u32) -> prism::Result<Self> {
        let weights = Weights::seeded(seed);
        let device: Device = gpu::device(0)?;
        let floats = |n: usize| 4 * n as u64;
        Ok(Mlp {
            shader: device.shader(DENSE, "main")?,
            dims1: device.uniform(&[INPUTS as u32, HIDDEN as u32, 1, 0])?,
            dims2: device.uniform(&[HIDDEN as u32, OUTPUTS as u32, 0, 0])?,
            w1: device.storage(&weights.w1)?,
            b1: device.storage(&weights.b1)?,
            w2: device.storage(&weights.w2)?,
            b2: device.storage(&weights.b2)?,
            input: device.storage_buffer(floats(INPUTS))?,
            hidden: device.storage_buffer(floats(HIDDEN))?,
            output: device.storage_buffer(floats(OUTPUTS))?,
            uploads: 1,
            served: 0,
        })
    }

    /// The model's outputs for `x` (64 floats).
    fn predict(&mut self, x: Vec<f32>) -> prism::Result<Vec<f32>> {
        if x.len() != INPUTS {
            return Err(prism::Error::InvalidArgument(format!(
                "expected {INPUTS} inputs, got {}",
                x.len()
            )));
        }
        self.input.write(0, &x)?;
        self.shader.dispatch(
            &[
                bind(0, &self.dims1),
                bind(1, &self.w1),
                bind(2, &self.b1),
                bind(3, &self.input),
                bind(4, &self.hidden),
            ],
            [(HIDDEN as u32).div_ceil(64), 1, 1],
        )?;
        self.shader.dispatch(
            &[
                bind(0, &self.dims2),
                bind(1, &self.w2),
                bind(2, &self.b2),
                bind(3, &self.hidden),
                bind(4, &self.output),
            ],
            [(OUTPUTS as u32).div_ceil(64), 1, 1],
        )?;
        self.served += 1;
        Ok(self.output.read_all()?)
    }

    /// As a class deployment's replica: `POST {"x": [64 floats]}` →
    /// `{"y": [10 floats], "class": argmax}`; a malformed body is a 400.
    fn call(&mut self, req: prism::http::Request) -> prism::http::Response {
        #[derive(serde::Deserialize)]
        struct Input {
            x: Vec<f32>,
        }
        #[derive(serde::Serialize)]
        struct Output {
            y: Vec<f32>,
            class: usize,
        }
        prism::http::respond(|| {
            let input: Input = req.json()?;
            let y = self
                .predict(input.x)
                .map_err(|e| prism::http::Response::bad_request(&e.to_string()))?;
            let class = argmax(&y);
            Ok(prism::http::Response::json(&Output { y, class }))
        })
    }

    /// (weight uploads, predictions served).
    fn counters(&self) -> (u32, u32) {
        (self.uploads, self.served)
    }
}

/// The index of the largest value (0 for none).
fn argmax(values: &[f32]) -> usize {
    (0..values.len())
        .max_by(|&a, &b| values[a].total_cmp(&values[b]))
        .unwrap_or(0)
}

/// What the driver reports.
#[derive(serde::Serialize)]
struct Report {
    predictions: usize,
    weight_uploads: u32,
    served: u32,
    max_abs_error: f32,
    matches_cpu: bool,
    first_prediction_class: usize,
}

/// Serves `n` predictions (default 100) from one actor holding a quarter
/// of a GPU, and checks each against the CPU.
#[prism::main]
fn main(n: Option<u32>) -> prism::Result<Report> {
    let n = n.unwrap_or(100);
    let weights = Weights::seeded(42);
    let model = Mlp::options().num_gpus(0.25).remote(42)?;
    let refs: Vec<_> = (0..n).map(|i| model.predict(request(i)).remote()).collect();
    let outputs = prism::get_all(&refs)?;
    let mut max_abs_error = 0.0f32;
    for (i, out) in outputs.iter().enumerate() {
        for (g, c) in out.iter().zip(weights.predict_cpu(&request(i as u32))) {
            max_abs_error = max_abs_error.max((g - c).abs());
        }
    }
    let (weight_uploads, served) = prism::get(&model.counters().remote())?;
    let first = &outputs[0];
    let first_prediction_class = argmax(first);
    Ok(Report {
        predictions: outputs.len(),
        weight_uploads,
        served,
        max_abs_error,
        matches_cpu: max_abs_error <= 1e-4,
        first_prediction_class,
    })
}
