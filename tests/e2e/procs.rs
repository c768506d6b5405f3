//! Real `prism` processes for the service and cluster tests: a state
//! directory from `prism init`, a head, worker nodes. Each process is
//! killed (SIGKILL) when its handle is dropped.

use prism_host::security::ClusterFiles;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A `prism` process, killed when dropped.
pub struct Process {
    pub child: Child,
    /// `https://host:port` from its first line.
    pub address: String,
    /// Its first line.
    pub line: String,
}

impl Process {
    /// `host:port` of a head's HTTPS ingress (`--http-listen`), from its
    /// first line.
    pub fn http_address(&self) -> String {
        self.line
            .split("serving HTTP on https://")
            .nth(1)
            .map(|rest| rest.split(',').next().unwrap_or(rest).trim().to_string())
            .expect("the head serves HTTP")
    }

    /// `host:port` of its `/metrics` (`--metrics-listen`), from its
    /// first line.
    pub fn metrics_address(&self) -> String {
        self.line
            .split("metrics on https://")
            .nth(1)
            .map(|rest| rest.split(',').next().unwrap_or(rest).trim().to_string())
            .expect("the process serves metrics")
    }
}

/// A head process.
pub type HeadProcess = Process;

impl Process {
    /// Kills the process now (SIGKILL) and reaps it.
    /// A worker's node id, from its first line (`prism worker <id> …`).
    pub fn worker_id(&self) -> String {
        self.line
            .strip_prefix("prism worker ")
            .and_then(|rest| rest.split_whitespace().next())
            .expect("the worker names itself")
            .to_string()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// Sends SIGTERM (what systemd and Kubernetes send to stop a service)
    /// and waits up to `limit` for the process to exit; how long it took.
    pub fn terminate(&mut self, limit: std::time::Duration) -> std::time::Duration {
        let started = std::time::Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        loop {
            if self.child.try_wait().expect("waits").is_some() {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "still running {limit:?} after SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `prism init --dir DIR`.
pub fn init(dir: &Path) -> ClusterFiles {
    let out = Command::new(env!("CARGO_BIN_EXE_prism"))
        .args(["init", "--dir"])
        .arg(dir)
        .output()
        .expect("prism init runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ClusterFiles::new(dir)
}

/// The cluster's first admin token.
pub fn admin_token(files: &ClusterFiles) -> String {
    std::fs::read_to_string(files.admin_token())
        .unwrap()
        .trim()
        .to_string()
}

/// Starts `prism ARGS` and waits for its first line, which must start
/// with `prefix` and end with `https://ADDR`, or with `https://ADDR, …`.
fn spawn(args: &[&str], prefix: &str) -> Result<Process, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_prism"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("prism runs");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    let _ = BufReader::new(stdout).read_line(&mut line);
    if !line.starts_with(prefix) {
        let _ = child.kill();
        let mut err = String::new();
        if let Some(stderr) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut err);
        }
        let _ = child.wait();
        return Err(format!("first line {line:?}, stderr: {err}"));
    }
    // Keep stderr drained so a chatty process never blocks on a full pipe.
    if let Some(stderr) = child.stderr.take() {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut BufReader::new(stderr), &mut std::io::sink());
        });
    }
    let address = line
        .split("https://")
        .nth(1)
        .map(|rest| format!("https://{}", rest.split(',').next().unwrap_or(rest).trim()))
        .unwrap_or_default();
    Ok(Process {
        child,
        address,
        line,
    })
}

/// `prism start --head --dir DIR --listen 127.0.0.1:0 --cpus 2`.
pub fn start_head(dir: &Path) -> HeadProcess {
    start_head_with(dir, &["--listen", "127.0.0.1:0", "--cpus", "2"])
}

/// `prism start --head --dir DIR ARGS`.
pub fn start_head_with(dir: &Path, args: &[&str]) -> HeadProcess {
    let dir = dir.to_str().expect("UTF-8 path");
    let mut all = vec!["start", "--head", "--dir", dir];
    all.extend_from_slice(args);
    spawn(&all, "prism head listening on ").unwrap_or_else(|e| panic!("head: {e}"))
}

/// `prism start --join HEAD --dir DIR --ca CA --join-token TOKEN ARGS`.
pub fn start_worker(
    dir: &Path,
    head: &str,
    ca: &Path,
    token: &str,
    args: &[&str],
) -> Result<Process, String> {
    let dir = dir.to_str().expect("UTF-8 path");
    let ca = ca.to_str().expect("UTF-8 path");
    let mut all = vec![
        "start",
        "--join",
        head,
        "--dir",
        dir,
        "--ca",
        ca,
        "--join-token",
        token,
    ];
    all.extend_from_slice(args);
    spawn(&all, "prism worker ")
}

/// A client of `head` with `token`, trusting the cluster's CA.
pub async fn client(head: &Process, files: &ClusterFiles, token: &str) -> prism_client::Client {
    prism_client::Client::connect(&prism_client::ClientConfig {
        address: head.address.clone(),
        token: token.to_string(),
        ca_pem: std::fs::read(files.ca_cert()).unwrap(),
    })
    .await
    .expect("connects over TLS")
}

/// The rest of the first line starting with each of `prefixes` that job
/// `id` logs, in the order of `prefixes`, once all have arrived (waits
/// for them while the job runs).
pub async fn log_lines(client: &prism_client::Client, id: &str, prefixes: &[&str]) -> Vec<String> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut follower = client.clone();
    let id = id.to_string();
    tokio::spawn(async move {
        let _ = follower
            .follow_logs(&id, |line| {
                let _ = tx.send(line.text);
            })
            .await;
    });
    let mut found: Vec<Option<String>> = vec![None; prefixes.len()];
    while found.iter().any(Option::is_none) {
        let line = tokio::time::timeout(std::time::Duration::from_secs(60), rx.recv())
            .await
            .expect("the lines arrive")
            .expect("the job logs them before it ends");
        for (slot, prefix) in found.iter_mut().zip(prefixes) {
            if slot.is_none()
                && let Some(rest) = line.strip_prefix(prefix)
            {
                *slot = Some(rest.trim().to_string());
            }
        }
    }
    found.into_iter().flatten().collect()
}

/// `prism ARGS` as a client of `head` with `token` (address, CA and
/// token from the environment): (exit code, stdout, stderr), trimmed.
pub fn prism_cli(
    head: &Process,
    files: &ClusterFiles,
    token: &str,
    args: &[&str],
) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_prism"))
        .args(args)
        .env("PRISM_ADDRESS", &head.address)
        .env("PRISM_CA", files.ca_cert())
        .env("PRISM_TOKEN", token)
        .env_remove("PRISM_CONFIG")
        .output()
        .expect("prism runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}
