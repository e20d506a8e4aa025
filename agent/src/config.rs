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
    /// A TOML file of settings (keys are flag names); flags and environment
    /// variables win over it.
    #[arg(long, env = "HERALD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration (secrets masked) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// API key with scope `cluster:agent` (or `admin`) for the control
    /// stream, which carries endpoint configuration and secrets.
    #[arg(long, env = "HERALD_API_KEY", hide_env_values = true)]
    pub api_key: Option<ApiKey>,
    /// This agent's PEM certificate from the cluster CA: with
    /// `--cluster-key` and `--cluster-ca`, cluster traffic is mutual TLS.
    /// The agent's services then answer only members, and it presents the
    /// certificate to control planes and other agents.
    #[arg(long, env = "HERALD_CLUSTER_CERT", requires_all = ["cluster_key", "cluster_ca"])]
    pub cluster_cert: Option<PathBuf>,
    /// The private key of `--cluster-cert`.
    #[arg(long, env = "HERALD_CLUSTER_KEY", requires = "cluster_cert")]
    pub cluster_key: Option<PathBuf>,
    /// The cluster CA (PEM).
    #[arg(long, env = "HERALD_CLUSTER_CA", requires = "cluster_cert")]
    pub cluster_ca: Option<PathBuf>,
    /// PEM CA certificate(s) that sign the control planes' TLS
    /// certificates, for `https://` control-plane addresses (default: the
    /// system's roots).
    #[arg(long, env = "HERALD_CONTROL_PLANE_CA")]
    pub control_plane_ca: Option<PathBuf>,
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
    /// Response body bytes kept per attempt in the attempt log.
    #[arg(long, env = "HERALD_RESPONSE_BODY_LIMIT", default_value_t = 4096)]
    pub response_body_limit: usize,
    /// Finished deliveries (and their attempts) are kept this many seconds.
    #[arg(long, env = "HERALD_LOG_RETENTION_SECS", default_value_t = 7 * 24 * 3600)]
    pub log_retention_secs: u64,
    /// At most this many finished deliveries are kept; the oldest go first.
    /// Queued deliveries never count and are never dropped.
    #[arg(long, env = "HERALD_LOG_MAX_DELIVERIES", default_value_t = 1_000_000)]
    pub log_max_deliveries: u64,
    /// At most this many undelivered deliveries (queued or retrying) are
    /// held; past it, new ones are refused with RESOURCE_EXHAUSTED until
    /// delivery catches up (0: no limit). Each held delivery costs about
    /// 350 bytes of memory.
    #[arg(long, env = "HERALD_MAX_UNDELIVERED", default_value_t = 3_000_000)]
    pub max_undelivered: u64,
    /// On SIGTERM, how long to wait for our slots and queues to move to the
    /// other agents before stopping anyway.
    #[arg(long, env = "HERALD_DRAIN_TIMEOUT_SECS", default_value_t = 30)]
    pub drain_timeout_secs: u64,
    /// Where to serve Prometheus metrics (`GET /metrics`); off when unset.
    /// Port 0 picks a free port, printed on stdout.
    #[arg(long, env = "HERALD_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Size of the store's log segments, MiB. Retention frees disk a whole
    /// segment at a time, so smaller segments follow it more closely.
    #[arg(long, env = "HERALD_STORE_SEGMENT_MIB", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub store_segment_mib: u32,
    /// Deliver to plain-http URLs (development only; https otherwise).
    #[arg(long, env = "HERALD_ALLOW_HTTP")]
    pub allow_http: bool,
    /// Networks deliveries may reach although they are not public
    /// (loopback, private, link-local, ...), comma-separated CIDRs such as
    /// "10.20.0.0/16,127.0.0.1". Everything non-public is refused otherwise.
    #[arg(long, env = "HERALD_ALLOW_CIDRS", value_delimiter = ',')]
    pub allow_cidr: Vec<crate::egress::Cidr>,
    /// `herald.endpoint.failing` fires when at least this percent of an
    /// endpoint's attempts over `--failing-window-secs` failed (once per
    /// crossing; re-armed under half of it); 0: never.
    #[arg(long, env = "HERALD_FAILING_THRESHOLD_PERCENT", default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub failing_threshold_percent: u32,
    /// The window of `--failing-threshold-percent`, in seconds.
    #[arg(long, env = "HERALD_FAILING_WINDOW_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub failing_window_secs: u64,
    /// Fewer attempts than this in the window never make an endpoint
    /// failing.
    #[arg(long, env = "HERALD_FAILING_MIN_ATTEMPTS", default_value_t = 10)]
    pub failing_min_attempts: u64,
    /// Log format: "pretty" or "json".
    #[arg(long, env = "HERALD_LOG_FORMAT", default_value = "pretty")]
    pub log_format: String,
}

/// An API key from a flag or the environment: `Debug` never prints it.
#[derive(Clone)]
pub struct ApiKey(pub String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl std::str::FromStr for ApiKey {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(ApiKey(s.trim().to_string()))
    }
}
