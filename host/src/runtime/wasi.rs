//! Every WASI touch point of Prism lives in this module.
//!
//! Prism implements WASI preview 1 with `wasi-common` 36 (the LTS line that
//! still ships it). Keeping it behind this one module makes a later move to
//! `wasmtime-wasi` a contained change.
//!
//! What a task gets: its function name as `argv[0]`, the job's environment
//! variables if its namespace grants them, the wall and monotonic clocks
//! (at the namespace's resolution), random bytes, and stdout/stderr
//! captured into bounded in-memory buffers that end up in the job's log.
//! No sockets, no stdin, and no directories unless the namespace has a
//! data directory and the policy permits `ReadDirectory`: then that one
//! directory, read-only, at `/data` ([`Sandbox`]).
//!
//! A driver's sleeps (`poll_oneoff` with a clock that has not passed)
//! lend its CPU like `get` does ([`LendingSched`]): a driver holds a CPU
//! while it runs code, not while it waits.

use super::TaskState;
use crate::sync::RwLockExt;
use std::any::Any;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use wasi_common::dir::{OpenResult, ReaddirCursor, ReaddirEntity, WasiDir};
use wasi_common::file::{FdFlags, FileType, Filestat, OFlags};
use wasi_common::pipe::WritePipe;
use wasi_common::{Error, ErrorExt, WasiFile};
use wasmtime::Linker;

/// Where a guest sees the data directory.
pub const DATA_DIR_GUEST_PATH: &str = "/data";

/// What an instance's WASI context grants beyond the defaults.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sandbox {
    /// Round both clocks down to this (none: the host's precision).
    pub clock_resolution: Option<Duration>,
    /// A host directory preopened read-only at [`DATA_DIR_GUEST_PATH`].
    pub data_dir: Option<PathBuf>,
}

/// The per-task WASI state kept in each store.
pub(crate) type WasiCtx = wasi_common::WasiCtx;

/// The exit status, if `error` is a guest's `proc_exit`.
pub(crate) fn exit_status(error: &anyhow::Error) -> Option<i32> {
    error
        .downcast_ref::<wasi_common::I32Exit>()
        .map(|exit| exit.0)
}

/// Adds the WASI preview 1 functions (and the older `wasi_unstable` names)
/// to the linker.
pub(crate) fn add_to_linker(linker: &mut Linker<TaskState>) -> anyhow::Result<()> {
    wasi_common::tokio::add_to_linker(linker, |state: &mut TaskState| &mut state.wasi)
}

/// Whether an import module name is one WASI provides.
pub(crate) fn provides(module: &str) -> bool {
    matches!(module, "wasi_snapshot_preview1" | "wasi_unstable")
}

/// One output stream of a guest: accepts at most `limit` bytes per call
/// (remembering how many it dropped), hands each complete line to the
/// call's host as it is written (so a job's log shows it while the call
/// runs), and keeps the rest (a last line without its newline) for the
/// end of the call.
pub(crate) struct CappedBuffer {
    bytes: Vec<u8>,
    limit: usize,
    accepted: usize,
    dropped: usize,
    stderr: bool,
    /// Where the call running now sends complete lines (`None`: keep
    /// everything).
    sink: Option<OutputSink>,
}

/// Takes complete lines of output: (stderr, lines).
type OutputSink = Arc<dyn Fn(bool, &[u8]) + Send + Sync>;

