//! Drivers for the task-event tests (`tests/e2e/events.rs`).

use crate::Kit;

/// Squares `i` after printing a line; panics for a multiple of
/// `fail_every` (other than 0).
#[prism::task]
fn traced_square(i: u64, fail_every: u64) -> u64 {
    println!("squaring {i}");
    if fail_every > 0 && i > 0 && i.is_multiple_of(fail_every) {
        panic!("refusing to square {i}");
    }
    i * i
}

/// The sum of two values (taken by reference: a dependency of each).
#[prism::task]
fn traced_pair(a: u64, b: u64) -> u64 {
    a + b
}

/// Spreads `n` squares over the nodes, adds the first two in a task that
/// depends on them, calls a `Kit` actor twice and returns (how many
/// squares failed, the pair's sum, the actor's last value).
#[prism::main]
fn traced_job(n: u64, fail_every: u64) -> prism::Result<(u64, u64, i64)> {
    let squares: Vec<_> = (0..n)
        .map(|i| traced_square::options().spread().remote(i, fail_every))
        .collect();
    let pair = traced_pair::remote(squares[0], squares[1]);
    let kit = Kit::remote(1);
    kit.add(2).remote();
    let last = prism::get(&kit.add(3).remote())?;
    let mut failed = 0;
    for square in &squares {
        if prism::get(square).is_err() {
            failed += 1;
        }
    }
    Ok((failed, prism::get(&pair)?, last))
}

/// Markup a page must show as text, never run.
const MARKUP: &str =
    "<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script>";

/// Prints markup, then panics with more.
#[prism::task]
fn markup_task() -> u64 {
    println!("{MARKUP}");
    panic!("<b onmouseover=\"document.title='pwned'\">bold</b>");
}

/// Prints markup and fails with the task that panics with more.
#[prism::main]
fn traced_markup() -> prism::Result<u64> {
    println!("{MARKUP}");
    prism::get(&markup_task::remote())
}

/// Prints `n` lines, `ms` milliseconds apart.
#[prism::task]
fn slow_lines(n: u32, ms: u64) -> u32 {
    for i in 0..n {
        println!("slow line {i}");
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    n
}

/// Runs [`slow_lines`] on node `node` and returns its count.
#[prism::main]
fn slow_lines_on(node: String, n: u32, ms: u64) -> prism::Result<u32> {
    prism::get(&slow_lines::options().node(&node, false).remote(n, ms))
}

/// An actor that prints slowly.
#[prism::actor]
pub struct Talker {
    said: u32,
}

#[prism::actor]
impl Talker {
    fn new() -> Self {
        Talker { said: 0 }
    }

    /// Prints `n` lines, `ms` milliseconds apart; how many it printed in
    /// all.
    fn talk(&mut self, n: u32, ms: u64) -> u32 {
        for i in 0..n {
            println!("talker line {i}");
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        self.said += n;
        self.said
    }
}

/// Makes a [`Talker`] on node `node` and has it print `n` lines.
#[prism::main]
fn talk_on(node: String, n: u32, ms: u64) -> prism::Result<u32> {
    let talker = Talker::options().node(&node, false).remote()?;
    prism::get(&talker.talk(n, ms).remote())
}

/// Makes a [`Talker`] on node `node`, calls it once (one line), and
/// returns the call's result id in hex, as task records name it.
#[prism::main]
fn talk_id_on(node: String) -> prism::Result<String> {
    let talker = Talker::options().node(&node, false).remote()?;
    let said = talker.talk(1, 0).remote();
    prism::get(&said)?;
    Ok(said.id().0.iter().map(|b| format!("{b:02x}")).collect())
}
