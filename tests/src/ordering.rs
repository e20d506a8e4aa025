//! Checks for ordered endpoints: the receivers sit at `/ep{i}` and each
//! endpoint's events carry `data.seq` 0, 1, 2, ... in publish order.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::receiver::{Received, Receiver};

/// The `data.seq` of every request accepted (answered 2xx), per path, in
/// arrival order.
pub fn seqs_by_path(received: &[Received]) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in received.iter().filter(|r| r.accepted()) {
        let seq = r.json()["data"]["seq"].as_u64().unwrap_or(u64::MAX);
        out.entry(r.uri.path().to_string()).or_default().push(seq);
    }
    out
}

/// Waits until `/ep0` .. `/ep{endpoints-1}` have each accepted every
/// sequence in `0..per_ep`; the error says how many are missing where.
pub async fn wait_all(
    receiver: &Receiver,
    endpoints: u64,
    per_ep: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = seqs_by_path(&receiver.received());
        let missing: Vec<(u64, usize)> = (0..endpoints)
            .map(|i| {
                let seqs = got.get(&format!("/ep{i}"));
                let n = (0..per_ep)
                    .filter(|s| !seqs.is_some_and(|v| v.contains(s)))
                    .count();
                (i, n)
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "not every event arrived in time; missing (endpoint, count): {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that every path starts at 0 and never goes back; returns the
/// duplicates (an event repeated right after itself: at least once).
pub fn assert_in_order(by_path: &BTreeMap<String, Vec<u64>>) -> usize {
    let mut dups = 0;
    for (path, seqs) in by_path {
        let mut last: Option<u64> = None;
        for s in seqs {
            match last {
                Some(l) if *s == l => dups += 1,
                Some(l) => assert!(*s > l, "{path} got {s} after {l}: {seqs:?}"),
                None => assert_eq!(*s, 0, "{path} starts at 0: {seqs:?}"),
            }
            last = Some(*s);
        }
    }
    dups
}