impl Write for CappedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = self.limit.saturating_sub(self.accepted);
        let keep = room.min(buf.len());
        let held = self.bytes.len();
        self.bytes.extend_from_slice(&buf[..keep]);
        self.accepted += keep;
        self.dropped += buf.len() - keep;
        // Only the bytes just written can end a line: what was held before
        // has none (a guest writing byte by byte costs no rescans).
        if let Some(sink) = &self.sink
            && let Some(end) = buf[..keep].iter().rposition(|b| *b == b'\n')
        {
            let lines: Vec<u8> = self.bytes.drain(..=held + end).collect();
            sink(self.stderr, &lines);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The captured output of one task.
#[derive(Clone)]
pub(crate) struct CapturedOutput {
    stdout: Arc<RwLock<CappedBuffer>>,
    stderr: Arc<RwLock<CappedBuffer>>,
}

impl CapturedOutput {
    /// Takes what was written and not yet handed to a host: (stdout,
    /// stderr, bytes dropped over the cap); the next call starts afresh.
    pub(crate) fn take(&self) -> (Vec<u8>, Vec<u8>, usize) {
        let take = |b: &Arc<RwLock<CappedBuffer>>| {
            let mut b = b.write_locked();
            let dropped = std::mem::take(&mut b.dropped);
            b.accepted = 0;
            (std::mem::take(&mut b.bytes), dropped)
        };
        let (out, d1) = take(&self.stdout);
        let (err, d2) = take(&self.stderr);
        (out, err, d1 + d2)
    }

    /// Hands complete lines to `host` as they are written (`None`: keep
    /// them for [`CapturedOutput::take`]).
    pub(crate) fn forward_to(&self, host: Option<Arc<dyn super::GuestHost>>) {
        let sink = host.map(|host| -> OutputSink {
            Arc::new(move |stderr: bool, lines: &[u8]| host.output(stderr, lines))
        });
        self.stdout.write_locked().sink = sink.clone();
        self.stderr.write_locked().sink = sink;
    }
}

/// A fresh WASI context for one task, with output capped at `max_output`
/// bytes per stream; with `lender`, its sleeps lend the guest's CPU.
pub(crate) fn task_context(
    program: &str,
    env: &[(String, String)],
    max_output: usize,
    sandbox: &Sandbox,
    lender: Option<Arc<dyn super::GuestHost>>,
) -> anyhow::Result<(WasiCtx, CapturedOutput)> {
    let buffer = |stderr| {
        Arc::new(RwLock::new(CappedBuffer {
            bytes: Vec::new(),
            limit: max_output,
            accepted: 0,
            dropped: 0,
            stderr,
            sink: None,
        }))
    };
    let captured = CapturedOutput {
        stdout: buffer(false),
        stderr: buffer(true),
    };
    let clocks = match sandbox.clock_resolution {
        None => wasi_common::tokio::clocks_ctx(),
        Some(resolution) => coarse_clocks(resolution),
    };
    let sched = match lender {
        Some(host) => Box::new(LendingSched {
            inner: wasi_common::tokio::sched::sched_ctx(),
            host,
        }),
        None => wasi_common::tokio::sched::sched_ctx(),
    };
    let mut ctx = WasiCtx::new(
        wasi_common::tokio::random_ctx(),
        clocks,
        sched,
        wasi_common::Table::new(),
    );
    ctx.push_arg(program)?;
    for (name, value) in env {
        ctx.push_env(name, value)?;
    }
    ctx.set_stdout(Box::new(WritePipe::from_shared(captured.stdout.clone())));
    ctx.set_stderr(Box::new(WritePipe::from_shared(captured.stderr.clone())));
    if let Some(path) = &sandbox.data_dir {
        let dir =
            wasi_common::sync::Dir::open_ambient_dir(path, wasi_common::sync::ambient_authority())
                .map_err(|e| anyhow::anyhow!("the data directory {}: {e}", path.display()))?;
        let dir = wasi_common::tokio::Dir::from_cap_std(dir);
        ctx.push_preopened_dir(Box::new(ReadOnlyDir(Box::new(dir))), DATA_DIR_GUEST_PATH)?;
    }
    Ok((ctx, captured))
}

/// The host's clocks, each reading rounded down to `resolution`: a guest
/// cannot time events more finely (timing side channels).
fn coarse_clocks(resolution: Duration) -> wasi_common::WasiClocks {
    let host = wasi_common::tokio::clocks_ctx();
    let mut clocks = wasi_common::WasiClocks::new();
    let nanos = resolution.as_nanos().max(1);
    if let Some(system) = host.system {
        clocks = clocks.with_system(CoarseSystemClock {
            inner: system,
            nanos,
        });
    }
    if let Some(monotonic) = host.monotonic {
        clocks = clocks.with_monotonic(CoarseMonotonicClock {
            base: monotonic.abs_clock.now(monotonic.abs_clock.resolution()),
            inner: monotonic.abs_clock,
            nanos,
        });
    }
    clocks
}

struct CoarseSystemClock {
    inner: Box<dyn wasi_common::WasiSystemClock>,
    nanos: u128,
}

impl wasi_common::WasiSystemClock for CoarseSystemClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(self.nanos.min(u64::MAX as u128) as u64)
    }

    fn now(&self, precision: Duration) -> cap_std::time::SystemTime {
        let now = self.inner.now(precision).into_std();
        let since = now
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let rounded = since - since % self.nanos;
        let rounded = Duration::from_nanos(rounded.min(u64::MAX as u128) as u64);
        cap_std::time::SystemTime::from_std(std::time::UNIX_EPOCH + rounded)
    }
}

