//! The invocation's deadline: how long the hook's test may probe, and
//! when a sweep stops starting secrets.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::Error;
use crate::ports::Clock;
use crate::steps::{Probing, Rekey};

/// Every step ends this long before the invocation's deadline at the
/// latest, the hook's test included.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(2);

/// The error of a step cut off at its budget (`handle`): retryable.
pub fn out_of_time(budget: Duration) -> Error {
    Error::Service {
        service: "Lambda",
        operation: "invocation",
        code: "DeadlineNear".into(),
        message: format!(
            "a call did not answer within the {budget:?} the invocation had left (less {DEADLINE_MARGIN:?} to end cleanly); the step was cut off where it stood, as a crash would cut it, and the next attempt goes on from there"
        ),
        retryable: true,
    }
}

/// `rekey-cleanup {}` starts no secret this close to its deadline (a
/// secret's cleanup takes seconds; the rest wait for the next run): a
/// minute, or a tenth of the time left when that is shorter (a local run
/// with a short timeout still gets work done).
pub fn sweep_margin(left: Duration) -> Duration {
    Duration::from_secs(60).min(left / 10)
}

/// The time left at `now` before the invocation's deadline (milliseconds
/// since the epoch), if that lies in the future (local runtimes may send
/// one in the past: it is ignored then).
pub fn time_left(now: SystemTime, deadline_ms: u64) -> Option<Duration> {
    let now = now.duration_since(UNIX_EPOCH).ok()?;
    Duration::from_millis(deadline_ms).checked_sub(now)
}

/// How long the hook's test probes: `REKEY_TEST_TIMEOUT`, cut short to end
/// [`DEADLINE_MARGIN`] before the invocation's deadline.
pub fn probe_until<V, P, C: Clock>(app: &Rekey<V, P, C>, deadline_ms: u64) -> Probing {
    let now = app.clock.now();
    let mut budget = app.config.test_timeout;
    if let Some(left) = time_left(now, deadline_ms) {
        budget = budget.min(left.saturating_sub(DEADLINE_MARGIN));
    }
    Probing::Until(now + budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_keeps_a_minute_or_a_tenth_of_its_time() {
        assert_eq!(
            sweep_margin(Duration::from_secs(900)),
            Duration::from_secs(60)
        );
        assert_eq!(
            sweep_margin(Duration::from_secs(60)),
            Duration::from_secs(6)
        );
        assert_eq!(sweep_margin(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn time_left_is_none_once_the_deadline_has_passed() {
        let now = UNIX_EPOCH + Duration::from_secs(100);
        assert_eq!(time_left(now, 130_000), Some(Duration::from_secs(30)));
        assert_eq!(time_left(now, 100_000), Some(Duration::ZERO));
        assert_eq!(time_left(now, 99_999), None);
        assert_eq!(time_left(now, 0), None);
    }
}
