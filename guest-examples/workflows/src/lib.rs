//! Durable workflows: tasks run as steps whose outputs the head logs and
//! never recomputes. Run one with
//! `prism workflow run workflows.wasm --entry factorial --args '[5]'`.
//!
//! - recursion through continuations: [`factorial`], [`fib`];
//! - a chain of slow steps with a durable side-effect log, to kill the
//!   head in the middle of: [`chain`], [`chain_log`];
//! - retries and caught failures: [`flaky`], [`caught`];
//! - durable timers and external events: [`nap`], [`wait_and_greet`];
//! - fan-out and fan-in: [`fan_out`];
//! - the stages of a YAML pipeline: [`collect`], [`train`], [`predict`].

use prism::workflow::{self, Next, Step, StepError, sleep, wait_for_event};
use prism::{Error, Tier};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::time::Duration;

/// The value stored under `name`, or the type's default when there is none.
fn named_or_default<T: DeserializeOwned + Default>(name: &str) -> prism::Result<T> {
    match prism::get_named(name) {
        Err(Error::ObjectNotFound) => Ok(T::default()),
        other => other,
    }
}

// --- Recursion ------------------------------------------------------------

/// a * b.
#[prism::task]
fn mul(a: u64, b: u64) -> u64 {
    a * b
}

/// n!, one durable step per call and per multiplication: factorial(5) makes
/// 9 steps (5 factorial, 4 mul).
#[prism::task]
fn factorial(n: u64) -> Next<u64> {
    if n <= 1 {
        Next::Value(1)
    } else {
        Next::Continue(mul::step(n, factorial::step(n - 1)))
    }
}

/// a + b.
#[prism::task]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

/// The n-th Fibonacci number (fib(0) = 0, fib(1) = 1), by naive
/// recursion: every fib(k) is a step of its own.
#[prism::task]
fn fib(n: u64) -> Next<u64> {
    if n <= 1 {
        Next::Value(n)
    } else {
        Next::Continue(add::step(fib::step(n - 1), fib::step(n - 2)))
    }
}

// --- A chain of slow steps ------------------------------------------------

/// Name of the durable log of chain `tag`.
fn chain_log_name(tag: &str) -> String {
    format!("chain-log/{tag}")
}

/// One link of the chain: sleeps `step_delay_ms`, then appends `label` to
/// the durable log of chain `tag` and returns `n + 1`. The log is written
/// last, so a step interrupted while it sleeps leaves no trace, and a step
/// that ran twice shows twice.
fn link(label: &str, tag: &str, n: u64, step_delay_ms: u64) -> prism::Result<u64> {
    std::thread::sleep(Duration::from_millis(step_delay_ms));
    let name = chain_log_name(tag);
    let mut log: Vec<String> = named_or_default(&name)?;
    log.push(label.to_string());
    prism::put_named_in(&name, &log, Tier::Durable)?;
    Ok(n + 1)
}

/// Link 1 of [`chain`].
#[prism::task]
fn s1(tag: String, n: u64, step_delay_ms: u64) -> prism::Result<u64> {
    link("s1", &tag, n, step_delay_ms)
}

/// Link 2 of [`chain`].
#[prism::task]
fn s2(tag: String, n: u64, step_delay_ms: u64) -> prism::Result<u64> {
    link("s2", &tag, n, step_delay_ms)
}

/// Link 3 of [`chain`].
#[prism::task]
fn s3(tag: String, n: u64, step_delay_ms: u64) -> prism::Result<u64> {
    link("s3", &tag, n, step_delay_ms)
}

/// Link 4 of [`chain`].
#[prism::task]
fn s4(tag: String, n: u64, step_delay_ms: u64) -> prism::Result<u64> {
    link("s4", &tag, n, step_delay_ms)
}

