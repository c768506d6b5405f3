//! Density: what idle actors cost. A ratio, not a wall time, so it cannot
//! flake on a slow machine.

use crate::support::{config, run_ok};
use prism_host::head::EmbeddedCluster;

/// Resident set size of this process in KiB.
fn resident_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_actors_fit_in_half_a_megabyte_each() {
    const ACTORS: u64 = 10_000;
    const BUDGET_KB: u64 = 512;
    let mut cfg = config(2.0);
    cfg.runtime.instance_slots = ACTORS as u32 + 200;
    // One tenant alone on the node may fill it.
    cfg.runtime.tenant_instance_share = 1.0;
    let c = EmbeddedCluster::start(cfg).unwrap();
    // Warm up: compile the module and start the runtime's threads.
    run_ok(&c, prism_guests::BENCH, "ready", "[]").await;
    let before = resident_kb();
    let created = run_ok(
        &c,
        prism_guests::BENCH,
        "create_actors",
        &format!("[{ACTORS}]"),
    )
    .await;
    let after = resident_kb();
    assert_eq!(created["ops"], ACTORS);
    assert_eq!(c.node().actors().live() as u64, ACTORS);
    let per_actor = after.saturating_sub(before) / ACTORS;
    assert!(
        per_actor <= BUDGET_KB,
        "{per_actor} KiB per idle actor ({before} KiB before, {after} KiB after)"
    );
    assert_eq!(
        run_ok(&c, prism_guests::BENCH, "kill_actors", "[]").await,
        ACTORS
    );
}
