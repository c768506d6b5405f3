//! Jobs: what a client submits, the context a node keeps while one runs,
//! its log, and its outcome.

use crate::ids::{JobId, ModuleHash};
use crate::scheduler::accounts::JobAccount;
use crate::security::JobGrant;
use crate::sync::MutexExt;
use crate::task::JobTicket;
use bytes::Bytes;
use prism_abi::WireError;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

/// Most log lines kept in memory per job; older lines are dropped first
/// (10,000).
pub const MAX_LOG_LINES: usize = 10_000;

/// Most bytes of log text kept in memory per job (the tail a job record
/// keeps); older lines are dropped first (1 MiB).
pub const MAX_LOG_BYTES: usize = 1 << 20;

/// Longest log line kept (16 KiB); the rest of a longer line is cut and
/// replaced by a note of how much was cut.
pub const MAX_LOG_LINE_BYTES: usize = 16 << 10;

/// `text` cut to `limit` bytes on a character boundary, with a note of
/// how much was cut (log lines here, error messages in job records).
pub fn cut(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} [{} bytes cut]", &text[..end], text.len() - end)
}

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
    pub namespace: crate::security::tenants::NamespaceRef,
    /// How it runs: environment variables and the driver's resources.
    pub options: JobOptions,
}

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

/// Environment variables a job may not have.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// More than [`MAX_ENV_VARS`].
    #[error("at most {MAX_ENV_VARS} environment variables, got {0}")]
    TooMany(usize),
    /// More than [`MAX_ENV_BYTES`] in all.
    #[error("environment variables over {MAX_ENV_BYTES} bytes")]
    TooLarge,
    /// An empty name, or one with `=` or NUL.
    #[error("bad environment variable name {0:?}")]
    BadName(String),
    /// A value with NUL.
    #[error("the value of {0} contains NUL")]
    BadValue(String),
}

/// Checks environment variables: names non-empty without `=`, no NUL
/// anywhere, within [`MAX_ENV_VARS`] and [`MAX_ENV_BYTES`].
pub fn check_env(env: &[(String, String)]) -> Result<(), EnvError> {
    if env.len() > MAX_ENV_VARS {
        return Err(EnvError::TooMany(env.len()));
    }
    let bytes: usize = env.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > MAX_ENV_BYTES {
        return Err(EnvError::TooLarge);
    }
    for (name, value) in env {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(EnvError::BadName(name.clone()));
        }
        if value.contains('\0') {
            return Err(EnvError::BadValue(name.clone()));
        }
    }
    Ok(())
}

/// Where a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
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
///
/// What is kept in memory is bounded twice: [`MAX_LOG_LINES`] lines and
/// [`MAX_LOG_BYTES`] bytes of text, each line cut at
/// [`MAX_LOG_LINE_BYTES`]. A log made with [`JobLog::with_file`] also
/// appends every line to a file, up to its own byte limit, so the whole
/// log of a job outlives the in-memory tail.
#[derive(Debug)]
pub struct JobLog {
    lines: Mutex<Tail>,
    file: Option<Mutex<LogFile>>,
    /// The number of lines ever appended (the next line's number).
    appended: tokio::sync::watch::Sender<u64>,
}

/// The in-memory tail of a log and the bytes of text it holds.
#[derive(Debug, Default)]
struct Tail {
    lines: VecDeque<LogLine>,
    bytes: usize,
    /// Lines dropped from the front since the last [`JobLog::drain`].
    dropped: u64,
}

impl Tail {
    fn pop_front(&mut self) {
        if let Some(old) = self.lines.pop_front() {
            self.bytes -= old.text.len() + old.function.len();
            self.dropped += 1;
        }
    }
}

/// The file a job's whole log goes to, JSON lines, up to `limit` bytes.
#[derive(Debug)]
struct LogFile {
    file: std::io::BufWriter<std::fs::File>,
    written: u64,
    limit: u64,
    full: bool,
}

