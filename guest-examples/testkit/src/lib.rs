//! Test programs for the end-to-end suite (`tests/e2e`). Each driver
//! exercises one contract of the SDK and reports what it observed; the tests
//! assert on the report.

use prism::{Error, ErrorKind, ObjectRef};
use std::time::{Duration, Instant};

mod cluster;
mod events;
mod gpu;
mod hostile;
mod http;
mod tenancy;

/// a + b.
#[prism::task]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

/// The driver prints a line, a task prints one and ends, then the
/// driver sleeps `ms` milliseconds: `prism run` shows both lines while
/// the driver still sleeps.
#[prism::main]
fn print_then_sleep(ms: u64) -> prism::Result<u64> {
    println!("printed before the sleep");
    prism::get(&chatter::remote("before the sleep".to_string()))?;
    std::thread::sleep(Duration::from_millis(ms));
    Ok(ms)
}

/// Sleeps `ms` milliseconds (a WASI clock sleep), then returns `value`.
#[prism::task]
fn sleep_then(ms: u64, value: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    value
}

/// Never returns on its own.
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

/// Receives refs nested in a Vec (not resolved) and gets each itself.
#[prism::task]
fn sum_refs(refs: Vec<ObjectRef<u64>>) -> prism::Result<u64> {
    Ok(prism::get_all(&refs)?.into_iter().sum())
}

/// Length of a string argument (used with large, by-reference arguments).
#[prism::task]
fn text_len(text: String) -> u64 {
    text.len() as u64
}

/// A chain of `depth` nested tasks, each blocked in `get` on the next.
#[prism::task]
fn chain(depth: u32) -> prism::Result<u32> {
    if depth == 0 {
        return Ok(0);
    }
    Ok(prism::get(&chain::remote(depth - 1))? + 1)
}

/// Writes to stdout, stderr and the job log.
#[prism::task]
fn chatter(tag: String) -> u64 {
    println!("stdout line from {tag}");
    eprintln!("stderr line from {tag}");
    prism::log(format!("log line from {tag}"));
    1
}

/// Returns the attempt number it ran as.
#[prism::task]
fn attempt_number() -> u32 {
    prism::attempt()
}

/// Uses a custom resource (`gadget`).
#[prism::task]
fn with_gadget(x: u64) -> u64 {
    x
}

fn kind(r: &prism::Result<impl Sized>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(Error::Task { kind, .. }) => kind.to_string(),
        Err(Error::Timeout) => "timeout".into(),
        Err(Error::InvalidArgument(_)) => "invalid_argument".into(),
        Err(Error::ObjectNotFound) => "object_not_found".into(),
        Err(Error::ActorNotFound(_)) => "actor_not_found".into(),
        Err(Error::ActorNameTaken(_)) => "actor_name_taken".into(),
        Err(Error::PermissionDenied) => "permission_denied".into(),
        Err(Error::QuotaExceeded) => "quota_exceeded".into(),
        Err(other) => format!("other: {other}"),
    }
}

/// Echoes its argument (a JSON value from the CLI) back.
#[prism::main]
fn echo(value: serde_json_like::Value) -> serde_json_like::Value {
    value
}

mod serde_json_like {
    //! A self-describing value, so `echo` accepts any JSON the CLI sends.
    #[derive(serde::Serialize, serde::Deserialize)]
    #[serde(untagged)]
    pub enum Value {
        Null,
        Bool(bool),
        Int(i64),
        Float(f64),
        Text(String),
        List(Vec<Value>),
        Map(std::collections::BTreeMap<String, Value>),
    }
}

/// Runs `add` once.
#[prism::main]
fn sum(a: u64, b: u64) -> prism::Result<u64> {
    prism::get(&add::remote(a, b))
}

/// Every edge of `wait`'s contract.
#[derive(serde::Serialize)]
struct WaitReport {
    empty_is_immediate: bool,
    too_many_is_invalid: bool,
    zero_is_invalid: bool,
    duplicates_are_invalid: bool,
    fast_before_slow: bool,
    timeout_returns_pending: bool,
    timeout_elapsed_ms: u64,
    zero_timeout_is_immediate: bool,
    ready_capped_at_num_returns: bool,
    order_preserved: bool,
    errors_count_as_ready: bool,
}

