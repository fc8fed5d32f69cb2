//! Deferred accept (`TCP_DEFER_ACCEPT`) on listeners whose clients speak first: the kernel
//! keeps a new connection to itself until the client's first bytes are in, so the gateway
//! is woken once per connection, with the first read ready, and a client that connects and
//! stays silent costs it nothing for [`DEFER_SECS`]. TLS listeners defer always (a ClientHello
//! comes first); plain ones while every stream route waits for its client's bytes.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Weak;

use parking_lot::Mutex;
use tokio::net::TcpListener;
use tracing::warn;

/// How long the kernel holds a silent client back; it then hands the connection over anyway
/// (at its next retransmitted SYN-ACK), to be timed by the pre-read or handshake deadline.
/// One second, as nginx's `deferred` and HAProxy's `defer-accept` do.
pub const DEFER_SECS: libc::c_int = 1;

/// Turns deferred accept on or off for a listening socket.
#[allow(unsafe_code)]
pub fn set(listener: &impl AsFd, on: bool) -> io::Result<()> {
    let secs: libc::c_int = if on { DEFER_SECS } else { 0 };
    let len = libc::socklen_t::try_from(std::mem::size_of_val(&secs)).unwrap_or(4);
    // SAFETY: the descriptor is borrowed from a live socket for the whole call, and the option
    // value points at a c_int on this stack frame whose size is passed with it; the kernel
    // only reads it. (socket2 and rustix do not wrap this option.)
    let result = unsafe {
        libc::setsockopt(
            listener.as_fd().as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            std::ptr::from_ref(&secs).cast(),
            len,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The plain listeners, deferred while every route waits for its client. The compiler sets
/// them before it publishes the snapshot that needs it, so a route whose server speaks first
/// never meets a deferred listener.
#[derive(Debug)]
pub struct DeferredListeners {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    on: bool,
    /// Weak: a listener that closes (at drain) must not be kept open from here.
    listeners: Vec<Weak<TcpListener>>,
}

impl DeferredListeners {
    pub fn new(on: bool) -> DeferredListeners {
        DeferredListeners {
            state: Mutex::new(State {
                on,
                listeners: Vec::new(),
            }),
        }
    }

    /// Whether plain listeners defer now.
    #[cfg(test)]
    pub(crate) fn on(&self) -> bool {
        self.state.lock().on
    }

    /// Keeps `listener` set as the routes require, starting now.
    pub fn follow(&self, listener: Weak<TcpListener>) -> io::Result<()> {
        let mut state = self.state.lock();
        if let Some(open) = listener.upgrade() {
            set(open.as_ref(), state.on)?;
            state.listeners.push(listener);
        }
        Ok(())
    }

    /// Sets every listener still open to defer or not.
    pub fn apply(&self, on: bool) {
        let mut state = self.state.lock();
        state
            .listeners
            .retain(|listener| listener.strong_count() > 0);
        if state.on == on {
            return;
        }
        state.on = on;
        for listener in state.listeners.iter().filter_map(Weak::upgrade) {
            if let Err(e) = set(listener.as_ref(), on) {
                warn!(error = %e, on, "cannot set deferred accept on a stream listener");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{SocketAddr, TcpStream};
    use std::sync::Arc;

    use super::*;

    /// Connects a client that stays silent, then one that sends a byte, and tells which of the
    /// two the listener hands over first: the silent one unless the listener defers. (Clients
    /// of an earlier probe, closed since, may come first; they are skipped.)
    fn first_accepted(listener: &std::net::TcpListener) -> &'static str {
        let addr = listener.local_addr().unwrap();
        let silent = TcpStream::connect(addr).unwrap();
        let mut speaking = TcpStream::connect(addr).unwrap();
        speaking.write_all(b"x").unwrap();
        loop {
            let (_accepted, from) = listener.accept().unwrap();
            let is = |client: &TcpStream| client.local_addr().ok() == Some(from);
            if is(&silent) {
                return "silent";
            }
            if is(&speaking) {
                return "speaking";
            }
        }
    }

    fn bound() -> std::net::TcpListener {
        std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap()
    }

    #[test]
    fn a_deferred_listener_hands_over_clients_that_spoke() {
        let listener = bound();
        assert_eq!(first_accepted(&listener), "silent");
        let listener = bound();
        set(&listener, true).unwrap();
        assert_eq!(first_accepted(&listener), "speaking");
        set(&listener, false).unwrap();
        assert_eq!(first_accepted(&listener), "silent");
    }

    #[tokio::test]
    async fn followed_listeners_are_set_as_the_routes_require() {
        let deferred = DeferredListeners::new(true);
        let std_listener = bound();
        std_listener.set_nonblocking(true).unwrap();
        let copy = std_listener.try_clone().unwrap();
        let listener = Arc::new(TcpListener::from_std(std_listener).unwrap());
        deferred.follow(Arc::downgrade(&listener)).unwrap();
        // The copy shares the socket, so it shows the setting; nothing accepts through tokio
        // here, so the shared descriptor may block.
        copy.set_nonblocking(false).unwrap();
        let probe = || first_accepted(&copy);
        assert_eq!(probe(), "speaking");
        deferred.apply(false);
        assert!(!deferred.on());
        assert_eq!(probe(), "silent");
        // A closed listener is forgotten, not kept open.
        drop(listener);
        deferred.apply(true);
        assert!(deferred.state.lock().listeners.is_empty());
    }
}
