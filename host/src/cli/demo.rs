//! `prism demo`: runs the bundled examples on one embedded cluster and
//! prints each result, its time, and whether it checked out.

use crate::cluster::EmbeddedCluster;
use crate::config::NodeConfig;
use crate::values::{json_args, msgpack_to_json};
use serde_json::Value;

/// One example: module, driver arguments, and how to check the result.
struct Example {
    name: &'static str,
    module: &'static [u8],
    args: &'static str,
    check: fn(&Value) -> Result<String, String>,
}

fn examples() -> Vec<Example> {
    vec![
        Example {
            name: "hello",
            module: prism_guests::HELLO,
            args: r#"["Prism"]"#,
            check: |v| match v.as_str() {
                Some(s) if s.contains("Hello, Prism") => Ok(s.to_string()),
                _ => Err(format!("unexpected greeting {v}")),
            },
        },
        Example {
            name: "pi",
            module: prism_guests::PI,
            args: "[100, 100000]",
            check: |v| {
                let pi = v["pi"].as_f64().ok_or("no estimate")?;
                let err = (pi - std::f64::consts::PI).abs();
                let summary = format!(
                    "π ≈ {pi:.5} from {} samples in {} tasks",
                    v["samples"], v["tasks"]
                );
                if err < 0.01 {
                    Ok(summary)
                } else {
                    Err(format!("{summary}: off by {err}"))
                }
            },
        },
        Example {
            name: "wordcount",
            module: prism_guests::WORDCOUNT,
            args: "[4]",
            check: |v| {
                let summary = format!(
                    "{} words, {} distinct, {} map tasks; top {}",
                    v["total_words"], v["distinct_words"], v["chunks"], v["top"]
                );
                if v["matches_direct_count"] == Value::Bool(true) {
                    Ok(summary)
                } else {
                    Err(summary)
                }
            },
        },
        Example {
            name: "tree-reduce",
            module: prism_guests::TREE_REDUCE,
            args: "[65536, 1024]",
            check: |v| {
                let summary = format!(
                    "sum(0..{}) = {} (leaves of {})",
                    v["n"], v["sum"], v["leaf"]
                );
                if v["exact"] == Value::Bool(true) {
                    Ok(summary)
                } else {
                    Err(summary)
                }
            },
        },
        Example {
            name: "failures",
            module: prism_guests::FAILURES,
            args: "[]",
            check: check_failures,
        },
    ]
}

/// The error kind each failure case must produce (`None`: must succeed).
const EXPECTED_FAILURES: &[(&str, Option<&str>)] = &[
    ("panic", Some("panic")),
    ("error", Some("application")),
    ("trap", Some("trap")),
    ("memory_bomb", Some("memory_limit_exceeded")),
    ("infinite_loop", Some("deadline_exceeded")),
    ("flaky_retried", None),
    ("still_serving", None),
];

fn check_failures(v: &Value) -> Result<String, String> {
    let cases = v.as_array().ok_or("expected a list of outcomes")?;
    let mut seen = Vec::new();
    for (case, expected) in EXPECTED_FAILURES {
        let outcome = cases
            .iter()
            .find(|c| c["case"] == *case)
            .ok_or_else(|| format!("missing case {case}"))?;
        let kind = outcome["error_kind"].as_str();
        if kind != *expected {
            return Err(format!(
                "{case}: expected {expected:?}, got {kind:?} ({})",
                outcome["message"]
            ));
        }
        seen.push(format!("{case}→{}", kind.unwrap_or("ok")));
    }
    Ok(seen.join(", "))
}

/// Runs every example; returns 0 if all checked out, else 1.
pub(super) fn demo(config: NodeConfig) -> anyhow::Result<i32> {
    let cpus = config.cpus;
    super::tokio_runtime()?.block_on(async move {
        let started = std::time::Instant::now();
        let cluster = EmbeddedCluster::start(config)?;
        println!(
            "Prism demo: embedded cluster (1 head + 1 node, {cpus} CPUs) started in {:.1} ms\n",
            started.elapsed().as_secs_f64() * 1e3
        );
        println!("{:<12} {:>10}  {:<6} result", "example", "time", "check");
        let mut failed = 0;
        for example in examples() {
            let args = json_args(example.args)?;
            let outcome = cluster.run(example.module, "main", args).await?;
            let ms = outcome.duration.as_secs_f64() * 1e3;
            let verdict = match &outcome.result {
                Ok(bytes) => msgpack_to_json(bytes)
                    .map_err(|e| e.to_string())
                    .and_then(|v| (example.check)(&v)),
                Err(e) => Err(format!("job failed ({}): {}", e.kind, e.message)),
            };
            let (mark, text) = match verdict {
                Ok(text) => ("ok", text),
                Err(text) => {
                    failed += 1;
                    ("FAILED", text)
                }
            };
            println!("{:<12} {:>7.1} ms  {:<6} {}", example.name, ms, mark, text);
        }
        println!("\ntotal {:.2} s", started.elapsed().as_secs_f64());
        Ok(if failed == 0 { 0 } else { 1 })
    })
}
