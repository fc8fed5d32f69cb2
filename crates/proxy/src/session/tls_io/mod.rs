//! The client's TLS stream, on rustls's unbuffered API. Records are read through a scratch
//! buffer per worker thread and decrypted there, and written records are encrypted into it, so
//! an idle session keeps no buffer: rustls's buffered connection keeps 4 KiB of incoming
//! records for the connection's whole life. Buffers of the stream's own hold only a partial
//! record, plaintext its reader could not take yet, and records the socket could not take yet,
//! and are freed once empty.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use rustls::server::UnbufferedServerConnection;
use rustls::CommonState;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

mod accept;
mod read;
mod records;
mod write;

pub use accept::{accept, client_hello_sni, ClientHello};

/// Plaintext encrypted per write: one full record.
const MAX_PLAINTEXT: usize = 16 * 1024;

/// The scratch buffer: room for a socket read of several records, or one encrypted record.
const SCRATCH_SIZE: usize = 2 * MAX_PLAINTEXT + 1024;

/// The least a read asks of the socket, whatever room its reader has left.
const MIN_READ: usize = 4096;

/// The most TLS bytes a stream keeps unprocessed: a partial record (and, in the handshake, a
/// handshake message split over records, which rustls bounds at 64 KiB).
const MAX_INCOMING: usize = 64 * 1024 + 2 * MAX_PLAINTEXT;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_SIZE].into_boxed_slice());
}

/// A TLS connection over a TCP socket, after or during its handshake.
pub struct TlsIo {
    tcp: TcpStream,
    conn: UnbufferedServerConnection,
    /// TLS bytes read and not yet taken by rustls: a partial record.
    incoming: Vec<u8>,
    /// Records to send that the socket has not taken yet.
    outgoing: Vec<u8>,
    /// How much of `outgoing` was sent.
    sent: usize,
    /// Plaintext read that the reader has not taken yet.
    plaintext: Vec<u8>,
    /// How much of `plaintext` was taken.
    taken: usize,
    /// The peer closed the TLS session (close_notify) or its socket.
    read_closed: bool,
    close_sent: bool,
}

/// What rustls needs next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// More bytes from the peer.
    Read,
    /// Nothing: it may send application data.
    Idle,
    /// The peer closed the session.
    PeerClosed,
}

fn tls_error(error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

impl TlsIo {
    fn new(tcp: TcpStream, conn: UnbufferedServerConnection, incoming: Vec<u8>) -> TlsIo {
        TlsIo {
            tcp,
            conn,
            incoming,
            outgoing: Vec::new(),
            sent: 0,
            plaintext: Vec::new(),
            taken: 0,
            read_closed: false,
            close_sent: false,
        }
    }

    /// The TCP socket under the session.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// The session's TLS state: version, cipher suite, the client's certificates.
    pub fn common(&self) -> &CommonState {
        &self.conn
    }
}

impl AsyncRead for TlsIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.take_stash(buf) || this.read_closed {
                return Poll::Ready(Ok(()));
            }
            // Records rustls queued while reading (a key update's answer) go out meanwhile.
            if !this.outgoing.is_empty() {
                if let Poll::Ready(Err(e)) = this.poll_send(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            let before = buf.filled().len();
            ready!(this.poll_read_records(cx, Some(buf)))?;
            if buf.filled().len() > before {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl AsyncWrite for TlsIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.close_sent {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        // Backpressure: what the socket did not take goes first.
        ready!(this.poll_send(cx))?;
        Poll::Ready(this.encrypt(cx, data))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_sent {
            this.close_sent = true;
            this.queue_close_notify()?;
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
