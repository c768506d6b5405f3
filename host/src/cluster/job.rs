//! Jobs: what a client submits, the context a node keeps while one runs,
//! its log, and its outcome.

use crate::ids::{JobId, ModuleHash};
use crate::scheduler::accounts::JobAccount;
use crate::security::JobGrant;
use bytes::Bytes;
use prism_abi::WireError;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

/// Most log lines kept per job; older lines are dropped first (10,000).
const MAX_LOG_LINES: usize = 10_000;

/// A request to run a driver.
#[derive(Clone, Debug)]
pub struct JobSpec {
    /// The job's id, chosen by the head.
    pub id: JobId,
    /// The module (already uploaded to the head).
    pub module: ModuleHash,
    /// The driver (or task) to call.
    pub entry: String,
    /// The MessagePack-encoded arguments, in order.
    pub args: Vec<Bytes>,
    /// The namespace for its named actors and named objects.
    pub namespace: String,
    /// How it runs: environment variables and the driver's resources.
    pub options: JobOptions,
}

/// Environment variables for a job's guests.
pub type JobEnv = Option<std::sync::Arc<Vec<(String, String)>>>;

/// How a job runs, beyond what it calls.
#[derive(Clone, Debug)]
pub struct JobOptions {
    /// Environment variables every guest of the job sees (WASI
    /// `environ`). Default: none.
    pub env: Vec<(String, String)>,
    /// What the driver holds while it runs. Default: nothing (drivers
    /// coordinate, as Ray's do).
    pub driver: DriverResources,
    /// Its tenant and what it may do. Default: [`JobGrant::local`] (a
    /// single-user embedded cluster).
    pub grant: Arc<JobGrant>,
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            env: Vec::new(),
            driver: DriverResources::default(),
            grant: JobGrant::local(),
        }
    }
}

/// Resources a job's driver holds while it runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DriverResources {
    /// CPUs (default 0).
    pub num_cpus: f64,
    /// GPUs (default none).
    pub num_gpus: Option<f64>,
    /// Memory in bytes (default 0).
    pub memory: u64,
    /// Custom resources (default none).
    pub resources: std::collections::BTreeMap<String, f64>,
}

/// Most environment variables a job may set (256), and their total size
/// (64 KiB).
pub const MAX_ENV_VARS: usize = 256;
/// See [`MAX_ENV_VARS`].
pub const MAX_ENV_BYTES: usize = 64 << 10;

/// Checks environment variables: names non-empty without `=`, no NUL
/// anywhere, within [`MAX_ENV_VARS`] and [`MAX_ENV_BYTES`].
pub fn check_env(env: &[(String, String)]) -> Result<(), String> {
    if env.len() > MAX_ENV_VARS {
        return Err(format!(
            "at most {MAX_ENV_VARS} environment variables, got {}",
            env.len()
        ));
    }
    let bytes: usize = env.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > MAX_ENV_BYTES {
        return Err(format!("environment variables over {MAX_ENV_BYTES} bytes"));
    }
    for (name, value) in env {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(format!("bad environment variable name {name:?}"));
        }
        if value.contains('\0') {
            return Err(format!("the value of {name} contains NUL"));
        }
    }
    Ok(())
}

/// Where a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogSource {
    /// The guest's standard output.
    Stdout,
    /// The guest's standard error.
    Stderr,
    /// `prism::log` from the guest.
    Guest,
    /// The node, about the job (retries, truncation).
    System,
}

impl LogSource {
    /// Its name on the wire and in output: `stdout`, `stderr`, `log` or
    /// `prism`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogSource::Stdout => "stdout",
            LogSource::Stderr => "stderr",
            LogSource::Guest => "log",
            LogSource::System => "prism",
        }
    }

    /// The source named `name` ([`LogSource::as_str`]); anything else is
    /// the system's.
    pub fn from_name(name: &str) -> Self {
        match name {
            "stdout" => LogSource::Stdout,
            "stderr" => LogSource::Stderr,
            "log" => LogSource::Guest,
            _ => LogSource::System,
        }
    }
}

/// One line of a job's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// Where it came from.
    pub source: LogSource,
    /// The function that wrote it.
    pub function: String,
    /// The text, without its newline.
    pub text: String,
}