#[prism::main]
fn wait_cases() -> prism::Result<WaitReport> {
    let (r, p) = prism::wait::<u64>(&[], 1, None)?;
    let empty_is_immediate = r.is_empty() && p.is_empty();

    let one = add::remote(1, 1);
    let too_many_is_invalid =
        matches!(prism::wait(&[one], 2, None), Err(Error::InvalidArgument(_)));
    let zero_is_invalid = matches!(prism::wait(&[one], 0, None), Err(Error::InvalidArgument(_)));
    let duplicates_are_invalid = matches!(
        prism::wait(&[one, one], 1, None),
        Err(Error::InvalidArgument(_))
    );

    let slow = sleep_then::remote(3_000, 1);
    let fast = add::remote(2, 2);
    let (ready, pending) = prism::wait(&[slow, fast], 1, None)?;
    let fast_before_slow = ready == vec![fast] && pending == vec![slow];

    let start = Instant::now();
    let (ready, pending) = prism::wait(&[slow], 1, Some(Duration::from_millis(100)))?;
    let timeout_elapsed_ms = start.elapsed().as_millis() as u64;
    let timeout_returns_pending = ready.is_empty() && pending == vec![slow];

    let start = Instant::now();
    let (ready, _) = prism::wait(&[slow], 1, Some(Duration::ZERO))?;
    let zero_timeout_is_immediate =
        ready.is_empty() && start.elapsed() < Duration::from_millis(500);

    let done: Vec<_> = (0..3).map(|i| add::remote(i, 0)).collect();
    prism::get_all(&done)?;
    let (ready, pending) = prism::wait(&done, 2, None)?;
    let ready_capped_at_num_returns = ready.len() == 2 && pending.len() == 1;
    let order_preserved = ready == done[..2] && pending == done[2..];

    let failing = chain::options()
        .max_retries(0)
        .timeout(Duration::from_millis(1))
        .remote(1_000);
    let failed = spin::options()
        .max_retries(0)
        .timeout(Duration::from_millis(50))
        .remote();
    let (ready, _) = prism::wait(&[failed], 1, Some(Duration::from_secs(30)))?;
    let errors_count_as_ready = ready == vec![failed];
    let _ = prism::cancel(&failing);
    let _ = prism::cancel(&slow);

    Ok(WaitReport {
        empty_is_immediate,
        too_many_is_invalid,
        zero_is_invalid,
        duplicates_are_invalid,
        fast_before_slow,
        timeout_returns_pending,
        timeout_elapsed_ms,
        zero_timeout_is_immediate,
        ready_capped_at_num_returns,
        order_preserved,
        errors_count_as_ready,
    })
}

#[derive(serde::Serialize)]
struct GetTimeoutReport {
    first: String,
    elapsed_ms: u64,
    then_value: u64,
}

/// `get_timeout` gives up with a typed timeout; the task keeps running and a
/// later `get` returns its value.
#[prism::main]
fn get_timeout_case() -> prism::Result<GetTimeoutReport> {
    let slow = sleep_then::remote(500, 7);
    let start = Instant::now();
    let first = kind(&prism::get_timeout(&slow, Duration::from_millis(50)));
    let elapsed_ms = start.elapsed().as_millis() as u64;
    let then_value = prism::get(&slow)?;
    Ok(GetTimeoutReport {
        first,
        elapsed_ms,
        then_value,
    })
}

#[derive(serde::Serialize)]
struct CancelReport {
    queued: String,
    running: String,
    running_cancel_ms: u64,
    finished: String,
    cancelled_is_typed: bool,
}

