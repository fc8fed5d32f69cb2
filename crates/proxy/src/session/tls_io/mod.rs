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
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls::CommonState;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

mod accept;

pub use accept::{accept, client_hello_sni, ClientHello};

/// Plaintext encrypted per write: one full record.
const MAX_PLAINTEXT: usize = 16 * 1024;

/// The scratch buffer: room for a socket read of several records, or one encrypted record.
const SCRATCH_SIZE: usize = 2 * MAX_PLAINTEXT + 1024;

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

/// Where decrypted records go: the reader's buffer while it has room, then the stash.
struct Sink<'a, 'b> {
    buf: Option<&'a mut ReadBuf<'b>>,
    stash: &'a mut Vec<u8>,
}

impl Sink<'_, '_> {
    fn put(&mut self, mut payload: &[u8]) {
        if let Some(buf) = self.buf.as_deref_mut() {
            let n = payload.len().min(buf.remaining());
            buf.put_slice(&payload[..n]);
            payload = &payload[n..];
        }
        self.stash.extend_from_slice(payload);
    }
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

/// Runs rustls over `incoming` (the undiscarded bytes) until it needs something: decrypted
/// records go to `sink`, records to send are appended to `outgoing`. Returns what it needs and
/// how many bytes of `incoming` it is done with.
fn process(
    conn: &mut UnbufferedServerConnection,
    incoming: &mut [u8],
    outgoing: &mut Vec<u8>,
    sink: &mut Sink<'_, '_>,
) -> (usize, Result<Next, rustls::Error>) {
    let mut done = 0;
    loop {
        let UnbufferedStatus { discard, state } = conn.process_tls_records(&mut incoming[done..]);
        done += discard;
        let state = match state {
            Ok(state) => state,
            Err(error) => {
                // A fatal alert rustls queued goes out before the connection closes.
                if let Ok(ConnectionState::EncodeTlsData(mut encoder)) =
                    conn.process_tls_records(&mut []).state
                {
                    let _ = encode(&mut encoder, outgoing);
                }
                return (done, Err(error));
            }
        };
        let next = match state {
            ConnectionState::ReadTraffic(mut records) => {
                while let Some(record) = records.next_record() {
                    match record {
                        Ok(record) => sink.put(record.payload),
                        Err(error) => return (done, Err(error)),
                    }
                }
                continue;
            }
            ConnectionState::ReadEarlyData(mut records) => {
                while let Some(record) = records.next_record() {
                    match record {
                        Ok(record) => sink.put(record.payload),
                        Err(error) => return (done, Err(error)),
                    }
                }
                continue;
            }
            ConnectionState::EncodeTlsData(mut encoder) => {
                if let Err(error) = encode(&mut encoder, outgoing) {
                    return (done, Err(error));
                }
                continue;
            }
            // Queued in `outgoing`, which goes out before anything encrypted later.
            ConnectionState::TransmitTlsData(transmit) => {
                transmit.done();
                continue;
            }
            ConnectionState::BlockedHandshake => Next::Read,
            ConnectionState::PeerClosed | ConnectionState::Closed => Next::PeerClosed,
            _ => Next::Idle,
        };
        // A TLS 1.3 server may send before the client's Finished: the handshake goes on.
        if next == Next::Idle && conn.is_handshaking() {
            return (done, Ok(Next::Read));
        }
        return (done, Ok(next));
    }
}

/// Appends the handshake record `encoder` holds to `outgoing`.
fn encode(
    encoder: &mut rustls::unbuffered::EncodeTlsData<'_, rustls::server::ServerConnectionData>,
    outgoing: &mut Vec<u8>,
) -> Result<(), rustls::Error> {
    let start = outgoing.len();
    let mut room = 1024;
    loop {
        outgoing.resize(start + room, 0);
        match encoder.encode(&mut outgoing[start..]) {
            Ok(written) => {
                outgoing.truncate(start + written);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(needed)) => room = needed.required_size,
            Err(EncodeError::AlreadyEncoded) => {
                outgoing.truncate(start);
                return Ok(());
            }
        }
    }
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

    /// Runs rustls over the bytes `self.incoming` holds; decrypted records go to `buf` as far
    /// as it has room, the rest to the stash.
    fn process_held(&mut self, buf: Option<&mut ReadBuf<'_>>) -> io::Result<Next> {
        let mut sink = Sink {
            buf,
            stash: &mut self.plaintext,
        };
        let (done, next) = process(
            &mut self.conn,
            &mut self.incoming,
            &mut self.outgoing,
            &mut sink,
        );
        self.incoming.drain(..done);
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
        }
        let next = next.map_err(tls_error)?;
        self.note(next);
        Ok(next)
    }

    fn note(&mut self, next: Next) {
        if next == Next::PeerClosed {
            self.read_closed = true;
        }
    }

