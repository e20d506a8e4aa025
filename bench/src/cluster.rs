//! The Herald cluster under test: etcd, one control plane and the agents,
//! started through the integration-test harness (so every process dies with
//! this handle, on success, error or panic), and the config a run needs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use herald_proto::v1 as pb;
use herald_tests::cluster::{Agent, Clients, ControlPlane, Etcd};

use crate::procstat::{self, Sample};
use crate::receiver::Receiver;

/// Log filter of the Herald processes: per-event debug lines would measure
/// the logger.
const RUST_LOG: &str = "warn";

/// When set, the control plane runs with `--insecure-no-auth`.
pub static AUTH_OFF: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// When set, cluster traffic is mutual TLS and the API speaks TLS, with
/// certificates made for the run.
pub static TLS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// When set, the control plane serves the JSON API and the publishers use
/// it instead of gRPC.
pub static HTTP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// When not 0, each agent's `--max-concurrency`.
pub static AGENT_MAX_CONCURRENCY: AtomicUsize = AtomicUsize::new(0);

/// The tenant every benchmark endpoint belongs to.
pub const TENANT: &str = "bench";

/// A running cluster; dropping it kills every process (agents first).
pub struct Cluster {
    /// The agents (dropped first: field order).
    pub agents: Vec<Agent>,
    /// Agents' environment (cluster certificates under `--tls`).
    agent_env: Vec<(String, String)>,
    /// The certificates of a `--tls` run (kept while it runs).
    _pki: Option<herald_tests::pki::Pki>,
    /// The control plane.
    pub cp: ControlPlane,
    /// etcd.
    pub etcd: Etcd,
    /// gRPC clients of the control plane.
    pub api: Clients,
    /// The JSON API, when the run publishes over HTTP.
    pub http: Option<crate::publish::HttpApi>,
}

/// A Herald process to watch: its role and pid.
#[derive(Debug, Clone)]
pub struct Watched {
    /// "etcd", "control-plane", "agent-0", …
    pub name: String,
    /// The OS process id.
    pub pid: u32,
}

fn start_agent(etcd: &Etcd, cp: &ControlPlane, env: &[(String, String)]) -> anyhow::Result<Agent> {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Agent::start_with_env(etcd, &[cp], &[], &env).context("start agent")
}

impl Cluster {
    /// Starts etcd, a control plane and `agents` agents on loopback.
    pub async fn start(agents: usize) -> anyhow::Result<Cluster> {
        let etcd = Etcd::start().context("start etcd")?;
        let mut cp_args: Vec<String> = Vec::new();
        if AUTH_OFF.load(Ordering::Relaxed) {
            cp_args.push("--insecure-no-auth".into());
        }
        let http = HTTP.load(Ordering::Relaxed);
        if http {
            anyhow::ensure!(
                !TLS.load(Ordering::Relaxed),
                "--http with --tls is not supported"
            );
            cp_args.push("--http-listen=127.0.0.1:0".into());
        }
        let mut agent_env = vec![("RUST_LOG".to_string(), RUST_LOG.to_string())];
        match AGENT_MAX_CONCURRENCY.load(Ordering::Relaxed) {
            0 => {}
            n => agent_env.push(("HERALD_MAX_CONCURRENCY".into(), n.to_string())),
        }
        let (pki, cp, api) = if TLS.load(Ordering::Relaxed) {
            let pki = herald_tests::pki::Pki::new("bench")?;
            let member = pki.issue("member")?;
            let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
            let files = [path(&member.cert), path(&member.key), path(&pki.ca)];
            for (flag, file) in ["--cluster-cert", "--cluster-key", "--cluster-ca"]
                .iter()
                .zip(&files)
            {
                cp_args.push(flag.to_string());
                cp_args.push(file.clone());
            }
            for (var, file) in [
                "HERALD_CLUSTER_CERT",
                "HERALD_CLUSTER_KEY",
                "HERALD_CLUSTER_CA",
            ]
            .iter()
            .zip(&files)
            {
                agent_env.push((var.to_string(), file.clone()));
            }
            let args: Vec<&str> = cp_args.iter().map(String::as_str).collect();
            let cp = ControlPlane::start_tls_with_log(&etcd, &member, &args, RUST_LOG)
                .context("start control plane")?;
            let api = Clients::connect_tls(&cp.url, Some(&cp.admin_key), &pki.ca).await?;
            (Some(pki), cp, api)
        } else {
            let args: Vec<&str> = cp_args.iter().map(String::as_str).collect();
            let cp = ControlPlane::start_with_log(&etcd, &args, RUST_LOG)
                .context("start control plane")?;
            let api = cp.clients().await?;
            (None, cp, api)
        };
        let mut started = Vec::new();
        for _ in 0..agents.max(1) {
            started.push(start_agent(&etcd, &cp, &agent_env)?);
        }
        let http = if http {
            let addr = cp
                .proc
                .seen_line("herald-control-plane http on ")
                .context("the control plane printed no http address")?;
            Some(crate::publish::HttpApi::new(
                format!("http://{addr}"),
                cp.admin_key.clone(),
            ))
        } else {
            None
        };
        let mut cluster = Cluster {
            http,
            agent_env,
            _pki: pki,
            agents: started,
            cp,
            etcd,
            api,
        };
        cluster.wait_settled().await?;
        Ok(cluster)
    }