/// Cancels a task waiting for its argument, a running one, and a finished one.
#[prism::main]
fn cancel_cases() -> prism::Result<CancelReport> {
    let slow = sleep_then::remote(2_000, 1);
    let waiting = add::remote(slow, 1);
    prism::cancel(&waiting)?;
    let queued_result = prism::get(&waiting);
    let cancelled_is_typed = queued_result.as_ref().err().map(Error::is_cancelled) == Some(true);
    let queued = kind(&queued_result);

    let running_ref = spin::options().max_retries(0).remote();
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    prism::cancel(&running_ref)?;
    let running = kind(&prism::get(&running_ref));
    let running_cancel_ms = start.elapsed().as_millis() as u64;

    let done = add::remote(1, 2);
    prism::get(&done)?;
    prism::cancel(&done)?;
    let finished = match prism::get(&done) {
        Ok(v) => format!("value {v}"),
        Err(e) => e.to_string(),
    };
    let _ = prism::cancel(&slow);
    Ok(CancelReport {
        queued,
        running,
        running_cancel_ms,
        finished,
        cancelled_is_typed,
    })
}

#[derive(serde::Serialize)]
struct RefsReport {
    resolved_arg: u64,
    nested_sum: u64,
    put_value: u64,
    big_arg_len: u64,
    forged: String,
}

/// Refs as direct arguments (resolved), nested in data (passed as refs),
/// large arguments (sent through the store), and a forged id.
#[prism::main]
fn refs_cases() -> prism::Result<RefsReport> {
    let a = add::remote(1, 2);
    let resolved_arg = prism::get(&add::remote(a, 10))?;
    let parts: Vec<ObjectRef<u64>> = (1..=4).map(|i| add::remote(i, 0)).collect();
    let nested_sum = prism::get(&sum_refs::remote(parts))?;
    let stored = prism::put(&41u64)?;
    let put_value = prism::get(&add::remote(stored, 1))?;
    let big = "x".repeat(1 << 20);
    let big_arg_len = prism::get(&text_len::remote(big))?;
    let forged: ObjectRef<u64> = ObjectRef::from_id(prism::ObjectId([0xAB; 16]));
    let forged = kind(&prism::get(&forged));
    Ok(RefsReport {
        resolved_arg,
        nested_sum,
        put_value,
        big_arg_len,
        forged,
    })
}

/// Puts `mb` MiB and reads them back; returns the bytes read.
#[prism::main]
fn big_object(mb: u64) -> prism::Result<u64> {
    let value = "y".repeat((mb as usize) << 20);
    let r = prism::put(&value)?;
    drop(value);
    let back: String = prism::get(&r)?;
    Ok(back.len() as u64)
}

/// Puts `count` values of `kb` KiB each, then reads them all back and
/// returns the store statistics seen before and after.
#[prism::main]
fn fill_store(count: u64, kb: u64) -> prism::Result<(prism::StoreStats, bool)> {
    let refs: Vec<ObjectRef<String>> = (0..count)
        .map(|i| prism::put(&format!("{i:08}").repeat((kb as usize) * 128)))
        .collect::<prism::Result<_>>()?;
    let stats = prism::store_stats()?;
    let mut intact = true;
    for (i, r) in refs.iter().enumerate() {
        let v = prism::get(r)?;
        intact &= v.len() == (kb as usize) * 1024 && v.starts_with(&format!("{i:08}"));
    }
    Ok((stats, intact))
}

/// Asks for more CPUs than any node has, and for an unknown resource.
#[prism::main]
fn unschedulable() -> (String, String, String) {
    let cpus = kind(&prism::get(&add::options().num_cpus(10_000.0).remote(1, 1)));
    let custom = kind(&prism::get(
        &add::options().resource("unicorn", 1.0).remote(1, 1),
    ));
    let memory = kind(&prism::get(&add::options().memory(1 << 50).remote(1, 1)));
    (cpus, custom, memory)
}

/// Uses the custom resource `gadget` with `n` concurrent tasks.
#[prism::main]
fn gadget(n: u64) -> prism::Result<u64> {
    let refs: Vec<_> = (0..n)
        .map(|i| with_gadget::options().resource("gadget", 1.0).remote(i))
        .collect();
    Ok(prism::get_all(&refs)?.into_iter().sum())
}

