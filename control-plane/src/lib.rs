//! Herald's control plane: serves the public gRPC API, keeps endpoint config
//! in etcd, mirrors it in memory through a watch, plans the slot map, and
//! routes each publish to the agents that own the matched endpoints.

pub mod access;
pub mod agent_clients;
pub mod api;
pub mod coalesce;
pub mod config;
pub mod convert;
pub mod delivery_log;
pub mod error;
pub mod health;
pub mod json_api;
pub mod leader;
pub mod metrics;
pub mod router;
pub mod sealing;
pub mod server;
pub mod slots;
pub mod store;
pub mod validate;
pub mod view;
pub mod watch;
