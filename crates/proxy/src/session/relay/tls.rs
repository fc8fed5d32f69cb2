//! The relay for sessions with a TLS side. TLS records need rustls's own buffers, so this uses
//! tokio's `copy_bidirectional` with small buffers, plus the same idle timeout, byte counts
//! and end reasons as the plain relay.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep_until, Instant};

use super::{idle_deadline, End, Side, Transfer};

/// Copy buffer per direction.
const BUF: usize = 4096;

const NOBODY: u8 = 0;
const CLIENT: u8 = 1;
const UPSTREAM: u8 = 2;

/// What both sides of a session report: the last activity and who closed first.
struct Activity {
    started: Instant,
    last_ms: AtomicU64,
    first_eof: AtomicU8,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.started + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    fn first_eof(&self) -> Option<Side> {
        match self.first_eof.load(Ordering::Relaxed) {
            CLIENT => Some(Side::Client),
            UPSTREAM => Some(Side::Upstream),
            _ => None,
        }
    }
}

/// A stream that reports reads (and EOF) and writes to the session's activity.
struct Tracked<S> {
    inner: S,
    side: u8,
    read: u64,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let n = buf.filled().len() - before;
            self.read += n as u64;
            self.activity.touch();
            if n == 0 {
                let _ = self.activity.first_eof.compare_exchange(
                    NOBODY,
                    self.side,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(_)) = polled {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Copies both ways until both sides closed, one failed, or nothing moved for `idle`.
pub async fn relay<C, U>(client: C, upstream: U, idle: Duration) -> Transfer
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Arc::new(Activity {
        started: Instant::now(),
        last_ms: AtomicU64::new(0),
        first_eof: AtomicU8::new(NOBODY),
    });
    let mut client = Tracked {
        inner: client,
        side: CLIENT,
        read: 0,
        activity: activity.clone(),
    };
    let mut upstream = Tracked {
        inner: upstream,
        side: UPSTREAM,
        read: 0,
        activity: activity.clone(),
    };
    let copied = {
        let copy = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, BUF, BUF);
        tokio::pin!(copy);
        loop {
            let Some(deadline) = idle_deadline(activity.last(), idle) else {
                break None;
            };
            tokio::select! {
                done = &mut copy => break Some(done),
                () = sleep_until(deadline) => {}
            }
        }
    };
    let end = match copied {
        None => End::Idle,
        Some(Ok(_)) => End::closed_first(activity.first_eof().unwrap_or(Side::Client)),
        // copy_bidirectional does not say which side failed; the first to stop reading did.
        Some(Err(e)) => {
            let failed = activity.first_eof().map_or(Side::Client, Side::other);
            End::failed(failed, e.kind())
        }
    };
    Transfer {
        to_upstream: client.read,
        to_client: upstream.read,
        end,
    }
}