/// A nested chain of `depth` tasks.
#[prism::main]
fn deep(depth: u32) -> prism::Result<u32> {
    prism::get(&chain::remote(depth))
}

/// Output capture.
#[prism::main]
fn chatty() -> prism::Result<u64> {
    println!("driver says hi");
    prism::get(&chatter::remote("task".to_string()))
}

/// A driver that fails with an application error.
#[prism::main]
fn failing_driver() -> Result<u64, String> {
    Err("the driver refused".to_string())
}

/// Submits `n` slow tasks and returns before they finish: the job's end
/// must cancel them and free what it owns.
#[prism::main]
fn abandon(n: u64) -> u64 {
    for _ in 0..n {
        let _ = sleep_then::remote(60_000, 0);
    }
    let _ = prism::put(&"left behind".repeat(1000));
    n
}

/// Always refuses, with a serializable error value.
#[prism::task]
fn refuse() -> Result<u64, String> {
    Err("insufficient funds".to_string())
}

/// An error kind helper check: application errors carry their payload.
#[prism::main]
fn payload_case() -> prism::Result<Option<String>> {
    match prism::get(&refuse::remote()) {
        Err(e) if e.kind() == Some(ErrorKind::Application) => Ok(e.payload::<String>()),
        other => Ok(Some(format!("unexpected: {other:?}"))),
    }
}

/// Traps on every attempt before `n`, then returns its attempt number.
#[prism::task]
fn trap_until(n: u32) -> u32 {
    let attempt = prism::attempt();
    if attempt < n {
        #[cfg(target_arch = "wasm32")]
        core::arch::wasm32::unreachable();
    }
    attempt
}

/// Always panics.
#[prism::task]
fn always_panics() -> u32 {
    panic!("this task never works")
}

/// (kind, attempts) of a failure, or ("ok", value).
fn kind_and_attempts(r: prism::Result<u32>) -> (String, u32) {
    match r {
        Ok(v) => ("ok".into(), v),
        Err(Error::Task { kind, attempts, .. }) => (kind.to_string(), attempts),
        Err(other) => (other.to_string(), 0),
    }
}

/// Retries: system errors retry up to `max_retries`, application errors
/// never do.
#[prism::main]
fn retry_cases() -> Vec<(String, u32)> {
    vec![
        kind_and_attempts(prism::get(&trap_until::options().max_retries(2).remote(10))),
        kind_and_attempts(prism::get(&trap_until::options().max_retries(3).remote(2))),
        kind_and_attempts(prism::get(&always_panics::remote())),
    ]
}

/// Calls of `count_calls` seen by this instance.
static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Counts its calls in a global, which shows whether calls shared a warm
/// instance, then ends as `how` says: 0 returns the count, 1 fails with an
/// application error, 2 traps, 3 first leaks 32 MiB of linear memory.
#[prism::task]
fn count_calls(how: u8) -> Result<u64, String> {
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    match how {
        1 => Err(format!("failed on call {n}")),
        2 => core::arch::wasm32::unreachable(),
        3 => {
            std::mem::forget(std::hint::black_box(vec![1u8; 32 << 20]));
            Ok(n)
        }
        _ => Ok(n),
    }
}

/// `prism::free` in every case: a small value, a large one (still staged
/// by `get_blob`), one freed twice, a pending task result (left alone)
/// and the same once ready, and another value passed to a task after it
/// was freed. Returns each count freed and each read's kind, in order,
/// then whether the store's bytes in memory fell by the large value's.
#[prism::main]
fn free_cases() -> prism::Result<Vec<String>> {
    let small = prism::put(&"x".to_string())?;
    let large = prism::put_bytes(&vec![3u8; 3 << 20])?;
    let staged = prism::get_blob(&large)?.0.len();
    let slow = sleep_then::remote(300, 5);
    let arg = prism::put(&"argument".to_string())?;
    let held = prism::store_stats()?.bytes_in_memory;
    let mut seen = vec![
        prism::free(&[small])?.to_string(),
        kind(&prism::get(&small)),
        prism::free(&[small])?.to_string(),
        format!("{staged}:{}", prism::free(&[large])?),
        kind(&prism::get_blob(&large)),
        prism::free(&[slow])?.to_string(),
        kind(&prism::get(&slow)),
        prism::free(&[slow])?.to_string(),
        prism::free(&[arg])?.to_string(),
        kind(&prism::get(&tenancy::text_length::remote(arg))),
    ];
    let after = prism::store_stats()?.bytes_in_memory;
    seen.push((held.saturating_sub(after) >= 3 << 20).to_string());
    Ok(seen)
}

