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

/// How far back a repeat after a crash may go, in an endpoint's events: a
/// killed agent's successes not yet committed are its last few (one group
/// commit's worth, for an ordered endpoint one or two).
pub const REPLAY_WINDOW: usize = 32;

/// The order guarantee under kill -9, where a success is on disk only with
/// the agent's next group commit: the *first* arrival of each event comes
/// in publish order (every path starts at 0 and its new events never go
/// back), and a repeat is a duplicate, counted. A killed agent's last few
/// successes, not yet on disk, are delivered again by the next owner, in
/// their order, after newer ones the receiver already has: `196, 197, 196,
/// 197, 198`. A repeat must be of one of the endpoint's last
/// [`REPLAY_WINDOW`] events: a bug that delivers old work again (5 after
/// 900) is not passed off as a duplicate. Returns the duplicates.
pub fn assert_first_arrivals_in_order(by_path: &BTreeMap<String, Vec<u64>>) -> usize {
    let mut dups = 0;
    for (path, seqs) in by_path {
        let mut newest: Option<u64> = None;
        // Position of each event among the path's first arrivals.
        let mut seen = std::collections::HashMap::new();
        for s in seqs {
            if let Some(&at) = seen.get(s) {
                let back = seen.len() - at;
                assert!(
                    back <= REPLAY_WINDOW,
                    "{path} got {s} again {back} events after it: {seqs:?}"
                );
                dups += 1;
                continue;
            }
            seen.insert(*s, seen.len());
            match newest {
                Some(n) => assert!(*s > n, "{path} got {s} first after {n}: {seqs:?}"),
                None => assert_eq!(*s, 0, "{path} starts at 0: {seqs:?}"),
            }
            newest = Some(*s);
        }
    }
    dups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(seqs: &[u64]) -> BTreeMap<String, Vec<u64>> {
        BTreeMap::from([("/ep0".to_string(), seqs.to_vec())])
    }

    #[test]
    fn a_replayed_run_is_duplicates_not_disorder() {
        assert_eq!(assert_first_arrivals_in_order(&one(&[0, 1, 2, 1, 2, 3])), 2);
        assert_eq!(assert_first_arrivals_in_order(&one(&[0, 0, 1])), 1);
    }

    #[test]
    #[should_panic(expected = "got 5 again 95 events after it")]
    fn old_work_delivered_again_is_not_a_duplicate() {
        let mut seqs: Vec<u64> = (0..100).collect();
        seqs.push(5);
        assert_first_arrivals_in_order(&one(&seqs));
    }

    #[test]
    #[should_panic(expected = "got 2 first after 3")]
    fn a_new_event_before_an_older_new_one_is_disorder() {
        assert_first_arrivals_in_order(&one(&[0, 1, 3, 2]));
    }

    #[test]
    #[should_panic(expected = "got 1 after 2")]
    fn the_strict_check_refuses_a_replayed_run() {
        assert_in_order(&one(&[0, 1, 2, 1, 2]));
    }
}
