//! Keeps the agent's resident memory close to what it uses.
//!
//! glibc's malloc gives each thread that allocates under contention an
//! arena of its own, up to eight per core, and returns freed memory to the
//! system only from the top of the main heap. An agent's tokio workers and
//! the blocking pool that reads the store spread a drain's short-lived
//! buffers over many arenas, and RSS then climbs with each one that grows.
//! Capping the arenas and trimming now and then keep RSS flat.

use std::time::Duration;

/// Arenas allowed when the operator has not set `MALLOC_ARENA_MAX`.
const ARENAS: i32 = 2;
/// How often freed memory is handed back to the system.
pub const TRIM_EVERY: Duration = Duration::from_secs(1);

/// Caps malloc's arenas (unless `MALLOC_ARENA_MAX` says otherwise). Call
/// before any thread is started.
#[allow(unsafe_code)] // glibc has no safe interface for this.
pub fn cap_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; no thread
        // allocates concurrently this early.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        }
    }
}

/// Returns free memory at the top of, and inside, every arena to the system.
#[allow(unsafe_code)] // glibc has no safe interface for this.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe; it takes each arena's lock.
    unsafe {
        libc::malloc_trim(0);
    }
}
