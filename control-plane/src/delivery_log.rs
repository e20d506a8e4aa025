//! Reads the delivery log and endpoint counters from the agents that hold
//! them. Any agent may hold part of a tenant's log (slots move between
//! agents), so every live agent is asked and the answers are merged.
//!
//! Lists merge exactly: each agent returns its matches newest first and, if
//! it stopped early, how far it got. Only what is newer than the furthest
//! such stop is complete on every agent, so a page ends there.

use std::future::Future;
use std::sync::Arc;

use herald_proto::v1 as pb;
use herald_proto::v1::agent_query_client::AgentQueryClient;
use tokio::task::JoinSet;
use tonic::Code;
use tonic::transport::Channel;

use crate::agent_clients::AgentClients;
use crate::error::{Error, Result};
use crate::view::ViewHandle;

/// The log reader. One per process.
pub struct DeliveryLog {
    view: ViewHandle,
    clients: Arc<AgentClients>,
}

/// One merged page.
#[derive(Debug, Default)]
pub struct Page {
    /// Newest first.
    pub deliveries: Vec<pb::DeliverySummary>,
    /// Where the next page starts; None on the last page.
    pub next: Option<pb::DeliveryCursor>,
}

fn key(c: &pb::DeliveryCursor) -> (i64, &str) {
    (c.created_at_ms, c.delivery_id.as_str())
}

fn summary_key(d: &pb::DeliverySummary) -> (i64, &str) {
    (d.created_at_ms, d.delivery_id.as_str())
}

fn unreachable(addr: &str, s: &tonic::Status) -> Error {
    Error::Unavailable(format!(
        "agent {addr} cannot be read ({}); the log it holds is unavailable, retry later",
        s.message()
    ))
}

impl DeliveryLog {
    /// A reader over the live agents of `view`.
    pub fn new(view: ViewHandle, clients: Arc<AgentClients>) -> Self {
        DeliveryLog { view, clients }
    }

    /// Calls every live agent at once with `call`; returns each answer
    /// with the agent's address.
    pub async fn ask_all<T, Fut>(
        &self,
        call: impl Fn(AgentQueryClient<Channel>) -> Fut,
    ) -> Result<Vec<(String, Result<T, tonic::Status>)>>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>> + Send + 'static,
    {
        let addrs: Vec<String> = self
            .view
            .read(|v| v.agents.values().map(|a| a.ingest_addr.clone()).collect());
        let mut calls = JoinSet::new();
        for addr in addrs {
            let answer = call(self.clients.query(&addr)?);
            calls.spawn(async move { (addr, answer.await.map(tonic::Response::into_inner)) });
        }
        let mut out = Vec::new();
        while let Some(joined) = calls.join_next().await {
            out.push(joined.map_err(|e| Error::Unavailable(e.to_string()))?);
        }
        Ok(out)
    }

    /// One page of deliveries matching `filter`, strictly older than `before`.
    pub async fn list(
        &self,
        filter: pb::ListDeliveriesRequest,
        before: Option<pb::DeliveryCursor>,
        limit: usize,
    ) -> Result<Page> {
        let req = pb::AgentListDeliveriesRequest {
            filter: Some(filter),
            before,
            limit: limit as u32,
        };
        let answers = self
            .ask_all(|mut c| {
                let req = req.clone();
                async move { c.list_deliveries(req).await }
            })
            .await?;
        let mut all = Vec::new();
        let mut bound: Option<pb::DeliveryCursor> = None;
        for (addr, res) in answers {
            let r = res.map_err(|s| unreachable(&addr, &s))?;
            all.extend(r.deliveries);
            if let Some(c) = r.scanned_to
                && bound.as_ref().is_none_or(|b| key(&c) > key(b))
            {
                bound = Some(c);
            }
        }
        all.sort_by(|a, b| summary_key(b).cmp(&summary_key(a)));
        if let Some(b) = &bound {
            all.retain(|d| summary_key(d) >= key(b));
        }
        let more = all.len() > limit || bound.is_some();
        all.truncate(limit);
        let next = if !more {
            None
        } else if all.len() == limit {
            all.last().map(|d| pb::DeliveryCursor {
                created_at_ms: d.created_at_ms,
                delivery_id: d.delivery_id.clone(),
            })
        } else {
            bound
        };
        Ok(Page {
            deliveries: all,
            next,
        })
    }

