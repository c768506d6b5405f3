//! Sums a range by recursive nested tasks: each task splits its range in two
//! and submits both halves, until a range is at most `leaf` long. Parents
//! block in `get`, which gives their CPU back, so this cannot deadlock even on
//! a one-CPU node.

/// Sum of `lo..hi`, computed by a tree of tasks with leaves of at most `leaf`.
#[prism::task]
fn sum_range(lo: u64, hi: u64, leaf: u64) -> prism::Result<u64> {
    if hi - lo <= leaf.max(1) {
        return Ok((lo..hi).sum());
    }
    let mid = lo + (hi - lo) / 2;
    let left = sum_range::remote(lo, mid, leaf);
    let right = sum_range::remote(mid, hi, leaf);
    Ok(prism::get(&left)? + prism::get(&right)?)
}

/// What the driver returns.
#[derive(serde::Serialize)]
struct Report {
    n: u64,
    leaf: u64,
    sum: u64,
    expected: u64,
    exact: bool,
}

/// Sums `0..n` (default 65,536) with leaves of `leaf` (default 1,024) and
/// checks the result against the closed form.
#[prism::main]
fn main(n: Option<u64>, leaf: Option<u64>) -> prism::Result<Report> {
    let n = n.unwrap_or(65_536);
    let leaf = leaf.unwrap_or(1_024);
    let sum = prism::get(&sum_range::remote(0, n, leaf))?;
    let expected = n.saturating_sub(1) * n / 2;
    Ok(Report {
        n,
        leaf,
        sum,
        expected,
        exact: sum == expected,
    })
}
