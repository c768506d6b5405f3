//! Every WASI touch point of Prism lives in this module.
//!
//! Prism implements WASI preview 1 with `wasi-common` 36 (the LTS line that
//! still ships it). Keeping it behind this one module makes a later move to
//! `wasmtime-wasi` a contained change.
//!
//! What a task gets: its function name as `argv[0]`, no environment, the
//! wall and monotonic clocks, random bytes, and stdout/stderr captured into
//! bounded in-memory buffers that end up in the job's log. No preopened
//! directories, no sockets, no stdin.

use super::TaskState;
use std::io::Write;
use std::sync::{Arc, RwLock};
use wasi_common::pipe::WritePipe;
use wasmtime::Linker;

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

/// A byte buffer that keeps at most `limit` bytes and remembers how many it
/// dropped.
#[derive(Debug)]
pub(crate) struct CappedBuffer {
    bytes: Vec<u8>,
    limit: usize,
    dropped: usize,
}

impl Write for CappedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = self.limit.saturating_sub(self.bytes.len());
        let keep = room.min(buf.len());
        self.bytes.extend_from_slice(&buf[..keep]);
        self.dropped += buf.len() - keep;
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
    /// Takes what was written: (stdout, stderr, bytes dropped over the cap).
    pub(crate) fn take(&self) -> (Vec<u8>, Vec<u8>, usize) {
        let take = |b: &Arc<RwLock<CappedBuffer>>| {
            let mut b = b.write().unwrap_or_else(|e| e.into_inner());
            let dropped = std::mem::take(&mut b.dropped);
            (std::mem::take(&mut b.bytes), dropped)
        };
        let (out, d1) = take(&self.stdout);
        let (err, d2) = take(&self.stderr);
        (out, err, d1 + d2)
    }
}

/// A fresh WASI context for one task, with output capped at `max_output`
/// bytes per stream.
pub(crate) fn task_context(
    program: &str,
    env: &[(String, String)],
    max_output: usize,
) -> anyhow::Result<(WasiCtx, CapturedOutput)> {
    let buffer = || {
        Arc::new(RwLock::new(CappedBuffer {
            bytes: Vec::new(),
            limit: max_output,
            dropped: 0,
        }))
    };
    let captured = CapturedOutput {
        stdout: buffer(),
        stderr: buffer(),
    };
    let mut builder = wasi_common::tokio::WasiCtxBuilder::new();
    builder
        .arg(program)?
        .stdout(Box::new(WritePipe::from_shared(captured.stdout.clone())))
        .stderr(Box::new(WritePipe::from_shared(captured.stderr.clone())));
    for (name, value) in env {
        builder.env(name, value)?;
    }
    Ok((builder.build(), captured))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_buffer_keeps_the_prefix_and_counts_the_rest() {
        let mut b = CappedBuffer {
            bytes: Vec::new(),
            limit: 4,
            dropped: 0,
        };
        b.write_all(b"abcdef").unwrap();
        assert_eq!(b.bytes, b"abcd");
        assert_eq!(b.dropped, 2);
    }
}
