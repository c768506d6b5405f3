//! The serving figures of `prism bench --serve-nodes`: the bench's
//! application on a real cluster of two processes — a head and a worker,
//! each with its HTTPS ingress, on this machine — loaded through the
//! worker's ingress (which routes straight to replicas on either node,
//! with the head's token checks) and through the head's, with a tenant's
//! token on every request.

use super::bench_serve::{Endpoint, bench_app, load};
use crate::security::ClusterFiles;
use serde_json::{Map, Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `prism` process of the bench, killed when dropped.
struct Process {
    child: Child,
    /// Its first line.
    line: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// Starts `prism ARGS` and waits for its first line, which must
    /// start with `prefix`.
    fn start(args: &[&str], prefix: &str) -> anyhow::Result<Process> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let process = Process { child, line };
        anyhow::ensure!(
            process.line.starts_with(prefix),
            "prism {}: {:?}",
            args.join(" "),
            process.line
        );
        Ok(process)
    }

    /// The `https://…` address after `marker` in its first line.
    fn address_after(&self, marker: &str) -> anyhow::Result<String> {
        let rest = self
            .line
            .split(marker)
            .nth(1)
            .ok_or_else(|| anyhow::anyhow!("no {marker:?} in {:?}", self.line))?;
        Ok(rest
            .split([',', ' ', '\n'])
            .next()
            .unwrap_or(rest)
            .to_string())
    }
}

/// Runs the two-process serving figures into `figures`.
pub(super) async fn figures(quick: bool, figures: &mut Map<String, Value>) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state");
    let path = |p: &std::path::Path| p.to_str().map(str::to_string);
    let state_arg = path(&state).ok_or_else(|| anyhow::anyhow!("temp dir is not UTF-8"))?;
    let init = Command::new(std::env::current_exe()?)
        .args(["init", "--dir", &state_arg])
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(init.success(), "prism init failed");
    let files = ClusterFiles::new(&state);
    let token = std::fs::read_to_string(files.admin_token())?
        .trim()
        .to_string();
    let ca = std::fs::read(files.ca_cert())?;
    let node = ["--cpus", "2", "--no-gpus", "--http-listen", "127.0.0.1:0"];
    let mut head_args = vec![
        "start",
        "--head",
        "--dir",
        &state_arg,
        "--listen",
        "127.0.0.1:0",
    ];
    head_args.extend(node);
    let head = Process::start(&head_args, "prism head listening on ")?;
    let api = format!("https://{}", head.address_after("https://")?);
    let mut client = prism_client::Client::connect(&prism_client::ClientConfig {
        address: api.clone(),
        token: token.clone(),
        ca_pem: ca.clone(),
    })
    .await?;
    let join = client.create_join_token(60).await?.token;
    let worker_dir = path(&dir.path().join("worker")).unwrap_or_default();
    let ca_path = path(&files.ca_cert()).unwrap_or_default();
    let mut worker_args = vec![
        "start",
        "--join",
        &api,
        "--dir",
        &worker_dir,
        "--ca",
        &ca_path,
        "--join-token",
        &join,
    ];
    worker_args.extend(node);
    let worker = Process::start(&worker_args, "prism worker ")?;
    let node_id = worker
        .line
        .split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_string();
    let started = Instant::now();
    while !client
        .status()
        .await?
        .nodes
        .iter()
        .any(|n| n.node_id == node_id && n.state == "alive")
    {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the worker did not join"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let module = client
        .upload_module(prism_guests::BENCH.to_vec())
        .await?
        .hash;
    client.deploy_app(&bench_app().to_string(), &module).await?;
    let at_worker = Endpoint {
        address: worker.address_after("serving HTTP on https://")?,
        name: crate::security::node_server_name(&node_id),
        ca: ca.clone(),
        token: Some(token.clone()),
    };
    let head_http = head.address_after("serving HTTP on https://")?;
    let at_head = Endpoint {
        name: head_http
            .rsplit_once(':')
            .map_or(head_http.as_str(), |(host, _)| host)
            .to_string(),
        address: head_http.clone(),
        ca: ca.clone(),
        token: Some(token.clone()),
    };
    // The worker routes once its copy of the applications has the app.
    let mut probe = at_worker.connect().await?;
    let started = Instant::now();
    while probe.get("/fn", Some(&token)).await?.status != 200 {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(10),
            "the worker never routed /fn"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (c1, c64) = if quick {
        (1_000, 10_000)
    } else {
        (5_000, 50_000)
    };
    for (at, endpoint) in [("worker", &at_worker), ("head", &at_head)] {
        for (name, path) in [("fn", "/fn"), ("class", "/class")] {
            let one = load(endpoint, path, 1, c1).await?;
            figures.insert(
                format!("nodes_{at}_{name}_c1_per_s"),
                json!(one.per_s.round()),
            );
            figures.insert(format!("nodes_{at}_{name}_c1_p50_us"), json!(one.p50_us));
            let many = load(endpoint, path, 64, c64).await?;
            figures.insert(
                format!("nodes_{at}_{name}_c64_per_s"),
                json!(many.per_s.round()),
            );
            figures.insert(
                format!("nodes_{at}_{name}_c64_p99_ms"),
                json!(super::bench::round2(many.p99_us / 1000.0)),
            );
        }
    }
    // The first request at the worker to a deployment at zero replicas.
    let rounds = if quick { 5 } else { 11 };
    for (figure, deployment) in [
        ("nodes_worker_cold_start_fn_ms", "cold-fn"),
        ("nodes_worker_cold_start_class_ms", "cold-class"),
    ] {
        let mut times = Vec::new();
        for _ in 0..rounds {
            let started = Instant::now();
            loop {
                let app = client.app("bench").await?;
                let at_zero = app
                    .deployments
                    .iter()
                    .find(|d| d.name == deployment)
                    .is_some_and(|d| d.replicas.is_empty());
                if at_zero {
                    break;
                }
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(30),
                    "{deployment} never scaled to zero"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let sent = Instant::now();
            let response = probe.get(&format!("/{deployment}"), Some(&token)).await?;
            anyhow::ensure!(response.status == 200, "{deployment}: {}", response.status);
            times.push(sent.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        figures.insert(
            figure.into(),
            json!(super::bench::round2(times[times.len() / 2])),
        );
    }
    // The worker's requests never passed through the head's deployments.
    let app = client.app("bench").await?;
    let fn_at_head = app
        .deployments
        .iter()
        .find(|d| d.name == "fn")
        .map_or(0, |d| d.answered);
    let sent_at_head = (c1 + 5) + (c64 / 64) * 64 + 64 * 5;
    anyhow::ensure!(
        fn_at_head as usize == sent_at_head,
        "the head's fn deployment answered {fn_at_head}, not the {sent_at_head} sent to the head"
    );
    drop(worker);
    drop(head);
    Ok(())
}
