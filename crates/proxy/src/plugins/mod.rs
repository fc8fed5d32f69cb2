//! Stream plugins: a trait whose `preread` and `log` hooks default to no-ops, the per-connection
//! context they share, and the compilation of a route's `plugins` into instances in APISIX's
//! priority order.

mod ip_restriction;
mod limit_conn;
mod mqtt_proxy;
mod prometheus;
mod syslog;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sg_model::resource::{PluginConf, Plugins, STREAM_PLUGINS};

use crate::session::vars::ConnVars;
pub use syslog::flush_all as flush_syslog;

/// Per-connection state the plugins read and write.
pub struct Ctx {
    pub vars: ConnVars,
    /// Held for the session's whole life and dropped at its end (e.g. a limit-conn slot).
    pub leases: Vec<Box<dyn Send + Sync>>,
    /// The session's idle timeout is at least this (mqtt-proxy: 1.5 × the client's keep-alive).
    pub idle_at_least: Option<Duration>,
}

/// How a session ended, for the `log` hooks: what nginx's stream variables `$status`,
/// `$upstream_addr`, `$bytes_sent`, `$bytes_received` and `$session_time` hold.
#[derive(Clone, Copy, Debug)]
pub struct SessionEnd {
    /// 200 when proxied, the refusing plugin's code, or 502 when no upstream was reached.
    pub status: u16,
    /// The node the session was relayed to.
    pub upstream: Option<SocketAddr>,
    /// Bytes from the client to the upstream, pre-read bytes included.
    pub from_client: u64,
    /// Bytes from the upstream to the client.
    pub to_client: u64,
    /// Since the connection was accepted.
    pub duration: Duration,
    /// `TCP` or `UDP`, as nginx's `$protocol`.
    pub protocol: &'static str,
}

/// Why pre-reading stopped before a plugin was satisfied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputEnd {
    /// The client closed (or half-closed) its side.
    Closed,
    /// The pre-read timeout passed.
    Timeout,
}

impl std::fmt::Display for InputEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InputEnd::Closed => "closed",
            InputEnd::Timeout => "timeout",
        })
    }
}

/// The client bytes read so far; they are replayed to the upstream unchanged.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    pub data: &'a [u8],
    /// Set when no more bytes will come.
    pub end: Option<InputEnd>,
}

/// A refusal: the connection is closed, after `reply` is written if there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    /// The status APISIX would record (logged as `<plugin> exits with status code <code>`).
    pub code: u16,
    /// Bytes to send before closing (streamgate extensions only; APISIX never writes).
    pub reply: Option<Vec<u8>>,
}

impl Reject {
    pub fn silent(code: u16) -> Self {
        Reject { code, reply: None }
    }
}

/// What a plugin's `preread` decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Preread {
    /// Done; run the next plugin.
    Continue,
    /// Call again once at least this many bytes (in total) were read, or the input ended.
    NeedBytes(usize),
    /// Wait this long, then run the next plugin.
    Delay(Duration),
    Reject(Reject),
}

/// What a plugin's `preread` hook looks at before it decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    /// Nothing: the hook always continues.
    Nothing,
    /// The connection alone (addresses, counters): it may act before the client sends a byte.
    Connection,
    /// The client's first bytes.
    ClientBytes,
}

/// A stream plugin. Instances are built once per route per snapshot.
pub trait StreamPlugin: Send + Sync {
    fn name(&self) -> &'static str;

    /// APISIX's priority; higher runs first.
    fn priority(&self) -> i32;

    /// What `preread` needs to decide.
    fn reads(&self) -> Reads {
        Reads::Nothing
    }

    /// Runs after the route matched and before an upstream node is picked. It may ask for more
    /// client bytes, delay the connection, or reject it (closing it without a byte).
    fn preread(&self, _ctx: &mut Ctx, _input: Input<'_>) -> Preread {
        Preread::Continue
    }

    /// The refusal of a client whose first packet is larger than the pre-read buffer (`input`
    /// holds its first bytes): silent, unless the plugin can tell the client in its protocol.
    fn too_large(&self, _input: Input<'_>) -> Reject {
        Reject::silent(503)
    }

    /// Whether the server answers the client's first bytes at once, as an MQTT broker answers
    /// CONNECT with CONNACK: the answer then shows that the server has taken the connection.
    fn server_answers(&self) -> bool {
        false
    }

    /// Runs once when the session ends, whether it was proxied or rejected. It runs on the
    /// session's worker: anything slow (sending the entry somewhere) belongs to a task.
    fn log(&self, _ctx: &Ctx, _end: &SessionEnd) {}
}

/// Builds the enabled plugins of a route, highest priority first. `route_id` scopes state
/// such as limit-conn counters and labels metrics (or `route_name`, where asked).
pub fn compile(
    route_id: &str,
    route_name: Option<&str>,
    plugins: &Plugins,
) -> Vec<Arc<dyn StreamPlugin>> {
    let mut built: Vec<Arc<dyn StreamPlugin>> = plugins
        .0
        .iter()
        .map(|conf| -> Arc<dyn StreamPlugin> {
            match conf {
                PluginConf::MqttProxy(conf) => Arc::new(mqtt_proxy::MqttProxy::new(conf)),
                PluginConf::IpRestriction(conf) => {
                    Arc::new(ip_restriction::IpRestriction::new(conf))
                }
                PluginConf::LimitConn(conf) => Arc::new(limit_conn::LimitConn::new(route_id, conf)),
                PluginConf::Prometheus(conf) => {
                    Arc::new(prometheus::Prometheus::new(route_id, route_name, conf))
                }
                PluginConf::Syslog(conf) => {
                    Arc::new(syslog::Syslog::new(route_id, route_name, conf))
                }
            }
        })
        .collect();
    built.sort_by_key(|p| std::cmp::Reverse(p.priority()));
    built
}

/// The priority APISIX gives a shipped plugin.
fn priority_of(name: &str) -> i32 {
    STREAM_PLUGINS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, p)| *p)
}

#[cfg(test)]
mod tests;