/// The counts `count_calls` returns for a sequence of calls, one after
/// another, on node `node` (empty: anywhere): `(how, max_calls)` each
/// (`max_calls` 0: the default); an error is reported as -1.
#[prism::main]
fn warm_counts(node: String, calls: Vec<(u8, u32)>) -> Vec<i64> {
    calls
        .into_iter()
        .map(|(how, max_calls)| {
            let mut call = count_calls::options();
            if max_calls > 0 {
                call = call.max_calls(max_calls);
            }
            if !node.is_empty() {
                call = call.node(&node, false);
            }
            prism::get(&call.remote(how)).map_or(-1, |n| n as i64)
        })
        .collect()
}

/// What the sandbox let a guest do.
#[derive(serde::Serialize)]
struct SandboxReport {
    read_passwd: String,
    list_root: String,
    env_vars: usize,
    stdin: String,
    args: Vec<String>,
    counts: (u64, u64),
    sleep_past_deadline: String,
    sleep_elapsed_ms: u64,
}

/// Tries what a guest must not be able to do, and reports each outcome.
#[prism::main]
fn sandbox_probe() -> prism::Result<SandboxReport> {
    use std::io::Read;
    let read_passwd = match std::fs::read_to_string("/etc/passwd") {
        Ok(text) => format!("READ {} bytes", text.len()),
        Err(e) => format!("denied: {e}"),
    };
    let list_root = match std::fs::read_dir("/") {
        Ok(entries) => format!("LISTED {} entries", entries.count()),
        Err(e) => format!("denied: {e}"),
    };
    let mut input = String::new();
    let stdin = match std::io::stdin().read_to_string(&mut input) {
        Ok(0) => "empty".to_string(),
        Ok(n) => format!("READ {n} bytes"),
        Err(e) => format!("denied: {e}"),
    };
    let counts = (
        prism::get(&count_calls::options().max_calls(1).remote(0))?,
        prism::get(&count_calls::options().max_calls(1).remote(0))?,
    );
    let start = Instant::now();
    let sleeper = sleep_then::options()
        .max_retries(0)
        .timeout(Duration::from_millis(100))
        .remote(10_000, 1);
    let sleep_past_deadline = kind(&prism::get(&sleeper));
    Ok(SandboxReport {
        read_passwd,
        list_root,
        env_vars: std::env::vars().count(),
        stdin,
        args: std::env::args().collect(),
        counts,
        sleep_past_deadline,
        sleep_elapsed_ms: start.elapsed().as_millis() as u64,
    })
}

/// What `many_tasks` measured.
#[derive(serde::Serialize)]
struct Throughput {
    tasks: u64,
    sum: u64,
    seconds: f64,
    tasks_per_second: f64,
}

/// Submits `n` tiny tasks, then gets them all: a rough per-task overhead
/// figure (the full benchmark suite lives elsewhere).
#[prism::main]
fn many_tasks(n: u64) -> prism::Result<Throughput> {
    let start = Instant::now();
    let refs: Vec<_> = (0..n).map(|i| add::remote(i, 1)).collect();
    let sum = prism::get_all(&refs)?.into_iter().sum();
    let seconds = start.elapsed().as_secs_f64();
    Ok(Throughput {
        tasks: n,
        sum,
        seconds,
        tasks_per_second: n as f64 / seconds,
    })
}

// ---------------------------------------------------------------- actors

/// A test actor with a value and ways to fail.
#[prism::actor]
pub struct Kit {
    value: i64,
}