    /// One delivery with its attempts, from whichever agent holds it.
    pub async fn get(&self, tenant_id: &str, delivery_id: &str) -> Result<pb::DeliveryDetail> {
        let req = pb::GetDeliveryRequest {
            tenant_id: tenant_id.to_string(),
            delivery_id: delivery_id.to_string(),
        };
        let answers = self
            .ask_all(|mut c| {
                let req = req.clone();
                async move { c.get_delivery(req).await }
            })
            .await?;
        let mut failure = None;
        for (addr, res) in answers {
            match res {
                Ok(d) => return Ok(d),
                Err(s) if s.code() == Code::NotFound => {}
                Err(s) => failure = Some(unreachable(&addr, &s)),
            }
        }
        Err(failure
            .unwrap_or_else(|| Error::NotFound(format!("delivery '{delivery_id}' not found"))))
    }

    /// The endpoint's counters, summed over the agents that hold some.
    pub async fn stats(&self, endpoint_id: &str) -> Result<pb::EndpointStats> {
        let req = pb::GetEndpointStatsRequest {
            tenant_id: String::new(),
            endpoint_id: endpoint_id.to_string(),
        };
        let answers = self
            .ask_all(|mut c| {
                let req = req.clone();
                async move { c.get_endpoint_stats(req).await }
            })
            .await?;
        let mut parts = Vec::new();
        for (addr, res) in answers {
            parts.push(res.map_err(|s| unreachable(&addr, &s))?);
        }
        Ok(merge_stats(endpoint_id, parts))
    }
}

/// Sums counters; the latest outcomes, and the streaks of whichever agent
/// saw the latest attempt, win.
fn merge_stats(endpoint_id: &str, parts: Vec<pb::EndpointStats>) -> pb::EndpointStats {
    fn latest(s: &pb::EndpointStats) -> i64 {
        let at = |a: &Option<pb::AttemptSummary>| a.as_ref().map_or(0, |a| a.at_ms);
        at(&s.last_success).max(at(&s.last_failure))
    }
    let mut out = pb::EndpointStats {
        endpoint_id: endpoint_id.to_string(),
        ..Default::default()
    };
    let mut newest = -1;
    for p in parts {
        out.events += p.events;
        out.attempts += p.attempts;
        out.successes += p.successes;
        out.failures += p.failures;
        out.failed_attempts += p.failed_attempts;
        out.queue_depth += p.queue_depth;
        out.last_event_at_ms = out.last_event_at_ms.max(p.last_event_at_ms);
        if p.next_attempt_at_ms > 0
            && (out.next_attempt_at_ms == 0 || p.next_attempt_at_ms < out.next_attempt_at_ms)
        {
            out.next_attempt_at_ms = p.next_attempt_at_ms;
        }
        let at = |a: &Option<pb::AttemptSummary>| a.as_ref().map_or(0, |a| a.at_ms);
        if at(&p.last_success) > at(&out.last_success) {
            out.last_success = p.last_success.clone();
        }
        if at(&p.last_failure) > at(&out.last_failure) {
            out.last_failure = p.last_failure.clone();
        }
        if latest(&p) > newest {
            newest = latest(&p);
            out.failures_since_last_success = p.failures_since_last_success;
            out.deliveries_failed_in_a_row = p.deliveries_failed_in_a_row;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(at_ms: i64, status_code: u32) -> Option<pb::AttemptSummary> {
        Some(pb::AttemptSummary {
            at_ms,
            status_code,
            ..Default::default()
        })
    }

    #[test]
    fn stats_merge_sums_and_keeps_the_latest() {
        let old = pb::EndpointStats {
            events: 10,
            attempts: 12,
            successes: 10,
            failures_since_last_success: 0,
            last_success: attempt(100, 200),
            ..Default::default()
        };
        let new = pb::EndpointStats {
            events: 3,
            attempts: 5,
            failures: 1,
            failures_since_last_success: 5,
            deliveries_failed_in_a_row: 1,
            last_failure: attempt(200, 500),
            next_attempt_at_ms: 300,
            queue_depth: 2,
            ..Default::default()
        };
        let m = merge_stats("ep", vec![new, old, pb::EndpointStats::default()]);
        assert_eq!(
            (m.events, m.attempts, m.successes, m.failures),
            (13, 17, 10, 1)
        );
        assert_eq!(m.failures_since_last_success, 5);
        assert_eq!(m.deliveries_failed_in_a_row, 1);
        assert_eq!(m.last_success.unwrap().at_ms, 100);
        assert_eq!(m.last_failure.unwrap().status_code, 500);
        assert_eq!((m.next_attempt_at_ms, m.queue_depth), (300, 2));
    }
}
