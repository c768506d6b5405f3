//! Drivers for the multi-node tests (`tests/e2e/cluster.rs`).

use prism::{ErrorKind, ObjectRef};

use crate::{Kit, KitHandle, kind, sleep_then};

/// Submits `n` tasks of `ms` milliseconds each, spread over the nodes, and
/// sums their values (0 + 1 + … + n-1).
#[prism::main]
fn spread_sum(n: u64, ms: u64) -> prism::Result<u64> {
    let refs: Vec<_> = (0..n)
        .map(|i| sleep_then::options().spread().remote(ms, i))
        .collect();
    Ok(prism::get_all(&refs)?.into_iter().sum())
}

/// Submits `n` tasks of `ms` milliseconds each with the default strategy
/// (local first, then the least-loaded node) and sums their values.
#[prism::main]
fn default_sum(n: u64, ms: u64) -> prism::Result<u64> {
    let refs: Vec<_> = (0..n).map(|i| sleep_then::remote(ms, i)).collect();
    Ok(prism::get_all(&refs)?.into_iter().sum())
}

/// Puts `kb` KiB of patterned bytes into the store of the node it runs on
/// and returns the reference.
#[prism::task]
fn make_blob(kb: u64) -> prism::Result<ObjectRef<Vec<u8>>> {
    let blob: Vec<u8> = (0..kb * 1024).map(|i| (i % 251) as u8).collect();
    prism::put(&blob)
}

/// The sum of a blob's bytes.
#[prism::task]
fn blob_sum(blob: Vec<u8>) -> u64 {
    blob.iter().map(|b| *b as u64).sum()
}

/// Makes a blob on node `producer`, sums it on node `consumer` (which pulls
/// it from the producer), and sums it again here (pulled to the driver).
/// Returns (sum on the consumer, sum here, expected sum).
#[prism::main]
fn cross_node(producer: String, consumer: String, kb: u64) -> prism::Result<(u64, u64, u64)> {
    let made = make_blob::options().node(&producer, false).remote(kb);
    let blob: ObjectRef<Vec<u8>> = prism::get(&made)?;
    let there = prism::get(&blob_sum::options().node(&consumer, false).remote(blob))?;
    let here: u64 = prism::get(&blob)?.iter().map(|b| *b as u64).sum();
    let expected: u64 = (0..kb * 1024).map(|i| i % 251).sum();
    Ok((there, here, expected))
}

/// Makes a blob on node `producer`, reads it here (pulling a copy), frees
/// it, then has a task on `producer` read it. Returns (the read here, how
/// many were freed here, the task's read there).
#[prism::main]
fn free_across(producer: String) -> prism::Result<(String, usize, String)> {
    let made = make_blob::options().node(&producer, false).remote(64);
    let blob: ObjectRef<Vec<u8>> = prism::get(&made)?;
    let here = crate::kind(&prism::get(&blob));
    let freed = prism::free(&[blob])?;
    let there = crate::kind(&prism::get(
        &blob_sum::options()
            .node(&producer, false)
            .max_retries(0)
            .remote(blob),
    ));
    Ok((here, freed, there))
}

/// A task pinned to a node that does not exist: hard (fails) and soft
/// (runs elsewhere). Returns (hard outcome kind, soft value).
#[prism::main]
fn affinity_cases() -> prism::Result<(String, u64)> {
    let hard = match prism::get(
        &sleep_then::options()
            .node("node-nowhere", false)
            .remote(0, 1),
    ) {
        Ok(v) => format!("ok {v}"),
        Err(e) => e
            .kind()
            .map(|k: ErrorKind| k.to_string())
            .unwrap_or_else(|| e.to_string()),
    };
    let soft = prism::get(
        &sleep_then::options()
            .node("node-nowhere", true)
            .remote(0, 7),
    )?;
    Ok((hard, soft))
}

/// Makes a blob on node `node`, waits `wait_ms` (the test kills that node
/// meanwhile), then reads the blob. Returns how reading it failed, or "ok".
#[prism::main]
fn lost_object(node: String, wait_ms: u64) -> prism::Result<String> {
    let blob: ObjectRef<Vec<u8>> = prism::get(&make_blob::options().node(&node, false).remote(64))?;
    std::thread::sleep(std::time::Duration::from_millis(wait_ms));
    Ok(match prism::get(&blob) {
        Ok(_) => "ok".to_string(),
        Err(e) => e
            .kind()
            .map(|k: ErrorKind| k.to_string())
            .unwrap_or_else(|| e.to_string()),
    })
}

/// Adds `n` to the actor `kit`, from whichever node runs this task.
#[prism::task]
fn kit_add(kit: KitHandle, n: i64) -> prism::Result<i64> {
    prism::get(&kit.add(n).remote())
}

