//! The first phase of a connection whose client speaks first (a TLS client's ClientHello, an
//! MQTT client's CONNECT): it waits for the client's first bytes holding only the socket and a
//! deadline, so a client that connects and stays silent costs no set-up state.

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant, Sleep};

use crate::config::route::Route;
use crate::session::preread;
use crate::session::relay::read::{read_fresh_to_vec, read_to_vec};
use crate::session::{Gateway, Listening};

/// What the set-up phase starts from.
pub struct Accepted {
    pub gateway: Arc<Gateway>,
    pub client: TcpStream,
    pub remote: SocketAddr,
    pub server: SocketAddr,
    pub listening: Listening,
    /// When the connection was accepted: the pre-read and handshake deadlines count from here.
    pub at: Instant,
    /// Client bytes already read (plain TCP only); the pre-read phase starts from them.
    pub first: Vec<u8>,
    /// The route matched at accept (plain listeners; TLS connections match on their SNI once
    /// the handshake is done).
    pub route: Option<Arc<Route>>,
}

pin_project! {
    /// Ready once the client has sent something, closed, or let its deadline pass; the set-up
    /// phase then reads and reports what happened (a deadline already passed times out there,
    /// as it would have without this phase).
    ///
    /// tokio reports a freshly accepted socket readable before anything arrived, so readiness
    /// is confirmed by a read: through the thread's scratch buffer on plain TCP (the bytes read
    /// go on to the pre-read), by a one-byte peek on TLS (the handshake reads them itself).
    /// Either way the socket's readiness is cleared when nothing was there.
    pub struct Waiting {
        accepted: Option<Accepted>,
        // The listener deferred accepting until the client spoke, and this is the first poll.
        fresh: bool,
        #[pin]
        deadline: Sleep,
    }
}

impl Waiting {
    /// `deferred`: the listener handed the connection over once the client had spoken.
    pub fn new(accepted: Accepted, deadline: Instant, deferred: bool) -> Waiting {
        Waiting {
            accepted: Some(accepted),
            fresh: deferred,
            deadline: sleep_until(deadline),
        }
    }
}

impl Future for Waiting {
    /// `None` only when polled again after completing.
    type Output = Option<Accepted>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Accepted>> {
        let mut this = self.project();
        let Some(accepted) = this.accepted.as_mut() else {
            return Poll::Ready(None);
        };
        // A deferred listener hands the connection over with the client's first bytes in, but
        // tokio learns that only at its next look at the sockets: the first read goes straight
        // to the socket, so the set-up starts at once and the deadline is never armed (arming
        // a timer earlier than the runtime's next one wakes the runtime's driver).
        if std::mem::take(this.fresh) {
            match confirm(accepted, ReadVia::Socket) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                _ => return Poll::Ready(this.accepted.take()),
            }
        }
        loop {
            if accepted.client.poll_read_ready(cx).is_pending() {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(this.accepted.take());
                }
                return Poll::Pending;
            }
            match confirm(accepted, ReadVia::Readiness) {
                // Nothing yet: the readiness is cleared, wait for the next.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                // Bytes, end of file or an error: the set-up phase takes it from here.
                _ => return Poll::Ready(this.accepted.take()),
            }
        }
    }
}

/// How the first bytes are looked for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReadVia {
    /// Straight from the socket, before tokio has seen its first readiness event.
    Socket,
    /// Through tokio's readiness.
    Readiness,
}

/// Checks that the client sent something, keeping what a plain TCP read got.
fn confirm(accepted: &mut Accepted, via: ReadVia) -> io::Result<()> {
    let client = &accepted.client;
    // The TLS handshake and the PROXY header reader read their bytes themselves.
    if accepted.listening.client_speaks_first() {
        let mut byte = [MaybeUninit::uninit()];
        let mut peek = || SockRef::from(client).peek(&mut byte);
        return match via {
            ReadVia::Socket => peek(),
            ReadVia::Readiness => client.try_io(Interest::READABLE, peek),
        }
        .map(drop);
    }
    let max = preread::first_read(accepted.gateway.preread);
    accepted.first = match via {
        ReadVia::Socket => read_fresh_to_vec(client, max)?,
        ReadVia::Readiness => read_to_vec(client, max)?,
    };
    Ok(())
}
