//! The session table of one UDP listener (client address → session), the cap on live sessions
//! that every UDP listener shares, and the activity clock that expiry reads.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// The most UDP sessions open at once (`apisix.stream_proxy.udp_max_sessions`).
pub(crate) struct Cap {
    live: AtomicUsize,
    max: usize,
}

impl Cap {
    pub(crate) fn new(max: usize) -> Arc<Cap> {
        Arc::new(Cap {
            live: AtomicUsize::new(0),
            max,
        })
    }

    /// A place for one more session, unless the cap is reached.
    pub(crate) fn take(self: &Arc<Self>) -> Option<Seat> {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                (live < self.max).then_some(live + 1)
            })
            .ok()
            .map(|_| Seat(self.clone()))
    }
}

/// One session's place under the [`Cap`], given back when the session is gone.
pub(crate) struct Seat(Arc<Cap>);

impl Drop for Seat {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One session in the table: its link to the upstream and when a datagram last passed.
pub(crate) struct Entry<L> {
    pub link: L,
    /// Milliseconds from the table's origin to the last datagram, either way.
    seen: AtomicU64,
    _seat: Seat,
}

/// The sessions of one listener. The listener's task looks a session up for every datagram
/// and the session's own task ends it; both run on one worker, so the lock is never contended.
/// Keyed with std's randomly seeded hasher: spoofed sources cannot aim at one bucket.
pub(crate) struct Table<L> {
    sessions: Mutex<HashMap<SocketAddr, Arc<Entry<L>>>>,
    origin: Instant,
}

impl<L> Table<L> {
    pub(crate) fn new() -> Table<L> {
        Table {
            sessions: Mutex::default(),
            origin: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The session of `client`, marked active now.
    pub(crate) fn touch(&self, client: SocketAddr) -> Option<Arc<Entry<L>>> {
        let sessions = self.sessions.lock();
        let entry = sessions.get(&client)?;
        entry.seen.store(self.now(), Ordering::Relaxed);
        Some(entry.clone())
    }

    /// Marks `entry` active now (a reply passed).
    pub(crate) fn touch_entry(&self, entry: &Entry<L>) {
        entry.seen.store(self.now(), Ordering::Relaxed);
    }

    /// Adds the session of `client`, active now, in the place `seat` holds.
    pub(crate) fn insert(&self, client: SocketAddr, link: L, seat: Seat) -> Arc<Entry<L>> {
        let entry = Arc::new(Entry {
            link,
            seen: AtomicU64::new(self.now()),
            _seat: seat,
        });
        self.sessions.lock().insert(client, entry.clone());
        entry
    }

    /// Removes the session of `client` when nothing passed for `idle`, and returns `None`;
    /// otherwise returns when it may expire next. Decided under the lock, so a datagram the
    /// listener takes at that moment either keeps the session or opens the next one.
    pub(crate) fn expire(
        &self,
        client: SocketAddr,
        entry: &Arc<Entry<L>>,
        idle: Duration,
    ) -> Option<Instant> {
        let mut sessions = self.sessions.lock();
        let seen = Duration::from_millis(entry.seen.load(Ordering::Relaxed));
        let at = self.origin + seen.saturating_add(idle);
        if at > Instant::now() {
            return Some(at);
        }
        remove(&mut sessions, client, entry);
        None
    }

    /// Removes the session of `client`, if `entry` is still it.
    pub(crate) fn remove(&self, client: SocketAddr, entry: &Arc<Entry<L>>) {
        remove(&mut self.sessions.lock(), client, entry);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.sessions.lock().len()
    }
}

fn remove<L>(
    sessions: &mut HashMap<SocketAddr, Arc<Entry<L>>>,
    client: SocketAddr,
    entry: &Arc<Entry<L>>,
) {
    if sessions
        .get(&client)
        .is_some_and(|current| Arc::ptr_eq(current, entry))
    {
        sessions.remove(&client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn the_cap_refuses_beyond_its_size_and_frees_places_as_sessions_go() {
        let cap = Cap::new(2);
        let table = Table::new();
        let a = table.insert(client(1), "a", cap.take().unwrap());
        let _b = table.insert(client(2), "b", cap.take().unwrap());
        assert!(cap.take().is_none(), "a third session got a place");
        // The place is held until the last handle on the session is gone.
        table.remove(client(1), &a);
        assert!(cap.take().is_none(), "a place freed while its session runs");
        drop(a);
        assert!(cap.take().is_some());
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn a_client_keeps_its_session_until_it_ends() {
        let cap = Cap::new(10);
        let table = Table::new();
        let first = table.insert(client(1), "node-a", cap.take().unwrap());
        for _ in 0..3 {
            let found = table.touch(client(1)).unwrap();
            assert!(Arc::ptr_eq(&found, &first));
            assert_eq!(found.link, "node-a");
        }
        assert!(
            table.touch(client(2)).is_none(),
            "another port is another session"
        );
        // A replaced session is not removed by its predecessor's end.
        table.remove(client(1), &first);
        let second = table.insert(client(1), "node-b", cap.take().unwrap());
        table.remove(client(1), &first);
        assert_eq!(table.touch(client(1)).unwrap().link, "node-b");
        assert!(Arc::ptr_eq(&table.touch(client(1)).unwrap(), &second));
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_expire_after_idle_silence_in_both_directions() {
        let idle = Duration::from_secs(10);
        let cap = Cap::new(10);
        let table = Table::new();
        let entry = table.insert(client(1), (), cap.take().unwrap());
        tokio::time::advance(Duration::from_secs(6)).await;
        // A client datagram at 6 s pushes the expiry to 16 s.
        table.touch(client(1)).unwrap();
        tokio::time::advance(Duration::from_secs(6)).await;
        let next = table
            .expire(client(1), &entry, idle)
            .expect("expired early");
        assert_eq!(next - Instant::now(), Duration::from_secs(4));
        // A reply at 12 s pushes it to 22 s.
        table.touch_entry(&entry);
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(table.expire(client(1), &entry, idle).is_some());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(table.expire(client(1), &entry, idle).is_none());
        assert!(
            table.touch(client(1)).is_none(),
            "the expired session is gone"
        );
        drop(entry);
        assert!(cap.take().is_some());
    }
}
