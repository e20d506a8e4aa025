//! The agent's Prometheus metrics, as handles into the process registry.

use std::sync::OnceLock;

use herald_shared::metrics::{Counter, Gauge, Histogram, LATENCY_BUCKETS};
use herald_shared::process::metrics as registry;

/// Every metric the agent exports.
pub struct Metrics {
    /// Deliveries that succeeded.
    pub delivered: Counter,
    /// Deliveries that failed for good.
    pub failed: Counter,
    /// Attempts answered 2xx.
    pub attempts_ok: Counter,
    /// Attempts that failed (any reason).
    pub attempts_failed: Counter,
    /// Duration of one attempt.
    pub attempt_seconds: Histogram,
    /// From the publish to the first attempt of a delivery.
    pub first_attempt_seconds: Histogram,
    /// Deliveries stored by Ingest.
    pub ingested: Counter,
    /// Deliveries Ingest dropped as already held.
    pub ingest_duplicates: Counter,
    /// Deliveries queued now.
    pub queue_depth: Gauge,
    /// Slots owned now.
    pub slots_owned: Gauge,
    /// Deliveries handed to other agents.
    pub handed_out: Counter,
    /// Deliveries received from other agents.
    pub handed_in: Counter,
    /// Control streams opened (1 + reconnects).
    pub control_streams: Counter,
    /// Time of one store commit (a group of writes, fsync included).
    pub store_commit_seconds: Histogram,
    /// Writes folded into one store commit.
    pub store_commit_writes: Histogram,
}

/// The agent's metrics.
pub fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        let r = registry();
        let outcome = "herald_deliveries_total";
        let outcome_help = "Deliveries finished, by outcome.";
        let attempts = "herald_attempts_total";
        let attempts_help = "Delivery attempts, by result.";
        let handoff = "herald_handoff_deliveries_total";
        let handoff_help = "Deliveries moved between agents with their slots, by direction.";
        Metrics {
            delivered: r.counter(outcome, outcome_help, &[("outcome", "succeeded")]),
            failed: r.counter(outcome, outcome_help, &[("outcome", "failed")]),
            attempts_ok: r.counter(attempts, attempts_help, &[("result", "success")]),
            attempts_failed: r.counter(attempts, attempts_help, &[("result", "failure")]),
            attempt_seconds: r.histogram(
                "herald_attempt_duration_seconds",
                "Duration of one delivery attempt, request to response.",
                &[],
                LATENCY_BUCKETS,
            ),
            first_attempt_seconds: r.histogram(
                "herald_publish_to_first_attempt_seconds",
                "Time from the publish to the start of a delivery's first attempt.",
                &[],
                LATENCY_BUCKETS,
            ),
            ingested: r.counter(
                "herald_ingested_total",
                "Deliveries stored durably by Ingest.",
                &[],
            ),
            ingest_duplicates: r.counter(
                "herald_ingest_duplicates_total",
                "Deliveries Ingest dropped because they were already held.",
                &[],
            ),
            queue_depth: r.gauge(
                "herald_queue_depth",
                "Deliveries queued on this agent.",
                &[],
            ),
            slots_owned: r.gauge("herald_slots_owned", "Slots this agent owns.", &[]),
            handed_out: r.counter(handoff, handoff_help, &[("direction", "out")]),
            handed_in: r.counter(handoff, handoff_help, &[("direction", "in")]),
            control_streams: r.counter(
                "herald_control_streams_total",
                "Control streams opened to a control plane (the first and every reconnect).",
                &[],
            ),
            store_commit_seconds: r.histogram(
                "herald_store_commit_duration_seconds",
                "Duration of one store commit: a group of writes made durable with one fsync.",
                &[],
                &[
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    1.0,
                ],
            ),
            store_commit_writes: r.histogram(
                "herald_store_commit_writes",
                "Writes (inserts, attempt records, ...) folded into one store commit.",
                &[],
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
            ),
        }
    })
}