#[prism::actor]
impl Kit {
    fn new(start: i64) -> Result<Self, String> {
        if start < 0 {
            return Err(format!("start must be >= 0, got {start}"));
        }
        Ok(Kit { value: start })
    }

    fn add(&mut self, n: i64) -> i64 {
        self.value += n;
        self.value
    }

    fn get(&self) -> i64 {
        self.value
    }

    fn refuse(&mut self) -> Result<i64, String> {
        Err(format!("refused at {}", self.value))
    }

    fn boom(&mut self) -> i64 {
        panic!("boom at {}", self.value)
    }

    fn hog(&mut self) -> usize {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![7u8; 4 << 20]);
            if hoard.len() == usize::MAX {
                return hoard.len();
            }
        }
    }

    fn trap_first(&mut self) -> u32 {
        if prism::attempt() == 0 {
            #[cfg(target_arch = "wasm32")]
            core::arch::wasm32::unreachable();
        }
        prism::attempt()
    }

    fn quit(&mut self) -> prism::Result<i64> {
        prism::exit_actor()?;
        Ok(self.value)
    }

    fn spin(&mut self) -> u64 {
        let mut x: u64 = 0;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
            if x == u64::MAX {
                return x;
            }
        }
    }

    fn echo_after(&self, x: i64, ms: u64) -> i64 {
        std::thread::sleep(Duration::from_millis(ms));
        x
    }

    fn call_other(&self, other: KitHandle, n: i64) -> prism::Result<i64> {
        prism::get(&other.add(n).remote())
    }
}

/// A persistent test actor.
#[prism::actor(persistent)]
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Saver {
    value: i64,
}

#[prism::actor]
impl Saver {
    fn new(start: i64) -> Self {
        Saver { value: start }
    }

    fn add(&mut self, n: i64) -> i64 {
        self.value += n;
        self.value
    }

    fn boom(&mut self) -> i64 {
        panic!("saver boom")
    }
}

/// (kind or "ok", message or value) of a call's result.
fn outcome_of<T: std::fmt::Debug>(r: prism::Result<T>) -> (String, String) {
    match r {
        Ok(v) => ("ok".into(), format!("{v:?}")),
        Err(e @ Error::ActorNotFound(_)) => ("actor_not_found".into(), e.to_string()),
        Err(e @ Error::ActorNameTaken(_)) => ("actor_name_taken".into(), e.to_string()),
        Err(e) => (
            e.kind()
                .map(|k| k.to_string())
                .unwrap_or_else(|| "other".into()),
            e.to_string(),
        ),
    }
}

