//! Paced draining (`apisix.stream_proxy.drain_rate`): when a node leaves its upstream (removed,
//! or marked with `metadata.draining`), its established sessions are closed a few at a time,
//! so devices reconnect and land on the new ring without a reconnect storm. The same pacing
//! applies to the drain after SIGTERM. Off by default: APISIX never disturbs a session.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::Context;
use std::time::Duration;

use atomic_waker::AtomicWaker;
use parking_lot::Mutex;
use sg_model::resource::{Seconds, MAX_DURATION};
use tokio::sync::Notify;
use tracing::info;

use crate::config::compiler::SnapshotHandle;

/// A session's close signal.
#[derive(Default)]
pub struct CloseFlag {
    closed: AtomicBool,
    waker: AtomicWaker,
}

impl CloseFlag {
    /// Whether the session must close now; otherwise wakes the task when it must.
    pub fn poll_closed(&self, cx: &mut Context<'_>) -> bool {
        self.waker.register(cx.waker());
        self.closed.load(Ordering::Acquire)
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.waker.wake();
    }
}

/// Which sessions a node holds: `(upstream key, node "host:port")`.
type NodeKey = (String, String);

/// The registry of drainable sessions and the paced closer.
pub struct Drainer {
    interval: Duration,
    sessions: Mutex<HashMap<NodeKey, Vec<Weak<CloseFlag>>>>,
    queue: Mutex<VecDeque<Weak<CloseFlag>>>,
    queued: Notify,
}

impl Drainer {
    /// A drainer closing `rate` sessions per second, or `None` when draining is off.
    pub fn new(rate: f64) -> Option<Arc<Drainer>> {
        (rate > 0.0).then(|| {
            Arc::new(Drainer {
                // A rate too low for a timer closes one session a year.
                interval: Seconds::from_f64(1.0 / rate).map_or(MAX_DURATION, Seconds::get),
                sessions: Mutex::default(),
                queue: Mutex::default(),
                queued: Notify::new(),
            })
        })
    }

    /// Registers a session on `node` of `upstream`.
    pub fn register(&self, upstream: &str, node: String) -> Arc<CloseFlag> {
        let flag = Arc::new(CloseFlag::default());
        let mut sessions = self.sessions.lock();
        let list = sessions.entry((upstream.to_owned(), node)).or_default();
        // Forget ended sessions now and then, so the list tracks the live ones.
        if list.len() >= 64 && list.len().is_power_of_two() {
            list.retain(|s| s.strong_count() > 0);
        }
        list.push(Arc::downgrade(&flag));
        flag
    }

    /// Queues every session of the nodes for which `keep` is false.
    fn drain_except(&self, keep: impl Fn(&NodeKey) -> bool) {
        let leaving: Vec<(NodeKey, Vec<Weak<CloseFlag>>)> = {
            let mut sessions = self.sessions.lock();
            let gone: Vec<NodeKey> = sessions.keys().filter(|k| !keep(k)).cloned().collect();
            gone.into_iter()
                .filter_map(|k| sessions.remove(&k).map(|v| (k, v)))
                .collect()
        };
        let mut queue = self.queue.lock();
        for ((upstream, node), flags) in leaving {
            let live: Vec<_> = flags.into_iter().filter(|f| f.strong_count() > 0).collect();
            if !live.is_empty() {
                info!(%upstream, %node, sessions = live.len(), "node left its upstream; draining its sessions");
            }
            queue.extend(live);
        }
        drop(queue);
        self.queued.notify_one();
    }

    /// Queues every registered session (the paced part of the SIGTERM drain).
    pub fn drain_all(&self) {
        self.drain_except(|_| false);
    }

    /// Follows snapshot publications, draining nodes that left, and closes queued sessions at
    /// the configured rate.
    pub fn spawn(self: &Arc<Self>, snapshots: SnapshotHandle) -> tokio::task::JoinHandle<()> {
        let drainer = self.clone();
        let closer = self.clone();
        tokio::spawn(async move {
            tokio::spawn(async move { closer.close_paced().await });
            let mut published = snapshots.published();
            while published.changed().await.is_ok() {
                // Only the nodes that hold sessions are looked up: the cost follows the
                // sessions, not the size of the configuration.
                let snapshot = snapshots.load();
                drainer.drain_except(|(upstream, node)| snapshot.has_node(upstream, node));
            }
        })
    }

    async fn close_paced(&self) {
        let mut ticks = tokio::time::interval(self.interval);
        // After a calm spell the missed ticks must not be caught up at once (tokio's default):
        // that closed every session of a leaving node in the same millisecond.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = self.queue.lock().pop_front();
            match next {
                Some(flag) => {
                    if let Some(flag) = flag.upgrade() {
                        ticks.tick().await;
                        flag.close();
                    }
                }
                None => self.queued.notified().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Waker};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sessions_of_leaving_nodes_close_at_the_rate() {
        sessions_close_at_the_rate(Duration::ZERO).await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_holds_after_a_calm_spell() {
        sessions_close_at_the_rate(Duration::from_secs(600)).await;
    }

    /// A node leaves `calm` after the drainer started.
    async fn sessions_close_at_the_rate(calm: Duration) {
        let drainer = Drainer::new(10.0).unwrap();
        let closer = drainer.clone();
        tokio::spawn(async move { closer.close_paced().await });
        tokio::time::sleep(calm).await;
        let staying = drainer.register("upstreams/1", "a:1".into());
        let leaving: Vec<_> = (0..5)
            .map(|_| drainer.register("upstreams/1", "b:1".into()))
            .collect();
        drainer.drain_except(|(upstream, node)| upstream == "upstreams/1" && node == "a:1");
        let mut cx = Context::from_waker(Waker::noop());
        let closed = |flags: &[Arc<CloseFlag>], cx: &mut Context<'_>| {
            flags.iter().filter(|f| f.poll_closed(cx)).count()
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(closed(&leaving, &mut cx), 1, "the first goes at once");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(closed(&leaving, &mut cx), 3, "then one every 100 ms");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(closed(&leaving, &mut cx), 5);
        assert!(
            !staying.poll_closed(&mut cx),
            "sessions of remaining nodes stay"
        );
    }

    #[test]
    fn off_by_default() {
        assert!(Drainer::new(0.0).is_none());
    }
}