    /// Reads what the socket holds and runs rustls over it. With nothing held, the bytes are
    /// read into the scratch buffer and only a partial record left over is copied out.
    fn poll_read_records(
        &mut self,
        cx: &mut Context<'_>,
        buf: Option<&mut ReadBuf<'_>>,
    ) -> Poll<io::Result<Next>> {
        if !self.incoming.is_empty() {
            if self.incoming.len() >= MAX_INCOMING {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a TLS record larger than the protocol allows",
                )));
            }
            let start = self.incoming.len();
            self.incoming.resize(start + MAX_PLAINTEXT + 1024, 0);
            let mut read = ReadBuf::new(&mut self.incoming[start..]);
            let polled = Pin::new(&mut self.tcp).poll_read(cx, &mut read);
            let got = read.filled().len();
            self.incoming.truncate(start + got);
            ready!(polled)?;
            if got == 0 {
                self.read_closed = true;
                return Poll::Ready(Ok(Next::PeerClosed));
            }
            return Poll::Ready(self.process_held(buf));
        }
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut read = ReadBuf::new(&mut scratch[..]);
            ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut read))?;
            let got = read.filled().len();
            if got == 0 {
                self.read_closed = true;
                return Poll::Ready(Ok(Next::PeerClosed));
            }
            let mut sink = Sink {
                buf,
                stash: &mut self.plaintext,
            };
            let (done, next) = process(
                &mut self.conn,
                &mut scratch[..got],
                &mut self.outgoing,
                &mut sink,
            );
            self.incoming.extend_from_slice(&scratch[done..got]);
            let next = next.map_err(tls_error)?;
            self.note(next);
            Poll::Ready(Ok(next))
        })
    }

    /// Writes `outgoing` to the socket; ready once all of it is sent.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.outgoing[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.outgoing = Vec::new();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Gives the reader what the stash holds; true if it held anything.
    fn take_stash(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        if self.taken == self.plaintext.len() {
            return false;
        }
        let n = (self.plaintext.len() - self.taken).min(buf.remaining());
        buf.put_slice(&self.plaintext[self.taken..self.taken + n]);
        self.taken += n;
        if self.taken == self.plaintext.len() {
            self.plaintext = Vec::new();
            self.taken = 0;
        }
        true
    }

    /// Encrypts `data` (at most one record's worth) as application data, and sends it after
    /// anything queued before; returns how much of `data` it took.
    fn encrypt(&mut self, cx: &mut Context<'_>, data: &[u8]) -> io::Result<usize> {
        let data = &data[..data.len().min(MAX_PLAINTEXT)];
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            loop {
                let status = self.conn.process_tls_records(&mut self.incoming);
                let done = status.discard;
                let state = status.state.map_err(tls_error)?;
                match state {
                    ConnectionState::WriteTraffic(mut writer) => {
                        let len = writer
                            .encrypt(data, &mut scratch[..])
                            .map_err(encrypt_error)?;
                        self.incoming.drain(..done);
                        self.send_or_queue(cx, &scratch[..len])?;
                        return Ok(data.len());
                    }
                    ConnectionState::ReadTraffic(mut records) => {
                        while let Some(record) = records.next_record() {
                            let record = record.map_err(tls_error)?;
                            self.plaintext.extend_from_slice(record.payload);
                        }
                    }
                    ConnectionState::EncodeTlsData(mut encoder) => {
                        encode(&mut encoder, &mut self.outgoing).map_err(tls_error)?
                    }
                    ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                    ConnectionState::PeerClosed => self.read_closed = true,
                    _ => return Err(io::ErrorKind::BrokenPipe.into()),
                }
                self.incoming.drain(..done);
            }
        })
    }

    /// Sends `records` now if nothing is queued and the socket takes them, and queues the rest.
    fn send_or_queue(&mut self, cx: &mut Context<'_>, records: &[u8]) -> io::Result<()> {
        let mut sent = 0;
        if self.outgoing.is_empty() {
            while sent < records.len() {
                match Pin::new(&mut self.tcp).poll_write(cx, &records[sent..]) {
                    Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                    Poll::Ready(Ok(n)) => sent += n,
                    Poll::Ready(Err(e)) => return Err(e),
                    Poll::Pending => break,
                }
            }
        }
        self.outgoing.extend_from_slice(&records[sent..]);
        Ok(())
    }
}

fn encrypt_error(error: EncryptError) -> io::Error {
    io::Error::other(error.to_string())
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

impl TlsIo {
    /// Queues the close_notify alert that ends this side of the TLS session.
    fn queue_close_notify(&mut self) -> io::Result<()> {
        loop {
            let status = self.conn.process_tls_records(&mut self.incoming);
            let done = status.discard;
            match status.state.map_err(tls_error)? {
                ConnectionState::WriteTraffic(mut writer) => {
                    let start = self.outgoing.len();
                    self.outgoing.resize(start + 64, 0);
                    let len = writer
                        .queue_close_notify(&mut self.outgoing[start..])
                        .map_err(encrypt_error)?;
                    self.outgoing.truncate(start + len);
                    self.incoming.drain(..done);
                    return Ok(());
                }
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        let record = record.map_err(tls_error)?;
                        self.plaintext.extend_from_slice(record.payload);
                    }
                }
                ConnectionState::EncodeTlsData(mut encoder) => {
                    encode(&mut encoder, &mut self.outgoing).map_err(tls_error)?
                }
                ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                ConnectionState::PeerClosed => self.read_closed = true,
                // Closed already, or never open: nothing to say.
                _ => return Ok(()),
            }
            self.incoming.drain(..done);
        }
    }
}

#[cfg(test)]
mod tests;
