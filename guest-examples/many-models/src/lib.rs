//! The many-models pattern, scaled down: train one small linear model per
//! key in parallel tasks and store each by name; a second job loads every
//! model by name and predicts. Predictions are checked against a direct
//! computation with the same models.

use serde::{Deserialize, Serialize};

/// Features per model.
const DIM: usize = 4;

/// SplitMix64: small, deterministic, good enough for synthetic data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn signed(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// A linear model y = w·x + b.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Model {
    w: [f64; DIM],
    b: f64,
}

impl Model {
    fn predict(&self, x: &[f64; DIM]) -> f64 {
        self.w.iter().zip(x).map(|(w, x)| w * x).sum::<f64>() + self.b
    }
}

/// The true model behind key `key`'s data.
fn truth(key: u32) -> Model {
    let mut rng = Rng(0xC0FFEE ^ u64::from(key));
    Model {
        w: [
            rng.signed() * 3.0,
            rng.signed() * 3.0,
            rng.signed() * 3.0,
            rng.signed() * 3.0,
        ],
        b: rng.signed(),
    }
}

/// A deterministic input for key `key`.
fn probe(key: u32) -> [f64; DIM] {
    let mut rng = Rng(0xFEED ^ u64::from(key));
    [rng.signed(), rng.signed(), rng.signed(), rng.signed()]
}

/// Fits key `key`'s model on `rows` noisy samples by gradient descent and
/// stores it as the named object `model/<key>`.
#[prism::task]
fn train(key: u32, rows: u32, steps: u32) -> prism::Result<f64> {
    let true_model = truth(key);
    let mut rng = Rng(u64::from(key) << 32 | 7);
    let data: Vec<([f64; DIM], f64)> = (0..rows)
        .map(|_| {
            let x = [rng.signed(), rng.signed(), rng.signed(), rng.signed()];
            let y = true_model.predict(&x) + rng.signed() * 0.01;
            (x, y)
        })
        .collect();
    let mut model = Model {
        w: [0.0; DIM],
        b: 0.0,
    };
    let rate = 0.5;
    for _ in 0..steps {
        let mut grad_w = [0.0; DIM];
        let mut grad_b = 0.0;
        for (x, y) in &data {
            let err = model.predict(x) - y;
            for (g, xi) in grad_w.iter_mut().zip(x) {
                *g += err * xi;
            }
            grad_b += err;
        }
        let n = data.len().max(1) as f64;
        for (w, g) in model.w.iter_mut().zip(grad_w) {
            *w -= rate * g / n;
        }
        model.b -= rate * grad_b / n;
    }
    let error = model
        .w
        .iter()
        .zip(&true_model.w)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    prism::put_named(&format!("model/{key}"), &model)?;
    Ok(error)
}

/// Loads `model/<key>` by name and predicts for the key's probe input.
#[prism::task]
fn predict(key: u32) -> prism::Result<f64> {
    let model: Model = prism::get_named(&format!("model/{key}"))?;
    Ok(model.predict(&probe(key)))
}

/// What stage 1 returns.
#[derive(Serialize)]
struct Trained {
    models: u32,
    stored: usize,
    worst_coefficient_error: f64,
}

/// Stage 1: trains `models` models (default 200) in parallel tasks.
#[prism::main]
fn train_all(models: Option<u32>, rows: Option<u32>, steps: Option<u32>) -> prism::Result<Trained> {
    let models = models.unwrap_or(200);
    let refs: Vec<_> = (0..models)
        .map(|key| train::remote(key, rows.unwrap_or(256), steps.unwrap_or(100)))
        .collect();
    let errors = prism::get_all(&refs)?;
    Ok(Trained {
        models,
        stored: prism::list_named("model/")?.len(),
        worst_coefficient_error: errors.into_iter().fold(0.0, f64::max),
    })
}

/// What stage 2 returns.
#[derive(Serialize)]
struct Predicted {
    models: u32,
    max_abs_difference: f64,
    matches_direct: bool,
}

/// Stage 2, in a later job: predicts with every stored model in parallel
/// tasks and compares with predictions computed here from the same models.
#[prism::main]
fn predict_all(models: Option<u32>) -> prism::Result<Predicted> {
    let models = models.unwrap_or(200);
    let refs: Vec<_> = (0..models).map(predict::remote).collect();
    let remote = prism::get_all(&refs)?;
    let mut max_abs_difference: f64 = 0.0;
    for (key, got) in (0..models).zip(remote) {
        let model: Model = prism::get_named(&format!("model/{key}"))?;
        max_abs_difference = max_abs_difference.max((model.predict(&probe(key)) - got).abs());
    }
    Ok(Predicted {
        models,
        max_abs_difference,
        matches_direct: max_abs_difference < 1e-12,
    })
}

/// Deletes every stored model; returns how many there were.
#[prism::main]
fn cleanup() -> prism::Result<usize> {
    let names = prism::list_named("model/")?;
    for name in &names {
        prism::delete_named(name)?;
    }
    Ok(names.len())
}
