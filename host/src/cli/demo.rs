//! `prism demo`: runs the bundled examples on one embedded cluster and
//! prints each result, its time, and whether it checked out.

use super::output::escape_terminal;
use crate::config::NodeConfig;
use crate::head::EmbeddedCluster;
use crate::values::{json_args, msgpack_to_json};
use serde_json::Value;

/// One job of an example: driver, arguments, and how to check the result.
struct Stage {
    entry: &'static str,
    args: &'static str,
    check: fn(&Value) -> Result<String, String>,
}

/// One example: a module and the jobs it runs, in order, on one cluster.
struct Example {
    name: &'static str,
    module: &'static [u8],
    stages: Vec<Stage>,
    /// Runs only on a node that offers a GPU.
    needs_gpu: bool,
}

fn is_true(v: &Value, field: &str, summary: String) -> Result<String, String> {
    if v[field] == Value::Bool(true) {
        Ok(summary)
    } else {
        Err(format!("{field} is not true: {summary}"))
    }
}

fn main_stage(args: &'static str, check: fn(&Value) -> Result<String, String>) -> Vec<Stage> {
    vec![Stage {
        entry: "main",
        args,
        check,
    }]
}

fn examples() -> Vec<Example> {
    let mut examples = cpu_examples();
    examples.extend(gpu_examples());
    examples
}

fn gpu_examples() -> Vec<Example> {
    vec![
        Example {
            name: "gpu-saxpy",
            module: prism_guests::GPU_SAXPY,
            stages: main_stage("[]", |v| {
                let summary = format!(
                    "y = 2.5·x + y over {} floats on {}; max |gpu − cpu| = {:e}",
                    v["n"],
                    v["device"].as_str().unwrap_or("?"),
                    v["max_abs_error"].as_f64().unwrap_or(f64::NAN)
                );
                is_true(v, "matches_cpu", summary)
            }),
            needs_gpu: true,
        },
        Example {
            name: "gpu-matmul",
            module: prism_guests::GPU_MATMUL,
            stages: main_stage("[256]", |v| {
                let summary = format!(
                    "{n}×{n} product on half a GPU, tiled kernel; max |gpu − cpu| = {:e}",
                    v["max_abs_error"].as_f64().unwrap_or(f64::NAN),
                    n = v["n"]
                );
                is_true(v, "matches_cpu", summary)
            }),
            needs_gpu: true,
        },
        Example {
            name: "gpu-inference",
            module: prism_guests::GPU_INFERENCE,
            stages: main_stage("[100]", |v| {
                let summary = format!(
                    "an actor on ¼ GPU uploaded its MLP weights {} time(s) and served {} predictions; max |gpu − cpu| = {:e}",
                    v["weight_uploads"],
                    v["served"],
                    v["max_abs_error"].as_f64().unwrap_or(f64::NAN)
                );
                if v["weight_uploads"] != 1 || v["served"] != 100 {
                    return Err(summary);
                }
                is_true(v, "matches_cpu", summary)
            }),
            needs_gpu: true,
        },
    ]
}

