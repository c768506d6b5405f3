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

use crate::sync::MutexExt;
use bytes::Bytes;
use std::sync::Mutex;

/// Values at least this large (1 MiB) use recycled buffers.
pub const RECYCLE_MIN: usize = 1 << 20;

/// Idle buffers the process keeps at most, in bytes of capacity (256
/// MiB); the oldest are given back to the system first.
const IDLE_MAX: usize = 256 << 20;

/// The process's pool.
static POOL: BufferPool = BufferPool::new(IDLE_MAX);

/// The concatenation of `parts` as one value, in a recycled buffer if it
/// is large.
pub fn concat(parts: &[&[u8]]) -> Bytes {
    POOL.concat(parts)
}

/// Idle buffers, oldest first, up to `idle_max` bytes of capacity.
struct BufferPool {
    idle: Mutex<Vec<Vec<u8>>>,
    idle_max: usize,
}

impl BufferPool {
    const fn new(idle_max: usize) -> Self {
        BufferPool {
            idle: Mutex::new(Vec::new()),
            idle_max,
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.idle.locked()
    }

    fn concat(&'static self, parts: &[&[u8]]) -> Bytes {
        let len = parts.iter().map(|p| p.len()).sum();
        if len < RECYCLE_MIN {
            let mut value = Vec::with_capacity(len);
            for part in parts {
                value.extend_from_slice(part);
            }
            return Bytes::from(value);
        }
        let mut buffer = self.take(len);
        for part in parts {
            buffer.extend_from_slice(part);
        }
        Bytes::from_owner(Recycled { buffer, pool: self })
    }

    /// An empty buffer with room for `len` bytes: the smallest idle one
    /// that fits and wastes at most half of itself, or a new one.
    fn take(&self, len: usize) -> Vec<u8> {
        let mut idle = self.idle();
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

    /// Keeps `buffer` for a later value, dropping the oldest idle ones
    /// beyond `idle_max` (outside the lock: that returns memory to the
    /// system).
    fn give(&self, buffer: Vec<u8>) {
        if buffer.capacity() > self.idle_max {
            return;
        }
        let dropped = {
            let mut idle = self.idle();
            idle.push(buffer);
            let mut total: usize = idle.iter().map(|b| b.capacity()).sum();
            let mut cut = 0;
            while total > self.idle_max {
                total -= idle[cut].capacity();
                cut += 1;
            }
            idle.drain(..cut).collect::<Vec<_>>()
        };
        drop(dropped);
    }

    #[cfg(test)]
    fn idle_bytes(&self) -> usize {
        self.idle().iter().map(|b| b.capacity()).sum()
    }
}

/// A value's buffer, given back to its pool when the value's last `Bytes`
/// is dropped.
struct Recycled {
    buffer: Vec<u8>,
    pool: &'static BufferPool,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buffer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool of the test's own (the process's is shared by every test).
    fn pool(idle_max: usize) -> &'static BufferPool {
        Box::leak(Box::new(BufferPool::new(idle_max)))
    }

    #[test]
    fn small_values_are_plain_and_large_ones_come_back_for_reuse() {
        let pool = pool(IDLE_MAX);
        let small = pool.concat(&[b"ab", b"c"]);
        assert_eq!(&small[..], b"abc");
        assert_eq!(pool.idle_bytes(), 0);

        let len = 4 * RECYCLE_MIN;
        let a = vec![1u8; len - 10];
        let value = pool.concat(&[&a, &[2u8; 10]]);
        assert_eq!(value.len(), len);
        assert!(value[..len - 10].iter().all(|&b| b == 1));
        assert!(value[len - 10..].iter().all(|&b| b == 2));
        let ptr = value.as_ptr();
        let reader = value.clone();
        drop(value);
        assert_eq!(pool.idle_bytes(), 0, "a reader still holds it");
        drop(reader);
        assert_eq!(pool.idle_bytes(), len);

        // A smaller value reuses the buffer and shows none of the old bytes.
        let next = pool.concat(&[&vec![9u8; len - 100]]);
        assert_eq!(next.as_ptr(), ptr, "the same memory");
        assert_eq!(next.len(), len - 100);
        assert!(next.iter().all(|&b| b == 9));
        assert_eq!(pool.idle_bytes(), 0);
        drop(next);
        assert_eq!(pool.idle_bytes(), len);

        // A large value less than half its size does not take it.
        let under_half = pool.concat(&[&vec![3u8; len / 2 - 1]]);
        assert_ne!(under_half.as_ptr(), ptr);
        assert_eq!(pool.idle_bytes(), len);
        // Nor does a value larger than it.
        let larger = pool.concat(&[&vec![4u8; len + 1]]);
        assert_ne!(larger.as_ptr(), ptr);
        assert_eq!(pool.idle_bytes(), len);
    }

    #[test]
    fn idle_buffers_are_capped_oldest_first() {
        let len = 2 * RECYCLE_MIN;
        let pool = pool(3 * len);
        let values: Vec<Bytes> = (0..5u8).map(|i| pool.concat(&[&vec![i; len]])).collect();
        let newest = values[4].as_ptr();
        drop(values);
        assert_eq!(pool.idle_bytes(), 3 * len);
        // The newest buffer was kept.
        let reused: Vec<Bytes> = (0..3).map(|_| pool.concat(&[&vec![7u8; len]])).collect();
        assert!(reused.iter().any(|v| v.as_ptr() == newest));
        assert_eq!(pool.idle_bytes(), 0);
        // A buffer larger than the cap is never kept.
        drop(pool.concat(&[&vec![1u8; 4 * len]]));
        assert_eq!(pool.idle_bytes(), 0);
    }
}
