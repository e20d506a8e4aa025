//! jemalloc, the allocator of Herald's server binaries.
//!
//! Measured against glibc's malloc on the same runs (BENCHMARKS.md), it
//! takes a sixth off the agent's CPU per delivered event (glibc's arena
//! locks and consolidation were 15 % of the agent's samples) and keeps RSS
//! flat through a large drain without periodic trimming: freed pages are
//! returned by a background thread after about a second of disuse.
//!
//! A binary opts in with [`use_jemalloc!`](crate::use_jemalloc); libraries
//! and tests keep the system allocator.

pub use tikv_jemallocator::Jemalloc;

/// jemalloc's settings, NUL-terminated as jemalloc reads them: purge freed
/// pages from one background thread, one second after they were last used,
/// straight back to the system (no lazy "muzzy" stage, whose pages still
/// count in RSS). `_RJEM_MALLOC_CONF` in the environment overrides them.
pub const MALLOC_CONF: &[u8] =
    b"background_thread:true,max_background_threads:1,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// Makes jemalloc, configured by [`MALLOC_CONF`], the global allocator of
/// the binary that invokes it (once, at the crate root).
#[macro_export]
macro_rules! use_jemalloc {
    () => {
        #[global_allocator]
        static ALLOC: $crate::alloc::Jemalloc = $crate::alloc::Jemalloc;

        /// Read by jemalloc when it initialises (a C `const char *`).
        // The one use of `unsafe` outside tests: jemalloc finds its settings
        // by this symbol name, and naming a symbol is an unsafe attribute.
        #[allow(unsafe_code, non_upper_case_globals)]
        #[unsafe(export_name = "_rjem_malloc_conf")]
        static malloc_conf: &u8 = &$crate::alloc::MALLOC_CONF[0];
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn settings_are_one_nul_terminated_string() {
        let conf = super::MALLOC_CONF;
        assert_eq!(conf.last(), Some(&0));
        assert_eq!(conf.iter().filter(|b| **b == 0).count(), 1);
    }
}
