//! Stream listeners: home's accept loops, which hand each connection to a session task on the
//! worker [`Workers::place`] picks, the UDP listeners (`crate::datagram`), and the drain that
//! lets established sessions finish after the listeners close.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sg_model::settings::StreamListener;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::datagram::UdpBound;
use crate::metrics::METRICS;
use crate::runtime::deferred;
use crate::runtime::workers::Workers;
use crate::session::{self, Gateway, Listening};

/// Pause after an accept error (such as running out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A bound stream listener and how its connections are served.
pub struct Bound {
    pub listener: std::net::TcpListener,
    pub listening: Listening,
}

/// Binds every listener.
pub async fn bind(listeners: &[StreamListener]) -> io::Result<Vec<Bound>> {
    let mut bound = Vec::new();
    for entry in listeners {
        let listener = listen(entry.addr).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("binding the stream listener {}: {e}", entry.addr),
            )
        })?;
        // Accepted sockets inherit TCP_NODELAY: one setsockopt per connection fewer.
        socket2::SockRef::from(&listener).set_tcp_nodelay(true)?;
        let listening = Listening {
            tls: entry.tls,
            proxy_protocol: entry.proxy_protocol,
            proxy_protocol_to_upstream: entry.proxy_protocol_to_upstream,
        };
        // A TLS client, and a load balancer sending the PROXY protocol, always speak first;
        // plain listeners follow the routes (at start).
        if listening.client_speaks_first() {
            deferred::set(&listener, true)?;
        }
        info!(
            addr = %listener.local_addr()?,
            tls = entry.tls,
            proxy_protocol = entry.proxy_protocol,
            "stream listener open"
        );
        bound.push(Bound {
            listener: listener.into_std()?,
            listening,
        });
    }
    Ok(bound)
}

/// Connections the kernel may keep waiting for an accept, and (deferred listeners) for their
/// client's first bytes. Larger than tokio's 1024: a deferring listener holds each new
/// connection for a round trip longer, and a fleet reconnecting at once should not overflow
/// into SYN cookies. The kernel caps it at `net.core.somaxconn`.
const BACKLOG: u32 = 4096;

/// Binds and listens as tokio's `TcpListener::bind` does, with [`BACKLOG`].
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// The running data plane.
pub struct Dataplane {
    sessions: TaskTracker,
    stop: watch::Sender<bool>,
    acceptors: Vec<JoinHandle<()>>,
    /// Kept until the drain is over: the last handle stops the worker threads, and with them
    /// the sessions they run.
    workers: Arc<Workers>,
    /// Addresses actually bound (port 0 resolved).
    pub addrs: Vec<SocketAddr>,
}

impl Dataplane {
    /// Starts accepting on every listener, TCP and UDP, from the current (home) worker.
    pub fn start(
        listeners: Vec<Bound>,
        udp: UdpBound,
        gateway: Arc<Gateway>,
        workers: Arc<Workers>,
    ) -> Dataplane {
        let sessions = TaskTracker::new();
        let (stop, stopped) = watch::channel(false);
        let addrs = listeners
            .iter()
            .filter_map(|b| b.listener.local_addr().ok())
            .collect();
        // UDP sessions are tracked with the TCP ones: the drain waits for both.
        let mut acceptors = udp.start(&gateway, &sessions, &stopped);
        for Bound {
            listener,
            listening,
        } in listeners
        {
            let accepting = Arc::new(Accepting {
                gateway: gateway.clone(),
                sessions: sessions.clone(),
                // A wildcard listener learns the address each client reached from its socket.
                server: listener
                    .local_addr()
                    .ok()
                    .filter(|addr| !addr.ip().is_unspecified()),
                listening,
            });
            let listener = match TcpListener::from_std(listener) {
                Ok(listener) => Arc::new(listener),
                Err(e) => {
                    error!(error = %e, "cannot watch the stream listener");
                    continue;
                }
            };
            if !listening.client_speaks_first() {
                if let Err(e) = gateway
                    .snapshots
                    .deferred()
                    .follow(Arc::downgrade(&listener))
                {
                    warn!(error = %e, "the stream listener cannot defer accepting");
                }
            }
            acceptors.push(tokio::spawn(accept_loop(
                listener,
                accepting,
                workers.clone(),
                stopped.clone(),
            )));
        }
        Dataplane {
            sessions,
            stop,
            acceptors,
            workers,
            addrs,
        }
    }

    /// Closes the listeners at once, then waits up to `timeout` for sessions to end. Returns the
    /// number of sessions still open when the wait gave up.
    pub async fn drain(self, timeout: Duration) -> usize {
        let _ = self.stop.send(true);
        for acceptor in self.acceptors {
            let _ = acceptor.await;
        }
        self.sessions.close();
        info!(
            open = self.sessions.len(),
            "listeners closed, draining sessions"
        );
        let open = match tokio::time::timeout(timeout, self.sessions.wait()).await {
            Ok(()) => 0,
            Err(_) => self.sessions.len(),
        };
        drop(self.workers);
        open
    }
}

/// Resolves once the listeners are to close.
pub(crate) async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// What an accept loop starts sessions with.
struct Accepting {
    gateway: Arc<Gateway>,
    sessions: TaskTracker,
    /// The listener's address, unless it is a wildcard (a session then asks its socket).
    server: Option<SocketAddr>,
    listening: Listening,
}

impl Accepting {
    /// Refuses a client over its connection rate, with a reset. Behind a PROXY protocol
    /// sender every connection comes from the balancer: the session applies the rate to the
    /// client its header names instead.
    fn refuses(&self, client: &TcpStream, remote: SocketAddr) -> bool {
        if self.listening.proxy_protocol || self.gateway.storm.admit(remote.ip()) {
            return false;
        }
        METRICS.refuse("client_rate");
        let _ = socket2::SockRef::from(client).set_linger(Some(Duration::ZERO));
        true
    }

    /// Starts the session on the runtime `client` is registered with.
    fn start(&self, client: TcpStream, remote: SocketAddr, runtime: &tokio::runtime::Handle) {
        // The session's timers belong to that runtime too.
        let _entered = runtime.enter();
        let session = session::serve(
            self.gateway.clone(),
            client,
            remote,
            self.server,
            self.listening,
        );
        self.sessions.spawn_on(session, runtime);
    }
}

/// Home's accept loop: every connection, placed by [`Workers::place`].
async fn accept_loop(
    listener: Arc<TcpListener>,
    accepting: Arc<Accepting>,
    workers: Arc<Workers>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopping(&mut stop) => return,
        };
        match accepted {
            Ok((client, remote)) if accepting.refuses(&client, remote) => {}
            Ok((client, remote)) => {
                let worker = workers.place();
                match worker.adopt(client, workers.home()) {
                    Ok(client) => accepting.start(client, remote, worker.handle()),
                    Err(e) => warn!(error = %e, "cannot move a connection to its worker"),
                }
            }
            Err(e) => {
                error!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_inherit_nodelay() {
        let entry = StreamListener {
            addr: "127.0.0.1:0".parse().unwrap(),
            tls: false,
            proxy_protocol: false,
            proxy_protocol_to_upstream: None,
        };
        let bound = bind(&[entry]).await.unwrap().remove(0);
        let listener = TcpListener::from_std(bound.listener).unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (accepted, _client) = tokio::join!(listener.accept(), client);
        assert!(accepted.unwrap().0.nodelay().unwrap());
    }
}
