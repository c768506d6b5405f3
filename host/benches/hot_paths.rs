//! Micro-benchmarks of the host's hot functions, without a cluster:
//! `cargo bench -p prism-host --bench hot_paths`. Prints nanoseconds per
//! operation (median of several rounds). The end-to-end figures come from
//! `prism bench`.

use bytes::Bytes;
use prism_host::ids::{ObjectId, OwnerId};
use prism_host::objects::{Lookup, ObjectStore};
use prism_host::scheduler::resources::ResourceSet;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

/// Runs `op` `iterations` times per round, 7 rounds; returns the median
/// nanoseconds per operation.
fn measure(iterations: u32, mut op: impl FnMut()) -> f64 {
    let mut rounds: Vec<f64> = (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                op();
            }
            start.elapsed().as_nanos() as f64 / f64::from(iterations)
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[rounds.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = ObjectStore::new(1 << 30, dir.path().join("spill")).expect("store");
    let job = OwnerId::random();
    let value = Bytes::from(vec![7u8; 100]);

    let mut results: Vec<(&str, f64)> = Vec::new();
    results.push((
        "ObjectId::random",
        measure(100_000, || {
            black_box(ObjectId::random());
        }),
    ));
    results.push((
        "ObjectStore put + lookup (100 B)",
        measure(100_000, || {
            let id = store.put(job, value.clone()).expect("put");
            match store.lookup(id).expect("lookup") {
                Lookup::Ready(o) => {
                    black_box(o);
                }
                _ => unreachable!("just stored"),
            }
        }),
    ));
    store.free_owner(job);

    let arg = prism_abi::encode_value(&(5u64, "text")).expect("encode");
    results.push((
        "encode + decode 3 args",
        measure(100_000, || {
            let mut buf = Vec::new();
            prism_abi::encode_value_arg(&mut buf, &arg);
            prism_abi::encode_ref_arg(&mut buf, &[1; 16]);
            prism_abi::encode_value_arg(&mut buf, &arg);
            black_box(prism_abi::decode_args(&buf).expect("decode"));
        }),
    ));
    results.push((
        "build_input (3 values)",
        measure(100_000, || {
            black_box(prism_abi::build_input(
                [arg.as_slice(), arg.as_slice(), arg.as_slice()].into_iter(),
            ));
        }),
    ));

    let mut node =
        ResourceSet::new(2.0, 1 << 30, &BTreeMap::from([("gpu".to_string(), 1.0)])).expect("set");
    let request = ResourceSet::new(0.5, 1 << 20, &BTreeMap::new()).expect("set");
    results.push((
        "ResourceSet fits + take + give",
        measure(1_000_000, || {
            if node.fits(&request) {
                node.take(&request);
                node.give(&request);
            }
            black_box(&node);
        }),
    ));

    let json = serde_json::json!({"model": "m", "weights": [1.5, 2.5, 3.5], "id": 42});
    results.push((
        "JSON -> MessagePack -> JSON",
        measure(100_000, || {
            let mp = prism_host::values::json_to_msgpack(&json);
            black_box(prism_host::values::msgpack_to_json(&mp).expect("round trip"));
        }),
    ));

    // A large value copied into a buffer recycled from the last one (the
    // store's path for put of 1 MiB or more), against a fresh allocation
    // (above glibc's 32 MiB mmap threshold, so its pages are new).
    let large = vec![9u8; 64 << 20];
    results.push((
        "64 MiB value, recycled buffer",
        measure(20, || {
            black_box(prism_host::objects::buffers::concat(&[&large]));
        }),
    ));
    results.push((
        "64 MiB value, fresh allocation",
        measure(20, || {
            black_box(Bytes::from(large.clone()));
        }),
    ));

    println!("{:<36} {:>12}", "operation", "ns/op");
    for (name, ns) in results {
        println!("{name:<36} {ns:>12.1}");
    }
}
