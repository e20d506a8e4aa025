//! Control-plane configuration: flags, each with an environment fallback.

use std::net::SocketAddr;

use clap::Parser;

/// Herald control plane.
#[derive(Debug, Clone, Parser)]
#[command(name = "herald-control-plane", version, about)]
pub struct Config {
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
    /// Address the gRPC API listens on (port 0 picks a free one).
    #[arg(long, env = "HERALD_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Address of the HTTP listener: the JSON API (`/api/...`) and its
    /// OpenAPI document (`/openapi.json`); off when unset. TLS with the
    /// API's certificate when `--tls-cert` is given. Port 0 picks a free
    /// one, printed on stdout.
    #[arg(long, env = "HERALD_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Accept http:// endpoint URLs. For development only.
    #[arg(long, env = "HERALD_ALLOW_HTTP")]
    pub allow_http: bool,
    /// A tenant whose endpoints (subscribed to `herald.*`) get Herald's
    /// operational events about every tenant, beside each tenant's own.
    #[arg(long, env = "HERALD_OPERATOR_TENANT")]
    pub operator_tenant: Option<String>,
    /// Largest accepted event payload, in bytes.
    #[arg(long, env = "HERALD_MAX_PAYLOAD_BYTES", default_value_t = 256 * 1024)]
    pub max_payload_bytes: usize,
    /// How long a publish keeps re-routing to agents before UNAVAILABLE, in ms.
    #[arg(long, env = "HERALD_PUBLISH_RETRY_MS", default_value_t = 5000)]
    pub publish_retry_ms: u64,
    /// TTL of the leader's etcd lease, in seconds: how long the cluster
    /// waits for a leader that died before another replica plans the slots.
    #[arg(long, env = "HERALD_LEADER_TTL_SECS", default_value_t = 5)]
    pub leader_ttl_secs: i64,
    /// When an agent dies holding queues, how long the new owners of its
    /// slots hold newer events back, waiting for it to come back and hand
    /// its queues over (so per-endpoint order holds across the crash).
    /// After that, newer events go first and the dead agent's leftovers
    /// follow, marked late, when it returns.
    #[arg(long, env = "HERALD_DEAD_AGENT_WAIT_SECS", default_value_t = 60)]
    pub dead_agent_wait_secs: u64,
    /// Where to serve Prometheus metrics (`GET /metrics`); off when unset.
    /// Port 0 picks a free port, printed on stdout.
    #[arg(long, env = "HERALD_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Turns access control off: every call is allowed without a key. For
    /// development only; logs a warning at start.
    #[arg(long, env = "HERALD_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// An admin API key (`hk_<id>_<secret>`) to create at start if no key
    /// with its id exists: how the first key gets in.
    #[arg(long, env = "HERALD_BOOTSTRAP_KEY", hide_env_values = true)]
    pub bootstrap_key: Option<crate::access::key::KeyText>,
    /// A file holding the bootstrap key (as `--bootstrap-key`).
    #[arg(long, env = "HERALD_BOOTSTRAP_KEY_FILE")]
    pub bootstrap_key_file: Option<std::path::PathBuf>,
    /// Create a new admin key in etcd, print it, and exit.
    #[arg(long)]
    pub create_admin_key: bool,
    /// PEM certificate chain of the gRPC API: with `--tls-key`, the API
    /// speaks TLS only.
    #[arg(long, env = "HERALD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "HERALD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// This control plane's PEM certificate from the cluster CA: with
    /// `--cluster-key` and `--cluster-ca`, cluster traffic is mutual TLS:
    /// it presents the certificate to agents, and agents' control streams
    /// must present theirs. The API then speaks TLS (with `--tls-cert`, or
    /// this certificate).
    #[arg(long, env = "HERALD_CLUSTER_CERT", requires_all = ["cluster_key", "cluster_ca"])]
    pub cluster_cert: Option<std::path::PathBuf>,
    /// The private key of `--cluster-cert`.
    #[arg(long, env = "HERALD_CLUSTER_KEY", requires = "cluster_cert")]
    pub cluster_key: Option<std::path::PathBuf>,
    /// The cluster CA (PEM).
    #[arg(long, env = "HERALD_CLUSTER_CA", requires = "cluster_cert")]
    pub cluster_ca: Option<std::path::PathBuf>,
    /// Key file sealing endpoint secrets in etcd: lines of
    /// `<id>:<base64 of 32 bytes>`, the current key first, older ones
    /// after (they only open). Without it, secrets are stored in clear.
    #[arg(long, env = "HERALD_SECRETS_KEY_FILE")]
    pub secrets_key_file: Option<std::path::PathBuf>,
    /// Print a new key line for `--secrets-key-file` with this id, and
    /// exit.
    #[arg(long, value_name = "ID")]
    pub new_secrets_key: Option<String>,
    /// Rewrite every endpoint's secrets under the current key of
    /// `--secrets-key-file` (after adding a new key first in the file), and
    /// exit. Safe while Herald runs: each record is compare-and-put.
    #[arg(long, requires = "secrets_key_file")]
    pub reseal_secrets: bool,
    /// Do not serve gRPC reflection.
    #[arg(long, env = "HERALD_NO_REFLECTION")]
    pub no_reflection: bool,
    /// A TOML file of settings (keys are flag names); flags and environment
    /// variables win over it.
    #[arg(long, env = "HERALD_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// Print the effective configuration (secrets masked) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Log format: "pretty" or "json".
    #[arg(long, env = "HERALD_LOG_FORMAT", default_value = "pretty")]
    pub log_format: String,
}
