//! Herald processes for tests: etcd, control planes and agents.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use herald_proto::v1 as pb;
use herald_proto::v1::{
    access_service_client::AccessServiceClient, catalog_service_client::CatalogServiceClient,
    cluster_service_client::ClusterServiceClient, delivery_service_client::DeliveryServiceClient,
    endpoint_service_client::EndpointServiceClient, publish_service_client::PublishServiceClient,
    tenant_service_client::TenantServiceClient,
};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::process::{Proc, bin, etcd_bin, free_port};
use crate::receiver::Receiver;

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// etcd on loopback, in a temp dir: one member, or a cluster of several.
pub struct Etcd {
    /// Client URLs, comma-separated, as Herald's `--etcd-endpoints` takes them.
    pub url: String,
    /// The admin API key every control plane on this etcd is bootstrapped
    /// with, and agents and clients use.
    pub admin_key: String,
    members: Vec<Option<Proc>>,
    client_addrs: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts a one-member etcd and waits until it serves clients.
    pub fn start() -> anyhow::Result<Etcd> {
        Self::start_cluster(1)
    }

    /// The directory holding every member's data.
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Starts an etcd cluster of `n` members and waits until each serves.
    pub fn start_cluster(n: usize) -> anyhow::Result<Etcd> {
        let mut last_err = None;
        // The ports are picked free, but another process may grab one first.
        for _ in 0..3 {
            match Self::try_start(n) {
                Ok(e) => return Ok(e),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("etcd did not start")))
    }

    fn try_start(n: usize) -> anyhow::Result<Etcd> {
        let dir = tempfile::tempdir()?;
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let mut etcd = Etcd {
            url: String::new(),
            admin_key: new_api_key(),
            members: Vec::new(),
            client_addrs: Vec::new(),
            _dir: dir,
        };
        for (i, (client, peer)) in ports.iter().enumerate() {
            let url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let mut cmd = Command::new(etcd_bin());
            cmd.arg(format!("--name=m{i}"))
                .arg(format!(
                    "--data-dir={}",
                    etcd._dir.path().join(format!("m{i}")).display()
                ))
                .arg(format!("--listen-client-urls={url}"))
                .arg(format!("--advertise-client-urls={url}"))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster={}", initial.join(",")))
                .arg("--initial-cluster-state=new")
                .arg("--log-level=error")
                .arg("--logger=zap");
            etcd.members
                .push(Some(Proc::spawn(&format!("etcd-m{i}"), cmd)?));
            etcd.client_addrs.push(format!("127.0.0.1:{client}"));
        }
        etcd.url = etcd
            .client_addrs
            .iter()
            .map(|a| format!("http://{a}"))
            .collect::<Vec<_>>()
            .join(",");
        etcd.wait_ready()?;
        Ok(etcd)
    }