/// Every actor failure mode, each reported as (kind, message).
#[prism::main]
fn actor_cases() -> prism::Result<std::collections::BTreeMap<&'static str, (String, String)>> {
    let mut out = std::collections::BTreeMap::new();

    let bad = Kit::remote(-1);
    out.insert(
        "ctor_error_first_call",
        outcome_of(prism::get(&bad.get().remote())),
    );

    let k = Kit::remote(5);
    prism::get(&k.add(1).remote())?;
    out.insert("app_error", outcome_of(prism::get(&k.refuse().remote())));
    out.insert("after_app_error", outcome_of(prism::get(&k.get().remote())));

    let r = Kit::options().max_restarts(1).remote(10)?;
    prism::get(&r.add(5).remote())?;
    out.insert("panic_restarts", outcome_of(prism::get(&r.boom().remote())));
    out.insert("after_restart", outcome_of(prism::get(&r.get().remote())));
    out.insert(
        "panic_no_restarts_left",
        outcome_of(prism::get(&r.boom().remote())),
    );
    out.insert("after_death", outcome_of(prism::get(&r.get().remote())));

    let h = Kit::options().max_restarts(1).memory(32 << 20).remote(1)?;
    prism::get(&h.add(1).remote())?;
    out.insert("limit_restarts", outcome_of(prism::get(&h.hog().remote())));
    out.insert("after_limit", outcome_of(prism::get(&h.get().remote())));

    let t = Kit::options()
        .max_restarts(2)
        .max_task_retries(1)
        .remote(0)?;
    out.insert(
        "task_retry",
        outcome_of(prism::get(&t.trap_first().remote())),
    );
    let t0 = Kit::options().max_restarts(2).remote(0)?;
    out.insert(
        "no_task_retry",
        outcome_of(prism::get(&t0.trap_first().remote())),
    );

    let e = Kit::remote(7);
    out.insert("exit_result", outcome_of(prism::get(&e.quit().remote())));
    out.insert("after_exit", outcome_of(prism::get(&e.get().remote())));

    let x = Kit::remote(1);
    prism::kill(&x)?;
    out.insert("after_kill", outcome_of(prism::get(&x.get().remote())));

    let busy = Kit::remote(1);
    let spinning = busy.spin().remote();
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    prism::kill(&busy)?;
    let (kind, message) = outcome_of(prism::get(&spinning));
    out.insert(
        "kill_running",
        (
            kind,
            format!("{message} after {} ms", start.elapsed().as_millis()),
        ),
    );

    let s = Saver::options().max_restarts(1).remote(100)?;
    prism::get(&s.add(5).remote())?;
    out.insert("saver_panic", outcome_of(prism::get(&s.boom().remote())));
    out.insert(
        "saver_after_restart",
        outcome_of(prism::get(&s.add(0).remote())),
    );

    let a = Kit::remote(0);
    let b = Kit::remote(0);
    out.insert(
        "actor_calls_actor",
        outcome_of(prism::get(&a.call_other(b, 3).remote())),
    );
    out.insert("callee_state", outcome_of(prism::get(&b.get().remote())));

    let unknown: KitHandle = prism::ActorId([9; 16]).into();
    out.insert(
        "forged_handle",
        outcome_of(prism::get(&unknown.get().remote())),
    );
    Ok(out)
}

/// Named actors across jobs and namespaces; `stage` is create, find or cleanup.
#[prism::main]
fn actor_names(
    stage: String,
) -> prism::Result<std::collections::BTreeMap<&'static str, (String, String)>> {
    let mut out = std::collections::BTreeMap::new();
    match stage.as_str() {
        "create" => {
            let d = Kit::options().name("kit-detached").detached().remote(0)?;
            let o = Kit::options().name("kit-owned").remote(0)?;
            out.insert("detached", outcome_of(prism::get(&d.add(1).remote())));
            out.insert("owned", outcome_of(prism::get(&o.add(1).remote())));
            out.insert(
                "same_job_lookup",
                outcome_of(prism::get_actor::<Kit>("kit-owned").map(|h| h == o)),
            );
            out.insert(
                "wrong_class",
                outcome_of(prism::get_actor::<Saver>("kit-owned").map(|_| ())),
            );
        }
        "find" => {
            out.insert(
                "detached_value",
                outcome_of(
                    prism::get_actor::<Kit>("kit-detached")
                        .and_then(|h| prism::get(&h.get().remote())),
                ),
            );
            out.insert(
                "owned",
                outcome_of(prism::get_actor::<Kit>("kit-owned").map(|_| ())),
            );
            out.insert(
                "other_namespace",
                outcome_of(prism::get_actor_in::<Kit>("elsewhere", "kit-detached").map(|_| ())),
            );
            out.insert(
                "name_taken",
                outcome_of(Kit::options().name("kit-detached").remote(0).map(|_| ())),
            );
            out.insert(
                "get_or_create_existing",
                outcome_of(
                    Kit::get_or_create("kit-detached", 99)
                        .and_then(|h| prism::get(&h.get().remote())),
                ),
            );
        }
        "cleanup" => {
            let d = prism::get_actor::<Kit>("kit-detached")?;
            prism::kill(&d)?;
            out.insert(
                "gone",
                outcome_of(prism::get_actor::<Kit>("kit-detached").map(|_| ())),
            );
        }
        other => {
            return Err(prism::Error::InvalidArgument(format!(
                "unknown stage {other}"
            )));
        }
    }
    Ok(out)
}

