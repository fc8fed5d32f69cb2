//! One client connection: match a route on the snapshot loaded at accept time, pick and connect
//! a node with APISIX's retry rules, replay pre-read bytes, copy, and log the session.
//!
//! Its phases, in order: `waiting` for the client's first bytes, the TLS `handshake` (the
//! client's TLS stream is `tls_io`, on rustls's unbuffered API), `preread` by the route's
//! plugins, `connect` to a node, then the `relay`; `ended` counts, logs and runs the plugins'
//! log hooks; `drain` closes sessions whose node leaves its upstream.

pub(crate) mod connect;
pub(crate) mod drain;
pub(crate) mod ended;
pub(crate) mod error;
mod established;
mod failed;
pub(crate) mod handshake;
pub(crate) mod preread;
pub(crate) mod proxy_header;
pub(crate) mod relay;
#[cfg(test)]
mod tests;
pub(crate) mod tls_io;
pub(crate) mod vars;
pub(crate) mod waiting;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use sg_model::settings::ProxyProtocolVersion;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::either::Either;
use tracing::Instrument;

use crate::config::compiler::SnapshotHandle;
use crate::config::resolve::Resolver;
use crate::config::upstream::Upstream;
use crate::plugins::Ctx;
use crate::runtime::storm::StormGuard;
use crate::session::connect::connect;
use crate::session::drain::Drainer;
use crate::session::error::{Error, ErrorKind};
use crate::session::established::{Established, Relaying};
use crate::session::preread::PrereadLimits;
use crate::session::tls_io::TlsIo;
use crate::session::vars::ConnVars;
use crate::session::waiting::{Accepted, Waiting};
use failed::{close_unrouted, refuse, reject};
pub(crate) use failed::{record, Failed};

/// How a listener's connections are served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Listening {
    /// Terminate TLS, with the certificate the client's SNI selects.
    pub tls: bool,
    /// Read the PROXY protocol header a load balancer in front sends first.
    pub proxy_protocol: bool,
    /// Send a PROXY protocol header to upstreams, in this version.
    pub proxy_protocol_to_upstream: Option<ProxyProtocolVersion>,
}

impl Listening {
    /// Whether every connection starts with bytes from the client (a ClientHello or a PROXY
    /// header), whatever the routes.
    pub fn client_speaks_first(self) -> bool {
        self.tls || self.proxy_protocol
    }
}

/// What every connection shares.
pub struct Gateway {
    pub snapshots: SnapshotHandle,
    pub resolver: Arc<Resolver>,
    pub preread: PrereadLimits,
    /// `apisix.ssl.fallback_sni`, normalized: the SNI assumed when a client sends none.
    pub fallback_sni: Option<String>,
    /// The longest a TLS client may take to complete its handshake.
    pub handshake_timeout: Duration,
    /// Per-client connection rates and the handshake cap.
    pub storm: StormGuard,
    /// Paced draining, when `drain_rate` is set.
    pub drainer: Option<Arc<Drainer>>,
}

/// The client side of a session.
pub type ClientIo = Either<TcpStream, Box<TlsIo>>;

fn tcp_of(client: &ClientIo) -> &TcpStream {
    match client {
        Either::Left(tcp) => tcp,
        Either::Right(tls) => tls.tcp(),
    }
}

/// Opens the connection's span, then sets the session up inside it.
async fn establish(accepted: Accepted) -> Option<Established> {
    // Behind a PROXY protocol sender the socket's peer is that balancer; `client` is known
    // once its header is read (`set_up` records it), and named once in the line.
    let span = if accepted.listening.proxy_protocol {
        tracing::info_span!(
            "conn",
            balancer = %accepted.remote,
            server = %accepted.server,
            client = tracing::field::Empty
        )
    } else {
        tracing::info_span!("conn", client = %accepted.remote, server = %accepted.server)
    };
    match set_up(accepted, span.clone())
        .instrument(span.clone())
        .await
    {
        Ok(established) => Some(established),
        Err(failed) => {
            span.in_scope(|| record(&failed));
            None
        }
    }
}