/// Hosts a `Kit` on node `host`; calls it 20 times pipelined from here,
/// then from a task on node `caller`, then kills it. Returns (the 20
/// values in call order, the task's value, the value after, the kind of a
/// call after the kill).
#[prism::main]
fn cross_node_actor(host: String, caller: String) -> prism::Result<(Vec<i64>, i64, i64, String)> {
    let kit = Kit::options().node(&host, false).remote(100)?;
    let refs: Vec<_> = (0..20).map(|_| kit.add(1).remote()).collect();
    let ordered = prism::get_all(&refs)?;
    let from_task = prism::get(&kit_add::options().node(&caller, false).remote(kit, 1000))?;
    let after = prism::get(&kit.get().remote())?;
    prism::kill(&kit)?;
    let killed = kind(&prism::get(&kit.get().remote()));
    Ok((ordered, from_task, after, killed))
}

/// Creates a detached `Kit` named `name` on node `node` starting at 5 and
/// adds 10. Returns the value (15), and how a second actor of that name
/// fails to be created.
#[prism::main]
fn make_detached(name: String, node: String) -> prism::Result<(i64, String)> {
    let kit = Kit::options()
        .name(&name)
        .detached()
        .node(&node, false)
        .remote(5)?;
    let value = prism::get(&kit.add(10).remote())?;
    let again = match Kit::options().name(&name).remote(1) {
        Ok(_) => "created".to_string(),
        Err(e) => e.to_string(),
    };
    Ok((value, again))
}

/// Creates a detached `Kit` named `name` on node `node`, starting at 5,
/// that may restart once (elsewhere, if its node dies); adds 10.
#[prism::main]
fn make_restartable(name: String, node: String) -> prism::Result<i64> {
    let kit = Kit::options()
        .name(&name)
        .detached()
        .max_restarts(1)
        .node(&node, false)
        .remote(5)?;
    prism::get(&kit.add(10).remote())
}

/// Finds the `Kit` named `name` (anywhere in the cluster) and adds 1.
#[prism::main]
fn use_detached(name: String) -> prism::Result<i64> {
    let kit = prism::get_actor::<Kit>(&name)?;
    prism::get(&kit.add(1).remote())
}

/// Placement groups on the test cluster (a head with 1 CPU, two workers
/// with 2): the nodes each strategy picked, tasks run inside bundles, an
/// impossible group, and a removed one. Returns a map of case → outcome.
#[prism::main]
fn placement_cases() -> prism::Result<std::collections::BTreeMap<String, Vec<String>>> {
    use prism::{Bundle, PlacementStrategy, placement_group};
    let mut out = std::collections::BTreeMap::new();
    let one = || Bundle::new().cpus(1.0);
    for (name, strategy, count) in [
        ("strict_spread", PlacementStrategy::StrictSpread, 3),
        ("strict_pack", PlacementStrategy::StrictPack, 2),
        ("spread", PlacementStrategy::Spread, 2),
    ] {
        let bundles: Vec<Bundle> = (0..count).map(|_| one()).collect();
        let pg = placement_group(&bundles, strategy)?;
        // Every bundle runs a task; their values come back in order.
        let refs: Vec<_> = (0..count as u32)
            .map(|i| {
                sleep_then::options()
                    .placement_group(&pg, i)
                    .remote(10, i as u64)
            })
            .collect();
        let values = prism::get_all(&refs)?;
        let mut nodes = pg.nodes().to_vec();
        nodes.push(format!("{values:?}"));
        out.insert(name.to_string(), nodes);
        pg.remove()?;
    }
    // Four bundles, each on its own node, on three nodes: impossible.
    let four: Vec<Bundle> = (0..4).map(|_| one()).collect();
    out.insert(
        "impossible".into(),
        vec![
            match placement_group(&four, PlacementStrategy::StrictSpread) {
                Ok(_) => "created".into(),
                Err(e) => e
                    .kind()
                    .map(|k| k.to_string())
                    .unwrap_or_else(|| e.to_string()),
            },
        ],
    );
    // A task asking for more than its bundle holds never fits it.
    let pg = placement_group(&[one()], PlacementStrategy::Pack)?;
    out.insert(
        "too_big".into(),
        vec![kind(&prism::get(
            &sleep_then::options()
                .num_cpus(2.0)
                .placement_group(&pg, 0)
                .remote(0, 1),
        ))],
    );
    pg.remove()?;
    // A removed group's bundles take no more tasks.
    let pg = placement_group(&[one()], PlacementStrategy::Pack)?;
    pg.remove()?;
    std::thread::sleep(std::time::Duration::from_millis(500));
    out.insert(
        "removed".into(),
        vec![kind(&prism::get(
            &sleep_then::options().placement_group(&pg, 0).remote(0, 1),
        ))],
    );
    Ok(out)
}

