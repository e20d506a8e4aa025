//! Wiring: open the store, serve ingest, register, follow the control plane,
//! deliver.

use std::net::SocketAddr;
use std::time::Duration;

use herald_proto::v1::agent_ingest_server::AgentIngestServer;
use herald_proto::v1::agent_query_server::AgentQueryServer;
use herald_shared::model::AgentRecord;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::control::ControlLoop;
use crate::dispatcher::{DispatchConfig, Dispatcher};
use crate::handoff::Handoff;
use crate::ingest::Ingest;
use crate::query::Query;
use crate::state::AgentState;
use crate::store::{DEDUP_WINDOW_MS, Retention, Store};

/// Largest `Ingest` request decoded: a share of one delivery bigger than
/// the control plane's parts (see `AgentIngestServer` below).
const INGEST_MAX_MESSAGE: usize = 64 << 20;

/// Runs the agent until `shutdown` fires, then drains: the agent gives up
/// its slots, hands their queues to the other agents and stops (after at
/// most `--drain-timeout-secs`; what is left stays on disk for a restart).
/// `on_listening` is told the bound ingest address.
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    on_listening: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    // reqwest is built without a bundled TLS provider; use ring's.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster_tls = cluster_tls(&config)?;
    std::fs::create_dir_all(&config.data_dir)?;
    let agent_id = agent_id(&config.data_dir)?;
    let store = Store::open_with_segment_bytes(&config.data_dir, config.store_segment_mib << 20)?;
    store.limit_undelivered(config.max_undelivered);
    let state = AgentState::new();
    // Messages workers send to the control plane, forwarded by the control loop.
    let (outbox, outbox_rx) = tokio::sync::mpsc::channel(1024);
    let dispatcher = Dispatcher::new(
        store.clone(),
        state.clone(),
        crate::http::Clients::new(
            crate::egress::Guard {
                allow: config.allow_cidr.clone(),
                allow_http: config.allow_http,
            },
            config.max_concurrency,
        )?,
        DispatchConfig {
            max_concurrency: config.max_concurrency,
            response_body_limit: config.response_body_limit,
            failing: crate::failing::Settings {
                threshold_percent: config.failing_threshold_percent,
                window_ms: (config.failing_window_secs * 1000) as i64,
                min_attempts: config.failing_min_attempts,
            },
        },
        outbox.clone(),
        cancel.clone(),
    );
    let resumed = dispatcher.resume()?;

    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let ingest_addr = config
        .advertise_addr
        .clone()
        .unwrap_or_else(|| addr.to_string());
    tracing::info!(agent = %agent_id, %addr, resumed, "agent starting");

    let etcd = etcd_client::Client::connect(&config.etcd_endpoints, None).await?;
    let (health, health_service) = tonic_health::server::health_reporter();
    let connected = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    tokio::spawn(crate::health::run(
        etcd.clone(),
        connected.clone(),
        health,
        cancel.clone(),
    ));
    let key = format!(
        "{}/{}{agent_id}",
        config.etcd_prefix.trim_end_matches('/'),
        herald_shared::model::AGENTS_DIR
    );
    let record = AgentRecord {
        id: agent_id.clone(),
        ingest_addr: ingest_addr.clone(),
        started_at_ms: herald_shared::time::now_ms(),
        draining: false,
    };
    let (draining, draining_rx) = tokio::sync::watch::channel(false);
    let membership = tokio::spawn(crate::membership::run(
        etcd,
        key,
        record,
        config.lease_ttl_secs,
        draining_rx,
        cancel.clone(),
    ));
    let handoff = Handoff::new(
        agent_id.clone(),
        store.clone(),
        state.clone(),
        dispatcher.clone(),
        outbox.clone(),
        cluster_tls.clone(),
    );
    tokio::spawn(handoff.clone().run(cancel.clone()));
    tokio::spawn(drain_on_shutdown(
        shutdown,
        draining,
        state.clone(),
        store.clone(),
        Duration::from_secs(config.drain_timeout_secs),
        cancel.clone(),
    ));

    let control = ControlLoop {
        control_planes: config.control_plane.clone(),
        agent_id: agent_id.clone(),
        ingest_addr,
        state: state.clone(),
        store: store.clone(),
        dispatcher: dispatcher.clone(),
        handoff,
        heartbeat: Duration::from_secs(5),
        api_key: config.api_key.clone(),
        tls: control_plane_tls(&config, cluster_tls.as_deref())?,
        connected,
        outbox: tokio::sync::Mutex::new(outbox_rx),
    };
    tokio::spawn(control.run(cancel.clone()));
    tokio::spawn(prune_loop(store.clone(), cancel.clone()));
    tokio::spawn(retention_loop(
        store.clone(),
        Retention {
            max_age_ms: i64::try_from(config.log_retention_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            max_finished: config.log_max_deliveries,
        },
        cancel.clone(),
    ));

    if let Some(listen) = config.metrics_listen {
        let metrics = TcpListener::bind(listen).await?;
        println!("herald-agent metrics on {}", metrics.local_addr()?);
        let (state, store) = (state.clone(), store.clone());
        let refresh = std::sync::Arc::new(move || {
            let m = crate::metrics::get();
            m.slots_owned.set(state.slot_count() as i64);
            if let Ok(depth) = store.queue_len() {
                m.queue_depth.set(depth as i64);
            }
        });
        tokio::spawn(herald_shared::process::serve_metrics(
            metrics,
            refresh,
            cancel.clone(),
        ));
    }
    let reflection = herald_proto::serving::reflection()?;
    on_listening(addr);
    let query = Query {
        store: store.clone(),
        agent_id: agent_id.clone(),
        state: state.clone(),
    };
    let ingest = Ingest {
        store,
        state,
        dispatcher,
        outbox,
    };
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = &cluster_tls {
        server = server.tls_config(tls.server(None))?;
    }
    server
        .tcp_nodelay(true)
        .layer(crate::members::MembersOnly::new(cluster_tls.is_some()))
        .add_service(
            // A publish's share can exceed tonic's 4 MiB default: a large
            // payload fanned out to many endpoints (the control plane sends
            // parts of at most 1 MiB, but one delivery may be larger).
            AgentIngestServer::new(ingest).max_decoding_message_size(INGEST_MAX_MESSAGE),
        )
        .add_service(AgentQueryServer::new(query))
        .add_service(health_service)
        .add_service(reflection)
        // Our own listener: tonic applies tcp_nodelay only to listeners it
        // binds, so set it here (Nagle added ~40 ms to small replies).
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            cancel.cancelled_owned(),
        )
        .await?;
    // Let membership revoke its lease so our slots move at once.
    let _ = tokio::time::timeout(Duration::from_secs(2), membership).await;
    Ok(())
}