    /// How publishers reach the control plane in this run.
    pub fn transport(&self) -> crate::publish::Transport {
        crate::publish::Transport {
            grpc: self.api.clone(),
            http: self.http.clone(),
        }
    }

    /// Starts one more control plane on this etcd, as the first was, giving
    /// it `limit` to load the config and serve. The wait runs on a blocking
    /// thread, so a stop signal still ends the run meanwhile.
    pub async fn start_control_plane(&self, limit: Duration) -> anyhow::Result<ControlPlane> {
        let mut args: Vec<&'static str> = Vec::new();
        if AUTH_OFF.load(Ordering::Relaxed) {
            args.push("--insecure-no-auth");
        }
        let (url, key) = (self.etcd.url.clone(), self.etcd.admin_key.clone());
        tokio::task::spawn_blocking(move || {
            ControlPlane::start_on(&url, &key, &args, RUST_LOG, limit)
        })
        .await?
    }

    /// Starts one more agent (its slots then move to it).
    pub async fn add_agent(&mut self) -> anyhow::Result<()> {
        let agent = start_agent(&self.etcd, &self.cp, &self.agent_env)?;
        self.agents.push(agent);
        Ok(())
    }

    /// Waits until the slot map spreads the slots over every agent and no
    /// handoff is in progress, so no run starts in the middle of a move.
    async fn wait_settled(&mut self) -> anyhow::Result<()> {
        self.wait_settled_view(Duration::from_secs(30))
            .await
            .map(|_| ())
    }

