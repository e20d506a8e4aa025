//! Retry schedules: when to try a failed delivery again, and when to give up.
//!
//! A schedule lists the delays before each retry; its length is the number
//! of retries, so "5 minutes, then 10 minutes, then stop" is `[5m, 10m]`
//! (three attempts in all) and "up to 10 tries" is any nine delays.

use std::time::Duration;

/// The default: attempt at once, then after 5 s, 5 min, 30 min, 2 h, 5 h,
/// 10 h and 10 h (eight attempts over about 28 hours).
pub const DEFAULT_SCHEDULE_MS: [u64; 7] = [
    5_000,
    5 * 60_000,
    30 * 60_000,
    2 * 3_600_000,
    5 * 3_600_000,
    10 * 3_600_000,
    10 * 3_600_000,
];

/// Most retries a schedule may list.
pub const MAX_RETRIES: usize = 50;
/// Longest delay a schedule may list.
pub const MAX_DELAY_MS: u64 = 24 * 3_600_000;
/// A receiver's `Retry-After` is honoured up to this long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Jitter spreads each delay by up to this fraction either way, so that
/// endpoints failing together do not retry together.
pub const JITTER: f64 = 0.1;

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Too many entries.
    #[error("must list at most {MAX_RETRIES} delays")]
    TooLong,
    /// An entry is too long.
    #[error("delay {0} ms is over the maximum of {MAX_DELAY_MS} ms")]
    TooSlow(u64),
}

/// Checks a schedule given in milliseconds.
pub fn validate(schedule_ms: &[u64]) -> Result<(), ScheduleError> {
    if schedule_ms.len() > MAX_RETRIES {
        return Err(ScheduleError::TooLong);
    }
    match schedule_ms.iter().find(|d| **d > MAX_DELAY_MS) {
        Some(d) => Err(ScheduleError::TooSlow(*d)),
        None => Ok(()),
    }
}

/// The delay before the next attempt after `failed` attempts have failed,
/// or `None` when the schedule is exhausted (a final failure).
///
/// `retry_after` is the receiver's own request (429, 503): it is honoured
/// when longer than the scheduled delay, up to [`MAX_RETRY_AFTER`].
/// `unit` is a random number in [0, 1) for the jitter.
pub fn next_delay(
    schedule_ms: &[u64],
    failed: u32,
    retry_after: Option<Duration>,
    unit: f64,
) -> Option<Duration> {
    let index = usize::try_from(failed.checked_sub(1)?).ok()?;
    let base = *schedule_ms.get(index)?;
    let spread = (base as f64 * JITTER * (2.0 * unit.clamp(0.0, 1.0) - 1.0)) as i64;
    let scheduled = Duration::from_millis(base.saturating_add_signed(spread));
    Some(match retry_after {
        Some(ra) => scheduled.max(ra.min(MAX_RETRY_AFTER)),
        None => scheduled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: [u64; 2] = [300_000, 600_000];

    #[test]
    fn schedule_length_is_the_number_of_retries() {
        assert_eq!(
            next_delay(&S, 0, None, 0.5),
            None,
            "no failure yet: nothing to schedule"
        );
        assert_eq!(next_delay(&S, 1, None, 0.5), Some(Duration::from_secs(300)));
        assert_eq!(next_delay(&S, 2, None, 0.5), Some(Duration::from_secs(600)));
        assert_eq!(
            next_delay(&S, 3, None, 0.5),
            None,
            "three attempts, then stop"
        );
        assert_eq!(next_delay(&[], 1, None, 0.5), None, "no retries at all");
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let lo = next_delay(&S, 1, None, 0.0).unwrap();
        let hi = next_delay(&S, 1, None, 0.999_999).unwrap();
        assert_eq!(lo, Duration::from_secs(270));
        assert!(hi > Duration::from_secs(329) && hi <= Duration::from_secs(330));
        assert_eq!(next_delay(&[0], 1, None, 0.0), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_extends_but_is_capped() {
        let longer = Some(Duration::from_secs(900));
        assert_eq!(
            next_delay(&S, 1, longer, 0.5),
            Some(Duration::from_secs(900))
        );
        let shorter = Some(Duration::from_secs(1));
        assert_eq!(
            next_delay(&S, 1, shorter, 0.5),
            Some(Duration::from_secs(300))
        );
        let huge = Some(Duration::from_secs(86_400));
        assert_eq!(next_delay(&S, 1, huge, 0.5), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn validation() {
        assert!(validate(&DEFAULT_SCHEDULE_MS).is_ok());
        assert_eq!(
            validate(&[MAX_DELAY_MS + 1]),
            Err(ScheduleError::TooSlow(MAX_DELAY_MS + 1))
        );
        assert_eq!(validate(&[1; MAX_RETRIES + 1]), Err(ScheduleError::TooLong));
    }
}
