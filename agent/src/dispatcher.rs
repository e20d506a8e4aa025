//! Delivery workers: one task per endpoint with queued work. An ordered
//! endpoint (the default) is delivered head of line: item n+1 is not
//! attempted before item n succeeded or finally failed. An unordered one
//! has up to `max_in_flight` items in flight, each with its own retries.
//! Endpoints proceed independently; a global semaphore bounds concurrent
//! requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_proto::v1 as pb;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use herald_shared::retry;
use herald_shared::time::now_ms;

use crate::auth::History;
use crate::failing;
use crate::http::{self, Outcome};
use crate::operational;
use crate::state::AgentState;
use crate::store::{AttemptResult, Queued, Store};
use herald_shared::operational::Failure;

/// Items read from the store per batch.
const BATCH: usize = 64;
/// How long a worker waits for the control plane to act on a disable
/// request before it goes on (and asks again if it must).
const DISABLE_WAIT: Duration = Duration::from_secs(10);

/// How one queued item ended.
enum Done {
    Delivered,
    /// The whole retry schedule failed; `ep` is the config of the last try.
    FailedForGood {
        ep: Arc<pb::DeliveryEndpoint>,
        error: String,
        /// The last attempt's failure, for the disable request.
        last: Failure,
        /// `herald.delivery.exhausted` for each delivery of the chunk.
        exhausted: Vec<pb::AgentMessage>,
        /// The endpoint's deliveries in a row that failed for good, this one
        /// included (stored, so it survives restarts).
        in_a_row: u32,
    },
}

/// Counts an attempt in progress for as long as it lives.
struct Busy<'a>(&'a AtomicUsize);

impl<'a> Busy<'a> {
    fn enter(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Busy(n)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Per-endpoint state a worker's deliveries share: the request spacing
/// (throttling) and the last outcomes (for JWT claims).
#[derive(Default)]
struct Pace {
    /// When the endpoint's requests start.
    starts: Mutex<Starts>,
    /// Loaded from the store on first use, then kept up to date.
    history: Mutex<Option<History>>,
    /// Recent attempts, for `herald.endpoint.failing`.
    failing: Mutex<failing::Window>,
}

impl Pace {
    /// When the next request may start, if that is later than now.
    fn ready_at(&self) -> Option<tokio::time::Instant> {
        let next = self.starts.lock().unwrap_or_else(|p| p.into_inner()).next;
        next.filter(|n| *n > tokio::time::Instant::now())
    }

    /// Reserves the next request start allowed by `spacing`; the caller
    /// waits until it. Reservations queue up, so concurrent deliveries of an
    /// unordered endpoint share one rate.
    fn reserve(&self, spacing: Duration) -> tokio::time::Instant {
        let mut starts = self.starts.lock().unwrap_or_else(|p| p.into_inner());
        starts.reserve(tokio::time::Instant::now(), spacing)
    }

    /// Records a request starting now, unless the last one started less
    /// than `spacing` ago: then says when it may start instead. A
    /// reservation alone does not keep starts apart, because waiting for a
    /// concurrency permit can push a request past its reserved time, up to
    /// the next one's.
    fn start(&self, spacing: Duration) -> Result<(), tokio::time::Instant> {
        let mut starts = self.starts.lock().unwrap_or_else(|p| p.into_inner());
        starts.start(tokio::time::Instant::now(), spacing)
    }
}

/// An endpoint's request starts, for its spacing.
#[derive(Default)]
struct Starts {
    /// Earliest start of the next reservation.
    next: Option<tokio::time::Instant>,
    /// When the last request actually started.
    last: Option<tokio::time::Instant>,
}

impl Starts {
    /// [`Pace::reserve`] at `now`.
    fn reserve(&mut self, now: tokio::time::Instant, spacing: Duration) -> tokio::time::Instant {
        let at = self.next.map_or(now, |n| n.max(now));
        self.next = Some(at + spacing);
        at
    }

    /// [`Pace::start`] at `now`.
    fn start(
        &mut self,
        now: tokio::time::Instant,
        spacing: Duration,
    ) -> Result<(), tokio::time::Instant> {
        if let Some(earliest) = self.last.map(|last| last + spacing)
            && now < earliest
        {
            return Err(earliest);
        }
        self.last = Some(now);
        self.next = Some(self.next.map_or(now, |n| n.max(now)).max(now + spacing));
        Ok(())
    }
}

/// What [`Dispatcher::permit_to_start`] allows.
enum Start<'a> {
    /// Send now, under this concurrency permit.
    Now(tokio::sync::SemaphorePermit<'a>),
    /// Too soon after the endpoint's last start: not before this.
    NotBefore(tokio::time::Instant),
}

/// Least time between the starts of two requests to `ep`: its chunk delay
/// or its rate limit, whichever is longer.
fn spacing(ep: &pb::DeliveryEndpoint) -> Duration {
    let by_rate = match ep.rate_limit_per_sec {
        0 => Duration::ZERO,
        r => Duration::from_secs(1) / r,
    };
    by_rate.max(Duration::from_millis(u64::from(ep.chunk_delay_ms)))
}

/// Settings of the dispatcher.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Most requests in flight over all endpoints.
    pub max_concurrency: usize,
    /// Response body bytes kept in the attempt log.
    pub response_body_limit: usize,
    /// When an endpoint counts as failing.
    pub failing: failing::Settings,
}

/// A running worker: how to wake it and how to stop it.
struct Worker {
    notify: Arc<Notify>,
    stop: CancellationToken,
    /// Attempts in progress (request sent, outcome not yet handed to the store).
    busy: Arc<AtomicUsize>,
}

/// Starts and wakes the per-endpoint workers. Cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    state: AgentState,
    http: http::Clients,
    permits: Semaphore,
    body_limit: usize,
    workers: Mutex<HashMap<String, Worker>>,
    /// Messages for the control plane (disable requests, operational
    /// events).
    outbox: mpsc::Sender<pb::AgentMessage>,
    failing: failing::Settings,
    cancel: CancellationToken,
}

