//! The datagram layer: UDP stream proxying (`apisix.stream_proxy.udp`), beside `session`
//! (TCP), with the same route matching, plugins, balancers, metrics and access lines.
//!
//! As nginx does, a client address on one listener is one session, with a socket of its own
//! connected to the node it picked; replies go back from the listener's socket, and the session
//! ends after the upstream's idle timeout (`proxy_timeout`) of silence both ways. Sessions are
//! bounded by `udp_max_sessions` over every listener: beyond it a new client's datagram is
//! dropped and counted, so a flood of (spoofed) sources cannot take more file descriptors or
//! memory than that.
//!
//! Workers: each listener and all its sessions run on home. A datagram costs one system
//! call each way and no session waits on anything but its socket, so one thread holds a
//! listener's traffic without cross-thread wake-ups, and the session table needs no lock that
//! is ever contended. (TCP sessions spread because a connection's relay does far more work.)
//!
//! Buffers: one 64 KiB buffer per worker thread, borrowed for each batch of datagrams and never
//! across an await, so an idle session holds no buffer at all.

mod listener;
mod session;
mod setup;
pub(crate) mod table;

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tracing::{error, info};

use crate::session::Gateway;
use listener::Listener;
use table::{Cap, Table};

/// Room for the largest UDP payload (65,507 bytes over IPv4, 65,527 over IPv6).
const MAX_DATAGRAM: usize = 64 * 1024;

/// Datagrams moved per wake-up before the task lets others run.
const BATCH: usize = 64;

thread_local! {
    static BUFFER: RefCell<Box<[u8]>> = RefCell::new(vec![0; MAX_DATAGRAM].into_boxed_slice());
}

/// Runs `f` with this thread's datagram buffer. `f` must not await (it cannot) nor call back
/// into this function: nothing in this layer does.
fn with_buffer<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    BUFFER.with_borrow_mut(|buffer| f(buffer))
}

/// The bound UDP listeners, not yet serving.
pub struct UdpBound {
    sockets: Vec<std::net::UdpSocket>,
    max_sessions: usize,
}

/// Binds one UDP socket per address; `max_sessions` bounds the sessions of all of them.
pub fn bind_udp(addrs: &[SocketAddr], max_sessions: usize) -> io::Result<UdpBound> {
    let mut sockets = Vec::new();
    for addr in addrs {
        let socket = std::net::UdpSocket::bind(addr).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("binding the UDP stream listener {addr}: {e}"),
            )
        })?;
        socket.set_nonblocking(true)?;
        info!(addr = %socket.local_addr()?, "UDP stream listener open");
        sockets.push(socket);
    }
    Ok(UdpBound {
        sockets,
        max_sessions,
    })
}

impl UdpBound {
    /// No UDP listener.
    pub fn none() -> UdpBound {
        UdpBound {
            sockets: Vec::new(),
            max_sessions: 1,
        }
    }

    /// The addresses bound (port 0 resolved).
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.sockets
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// Serves every listener from the current (home) worker until `stop`.
    pub(crate) fn start(
        self,
        gateway: &Arc<Gateway>,
        sessions: &TaskTracker,
        stop: &watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        let cap = Cap::new(self.max_sessions);
        let mut tasks = Vec::new();
        for socket in self.sockets {
            let Ok(server) = socket.local_addr() else {
                continue;
            };
            let socket = match UdpSocket::from_std(socket) {
                Ok(socket) => socket,
                Err(e) => {
                    error!(error = %e, %server, "cannot watch the UDP stream listener");
                    continue;
                }
            };
            let listener = Arc::new(Listener {
                socket,
                server,
                table: Table::new(),
                cap: cap.clone(),
                gateway: gateway.clone(),
                sessions: sessions.clone(),
                stop: stop.clone(),
            });
            tasks.push(tokio::spawn(listener.serve()));
        }
        tasks
    }
}