struct CoarseMonotonicClock {
    inner: Box<dyn wasi_common::WasiMonotonicClock>,
    base: cap_std::time::Instant,
    nanos: u128,
}

impl wasi_common::WasiMonotonicClock for CoarseMonotonicClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(self.nanos.min(u64::MAX as u128) as u64)
    }

    fn now(&self, precision: Duration) -> cap_std::time::Instant {
        let elapsed = self
            .inner
            .now(precision)
            .duration_since(self.base)
            .as_nanos();
        let rounded = elapsed - elapsed % self.nanos;
        self.base + Duration::from_nanos(rounded.min(u64::MAX as u128) as u64)
    }
}

/// A directory a guest may read and never change: opening for writing,
/// creating, truncating, and every call that changes the tree fail with
/// `EPERM`. Files opened through it are read-only too.
struct ReadOnlyDir(Box<dyn WasiDir>);

fn read_only() -> Error {
    Error::perm().context("the data directory is read-only")
}

#[tonic::async_trait]
impl WasiDir for ReadOnlyDir {
    fn as_any(&self) -> &dyn Any {
        self
    }

    async fn open_file(
        &self,
        symlink_follow: bool,
        path: &str,
        oflags: OFlags,
        read: bool,
        write: bool,
        fdflags: FdFlags,
    ) -> Result<OpenResult, Error> {
        if write
            || oflags.intersects(OFlags::CREATE | OFlags::TRUNCATE | OFlags::EXCLUSIVE)
            || fdflags.contains(FdFlags::APPEND)
        {
            return Err(read_only());
        }
        match self
            .0
            .open_file(symlink_follow, path, oflags, read, false, fdflags)
            .await?
        {
            OpenResult::Dir(dir) => Ok(OpenResult::Dir(Box::new(ReadOnlyDir(dir)))),
            OpenResult::File(file) => Ok(OpenResult::File(Box::new(ReadOnlyFile(file)))),
        }
    }

    async fn create_dir(&self, _path: &str) -> Result<(), Error> {
        Err(read_only())
    }

    async fn readdir(
        &self,
        cursor: ReaddirCursor,
    ) -> Result<Box<dyn Iterator<Item = Result<ReaddirEntity, Error>> + Send>, Error> {
        self.0.readdir(cursor).await
    }

    async fn symlink(&self, _old_path: &str, _new_path: &str) -> Result<(), Error> {
        Err(read_only())
    }

    async fn remove_dir(&self, _path: &str) -> Result<(), Error> {
        Err(read_only())
    }

    async fn unlink_file(&self, _path: &str) -> Result<(), Error> {
        Err(read_only())
    }

    async fn read_link(&self, path: &str) -> Result<PathBuf, Error> {
        self.0.read_link(path).await
    }

    async fn get_filestat(&self) -> Result<Filestat, Error> {
        self.0.get_filestat().await
    }

    async fn get_path_filestat(
        &self,
        path: &str,
        follow_symlinks: bool,
    ) -> Result<Filestat, Error> {
        self.0.get_path_filestat(path, follow_symlinks).await
    }

    async fn rename(
        &self,
        _path: &str,
        _dest_dir: &dyn WasiDir,
        _dest_path: &str,
    ) -> Result<(), Error> {
        Err(read_only())
    }

    async fn hard_link(
        &self,
        _path: &str,
        _target_dir: &dyn WasiDir,
        _target_path: &str,
    ) -> Result<(), Error> {
        Err(read_only())
    }

    async fn set_times(
        &self,
        _path: &str,
        _atime: Option<wasi_common::SystemTimeSpec>,
        _mtime: Option<wasi_common::SystemTimeSpec>,
        _follow_symlinks: bool,
    ) -> Result<(), Error> {
        Err(read_only())
    }
}

/// WASI's scheduler for a guest whose sleeps lend its CPU: a poll that
/// waits for a clock gives the CPU back first and takes it again after,
/// as a blocking `get` does.
struct LendingSched {
    inner: Box<dyn wasi_common::WasiSched>,
    host: Arc<dyn super::GuestHost>,
}