/// Matches the route (after the TLS handshake on TLS listeners), runs the pre-read phase and
/// connects the upstream. `None`: the client was refused (and its connection closed).
async fn set_up(
    Accepted {
        gateway,
        client: mut tcp,
        mut remote,
        server,
        listening,
        at: accepted,
        first,
        mut route,
    }: Accepted,
    span: tracing::Span,
) -> Result<Established, Failed> {
    let mut proxied = None;
    if listening.proxy_protocol {
        let deadline = accepted + gateway.preread.timeout;
        let header = match proxy_header::receive(&mut tcp, deadline).await {
            Ok(header) => header,
            Err(error) => {
                reject(Either::Left(tcp));
                return Err(error.into());
            }
        };
        // LOCAL (the balancer's own health check) and UNKNOWN keep the socket's addresses.
        if let Some(addresses) = header.addresses {
            remote = addresses.source;
            proxied = Some(addresses.source);
        }
        span.record("client", tracing::field::display(remote));
        // The storm guard's per-client rate, which the listener left to this point: the
        // socket's peer is the balancer, shared by every client.
        if !gateway.storm.admit(remote.ip()) {
            reject(Either::Left(tcp));
            return Err(Error::new(ErrorKind::ClientRate).into());
        }
        if !listening.tls {
            let snapshot = gateway.snapshots.load();
            let fallback_sni = gateway.fallback_sni.as_deref();
            route = snapshot.routes.find(fallback_sni, remote, server).cloned();
        }
    }
    let (mut client, route, sni): (ClientIo, _, _) = if listening.tls {
        let Ok(_slot) = gateway.storm.handshake() else {
            reject(Either::Left(tcp));
            return Err(Error::new(ErrorKind::HandshakeLimit).into());
        };
        // Boxed, as the connect phase below: a session waiting for its client holds only the
        // state of the phase it is in.
        let snapshot = gateway.snapshots.load();
        let handshake = Box::pin(handshake::handshake(
            tcp,
            &snapshot.tls,
            gateway.fallback_sni.as_deref(),
            gateway.handshake_timeout.saturating_sub(accepted.elapsed()),
        ));
        let done = handshake.await?;
        let route = snapshot.routes.find(Some(&done.sni), remote, server);
        (
            Either::Right(Box::new(done.stream)),
            route.cloned(),
            Some(done.sni),
        )
    } else {
        (Either::Left(tcp), route, None)
    };
    let Some(route) = route else {
        close_unrouted(client, !first.is_empty());
        return Err(Error::new(ErrorKind::NoRoute).into());
    };
    let failed = |error| Failed {
        error,
        route: Some(route.clone()),
    };
    let mut ctx = Ctx {
        vars: ConnVars {
            remote,
            server,
            proxy_protocol: proxied.map(Box::new),
            mqtt_client_id: None,
        },
        leases: Vec::new(),
        idle_at_least: None,
    };
    let preread = match preread::run(
        &route.plugins,
        &mut ctx,
        &mut client,
        first,
        gateway.preread,
        accepted,
    )
    .await
    {
        Ok(bytes) => bytes,
        Err(refused) => {
            refuse(client, refused.reject.reply).await;
            ended::unproxied(&route, &ctx, refused.reject.code, accepted, "TCP");
            let status = format!(
                "{} exits with status code {}",
                refused.plugin, refused.reject.code
            );
            return Err(failed(Error::new(ErrorKind::Refused).on(status)));
        }
    };
    let Some(upstream) = route.upstream.clone() else {
        reject(client);
        ended::unproxied(&route, &ctx, ended::BAD_GATEWAY, accepted, "TCP");
        return Err(failed(Error::new(ErrorKind::NoUpstream)));
    };
    // Plain clients' fallback SNI only matched routes; TLS upstreams get the client's name.
    let upstream_sni = sni.as_deref();
    let proxy_header = listening.proxy_protocol_to_upstream.map(|version| {
        let tls = match &client {
            Either::Right(tls) => Some(&**tls),
            Either::Left(_) => None,
        };
        proxy_header::to_upstream(version, remote, server, upstream_sni, tls)
    });
    let connected = match Box::pin(connect(
        &upstream,
        &ctx.vars,
        upstream_sni,
        proxy_header.as_deref().unwrap_or_default(),
        &preread,
        route.server_answers,
        &gateway.resolver,
    ))
    .await
    {
        Ok(connected) => connected,
        Err(error) => {
            reject(client);
            ended::unproxied(&route, &ctx, ended::BAD_GATEWAY, accepted, "TCP");
            return Err(failed(error));
        }
    };
    let stream = connected.stream;
    let replayed = preread.len() as u64;
    let close = gateway.drainer.as_ref().map(|drainer| {
        drainer.register(
            &upstream.key,
            upstream.balancer.nodes()[connected.pick.index].address(),
        )
    });
    drop(preread);
    route.metrics.active.inc();
    if let Some(node) = upstream.node_metrics(connected.pick.index) {
        node.opened();
    }
    Ok(Established {
        relay: Relaying::new(client, stream, idle_timeout(&upstream, &ctx)),
        node: connected.addr,
        route,
        ctx,
        replayed,
        close,
        started: accepted,
        span: (!span.is_disabled()).then(|| Box::new(span)),
        pick: connected.pick,
    })
}