/// Four steps one after another, each sleeping `step_delay_ms` and then
/// logging its name in the durable log of `tag` ([`chain_log`]); outputs
/// `n + 4`. Run once (even across a crash of the head), the log is
/// `["s1", "s2", "s3", "s4"]`.
#[prism::task]
fn chain(tag: String, n: u64, step_delay_ms: u64) -> Next<u64> {
    let d = step_delay_ms;
    let first = s1::step(tag.clone(), n, d);
    let second = s2::step(tag.clone(), first, d);
    let third = s3::step(tag.clone(), second, d);
    Next::Continue(s4::step(tag, third, d))
}

/// The durable log of chain `tag`: the links that finished, in order.
#[prism::task]
fn chain_log(tag: String) -> prism::Result<Vec<String>> {
    named_or_default(&chain_log_name(&tag))
}

// --- Failures -------------------------------------------------------------

/// Counts its calls in the durable counter `flaky/<tag>` and fails (an
/// application error) on the first `failures` of them; then returns "ok
/// after N calls". As a step with enough retries it succeeds.
#[prism::task]
fn flaky(tag: String, failures: u32) -> Result<String, String> {
    let name = format!("flaky/{tag}");
    let calls = named_or_default::<u32>(&name).map_err(|e| e.to_string())? + 1;
    prism::put_named_in(&name, &calls, Tier::Durable).map_err(|e| e.to_string())?;
    if calls <= failures {
        Err(format!("call {calls} of {failures} failing on purpose"))
    } else {
        Ok(format!("ok after {calls} calls"))
    }
}

/// Always fails with `msg` (an application error).
#[prism::task]
fn always_fails(msg: String) -> Result<u64, String> {
    Err(msg)
}

/// What a caught step gave: "caught: <message>" or "ok: <value>".
#[prism::task]
fn describe(r: Result<u64, StepError>) -> String {
    match r {
        Ok(v) => format!("ok: {v}"),
        Err(e) => format!("caught: {}", e.message),
    }
}

/// A step that always fails, caught instead of failing the workflow:
/// outputs "caught: boom". (`tag` only tells runs apart.)
#[prism::task]
fn caught(_tag: String) -> Next<String> {
    let failing = always_fails::step("boom".to_string()).catch_exceptions();
    Next::Continue(describe::step(failing))
}

// --- Timers and events ----------------------------------------------------

/// "<approval>, <name>".
#[prism::task]
fn greet(approval: String, name: String) -> String {
    format!("{approval}, {name}")
}

/// Waits for the event "approval" (`prism workflow signal`), then greets
/// `name` with its payload.
#[prism::task]
fn wait_and_greet(name: String) -> Next<String> {
    Next::Continue(greet::step(wait_for_event::<String>("approval"), name))
}

/// "rested".
#[prism::task]
fn done(_: ()) -> String {
    "rested".to_string()
}

/// A durable timer of `ms` milliseconds, then "rested".
#[prism::task]
fn nap(ms: u64) -> Next<String> {
    Next::Continue(done::step(sleep(Duration::from_millis(ms))))
}

// --- Fan-out and fan-in ---------------------------------------------------

/// i².
#[prism::task]
fn square(i: u64) -> u64 {
    i * i
}

/// The sum of `v`.
#[prism::task]
fn sum(v: Vec<u64>) -> u64 {
    v.iter().sum()
}

/// 0² + 1² + … + (n-1)², one step per square and one to add them up.
#[prism::task]
fn fan_out(n: u64) -> Next<u64> {
    let squares: Vec<Step<u64>> = (0..n).map(square::step).collect();
    Next::Continue(sum::step(squares))
}

// --- The stages of a pipeline ---------------------------------------------

/// A stand-in for a trained model.
#[derive(Serialize, Deserialize)]
struct Model {
    key: String,
    weight: f64,
}

/// Name under which the model of `key` is stored.
fn model_name(key: &str) -> String {
    format!("models/{key}")
}