/// A job's log: bounded, appended to by every task of the job. Lines are
/// numbered from 0 in the order they arrive, so a reader can follow the
/// log ([`JobLog::since`], [`JobLog::appended`]).
#[derive(Debug)]
pub struct JobLog {
    lines: Mutex<VecDeque<LogLine>>,
    /// The number of lines ever appended (the next line's number).
    appended: tokio::sync::watch::Sender<u64>,
}

impl Default for JobLog {
    fn default() -> Self {
        JobLog {
            lines: Mutex::new(VecDeque::new()),
            appended: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl JobLog {
    /// Appends a line, dropping the oldest beyond the cap.
    pub fn push(&self, source: LogSource, function: &str, text: &str) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() >= MAX_LOG_LINES {
            lines.pop_front();
        }
        lines.push_back(LogLine {
            source,
            function: function.to_string(),
            text: text.to_string(),
        });
        // Counted under the same lock, so `since` sees lines and count agree.
        self.appended.send_modify(|n| *n += 1);
        drop(lines);
    }

    /// The lines numbered `from` on that are still kept, and the number of
    /// the next line to come.
    pub fn since(&self, from: u64) -> (Vec<LogLine>, u64) {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let next = *self.appended.borrow();
        let first = next.saturating_sub(lines.len() as u64);
        let skip = from.saturating_sub(first) as usize;
        (lines.iter().skip(skip).cloned().collect(), next)
    }

    /// Changes whenever a line is appended.
    pub fn appended(&self) -> tokio::sync::watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Appends captured output, one line per line.
    pub fn push_output(&self, source: LogSource, function: &str, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        for line in String::from_utf8_lossy(bytes).lines() {
            self.push(source, function, line);
        }
    }

    /// Removes and returns every line, oldest first (a node hands the
    /// lines of another node's job back with each task it ran).
    pub fn drain(&self) -> Vec<LogLine> {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect()
    }

    /// A copy of every line, oldest first.
    pub fn lines(&self) -> Vec<LogLine> {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// What a node keeps about a job while it runs.
#[derive(Debug)]
pub struct JobContext {
    /// The job.
    pub id: JobId,
    /// Its module, loaded.
    pub module: std::sync::Arc<crate::runtime::LoadedModule>,
    /// Its namespace.
    pub namespace: String,
    /// Its log (shared with the non-detached actors it creates).
    pub log: std::sync::Arc<JobLog>,
    /// Environment variables its guests see.
    pub env: JobEnv,
    /// Its tenant, and what its guests may do.
    pub grant: Arc<JobGrant>,
    /// Its tenant's name (the grant's, shared cheaply).
    pub tenant: Arc<str>,
    /// What it uses, counted against its tenant's quotas.
    pub account: Arc<JobAccount>,
    /// The clocks and directory its guests get (from the grant).
    pub sandbox: Arc<crate::runtime::Sandbox>,
}

/// The WASI sandbox a job's grant gives its guests: the namespace's
/// clock resolution, and its data directory if the policy permits
/// reading it. A single-user embedded cluster's jobs get precise clocks.
pub fn sandbox_of(grant: &JobGrant) -> Arc<crate::runtime::Sandbox> {
    let Some(capabilities) = &grant.capabilities else {
        return Default::default();
    };
    Arc::new(crate::runtime::Sandbox {
        clock_resolution: Some(Duration::from_micros(
            capabilities.clock_resolution_us.max(1),
        )),
        data_dir: capabilities
            .data_dir
            .clone()
            .filter(|_| grant.permissions.read_directory),
    })
}

/// How a job ended.
#[derive(Clone, Debug)]
pub struct JobOutcome {
    /// The job.
    pub id: JobId,
    /// The driver's MessagePack return value, or why the job failed.
    pub result: Result<Bytes, WireError>,
    /// Everything the job logged.
    pub logs: Vec<LogLine>,
    /// From submission to the end.
    pub duration: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_split_into_lines() {
        let log = JobLog::default();
        log.push_output(LogSource::Stdout, "f", b"a\nb\n");
        let lines = log.lines();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].text, "b");
    }

    #[test]
    fn log_is_bounded() {
        let log = JobLog::default();
        for i in 0..MAX_LOG_LINES + 5 {
            log.push(LogSource::Guest, "f", &i.to_string());
        }
        let lines = log.lines();
        assert_eq!(lines.len(), MAX_LOG_LINES);
        assert_eq!(lines[0].text, "5");
    }
}
