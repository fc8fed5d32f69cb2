//! Writing: application data encrypted into the scratch buffer and sent at once, what the
//! socket does not take queued, and the close_notify alert.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use rustls::server::ServerConnectionData;
use rustls::unbuffered::{ConnectionState, EncryptError, WriteTraffic};
use tokio::io::AsyncWrite;

use super::records::encode;
use super::{tls_error, TlsIo, MAX_PLAINTEXT, SCRATCH};

impl TlsIo {
    /// Writes `outgoing` to the socket; ready once all of it is sent.
    pub(super) fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
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

    /// Encrypts `data` (at most one record's worth) as application data, and sends it after
    /// anything queued before; returns how much of `data` it took.
    pub(super) fn encrypt(&mut self, cx: &mut Context<'_>, data: &[u8]) -> io::Result<usize> {
        let data = &data[..data.len().min(MAX_PLAINTEXT)];
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let len = self
                .when_writable(|mut writer| writer.encrypt(data, &mut scratch[..]))?
                .ok_or(io::ErrorKind::BrokenPipe)?;
            self.send_or_queue(cx, &scratch[..len])?;
            Ok(data.len())
        })
    }

    /// Sends `records` now if nothing is queued and the socket takes them, and queues the rest.
    pub(super) fn send_or_queue(&mut self, cx: &mut Context<'_>, records: &[u8]) -> io::Result<()> {
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

impl TlsIo {
    /// Queues the close_notify alert that ends this side of the TLS session (nothing when the
    /// session is closed already, or was never open).
    pub(super) fn queue_close_notify(&mut self) -> io::Result<()> {
        let mut alert = [0; 64];
        if let Some(len) = self.when_writable(|mut writer| writer.queue_close_notify(&mut alert))? {
            self.outgoing.extend_from_slice(&alert[..len]);
        }
        Ok(())
    }

    /// Processes the records received until the session may send, then lets `write` encrypt;
    /// `None` when it never will (closed).
    fn when_writable(
        &mut self,
        write: impl FnOnce(WriteTraffic<'_, ServerConnectionData>) -> Result<usize, EncryptError>,
    ) -> io::Result<Option<usize>> {
        loop {
            let status = self.conn.process_tls_records(&mut self.incoming);
            let done = status.discard;
            match status.state.map_err(tls_error)? {
                ConnectionState::WriteTraffic(writer) => {
                    let len = write(writer).map_err(encrypt_error)?;
                    self.incoming.drain(..done);
                    return Ok(Some(len));
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
                _ => return Ok(None),
            }
            self.incoming.drain(..done);
        }
    }
}
