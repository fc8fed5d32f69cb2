//! One UDP listener's task: it reads every datagram the socket receives, sends it on through
//! its client's session, and opens a session (under the cap) for a client it does not know.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use socket2::SockRef;
use tokio::net::UdpSocket;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::{error, Instrument};

use super::session::UdpSession;
use super::setup;
use super::table::{Cap, Table};
use super::{with_buffer, BATCH};
use crate::metrics::METRICS;
use crate::runtime::listener::stopping;
use crate::session::{record, Gateway};

/// Pause after an unexpected receive error before reading again.
const RECV_BACKOFF: Duration = Duration::from_millis(50);

/// A session's way to its node: a UDP socket connected to it.
pub(crate) struct Link {
    pub socket: UdpSocket,
    /// Bytes sent to the node, the first datagram included.
    pub sent: AtomicU64,
    /// Until then (a plugin's delay), the client's datagrams are dropped.
    pub held_until: Option<Instant>,
    /// Told by the listener when a send finds the node refusing (ICMP port unreachable).
    pub refused: Notify,
}

/// Why a datagram could not go to the session's node.
struct NodeRefuses;

impl Link {
    /// Sends one client datagram to the node. A full socket buffer drops it, as the network
    /// may; an earlier datagram's ICMP port unreachable, reported now, ends the session.
    fn forward(&self, datagram: &[u8]) -> Result<(), NodeRefuses> {
        if self.held_until.is_some_and(|until| Instant::now() < until) {
            return Ok(());
        }
        match send(&self.socket, datagram) {
            Ok(sent) => {
                self.sent.fetch_add(sent as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Err(NodeRefuses),
            Err(_) => Ok(()),
        }
    }
}

/// Sends a datagram on a connected socket now. Straight to the kernel, not through tokio's
/// `try_send`, which answers `WouldBlock` until the runtime has seen the socket writable: a new
/// session's first datagrams would be dropped.
pub(crate) fn send(socket: &UdpSocket, datagram: &[u8]) -> io::Result<usize> {
    SockRef::from(socket).send(datagram)
}

/// Sends a datagram from `socket` to `to` now (see [`send`]).
pub(crate) fn send_to(socket: &UdpSocket, datagram: &[u8], to: SocketAddr) -> io::Result<usize> {
    SockRef::from(socket).send_to(datagram, &to.into())
}

/// A UDP listener and the sessions of its clients.
pub(crate) struct Listener {
    pub socket: UdpSocket,
    /// The address bound: what routes match `server_addr` and `server_port` against.
    pub server: SocketAddr,
    pub table: Table<Link>,
    pub cap: Arc<Cap>,
    pub gateway: Arc<Gateway>,
    pub sessions: TaskTracker,
    pub stop: watch::Receiver<bool>,
}

impl Listener {
    /// Reads datagrams until the drain starts; the socket stays open for the replies of the
    /// sessions still running.
    pub(crate) async fn serve(self: Arc<Self>) {
        let mut stop = self.stop.clone();
        loop {
            tokio::select! {
                ready = self.socket.readable() => {
                    if let Err(e) = ready {
                        error!(error = %e, server = %self.server, "UDP listener failed");
                        tokio::time::sleep(RECV_BACKOFF).await;
                        continue;
                    }
                }
                () = stopping(&mut stop) => return,
            }
            let mut batch = 0;
            while batch < BATCH && self.receive() {
                batch += 1;
            }
            if batch == BATCH {
                // More may be waiting: let the sessions on this worker run first.
                tokio::task::yield_now().await;
            }
        }
    }

    /// Takes one datagram off the socket, if one is waiting.
    fn receive(self: &Arc<Self>) -> bool {
        with_buffer(|buf| match self.socket.try_recv_from(buf) {
            Ok((len, client)) => {
                self.datagram(buf.get(..len).unwrap_or_default(), client);
                true
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            // An error about one datagram (the kernel consumed it): go on with the next.
            Err(_) => true,
        })
    }

    fn datagram(self: &Arc<Self>, datagram: &[u8], client: SocketAddr) {
        if let Some(entry) = self.table.touch(client) {
            match entry.link.forward(datagram) {
                Ok(()) => return,
                // This datagram was not sent: it opens the client's next session.
                Err(NodeRefuses) => {
                    self.table.remove(client, &entry);
                    entry.link.refused.notify_one();
                }
            }
        }
        let Some(seat) = self.cap.take() else {
            METRICS.refuse("udp_session_limit");
            return;
        };
        let span = tracing::info_span!("conn", client = %client, server = %self.server);
        let opened =
            match span.in_scope(|| setup::open(&self.gateway, client, self.server, datagram)) {
                Ok(opened) => opened,
                Err(failed) => {
                    span.in_scope(|| record(&failed));
                    return;
                }
            };
        let delay = opened.delay;
        let link = Link {
            socket: opened.socket,
            sent: AtomicU64::new(0),
            held_until: (!delay.is_zero()).then(|| Instant::now() + delay),
            refused: Notify::new(),
        };
        let entry = self.table.insert(client, link, seat);
        // A delayed first datagram is sent by the session once the delay is over.
        let first = if delay.is_zero() {
            // A fresh socket has no ICMP error to report.
            let _ = entry.link.forward(datagram);
            None
        } else {
            Some(Box::<[u8]>::from(datagram))
        };
        let close = self.gateway.drainer.as_ref().map(|drainer| {
            let node = &opened.upstream.balancer.nodes()[opened.pick.index];
            drainer.register(&opened.upstream.key, node.address())
        });
        opened.route.metrics.active.inc();
        if let Some(node) = opened.upstream.node_metrics(opened.pick.index) {
            node.opened();
        }
        let session = UdpSession {
            listener: self.clone(),
            client,
            entry,
            route: opened.route,
            upstream: opened.upstream,
            ctx: opened.ctx,
            node: opened.node,
            pick: opened.pick,
            idle: opened.idle,
            first,
            close,
            started: Instant::now(),
        };
        self.sessions.spawn(session.run().instrument(span));
    }
}