/// The agent's stable id, created on first start and kept in the data dir
/// so a restarted agent is recognised as the same member.
fn agent_id(dir: &std::path::Path) -> anyhow::Result<String> {
    let path = dir.join("agent_id");
    match std::fs::read_to_string(&path) {
        Ok(id) if herald_shared::ids::validate_name(id.trim()).is_ok() => Ok(id.trim().to_string()),
        Ok(_) => anyhow::bail!("{} does not hold a valid agent id", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = format!("agent-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
            std::fs::write(&path, &id)?;
            Ok(id)
        }
        Err(e) => Err(e.into()),
    }
}

async fn prune_loop(store: Store, cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(600)) => {}
        }
        store
            .prune_seen(herald_shared::time::now_ms() - DEDUP_WINDOW_MS)
            .await;
    }
}

/// Applies log retention: often enough that a short retention (as in tests)
/// holds closely, at most once a minute otherwise.
async fn retention_loop(store: Store, retention: Retention, cancel: CancellationToken) {
    let every = Duration::from_millis((retention.max_age_ms / 4).clamp(200, 60_000) as u64);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        // Whole batches mean more is due; go on without waiting.
        loop {
            match store.retain(retention).await {
                Ok(n) if n >= 5_000 => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(error = %e, "log retention failed");
                    break;
                }
            }
        }
    }
}

/// On `shutdown`: mark ourselves draining, wait until our slots have moved
/// and every queue went with them (or the timeout), then stop.
async fn drain_on_shutdown(
    shutdown: CancellationToken,
    draining: tokio::sync::watch::Sender<bool>,
    state: AgentState,
    store: Store,
    timeout: Duration,
    cancel: CancellationToken,
) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = cancel.cancelled() => return,
    }
    tracing::info!(
        timeout_secs = timeout.as_secs(),
        "draining: handing slots to the other agents"
    );
    let epoch_before = state.epoch();
    draining.send_replace(true);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if state.epoch() > epoch_before && state.slot_count() > 0 {
            // The new map still gives us slots: there is no other agent.
            tracing::info!("no other agent to take our slots; stopping with our queues on disk");
            break;
        }
        let store2 = store.clone();
        let left = tokio::task::spawn_blocking(move || store2.slots_with_work())
            .await
            .ok()
            .and_then(|r| r.ok())
            .map_or(usize::MAX, |s| s.len());
        if state.slot_count() == 0 && state.outgoing().is_empty() && left == 0 {
            tracing::info!("drained");
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                slots = state.slot_count(),
                slots_with_work = left,
                "drain timed out; what is left stays on disk"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cancel.cancel();
}

/// TLS to `https://` control planes: the CA file given, else the cluster
/// CA, else the system's roots; with cluster TLS, the agent presents its
/// certificate.
fn control_plane_tls(
    config: &Config,
    cluster: Option<&herald_proto::serving::ClusterTls>,
) -> anyhow::Result<tonic::transport::ClientTlsConfig> {
    let tls = match cluster {
        Some(c) => c.client(),
        None => tonic::transport::ClientTlsConfig::new(),
    };
    Ok(match &config.control_plane_ca {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            tls.ca_certificate(tonic::transport::Certificate::from_pem(pem))
        }
        None if cluster.is_some() => tls,
        None => tls.with_native_roots(),
    })
}

/// The cluster TLS settings, when `--cluster-cert` is given.
fn cluster_tls(config: &Config) -> anyhow::Result<crate::members::Tls> {
    let (Some(cert), Some(key), Some(ca)) = (
        &config.cluster_cert,
        &config.cluster_key,
        &config.cluster_ca,
    ) else {
        return Ok(None);
    };
    Ok(Some(std::sync::Arc::new(
        herald_proto::serving::ClusterTls::load(cert, key, ca)?,
    )))
}
