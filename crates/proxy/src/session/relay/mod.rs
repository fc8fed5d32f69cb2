//! Relaying a session's bytes once its upstream is connected: the plain relay for two TCP
//! sockets, the relay for sessions with a TLS side, and the reads the earlier phases share.

use std::io;
use std::time::Duration;

use tokio::time::Instant;

use crate::deadline;

pub(crate) mod plain;
pub(crate) mod read;
pub(crate) mod tls;

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

/// A side of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Client,
    Upstream,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::Client => Side::Upstream,
            Side::Upstream => Side::Client,
        }
    }
}

impl End {
    /// Both sides closed, `first` before the other.
    fn closed_first(first: Side) -> End {
        match first {
            Side::Client => End::ClientClosed,
            Side::Upstream => End::UpstreamClosed,
        }
    }

    /// The end a session will report once both sides are closed, as soon as one side's read
    /// has closed: that side closed first.
    fn first_read_closed(client: bool, upstream: bool) -> Option<End> {
        match (client, upstream) {
            (true, _) => Some(End::closed_first(Side::Client)),
            (_, true) => Some(End::closed_first(Side::Upstream)),
            _ => None,
        }
    }

    /// `side` failed with `kind`.
    fn failed(side: Side, kind: io::ErrorKind) -> End {
        match side {
            Side::Client => End::ClientError(kind),
            Side::Upstream => End::UpstreamError(kind),
        }
    }
}

/// The idle timeout both relays apply: the instant the idle timer is to fire next, or `None`
/// once nothing has moved for `idle` since `last`.
fn idle_deadline(last: Instant, idle: Duration) -> Option<Instant> {
    let deadline = deadline::after(last, idle);
    (Instant::now() < deadline).then_some(deadline)
}

/// Bytes whose order a test can check: each depends on its position.
#[cfg(test)]
pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}
