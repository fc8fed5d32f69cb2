//! The connection surge: the time during which workers other than home accept too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::workers::stamp;

/// How long the other workers keep accepting after home last handed a session away. Short, so
/// that connections made just after a storm are not spread (measured: 100 ms spread some of
/// the benchmark's publishers, made right after its connect storm).
pub const SURGE_LEASE: Duration = Duration::from_millis(10);

/// A connection surge: while home is saturated, the other workers accept from the listeners
/// too (as HAProxy's threads all do), so accepting and starting sessions go on in parallel;
/// they leave a connection to home whenever home keeps up (`listener::surge`).
/// Home renews the lease whenever it hands a session away; a worker stops accepting, and
/// leaves the listeners to home, once the lease has run out.
pub struct Surge {
    epoch: Instant,
    /// [`SURGE_LEASE`] in nanoseconds.
    lease: u64,
    /// Stamp until which the other workers accept.
    until: AtomicU64,
    started: Notify,
}

impl Surge {
    pub(super) fn new(epoch: Instant, lease: Duration) -> Surge {
        Surge {
            epoch,
            lease: u64::try_from(lease.as_nanos()).unwrap_or(u64::MAX),
            until: AtomicU64::new(0),
            started: Notify::new(),
        }
    }

    /// Extends the surge by its lease from now, waking the other workers if it had ended.
    pub(crate) fn renew(&self) {
        let now = stamp(self.epoch);
        let before = self
            .until
            .swap(now.saturating_add(self.lease), Ordering::AcqRel);
        if before <= now {
            self.started.notify_waiters();
        }
    }

    /// How long the surge still lasts (zero once it has ended).
    pub fn remaining(&self) -> Duration {
        let now = stamp(self.epoch);
        Duration::from_nanos(self.until.load(Ordering::Acquire).saturating_sub(now))
    }

    /// Resolves when a surge is on.
    pub async fn started(&self) {
        loop {
            let started = self.started.notified();
            let mut started = std::pin::pin!(started);
            // Registered before the check, so that a renewal in between still wakes us.
            started.as_mut().enable();
            if !self.remaining().is_zero() {
                return;
            }
            started.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::runtime::Builder;

    use super::*;

    #[test]
    fn a_surge_wakes_the_other_workers_and_ends_with_its_lease() {
        let surge = Surge::new(Instant::now(), Duration::from_millis(200));
        let runtime = Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            assert!(surge.remaining().is_zero(), "no surge yet");
            let mut started = std::pin::pin!(surge.started());
            assert!(poll_once(started.as_mut()).is_pending());
            surge.renew();
            assert!(
                poll_once(started.as_mut()).is_ready(),
                "woken by the renewal"
            );
            // The lease runs out unless renewed.
            tokio::time::sleep(Duration::from_millis(400)).await;
            assert!(surge.remaining().is_zero());
        });
    }

    fn poll_once<F: std::future::Future>(
        future: std::pin::Pin<&mut F>,
    ) -> std::task::Poll<F::Output> {
        future.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    }
}
