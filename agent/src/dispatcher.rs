//! Delivery workers: one task per endpoint with queued work, so each
//! endpoint's queue is delivered strictly in order (head of line: item n+1
//! is not attempted before item n succeeded or finally failed), while
//! endpoints proceed independently. A global semaphore bounds concurrent
//! requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_proto::v1 as pb;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use herald_shared::retry;
use herald_shared::time::now_ms;

use crate::http::{self, Outcome};
use crate::state::AgentState;
use crate::store::{Queued, Store};

/// Items read from the store per batch.
const BATCH: usize = 64;

/// Settings of the dispatcher.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Most requests in flight over all endpoints.
    pub max_concurrency: usize,
}

/// Starts and wakes the per-endpoint workers. Cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    state: AgentState,
    http: reqwest::Client,
    permits: Semaphore,
    workers: Mutex<HashMap<String, Arc<Notify>>>,
    cancel: CancellationToken,
}

impl Dispatcher {
    /// A dispatcher whose workers stop when `cancel` fires.
    pub fn new(
        store: Store,
        state: AgentState,
        http: reqwest::Client,
        config: DispatchConfig,
        cancel: CancellationToken,
    ) -> Self {
        Dispatcher {
            inner: Arc::new(Inner {
                store,
                state,
                http,
                permits: Semaphore::new(config.max_concurrency.max(1)),
                workers: Mutex::default(),
                cancel,
            }),
        }
    }

    /// Tells an endpoint's worker there is new work, starting it if needed.
    pub fn wake(&self, endpoint_id: &str) {
        let mut workers = self.inner.workers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = workers.get(endpoint_id) {
            n.notify_one();
            return;
        }
        let notify = Arc::new(Notify::new());
        workers.insert(endpoint_id.to_string(), notify.clone());
        let inner = self.inner.clone();
        let id = endpoint_id.to_string();
        tokio::spawn(async move { inner.run_worker(id, notify).await });
    }

    /// Starts workers for every endpoint with stored work (after a restart).
    pub fn resume(&self) -> crate::error::Result<usize> {
        let eps = self.inner.store.endpoints_with_pending()?;
        for ep in &eps {
            self.wake(ep);
        }
        Ok(eps.len())
    }
}

impl Inner {
    async fn run_worker(&self, endpoint_id: String, notify: Arc<Notify>) {
        // Highest sequence handed out; removals are committed asynchronously,
        // so the next read starts after it rather than at the queue head.
        let mut after = 0u64;
        loop {
            let batch = {
                let store = self.store.clone();
                let id = endpoint_id.clone();
                tokio::task::spawn_blocking(move || store.pending(&id, after, BATCH)).await
            };
            let batch = match batch {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    tracing::error!(endpoint = %endpoint_id, error = %e, "cannot read queue");
                    if self.sleep(Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
                Err(_) => return,
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = notify.notified() => continue,
                    _ = self.cancel.cancelled() => return,
                }
            }
            for item in batch {
                if !self.deliver_until_done(&endpoint_id, &item).await {
                    return; // cancelled
                }
                after = item.seq;
            }
        }
    }

    /// Attempts one item until it succeeds or its endpoint's retry schedule
    /// is exhausted (a final failure); false when cancelled. The retry state
    /// is stored before each wait, so a restart continues the schedule.
    async fn deliver_until_done(&self, endpoint_id: &str, item: &Queued) -> bool {
        let mut failed = item.failed;
        let mut due_ms = item.next_attempt_at_ms;
        loop {
            let wait = due_ms.saturating_sub(now_ms());
            if wait > 0 && self.sleep(Duration::from_millis(wait as u64)).await {
                return false;
            }
            let Some(ep) = self.wait_for_config(endpoint_id).await else {
                return false;
            };
            let outcome = {
                let Ok(_permit) = self.permits.acquire().await else {
                    return false;
                };
                http::attempt(&self.http, &ep, &item.delivery).await
            };
            let event = &item.delivery.event_id;
            let (status, error, retry_after) = match outcome {
                Outcome::Delivered { status } => {
                    tracing::debug!(endpoint = endpoint_id, %event, status, attempt = failed + 1, "delivered");
                    self.store.remove(endpoint_id, item.seq).await;
                    return true;
                }
                Outcome::Failed {
                    status,
                    error,
                    retry_after,
                } => (status, error, retry_after),
            };
            failed += 1;
            let schedule: Vec<u64> = ep.retry_delays_ms.iter().map(|d| u64::from(*d)).collect();
            let Some(delay) = retry::next_delay(&schedule, failed, retry_after, rand::random())
            else {
                tracing::warn!(endpoint = endpoint_id, %event, ?status, %error, attempts = failed, "delivery failed for good; moving on");
                self.store.remove(endpoint_id, item.seq).await;
                return true;
            };
            due_ms = now_ms() + delay.as_millis() as i64;
            tracing::info!(endpoint = endpoint_id, %event, ?status, %error, attempt = failed, retry_in_ms = delay.as_millis() as u64, "attempt failed");
            if let Err(e) = self
                .store
                .record_failure(endpoint_id, item.seq, failed, due_ms)
                .await
            {
                // Not fatal: after a restart the schedule would resume one step early.
                tracing::error!(endpoint = endpoint_id, %event, error = %e, "cannot store retry state");
            }
        }
    }

    /// The endpoint's config once it is known and enabled; None when cancelled.
    async fn wait_for_config(&self, endpoint_id: &str) -> Option<Arc<pb::DeliveryEndpoint>> {
        let mut changes = self.state.subscribe();
        loop {
            if let Some(ep) = self.state.endpoint(endpoint_id)
                && ep.enabled
            {
                return Some(ep);
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { return None },
                _ = self.cancel.cancelled() => return None,
            }
        }
    }

    /// Sleeps; true when cancelled instead.
    async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => false,
            _ = self.cancel.cancelled() => true,
        }
    }
}
