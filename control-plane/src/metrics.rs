//! The control plane's Prometheus metrics, as handles into the process
//! registry, and the gauges read from the view at scrape time.

use std::sync::OnceLock;

use herald_shared::metrics::{Counter, Gauge, Histogram, LATENCY_BUCKETS};
use herald_shared::process::metrics as registry;

use crate::view::ViewHandle;

/// Metrics updated as things happen.
pub struct Metrics {
    /// Publish duration, call to answer.
    pub publish_seconds: Histogram,
    /// Deliveries created by publishes (matched endpoints).
    pub publish_deliveries: Counter,
    /// Agent control streams open now.
    pub agent_sessions: Gauge,
    /// `Ingest` calls made to agents.
    pub ingest_calls: Counter,
    /// Publish shares those calls carried (more than calls: merged).
    pub ingest_shares: Counter,
}

impl Metrics {
    /// Counts one `Ingest` call carrying `shares` publishes' shares.
    pub fn ingest_call(&self, shares: usize) {
        self.ingest_calls.inc();
        self.ingest_shares.add(shares as u64);
    }
}

/// The control plane's metrics.
pub fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        let r = registry();
        Metrics {
            publish_seconds: r.histogram(
                "herald_publish_duration_seconds",
                "Publish calls, from request to answer (stored on every owner).",
                &[],
                LATENCY_BUCKETS,
            ),
            publish_deliveries: r.counter(
                "herald_publish_deliveries_total",
                "Deliveries created by publishes (one per matched endpoint).",
                &[],
            ),
            agent_sessions: r.gauge(
                "herald_agent_sessions",
                "Agent control streams open on this replica.",
                &[],
            ),
            ingest_calls: r.counter(
                "herald_ingest_calls_total",
                "Ingest calls made to agents.",
                &[],
            ),
            ingest_shares: r.counter(
                "herald_ingest_shares_total",
                "Publishes' shares carried by ingest calls; over calls, how many merged.",
                &[],
            ),
        }
    })
}

/// The canonical gRPC name of a code, as other gRPC metrics label it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Counts one publish by its gRPC code ("OK", "INVALID_ARGUMENT", ...).
pub fn publish_done(code: tonic::Code) {
    publish_done_named(code_name(code));
}

/// Counts one publish by its gRPC code name.
pub fn publish_done_named(name: &str) {
    registry()
        .counter(
            "herald_publishes_total",
            "Publish calls, by gRPC status code.",
            &[("code", name)],
        )
        .inc();
}

/// Sets the gauges that mirror the view (called before each scrape).
pub fn refresh(view: &ViewHandle, is_leader: bool) {
    let r = registry();
    view.read(|v| {
        let endpoints = v.endpoints.values().flat_map(|m| m.values());
        let (mut total, mut disabled) = (0i64, 0i64);
        for e in endpoints {
            total += 1;
            if !e.record.enabled {
                disabled += 1;
            }
        }
        r.gauge("herald_endpoints", "Endpoints configured.", &[])
            .set(total);
        r.gauge(
            "herald_endpoints_disabled",
            "Endpoints disabled (by an operator or by Herald).",
            &[],
        )
        .set(disabled);
        r.gauge("herald_agents", "Live agents.", &[])
            .set(v.agents.len() as i64);
        let (epoch, handoffs) = v
            .slot_map
            .as_ref()
            .map_or((0, 0), |(m, _)| (m.epoch as i64, m.handoffs.len() as i64));
        r.gauge("herald_slot_map_epoch", "Epoch of the slot map.", &[])
            .set(epoch);
        r.gauge(
            "herald_handoffs_in_progress",
            "Slots whose queues are still moving between agents.",
            &[],
        )
        .set(handoffs);
        r.gauge(
            "herald_config_revision",
            "etcd revision the in-memory config reflects (compare across replicas for watch lag).",
            &[],
        )
        .set(v.revision);
    });
    r.gauge(
        "herald_is_leader",
        "1 on the replica that plans the slot map.",
        &[],
    )
    .set(i64::from(is_leader));
}