    /// Like `wait_settled`, within `limit`; returns the settled view.
    pub async fn wait_settled_view(&mut self, limit: Duration) -> anyhow::Result<pb::Cluster> {
        let deadline = Instant::now() + limit;
        loop {
            let c = self
                .api
                .cluster
                .get_cluster(pb::GetClusterRequest {})
                .await?
                .into_inner();
            let owning = c.agents.iter().filter(|a| a.slots > 0).count();
            if owning == self.agents.len() && c.handoffs_in_progress == 0 {
                return Ok(c);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the slot map did not settle within {limit:?} ({owning} of {} agents own slots, {} handoffs)",
                self.agents.len(),
                c.handoffs_in_progress
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// etcd, the control plane and each agent, with their pids.
    pub fn processes(&self) -> Vec<Watched> {
        let mut out: Vec<Watched> = self
            .etcd
            .pids()
            .into_iter()
            .map(|pid| Watched {
                name: "etcd".into(),
                pid,
            })
            .collect();
        out.push(Watched {
            name: "control-plane".into(),
            pid: self.cp.pid(),
        });
        for (i, a) in self.agents.iter().enumerate() {
            if let Some(pid) = a.pid() {
                out.push(Watched {
                    name: format!("agent-{i}"),
                    pid,
                });
            }
        }
        out
    }

    /// Counters of every watched process, in [`Cluster::processes`] order.
    pub fn sample(&self) -> Vec<(Watched, Sample)> {
        self.processes()
            .into_iter()
            .map(|w| {
                let s = procstat::sample(w.pid);
                (w, s)
            })
            .collect()
    }

    /// Creates a `/warmup` endpoint of the tenant, publishes one event to
    /// it and waits for it to arrive: the agents own their slots and the
    /// whole path works before anything is measured.
    pub async fn warm_up(&mut self, receiver: &Receiver) -> anyhow::Result<()> {
        self.api.event_type("warmup.created").await?;
        self.create_endpoint(receiver.url("/warmup"), "warmup.created".into())
            .await?;
        self.api
            .publish(
                TENANT,
                "warmup.created",
                serde_json::json!({"seq": 0}),
                "warmup",
            )
            .await
            .context("warm-up publish")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while receiver.warmups() == 0 {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the warm-up event did not arrive within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Creates one enabled endpoint (default retry schedule) for `event_type`.
    pub async fn create_endpoint(&mut self, url: String, event_type: String) -> anyhow::Result<()> {
        create_endpoint(&mut self.api, url, event_type).await
    }
}

async fn create_endpoint(api: &mut Clients, url: String, event_type: String) -> anyhow::Result<()> {
    let spec = pb::EndpointSpec {
        name: "bench".into(),
        url,
        enabled: true,
        event_types: vec![event_type],
        ..Default::default()
    };
    create_spec(api, spec).await
}

async fn create_spec(api: &mut Clients, spec: pb::EndpointSpec) -> anyhow::Result<()> {
    api.endpoints
        .create_endpoint(pb::CreateEndpointRequest {
            tenant_id: TENANT.into(),
            spec: Some(spec),
        })
        .await
        .context("create endpoint")?;
    Ok(())
}

/// Runs `make(i)` for i in 0..n, `parallel` at a time, each with its own
/// client clone; prints progress for long runs.
async fn for_each_parallel<F, Fut>(
    api: &Clients,
    n: usize,
    parallel: usize,
    what: &str,
    make: F,
) -> anyhow::Result<()>
where
    F: Fn(Clients, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let make = Arc::new(make);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..parallel.max(1) {
        let (next, make, api) = (next.clone(), make.clone(), api.clone());
        let what = what.to_string();
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                make(api.clone(), i).await?;
                if (i + 1) % 10_000 == 0 {
                    eprintln!(
                        "herald-bench: {} {what} created ({:.0}/s)",
                        i + 1,
                        (i + 1) as f64 / started.elapsed().as_secs_f64()
                    );
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

/// Creates event types `t{i}.created` for i in 0..n.
pub async fn create_event_types(api: &Clients, n: usize, parallel: usize) -> anyhow::Result<()> {
    for_each_parallel(api, n, parallel, "event types", |mut api, i| async move {
        api.event_type(&format!("t{i}.created")).await.map(|_| ())
    })
    .await
}

/// How the benchmark endpoints are set up.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    /// One event type for all; None: endpoint i takes `t{i}.created`.
    pub event_type: Option<String>,
    /// Events per request (0 or 1: one).
    pub chunk_size: u32,
    /// Created disabled, queueing what is published meanwhile (a backlog
    /// builds up until [`enable_all`]).
    pub queue_disabled: bool,
}

/// Creates endpoints `/ep{i}` on `receiver` for i in 0..n, shaped by `shape`.
pub async fn create_endpoints(
    api: &Clients,
    receiver: &Receiver,
    n: usize,
    parallel: usize,
    shape: &Shape,
) -> anyhow::Result<()> {
    let base = receiver.url("/ep");
    let shape = shape.clone();
    for_each_parallel(api, n, parallel, "endpoints", move |mut api, i| {
        let url = format!("{base}{i}");
        let ty = shape
            .event_type
            .clone()
            .unwrap_or_else(|| format!("t{i}.created"));
        let spec = pb::EndpointSpec {
            name: "bench".into(),
            url,
            enabled: !shape.queue_disabled,
            queue_while_disabled: shape.queue_disabled,
            event_types: vec![ty],
            chunk_size: shape.chunk_size,
            ..Default::default()
        };
        async move { create_spec(&mut api, spec).await }
    })
    .await
}

/// Enables every endpoint of the tenant, `parallel` at a time.
pub async fn enable_all(api: &Clients, parallel: usize) -> anyhow::Result<()> {
    let all = api
        .clone()
        .endpoints
        .list_endpoints(pb::ListEndpointsRequest {
            tenant_id: TENANT.into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .endpoints;
    let all = Arc::new(all);
    let n = all.len();
    for_each_parallel(api, n, parallel, "endpoints enabled", move |mut api, i| {
        let ep = all[i].clone();
        async move {
            let mut spec = ep.spec.clone().unwrap_or_default();
            spec.enabled = true;
            api.endpoints
                .update_endpoint(pb::UpdateEndpointRequest {
                    tenant_id: TENANT.into(),
                    id: ep.id.clone(),
                    spec: Some(spec),
                    expected_revision: ep.revision,
                })
                .await
                .context("enable endpoint")?;
            Ok(())
        }
    })
    .await
}
