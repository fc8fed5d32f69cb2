//! The bidirectional copy loop. It reads on readiness into one scratch buffer per worker
//! thread and keeps a buffer of its own only while a write to the other side is pending, so an
//! idle connection holds no buffer at all (tokio's `copy_bidirectional` keeps two 8 KiB ones).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant, Sleep};

use super::read::{read_draining, with_scratch, Drained};
use super::{idle_deadline, End, Side, Transfer};
use crate::deadline;

/// Steps taken without awaiting before yielding to other tasks.
const STEP_BUDGET: u32 = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Progress,
    WantRead,
    WantWrite,
    Done,
    Failed(Side, io::ErrorKind),
}

/// One direction of the session.
struct Flow {
    from: Side,
    /// Bytes read but not yet accepted by the other side (only under backpressure).
    pending: Option<Box<[u8]>>,
    written: usize,
    read_closed: bool,
    write_closed: bool,
    bytes: u64,
}

impl Flow {
    fn new(from: Side) -> Self {
        Flow {
            from,
            pending: None,
            written: 0,
            read_closed: false,
            write_closed: false,
            bytes: 0,
        }
    }

    fn to(&self) -> Side {
        self.from.other()
    }

    /// Moves what can be moved without waiting. `last`: the other direction has finished, so
    /// this one ends the session.
    fn step(&mut self, src: &TcpStream, dst: &TcpStream, last: bool) -> Step {
        if let Some(pending) = &self.pending {
            return match dst.try_write(&pending[self.written..]) {
                Ok(n) => {
                    self.written += n;
                    self.bytes += n as u64;
                    if self.written == pending.len() {
                        self.pending = None;
                        self.written = 0;
                    }
                    Step::Progress
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Step::WantWrite,
                Err(e) => Step::Failed(self.to(), e.kind()),
            };
        }
        if self.read_closed {
            if !self.write_closed {
                self.write_closed = true;
                // Forward the half-close; the peer may already be gone, which ends the flow too.
                // The last direction to close needs none: both sockets are about to be closed,
                // with nothing left unread, which sends the FIN anyway.
                if !last {
                    let _ = SockRef::from(dst).shutdown(std::net::Shutdown::Write);
                }
            }
            return Step::Done;
        }
        with_scratch(|scratch| {
            match read_draining(src, scratch) {
                Ok(Drained { len: 0, .. }) => {
                    self.read_closed = true;
                    Step::Progress
                }
                Ok(Drained { len: n, eof }) => {
                    self.read_closed = eof;
                    // The half-close follows at once (next step), so it may share a segment.
                    let fin_follows = eof && !last;
                    let sent = match send(dst, &scratch[..n], fin_follows) {
                        Ok(sent) => sent,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                        Err(e) => return Step::Failed(self.to(), e.kind()),
                    };
                    self.bytes += sent as u64;
                    if sent < n {
                        self.pending = Some(scratch[sent..n].into());
                    }
                    Step::Progress
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Step::WantRead,
                Err(e) => Step::Failed(self.from, e.kind()),
            }
        })
    }
}

/// Writes what `dst` accepts of `buf`. When a FIN follows at once, the bytes are held back
/// (`MSG_MORE`) so that the kernel sends them in one segment with it: one packet less for the
/// peer, as when a client sends its last packet and closes (MQTT's DISCONNECT).
fn send(dst: &TcpStream, buf: &[u8], fin_follows: bool) -> io::Result<usize> {
    if !fin_follows {
        return dst.try_write(buf);
    }
    dst.try_io(Interest::WRITABLE, || {
        SockRef::from(dst).send_with_flags(buf, libc::MSG_MORE)
    })
}

/// Registers interest for `step` and reports whether the awaited readiness is already there.
fn poll_ready(
    step: Step,
    src: &TcpStream,
    dst: &TcpStream,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    match step {
        Step::WantRead => src.poll_read_ready(cx),
        Step::WantWrite => dst.poll_write_ready(cx),
        _ => Poll::Pending,
    }
}

pin_project! {
    /// Copies both ways until both sides have closed, one fails, or nothing moves for the idle
    /// timeout. A hand-written future rather than an `async fn`: it owns the two sockets and
    /// exactly the state it needs (about 350 bytes), and polls readiness on the sockets
    /// themselves (`poll_read_ready` / `poll_write_ready`), so the wakers live in tokio's
    /// per-socket state.
    pub struct Relay {
        client: TcpStream,
        upstream: TcpStream,
        up: Flow,
        down: Flow,
        first_close: Option<End>,
        last_activity: Instant,
        idle: Duration,
        // Re-armed lazily: activity only moves `last_activity`.
        #[pin]
        timer: Sleep,
    }
}

impl Relay {
    pub fn new(client: TcpStream, upstream: TcpStream, idle: Duration) -> Relay {
        let now = Instant::now();
        Relay {
            client,
            upstream,
            up: Flow::new(Side::Client),
            down: Flow::new(Side::Upstream),
            first_close: None,
            last_activity: now,
            idle,
            timer: sleep_until(deadline::after(now, idle)),
        }
    }
}

impl Future for Relay {
    type Output = Transfer;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Transfer> {
        let mut this = self.project();
        let (client, upstream) = (&*this.client, &*this.upstream);
        let transfer = |up: &Flow, down: &Flow, end| Transfer {
            to_upstream: up.bytes,
            to_client: down.bytes,
            end,
        };
        let mut budget = 0;
        loop {
            // A direction has finished once its half-close was forwarded.
            let a = this.up.step(client, upstream, this.down.write_closed);
            let b = this.down.step(upstream, client, this.up.write_closed);
            if a == Step::Progress || b == Step::Progress {
                *this.last_activity = Instant::now();
                if this.first_close.is_none() {
                    *this.first_close =
                        End::first_read_closed(this.up.read_closed, this.down.read_closed);
                }
                budget += 1;
                if budget == STEP_BUDGET {
                    // Let other sessions run; come back at once.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                continue;
            }
            let end = match (a, b) {
                (Step::Failed(side, kind), _) | (_, Step::Failed(side, kind)) => {
                    Some(End::failed(side, kind))
                }
                (Step::Done, Step::Done) => Some(this.first_close.unwrap_or(End::ClientClosed)),
                _ => None,
            };
            if let Some(end) = end {
                return Poll::Ready(transfer(this.up, this.down, end));
            }
            match (
                poll_ready(a, client, upstream, cx),
                poll_ready(b, upstream, client, cx),
            ) {
                (Poll::Ready(Err(e)), _) => {
                    return Poll::Ready(transfer(
                        this.up,
                        this.down,
                        End::failed(Side::Client, e.kind()),
                    ))
                }
                (_, Poll::Ready(Err(e))) => {
                    return Poll::Ready(transfer(
                        this.up,
                        this.down,
                        End::failed(Side::Upstream, e.kind()),
                    ))
                }
                (Poll::Ready(Ok(())), _) | (_, Poll::Ready(Ok(()))) => continue,
                (Poll::Pending, Poll::Pending) => {}
            }
            while this.timer.as_mut().poll(cx).is_ready() {
                let Some(deadline) = idle_deadline(*this.last_activity, *this.idle) else {
                    return Poll::Ready(transfer(this.up, this.down, End::Idle));
                };
                this.timer.as_mut().reset(deadline);
            }
            return Poll::Pending;
        }
    }
}

#[cfg(test)]
mod tests;
