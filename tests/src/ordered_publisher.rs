//! The publishers of the failure runs (`tests/tests/chaos.rs` and
//! `herald-bench chaos`): each owns a share of the endpoints and publishes
//! to them in order, so every endpoint's order is defined, failing over
//! between two control-plane replicas.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::cluster::Clients;

/// One publisher's share and pace.
#[derive(Debug, Clone, Copy)]
pub struct OrderedPublisher {
    /// This publisher's index: it publishes for endpoints `k`,
    /// `k + publishers`, … (endpoint `e` subscribes to `t{e}.created`).
    pub k: u64,
    /// How many publishers share the endpoints.
    pub publishers: u64,
    /// Endpoints in all.
    pub endpoints: u64,
    /// Events per endpoint: `{"seq": n}` for n in `0..per_endpoint`.
    pub per_endpoint: u64,
    /// The least time between two publishes (`None`: no pause).
    pub every: Option<Duration>,
    /// Failed publishes after which it gives up.
    pub max_retries: u64,
}

impl OrderedPublisher {
    /// Publishes its share through `apis[k % 2]`; a failed publish
    /// (UNAVAILABLE while slots move, or the replica gone) is retried with
    /// the same idempotency key on the other replica. Counts each published
    /// event in `done`; returns the retries.
    pub fn spawn(
        self,
        mut apis: [Clients; 2],
        done: Arc<AtomicU64>,
    ) -> tokio::task::JoinHandle<anyhow::Result<u64>> {
        tokio::spawn(async move {
            let mut which = (self.k % 2) as usize;
            let mut retries = 0u64;
            let mut next = tokio::time::Instant::now();
            for seq in 0..self.per_endpoint {
                for ep in (self.k..self.endpoints).step_by(self.publishers as usize) {
                    if let Some(every) = self.every {
                        tokio::time::sleep_until(next).await;
                        next += every;
                    }
                    let (t, key) = (format!("t{ep}.created"), format!("e{ep}-{seq}"));
                    loop {
                        let data = serde_json::json!({ "seq": seq });
                        match apis[which].publish("acme", &t, data, &key).await {
                            Ok(r) if r.endpoints_matched == 1 => break,
                            Ok(r) => {
                                anyhow::bail!("{key} matched {} endpoints", r.endpoints_matched)
                            }
                            Err(s) => {
                                retries += 1;
                                anyhow::ensure!(
                                    retries < self.max_retries,
                                    "publishing keeps failing: {s}"
                                );
                                which = 1 - which;
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }
            Ok(retries)
        })
    }
}