/// The upstream's idle timeout (nginx's `proxy_timeout`), raised to what a plugin asked for: an
/// MQTT client that pings every K seconds must not be cut at 600 s when K is longer.
pub(crate) fn idle_timeout(upstream: &Upstream, ctx: &Ctx) -> Duration {
    ctx.idle_at_least.map_or(upstream.idle_timeout, |floor| {
        floor.max(upstream.idle_timeout)
    })
}

type SetUp = Pin<Box<dyn Future<Output = Option<Established>> + Send>>;

pin_project! {
    /// One client connection, from accept to close: waiting for the client's first bytes when
    /// it speaks first, a boxed set-up phase (freed once the upstream is connected), then the
    /// relay, held inline.
    #[project = SessionProj]
    pub enum Session {
        Waiting { #[pin] waiting: Waiting },
        SettingUp { set_up: SetUp },
        Relaying { #[pin] established: Established },
    }
}

impl Future for Session {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match self.as_mut().project() {
                SessionProj::Waiting { waiting } => match ready!(waiting.poll(cx)) {
                    Some(accepted) => self.set(Session::SettingUp {
                        set_up: Box::pin(establish(accepted)),
                    }),
                    None => return Poll::Ready(()),
                },
                SessionProj::SettingUp { set_up } => match ready!(set_up.as_mut().poll(cx)) {
                    Some(established) => self.set(Session::Relaying { established }),
                    None => return Poll::Ready(()),
                },
                SessionProj::Relaying { established } => return established.poll(cx),
            }
        }
    }
}

/// The session task of one accepted client connection. `server`: the address the client
/// reached, when the listener's own address tells it.
pub fn serve(
    gateway: Arc<Gateway>,
    client: TcpStream,
    remote: SocketAddr,
    server: Option<SocketAddr>,
    listening: Listening,
) -> Session {
    let at = Instant::now();
    let Some(server) = server.or_else(|| client.local_addr().ok()) else {
        // The connection is already gone.
        return Session::SettingUp {
            set_up: Box::pin(std::future::ready(None)),
        };
    };
    // `deferred`: the listener handed the connection over once the client spoke (see
    // `crate::runtime::deferred`); `deadline`: the client speaks first, so the session waits for it.
    let (route, deferred, deadline) = if listening.tls {
        // A ClientHello comes first; the route is matched on its SNI after the handshake.
        (None, true, Some(at + gateway.handshake_timeout))
    } else if listening.proxy_protocol {
        // The header comes first; the route is matched on the client it names.
        (None, true, Some(at + gateway.preread.timeout))
    } else {
        // Matched now (APISIX applies fallback_sni to plain connections too); a client whose
        // route first reads its bytes speaks first.
        let snapshot = gateway.snapshots.load();
        let route = snapshot
            .routes
            .find(gateway.fallback_sni.as_deref(), remote, server)
            .cloned();
        let deadline = route
            .as_ref()
            .is_some_and(|route| route.waits_for_client)
            .then(|| at + gateway.preread.timeout);
        (route, snapshot.routes.clients_speak_first(), deadline)
    };
    let accepted = Accepted {
        gateway,
        client,
        remote,
        server,
        listening,
        at,
        first: Vec::new(),
        route,
    };
    match deadline {
        Some(deadline) => Session::Waiting {
            waiting: Waiting::new(accepted, deadline, deferred),
        },
        None => Session::SettingUp {
            set_up: Box::pin(establish(accepted)),
        },
    }
}