/// The actor pool: ordered, unordered and map.
#[prism::main]
fn pool_cases() -> prism::Result<(Vec<i64>, Vec<i64>, Vec<i64>)> {
    let actors: Vec<KitHandle> = (0..3).map(|_| Kit::remote(0)).collect();
    let mut pool: prism::ActorPool<KitHandle, i64> = prism::ActorPool::new(actors);
    // Later submissions finish first; get_next still returns submission order.
    for (x, ms) in [(1, 300), (2, 200), (3, 100), (4, 0), (5, 0)] {
        pool.submit(move |k| k.echo_after(x, ms).remote());
    }
    let mut ordered = Vec::new();
    while let Some(r) = pool.get_next() {
        ordered.push(r?);
    }
    for (x, ms) in [(1, 400), (2, 0), (3, 200)] {
        pool.submit(move |k| k.echo_after(x, ms).remote());
    }
    let mut unordered = Vec::new();
    while let Some(r) = pool.get_next_unordered() {
        unordered.push(r?);
    }
    let squares = pool.map(1..=6i64, |k, x| k.echo_after(x * x, 0).remote())?;
    Ok((ordered, unordered, squares))
}

/// Named objects; `stage` is put, get or delete.
#[prism::main]
fn named_cases(
    stage: String,
) -> prism::Result<std::collections::BTreeMap<&'static str, (String, String)>> {
    let mut out = std::collections::BTreeMap::new();
    match stage.as_str() {
        "put" => {
            prism::put_named("mem/a", &1u64)?;
            prism::put_named_in("disk/b", &2u64, prism::Tier::Durable)?;
            prism::put_named("mem/c", &"three")?;
            out.insert("list", outcome_of(prism::list_named("")));
            out.insert("list_prefix", outcome_of(prism::list_named("mem/")));
        }
        "get" => {
            out.insert("mem_a", outcome_of(prism::get_named::<u64>("mem/a")));
            out.insert("disk_b", outcome_of(prism::get_named::<u64>("disk/b")));
            out.insert(
                "missing",
                outcome_of(
                    prism::get_named::<u64>("nope")
                        .map_err(|e| prism::Error::InvalidArgument(e.to_string())),
                ),
            );
            out.insert("list", outcome_of(prism::list_named("")));
        }
        "delete" => {
            out.insert("first", outcome_of(prism::delete_named("disk/b")));
            out.insert("second", outcome_of(prism::delete_named("disk/b")));
            out.insert("list", outcome_of(prism::list_named("")));
        }
        other => {
            return Err(prism::Error::InvalidArgument(format!(
                "unknown stage {other}"
            )));
        }
    }
    Ok(out)
}

/// The binary fast path: put_bytes / get_blob, against the generic path.
#[prism::main]
fn blob_cases(kb: u64) -> prism::Result<std::collections::BTreeMap<&'static str, bool>> {
    let data: Vec<u8> = (0..kb * 1024).map(|i| (i % 251) as u8).collect();
    let r = prism::put_bytes(&data)?;
    let fast = prism::get_blob(&r)?;
    let generic: prism::Blob = prism::get(&r)?;
    let via_put = prism::put(&prism::Blob(data.clone()))?;
    let from_put = prism::get_blob(&via_put)?;
    // Not a bin value: get_blob decodes it the generic way.
    let array = prism::put(&vec![1u8, 2, 3])?;
    let from_array = prism::get_blob(&prism::ObjectRef::from_id(array.id()))?;
    let empty = prism::get_blob(&prism::put_bytes(&[])?)?;
    let failed = prism::get_blob(&prism::ObjectRef::from_id(refuse::remote().id()));
    let mut out = std::collections::BTreeMap::new();
    out.insert("fast_path_intact", fast.0 == data);
    out.insert("generic_get_agrees", generic.0 == data);
    out.insert("put_then_get_blob", from_put.0 == data);
    out.insert("non_bin_falls_back", from_array.0 == vec![1, 2, 3]);
    out.insert("empty", empty.0.is_empty());
    out.insert(
        "errors_are_typed",
        failed.err().and_then(|e| e.kind()) == Some(ErrorKind::Application),
    );
    Ok(out)
}
