//! Per-instance resource limits, enforced through wasmtime's
//! [`ResourceLimiter`].
//!
//! Memory growth past the limit is *refused* (the guest sees `memory.grow`
//! return -1), not trapped at once: a guest that handles allocation failure
//! may recover. The refusal is recorded, so if the guest then dies (Rust
//! guests abort on allocation failure), the host reports
//! `memory_limit_exceeded` rather than a bare trap.

use wasmtime::ResourceLimiter;

/// Largest table a guest may grow to (function-pointer tables of real
/// programs hold a few thousand entries). The value is 100,000 elements.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// The limiter installed in every task's store.
pub(crate) struct GuestLimiter {
    memory_limit: usize,
    /// The size a refused growth asked for, if any growth was refused.
    pub(crate) refused_memory: Option<usize>,
}

impl GuestLimiter {
    /// A limiter capping linear memory at `memory_limit` bytes.
    pub(crate) fn new(memory_limit: usize) -> Self {
        GuestLimiter {
            memory_limit,
            refused_memory: None,
        }
    }

    /// The cap on linear memory in bytes.
    pub(crate) fn memory_limit(&self) -> usize {
        self.memory_limit
    }

    /// Changes the cap for the next call of a reused instance.
    pub(crate) fn set_memory_limit(&mut self, memory_limit: usize) {
        self.memory_limit = memory_limit;
    }
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> anyhow::Result<bool> {
        if desired > self.memory_limit {
            self.refused_memory = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> anyhow::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_past_the_limit_is_refused_and_recorded() {
        let mut l = GuestLimiter::new(1 << 20);
        assert!(l.memory_growing(0, 1 << 20, None).unwrap());
        assert!(l.refused_memory.is_none());
        assert!(!l.memory_growing(1 << 20, 2 << 20, None).unwrap());
        assert_eq!(l.refused_memory, Some(2 << 20));
        assert!(!l.table_growing(0, MAX_TABLE_ELEMENTS + 1, None).unwrap());
    }
}
