//! Routes deliveries to the agents that own their slots, and waits until
//! every one of them has stored its share durably.
//!
//! An agent refuses work routed by an epoch other than its own (fencing);
//! the router then waits for the view to move and routes again by the new
//! map. Agents drop deliveries they already hold for (endpoint, event id),
//! so re-sending a share after a partial failure never duplicates.
//! Shares bound for one agent travel through its queue in [`Coalescer`],
//! which merges concurrent publishes' shares into fewer calls.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use herald_proto::v1 as pb;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::agent_clients::AgentClients;
use crate::coalesce::Coalescer;
use crate::error::{Error, Result};
use crate::view::ViewHandle;

/// Sends deliveries to their owning agents. One per process.
pub struct Router {
    view: ViewHandle,
    agents: Arc<Coalescer>,
    /// How long a publish keeps re-routing before it answers UNAVAILABLE.
    retry_for: Duration,
}

impl Router {
    /// A router over `view`.
    pub fn new(view: ViewHandle, clients: Arc<AgentClients>, retry_for: Duration) -> Self {
        Router {
            view,
            agents: Arc::new(Coalescer::new(clients)),
            retry_for,
        }
    }

    /// Stores every delivery on its owning agent, or fails: UNAVAILABLE
    /// when no agent took them in time, RESOURCE_EXHAUSTED at once when an
    /// owner is full (waiting would not empty it).
    pub async fn deliver(&self, deliveries: Vec<pb::Delivery>) -> Result<()> {
        let deadline = Instant::now() + self.retry_for;
        let mut pending = deliveries;
        loop {
            let (epoch, groups, unrouted) = self.group(pending);
            let mut last_error = unrouted
                .first()
                .map(|d| format!("no live agent owns slot {} (epoch {epoch})", d.slot));
            pending = unrouted;

            let mut calls = JoinSet::new();
            // The agents' enqueue spans continue this (routing) span.
            let (traceparent, tracestate) =
                herald_shared::telemetry::context_of(&tracing::Span::current());
            for (addr, batch) in groups {
                let agents = self.agents.clone();
                let trace = (traceparent.clone(), tracestate.clone());
                calls.spawn(async move {
                    match agents.ingest(&addr, epoch, batch.clone(), trace).await {
                        Ok(()) => Ok(()),
                        Err(e) => Err((addr, e, batch)),
                    }
                });
            }
            let mut full = None;
            while let Some(joined) = calls.join_next().await {
                match joined {
                    Ok(Ok(())) => {}
                    Ok(Err((_, e @ Error::ResourceExhausted(_), _))) => full = Some(e),
                    Ok(Err((addr, e, batch))) => {
                        tracing::debug!(%addr, error = %e, "ingest refused; will re-route");
                        last_error = Some(format!("agent {addr}: {e}"));
                        pending.extend(batch);
                    }
                    Err(e) => last_error = Some(format!("ingest task failed: {e}")),
                }
            }
            if let Some(e) = full {
                return Err(e);
            }
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Unavailable(format!(
                    "could not store {} deliveries: {}; retry with the same idempotency key",
                    pending.len(),
                    last_error.unwrap_or_default()
                )));
            }
            // Wait for the map (or an agent's registration) to move.
            self.view.changed(Duration::from_millis(200)).await;
        }
    }

    /// Groups deliveries by owner address at the current epoch; returns
    /// those whose slot has no owner separately.
    #[allow(clippy::type_complexity)]
    fn group(
        &self,
        deliveries: Vec<pb::Delivery>,
    ) -> (u64, HashMap<String, Vec<pb::Delivery>>, Vec<pb::Delivery>) {
        self.view.read(|v| {
            let mut groups: HashMap<String, Vec<pb::Delivery>> = HashMap::new();
            let mut unrouted = Vec::new();
            let Some((map, _)) = &v.slot_map else {
                return (0, groups, deliveries);
            };
            for d in deliveries {
                match map.owner(d.slot) {
                    Some(a) => groups.entry(a.ingest_addr.clone()).or_default().push(d),
                    None => unrouted.push(d),
                }
            }
            (map.epoch, groups, unrouted)
        })
    }
}
