//! When an endpoint is "failing": the share of its failed attempts over a
//! sliding window crosses the operator's threshold. Each crossing fires
//! `herald.endpoint.failing` once; the detector re-arms only when the
//! share falls under half the threshold, or the window holds fewer than
//! the minimum of attempts, so a rate hovering at the threshold does not
//! fire on every attempt.

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
    /// Crossed, and not re-armed since.
    failing: bool,
}

impl Window {
    /// Counts an attempt made at `now_ms`; returns the crossing when this
    /// attempt made the endpoint failing.
    pub fn record(&mut self, s: &Settings, now_ms: i64, failed: bool) -> Option<Failing> {
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
        if self.failing {
            let under_half = !percent(u64::from(s.threshold_percent).div_ceil(2));
            if attempts < s.min_attempts || under_half {
                self.failing = false;
            }
            return None;
        }
        if !at_threshold {
            return None;
        }
        self.failing = true;
        Some(Failing {
            attempts,
            failed: fails,
            window_secs: (s.window_ms / 1000) as u64,
            threshold_percent: s.threshold_percent,
            at_ms: now_ms,
        })
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

    fn run(w: &mut Window, at: i64, outcomes: &[bool]) -> usize {
        outcomes
            .iter()
            .enumerate()
            .filter(|(i, f)| w.record(&S, at + *i as i64, **f).is_some())
            .count()
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
        assert_eq!(run(&mut w, 0, &[true; 10]), 1);
        // A window later the old failures are gone: below the minimum
        // re-arms, and new failures cross again.
        assert_eq!(run(&mut w, 120_000, &[true; 10]), 1);
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
    }
}
