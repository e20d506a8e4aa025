//! Coalesces the concurrent ingests bound for one agent into fewer calls.
//!
//! Every publish used to make its own `Ingest` call to each agent it
//! touched. Under load most of the cost of a small publish was that call
//! (HTTP/2 framing, a task, header encoding) on both sides. Now each agent
//! address has a queue and at most [`MAX_IN_FLIGHT`] calls in flight: a
//! share sent while a call slot is free goes at once, alone, so an idle
//! cluster adds no latency; shares that arrive while every slot is busy wait
//! and leave together in the next call, up to [`MAX_CALL_BYTES`].
//!
//! A merged call is all or nothing on the agent (it checks every delivery
//! before it stores any), so each share gets the call's outcome and a
//! refused share is re-routed by its publish exactly as before. Shares keep
//! their arrival order inside a call, and a publish waits for its share to
//! be stored before it answers, so per-endpoint order is what it was.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use herald_proto::v1 as pb;
use herald_proto::v1::agent_ingest_client::AgentIngestClient;
use prost::Message as _;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tonic::transport::Channel;

use crate::agent_clients::AgentClients;
use crate::error::{Error, Result};

/// Calls in flight to one agent. Enough to keep the agent's store writer
/// fed (its group commit merges the calls' writes again), few enough that
/// shares merge under load. Measured with `herald-bench many-endpoints`:
/// 2, 4, 8 and 16 all beat one call per publish; 8 did best.
pub const MAX_IN_FLIGHT: usize = 8;
/// Encoded deliveries per merged call. A single share bigger than this
/// still goes, alone (see [`split`]).
pub const MAX_CALL_BYTES: usize = 1 << 20;

/// One publish's deliveries for one agent, and where to answer.
struct Share {
    epoch: u64,
    deliveries: Vec<pb::Delivery>,
    bytes: usize,
    /// W3C context of the publish's routing span: the parent of the
    /// agent's enqueue span when this share leads its call.
    trace: (String, String),
    done: oneshot::Sender<std::result::Result<(), tonic::Status>>,
}

/// The per-agent queues. One per process.
pub struct Coalescer {
    clients: Arc<AgentClients>,
    queues: Mutex<HashMap<String, mpsc::UnboundedSender<Share>>>,
}

impl Coalescer {
    /// Queues over the channels in `clients`.
    pub fn new(clients: Arc<AgentClients>) -> Self {
        Coalescer {
            clients,
            queues: Mutex::new(HashMap::new()),
        }
    }

    /// Stores `deliveries` on the agent at `addr`, routed at `epoch`, in
    /// the order given; an agent's refusal comes back as UNAVAILABLE with
    /// its message, for the router to re-route.
    pub async fn ingest(
        &self,
        addr: &str,
        epoch: u64,
        deliveries: Vec<pb::Delivery>,
        trace: (String, String),
    ) -> Result<()> {
        // Parts in turn: a later part may be stored only after an earlier one.
        for (part, bytes) in split(deliveries, MAX_CALL_BYTES) {
            let (done, answer) = oneshot::channel();
            let share = Share {
                epoch,
                deliveries: part,
                bytes,
                trace: trace.clone(),
                done,
            };
            self.queue(addr)?
                .send(share)
                .map_err(|_| Error::Unavailable(format!("ingest queue of {addr} stopped")))?;
            let outcome = answer.await.map_err(|_| {
                Error::Unavailable(format!("ingest queue of {addr} dropped a share"))
            })?;
            outcome.map_err(|status| match status.code() {
                tonic::Code::ResourceExhausted => {
                    Error::ResourceExhausted(format!("agent {addr}: {}", status.message()))
                }
                _ => Error::Unavailable(status.message().to_string()),
            })?;
        }
        Ok(())
    }

    /// The queue of `addr`, started on first use. It lives as long as the
    /// process, like the channel it calls through.
    fn queue(&self, addr: &str) -> Result<mpsc::UnboundedSender<Share>> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(q) = queues.get(addr) {
            return Ok(q.clone());
        }
        let client = self.clients.ingest(addr)?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(send_loop(client, rx));
        queues.insert(addr.to_string(), tx.clone());
        Ok(tx)
    }
}

