//! The bounds of one plugin call, counted over everything the call's store
//! holds, and the record of which bound a call ran into.
//!
//! wasmtime's limits apply per memory and per table by default, and its
//! default counts are generous (10 000 instances, tables and memories per
//! store; a million host resources): a component with several memories, or
//! several module instances each with its own memory, could use its memory
//! limit many times over. Here every bound is a total for the whole call:
//!
//! - linear memory, summed over every memory of every instance;
//! - table elements, summed over every table;
//! - the number of core instances, tables and memories, fixed by the
//!   component's structure and checked as it is instantiated;
//! - resource handles (open files, directory streams, sockets, ...): the
//!   host's resource table and the component model's handle tables.

use std::fmt;
use std::sync::{Arc, OnceLock};

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTableError;

/// The most table elements one call may hold, over all its tables (at most
/// a few MiB). Rust components use a few hundred.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

/// The most core module instances one call may create. A Rust component has
/// three or four (its module and the glue wit-component adds); components
/// linked from several libraries (e.g. componentize-py's) a few dozen.
pub const MAX_INSTANCES: usize = 64;

/// The most tables one call's instances may define together.
pub const MAX_TABLES: usize = 64;

/// The most linear memories one call's instances may define together. A
/// Rust component has one; each memory reserves address space, whatever its
/// size, so their number is bounded apart from their total size.
pub const MAX_MEMORIES: usize = 8;

/// The configurable bounds of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// Linear memory, in MiB, over all the call's memories together.
    pub memory_mib: u64,
    /// Resource handles the call may hold at once.
    pub max_handles: usize,
}

impl CallLimits {
    /// The memory limit in bytes.
    pub fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mib.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
    }
}

/// A bound of the sandbox that a call ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxLimit {
    /// Linear memory over all memories, in MiB.
    Memory {
        /// The limit.
        mib: u64,
    },
    /// Table elements over all tables.
    TableElements {
        /// The limit.
        max: usize,
    },
    /// Core module instances.
    Instances {
        /// The limit.
        max: usize,
    },
    /// Tables.
    Tables {
        /// The limit.
        max: usize,
    },
    /// Linear memories.
    Memories {
        /// The limit.
        max: usize,
    },
    /// Resource handles held at once.
    Handles {
        /// The limit.
        max: usize,
    },
}

impl fmt::Display for SandboxLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SandboxLimit::Memory { mib } => write!(f, "{mib} MiB of memory"),
            SandboxLimit::TableElements { max } => write!(f, "{max} table elements"),
            SandboxLimit::Instances { max } => write!(f, "{max} instances"),
            SandboxLimit::Tables { max } => write!(f, "{max} tables"),
            SandboxLimit::Memories { max } => write!(f, "{max} memories"),
            SandboxLimit::Handles { max } => write!(f, "{max} resource handles"),
        }
    }
}

/// Where a call's limiter records the first bound the call ran into, for
/// the error that follows to be reported as that bound, not as a crash.
pub type LimitRecord = Arc<OnceLock<SandboxLimit>>;

/// The store's [`ResourceLimiter`]: refuses growth of memories and tables
/// past the call's totals, and gives wasmtime the instance, table and
/// memory counts.
#[derive(Debug)]
pub struct CallLimiter {
    limits: CallLimits,
    memory_bytes: usize,
    table_elements: usize,
    hit: LimitRecord,
}

impl CallLimiter {
    /// A limiter for one call within `limits`; `hit` receives the first
    /// bound it refuses.
    pub fn new(limits: CallLimits, hit: LimitRecord) -> CallLimiter {
        CallLimiter {
            limits,
            memory_bytes: 0,
            table_elements: 0,
            hit,
        }
    }

    fn refuse(&self, limit: SandboxLimit) -> wasmtime::Result<bool> {
        // The first refusal is the cause; later ones follow from it.
        let _ = self.hit.set(limit);
        Ok(false)
    }
}