/// Writes `n` lines to the job log, `ms` milliseconds apart (a job whose
/// log is followed while it runs).
#[prism::main]
fn slow_log(n: u32, ms: u64) -> u32 {
    for i in 0..n {
        prism::log(format!("line {i}"));
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    n
}

/// The length of a blob (the cheapest use of a pulled argument).
#[prism::task]
fn blob_len(blob: prism::Blob) -> u64 {
    blob.0.len() as u64
}

/// Times moving an `mb` MiB object between nodes: made on `producer`,
/// used on `consumer` twice (the first use pulls it, the second finds it
/// there). Returns (make ms, first use ms, second use ms, length).
#[prism::main]
fn transfer_probe(
    producer: String,
    consumer: String,
    mb: u64,
) -> prism::Result<(f64, f64, f64, u64)> {
    let ms = |t: std::time::Instant| t.elapsed().as_secs_f64() * 1000.0;
    let t = std::time::Instant::now();
    let blob: prism::ObjectRef<prism::Blob> =
        prism::get(&make_raw_blob::options().node(&producer, false).remote(mb))?;
    let make = ms(t);
    let t = std::time::Instant::now();
    let len = prism::get(&blob_len::options().node(&consumer, false).remote(blob))?;
    let first = ms(t);
    let t = std::time::Instant::now();
    prism::get(&blob_len::options().node(&consumer, false).remote(blob))?;
    let second = ms(t);
    Ok((make, first, second, len))
}

/// Puts `mb` MiB of bytes as a blob on the node it runs on.
#[prism::task]
fn make_raw_blob(mb: u64) -> prism::Result<prism::ObjectRef<prism::Blob>> {
    prism::put_bytes(&vec![7u8; (mb << 20) as usize])
}

/// Stores `value` under `name` (durable) from wherever it runs.
#[prism::task]
fn put_name(name: String, value: u64) -> prism::Result<()> {
    prism::put_named_in(&name, &value, prism::Tier::Durable)
}

/// Reads `name` from wherever it runs.
#[prism::task]
fn get_name(name: String) -> prism::Result<u64> {
    prism::get_named(&name)
}

/// Named objects are the cluster's: stored by a task on node `a`, read
/// by a task on node `b` and by the driver, listed, deleted. Returns
/// (read on b, read here, names listed, deleted, read after delete).
#[prism::main]
fn named_across(a: String, b: String) -> prism::Result<(u64, u64, Vec<String>, bool, String)> {
    prism::get(
        &put_name::options()
            .node(&a, false)
            .remote("shared/x".to_string(), 42),
    )?;
    let there = prism::get(
        &get_name::options()
            .node(&b, false)
            .remote("shared/x".to_string()),
    )?;
    let here: u64 = prism::get_named("shared/x")?;
    let names = prism::list_named("shared/")?;
    let deleted = prism::delete_named("shared/x")?;
    let after = kind(&prism::get(
        &get_name::options()
            .node(&b, false)
            .remote("shared/x".to_string()),
    ));
    Ok((there, here, names, deleted, after))
}

/// Hosts a `Kit` (one restart allowed) on node `node` and calls it; runs
/// a task there as a sign for the test, which then kills that node; waits
/// `wait_ms` and calls the actor again, from here and from a task on node
/// `survivor` (which holds the old handle). Returns the three values: the
/// last two come from the actor restarted on another node (its
/// constructor ran again, so its state started over).
#[prism::main]
fn restart_elsewhere(
    node: String,
    survivor: String,
    wait_ms: u64,
) -> prism::Result<(i64, i64, i64)> {
    let kit = Kit::options()
        .max_restarts(1)
        .node(&node, false)
        .remote(100)?;
    let before = prism::get(&kit.add(1).remote())?;
    prism::get(&sleep_then::options().node(&node, false).remote(0, 0))?;
    std::thread::sleep(std::time::Duration::from_millis(wait_ms));
    let after = prism::get(&kit.add(1).remote())?;
    let from_other = prism::get(&kit_add::options().node(&survivor, false).remote(kit, 1))?;
    Ok((before, after, from_other))
}

/// The value of the environment variable `name` where this task runs.
#[prism::task]
fn env_var(name: String) -> Option<String> {
    std::env::var(name).ok()
}

/// The environment variable `name` as the driver sees it and as a task on
/// node `node` does.
#[prism::main]
fn env_probe(name: String, node: String) -> prism::Result<(Option<String>, Option<String>)> {
    let there = prism::get(&env_var::options().node(&node, false).remote(name.clone()))?;
    Ok((std::env::var(&name).ok(), there))
}

/// Holds a placement group of two 1-CPU bundles on one node for `ms`
/// milliseconds (the test restarts the head meanwhile).
#[prism::main]
fn hold_group(ms: u64) -> prism::Result<Vec<String>> {
    use prism::{Bundle, PlacementStrategy, placement_group};
    let pg = placement_group(
        &[Bundle::new().cpus(1.0), Bundle::new().cpus(1.0)],
        PlacementStrategy::StrictPack,
    )?;
    std::thread::sleep(std::time::Duration::from_millis(ms));
    Ok(pg.nodes().to_vec())
}
