//! Monte-Carlo estimate of π: 100 seeded tasks each throw darts at the unit
//! square and count those inside the quarter circle.

/// SplitMix64: a small, good, deterministic generator (no dependency needed).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Counts how many of `samples` seeded points fall inside the quarter circle.
#[prism::task]
fn count_inside(seed: u64, samples: u64) -> u64 {
    let mut rng = SplitMix64(seed);
    (0..samples)
        .filter(|_| {
            let (x, y) = (rng.unit(), rng.unit());
            x * x + y * y <= 1.0
        })
        .count() as u64
}

/// What the driver returns.
#[derive(serde::Serialize)]
struct Estimate {
    tasks: u64,
    samples: u64,
    pi: f64,
    error: f64,
}

/// Fans out `tasks` (default 100) tasks of `samples` (default 100,000) each.
#[prism::main]
fn main(tasks: Option<u64>, samples: Option<u64>) -> prism::Result<Estimate> {
    let tasks = tasks.unwrap_or(100);
    let samples = samples.unwrap_or(100_000);
    let refs: Vec<_> = (0..tasks)
        .map(|seed| count_inside::remote(seed, samples))
        .collect();
    let inside: u64 = prism::get_all(&refs)?.into_iter().sum();
    let pi = 4.0 * inside as f64 / (tasks * samples).max(1) as f64;
    Ok(Estimate {
        tasks,
        samples: tasks * samples,
        pi,
        error: (pi - std::f64::consts::PI).abs(),
    })
}
