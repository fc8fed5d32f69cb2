//! Reading: socket bytes through the scratch buffer into rustls, plaintext out to the reader.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::records::{process, Sink};
use super::{tls_error, Next, TlsIo, MAX_INCOMING, MAX_PLAINTEXT, MIN_READ, SCRATCH, SCRATCH_SIZE};

impl TlsIo {
    /// Runs rustls over the bytes `self.incoming` holds; decrypted records go to `buf` as far
    /// as it has room, the rest to the stash.
    pub(super) fn process_held(&mut self, buf: Option<&mut ReadBuf<'_>>) -> io::Result<Next> {
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

    pub(super) fn note(&mut self, next: Next) {
        if next == Next::PeerClosed {
            self.read_closed = true;
        }
    }

    /// Reads what the socket holds and runs rustls over it, in the scratch buffer: a partial
    /// record held from the last read is copied in first, and what is left partial is copied
    /// out again.
    pub(super) fn poll_read_records(
        &mut self,
        cx: &mut Context<'_>,
        buf: Option<&mut ReadBuf<'_>>,
    ) -> Poll<io::Result<Next>> {
        let held = self.incoming.len();
        if held + MAX_PLAINTEXT > SCRATCH_SIZE {
            return self.poll_read_long(cx, buf);
        }
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            scratch[..held].copy_from_slice(&self.incoming);
            // No more than the reader can take (plus a record's overhead), so that decrypted
            // bytes rarely wait in the stash.
            let room = buf
                .as_ref()
                .map_or(SCRATCH_SIZE, |buf| buf.remaining() + 1024);
            let end = SCRATCH_SIZE.min(held + room.max(MIN_READ));
            let mut read = ReadBuf::new(&mut scratch[held..end]);
            ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut read))?;
            let got = read.filled().len();
            if got == 0 {
                self.read_closed = true;
                return Poll::Ready(Ok(Next::PeerClosed));
            }
            let end = held + got;
            let mut sink = Sink {
                buf,
                stash: &mut self.plaintext,
            };
            let (done, next) = process(
                &mut self.conn,
                &mut scratch[..end],
                &mut self.outgoing,
                &mut sink,
            );
            if done == end {
                self.incoming = Vec::new();
            } else {
                self.incoming.clear();
                self.incoming.extend_from_slice(&scratch[done..end]);
            }
            let next = next.map_err(tls_error)?;
            self.note(next);
            Poll::Ready(Ok(next))
        })
    }

    /// As [`Self::poll_read_records`], in `incoming` itself: for a handshake message spread
    /// over more records than the scratch buffer holds, which only a handshake sends.
    pub(super) fn poll_read_long(
        &mut self,
        cx: &mut Context<'_>,
        buf: Option<&mut ReadBuf<'_>>,
    ) -> Poll<io::Result<Next>> {
        if self.incoming.len() >= MAX_INCOMING {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a TLS handshake message larger than 64 KiB",
            )));
        }
        let start = self.incoming.len();
        self.incoming.resize(start + MAX_PLAINTEXT, 0);
        let mut read = ReadBuf::new(&mut self.incoming[start..]);
        let polled = Pin::new(&mut self.tcp).poll_read(cx, &mut read);
        let got = read.filled().len();
        self.incoming.truncate(start + got);
        ready!(polled)?;
        if got == 0 {
            self.read_closed = true;
            return Poll::Ready(Ok(Next::PeerClosed));
        }
        Poll::Ready(self.process_held(buf))
    }

    /// Gives the reader what the stash holds; true if it held anything.
    pub(super) fn take_stash(&mut self, buf: &mut ReadBuf<'_>) -> bool {
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
}
