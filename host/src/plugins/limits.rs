//! The per-call memory limit, and the record of whether a call hit it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::ResourceLimiter;

/// The most table elements one instance may grow to. Rust components use a
/// few hundred; this only stops a runaway.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Refuses linear-memory growth past a byte limit and remembers that it did,
/// so that the trap that follows is reported as a memory limit, not a crash.
#[derive(Debug)]
pub struct MemoryLimiter {
    max_bytes: usize,
    exceeded: Arc<AtomicBool>,
}

impl MemoryLimiter {
    /// A limiter allowing `max_bytes` per memory; `exceeded` is set when a
    /// growth is refused.
    pub fn new(max_bytes: usize, exceeded: Arc<AtomicBool>) -> MemoryLimiter {
        MemoryLimiter {
            max_bytes,
            exceeded,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.exceeded.store(true, Ordering::SeqCst);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
