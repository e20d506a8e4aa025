//! When an endpoint is "failing": the share of its failed attempts over a
//! sliding window crosses the operator's threshold. A failed attempt that
//! takes it across fires `herald.endpoint.failing` and opens a report;
//! while it is open nothing fires again (a rate hovering at the threshold, or failures coming back
//! after a quiet spell, are the same incident). The first successful
//! attempt with the share under half the threshold, or with fewer than
//! the minimum of attempts left in the window, fires
//! `herald.endpoint.recovered` and closes it. So the two strictly
//! alternate, and every failing report gets its recovery when the endpoint
//! succeeds again: an alert raised by the one is closed by the other.

use herald_shared::operational::Failing;

/// The operator's settings (`--failing-*` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Percent of failed attempts that makes an endpoint failing; 0: off.
    pub threshold_percent: u32,
    /// The window, in ms.
    pub window_ms: i64,
    /// Fewer attempts than this in the window never count as failing.
    pub min_attempts: u64,
}

/// Buckets the window is cut into: memory stays constant whatever the
/// rate, at the price of a window that slides by a tenth.
const BUCKETS: usize = 10;

/// One endpoint's recent attempts.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// (bucket number, attempts, failed), by bucket number modulo BUCKETS.
    buckets: [(i64, u64, u64); BUCKETS],
    /// A failing report is open: fired, and no recovery since.
    failing: bool,
}

/// What an attempt changed about an endpoint's health.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// It crossed the threshold: now failing.
    Failing(Failing),
    /// It was failing, and this successful attempt closes the report.
    Recovered(Failing),
}