impl LogFile {
    fn append(&mut self, line: &LogLine) {
        use std::io::Write;
        if self.full {
            return;
        }
        let Ok(mut json) = serde_json::to_vec(line) else {
            return;
        };
        json.push(b'\n');
        if self.written + json.len() as u64 > self.limit {
            self.full = true;
            let note = LogLine {
                source: LogSource::System,
                function: String::new(),
                text: format!(
                    "the job's log reached its limit of {} bytes; later lines are not kept on disk",
                    self.limit
                ),
            };
            json = serde_json::to_vec(&note).unwrap_or_default();
            json.push(b'\n');
        }
        if self.file.write_all(&json).is_err() {
            self.full = true;
        }
        self.written += json.len() as u64;
    }
}

impl Default for JobLog {
    fn default() -> Self {
        JobLog {
            lines: Mutex::new(Tail::default()),
            file: None,
            appended: tokio::sync::watch::Sender::new(0),
        }
    }
}

/// Reads a log file written by a [`JobLog::with_file`] log: its lines in
/// order (unreadable lines are skipped).
pub fn read_log_file(path: &std::path::Path) -> std::io::Result<Vec<LogLine>> {
    use std::io::BufRead;
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    Ok(file
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_str(&line).ok())
        .collect())
}

impl JobLog {
    /// A log that also appends every line to `path` (created or
    /// truncated), at most `limit` bytes of it; past the limit one note
    /// says so and later lines stay in the in-memory tail only.
    pub fn with_file(path: &std::path::Path, limit: u64) -> std::io::Result<JobLog> {
        let file = std::fs::File::create(path)?;
        Ok(JobLog {
            file: Some(Mutex::new(LogFile {
                file: std::io::BufWriter::new(file),
                written: 0,
                limit,
                full: false,
            })),
            ..JobLog::default()
        })
    }

    /// Writes what the log file holds in its buffer to disk.
    pub fn flush(&self) {
        use std::io::Write;
        if let Some(file) = &self.file {
            let _ = file.locked().file.flush();
        }
    }

    /// Appends a line (cut at [`MAX_LOG_LINE_BYTES`]), dropping the oldest
    /// beyond [`MAX_LOG_LINES`] or [`MAX_LOG_BYTES`].
    pub fn push(&self, source: LogSource, function: &str, text: &str) {
        let line = LogLine {
            source,
            function: function.chars().take(256).collect(),
            text: cut(text, MAX_LOG_LINE_BYTES),
        };
        if let Some(file) = &self.file {
            file.locked().append(&line);
        }
        let mut tail = self.lines.locked();
        let size = line.text.len() + line.function.len();
        while !tail.lines.is_empty()
            && (tail.lines.len() >= MAX_LOG_LINES || tail.bytes + size > MAX_LOG_BYTES)
        {
            tail.pop_front();
        }
        tail.bytes += size;
        tail.lines.push_back(line);
        // Counted under the same lock, so `since` sees lines and count agree.
        self.appended.send_modify(|n| *n += 1);
        drop(tail);
    }

