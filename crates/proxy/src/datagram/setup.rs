//! A new UDP session, from its client's first datagram: the route matched on the current
//! snapshot, the route's plugins run over that datagram, a node picked with the balancer and
//! a UDP socket connected to it. All of it is synchronous, so the listener's next datagram
//! from that client already finds the session.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use sg_balancer::{Pick, Tried};
use tokio::net::UdpSocket;
use tokio::time::Instant;
use tracing::info;

use crate::config::resolve::Resolver;
use crate::config::route::Route;
use crate::config::upstream::Upstream;
use crate::health::Outcome;
use crate::plugins::{Ctx, Input, InputEnd, Preread};
use crate::session::connect::{attempt_failed, next_node, unresolved};
use crate::session::ended::{self, BAD_GATEWAY};
use crate::session::error::{Error, ErrorKind};
use crate::session::preread::{cannot_come, Refused};
use crate::session::vars::ConnVars;
use crate::session::{idle_timeout, Failed, Gateway};

/// A session ready to relay.
pub(crate) struct Opened {
    pub route: Arc<Route>,
    pub upstream: Arc<Upstream>,
    pub ctx: Ctx,
    pub socket: UdpSocket,
    pub node: SocketAddr,
    pub pick: Pick,
    /// How long a plugin (limit-conn) holds the session before its first datagram is sent.
    pub delay: Duration,
    /// The session ends after this long without a datagram either way.
    pub idle: Duration,
}

/// Opens the session of `client`, whose first datagram is `datagram`; the datagram itself is
/// not sent yet.
pub(crate) fn open(
    gateway: &Gateway,
    client: SocketAddr,
    server: SocketAddr,
    datagram: &[u8],
) -> Result<Opened, Failed> {
    let started = Instant::now();
    let snapshot = gateway.snapshots.load();
    let route = snapshot
        .routes
        .find(gateway.fallback_sni.as_deref(), client, server)
        .cloned()
        .ok_or_else(|| Failed::from(Error::new(ErrorKind::NoRoute)))?;
    let failed = |error| Failed {
        error,
        route: Some(route.clone()),
    };
    let mut ctx = Ctx {
        vars: ConnVars {
            remote: client,
            server,
            proxy_protocol: None,
            mqtt_client_id: None,
        },
        leases: Vec::new(),
        idle_at_least: None,
    };
    let delay = match preread(&route, &mut ctx, datagram) {
        Ok(delay) => delay,
        Err(refused) => {
            ended::unproxied(&route, &ctx, refused.reject.code, started, "UDP");
            let status = format!(
                "{} exits with status code {}",
                refused.plugin, refused.reject.code
            );
            return Err(failed(Error::new(ErrorKind::Refused).on(status)));
        }
    };
    let unreached = |error| {
        ended::unproxied(&route, &ctx, BAD_GATEWAY, started, "UDP");
        failed(error)
    };
    let upstream = route
        .upstream
        .clone()
        .ok_or_else(|| unreached(Error::new(ErrorKind::NoUpstream)))?;
    let linked = link(&upstream, &ctx.vars, &gateway.resolver).map_err(unreached)?;
    let idle = idle_timeout(&upstream, &ctx);
    Ok(Opened {
        route,
        upstream,
        ctx,
        socket: linked.socket,
        node: linked.addr,
        pick: linked.pick,
        delay,
        idle,
    })
}

/// Runs the route's `preread` hooks over the first datagram, which is all they see: a plugin
/// that asks for more bytes is refused, as a TCP client that closed would be. Returns the
/// delay the plugins ask for.
fn preread(route: &Route, ctx: &mut Ctx, datagram: &[u8]) -> Result<Duration, Refused> {
    let input = Input {
        data: datagram,
        end: Some(InputEnd::Closed),
    };
    let mut delay = Duration::ZERO;
    for plugin in &route.plugins {
        match plugin.preread(ctx, input) {
            Preread::Continue => {}
            Preread::Delay(more) => delay = delay.saturating_add(more),
            Preread::Reject(reject) => {
                return Err(Refused {
                    plugin: plugin.name(),
                    reject,
                })
            }
            Preread::NeedBytes(wanted) => return Err(cannot_come(plugin.name(), wanted)),
        }
    }
    Ok(delay)
}

/// A UDP socket connected to the node picked.
struct Linked {
    socket: UdpSocket,
    addr: SocketAddr,
    pick: Pick,
}

/// Picks a node and connects a UDP socket to it, trying the next untried node, as a TCP
/// session retries, when the node's name is not resolved yet (names are resolved off the data
/// path; see `Resolver`) or the socket cannot be opened. A UDP connect sends nothing, so a node
/// that is down shows only later, as an ICMP port unreachable that ends the session.
fn link(up: &Upstream, vars: &ConnVars, resolver: &Resolver) -> Result<Linked, Error> {
    let mut tried = Tried::default();
    let mut last_error = Error::new(ErrorKind::AllTried);
    for attempt in 0..=up.retries {
        let Some((pick, node)) = next_node(up, vars, &mut tried) else {
            break;
        };
        let Some(ip) = resolver.cached(&node.host) else {
            last_error = unresolved(node, "not resolved yet");
            continue;
        };
        let addr = SocketAddr::new(ip, node.port);
        if attempt > 0 {
            if let Some(node) = up.node_metrics(pick.index) {
                node.retries.inc();
            }
        }
        info!("proxy request to {addr}");
        match connected(addr) {
            // Success is reported on the node's first reply (`session`).
            Ok(socket) => return Ok(Linked { socket, addr, pick }),
            Err(e) => {
                let error = Error::new(ErrorKind::of_connect(&e)).on(addr).because(e);
                attempt_failed(up, &pick, Outcome::TcpFailure, &error);
                last_error = error;
            }
        }
    }
    Err(last_error)
}

/// A non-blocking UDP socket on an ephemeral port, connected to `addr`: the kernel then
/// delivers it only `addr`'s datagrams, and the ICMP errors about them.
fn connected(addr: SocketAddr) -> io::Result<UdpSocket> {
    let any = match addr {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let socket = std::net::UdpSocket::bind(any)?;
    socket.connect(addr)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}
