//! Reads straight from a client socket through one scratch buffer per worker thread, so that
//! only the bytes read are allocated: used by the first phases of a session and the plain relay.

use std::cell::RefCell;
use std::future::Future;
use std::io::{self, Read};
use std::task::{Context, Poll};

use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Bytes read from a socket in one go.
const SCRATCH_SIZE: usize = 16 * 1024;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_SIZE].into_boxed_slice());
}

/// Runs `read` with this thread's scratch buffer.
pub(super) fn with_scratch<R>(read: impl FnOnce(&mut [u8]) -> R) -> R {
    SCRATCH.with(|scratch| read(&mut scratch.borrow_mut()))
}

/// What one read got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Drained {
    pub len: usize,
    /// The peer's FIN had already arrived when the socket was drained: the next read would
    /// return end-of-file, so it need not be made.
    pub eof: bool,
}

/// Reads what `src` holds. A read that does not fill `buf` has drained the socket, so tokio's
/// readiness is cleared right away instead of after one more `recv` that would only return
/// EAGAIN (a readiness event that arrived meanwhile is kept: tokio only clears the one it saw).
/// When the readiness already shows the peer's FIN (EPOLLRDHUP), the drained read was the
/// last one with data, which `Drained::eof` reports.
pub(crate) fn read_draining(src: &TcpStream, buf: &mut [u8]) -> io::Result<Drained> {
    let mut got = 0;
    let mut eof = false;
    let read = src.try_io(Interest::READABLE, || {
        got = (&*SockRef::from(src)).read(buf)?;
        if got > 0 && got < buf.len() {
            eof = peer_closed(src);
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(got)
    });
    match read {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(Drained { len: got, eof }),
        Ok(len) => Ok(Drained { len, eof: false }),
        Err(e) => Err(e),
    }
}

/// Reads what `src` holds, up to `max` bytes, through the thread's scratch buffer, so that only
/// the bytes read are allocated (nothing when the socket was empty).
pub(crate) fn read_to_vec(src: &TcpStream, max: usize) -> io::Result<Vec<u8>> {
    scratch_to_vec(max, |buf| {
        read_draining(src, buf).map(|drained| drained.len)
    })
}

/// As [`read_to_vec`], but straight from the socket, whatever tokio knows of its readiness:
/// for a socket just registered, whose first readiness event tokio may not have seen yet.
/// After a short read the socket is drained, so a readable event tokio gathered before it is
/// stale and is dropped (a later arrival raises a new one); otherwise the first relay read
/// would find nothing.
pub(crate) fn read_fresh_to_vec(src: &TcpStream, max: usize) -> io::Result<Vec<u8>> {
    let read = scratch_to_vec(max, |buf| (&*SockRef::from(src)).read(buf))?;
    if !read.is_empty() && read.len() < max {
        let _ = src.try_io(Interest::READABLE, || -> io::Result<()> {
            Err(io::ErrorKind::WouldBlock.into())
        });
    }
    Ok(read)
}

fn scratch_to_vec(
    max: usize,
    read: impl FnOnce(&mut [u8]) -> io::Result<usize>,
) -> io::Result<Vec<u8>> {
    with_scratch(|scratch| {
        let len = max.min(scratch.len());
        let got = read(&mut scratch[..len])?;
        Ok(scratch[..got].to_vec())
    })
}

/// Whether the readiness tokio holds for `src` shows the peer's FIN and no error. Only asked
/// while the socket is known readable, so the readiness future completes on its first poll
/// without registering anything.
fn peer_closed(src: &TcpStream) -> bool {
    let ready = std::pin::pin!(src.ready(Interest::READABLE));
    match ready.poll(&mut Context::from_waker(std::task::Waker::noop())) {
        Poll::Ready(Ok(ready)) => ready.is_read_closed() && !ready.is_error(),
        _ => false,
    }
}
