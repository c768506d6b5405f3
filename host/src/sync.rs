//! Concurrency plumbing every layer shares: one way to take a lock, and
//! [`BoxFuture`], the future async trait methods return.
//!
//! Prism's locks guard plain data that every writer leaves consistent
//! between statements, so a lock poisoned by a panicking holder is still
//! safe to use: a panic in one request must not turn every later request
//! into a second panic. [`MutexExt::locked`], [`RwLockExt::read_locked`]
//! and [`RwLockExt::write_locked`] take a lock and, if it is poisoned, use
//! it anyway.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Locking a `Mutex` that recovers from poisoning (see the module docs).
pub trait MutexExt<T: ?Sized> {
    /// Locks the mutex.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> MutexExt<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Locking a `RwLock` that recovers from poisoning (see the module docs).
pub trait RwLockExt<T: ?Sized> {
    /// Shares the lock for reading.
    fn read_locked(&self) -> RwLockReadGuard<'_, T>;
    /// Takes the lock for writing.
    fn write_locked(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T: ?Sized> RwLockExt<T> for RwLock<T> {
    fn read_locked(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_locked(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_lock_poisoned_by_a_panicking_holder_is_still_usable() {
        let mutex = Arc::new(Mutex::new(1));
        let rwlock = Arc::new(RwLock::new(2));
        let (m, r) = (mutex.clone(), rwlock.clone());
        let panicked = std::thread::spawn(move || {
            let _m = m.lock().unwrap();
            let _r = r.write().unwrap();
            panic!("a holder panics");
        })
        .join();
        assert!(panicked.is_err());
        assert!(mutex.is_poisoned() && rwlock.is_poisoned());
        *mutex.locked() += 1;
        *rwlock.write_locked() += 1;
        assert_eq!(*mutex.locked(), 2);
        assert_eq!(*rwlock.read_locked(), 3);
    }
}
