//! Test harness: starts real etcd, control-plane and agent processes on
//! ports the OS picked, and real HTTP receivers, and stops all of them when
//! dropped, even when the test panics.

pub mod cluster;
pub mod log;
pub mod metrics;
pub mod ordered_publisher;
pub mod ordering;
pub mod otlp;
pub mod pki;
pub mod process;
pub mod receiver;
pub mod tls;
