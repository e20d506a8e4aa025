//! gRPC channels to agents, one per address, shared by the router (ingest)
//! and the delivery log reader (query). Channels connect lazily and
//! reconnect by themselves.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use herald_proto::v1::agent_ingest_client::AgentIngestClient;
use herald_proto::v1::agent_query_client::AgentQueryClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};

/// Deadline of one call to an agent.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The channel cache. One per process.
#[derive(Default)]
pub struct AgentClients {
    channels: Mutex<HashMap<String, Channel>>,
    /// Mutual TLS to agents, when cluster TLS is on.
    tls: Option<herald_proto::serving::ClusterTls>,
}

impl AgentClients {
    /// Clients that reach agents over mutual TLS when `tls` is given.
    pub fn new(tls: Option<herald_proto::serving::ClusterTls>) -> Self {
        AgentClients {
            channels: Mutex::default(),
            tls,
        }
    }

    fn channel(&self, addr: &str) -> Result<Channel> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let bad = |e: tonic::transport::Error| {
            Error::Unavailable(format!("bad agent address {addr}: {e}"))
        };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}")).map_err(bad)?;
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.client()).map_err(bad)?;
        }
        let channel = endpoint
            .connect_timeout(Duration::from_secs(2))
            .timeout(CALL_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy();
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// The ingest client of the agent at `addr`.
    pub fn ingest(&self, addr: &str) -> Result<AgentIngestClient<Channel>> {
        Ok(AgentIngestClient::new(self.channel(addr)?))
    }

    /// The query client of the agent at `addr`.
    pub fn query(&self, addr: &str) -> Result<AgentQueryClient<Channel>> {
        Ok(AgentQueryClient::new(self.channel(addr)?))
    }
}
