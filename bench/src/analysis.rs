//! What the receiver saw, checked against what was published: missing,
//! duplicated and reordered deliveries, and publish-to-arrival latency.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::receiver::Arrival;

/// Correctness and latency of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    /// Distinct events delivered.
    pub delivered: u64,
    /// Events never delivered.
    pub missing: u64,
    /// Deliveries beyond the first of an event.
    pub duplicates: u64,
    /// Deliveries whose seq is lower than one already seen on that endpoint.
    pub order_violations: u64,
    /// Deliveries to the wrong endpoint, or of an event never published.
    pub misrouted: u64,
    /// Publish-call start to first arrival, per delivered event.
    pub latency: Latency,
    /// The last first-arrival of an event (None when nothing arrived).
    #[serde(skip)]
    pub last_arrival: Option<Instant>,
}

impl Analysis {
    /// Whether every event arrived exactly once, in order, where it should.
    pub fn is_clean(&self) -> bool {
        self.missing == 0
            && self.duplicates == 0
            && self.order_violations == 0
            && self.misrouted == 0
    }
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// Checks `arrivals` (in arrival order) against events 0..started.len(),
/// event n being meant for endpoint n % endpoints and published at
/// `started[n]`.
pub fn analyse(arrivals: &[Arrival], started: &[Instant], endpoints: u64) -> Analysis {
    let events = started.len();
    let mut first: Vec<Option<Instant>> = vec![None; events];
    let mut highest: Vec<Option<u64>> = vec![None; endpoints as usize];
    let (mut duplicates, mut order_violations, mut misrouted) = (0, 0, 0);
    for a in arrivals {
        let n = a.seq as usize;
        if n >= events || a.seq % endpoints != u64::from(a.endpoint) {
            misrouted += 1;
            continue;
        }
        match first[n] {
            Some(_) => duplicates += 1,
            None => first[n] = Some(a.at),
        }
        let high = &mut highest[a.endpoint as usize];
        match *high {
            Some(h) if a.seq < h => order_violations += 1,
            _ => *high = Some(a.seq),
        }
    }
    let mut lat: Vec<Duration> = first
        .iter()
        .zip(started)
        .filter_map(|(f, s)| f.map(|f| f.saturating_duration_since(*s)))
        .collect();
    lat.sort_unstable();
    let delivered = lat.len() as u64;
    Analysis {
        delivered,
        missing: events as u64 - delivered,
        duplicates,
        order_violations,
        misrouted,
        latency: percentiles(&lat),
        last_arrival: first.iter().flatten().max().copied(),
    }
}

/// Percentiles of sorted durations (nearest rank).
fn percentiles(sorted: &[Duration]) -> Latency {
    let at = |q: f64| -> f64 {
        if sorted.is_empty() {
            return 0.0;
        }
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1].as_secs_f64() * 1000.0
    };
    Latency {
        p50_ms: at(0.50),
        p90_ms: at(0.90),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrival(endpoint: u32, seq: u64, at: Instant) -> Arrival {
        Arrival { endpoint, seq, at }
    }

    #[test]
    fn finds_missing_duplicates_reorders_and_misroutes() {
        let t = Instant::now();
        let ms = |n| t + Duration::from_millis(n);
        let started = vec![t; 6];
        // Two endpoints: even seqs to ep0, odd to ep1.
        let arrivals = [
            arrival(0, 0, ms(1)),
            arrival(0, 4, ms(2)),
            arrival(0, 2, ms(3)), // behind 4: out of order
            arrival(1, 1, ms(4)),
            arrival(1, 1, ms(5)), // duplicate
            arrival(0, 3, ms(6)), // odd seq on ep0: misrouted
            arrival(1, 9, ms(7)), // never published: misrouted
        ];
        let a = analyse(&arrivals, &started, 2);
        assert_eq!(a.delivered, 4);
        assert_eq!(a.missing, 2); // 3 and 5
        assert_eq!(a.duplicates, 1);
        assert_eq!(a.order_violations, 1);
        assert_eq!(a.misrouted, 2);
        assert!(!a.is_clean());
        assert_eq!(a.latency.max_ms, 4.0);
        assert_eq!(a.last_arrival, Some(ms(4)));
    }

    #[test]
    fn clean_run() {
        let t = Instant::now();
        let started: Vec<Instant> = (0..100).map(|_| t).collect();
        let arrivals: Vec<Arrival> = (0..100)
            .map(|n| arrival((n % 3) as u32, n, t + Duration::from_millis(n + 1)))
            .collect();
        let a = analyse(&arrivals, &started, 3);
        assert!(a.is_clean());
        assert_eq!(a.latency.p50_ms, 50.0);
        assert_eq!(a.latency.p99_ms, 99.0);
        assert_eq!(a.latency.max_ms, 100.0);
    }
}
