//! The bidirectional copy loop. It reads on readiness into one scratch buffer per worker
//! thread and keeps a buffer of its own only while a write to the other side is pending, so an
//! idle connection holds no buffer at all (tokio's `copy_bidirectional` keeps two 8 KiB ones).

use std::cell::RefCell;
use std::io;
use std::time::Duration;

use socket2::SockRef;
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant};

/// Bytes read from a socket in one go.
const SCRATCH_SIZE: usize = 16 * 1024;
/// Steps taken without awaiting before yielding to other tasks.
const STEP_BUDGET: u32 = 32;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_SIZE].into_boxed_slice());
}

/// Why a proxied session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Both sides closed; the client closed first.
    ClientClosed,
    /// Both sides closed; the upstream closed first.
    UpstreamClosed,
    /// Nothing moved for the idle timeout.
    Idle,
    ClientError(io::ErrorKind),
    UpstreamError(io::ErrorKind),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::ClientClosed => f.write_str("client closed"),
            End::UpstreamClosed => f.write_str("upstream closed"),
            End::Idle => f.write_str("idle timeout"),
            End::ClientError(kind) => write!(f, "client error: {kind}"),
            End::UpstreamError(kind) => write!(f, "upstream error: {kind}"),
        }
    }
}

/// What a session moved and why it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub to_upstream: u64,
    pub to_client: u64,
    pub end: End,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Client,
    Upstream,
}

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
        match self.from {
            Side::Client => Side::Upstream,
            Side::Upstream => Side::Client,
        }
    }

    /// Moves what can be moved without waiting.
    fn step(&mut self, src: &TcpStream, dst: &TcpStream) -> Step {
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
                let _ = SockRef::from(dst).shutdown(std::net::Shutdown::Write);
            }
            return Step::Done;
        }
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            match src.try_read(&mut scratch) {
                Ok(0) => {
                    self.read_closed = true;
                    Step::Progress
                }
                Ok(n) => {
                    let sent = match dst.try_write(&scratch[..n]) {
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

/// Waits until `step` may progress: the source readable or the destination writable.
async fn ready(step: Step, src: &TcpStream, dst: &TcpStream) -> io::Result<()> {
    match step {
        Step::WantRead => src.readable().await,
        Step::WantWrite => dst.writable().await,
        _ => std::future::pending().await,
    }
}

fn failure(side: Side, kind: io::ErrorKind) -> End {
    match side {
        Side::Client => End::ClientError(kind),
        Side::Upstream => End::UpstreamError(kind),
    }
}

/// Copies both ways until both sides have closed, one fails, or nothing moves for `idle`.
pub async fn proxy(client: &TcpStream, upstream: &TcpStream, idle: Duration) -> Transfer {
    let mut up = Flow::new(Side::Client);
    let mut down = Flow::new(Side::Upstream);
    let mut first_close = None;
    let mut deadline = Instant::now() + idle;
    loop {
        let mut budget = 0;
        let (a, b) = loop {
            let a = up.step(client, upstream);
            let b = down.step(upstream, client);
            if a != Step::Progress && b != Step::Progress {
                break (a, b);
            }
            deadline = Instant::now() + idle;
            if first_close.is_none() {
                first_close = match (up.read_closed, down.read_closed) {
                    (true, _) => Some(End::ClientClosed),
                    (_, true) => Some(End::UpstreamClosed),
                    _ => None,
                };
            }
            budget += 1;
            if budget == STEP_BUDGET {
                budget = 0;
                tokio::task::yield_now().await;
            }
        };
        let end = match (a, b) {
            (Step::Failed(side, kind), _) | (_, Step::Failed(side, kind)) => {
                Some(failure(side, kind))
            }
            (Step::Done, Step::Done) => Some(first_close.unwrap_or(End::ClientClosed)),
            _ => None,
        };
        if let Some(end) = end {
            return Transfer {
                to_upstream: up.bytes,
                to_client: down.bytes,
                end,
            };
        }
        let woke = tokio::select! {
            r = ready(a, client, upstream) => r.map_err(|e| failure(Side::Client, e.kind())),
            r = ready(b, upstream, client) => r.map_err(|e| failure(Side::Upstream, e.kind())),
            _ = sleep_until(deadline) => Err(End::Idle),
        };
        if let Err(end) = woke {
            return Transfer {
                to_upstream: up.bytes,
                to_client: down.bytes,
                end,
            };
        }
    }
}

#[cfg(test)]
mod tests;
