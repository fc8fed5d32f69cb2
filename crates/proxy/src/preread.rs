//! The pre-read phase: runs a route's plugins in priority order, reading client bytes when a
//! plugin asks for them, within a byte cap and a deadline. The bytes read are replayed to the
//! upstream once it is connected.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::{sleep, timeout_at, Instant};
use tracing::{error, warn};

use crate::plugin::{Ctx, Input, InputEnd, Preread, Reject, StreamPlugin};
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

/// Runs the plugins' `preread` hooks. Returns the bytes read (to replay), or the refusal.
pub async fn run(
    plugins: &[Arc<dyn StreamPlugin>],
    ctx: &mut Ctx,
    client: &mut (impl AsyncRead + Unpin),
    limits: PrereadLimits,
    accepted: Instant,
) -> Result<Vec<u8>, Refused> {
    let deadline = accepted + limits.timeout;
    let mut data = Vec::new();
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
                    // The plugin cannot be satisfied; refusing is the only way forward.
                    error!(
                        plugin = plugin.name(),
                        wanted, "plugin asked for bytes that cannot come"
                    );
                    return Err(Refused {
                        plugin: plugin.name(),
                        reject: Reject::silent(503),
                    });
                }
                Preread::NeedBytes(wanted) if wanted > limits.buffer => {
                    warn!(
                        wanted,
                        limit = limits.buffer,
                        "the client's first packet is larger than the preread buffer"
                    );
                    return Err(Refused {
                        plugin: plugin.name(),
                        reject: Reject::silent(503),
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
    client: &mut (impl AsyncRead + Unpin),
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
        let read = timeout_at(deadline, (&mut *client).take(room as u64).read_buf(data)).await;
        match read {
            Err(_) => return Some(InputEnd::Timeout),
            Ok(Ok(0)) | Ok(Err(_)) => return Some(InputEnd::Closed),
            Ok(Ok(_)) => {}
        }
    }
    None
}