#[tonic::async_trait]
impl wasi_common::WasiSched for LendingSched {
    async fn poll_oneoff<'a>(&self, poll: &mut wasi_common::Poll<'a>) -> Result<(), Error> {
        let waits = poll
            .earliest_clock_deadline()
            .is_some_and(|c| c.deadline > c.clock.now(c.precision));
        if waits {
            super::lending(&self.host, || self.inner.poll_oneoff(poll)).await
        } else {
            self.inner.poll_oneoff(poll).await
        }
    }

    async fn sched_yield(&self) -> Result<(), Error> {
        self.inner.sched_yield().await
    }

    async fn sleep(&self, duration: wasi_common::sched::Duration) -> Result<(), Error> {
        if duration.is_zero() {
            return self.inner.sleep(duration).await;
        }
        super::lending(&self.host, || self.inner.sleep(duration)).await
    }
}

/// A file of a [`ReadOnlyDir`]: reads pass through; size, times and
/// writes are refused (the trait's defaults).
struct ReadOnlyFile(Box<dyn WasiFile>);

#[tonic::async_trait]
impl WasiFile for ReadOnlyFile {
    fn as_any(&self) -> &dyn Any {
        self
    }

    async fn get_filetype(&self) -> Result<FileType, Error> {
        self.0.get_filetype().await
    }

    async fn get_fdflags(&self) -> Result<FdFlags, Error> {
        self.0.get_fdflags().await
    }

    async fn get_filestat(&self) -> Result<Filestat, Error> {
        self.0.get_filestat().await
    }

    async fn read_vectored<'a>(&self, bufs: &mut [std::io::IoSliceMut<'a>]) -> Result<u64, Error> {
        self.0.read_vectored(bufs).await
    }

    async fn read_vectored_at<'a>(
        &self,
        bufs: &mut [std::io::IoSliceMut<'a>],
        offset: u64,
    ) -> Result<u64, Error> {
        self.0.read_vectored_at(bufs, offset).await
    }

    async fn seek(&self, pos: std::io::SeekFrom) -> Result<u64, Error> {
        self.0.seek(pos).await
    }

    async fn peek(&self, buf: &mut [u8]) -> Result<u64, Error> {
        self.0.peek(buf).await
    }

    fn num_ready_bytes(&self) -> Result<u64, Error> {
        self.0.num_ready_bytes()
    }

    async fn readable(&self) -> Result<(), Error> {
        self.0.readable().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer(limit: usize) -> CappedBuffer {
        CappedBuffer {
            bytes: Vec::new(),
            limit,
            accepted: 0,
            dropped: 0,
            stderr: false,
            sink: None,
        }
    }

    #[test]
    fn capped_buffer_keeps_the_prefix_and_counts_the_rest() {
        let mut b = buffer(4);
        b.write_all(b"abcdef").unwrap();
        assert_eq!(b.bytes, b"abcd");
        assert_eq!(b.dropped, 2);
    }

    #[test]
    fn complete_lines_go_to_the_host_as_written_and_the_cap_holds() {
        /// What the sink was handed: (stderr, lines), in order.
        type Seen = Arc<std::sync::Mutex<Vec<(bool, Vec<u8>)>>>;
        let host: Seen = Default::default();
        let mut b = buffer(12);
        b.stderr = true;
        let seen = host.clone();
        b.sink = Some(Arc::new(move |stderr: bool, lines: &[u8]| {
            seen.lock().unwrap().push((stderr, lines.to_vec()))
        }));
        b.write_all(b"one\ntw").unwrap();
        assert_eq!(*host.lock().unwrap(), vec![(true, b"one\n".to_vec())]);
        assert_eq!(b.bytes, b"tw");
        b.write_all(b"o\nthree\n").unwrap();
        // 12 bytes accepted per call: "one\ntwo\nthre" , the rest dropped.
        assert_eq!(host.lock().unwrap().len(), 2);
        assert_eq!(host.lock().unwrap()[1].1, b"two\n".to_vec());
        assert_eq!(b.bytes, b"thre");
        assert_eq!(b.dropped, 2);
        // Byte by byte: the line goes when its newline comes, whole.
        b.bytes.clear();
        b.accepted = 0;
        for byte in b"four\n" {
            b.write_all(&[*byte]).unwrap();
        }
        assert_eq!(host.lock().unwrap()[2].1, b"four\n".to_vec());
        assert!(b.bytes.is_empty());
    }
}
