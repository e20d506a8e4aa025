//! Herald's delivery agent: durable per-endpoint queues and signed HTTP
//! delivery for the slots it owns.

pub mod auth;
pub mod config;
pub mod control;
pub mod dispatcher;
pub mod egress;
pub mod error;
pub mod failing;
pub mod handoff;
pub mod health;
pub mod http;
pub mod ingest;
pub mod members;
pub mod membership;
pub mod metrics;
pub mod operational;
pub mod query;
pub mod server;
pub mod state;
pub mod store;