fn cpu_examples() -> Vec<Example> {
    vec![
        Example {
            name: "hello",
            module: prism_guests::HELLO,
            stages: main_stage(r#"["Prism"]"#, |v| match v.as_str() {
                Some(s) if s.contains("Hello, Prism") => Ok(s.to_string()),
                _ => Err(format!("unexpected greeting {v}")),
            }),
            needs_gpu: false,
        },
        Example {
            name: "pi",
            module: prism_guests::PI,
            stages: main_stage("[100, 100000]", |v| {
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
            }),
            needs_gpu: false,
        },
        Example {
            name: "wordcount",
            module: prism_guests::WORDCOUNT,
            stages: main_stage("[4]", |v| {
                let summary = format!(
                    "{} words, {} distinct, {} map tasks; top {}",
                    v["total_words"], v["distinct_words"], v["chunks"], v["top"]
                );
                is_true(v, "matches_direct_count", summary)
            }),
            needs_gpu: false,
        },
        Example {
            name: "tree-reduce",
            module: prism_guests::TREE_REDUCE,
            stages: main_stage("[65536, 1024]", |v| {
                let summary = format!(
                    "sum(0..{}) = {} (leaves of {})",
                    v["n"], v["sum"], v["leaf"]
                );
                is_true(v, "exact", summary)
            }),
            needs_gpu: false,
        },
        Example {
            name: "failures",
            module: prism_guests::FAILURES,
            stages: main_stage("[]", check_failures),
            needs_gpu: false,
        },
        Example {
            name: "counter",
            module: prism_guests::COUNTER,
            stages: main_stage("[10]", |v| {
                let summary = format!(
                    "running sums {} in FIFO order; a task holding the handle added 5 → {}",
                    v["running_sums"], v["value"]
                );
                if v["value"] != 60 {
                    return Err(summary);
                }
                is_true(v, "fifo", summary)
            }),
            needs_gpu: false,
        },
        Example {
            name: "account",
            module: prism_guests::ACCOUNT,
            stages: main_stage(r#"["alice"]"#, |v| {
                let summary = format!(
                    "balance {}, refused {} and {}; killed ({}), re-created with balance {}",
                    v["balance_before_kill"][0],
                    v["negative_error"],
                    v["overdraft_error"],
                    v["call_after_kill"],
                    v["balance_after_recreate"][0]
                );
                if v["negative_error"].is_null() || v["overdraft_error"].is_null() {
                    return Err(summary);
                }
                is_true(v, "restored", summary)
            }),
            needs_gpu: false,
        },
        Example {
            name: "tinystore",
            module: prism_guests::TINYSTORE,
            stages: vec![
                Stage {
                    entry: "setup",
                    args: "[]",
                    check: |v| Ok(format!("detached store created with features {v}")),
                },
                Stage {
                    entry: "query",
                    args: "[]",
                    check: |v| {
                        let summary = format!(
                            "a later job found it: mean latency {}, max {}, max errors {}",
                            v["latency_mean"], v["latency_max"], v["errors_max"]
                        );
                        if v["latency_mean"] == 50.5
                            && v["latency_max"] == 100.0
                            && v["errors_max"] == 5.0
                        {
                            Ok(summary)
                        } else {
                            Err(summary)
                        }
                    },
                },
                Stage {
                    entry: "teardown",
                    args: "[]",
                    check: |v| {
                        if *v == Value::Bool(true) {
                            Ok("killed".into())
                        } else {
                            Err(v.to_string())
                        }
                    },
                },
            ],
            needs_gpu: false,
        },
        Example {
            name: "many-models",
            module: prism_guests::MANY_MODELS,
            stages: vec![
                Stage {
                    entry: "train_all",
                    args: "[200]",
                    check: |v| {
                        let summary = format!(
                            "{} models trained in parallel, {} stored by name (worst coefficient error {:.4})",
                            v["models"],
                            v["stored"],
                            v["worst_coefficient_error"].as_f64().unwrap_or(f64::NAN)
                        );
                        if v["stored"] == v["models"] {
                            Ok(summary)
                        } else {
                            Err(summary)
                        }
                    },
                },
                Stage {
                    entry: "predict_all",
                    args: "[200]",
                    check: |v| {
                        let summary = format!(
                            "a later job loaded {} models by name; predictions match direct computation (max diff {})",
                            v["models"], v["max_abs_difference"]
                        );
                        is_true(v, "matches_direct", summary)
                    },
                },
                Stage {
                    entry: "cleanup",
                    args: "[]",
                    check: |v| Ok(format!("deleted {v} named models")),
                },
            ],
            needs_gpu: false,
        },
        Example {
            name: "converter",
            module: prism_guests::CONVERTER,
            stages: main_stage("[]", check_converter),
            needs_gpu: false,
        },
    ]
}

