//! Stream listeners: accept loops that hand each connection to a session task on the worker
//! [`Workers::place`] picks, and the drain that lets established sessions finish after the
//! listeners close.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sg_model::settings::StreamListener;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::metrics::METRICS;
use crate::session::{self, Gateway};
use crate::workers::Workers;

/// Pause after an accept error (such as running out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A bound stream listener and whether it terminates TLS.
pub struct Bound {
    pub listener: std::net::TcpListener,
    pub tls: bool,
}

/// Binds every listener.
pub async fn bind(listeners: &[StreamListener]) -> io::Result<Vec<Bound>> {
    let mut bound = Vec::new();
    for entry in listeners {
        if entry.proxy_protocol {
            warn!(addr = %entry.addr, "proxy_protocol on stream listeners is not supported yet; ignored");
        }
        let listener = TcpListener::bind(entry.addr).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("binding the stream listener {}: {e}", entry.addr),
            )
        })?;
        // Accepted sockets inherit TCP_NODELAY: one setsockopt per connection fewer.
        socket2::SockRef::from(&listener).set_tcp_nodelay(true)?;
        info!(addr = %listener.local_addr()?, tls = entry.tls, "stream listener open");
        bound.push(Bound {
            listener: listener.into_std()?,
            tls: entry.tls,
        });
    }
    Ok(bound)
}

/// The running data plane.
pub struct Dataplane {
    sessions: TaskTracker,
    stop: watch::Sender<bool>,
    acceptors: Vec<JoinHandle<()>>,
    /// Addresses actually bound (port 0 resolved).
    pub addrs: Vec<SocketAddr>,
}

impl Dataplane {
    /// Starts accepting on every listener, from the current (home) worker.
    pub fn start(listeners: Vec<Bound>, gateway: Arc<Gateway>, workers: Arc<Workers>) -> Dataplane {
        let sessions = TaskTracker::new();
        let (stop, stopped) = watch::channel(false);
        let addrs = listeners
            .iter()
            .filter_map(|b| b.listener.local_addr().ok())
            .collect();
        let acceptors = listeners
            .into_iter()
            .map(|bound| {
                tokio::spawn(accept_loop(
                    bound,
                    gateway.clone(),
                    workers.clone(),
                    sessions.clone(),
                    stopped.clone(),
                ))
            })
            .collect();
        Dataplane {
            sessions,
            stop,
            acceptors,
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
        match tokio::time::timeout(timeout, self.sessions.wait()).await {
            Ok(()) => 0,
            Err(_) => self.sessions.len(),
        }
    }
}

async fn accept_loop(
    Bound { listener, tls }: Bound,
    gateway: Arc<Gateway>,
    workers: Arc<Workers>,
    sessions: TaskTracker,
    mut stop: watch::Receiver<bool>,
) {
    // A wildcard listener learns the address each client reached from its socket.
    let server = listener
        .local_addr()
        .ok()
        .filter(|addr| !addr.ip().is_unspecified());
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            error!(error = %e, "cannot watch the stream listener");
            return;
        }
    };
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        match accepted {
            Ok((client, remote)) if !gateway.storm.admit(remote.ip()) => {
                METRICS.refuse("client_rate");
                let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
            }
            Ok((client, remote)) => {
                let worker = workers.place();
                match worker.adopt(client) {
                    Ok(client) => {
                        // The session's timers belong to its worker too.
                        let _entered = worker.handle().enter();
                        let session = session::serve(gateway.clone(), client, remote, server, tls);
                        sessions.spawn_on(session, worker.handle());
                    }
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
        };
        let bound = bind(&[entry]).await.unwrap().remove(0);
        let listener = TcpListener::from_std(bound.listener).unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (accepted, _client) = tokio::join!(listener.accept(), client);
        assert!(accepted.unwrap().0.nodelay().unwrap());
    }
}
