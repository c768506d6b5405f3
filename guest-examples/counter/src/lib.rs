//! Actor basics: a counter whose state lives in its own instance's memory,
//! called in FIFO order, and whose handle is passed to a task that calls it
//! too.

use prism::ObjectRef;

/// A counter with a history of the values it reached.
#[prism::actor]
pub struct Counter {
    value: i64,
    history: Vec<i64>,
}

#[prism::actor]
impl Counter {
    fn new(start: i64) -> Self {
        Counter {
            value: start,
            history: vec![start],
        }
    }

    /// Adds `n`; returns the new value.
    fn add(&mut self, n: i64) -> i64 {
        self.value += n;
        self.history.push(self.value);
        self.value
    }

    /// The current value.
    fn get(&self) -> i64 {
        self.value
    }

    /// Every value reached, in order.
    fn history(&self) -> Vec<i64> {
        self.history.clone()
    }
}

/// A task that receives the counter's handle and calls it `times` times.
#[prism::task]
fn bump(counter: CounterHandle, times: u32) -> prism::Result<i64> {
    let refs: Vec<ObjectRef<i64>> = (0..times).map(|_| counter.add(1).remote()).collect();
    Ok(*prism::get_all(&refs)?.last().unwrap_or(&0))
}

/// What the driver returns.
#[derive(serde::Serialize)]
struct Report {
    running_sums: Vec<i64>,
    fifo: bool,
    after_task: i64,
    value: i64,
    history_len: usize,
}

/// Adds 1..=n in order (the results are running sums only if calls run one
/// at a time, in order), then lets a task add 5 more through the handle.
#[prism::main]
fn main(n: Option<i64>) -> prism::Result<Report> {
    let n = n.unwrap_or(10);
    let counter = Counter::remote(0);
    let refs: Vec<ObjectRef<i64>> = (1..=n).map(|i| counter.add(i).remote()).collect();
    let running_sums = prism::get_all(&refs)?;
    let expected: Vec<i64> = (1..=n)
        .scan(0, |acc, i| {
            *acc += i;
            Some(*acc)
        })
        .collect();
    let after_task = prism::get(&bump::remote(counter, 5))?;
    let value = prism::get(&counter.get().remote())?;
    let history_len = prism::get(&counter.history().remote())?.len();
    Ok(Report {
        fifo: running_sums == expected,
        running_sums,
        after_task,
        value,
        history_len,
    })
}