impl Window {
    /// Counts an attempt made at `now_ms`; returns the change when this
    /// attempt made the endpoint failing, or recovered from it.
    pub fn record(&mut self, s: &Settings, now_ms: i64, failed: bool) -> Option<Change> {
        if s.threshold_percent == 0 {
            return None;
        }
        let width = (s.window_ms / BUCKETS as i64).max(1);
        let n = now_ms.div_euclid(width);
        let b = &mut self.buckets[n.rem_euclid(BUCKETS as i64) as usize];
        if b.0 != n {
            *b = (n, 0, 0);
        }
        b.1 += 1;
        b.2 += u64::from(failed);
        let (attempts, fails) = self
            .buckets
            .iter()
            .filter(|(k, _, _)| *k > n - BUCKETS as i64 && *k <= n)
            .fold((0, 0), |(a, f), (_, ba, bf)| (a + ba, f + bf));
        let percent = |p: u64| fails * 100 >= p * attempts;
        let at_threshold = attempts >= s.min_attempts && percent(u64::from(s.threshold_percent));
        let reading = Failing {
            attempts,
            failed: fails,
            window_secs: (s.window_ms / 1000) as u64,
            threshold_percent: s.threshold_percent,
            at_ms: now_ms,
        };
        if self.failing {
            let under_half = !percent(u64::from(s.threshold_percent).div_ceil(2));
            // Only a success recovers: a failure after the old ones aged
            // out is the same incident going on.
            if !failed && (attempts < s.min_attempts || under_half) {
                self.failing = false;
                return Some(Change::Recovered(reading));
            }
            return None;
        }
        // Only a failure opens a report (a success that brings the window
        // to the minimum of attempts is no sign of failing).
        if !failed || !at_threshold {
            return None;
        }
        self.failing = true;
        Some(Change::Failing(reading))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: Settings = Settings {
        threshold_percent: 50,
        window_ms: 60_000,
        min_attempts: 4,
    };

    /// Failing reports among the outcomes' changes.
    fn run(w: &mut Window, at: i64, outcomes: &[bool]) -> usize {
        changes(w, at, outcomes)
            .iter()
            .filter(|c| matches!(c, Change::Failing(_)))
            .count()
    }

    fn changes(w: &mut Window, at: i64, outcomes: &[bool]) -> Vec<Change> {
        outcomes
            .iter()
            .enumerate()
            .filter_map(|(i, f)| w.record(&S, at + i as i64, *f))
            .collect()
    }

    #[test]
    fn a_failing_endpoint_recovers_once_on_a_success_under_half() {
        let mut w = Window::default();
        assert_eq!(run(&mut w, 0, &[true; 6]), 1);
        // 6 failed of 9: still over half the threshold (25 %).
        assert!(changes(&mut w, 10, &[false; 3]).is_empty());
        // 6 of 24 is 25 %: not under it yet; 6 of 25 is.
        assert!(changes(&mut w, 20, &[false; 15]).is_empty());
        let c = changes(&mut w, 40, &[false; 5]);
        assert_eq!(c.len(), 1, "{c:?}");
        let Change::Recovered(r) = c[0] else {
            panic!("{c:?}")
        };
        assert_eq!((r.attempts, r.failed), (25, 6));
        // Healthy from here: nothing more.
        assert!(changes(&mut w, 60, &[false; 50]).is_empty());
    }

    #[test]
    fn a_report_stays_open_until_a_success_closes_it() {
        let mut w = Window::default();
        assert_eq!(run(&mut w, 0, &[true; 10]), 1);
        // A window later (the endpoint was disabled, say) failures come
        // back: the same incident, no second report, no recovery.
        assert!(changes(&mut w, 120_000, &[true; 6]).is_empty());
        // 6 failed of 7: a success is not enough yet.
        assert!(changes(&mut w, 120_010, &[false]).is_empty());
        let c = changes(&mut w, 120_020, &[false; 30]);
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(matches!(c[0], Change::Recovered(_)));
        // A new crossing after the recovery is a new report.
        assert_eq!(run(&mut w, 240_000, &[true; 10]), 1);
    }

    #[test]
    fn after_a_quiet_spell_the_first_success_recovers() {
        let mut w = Window::default();
        assert_eq!(run(&mut w, 0, &[true; 10]), 1);
        // The failures aged out: one success, under the minimum, closes it.
        let c = changes(&mut w, 120_000, &[false]);
        assert!(
            matches!(c[..], [Change::Recovered(r)] if r.attempts == 1),
            "{c:?}"
        );
    }

    #[test]
    fn fires_once_per_crossing() {
        let mut w = Window::default();
        assert_eq!(run(&mut w, 0, &[true, true, true]), 0, "under the minimum");
        assert_eq!(run(&mut w, 10, &[true; 20]), 1);
        // Hovering around the threshold does not fire again.
        assert_eq!(run(&mut w, 100, &[false, true, false, true, false]), 0);
        // Recovered (well under half the threshold), then failing again.
        assert_eq!(run(&mut w, 200, &[false; 200]), 0);
        assert_eq!(run(&mut w, 400, &[true; 300]), 1);
    }

    #[test]
    fn an_old_window_is_forgotten() {
        let mut w = Window::default();
        assert_eq!(run(&mut w, 0, &[true; 3]), 0, "under the minimum");
        // A window later those 3 are gone: 3 more are still under it.
        assert_eq!(run(&mut w, 120_000, &[true; 3]), 0);
        assert_eq!(run(&mut w, 120_010, &[true]), 1);
    }

    proptest! {
        /// With the detector off, or no failures, nothing ever fires.
        #[test]
        fn quiet_when_off_or_healthy(gaps in proptest::collection::vec(0i64..20_000, 1..200)) {
            let off = Settings { threshold_percent: 0, ..S };
            let (mut a, mut b) = (Window::default(), Window::default());
            let mut at = 0;
            for g in gaps {
                at += g;
                prop_assert!(a.record(&off, at, true).is_none());
                prop_assert!(b.record(&S, at, false).is_none());
            }
        }

        /// However many failures follow, within one window they fire once.
        #[test]
        fn a_burst_of_failures_fires_once(n in 4usize..500, start in 0i64..1_000_000) {
            let mut w = Window::default();
            let fired = (0..n)
                .filter(|i| w.record(&S, start + *i as i64 * 10, true).is_some())
                .count();
            prop_assert_eq!(fired, 1);
        }

        /// Reports alternate: a recovery closes an open failing report, on
        /// a successful attempt with the share under half the threshold
        /// (or too few attempts left); a failing report opens only when
        /// none is open, on a failed attempt; and once one is open, a long
        /// enough run of successes always closes it.
        #[test]
        fn failing_and_recovered_alternate_and_every_report_closes(
            // (ms since the previous attempt, 0..10 against the share of
            // failures): gaps long enough to age the window out, and
            // failure rates from none to all.
            attempts in proptest::collection::vec((1i64..90_000, 0u8..10), 1..600),
            fail_below in 0u8..=10,
        ) {
            let mut w = Window::default();
            let mut open = false;
            let mut at = 0;
            for (gap, x) in attempts {
                at += gap;
                let failed = x < fail_below;
                match w.record(&S, at, failed) {
                    Some(Change::Failing(_)) => {
                        prop_assert!(!open && failed);
                        open = true;
                    }
                    Some(Change::Recovered(r)) => {
                        prop_assert!(open && !failed);
                        prop_assert!(r.attempts < S.min_attempts || r.failed * 100 < 25 * r.attempts);
                        open = false;
                    }
                    None => {}
                }
            }
            // Successes for a whole window: any open report closes.
            for _ in 0..1_000 {
                at += S.window_ms / 100;
                if let Some(Change::Recovered(_)) = w.record(&S, at, false) {
                    prop_assert!(open);
                    open = false;
                }
            }
            prop_assert!(!open, "a failing report never closed");
        }
    }
}
