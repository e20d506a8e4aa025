//! Herald's domain layer: the types and pure functions that the control
//! plane and the agents agree on. Nothing here does I/O or knows gRPC.

#[cfg(feature = "jemalloc")]
pub mod alloc;
#[cfg(feature = "process")]
pub mod config_file;
pub mod envelope;
pub mod filter;
pub mod ids;
pub mod metrics;
pub mod model;
pub mod operational;
pub mod pattern;
#[cfg(feature = "process")]
pub mod process;
pub mod retry;
pub mod signing;
pub mod slot;
#[cfg(feature = "process")]
pub mod telemetry;
pub mod time;