impl Dispatcher {
    /// A dispatcher whose workers stop when `cancel` fires.
    pub fn new(
        store: Store,
        state: AgentState,
        http: http::Clients,
        config: DispatchConfig,
        outbox: mpsc::Sender<pb::AgentMessage>,
        cancel: CancellationToken,
    ) -> Self {
        Dispatcher {
            inner: Arc::new(Inner {
                store,
                state,
                http,
                permits: Semaphore::new(config.max_concurrency.max(1)),
                body_limit: config.response_body_limit,
                workers: Mutex::default(),
                outbox,
                failing: config.failing,
                cancel,
            }),
        }
    }

    /// Tells an endpoint's worker there is new work, starting it if needed.
    pub fn wake(&self, endpoint_id: &str) {
        let mut workers = self.inner.workers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = workers.get(endpoint_id) {
            w.notify.notify_one();
            return;
        }
        let notify = Arc::new(Notify::new());
        let stop = self.inner.cancel.child_token();
        let busy = Arc::new(AtomicUsize::new(0));
        workers.insert(
            endpoint_id.to_string(),
            Worker {
                notify: notify.clone(),
                stop: stop.clone(),
                busy: busy.clone(),
            },
        );
        let inner = self.inner.clone();
        let id = endpoint_id.to_string();
        tokio::spawn(async move {
            // Dropping the worker on stop also aborts its in-flight items;
            // what they stored stays stored.
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = inner.run_worker(id, notify, busy) => {}
            }
        });
    }

    /// Waits (up to `limit`) until the endpoint's worker has no attempt in
    /// progress, then stops it. Its slot must no longer be deliverable, so
    /// no new attempt starts meanwhile; the handoff then reads a queue that
    /// nobody is working on.
    pub async fn quiesce(&self, endpoint_id: &str, limit: Duration) {
        let busy = {
            let workers = self.inner.workers.lock().unwrap_or_else(|p| p.into_inner());
            workers.get(endpoint_id).map(|w| w.busy.clone())
        };
        if let Some(busy) = busy {
            let deadline = tokio::time::Instant::now() + limit;
            while busy.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        self.forget(endpoint_id);
    }

    /// Stops an endpoint's worker (the endpoint was deleted and its queue
    /// purged), so deleted endpoints leave no idle tasks behind.
    pub fn forget(&self, endpoint_id: &str) {
        let mut workers = self.inner.workers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = workers.remove(endpoint_id) {
            w.stop.cancel();
        }
    }

    /// How many endpoint workers exist.
    pub fn workers(&self) -> usize {
        self.inner
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
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
    async fn run_worker(
        self: Arc<Self>,
        endpoint_id: String,
        notify: Arc<Notify>,
        busy: Arc<AtomicUsize>,
    ) {
        // Furthest queue position handed out; removals are committed
        // asynchronously, so the next read starts after it, not at the head.
        let mut after = 0u64;
        // Unordered endpoints only: items in flight, each retried on its own.
        let mut in_flight: JoinSet<Option<Done>> = JoinSet::new();
        let pace = Arc::new(Pace::default());
        loop {
            // Read only once the endpoint can be delivered to, and after its
            // throttle allows the next request, so that a queue built up
            // meanwhile goes out in full chunks.
            let Some(ep) = self.wait_for_config(&endpoint_id).await else {
                return;
            };
            if let Some(at) = pace.ready_at()
                && self.sleep_until(at).await
            {
                return;
            }
            let chunk_size = ep.chunk_size.clamp(1, 100) as usize;
            let limit = chunk_size * BATCH.div_ceil(chunk_size);
            // The queue is in memory; the records come from the log, mostly
            // from the page cache.
            let batch = match self.store.pending(&endpoint_id, after, limit) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(endpoint = %endpoint_id, error = %e, "cannot read queue");
                    if self.sleep(Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = notify.notified() => {}
                    Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                        self.settle(joined).await;
                    }
                    _ = self.cancel.cancelled() => return,
                }
                continue;
            }
            let mut items = batch.into_iter().peekable();
            while items.peek().is_some() {
                let Some(ep) = self.wait_for_config(&endpoint_id).await else {
                    return;
                };
                let chunk: Vec<Queued> = items
                    .by_ref()
                    .take(ep.chunk_size.clamp(1, 100) as usize)
                    .collect();
                if let Some(last) = chunk.last() {
                    after = last.position;
                }
                if ep.max_in_flight == 0 {
                    // Ordered: nothing else may be in flight (the endpoint
                    // may just have switched from unordered).
                    while let Some(joined) = in_flight.join_next().await {
                        self.settle(joined).await;
                    }
                    let Some(done) = self
                        .deliver_until_done(&endpoint_id, &chunk, &busy, &pace)
                        .await
                    else {
                        return; // cancelled
                    };
                    self.on_done(done).await;
                } else {
                    while in_flight.len() >= ep.max_in_flight as usize {
                        if let Some(joined) = in_flight.join_next().await {
                            self.settle(joined).await;
                        }
                    }
                    let (me, id, busy, pace) = (
                        self.clone(),
                        endpoint_id.clone(),
                        busy.clone(),
                        pace.clone(),
                    );
                    in_flight.spawn(async move {
                        me.deliver_until_done(&id, &chunk, &busy, &pace).await
                    });
                }
            }
        }
    }

    async fn settle(&self, joined: Result<Option<Done>, tokio::task::JoinError>) {
        if let Ok(Some(done)) = joined {
            self.on_done(done).await;
        }
    }

    /// Disables the endpoint when too many deliveries in a row failed for good.
    async fn on_done(&self, done: Done) {
        let Done::FailedForGood {
            ep,
            error,
            last,
            exhausted,
            in_a_row,
        } = done
        else {
            return;
        };
        for m in exhausted {
            self.report(m);
        }
        if in_a_row >= ep.disable_after_failures.max(1) {
            let reason = format!("{in_a_row} deliveries in a row failed for good; last: {error}");
            if self.disable(&ep, reason, &last).await {
                // Once enabled again, the endpoint gets a fresh count.
                self.store.reset_failure_streak(&ep.id).await;
            }
        }
    }

    /// Asks the control plane to disable `ep` and waits (bounded) for the new
    /// config; true once a newer config arrived.
    async fn disable(&self, ep: &pb::DeliveryEndpoint, reason: String, last: &Failure) -> bool {
        tracing::warn!(endpoint = %ep.id, %reason, "asking to disable endpoint");
        let msg = pb::AgentMessage {
            kind: Some(pb::agent_message::Kind::DisableEndpoint(
                pb::DisableEndpoint {
                    endpoint_id: ep.id.clone(),
                    tenant_id: ep.tenant_id.clone(),
                    reason,
                    revision: ep.revision,
                    last_failure: Some(operational::summary(last)),
                },
            )),
        };
        if self.outbox.send(msg).await.is_err() {
            return false;
        }
        let mut changes = self.state.subscribe();
        let wait = async {
            loop {
                if self
                    .state
                    .endpoint(&ep.id)
                    .is_none_or(|now| now.revision != ep.revision)
                {
                    return;
                }
                if changes.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            _ = wait => true,
            _ = tokio::time::sleep(DISABLE_WAIT) => false,
            _ = self.cancel.cancelled() => false,
        }
    }

    /// Attempts one chunk (one item unless the endpoint takes chunks) until
    /// it succeeds or the endpoint's retry schedule is exhausted (a final
    /// failure); None when cancelled. The chunk succeeds or fails as one,
    /// on the schedule of its most-tried item. The retry state is stored
    /// before each wait, so a restart continues the schedule. A 410 Gone
    /// disables the endpoint and keeps the items at the head.
    async fn deliver_until_done(
        &self,
        endpoint_id: &str,
        chunk: &[Queued],
        busy: &AtomicUsize,
        pace: &Pace,
    ) -> Option<Done> {
        let head = chunk.first()?;
        let mut attempts = chunk.iter().map(|q| q.attempts).max().unwrap_or(0);
        let mut due_ms = chunk
            .iter()
            .map(|q| q.next_attempt_at_ms)
            .max()
            .unwrap_or(0);
        let deliveries: Vec<&pb::Delivery> = chunk.iter().map(|q| &q.delivery).collect();
        let event = &head.delivery.event_id;
        let size = chunk.len() as u64;
        let mut first_try = true;
        // Set when a start was refused as too soon: wait for it instead of
        // taking a new reservation.
        let mut not_before = None;
        loop {
            let wait = due_ms.saturating_sub(now_ms());
            if wait > 0 && self.sleep(Duration::from_millis(wait as u64)).await {
                return None;
            }
            let ep = self.wait_for_config(endpoint_id).await?;
            let gap = spacing(&ep);
            let start_at = not_before
                .take()
                .or_else(|| (!gap.is_zero()).then(|| pace.reserve(gap)));
            if let Some(at) = start_at
                && self.sleep_until(at).await
            {
                return None;
            }
            let history = self.history(endpoint_id, &ep, pace).await;
            // Busy from here until the outcome is with the store. Entering
            // before the re-check means a handoff that took the slot away
            // either sees us busy and waits, or we see the slot gone.
            let busy_guard = Busy::enter(busy);
            if !self.state.deliverable(ep.slot) {
                continue;
            }
            // Refused: wait (not busy) and check config and slot again.
            let permit = match self.permit_to_start(pace, gap).await? {
                Start::Now(permit) => permit,
                Start::NotBefore(at) => {
                    not_before = Some(at);
                    continue;
                }
            };
            let attempted = http::attempt(
                &self.http,
                &ep,
                &deliveries,
                history,
                self.body_limit,
                attempts + 1,
            )
            .await;
            drop(permit);
            {
                let mut h = pace.history.lock().unwrap_or_else(|p| p.into_inner());
                let h = h.get_or_insert_with(History::default);
                match attempted.outcome {
                    Outcome::Delivered { .. } => {
                        h.last_success_at_ms = Some(attempted.record.started_at_ms)
                    }
                    Outcome::Failed { .. } => {
                        h.last_failure_at_ms = Some(attempted.record.started_at_ms)
                    }
                }
            }
            let m = crate::metrics::get();
            m.attempt_seconds
                .observe(f64::from(attempted.record.duration_ms) / 1000.0);
            if first_try {
                for q in chunk.iter().filter(|q| q.attempts == 0) {
                    let waited = attempted.record.started_at_ms - q.delivery.published_at_ms;
                    m.first_attempt_seconds
                        .observe(waited.max(0) as f64 / 1000.0);
                }
                first_try = false;
            }
            match attempted.outcome {
                Outcome::Delivered { .. } => m.attempts_ok.inc(),
                Outcome::Failed { .. } => m.attempts_failed.inc(),
            }
            self.watch_failure_rate(&ep, pace, &attempted);
            attempts += 1;
            let (status, error, retry_after) = match attempted.outcome {
                Outcome::Delivered { status } => {
                    tracing::debug!(endpoint = endpoint_id, %event, events = size, status, attempt = attempts, "delivered");
                    for q in chunk {
                        self.store
                            .record_success(q.seq, attempted.record.clone())
                            .await;
                    }
                    m.delivered.add(size);
                    return Some(Done::Delivered);
                }
                Outcome::Failed {
                    status,
                    error,
                    retry_after,
                } => (status, error, retry_after),
            };
            let result = if status == Some(410) {
                // The receiver says the endpoint is gone: stop at once and keep
                // the item for when an operator enables the endpoint again.
                AttemptResult::Held
            } else {
                let schedule: Vec<u64> = ep.retry_delays_ms.iter().map(|d| u64::from(*d)).collect();
                match retry::next_delay(&schedule, attempts, retry_after, rand::random()) {
                    Some(delay) => {
                        due_ms = now_ms() + delay.as_millis() as i64;
                        tracing::info!(endpoint = endpoint_id, %event, events = size, ?status, %error, attempt = attempts, retry_in_ms = delay.as_millis() as u64, "attempt failed");
                        AttemptResult::Retry { next_at_ms: due_ms }
                    }
                    None => {
                        tracing::warn!(endpoint = endpoint_id, %event, events = size, ?status, %error, attempts, "delivery failed for good; moving on");
                        AttemptResult::FailedForGood
                    }
                }
            };
            // Stored before the wait, so a restart continues the schedule.
            let mut in_a_row = 0;
            for q in chunk {
                match self
                    .store
                    .record_failure(q.seq, attempted.record.clone(), result)
                    .await
                {
                    Ok(n) => in_a_row = n,
                    Err(e) => {
                        // Not fatal: after a restart the schedule would resume one step early.
                        tracing::error!(endpoint = endpoint_id, event = %q.delivery.event_id, error = %e, "cannot store the attempt");
                    }
                }
            }
            drop(busy_guard);
            let last = operational::failure(&head.delivery.delivery_id, &attempted.record, &error);
            match result {
                AttemptResult::FailedForGood => {
                    m.failed.add(size);
                    let exhausted = chunk
                        .iter()
                        .filter_map(|q| {
                            operational::exhausted(&ep, q, attempts, &attempted.record, &error)
                        })
                        .collect();
                    return Some(Done::FailedForGood {
                        ep,
                        error,
                        last,
                        exhausted,
                        in_a_row,
                    });
                }
                AttemptResult::Held => {
                    self.disable(&ep, "the receiver answered 410 Gone".into(), &last)
                        .await;
                }
                _ => {}
            }
        }
    }

    /// Counts an attempt toward the endpoint's failure rate, and reports a
    /// crossing of the threshold, or a recovery from one.
    fn watch_failure_rate(&self, ep: &pb::DeliveryEndpoint, pace: &Pace, a: &http::Attempted) {
        let failed = matches!(a.outcome, Outcome::Failed { .. });
        let change = pace
            .failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(&self.failing, now_ms(), failed);
        match change {
            Some(failing::Change::Failing(f)) => {
                tracing::warn!(endpoint = %ep.id, attempts = f.attempts, failed = f.failed, "endpoint failing");
                self.report(operational::failing(ep, &f));
            }
            Some(failing::Change::Recovered(f)) => {
                tracing::info!(endpoint = %ep.id, attempts = f.attempts, failed = f.failed, "endpoint recovered");
                self.report(operational::recovered(ep, &f));
            }
            None => {}
        }
    }

    /// Sends an operational event to the control plane, without waiting:
    /// they are reports, and a full outbox (no control plane for a while)
    /// must not hold deliveries back.
    fn report(&self, m: pb::AgentMessage) {
        if self.outbox.try_send(m).is_err() {
            tracing::warn!("control-plane outbox full or closed; an operational event is dropped");
        }
    }

    /// The endpoint's last outcomes, for JWT claims; read from the store
    /// once per worker, and only for endpoints that send a JWT.
    async fn history(&self, endpoint_id: &str, ep: &pb::DeliveryEndpoint, pace: &Pace) -> History {
        let jwt = matches!(
            ep.auth.as_ref().and_then(|a| a.kind.as_ref()),
            Some(pb::receiver_auth::Kind::Jwt(_))
        );
        if !jwt {
            return History::default();
        }
        if let Some(h) = *pace.history.lock().unwrap_or_else(|p| p.into_inner()) {
            return h;
        }
        let store = self.store.clone();
        let id = endpoint_id.to_string();
        let stats = tokio::task::spawn_blocking(move || store.stats(&id)).await;
        let at = |a: Option<pb::AttemptSummary>| a.map(|a| a.at_ms).filter(|t| *t > 0);
        let loaded = match stats {
            Ok(Ok(s)) => History {
                last_success_at_ms: at(s.last_success),
                last_failure_at_ms: at(s.last_failure),
            },
            _ => History::default(),
        };
        *pace
            .history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(loaded)
    }

    /// The endpoint's config once it is known, enabled, and its slot is
    /// ours with its whole queue here; None when cancelled.
    async fn wait_for_config(&self, endpoint_id: &str) -> Option<Arc<pb::DeliveryEndpoint>> {
        let mut changes = self.state.subscribe();
        loop {
            if let Some(ep) = self.state.endpoint(endpoint_id)
                && ep.enabled
                && self.state.deliverable(ep.slot)
            {
                return Some(ep);
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { return None },
                _ = self.cancel.cancelled() => return None,
            }
        }
    }

    /// A concurrency permit, if the endpoint's spacing allows a request to
    /// start now (the start is recorded); else when it may (the permit is
    /// given back, so a throttled endpoint never keeps others from
    /// sending). None when the dispatcher stops.
    async fn permit_to_start(&self, pace: &Pace, gap: Duration) -> Option<Start<'_>> {
        let permit = self.permits.acquire().await.ok()?;
        if gap.is_zero() {
            return Some(Start::Now(permit));
        }
        Some(match pace.start(gap) {
            Ok(()) => Start::Now(permit),
            Err(at) => Start::NotBefore(at),
        })
    }

    /// Sleeps until `at`; true when cancelled instead.
    async fn sleep_until(&self, at: tokio::time::Instant) -> bool {
        tokio::select! {
            _ = tokio::time::sleep_until(at) => false,
            _ = self.cancel.cancelled() => true,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_keeps_the_spacing_from_the_last_real_start() {
        let mut s = Starts::default();
        let gap = Duration::from_secs(60);
        let t0 = tokio::time::Instant::now();
        assert_eq!(s.reserve(t0, gap), t0);
        assert_eq!(s.reserve(t0, gap), t0 + gap, "reservations queue up");
        // The first starts late, past the second's reservation: it waited
        // for a concurrency permit.
        let late = t0 + gap * 3 / 2;
        assert_eq!(s.start(late, gap), Ok(()));
        // The second, due at its reservation, must wait a whole gap after
        // that real start, and then may go.
        assert_eq!(s.start(t0 + gap, gap), Err(late + gap));
        assert_eq!(
            s.start(late + gap - Duration::from_millis(1), gap),
            Err(late + gap)
        );
        assert_eq!(s.start(late + gap, gap), Ok(()));
        // A new reservation comes a gap after the last real start.
        assert_eq!(s.reserve(late + gap, gap), late + gap * 2);
    }

    proptest::proptest! {
        /// Whatever the reservations and the delays before each start, two
        /// accepted starts are never closer than the spacing.
        #[test]
        fn accepted_starts_keep_the_spacing(
            ops in proptest::collection::vec((proptest::bool::ANY, 0u64..5_000), 1..200),
            gap_ms in 1u64..2_000,
        ) {
            let gap = Duration::from_millis(gap_ms);
            let mut s = Starts::default();
            let mut now = tokio::time::Instant::now();
            let mut last: Option<tokio::time::Instant> = None;
            for (reserve, advance_ms) in ops {
                now += Duration::from_millis(advance_ms);
                if reserve {
                    proptest::prop_assert!(s.reserve(now, gap) >= now);
                } else if s.start(now, gap).is_ok() {
                    if let Some(l) = last {
                        proptest::prop_assert!(now - l >= gap);
                    }
                    last = Some(now);
                }
            }
        }
    }

    #[test]
    fn no_spacing_reservations_are_now() {
        let pace = Pace::default();
        let now = tokio::time::Instant::now();
        assert!(pace.reserve(Duration::ZERO) >= now);
        assert_eq!(pace.start(Duration::ZERO), Ok(()));
        assert_eq!(pace.start(Duration::ZERO), Ok(()));
    }

    #[tokio::test]
    async fn forget_stops_a_deleted_endpoints_worker() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (outbox, _rx) = mpsc::channel(1);
        let d = Dispatcher::new(
            store,
            AgentState::new(),
            {
                let _ = rustls::crypto::ring::default_provider().install_default();
                http::Clients::new(crate::egress::Guard::default(), 1).unwrap()
            },
            DispatchConfig {
                max_concurrency: 1,
                response_body_limit: 1024,
                failing: failing::Settings {
                    threshold_percent: 0,
                    window_ms: 1,
                    min_attempts: 1,
                },
            },
            outbox,
            CancellationToken::new(),
        );
        d.wake("ep_a");
        d.wake("ep_a");
        d.wake("ep_b");
        assert_eq!(d.workers(), 2, "one worker per endpoint");
        d.forget("ep_a");
        assert_eq!(d.workers(), 1);
        d.wake("ep_a");
        assert_eq!(d.workers(), 2, "new work starts a new worker");
    }
}
