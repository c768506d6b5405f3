//! Drivers for the hardening tests (`tests/e2e/hardening.rs`): each tries
//! to make a shared head or node hold more than its bounds, or to learn
//! about another tenant, and reports what it saw.

use prism::{Error, ObjectRef};
use std::time::{Duration, Instant};

use crate::{kind, sleep_then, spin};

/// Polls a pending task with `wait` (timeout 0) `polls` times: each poll
/// used to leave a waiter behind on the node until the task ended.
#[prism::main]
fn wait_poll(polls: u64) -> prism::Result<u64> {
    poll_pending(polls)
}

fn poll_pending(polls: u64) -> prism::Result<u64> {
    let slow = sleep_then::remote(60_000, 1);
    let mut ready = 0;
    for _ in 0..polls {
        let (done, _) = prism::wait(std::slice::from_ref(&slow), 1, Some(Duration::ZERO))?;
        ready += done.len() as u64;
    }
    let _ = prism::cancel(&slow);
    Ok(ready)
}

/// [`wait_poll`] as a task, to run on a chosen node.
#[prism::task]
fn poll_task(polls: u64) -> prism::Result<u64> {
    poll_pending(polls)
}

/// Returns `count` nils: small as MessagePack, large as JSON.
#[prism::main]
fn many_nils(count: u64) -> Vec<()> {
    vec![(); count as usize]
}

/// Tries names of `len` bytes for a named object and a named actor:
/// the kinds of the two refusals.
#[prism::main]
fn long_names(len: u64) -> (String, String) {
    let name = "n".repeat(len as usize);
    let put = kind(&prism::put_named(&name, &1u64));
    let actor = kind(&crate::Kit::options().name(&name).remote(0).map(|_| ()));
    (put, actor)
}

/// Holds an object of `bytes` bytes for `ms` milliseconds.
#[prism::main]
fn hold_object(bytes: u64, ms: u64) -> prism::Result<u64> {
    let r = prism::put_bytes(&vec![7u8; bytes as usize])?;
    std::thread::sleep(Duration::from_millis(ms));
    prism::free(&[r])?;
    Ok(bytes)
}

/// What the store shows this job: (objects, bytes in memory) before and
/// after it puts one 1,000-byte value.
#[prism::main]
fn own_store_stats() -> prism::Result<(u64, u64, u64, u64)> {
    let before = prism::store_stats()?;
    let _r = prism::put_bytes(&[1u8; 1000])?;
    let after = prism::store_stats()?;
    Ok((
        before.objects,
        before.bytes_in_memory,
        after.objects,
        after.bytes_in_memory,
    ))
}

/// Milliseconds a `get_timeout` of `timeout_ms` took while `busy` spinning
/// tasks hold every CPU, and whether it timed out.
#[prism::main]
fn timeout_under_load(busy: u64, timeout_ms: u64) -> prism::Result<(u64, bool)> {
    let spinners: Vec<ObjectRef<u64>> = (0..busy).map(|_| spin::remote()).collect();
    // Let the spinners take the CPUs.
    std::thread::sleep(Duration::from_millis(200));
    let slow = sleep_then::remote(60_000, 1);
    let started = Instant::now();
    let r = prism::get_timeout(&slow, Duration::from_millis(timeout_ms));
    let took = started.elapsed().as_millis() as u64;
    for s in spinners.iter() {
        let _ = prism::cancel(s);
    }
    let _ = prism::cancel(&slow);
    Ok((took, matches!(r, Err(Error::Timeout))))
}

/// A byte vector through `put`/`get`: (length back, milliseconds).
#[prism::main]
fn put_byte_vec(mb: u64) -> prism::Result<(u64, u64)> {
    let data = vec![200u8; (mb << 20) as usize];
    let started = Instant::now();
    let r = prism::put(&data)?;
    let back: Vec<u8> = prism::get(&r)?;
    Ok((back.len() as u64, started.elapsed().as_millis() as u64))
}

/// Logs `lines` lines of `bytes` bytes each through `prism::log`.
#[prism::main]
fn log_flood(lines: u64, bytes: u64) -> u64 {
    flood(lines, bytes)
}

fn flood(lines: u64, bytes: u64) -> u64 {
    let line = "y".repeat(bytes as usize);
    for _ in 0..lines {
        prism::log(&line);
    }
    lines
}

/// [`log_flood`] as a task, to run on a chosen node.
#[prism::task]
fn flood_task(lines: u64, bytes: u64) -> u64 {
    flood(lines, bytes)
}