/// What each request of the converter's driver must answer: (status, a
/// piece of the body).
const EXPECTED_CONVERSIONS: &[(u64, &str)] = &[
    (200, r#"{"Fahrenheit temperature":212.0}"#),
    (200, r#"{"Celsius temperature":37.77777777777778}"#),
    (200, r#"{"Unknown conversion code":"CC"}"#),
    (400, "query parameter `temp`"),
    (200, r#"{"Fahrenheit temperature":212.0}"#),
    (200, r#"{"Celsius temperature":100.0}"#),
    (404, "not found"),
    (405, "not allowed"),
];

fn check_converter(v: &Value) -> Result<String, String> {
    let answers = v.as_array().ok_or("expected a list of answers")?;
    if answers.len() != EXPECTED_CONVERSIONS.len() {
        return Err(format!(
            "{} answers, expected {}",
            answers.len(),
            EXPECTED_CONVERSIONS.len()
        ));
    }
    for (i, (answer, (status, body))) in answers.iter().zip(EXPECTED_CONVERSIONS).enumerate() {
        let got = (answer[0].as_u64(), answer[1].as_str().unwrap_or(""));
        if got.0 != Some(*status) || !got.1.contains(body) {
            return Err(format!("request {i} answered {} {:?}", answer[0], got.1));
        }
    }
    Ok(format!(
        "{} HTTP requests answered by handler tasks: 100 °C = 212 °F, 400 on a bad query, 404/405 from the router",
        answers.len()
    ))
}

/// The error kind each failure case must produce (`None`: must succeed).
const EXPECTED_FAILURES: &[(&str, Option<&str>)] = &[
    ("panic", Some("panic")),
    ("error", Some("application")),
    ("chained", Some("panic")),
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
        let gpus = cluster.node().gpu_adapters();
        let gpu_text = match gpus.first() {
            Some(g) => format!(
                ", {} GPU: {} ({})",
                gpus.len(),
                escape_terminal(&g.name),
                escape_terminal(&g.backend)
            ),
            None => ", no GPU".to_string(),
        };
        outln!(
            "Prism demo: embedded cluster (1 head + 1 node, {cpus} CPUs{gpu_text}) started in {:.1} ms\n",
            started.elapsed().as_secs_f64() * 1e3
        )?;
        outln!("{:<24} {:>10}  {:<6} result", "example", "time", "check")?;
        let mut failed: u32 = 0;
        for example in examples() {
            if example.needs_gpu && gpus.is_empty() {
                outln!(
                    "{:<24} {:>10}  {:<6} the node has no GPU (scripts/install-deps.sh installs Mesa's software Vulkan)",
                    example.name, "-", "skip"
                )?;
                continue;
            }
            for stage in &example.stages {
                let args = json_args(stage.args)?;
                let outcome = cluster.run(example.module, stage.entry, args).await?;
                let ms = outcome.duration.as_secs_f64() * 1e3;
                let verdict = match &outcome.result {
                    Ok(bytes) => msgpack_to_json(bytes)
                        .map_err(|e| e.to_string())
                        .and_then(|v| (stage.check)(&v)),
                    Err(e) => Err(format!("job failed ({}): {}", e.kind, e.message)),
                };
                let (mark, text) = match verdict {
                    Ok(text) => ("ok", text),
                    Err(text) => {
                        failed += 1;
                        ("FAILED", text)
                    }
                };
                let label = if example.stages.len() == 1 {
                    example.name.to_string()
                } else {
                    format!("{}/{}", example.name, stage.entry)
                };
                // The text quotes the guest's values and errors.
                let text = escape_terminal(&text);
                outln!("{label:<24} {ms:>7.1} ms  {mark:<6} {text}")?;
            }
        }
        // What the node's `/metrics` shows after the examples.
        failed += super::demo_serve::report("metrics", async {
            check_metrics(&cluster)
        })
        .await?;
        // What the node recorded of two jobs' tasks, and a timeline.
        failed += super::demo_serve::report(
            "task events",
            super::demo_events::task_events(&cluster),
        )
        .await?;
        // Durable workflows, their log in memory.
        failed += super::demo_serve::report(
            "workflows",
            super::demo_workflows::workflows(&cluster),
        )
        .await?;
        // The served applications, over HTTPS.
        failed += super::demo_serve::report(
            "serve/converter",
            super::demo_serve::serve_converter(&cluster),
        )
        .await?;
        if gpus.is_empty() {
            outln!("{:<24} {:>10}  {:<6} the node has no GPU", "serve/gpu-inference", "-", "skip")?;
        } else {
            failed += super::demo_serve::report(
                "serve/gpu-inference",
                super::demo_serve::serve_model(&cluster),
            )
            .await?;
        }
        outln!("\ntotal {:.2} s", started.elapsed().as_secs_f64())?;
        Ok(if failed == 0 { 0 } else { 1 })
    })
}

/// Checks what the embedded node would serve on `/metrics` to a cluster
/// admin after the examples ran: the built-in task and actor call
/// series, and the account actor's own metrics.
fn check_metrics(cluster: &EmbeddedCluster) -> Result<String, String> {
    let node = cluster.node();
    let text = node
        .metrics()
        .render(&crate::metrics::Scope::All, node.metric_gauges());
    let value = |prefix: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    let tasks =
        value("prism_tasks_total{tenant=\"default\",function=\"count_inside\",outcome=\"ok\"}");
    let overdrafts = value("prism_guest_failed_withdrawals_total{job_id=")
        .filter(|_| text.contains("reason=\"overdraft\""));
    let balance = value("prism_guest_account_balance{");
    let summary = format!(
        "{} series lines; pi's count_inside tasks ok: {}; failed_withdrawals: {}; account_balance: {}",
        text.lines().filter(|l| !l.starts_with('#')).count(),
        tasks.map_or("missing".into(), |v| v.to_string()),
        overdrafts.map_or("missing".into(), |v| v.to_string()),
        balance.map_or("missing".into(), |v| v.to_string()),
    );
    match (tasks, overdrafts, balance) {
        (Some(t), Some(_), Some(b)) if t >= 100.0 && b == 1300.0 => Ok(summary),
        _ => Err(summary),
    }
}
