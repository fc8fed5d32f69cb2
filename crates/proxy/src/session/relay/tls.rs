//! The relay for sessions with a TLS side. It reads each side into the worker's scratch buffer
//! and writes straight on, so an idle session holds no copy buffer (tokio's
//! `copy_bidirectional` keeps one per direction); rustls keeps only its own record state. The
//! same idle timeout, byte counts and end reasons as the plain relay.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep_until, Instant, Sleep};

use super::read::with_scratch;
use super::{idle_deadline, End, Side, Transfer};
use crate::deadline;

/// Steps taken without awaiting before yielding to other tasks.
const STEP_BUDGET: u32 = 32;

/// What one step of a direction did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Progress,
    /// Waiting for the other side to take bytes or for this side to bring some; the waker is
    /// registered.
    Waiting,
    Done,
    Failed(Side, io::ErrorKind),
}

/// One direction of the session.
struct Flow {
    from: Side,
    /// Bytes read but not yet taken by the other side (only under backpressure).
    pending: Option<Box<[u8]>>,
    written: usize,
    /// Bytes handed to the other side may still sit in its TLS buffer.
    unflushed: bool,
    read_closed: bool,
    write_closed: bool,
    bytes: u64,
}

impl Flow {
    fn new(from: Side) -> Flow {
        Flow {
            from,
            pending: None,
            written: 0,
            unflushed: false,
            read_closed: false,
            write_closed: false,
            bytes: 0,
        }
    }

    /// Moves what can be moved now from `src` to `dst`.
    fn step<S, D>(&mut self, src: &mut S, dst: &mut D, cx: &mut Context<'_>) -> Step
    where
        S: AsyncRead + Unpin,
        D: AsyncWrite + Unpin,
    {
        let to = self.from.other();
        if let Some(pending) = &self.pending {
            return match Pin::new(&mut *dst).poll_write(cx, &pending[self.written..]) {
                Poll::Ready(Ok(0)) => Step::Failed(to, io::ErrorKind::WriteZero),
                Poll::Ready(Ok(n)) => {
                    self.written += n;
                    self.bytes += n as u64;
                    self.unflushed = true;
                    if self.written == pending.len() {
                        self.pending = None;
                        self.written = 0;
                    }
                    Step::Progress
                }
                Poll::Ready(Err(e)) => Step::Failed(to, e.kind()),
                Poll::Pending => Step::Waiting,
            };
        }
        if self.unflushed {
            match Pin::new(&mut *dst).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => return Step::Failed(to, e.kind()),
                Poll::Pending => return Step::Waiting,
            }
        }
        if self.read_closed {
            if !self.write_closed {
                match Pin::new(&mut *dst).poll_shutdown(cx) {
                    Poll::Ready(_) => self.write_closed = true,
                    Poll::Pending => return Step::Waiting,
                }
            }
            return Step::Done;
        }
        with_scratch(|scratch| {
            let mut buf = ReadBuf::new(scratch);
            match Pin::new(&mut *src).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                    self.read_closed = true;
                    Step::Progress
                }
                Poll::Ready(Ok(())) => {
                    let read = buf.filled();
                    let sent = match Pin::new(&mut *dst).poll_write(cx, read) {
                        Poll::Ready(Ok(n)) => n,
                        Poll::Ready(Err(e)) => return Step::Failed(to, e.kind()),
                        Poll::Pending => 0,
                    };
                    self.bytes += sent as u64;
                    self.unflushed |= sent > 0;
                    if sent < read.len() {
                        self.pending = Some(read[sent..].into());
                    }
                    Step::Progress
                }
                Poll::Ready(Err(e)) => Step::Failed(self.from, e.kind()),
                Poll::Pending => Step::Waiting,
            }
        })
    }
}

pin_project! {
    /// Copies both ways until both sides have closed, one fails, or nothing moves for the idle
    /// timeout.
    pub struct StreamRelay<C, U> {
        client: C,
        upstream: U,
        up: Flow,
        down: Flow,
        first_close: Option<End>,
        last_activity: Instant,
        idle: Duration,
        #[pin]
        timer: Sleep,
    }
}

impl<C, U> StreamRelay<C, U> {
    pub fn new(client: C, upstream: U, idle: Duration) -> StreamRelay<C, U> {
        let now = Instant::now();
        StreamRelay {
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

impl<C, U> Future for StreamRelay<C, U>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    type Output = Transfer;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Transfer> {
        let mut this = self.project();
        let transfer = |up: &Flow, down: &Flow, end| Transfer {
            to_upstream: up.bytes,
            to_client: down.bytes,
            end,
        };
        let mut budget = 0;
        loop {
            let a = this.up.step(this.client, this.upstream, cx);
            let b = this.down.step(this.upstream, this.client, cx);
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
