//! The invocation's deadline: how long the hook's test may probe.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::ports::Clock;
use crate::steps::{Probing, Rekey};

/// The hook's test must end before the invocation's deadline, with margin.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(2);

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
    fn time_left_is_none_once_the_deadline_has_passed() {
        let now = UNIX_EPOCH + Duration::from_secs(100);
        assert_eq!(time_left(now, 130_000), Some(Duration::from_secs(30)));
        assert_eq!(time_left(now, 100_000), Some(Duration::ZERO));
        assert_eq!(time_left(now, 99_999), None);
        assert_eq!(time_left(now, 0), None);
    }
}