/// The keys to train: "city{c}/model{m}/target{t}" for every combination.
#[prism::task]
fn collect(n_cities: u64, models: u64, targets: u64) -> Vec<String> {
    let mut keys = Vec::new();
    for c in 0..n_cities {
        for m in 0..models {
            for t in 0..targets {
                keys.push(format!("city{c}/model{m}/target{t}"));
            }
        }
    }
    keys
}

/// "Trains" the model of `key`, stores it as `models/<key>` and returns
/// the key.
#[prism::task]
fn train(key: String) -> prism::Result<String> {
    let model = Model {
        weight: key.len() as f64 / 10.0,
        key,
    };
    prism::put_named(&model_name(&model.key), &model)?;
    Ok(model.key)
}

/// How many of the models of `keys` are stored.
#[prism::task]
fn predict(keys: Vec<String>) -> prism::Result<u64> {
    let mut found = 0;
    for key in &keys {
        match prism::get_named::<Model>(&model_name(key)) {
            Ok(model) if model.key == *key => found += 1,
            Ok(_) | Err(Error::ObjectNotFound) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(found)
}

/// A virtual counter's first state.
#[prism::task]
fn counter_new(init: u64) -> u64 {
    init
}

/// Adds `n` to a virtual counter: the new state, and the new value.
#[prism::task]
fn counter_add(state: u64, n: u64) -> (u64, u64) {
    (state + n, state + n)
}

/// A virtual counter's value (read-only).
#[prism::task]
fn counter_get(state: u64) -> u64 {
    state
}

/// Creates the virtual counter `id` at 0 unless it exists, adds `by` to it
/// `times` times, one call after the other, and outputs its value.
#[prism::task]
fn count_to(id: String, times: u64, by: u64) -> Next<u64> {
    let counter = workflow::virtual_actor(&id);
    let made = counter.get_or_create(counter_new::step(0));
    let mut last: Option<Step<u64>> = None;
    for _ in 0..times {
        let add = counter.call(counter_add::step(workflow::state(), by));
        last = Some(match last {
            Some(previous) => add.after(previous),
            None => add.after(made.clone()),
        });
    }
    let read = counter.read(counter_get::step(workflow::state()));
    Next::Continue(match last {
        Some(previous) => read.after(previous),
        None => read.after(made),
    })
}

/// Outputs the virtual counter `id`'s value.
#[prism::task]
fn read_counter(id: String) -> Next<u64> {
    let counter = workflow::virtual_actor(&id);
    Next::Continue(counter.read(counter_get::step(workflow::state())))
}

// --- Objects passed to steps ---------------------------------------------

/// The sum of `v`.
#[prism::task]
fn total(v: Vec<u64>) -> u64 {
    v.iter().sum()
}

/// 0..n, returned through the object store: the step's output is the
/// object's value, which the engine reads once and logs.
#[prism::task]
fn numbers(n: u64) -> prism::Result<Next<Vec<u64>>> {
    Ok(Next::Object(prism::put(&(0..n).collect::<Vec<u64>>())?))
}

/// Puts 0..n in the object store and continues with two steps that both
/// read it: the engine checkpoints the object once and both steps get its
/// value. Then sums 0..n once more, from a step that returned its list as
/// an object. Outputs three times the sum.
#[prism::task]
fn shared_object(n: u64) -> prism::Result<Next<u64>> {
    let numbers_ref = prism::put(&(0..n).collect::<Vec<u64>>())?;
    let twice = add::step(
        total::step(numbers_ref),
        total::step(numbers_ref).name("second-total"),
    );
    Ok(Next::Continue(add::step(
        twice,
        total::step(numbers::step(n)),
    )))
}

// --- Benchmarks -----------------------------------------------------------

/// A chain of `n` steps, each continuing with the next: outputs 0. (The
/// per-step overhead of `prism bench --workflows`.)
#[prism::task]
fn countdown(n: u64) -> Next<u64> {
    if n == 0 {
        Next::Value(0)
    } else {
        Next::Continue(countdown::step(n - 1))
    }
}
