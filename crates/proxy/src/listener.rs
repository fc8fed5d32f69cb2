//! Stream listeners: accept loops that hand each connection to a session task, and the drain
//! that lets established sessions finish after the listeners close.

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

use crate::session::{self, Gateway};

/// Pause after an accept error (such as running out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Binds every plain listener; `tls: true` entries are skipped until TLS termination lands.
pub async fn bind(listeners: &[StreamListener]) -> io::Result<Vec<TcpListener>> {
    let mut bound = Vec::new();
    for entry in listeners {
        if entry.tls {
            warn!(addr = %entry.addr, "TLS stream listeners are not supported yet; skipped");
            continue;
        }
        let listener = TcpListener::bind(entry.addr).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("binding the stream listener {}: {e}", entry.addr),
            )
        })?;
        info!(addr = %listener.local_addr()?, "stream listener open");
        bound.push(listener);
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
    /// Starts accepting on every listener.
    pub fn start(listeners: Vec<TcpListener>, gateway: Arc<Gateway>) -> Dataplane {
        let sessions = TaskTracker::new();
        let (stop, stopped) = watch::channel(false);
        let addrs = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();
        let acceptors = listeners
            .into_iter()
            .map(|listener| {
                tokio::spawn(accept_loop(
                    listener,
                    gateway.clone(),
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
    listener: TcpListener,
    gateway: Arc<Gateway>,
    sessions: TaskTracker,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        match accepted {
            Ok((client, remote)) => {
                sessions.spawn(session::serve(gateway.clone(), client, remote));
            }
            Err(e) => {
                error!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}
