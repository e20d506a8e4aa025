//! The agent's end of the control stream: says Hello, applies assignments
//! and endpoint config, sends heartbeats, and reconnects (to the next
//! control plane in the list) with backoff. While disconnected the agent
//! keeps delivering on its last assignment.

use std::time::Duration;

use herald_proto::v1 as pb;
use herald_proto::v1::agent_control_client::AgentControlClient;
use herald_proto::v1::control_message::Kind;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::dispatcher::Dispatcher;
use crate::state::AgentState;
use crate::store::Store;

/// Everything the control loop needs.
pub struct ControlLoop {
    /// Control-plane addresses (`http://host:port`), tried in turn.
    pub control_planes: Vec<String>,
    /// This agent's id.
    pub agent_id: String,
    /// Where the control plane reaches our ingest service.
    pub ingest_addr: String,
    /// Assignment and endpoint config.
    pub state: AgentState,
    /// For purging deleted endpoints' queues and heartbeats.
    pub store: Store,
    /// Workers to wake when config arrives.
    pub dispatcher: Dispatcher,
    /// Told when the assignment changes.
    pub handoff: std::sync::Arc<crate::handoff::Handoff>,
    /// TLS to `https://` control planes.
    pub tls: tonic::transport::ClientTlsConfig,
    /// Sent as the bearer token of the control stream.
    pub api_key: Option<crate::config::ApiKey>,
    /// Interval of heartbeats.
    pub heartbeat: Duration,
    /// True while a control stream is open (for health).
    pub connected: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Messages from the workers for the control plane; kept across
    /// reconnects, so a request made while disconnected is sent on the next
    /// session.
    pub outbox: tokio::sync::Mutex<mpsc::Receiver<pb::AgentMessage>>,
}

impl ControlLoop {
    /// Runs until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        for target in self.control_planes.iter().cycle() {
            let started = tokio::time::Instant::now();
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = self.session(target) => {
                    if let Err(e) = r {
                        tracing::warn!(control_plane = %target, error = %e, "control stream ended");
                    }
                }
            }
            if started.elapsed() > Duration::from_secs(10) {
                backoff = Duration::from_millis(100);
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn session(&self, target: &str) -> anyhow::Result<()> {
        let mut endpoint = tonic::transport::Endpoint::from_shared(target.to_string())?;
        if target.starts_with("https://") {
            endpoint = endpoint.tls_config(self.tls.clone())?;
        }
        let channel = endpoint
            .connect_timeout(Duration::from_secs(3))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .connect()
            .await?;
        let mut client = AgentControlClient::new(channel);
        let (tx, rx) = mpsc::channel(16);
        tx.send(pb::AgentMessage {
            kind: Some(pb::agent_message::Kind::Hello(pb::AgentHello {
                agent_id: self.agent_id.clone(),
                ingest_addr: self.ingest_addr.clone(),
            })),
        })
        .await?;
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        if let Some(key) = &self.api_key {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {}", key.0).parse()?);
        }
        let mut inbound = client.session(request).await?.into_inner();
        tracing::info!(control_plane = %target, "control stream open");
        crate::metrics::get().control_streams.inc();
        self.connected
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let _connected = Connected(&self.connected);
        let mut ticker = tokio::time::interval(self.heartbeat);
        let mut outbox = self.outbox.lock().await;
        loop {
            tokio::select! {
                Some(msg) = outbox.recv() => tx.send(msg).await?,
                msg = inbound.message() => {
                    let Some(msg) = msg? else { anyhow::bail!("closed by the control plane") };
                    if let Some(kind) = msg.kind {
                        self.apply(kind).await;
                    }
                }
                _ = ticker.tick() => {
                    let store = self.store.clone();
                    let depth = tokio::task::spawn_blocking(move || store.queue_len()).await??;
                    crate::metrics::get().queue_depth.set(depth as i64);
                    tx.send(pb::AgentMessage {
                        kind: Some(pb::agent_message::Kind::Heartbeat(pb::AgentHeartbeat {
                            queue_depth: depth,
                            epoch: self.state.epoch(),
                        })),
                    })
                    .await?;
                }
            }
        }
    }

    async fn apply(&self, kind: Kind) {
        match kind {
            Kind::Assignment(a) => {
                tracing::info!(
                    epoch = a.epoch,
                    slots = a.slots.len(),
                    incoming = a.incoming.len(),
                    outgoing = a.outgoing.len(),
                    "slot assignment"
                );
                self.state.set_assignment(&a);
                self.handoff.poke();
            }
            Kind::EndpointUpsert(u) => {
                if let Some(ep) = u.endpoint {
                    self.state.upsert(ep);
                }
            }
            Kind::EndpointRemoved(r) => {
                self.state.remove(&r.endpoint_id);
                self.dispatcher.forget(&r.endpoint_id);
                match self.store.purge(&r.endpoint_id).await {
                    Ok(n) if n > 0 => {
                        tracing::info!(endpoint = %r.endpoint_id, dropped = n, "endpoint deleted; queue dropped")
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(endpoint = %r.endpoint_id, error = %e, "cannot drop queue")
                    }
                }
            }
        }
    }
}

/// Clears the "connected" flag when a session ends, however it ends.
struct Connected<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}