    /// Process ids of the members still running.
    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().flatten().map(Proc::pid).collect()
    }

    /// SIGKILL member `i`; the others go on (a majority must remain).
    pub fn kill_member(&mut self, i: usize) {
        if let Some(mut p) = self.members.get_mut(i).and_then(Option::take) {
            p.kill9();
        }
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        for (i, addr) in self.client_addrs.iter().enumerate() {
            loop {
                if self.members[i].as_mut().is_some_and(|p| p.exited()) {
                    anyhow::bail!("etcd member {i} exited during start");
                }
                // /health answers once the member has a leader and serves.
                if let Ok(body) = http_get(addr, "/health")
                    && body.contains("\"health\":\"true\"")
                {
                    break;
                }
                if std::time::Instant::now() >= deadline {
                    anyhow::bail!("etcd member {i} not healthy within {START_TIMEOUT:?}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }
}

/// A tiny blocking HTTP GET (etcd's /health), to keep the harness lean.
fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Clears the `OTEL_*` variables the test process may have (a test run
/// must not export to whatever collector the developer's shell names),
/// then sets `env`.
fn isolate_env(cmd: &mut Command, env: &[(&str, &str)]) {
    for (k, _) in std::env::vars() {
        if k.starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
}

/// A fresh API key's text (`hk_<id>_<secret>`), as Herald makes them.
pub fn new_api_key() -> String {
    use base64::Engine as _;
    let id: [u8; 8] = rand::random();
    let secret: [u8; 32] = rand::random();
    format!(
        "hk_{}_{}",
        id.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    )
}

/// A control-plane process.
pub struct ControlPlane {
    /// gRPC URL, `http://127.0.0.1:port`.
    pub url: String,
    /// The admin key it was bootstrapped with.
    pub admin_key: String,
    /// The process.
    pub proc: Proc,
}

impl ControlPlane {
    /// Starts a control plane on a free port, allowing http endpoints.
    pub fn start(etcd: &Etcd, extra: &[&str]) -> anyhow::Result<ControlPlane> {
        Self::start_with_log(etcd, extra, "info,herald_control_plane=debug")
    }

    /// Like [`ControlPlane::start`], logging at `rust_log` (a `RUST_LOG`
    /// filter; benchmarks use `warn` so per-event logs do not skew them).
    pub fn start_with_log(
        etcd: &Etcd,
        extra: &[&str],
        rust_log: &str,
    ) -> anyhow::Result<ControlPlane> {
        Self::spawn(etcd, extra, rust_log, &[])
    }

    /// Like [`ControlPlane::start`], serving TLS with `identity`: its URL is
    /// `https://`, and [`Clients::connect_tls`] reaches it.
    pub fn start_tls(
        etcd: &Etcd,
        identity: &crate::pki::Issued,
        extra: &[&str],
    ) -> anyhow::Result<ControlPlane> {
        Self::start_tls_with_log(etcd, identity, extra, "info,herald_control_plane=debug")
    }

    /// Like [`ControlPlane::start_tls`], logging at `rust_log`.
    pub fn start_tls_with_log(
        etcd: &Etcd,
        identity: &crate::pki::Issued,
        extra: &[&str],
        rust_log: &str,
    ) -> anyhow::Result<ControlPlane> {
        let cert = identity.cert.to_string_lossy().into_owned();
        let key = identity.key.to_string_lossy().into_owned();
        let mut args = vec!["--tls-cert", cert.as_str(), "--tls-key", key.as_str()];
        args.extend_from_slice(extra);
        let mut cp = Self::spawn(etcd, &args, rust_log, &[])?;
        cp.url = cp.url.replacen("http://", "https://", 1);
        Ok(cp)
    }

    /// Like [`ControlPlane::start`], with extra environment variables
    /// (`OTEL_*` to export traces).
    pub fn start_with_env(
        etcd: &Etcd,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<ControlPlane> {
        Self::spawn(etcd, extra, "info,herald_control_plane=debug", env)
    }

    /// Like [`ControlPlane::start_with_log`], waiting up to `limit` for it
    /// to serve (a large config takes a while to load).
    pub fn start_within(
        etcd: &Etcd,
        extra: &[&str],
        rust_log: &str,
        limit: Duration,
    ) -> anyhow::Result<ControlPlane> {
        Self::spawn_within(&etcd.url, &etcd.admin_key, extra, rust_log, &[], limit)
    }

    /// Like [`ControlPlane::start_within`], given etcd's URL and admin key
    /// (owned values, for a blocking thread).
    pub fn start_on(
        etcd_url: &str,
        admin_key: &str,
        extra: &[&str],
        rust_log: &str,
        limit: Duration,
    ) -> anyhow::Result<ControlPlane> {
        Self::spawn_within(etcd_url, admin_key, extra, rust_log, &[], limit)
    }

    fn spawn(
        etcd: &Etcd,
        extra: &[&str],
        rust_log: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<ControlPlane> {
        Self::spawn_within(
            &etcd.url,
            &etcd.admin_key,
            extra,
            rust_log,
            env,
            START_TIMEOUT,
        )
    }

    fn spawn_within(
        etcd_url: &str,
        admin_key: &str,
        extra: &[&str],
        rust_log: &str,
        env: &[(&str, &str)],
        limit: Duration,
    ) -> anyhow::Result<ControlPlane> {
        let mut cmd = Command::new(bin("herald-control-plane"));
        cmd.arg("--etcd-endpoints")
            .arg(etcd_url)
            .arg("--listen=127.0.0.1:0")
            .arg("--allow-http")
            .args(extra)
            .env("RUST_LOG", rust_log)
            .env("HERALD_BOOTSTRAP_KEY", admin_key);
        isolate_env(&mut cmd, env);
        let mut proc = Proc::spawn("control-plane", cmd)?;
        let addr = proc.wait_for_line("herald-control-plane listening on ", limit)?;
        Ok(ControlPlane {
            url: format!("http://{addr}"),
            admin_key: admin_key.to_string(),
            proc,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// gRPC clients for this replica, with the admin key.
    pub async fn clients(&self) -> anyhow::Result<Clients> {
        Clients::connect(&self.url, Some(&self.admin_key)).await
    }
}

/// An agent process with its data dir (kept across restarts).
pub struct Agent {
    /// The process, if running.
    pub proc: Option<Proc>,
    /// Ingest address of the current incarnation.
    pub addr: String,
    data_dir: PathBuf,
    etcd_url: String,
    api_key: String,
    control_planes: String,
    extra: Vec<String>,
    rust_log: String,
    env: Vec<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl Agent {
    /// Starts an agent with a fresh data dir, following `control_planes`.
    pub fn start(
        etcd: &Etcd,
        control_planes: &[&ControlPlane],
        extra: &[&str],
    ) -> anyhow::Result<Agent> {
        Self::start_with_log(etcd, control_planes, extra, "info,herald_agent=debug")
    }

    /// Like [`Agent::start`], logging at `rust_log` (a `RUST_LOG` filter).
    pub fn start_with_log(
        etcd: &Etcd,
        control_planes: &[&ControlPlane],
        extra: &[&str],
        rust_log: &str,
    ) -> anyhow::Result<Agent> {
        Self::spawn(etcd, control_planes, extra, rust_log, &[])
    }

    /// Like [`Agent::start`], with extra environment variables (`OTEL_*`
    /// to export traces), kept across restarts.
    pub fn start_with_env(
        etcd: &Etcd,
        control_planes: &[&ControlPlane],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Agent> {
        Self::spawn(etcd, control_planes, extra, "info,herald_agent=debug", env)
    }

    fn spawn(
        etcd: &Etcd,
        control_planes: &[&ControlPlane],
        extra: &[&str],
        rust_log: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Agent> {
        let dir = tempfile::tempdir()?;
        let mut agent = Agent {
            proc: None,
            addr: String::new(),
            data_dir: dir.path().to_path_buf(),
            etcd_url: etcd.url.clone(),
            api_key: etcd.admin_key.clone(),
            control_planes: control_planes
                .iter()
                .map(|c| c.url.as_str())
                .collect::<Vec<_>>()
                .join(","),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            rust_log: rust_log.to_string(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            _dir: Some(dir),
        };
        agent.restart()?;
        Ok(agent)
    }

    /// Starts the agent again on the same data dir (after `kill9`).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new(bin("herald-agent"));
        cmd.arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--etcd-endpoints")
            .arg(&self.etcd_url)
            .arg("--control-plane")
            .arg(&self.control_planes)
            .arg("--listen=127.0.0.1:0")
            .arg("--lease-ttl-secs=5")
            // Receivers here are plain-http and on loopback, which the
            // egress guard refuses unless allowed. A test that passes its
            // own --allow-cidr gets only that.
            .arg("--allow-http")
            .args(
                (!self.extra.iter().any(|a| a.starts_with("--allow-cidr")))
                    .then_some("--allow-cidr=127.0.0.0/8,::1"),
            )
            .args(&self.extra)
            .env("RUST_LOG", &self.rust_log)
            .env("HERALD_API_KEY", &self.api_key);
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        isolate_env(&mut cmd, &env);
        let mut proc = Proc::spawn("agent", cmd)?;
        self.addr = proc.wait_for_line("herald-agent listening on ", START_TIMEOUT)?;
        self.proc = Some(proc);
        Ok(())
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// Its data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// SIGTERM the agent (it drains) and wait for it to exit; false if it
    /// did not within `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let done = self.proc.as_mut().is_some_and(|p| p.terminate(timeout));
        if done {
            self.proc = None;
        }
        done
    }

    /// SIGKILL the agent.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }
}

/// Adds `authorization: Bearer <key>` to every call.
#[derive(Clone)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl Bearer {
    /// With `key`, or no header at all.
    pub fn new(key: Option<&str>) -> anyhow::Result<Bearer> {
        Ok(Bearer(match key {
            Some(k) => Some(format!("Bearer {k}").parse()?),
            None => None,
        }))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A channel that sends a key.
pub type Ch = InterceptedService<Channel, Bearer>;

/// Typed gRPC clients of one control plane.
#[derive(Clone)]
pub struct Clients {
    /// Event types.
    pub catalog: CatalogServiceClient<Ch>,
    /// Tenants.
    pub tenants: TenantServiceClient<Ch>,
    /// Endpoints.
    pub endpoints: EndpointServiceClient<Ch>,
    /// Publishing.
    pub publish: PublishServiceClient<Ch>,
    /// The delivery log, resends and statistics.
    pub deliveries: DeliveryServiceClient<Ch>,
    /// Cluster view and drain.
    pub cluster: ClusterServiceClient<Ch>,
    /// API keys.
    pub access: AccessServiceClient<Ch>,
}

impl Clients {
    /// Connects to `url`, sending `key` (or no key) with every call.
    pub async fn connect(url: &str, key: Option<&str>) -> anyhow::Result<Clients> {
        let ch = Channel::from_shared(url.to_string())?.connect().await?;
        Ok(Self::on(ch, Bearer::new(key)?))
    }

    /// Connects to an `https://` `url` whose certificate `ca` signs.
    pub async fn connect_tls(
        url: &str,
        key: Option<&str>,
        ca: &std::path::Path,
    ) -> anyhow::Result<Clients> {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(ca)?));
        let ch = Channel::from_shared(url.to_string())?
            .tls_config(tls)?
            .connect()
            .await?;
        Ok(Self::on(ch, Bearer::new(key)?))
    }

    /// Clients over `ch` sending `bearer`.
    pub fn on(ch: Channel, bearer: Bearer) -> Clients {
        let ch = InterceptedService::new(ch, bearer);
        Clients {
            catalog: CatalogServiceClient::new(ch.clone()),
            tenants: TenantServiceClient::new(ch.clone()),
            endpoints: EndpointServiceClient::new(ch.clone()),
            publish: PublishServiceClient::new(ch.clone()),
            deliveries: DeliveryServiceClient::new(ch.clone()),
            cluster: ClusterServiceClient::new(ch.clone()),
            access: AccessServiceClient::new(ch),
        }
    }

    /// Creates an event type.
    pub async fn event_type(&mut self, name: &str) -> anyhow::Result<pb::EventType> {
        Ok(self
            .catalog
            .create_event_type(pb::CreateEventTypeRequest {
                name: name.into(),
                group: name.split('.').next().unwrap_or_default().into(),
                ..Default::default()
            })
            .await?
            .into_inner())
    }

    /// Creates a tenant.
    pub async fn tenant(&mut self, id: &str) -> anyhow::Result<pb::Tenant> {
        Ok(self
            .tenants
            .create_tenant(pb::CreateTenantRequest {
                id: id.into(),
                name: String::new(),
            })
            .await?
            .into_inner())
    }

    /// Creates an enabled endpoint of `tenant` at `url` for `types`, with a
    /// test-speed retry schedule (50 retries, 500 ms apart).
    pub async fn endpoint(
        &mut self,
        tenant: &str,
        url: &str,
        types: &[&str],
    ) -> anyhow::Result<pb::CreateEndpointResponse> {
        self.endpoint_with_retry(tenant, url, types, vec![500; 50])
            .await
    }

    /// Creates an enabled endpoint with the given retry delays (ms).
    pub async fn endpoint_with_retry(
        &mut self,
        tenant: &str,
        url: &str,
        types: &[&str],
        delays_ms: Vec<u32>,
    ) -> anyhow::Result<pb::CreateEndpointResponse> {
        Ok(self
            .endpoints
            .create_endpoint(pb::CreateEndpointRequest {
                tenant_id: tenant.into(),
                spec: Some(pb::EndpointSpec {
                    name: "test endpoint".into(),
                    url: url.into(),
                    enabled: true,
                    event_types: types.iter().map(|s| s.to_string()).collect(),
                    retry: Some(pb::RetryPolicy { delays_ms }),
                    ..Default::default()
                }),
            })
            .await?
            .into_inner())
    }

    /// Enables endpoint `ep` of tenant `acme` (as it was read: its spec
    /// and revision).
    pub async fn enable(&mut self, ep: &pb::Endpoint) -> anyhow::Result<()> {
        let mut spec = ep.spec.clone().unwrap_or_default();
        spec.enabled = true;
        self.endpoints
            .update_endpoint(pb::UpdateEndpointRequest {
                tenant_id: "acme".into(),
                id: ep.id.clone(),
                spec: Some(spec),
                expected_revision: ep.revision,
            })
            .await?;
        Ok(())
    }

    /// Turns endpoint `id` of `tenant` on or off as it is now (its current
    /// spec and revision), keeping the rest of its spec.
    pub async fn set_enabled(
        &mut self,
        tenant: &str,
        id: &str,
        enabled: bool,
    ) -> anyhow::Result<()> {
        let ep = self
            .endpoints
            .get_endpoint(pb::GetEndpointRequest {
                tenant_id: tenant.into(),
                id: id.into(),
            })
            .await?
            .into_inner();
        let mut spec = ep.spec.unwrap_or_default();
        spec.enabled = enabled;
        self.endpoints
            .update_endpoint(pb::UpdateEndpointRequest {
                tenant_id: tenant.into(),
                id: id.into(),
                spec: Some(spec),
                expected_revision: ep.revision,
            })
            .await?;
        Ok(())
    }

    /// Publishes `data` as `event_type` for `tenant` with an idempotency key.
    pub async fn publish(
        &mut self,
        tenant: &str,
        event_type: &str,
        data: serde_json::Value,
        key: &str,
    ) -> Result<pb::PublishResponse, tonic::Status> {
        Ok(self
            .publish
            .publish(pb::PublishRequest {
                tenant_id: tenant.into(),
                event_type: event_type.into(),
                payload_json: data.to_string(),
                idempotency_key: key.into(),
                ..Default::default()
            })
            .await?
            .into_inner())
    }
    /// Publishes `{"seq": n}` as `order.created` for tenant `acme`, with
    /// idempotency key `k{n}`, for each n in `seqs`, one after another;
    /// returns how many endpoints each matched.
    pub async fn publish_seqs(
        &mut self,
        seqs: std::ops::Range<u64>,
    ) -> Result<Vec<u32>, tonic::Status> {
        let mut matched = Vec::new();
        for seq in seqs {
            let key = format!("k{seq}");
            let data = serde_json::json!({ "seq": seq });
            matched.push(
                self.publish("acme", "order.created", data, &key)
                    .await?
                    .endpoints_matched,
            );
        }
        Ok(matched)
    }
}

/// etcd, one control plane and one agent: the smallest real cluster.
pub struct Cluster {
    /// The agent (field order: dropped first).
    pub agent: Agent,
    /// The control plane.
    pub cp: ControlPlane,
    /// etcd.
    pub etcd: Etcd,
    /// Clients of `cp`.
    pub api: Clients,
}

impl Cluster {
    /// Starts etcd, a control plane and an agent, and waits until the agent
    /// owns the slots.
    pub async fn start() -> anyhow::Result<Cluster> {
        Self::start_with(&[]).await
    }

    /// Like [`Cluster::start`], with extra agent flags.
    pub async fn start_with(agent_flags: &[&str]) -> anyhow::Result<Cluster> {
        let etcd = Etcd::start()?;
        let cp = ControlPlane::start(&etcd, &[])?;
        let agent = Agent::start(&etcd, &[&cp], agent_flags)?;
        let api = cp.clients().await?;
        Ok(Cluster {
            agent,
            cp,
            etcd,
            api,
        })
    }

    /// A cluster with event type `event_type` and tenant `acme`, and a
    /// fresh receiver.
    pub async fn with_receiver(event_type: &str) -> anyhow::Result<(Cluster, Receiver)> {
        let mut c = Cluster::start().await?;
        c.api.event_type(event_type).await?;
        c.api.tenant("acme").await?;
        Ok((c, Receiver::start().await))
    }

    /// A cluster with event type `event_type`, tenant `acme` and one enabled
    /// endpoint of it for `patterns`, at `path` on a fresh receiver.
    pub async fn with_endpoint(
        event_type: &str,
        path: &str,
        patterns: &[&str],
    ) -> anyhow::Result<(Cluster, Receiver, pb::CreateEndpointResponse)> {
        let (mut c, receiver) = Cluster::with_receiver(event_type).await?;
        let created = c
            .api
            .endpoint("acme", &receiver.url(path), patterns)
            .await?;
        Ok((c, receiver, created))
    }
}