    /// The lines numbered `from` on that are still kept, and the number of
    /// the next line to come.
    pub fn since(&self, from: u64) -> (Vec<LogLine>, u64) {
        let tail = self.lines.locked();
        let next = *self.appended.borrow();
        let first = next.saturating_sub(tail.lines.len() as u64);
        let skip = from.saturating_sub(first) as usize;
        (tail.lines.iter().skip(skip).cloned().collect(), next)
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
    /// lines of another node's job back with each task it ran). If lines
    /// were dropped since the last drain, a first system line says how
    /// many, so the job's log shows the gap.
    pub fn drain(&self) -> Vec<LogLine> {
        let mut tail = self.lines.locked();
        tail.bytes = 0;
        let dropped = std::mem::take(&mut tail.dropped);
        let mut lines = Vec::with_capacity(tail.lines.len() + 1);
        if dropped > 0 {
            lines.push(LogLine {
                source: LogSource::System,
                function: String::new(),
                text: format!(
                    "{dropped} earlier lines were dropped on the node that ran them \
                     (it keeps at most {MAX_LOG_LINES} lines and {MAX_LOG_BYTES} bytes \
                     of a job's log until a reply carries them)"
                ),
            });
        }
        lines.extend(tail.lines.drain(..));
        lines
    }

    /// A copy of every line, oldest first.
    pub fn lines(&self) -> Vec<LogLine> {
        self.lines.locked().lines.iter().cloned().collect()
    }
}

/// What a node keeps about an owner (a job, or an actor) while it runs.
#[derive(Debug)]
pub struct JobContext {
    /// The owner: the job's, or the actor's.
    pub id: crate::ids::OwnerId,
    /// Its module, loaded.
    pub module: std::sync::Arc<crate::runtime::LoadedModule>,
    /// Its namespace, grant and environment, carried by every call it
    /// makes.
    pub ticket: Arc<JobTicket>,
    /// Its log (shared with the non-detached actors it creates).
    pub log: std::sync::Arc<JobLog>,
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
    /// The tail of what the job logged (see [`JobLog`] for the bounds);
    /// shared, so copies of an outcome do not copy it.
    pub logs: Arc<Vec<LogLine>>,
    /// From submission to the end.
    pub duration: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_variables_are_checked_and_bounded() {
        let var = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(check_env(&[var("A", "1"), var("B", "")]), Ok(()));
        assert_eq!(
            check_env(&[var("", "1")]),
            Err(EnvError::BadName(String::new()))
        );
        assert_eq!(
            check_env(&[var("A=B", "1")]),
            Err(EnvError::BadName("A=B".into()))
        );
        assert_eq!(
            check_env(&[var("A", "x\0")]),
            Err(EnvError::BadValue("A".into()))
        );
        let many: Vec<_> = (0..=MAX_ENV_VARS)
            .map(|i| var(&format!("V{i}"), ""))
            .collect();
        assert_eq!(check_env(&many), Err(EnvError::TooMany(MAX_ENV_VARS + 1)));
        let big = "x".repeat(MAX_ENV_BYTES);
        assert_eq!(check_env(&[var("A", &big)]), Err(EnvError::TooLarge));
    }

    #[test]
    fn output_is_split_into_lines() {
        let log = JobLog::default();
        log.push_output(LogSource::Stdout, "f", b"a\nb\n");
        let lines = log.lines();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].text, "b");
    }

    #[test]
    fn log_is_bounded_in_bytes_and_long_lines_are_cut() {
        let log = JobLog::default();
        let long = "x".repeat(MAX_LOG_LINE_BYTES * 4);
        log.push(LogSource::Stdout, "f", &long);
        let first = &log.lines()[0].text;
        assert!(first.len() < MAX_LOG_LINE_BYTES + 64, "{}", first.len());
        assert!(first.ends_with(&format!("[{} bytes cut]", MAX_LOG_LINE_BYTES * 3)));
        for _ in 0..200 {
            log.push(LogSource::Stdout, "f", &long);
        }
        let held: usize = log.lines().iter().map(|l| l.text.len() + 1).sum();
        assert!(held <= MAX_LOG_BYTES, "{held} bytes held");
        assert_eq!(log.since(0).1, 201, "every line was counted");
    }

    #[test]
    fn a_drain_says_how_many_lines_were_dropped_before_it() {
        let log = JobLog::default();
        for i in 0..MAX_LOG_LINES + 5 {
            log.push(LogSource::Guest, "f", &format!("line {i}"));
        }
        let lines = log.drain();
        assert_eq!(lines.len(), MAX_LOG_LINES + 1);
        assert_eq!(lines[0].source, LogSource::System);
        assert!(
            lines[0].text.starts_with("5 earlier lines were dropped"),
            "{}",
            lines[0].text
        );
        assert_eq!(lines[1].text, "line 5");
        // The count starts again after a drain.
        log.push(LogSource::Guest, "f", "again");
        assert_eq!(log.drain().len(), 1);
    }

    #[test]
    fn a_log_file_keeps_lines_up_to_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.log");
        let log = JobLog::with_file(&path, 4096).unwrap();
        for i in 0..1000 {
            log.push(LogSource::Guest, "f", &format!("line {i}"));
        }
        log.flush();
        let lines = read_log_file(&path).unwrap();
        assert!(lines.len() > 10 && lines.len() < 200, "{}", lines.len());
        assert_eq!(lines[0].text, "line 0");
        assert!(
            lines
                .last()
                .unwrap()
                .text
                .contains("reached its limit of 4096 bytes")
        );
        assert!(std::fs::metadata(&path).unwrap().len() <= 4096 + 200);
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
