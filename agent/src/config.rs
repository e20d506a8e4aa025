//! Agent configuration: flags, each with an environment fallback.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// Herald delivery agent.
#[derive(Debug, Clone, Parser)]
#[command(name = "herald-agent", version, about)]
pub struct Config {
    /// Directory of the durable store and the agent's id.
    #[arg(long, env = "HERALD_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Control-plane gRPC addresses, comma-separated; tried in turn.
    #[arg(
        long,
        env = "HERALD_CONTROL_PLANE",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:50051"
    )]
    pub control_plane: Vec<String>,
    /// etcd endpoints, comma-separated.
    #[arg(
        long,
        env = "HERALD_ETCD_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    pub etcd_endpoints: Vec<String>,
    /// Prefix of every key Herald writes in etcd.
    #[arg(long, env = "HERALD_ETCD_PREFIX", default_value = "/herald")]
    pub etcd_prefix: String,
    /// Address the ingest service listens on (port 0 picks a free one).
    #[arg(long, env = "HERALD_LISTEN", default_value = "127.0.0.1:50061")]
    pub listen: SocketAddr,
    /// Address control planes use to reach us; defaults to the bound address.
    #[arg(long, env = "HERALD_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,
    /// TTL of the membership lease, in seconds.
    #[arg(long, env = "HERALD_LEASE_TTL_SECS", default_value_t = 10)]
    pub lease_ttl_secs: i64,
    /// Most HTTP requests in flight over all endpoints.
    #[arg(long, env = "HERALD_MAX_CONCURRENCY", default_value_t = 512)]
    pub max_concurrency: usize,
    /// Log format: "pretty" or "json".
    #[arg(long, env = "HERALD_LOG_FORMAT", default_value = "pretty")]
    pub log_format: String,
}
