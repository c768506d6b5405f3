//! Every way a task can fail, and what the caller sees: each failure reaches
//! the driver as a typed error while the node keeps serving.

use std::time::Duration;

/// Panics: an application error, not retried.
#[prism::task]
fn panics(message: String) -> u64 {
    println!("about to give up: {message}");
    panic!("{message}")
}

/// Returns `Err`: an application error carrying the error value.
#[prism::task]
fn fails(amount: i64) -> Result<u64, String> {
    Err(format!("cannot withdraw {amount}"))
}

/// Executes `unreachable`: a trap, a system error (retried).
#[prism::task]
fn traps() -> u64 {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    unreachable!()
}

/// Allocates until the memory limit stops it.
#[prism::task]
fn memory_bomb() -> u64 {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let chunk = vec![1u8; 8 << 20];
        hoard.push(chunk);
        if hoard.len() == usize::MAX {
            return hoard.len() as u64;
        }
    }
}

/// Never returns; only its deadline ends it.
#[prism::task]
fn spin() -> u64 {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
        if x == u64::MAX {
            return x;
        }
    }
}

/// Traps on its first `fail_attempts` attempts, then returns the attempt
/// number that succeeded.
#[prism::task]
fn flaky(fail_attempts: u32) -> u32 {
    let attempt = prism::attempt();
    if attempt < fail_attempts {
        #[cfg(target_arch = "wasm32")]
        core::arch::wasm32::unreachable();
    }
    attempt
}

/// Doubles a number: proves the node still serves after the failures.
#[prism::task]
fn double(x: u64) -> u64 {
    x * 2
}

/// One line per failure mode: which error kind the driver saw.
#[derive(serde::Serialize)]
struct Outcome {
    case: &'static str,
    error_kind: Option<String>,
    message: String,
    /// The failed task's function, as the host names it.
    origin_function: Option<String>,
    /// Its last output lines.
    origin_output: Vec<String>,
}

fn outcome<T: std::fmt::Debug>(case: &'static str, result: prism::Result<T>) -> Outcome {
    match result {
        Ok(v) => Outcome {
            case,
            error_kind: None,
            message: format!("ok: {v:?}"),
            origin_function: None,
            origin_output: Vec::new(),
        },
        Err(e) => {
            let origin = match &e {
                prism::Error::Task {
                    origin: Some(o), ..
                } => Some((o.function.clone(), o.output.clone())),
                _ => None,
            };
            Outcome {
                case,
                error_kind: e.kind().map(|k| k.to_string()),
                message: e.to_string(),
                origin_function: origin.as_ref().map(|o| o.0.clone()),
                origin_output: origin.map(|o| o.1).unwrap_or_default(),
            }
        }
    }
}

/// Runs every failure mode and reports what came back.
#[prism::main]
fn main() -> prism::Result<Vec<Outcome>> {
    let no_retry = || prism::TaskOptions::new().max_retries(0);
    Ok(vec![
        outcome(
            "panic",
            prism::get(&panics::remote("the guest gave up".to_string())),
        ),
        outcome("error", prism::get(&fails::remote(-5))),
        // A task whose argument failed: its error names the task that did.
        outcome("chained", {
            let failed = panics::remote("the first task gave up".to_string());
            prism::get(&double::remote(failed))
        }),
        outcome(
            "trap",
            prism::get(&traps::options().with(no_retry()).remote()),
        ),
        outcome(
            "memory_bomb",
            prism::get(
                &memory_bomb::options()
                    .with(no_retry())
                    .memory(64 << 20)
                    .remote(),
            ),
        ),
        outcome(
            "infinite_loop",
            prism::get(
                &spin::options()
                    .with(no_retry())
                    .timeout(Duration::from_millis(300))
                    .remote(),
            ),
        ),
        outcome(
            "flaky_retried",
            prism::get(&flaky::options().max_retries(2).remote(1)),
        ),
        outcome("still_serving", prism::get(&double::remote(21))),
    ])
}
