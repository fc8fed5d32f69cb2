//! Deadlines from configured durations, computed without overflow: a duration too long for the
//! clock is capped at [`MAX_DURATION`] (configured values already are; this guards the rest).

use sg_model::resource::MAX_DURATION;
use tokio::time::{Duration, Instant};

/// `start + after`, or `start` plus the longest configurable duration when that overflows.
pub fn after(start: Instant, after: Duration) -> Instant {
    start
        .checked_add(after)
        .or_else(|| start.checked_add(MAX_DURATION))
        .unwrap_or(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_overflows() {
        let now = Instant::now();
        assert_eq!(
            after(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        assert_eq!(after(now, Duration::MAX), now + MAX_DURATION);
    }
}