impl ResourceLimiter for CallLimiter {
    // wasmtime asks before creating each memory (`current` 0) and before
    // each growth; the store lives for one call and frees nothing before
    // it ends, so the sum of the growths is the memory in use. A growth
    // that is allowed and then fails stays counted: that errs on the safe
    // side, and `memory_grow_failed` cannot tell which growth failed.
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self
            .memory_bytes
            .saturating_add(desired.saturating_sub(current));
        if total > self.limits.memory_bytes() {
            return self.refuse(SandboxLimit::Memory {
                mib: self.limits.memory_mib,
            });
        }
        self.memory_bytes = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self
            .table_elements
            .saturating_add(desired.saturating_sub(current));
        if total > MAX_TABLE_ELEMENTS {
            return self.refuse(SandboxLimit::TableElements {
                max: MAX_TABLE_ELEMENTS,
            });
        }
        self.table_elements = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// The bound a failed call's `error` shows it ran into, for the bounds
/// wasmtime enforces itself (the limiter records the others): the counts of
/// instances, tables and memories, checked as a component is instantiated,
/// and resource handles, refused by the host's resource table (as a
/// [`ResourceTableError::Full`] trap) or by the component model's handle
/// tables. wasmtime reports the counts only in words; the sandbox tests
/// pin those words, so a wasmtime that changes them fails the tests rather
/// than mislabelling a call.
pub fn limit_in_error(error: &wasmtime::Error, limits: &CallLimits) -> Option<SandboxLimit> {
    if matches!(
        error.downcast_ref::<ResourceTableError>(),
        Some(ResourceTableError::Full)
    ) {
        return Some(SandboxLimit::Handles {
            max: limits.max_handles,
        });
    }
    error.chain().find_map(|cause| {
        let text = cause.to_string();
        if text.contains("store handle limit exceeded") {
            Some(SandboxLimit::Handles {
                max: limits.max_handles,
            })
        } else if text.contains("resource limit exceeded: instance count") {
            Some(SandboxLimit::Instances { max: MAX_INSTANCES })
        } else if text.contains("resource limit exceeded: table count") {
            Some(SandboxLimit::Tables { max: MAX_TABLES })
        } else if text.contains("resource limit exceeded: memory count") {
            Some(SandboxLimit::Memories { max: MAX_MEMORIES })
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    fn limiter(memory_mib: u64) -> (CallLimiter, LimitRecord) {
        let hit = LimitRecord::default();
        let limits = CallLimits {
            memory_mib,
            max_handles: 16,
        };
        (CallLimiter::new(limits, hit.clone()), hit)
    }

    #[test]
    fn memory_is_limited_over_all_memories_together() {
        let (mut limiter, hit) = limiter(32);
        // Two memories of 20 MiB each: each is under the limit alone.
        assert!(limiter.memory_growing(0, 20 * MIB, None).unwrap());
        assert!(!limiter.memory_growing(0, 20 * MIB, None).unwrap());
        assert_eq!(hit.get(), Some(&SandboxLimit::Memory { mib: 32 }));
        // What is left can still be used, by either memory.
        assert!(limiter.memory_growing(0, 12 * MIB, None).unwrap());
        // And then nothing more.
        assert!(
            !limiter
                .memory_growing(20 * MIB, 20 * MIB + 1, None)
                .unwrap()
        );
    }

    #[test]
    fn growth_is_counted_from_the_current_size() {
        let (mut limiter, hit) = limiter(32);
        for mib in 1..=32 {
            assert!(
                limiter
                    .memory_growing((mib - 1) * MIB, mib * MIB, None)
                    .unwrap()
            );
        }
        assert!(!limiter.memory_growing(32 * MIB, 33 * MIB, None).unwrap());
        assert!(hit.get().is_some());
    }

    #[test]
    fn table_elements_are_limited_over_all_tables_together() {
        let (mut limiter, hit) = limiter(32);
        let half = MAX_TABLE_ELEMENTS / 2;
        assert!(limiter.table_growing(0, half, None).unwrap());
        assert!(limiter.table_growing(0, half, None).unwrap());
        assert!(!limiter.table_growing(0, 1, None).unwrap());
        assert_eq!(
            hit.get(),
            Some(&SandboxLimit::TableElements {
                max: MAX_TABLE_ELEMENTS
            })
        );
    }

    #[test]
    fn the_first_bound_hit_is_the_one_reported() {
        let (mut limiter, hit) = limiter(1);
        assert!(
            !limiter
                .table_growing(0, MAX_TABLE_ELEMENTS + 1, None)
                .unwrap()
        );
        assert!(!limiter.memory_growing(0, 2 * MIB, None).unwrap());
        assert!(matches!(
            hit.get(),
            Some(SandboxLimit::TableElements { .. })
        ));
    }

    #[test]
    fn a_full_resource_table_is_a_handle_limit() {
        let limits = CallLimits {
            memory_mib: 1,
            max_handles: 16,
        };
        let error = wasmtime::Error::from(ResourceTableError::Full).context("open-at");
        assert_eq!(
            limit_in_error(&error, &limits),
            Some(SandboxLimit::Handles { max: 16 })
        );
        let other = wasmtime::Error::from(ResourceTableError::NotPresent);
        assert_eq!(limit_in_error(&other, &limits), None);
        assert_eq!(
            limit_in_error(&wasmtime::Error::msg("unreachable"), &limits),
            None
        );
    }
}
