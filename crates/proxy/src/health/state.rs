//! The health of one checked node: lua-resty-healthcheck's four states and its counters, updated
//! by active probes and by connection attempts, read lock-free by pickers.

use std::sync::atomic::{AtomicU8, Ordering};

use parking_lot::Mutex;

use super::Thresholds;

/// A node's state, as APISIX's control API names it. `MostlyHealthy` and `MostlyUnhealthy` are
/// on their way to flipping; only the first two count as healthy for picking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Healthy,
    MostlyHealthy,
    MostlyUnhealthy,
    Unhealthy,
}

impl Status {
    pub fn is_healthy(self) -> bool {
        matches!(self, Status::Healthy | Status::MostlyHealthy)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::MostlyHealthy => "mostly_healthy",
            Status::MostlyUnhealthy => "mostly_unhealthy",
            Status::Unhealthy => "unhealthy",
        }
    }

    fn from_u8(value: u8) -> Status {
        match value {
            0 => Status::Healthy,
            1 => Status::MostlyHealthy,
            2 => Status::MostlyUnhealthy,
            _ => Status::Unhealthy,
        }
    }
}

/// The result of one check or connection attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    TcpFailure,
    Timeout,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "successes",
            Outcome::TcpFailure => "tcp failures",
            Outcome::Timeout => "timeouts",
        }
    }
}

/// Consecutive outcomes since the last opposite one (a success clears the failure counters, a
/// failure clears the success counter). `http_failure` stays 0: checks are TCP only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub success: u8,
    pub tcp_failure: u8,
    pub timeout_failure: u8,
    pub http_failure: u8,
}

/// A status change caused by one report, for the caller to log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub from: Status,
    pub to: Status,
    pub outcome: Outcome,
    /// The counter that caused it, and its threshold.
    pub count: u8,
    pub limit: u8,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} -> {} ({}/{} {})",
            self.from.as_str(),
            self.to.as_str(),
            self.count,
            self.limit,
            self.outcome.as_str()
        )
    }
}

/// One node's health, shared by every snapshot in which its upstream keeps the node.
#[derive(Debug)]
pub struct NodeHealth {
    /// `Status` as u8: read without the lock by pickers and by the no-op fast path.
    status: AtomicU8,
    counters: Mutex<Counters>,
}

impl Default for NodeHealth {
    /// A new node starts healthy, as lua-resty-healthcheck adds targets.
    fn default() -> Self {
        NodeHealth {
            status: AtomicU8::new(Status::Healthy as u8),
            counters: Mutex::new(Counters::default()),
        }
    }
}

impl NodeHealth {
    pub fn status(&self) -> Status {
        Status::from_u8(self.status.load(Ordering::Relaxed))
    }

    pub fn is_healthy(&self) -> bool {
        self.status().is_healthy()
    }

    pub fn counters(&self) -> Counters {
        *self.counters.lock()
    }