/// Splits `deliveries` into runs of at most `limit` encoded bytes (a
/// delivery bigger than that is a run of its own), keeping their order.
fn split(deliveries: Vec<pb::Delivery>, limit: usize) -> Vec<(Vec<pb::Delivery>, usize)> {
    let mut parts: Vec<(Vec<pb::Delivery>, usize)> = Vec::new();
    for d in deliveries {
        let n = d.encoded_len();
        match parts.last_mut() {
            Some((part, bytes)) if *bytes + n <= limit => {
                part.push(d);
                *bytes += n;
            }
            _ => parts.push((vec![d], n)),
        }
    }
    parts
}

/// Sends the shares queued for one agent: waits for a free call slot, then
/// takes every share already waiting (same epoch, up to the byte limit)
/// into one call.
async fn send_loop(client: AgentIngestClient<Channel>, mut rx: mpsc::UnboundedReceiver<Share>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut held: Option<Share> = None;
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let first = match held.take() {
            Some(s) => s,
            None => match rx.recv().await {
                Some(s) => s,
                None => return,
            },
        };
        let mut bytes = first.bytes;
        let mut call = vec![first];
        while let Ok(next) = rx.try_recv() {
            if next.epoch != call[0].epoch || bytes + next.bytes > MAX_CALL_BYTES {
                held = Some(next);
                break;
            }
            bytes += next.bytes;
            call.push(next);
        }
        let client = client.clone();
        tokio::spawn(async move {
            send(client, call).await;
            drop(permit);
        });
    }
}

/// One `Ingest` call carrying `shares`; answers each with its outcome.
async fn send(mut client: AgentIngestClient<Channel>, mut shares: Vec<Share>) {
    let epoch = shares[0].epoch;
    let (traceparent, tracestate) = std::mem::take(&mut shares[0].trace);
    let mut deliveries = Vec::with_capacity(shares.iter().map(|s| s.deliveries.len()).sum());
    let mut answers = Vec::with_capacity(shares.len());
    for s in shares {
        deliveries.extend(s.deliveries);
        answers.push(s.done);
    }
    crate::metrics::get().ingest_call(answers.len());
    let mut req = tonic::Request::new(pb::IngestRequest { epoch, deliveries });
    // The agent's enqueue span continues the leading share's routing span
    // and links the publishes of the others (their deliveries carry them).
    for (k, v) in [("traceparent", traceparent), ("tracestate", tracestate)] {
        if let Ok(v) = v.parse() {
            req.metadata_mut().insert(k, v);
        }
    }
    let outcome = client.ingest(req).await.map(|_| ());
    for done in answers {
        let _ = done.send(outcome.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(payload_bytes: usize) -> pb::Delivery {
        pb::Delivery {
            endpoint_id: "ep".into(),
            payload_json: "x".repeat(payload_bytes),
            ..Default::default()
        }
    }

    #[test]
    fn split_keeps_order_and_bounds_each_part() {
        let ds: Vec<pb::Delivery> = [10, 10, 10, 500, 10, 10]
            .into_iter()
            .map(delivery)
            .collect();
        let sizes: Vec<usize> = ds.iter().map(|d| d.encoded_len()).collect();
        let limit = sizes[0] * 2 + 1;
        let parts = split(ds, limit);
        let lens: Vec<Vec<usize>> = parts
            .iter()
            .map(|(p, _)| p.iter().map(|d| d.payload_json.len()).collect())
            .collect();
        // Two small ones fit a part; the big one stands alone, over the limit.
        assert_eq!(lens, vec![vec![10, 10], vec![10], vec![500], vec![10, 10]]);
        for (p, bytes) in &parts {
            assert_eq!(*bytes, p.iter().map(|d| d.encoded_len()).sum::<usize>());
            assert!(*bytes <= limit || p.len() == 1);
        }
    }

    #[test]
    fn split_of_nothing_is_nothing() {
        assert!(split(Vec::new(), 100).is_empty());
    }
}
