//! One UDP session's task: it sends the node's replies to the client from the listener's
//! socket, and ends the session after its idle timeout of silence both ways, when the node
//! refuses (ICMP port unreachable), when the node drains, or soon after the gateway's drain
//! starts; then the session is logged as a TCP session is.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use sg_balancer::Pick;
use tokio::io::Interest;
use tokio::time::{sleep_until, Instant};

use super::listener::{send, send_to, Link, Listener};
use super::table::Entry;
use super::{with_buffer, BATCH};
use crate::config::route::Route;
use crate::config::upstream::Upstream;
use crate::health::{self, Outcome};
use crate::plugins::Ctx;
use crate::runtime::listener::stopping;
use crate::session::drain::CloseFlag;
use crate::session::ended::{ended, Summary};

/// Once the gateway drains, a session ends after this much silence (or its idle timeout, if
/// shorter): no new client datagram reaches it, and replies to the ones it forwarded come
/// within a round trip.
const DRAIN_QUIET: Duration = Duration::from_secs(1);

/// Why a UDP session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Nothing passed either way for the idle timeout.
    Idle,
    /// The node answered with an ICMP port unreachable.
    Refused,
    /// The node left its upstream (paced drain).
    Drained,
    UpstreamError(io::ErrorKind),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Idle => f.write_str("idle timeout"),
            End::Refused => f.write_str("upstream refused"),
            End::Drained => f.write_str("node draining"),
            End::UpstreamError(kind) => write!(f, "upstream error: {kind}"),
        }
    }
}

/// A session whose socket to its node is connected: pinned to that node and route until it
/// ends, whatever the snapshots published meanwhile.
pub(crate) struct UdpSession {
    pub listener: Arc<Listener>,
    pub client: SocketAddr,
    pub entry: Arc<Entry<Link>>,
    pub route: Arc<Route>,
    pub upstream: Arc<Upstream>,
    /// Holds the plugins' leases (a limit-conn slot) for the session's life.
    pub ctx: Ctx,
    pub node: SocketAddr,
    /// Held for the session's life (least_conn counts it).
    pub pick: Pick,
    pub idle: Duration,
    /// The first datagram, when a plugin delays it.
    pub first: Option<Box<[u8]>>,
    pub close: Option<Arc<CloseFlag>>,
    pub started: Instant,
}

impl UdpSession {
    pub(crate) async fn run(self) {
        let link = &self.entry.link;
        if let (Some(first), Some(until)) = (&self.first, link.held_until) {
            sleep_until(until).await;
            if send(&link.socket, first).is_ok() {
                link.sent.fetch_add(first.len() as u64, Ordering::Relaxed);
            }
        }
        let (end, to_client) = self.relay().await;
        self.listener.table.remove(self.client, &self.entry);
        if end == End::Refused {
            health::report_connect(&self.upstream, self.pick.index, Outcome::TcpFailure);
        }
        let summary = Summary {
            protocol: "UDP",
            node: self.node,
            node_metrics: self.upstream.node_metrics(self.pick.index),
            to_upstream: link.sent.load(Ordering::Relaxed),
            to_client,
            started: self.started,
            end: &end,
        };
        ended(&self.route, &self.ctx, &summary);
    }

    /// Sends replies until the session ends; returns why, and the bytes sent to the client.
    async fn relay(&self) -> (End, u64) {
        let link = &self.entry.link;
        let table = &self.listener.table;
        let mut stop = self.listener.stop.clone();
        let mut draining = *stop.borrow();
        let mut to_client = 0;
        let mut heard = false;
        let expiry = sleep_until(Instant::now() + self.idle);
        tokio::pin!(expiry);
        let end = loop {
            tokio::select! {
                biased;
                () = link.refused.notified() => break End::Refused,
                () = closing(self.close.as_deref()) => break End::Drained,
                // An ICMP error wakes the socket with EPOLLERR alone, not as readable.
                ready = link.socket.ready(Interest::READABLE | Interest::ERROR) => {
                    let relayed = match ready {
                        Ok(ready) if ready.is_error() => self.socket_error().map_or(Ok(false), Err),
                        Ok(_) => self.replies(&mut to_client),
                        Err(e) => Err(e),
                    };
                    match relayed {
                        Ok(replied) if replied && !heard => {
                            // The first reply, not the (silent) UDP connect, shows the node up.
                            heard = true;
                            health::report_connect(&self.upstream, self.pick.index, Outcome::Success);
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => break End::Refused,
                        Err(e) => break End::UpstreamError(e.kind()),
                    }
                }
                () = &mut expiry => {
                    let idle = if draining { self.idle.min(DRAIN_QUIET) } else { self.idle };
                    match table.expire(self.client, &self.entry, idle) {
                        Some(next) => expiry.as_mut().reset(next),
                        None => break End::Idle,
                    }
                }
                () = stopping(&mut stop), if !draining => {
                    draining = true;
                    expiry.as_mut().reset(Instant::now());
                }
            }
        };
        (end, to_client)
    }

    /// The error the node's socket holds (an ICMP port unreachable, as ECONNREFUSED), taken
    /// from it; an error report with none left (the listener's send took it) is cleared.
    fn socket_error(&self) -> Option<io::Error> {
        let socket = &self.entry.link.socket;
        match socket.take_error() {
            Ok(None) => {
                let _ = socket.try_io(Interest::ERROR, || {
                    Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock))
                });
                None
            }
            Ok(Some(e)) | Err(e) => Some(e),
        }
    }

    /// Sends the replies waiting on the node's socket to the client, from the listener's
    /// socket (the address the client sent to); returns whether there was any. A reply the
    /// listener's full buffer cannot take is dropped, as the network may.
    fn replies(&self, to_client: &mut u64) -> io::Result<bool> {
        let link = &self.entry.link;
        let mut got = false;
        let result = with_buffer(|buf| {
            for _ in 0..BATCH {
                match link.socket.try_recv(buf) {
                    Ok(len) => {
                        got = true;
                        let reply = buf.get(..len).unwrap_or_default();
                        if let Ok(n) = send_to(&self.listener.socket, reply, self.client) {
                            *to_client += n as u64;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        });
        if got {
            self.listener.table.touch_entry(&self.entry);
        }
        result.map(|()| got)
    }
}

/// Resolves when the paced drainer closes the session (never without one).
async fn closing(flag: Option<&CloseFlag>) {
    poll_fn(|cx| match flag {
        Some(flag) if flag.poll_closed(cx) => Poll::Ready(()),
        _ => Poll::Pending,
    })
    .await
}