/// The log flood and the `wait` polls, as tasks on node `node` (a worker,
/// whose memory they must not grow): (lines logged, polls answered ready).
#[prism::main]
fn attacks_on(node: String, lines: u64, bytes: u64, polls: u64) -> prism::Result<(u64, u64)> {
    let flooded = flood_task::options()
        .node(&node, false)
        .remote(lines, bytes);
    let polled = poll_task::options().node(&node, false).remote(polls);
    Ok((prism::get(&flooded)?, prism::get(&polled)?))
}

/// Creates a named actor (on node `node`, if given), kills it and at once
/// creates another under the same name, `rounds` times: how many
/// re-creations succeeded.
#[prism::main]
fn rename_after_kill(rounds: u64, node: Option<String>) -> prism::Result<u64> {
    let named = || {
        let options = crate::Kit::options().name("phoenix");
        match &node {
            Some(node) => options.node(node, false),
            None => options,
        }
    };
    let mut ok = 0;
    for _ in 0..rounds {
        let first = named().remote(0)?;
        prism::kill(&first)?;
        if let Ok(second) = named().remote(0) {
            ok += 1;
            prism::kill(&second)?;
        }
    }
    Ok(ok)
}

/// Makes a named actor on node `node` and returns its handle (the actor
/// is this task's node's creation, not the driver's).
#[prism::task]
fn make_named_kit(name: String, node: String) -> prism::Result<crate::KitHandle> {
    crate::Kit::options()
        .name(&name)
        .node(&node, false)
        .remote(0)
}

/// `rounds` times: a task on node `creator` makes a named actor on node
/// `host`, the driver kills it and at once creates another under the
/// same name. How many re-creations succeeded.
#[prism::main]
fn rename_after_kill_elsewhere(creator: String, host: String, rounds: u64) -> prism::Result<u64> {
    let mut ok = 0;
    for _ in 0..rounds {
        let made = make_named_kit::options()
            .node(&creator, false)
            .remote("phoenix-elsewhere".to_string(), host.clone());
        let first = prism::get(&made)?;
        prism::kill(&first)?;
        if let Ok(second) = crate::Kit::options().name("phoenix-elsewhere").remote(0) {
            ok += 1;
            prism::kill(&second)?;
        }
    }
    Ok(ok)
}

/// A fixed amount of CPU work: `millions` million steps of arithmetic.
#[prism::task]
fn crunch(millions: u64) -> u64 {
    let mut x: u64 = 1;
    for _ in 0..millions * 1_000_000 {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
    x
}

/// `tasks` tasks of `millions` million steps of work each: how many ran.
#[prism::main]
fn cpu_work(tasks: u64, millions: u64) -> prism::Result<u64> {
    let refs: Vec<ObjectRef<u64>> = (0..tasks).map(|_| crunch::remote(millions)).collect();
    Ok(prism::get_all(&refs)?.len() as u64)
}

/// Starts `n` actors created without `num_cpus`, each spinning in a call,
/// for `ms` milliseconds; then kills them. How many it started.
#[prism::main]
fn busy_actors(n: u64, ms: u64) -> prism::Result<u64> {
    let actors: Vec<crate::KitHandle> = (0..n).map(|_| crate::Kit::remote(0)).collect();
    let calls: Vec<ObjectRef<u64>> = actors.iter().map(|a| a.spin().remote()).collect();
    let _ = prism::wait(&calls, calls.len(), Some(Duration::from_millis(ms)))?;
    for a in &actors {
        prism::kill(a)?;
    }
    Ok(actors.len() as u64)
}

/// A driver that spins for `ms` milliseconds without waiting on anything:
/// how many rounds of work it did.
#[prism::main]
fn busy_driver(ms: u64) -> u64 {
    let started = Instant::now();
    let mut rounds = 0u64;
    while started.elapsed() < Duration::from_millis(ms) {
        rounds = std::hint::black_box(rounds.wrapping_add(1));
    }
    rounds
}

/// Submits a short task, sleeps `ms` milliseconds, then looks whether the
/// task finished meanwhile (it can only if the sleep lent the driver's
/// CPU on a one-CPU node).
#[prism::main]
fn driver_sleep_lends(ms: u64) -> prism::Result<bool> {
    let quick = sleep_then::remote(1, 7);
    std::thread::sleep(Duration::from_millis(ms));
    let (ready, _) = prism::wait(std::slice::from_ref(&quick), 1, Some(Duration::ZERO))?;
    Ok(!ready.is_empty())
}