    /// Counts one outcome against `limits`, as lua-resty-healthcheck's `incr_counter` does: a
    /// zero limit disables that kind of report; successes on a fully healthy node and failures
    /// on a fully unhealthy one change nothing; reaching a limit flips the node, and a first
    /// opposite outcome makes it "mostly" what it was. Returns the change, if any.
    pub fn report(&self, outcome: Outcome, limits: &Thresholds) -> Option<Change> {
        let limit = match outcome {
            Outcome::Success => limits.successes,
            Outcome::TcpFailure => limits.tcp_failures,
            Outcome::Timeout => limits.timeouts,
        };
        let settled = match outcome {
            Outcome::Success => Status::Healthy,
            Outcome::TcpFailure | Outcome::Timeout => Status::Unhealthy,
        };
        if limit == 0 || self.status() == settled {
            return None;
        }
        let mut counters = self.counters.lock();
        let from = self.status();
        if from == settled {
            return None;
        }
        let count = match outcome {
            Outcome::Success => {
                *counters = Counters {
                    success: counters.success.saturating_add(1),
                    ..Counters::default()
                };
                counters.success
            }
            Outcome::TcpFailure => {
                counters.success = 0;
                counters.tcp_failure = counters.tcp_failure.saturating_add(1);
                counters.tcp_failure
            }
            Outcome::Timeout => {
                counters.success = 0;
                counters.timeout_failure = counters.timeout_failure.saturating_add(1);
                counters.timeout_failure
            }
        };
        let to = match (from, outcome) {
            _ if count >= limit => settled,
            (Status::Healthy, Outcome::TcpFailure | Outcome::Timeout) => Status::MostlyHealthy,
            (Status::Unhealthy, Outcome::Success) => Status::MostlyUnhealthy,
            _ => from,
        };
        if to == from {
            return None;
        }
        self.status.store(to as u8, Ordering::Relaxed);
        Some(Change {
            from,
            to,
            outcome,
            count,
            limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Thresholds = Thresholds {
        successes: 2,
        tcp_failures: 2,
        timeouts: 3,
    };

    fn run(node: &NodeHealth, outcomes: &[Outcome]) -> Vec<Status> {
        outcomes
            .iter()
            .map(|&o| {
                node.report(o, &LIMITS);
                node.status()
            })
            .collect()
    }

    #[test]
    fn failures_flip_a_node_and_successes_bring_it_back() {
        use Outcome::*;
        use Status::*;
        let node = NodeHealth::default();
        assert_eq!(
            run(&node, &[Success, TcpFailure, TcpFailure, TcpFailure]),
            [Healthy, MostlyHealthy, Unhealthy, Unhealthy]
        );
        assert_eq!(
            node.counters(),
            Counters {
                tcp_failure: 2,
                ..Counters::default()
            },
            "failures on an unhealthy node are not counted"
        );
        assert!(!node.is_healthy());
        assert_eq!(
            run(&node, &[Success, Success, Success]),
            [MostlyUnhealthy, Healthy, Healthy]
        );
        assert_eq!(
            node.counters(),
            Counters {
                success: 2,
                ..Counters::default()
            }
        );
    }

    #[test]
    fn an_opposite_outcome_resets_the_streak() {
        use Outcome::*;
        use Status::*;
        let node = NodeHealth::default();
        // Timeouts and tcp failures count separately; a success clears both.
        assert_eq!(
            run(
                &node,
                &[Timeout, TcpFailure, Timeout, Success, Timeout, Timeout]
            ),
            [
                MostlyHealthy,
                MostlyHealthy,
                MostlyHealthy,
                MostlyHealthy,
                MostlyHealthy,
                MostlyHealthy
            ]
        );
        assert_eq!(run(&node, &[Timeout]), [Unhealthy]);
        assert_eq!(
            node.counters(),
            Counters {
                timeout_failure: 3,
                ..Counters::default()
            }
        );
    }

    #[test]
    fn changes_are_reported_once_with_their_cause() {
        let node = NodeHealth::default();
        let first = node.report(Outcome::TcpFailure, &LIMITS).unwrap();
        assert_eq!(
            (first.from, first.to),
            (Status::Healthy, Status::MostlyHealthy)
        );
        let down = node.report(Outcome::TcpFailure, &LIMITS).unwrap();
        assert_eq!(
            down.to_string(),
            "mostly_healthy -> unhealthy (2/2 tcp failures)"
        );
        assert_eq!(node.report(Outcome::TcpFailure, &LIMITS), None);
    }

    #[test]
    fn zero_limits_disable_a_kind_of_report() {
        let node = NodeHealth::default();
        let limits = Thresholds {
            successes: 0,
            tcp_failures: 0,
            timeouts: 1,
        };
        assert_eq!(node.report(Outcome::TcpFailure, &limits), None);
        assert_eq!(node.status(), Status::Healthy);
        node.report(Outcome::Timeout, &limits);
        assert_eq!(node.status(), Status::Unhealthy);
        assert_eq!(node.report(Outcome::Success, &limits), None);
        assert_eq!(node.status(), Status::Unhealthy);
    }
}
