//! Recycled buffers for large values.
//!
//! Fresh memory is expensive to touch: the kernel faults in and zeroes
//! every page (on the reference machine, 100 MB of fresh pages cost about
//! 80 ms to fill, against 7 ms to copy into pages already mapped). A value
//! of at least [`RECYCLE_MIN`] bytes is therefore copied into a buffer
//! kept from a value that was freed earlier, when one of a fitting size is
//! idle, and its buffer comes back here when the last reader of the value
//! lets go of it.
//!
//! A recycled buffer may hold another value's bytes (of any job or
//! tenant) beyond the new value's length; nothing reads past that length:
//! the new value is written over `[0, len)` in full before anyone can see
//! it, and its `Bytes` cover exactly that range.

use bytes::Bytes;
use std::sync::Mutex;

/// Values at least this large (1 MiB) use recycled buffers.
pub const RECYCLE_MIN: usize = 1 << 20;

/// Idle buffers kept at most, in bytes of capacity (256 MiB); the
/// oldest are given back to the system first.
const IDLE_MAX: usize = 256 << 20;

/// Idle buffers, oldest first.
static IDLE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

fn idle() -> std::sync::MutexGuard<'static, Vec<Vec<u8>>> {
    IDLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The concatenation of `parts` as one value, in a recycled buffer if it
/// is large.
pub fn concat(parts: &[&[u8]]) -> Bytes {
    let len = parts.iter().map(|p| p.len()).sum();
    if len < RECYCLE_MIN {
        let mut value = Vec::with_capacity(len);
        for part in parts {
            value.extend_from_slice(part);
        }
        return Bytes::from(value);
    }
    let mut buffer = take(len);
    for part in parts {
        buffer.extend_from_slice(part);
    }
    Bytes::from_owner(Recycled(buffer))
}

/// An empty buffer with room for `len` bytes: the smallest idle one that
/// fits and wastes at most half of itself, or a new one.
fn take(len: usize) -> Vec<u8> {
    let mut idle = idle();
    let best = idle
        .iter()
        .enumerate()
        .filter(|(_, b)| b.capacity() >= len && b.capacity() / 2 <= len)
        .min_by_key(|(_, b)| b.capacity())
        .map(|(i, _)| i);
    match best {
        Some(i) => {
            let mut buffer = idle.remove(i);
            buffer.clear();
            buffer
        }
        None => Vec::with_capacity(len),
    }
}

/// Keeps `buffer` for a later value, dropping the oldest idle ones beyond
/// [`IDLE_MAX`] (outside the lock: that returns memory to the system).
fn give(buffer: Vec<u8>) {
    if buffer.capacity() > IDLE_MAX {
        return;
    }
    let dropped = {
        let mut idle = idle();
        idle.push(buffer);
        let mut total: usize = idle.iter().map(|b| b.capacity()).sum();
        let mut cut = 0;
        while total > IDLE_MAX {
            total -= idle[cut].capacity();
            cut += 1;
        }
        idle.drain(..cut).collect::<Vec<_>>()
    };
    drop(dropped);
}

/// Bytes of idle buffers held.
pub fn idle_bytes() -> usize {
    idle().iter().map(|b| b.capacity()).sum()
}

/// A value's buffer, given back when the value's last `Bytes` is dropped.
struct Recycled(Vec<u8>);

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tests share the process-wide pool; each uses sizes no other test
    /// uses, and the pool is checked only for buffers of those sizes.
    fn idle_with_capacity(capacity: usize) -> usize {
        idle().iter().filter(|b| b.capacity() == capacity).count()
    }

    #[test]
    fn small_values_are_plain_and_large_ones_come_back_for_reuse() {
        let small = concat(&[b"ab", b"c"]);
        assert_eq!(&small[..], b"abc");

        let len = RECYCLE_MIN + 4096 * 3;
        let a = vec![1u8; len - 10];
        let value = concat(&[&a, &[2u8; 10]]);
        assert_eq!(value.len(), len);
        assert!(value[..len - 10].iter().all(|&b| b == 1));
        assert!(value[len - 10..].iter().all(|&b| b == 2));
        let ptr = value.as_ptr();
        let reader = value.clone();
        drop(value);
        assert_eq!(idle_with_capacity(len), 0, "a reader still holds it");
        drop(reader);
        assert_eq!(idle_with_capacity(len), 1);

        // A smaller value reuses the buffer and shows none of the old bytes.
        let next = concat(&[&vec![9u8; len - 100]]);
        assert_eq!(next.as_ptr(), ptr, "the same memory");
        assert_eq!(next.len(), len - 100);
        assert!(next.iter().all(|&b| b == 9));
        assert_eq!(idle_with_capacity(len), 0);
        drop(next);
        assert_eq!(idle_with_capacity(len), 1);

        // A value less than half its size does not take it.
        let half = concat(&[&vec![3u8; len / 2 - 1]]);
        assert_ne!(half.as_ptr(), ptr);
        assert_eq!(idle_with_capacity(len), 1);
    }

    #[test]
    fn idle_buffers_are_capped() {
        let len = RECYCLE_MIN * 40 + 4096 * 7;
        let values: Vec<Bytes> = (0..8).map(|_| concat(&[&vec![5u8; len]])).collect();
        drop(values);
        let kept = idle_with_capacity(len);
        assert!(kept >= 1 && kept * len <= IDLE_MAX, "kept {kept}");
        assert!(idle_bytes() <= IDLE_MAX);
    }
}
