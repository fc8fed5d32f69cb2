//! The pre-read phase: runs a route's plugins in priority order, reading client bytes when a
//! plugin asks for them, within a byte cap and a deadline. The bytes read are replayed to the
//! upstream once it is connected.

use std::future::poll_fn;
use std::io;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::LazyLock;
use std::task::{ready, Poll};
use std::time::Duration;

use lru::LruCache;
use parking_lot::Mutex;
use tokio::io::AsyncReadExt;
use tokio::time::{sleep, timeout_at, Instant};
use tokio_util::either::Either;
use tracing::{error, warn};

use crate::deadline;
use crate::plugins::{Ctx, Input, InputEnd, Preread, Reject, StreamPlugin};
use crate::session::relay::read::read_draining;
use crate::session::ClientIo;
use std::sync::Arc;

/// How much a pre-read asks the socket for at least (an MQTT CONNECT is usually far smaller).
const PREFERRED_READ: usize = 1024;

/// Bounds of the pre-read phase (nginx's `preread_buffer_size` and `preread_timeout`).
#[derive(Clone, Copy, Debug)]
pub struct PrereadLimits {
    /// The most client bytes read before an upstream is chosen.
    pub buffer: usize,
    /// How long a client may take to send what the plugins need.
    pub timeout: Duration,
}

impl Default for PrereadLimits {
    fn default() -> Self {
        PrereadLimits {
            buffer: 16 * 1024,
            timeout: Duration::from_secs(30),
        }
    }
}

/// A refusal, and which plugin refused.
pub struct Refused {
    pub plugin: &'static str,
    pub reject: Reject,
}

/// Clients last warned about an oversized first packet, and when. Bounded: a flood of
/// addresses forgets the oldest.
static WARNED: LazyLock<Mutex<LruCache<IpAddr, Instant>>> =
    LazyLock::new(|| Mutex::new(LruCache::new(NonZeroUsize::new(4096).expect("not zero"))));

/// How often one client address is warned about its oversized first packet: a device that
/// reconnects in a loop must not flood the log.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Warns that `client` sent a first packet of `size` bytes, over `limit`: once a minute per
/// client address, naming the setting to raise.
fn oversized(client: IpAddr, size: usize, limit: usize) {
    let now = Instant::now();
    let mut warned = WARNED.lock();
    if warned
        .get(&client)
        .is_some_and(|at| now.duration_since(*at) < WARN_EVERY)
    {
        return;
    }
    warned.put(client, now);
    warn!(
        %client,
        size,
        limit,
        "the client's first packet is larger than the preread buffer; raise apisix.stream_proxy.preread_buffer_size to accept it"
    );
}

/// The refusal of a plugin that asked for bytes that cannot come (the input ended, or it
/// asked for no more than it has): refusing is the only way forward.
pub(crate) fn cannot_come(plugin: &'static str, wanted: usize) -> Refused {
    error!(plugin, wanted, "plugin asked for bytes that cannot come");
    Refused {
        plugin,
        reject: Reject::silent(503),
    }
}

/// How much the first read of a client takes: enough for a whole CONNECT, usually.
pub fn first_read(limits: PrereadLimits) -> usize {
    PREFERRED_READ.min(limits.buffer).max(1)
}

/// Runs the plugins' `preread` hooks from the bytes already read (`first`). Returns all the
/// bytes read (to replay), or the refusal.
pub async fn run(
    plugins: &[Arc<dyn StreamPlugin>],
    ctx: &mut Ctx,
    client: &mut ClientIo,
    first: Vec<u8>,
    limits: PrereadLimits,
    accepted: Instant,
) -> Result<Vec<u8>, Refused> {
    let deadline = deadline::after(accepted, limits.timeout);
    let mut data = first;
    let mut end = None;
    for plugin in plugins {
        loop {
            let decision = plugin.preread(ctx, Input { data: &data, end });
            match decision {
                Preread::Continue => break,
                Preread::Delay(delay) => {
                    sleep(delay).await;
                    break;
                }
                Preread::Reject(reject) => {
                    return Err(Refused {
                        plugin: plugin.name(),
                        reject,
                    })
                }
                Preread::NeedBytes(wanted) if end.is_some() || wanted <= data.len() => {
                    return Err(cannot_come(plugin.name(), wanted));
                }
                Preread::NeedBytes(wanted) if wanted > limits.buffer => {
                    oversized(ctx.vars.remote.ip(), wanted, limits.buffer);
                    return Err(Refused {
                        plugin: plugin.name(),
                        reject: plugin.too_large(Input { data: &data, end }),
                    });
                }
                Preread::NeedBytes(wanted) => {
                    end = read_until(client, &mut data, wanted, limits.buffer, deadline).await;
                }
            }
        }
    }
    Ok(data)
}

/// Reads until `data` holds `wanted` bytes; returns why it stopped early, if it did.
async fn read_until(
    client: &mut ClientIo,
    data: &mut Vec<u8>,
    wanted: usize,
    limit: usize,
    deadline: Instant,
) -> Option<InputEnd> {
    // Take whatever the client already sent (a whole CONNECT in one read, usually), within the
    // pre-read cap; bytes beyond what the plugins need are replayed to the upstream anyway.
    let room = wanted.max(PREFERRED_READ).min(limit).max(wanted);
    data.reserve_exact(room - data.len().min(room));
    while data.len() < wanted {
        let room = room.saturating_sub(data.len()).max(1);
        let start = data.len();
        data.resize(start + room, 0);
        let read = timeout_at(deadline, read_some(client, &mut data[start..])).await;
        let got = match read {
            Ok(Ok(got)) => got,
            Ok(Err(_)) => 0,
            Err(_) => {
                data.truncate(start);
                return Some(InputEnd::Timeout);
            }
        };
        data.truncate(start + got);
        if got == 0 {
            return Some(InputEnd::Closed);
        }
    }
    None
}

/// One read from the client. On plain TCP a short read clears the socket's readiness, so the
/// relay that follows does not begin with a `recv` that can only return EAGAIN.
async fn read_some(client: &mut ClientIo, buf: &mut [u8]) -> io::Result<usize> {
    match client {
        Either::Left(tcp) => {
            poll_fn(|cx| loop {
                ready!(tcp.poll_read_ready(cx))?;
                match read_draining(tcp, buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    done => return Poll::Ready(done.map(|drained| drained.len)),
                }
            })
            .await
        }
        Either::Right(tls) => tls.read(buf).await,
    }
}
