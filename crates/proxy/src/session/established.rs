//! The long phase of a session: its upstream is connected and the relay copies both ways
//! until the session ends, or its node drains; then the session is logged.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use sg_balancer::Pick;
use tokio::time::Instant;
use tokio_util::either::Either;
use tracing::info;

use super::connect::UpstreamIo;
use super::drain::CloseFlag;
use super::ended::{ended, Summary};
use super::relay::plain::Relay;
use super::relay::tls::StreamRelay;
use super::relay::Transfer;
use super::ClientIo;
use crate::config::route::Route;
use crate::plugins::Ctx;

/// Boxed: the plain relay, held inline, is what most sessions use.
type TlsRelay = Pin<Box<StreamRelay<ClientIo, UpstreamIo>>>;

pin_project! {
    /// The copy phase: the allocation-free relay when both sides are plain TCP, the generic
    /// one when a side speaks TLS.
    #[project = RelayingProj]
    pub(crate) enum Relaying {
        Plain { #[pin] relay: Relay },
        Tls { relay: TlsRelay },
    }
}

impl Relaying {
    pub(super) fn new(client: ClientIo, upstream: UpstreamIo, idle: Duration) -> Relaying {
        match (client, upstream) {
            (Either::Left(client), Either::Left(upstream)) => Relaying::Plain {
                relay: Relay::new(client, upstream, idle),
            },
            (client, upstream) => Relaying::Tls {
                relay: Box::pin(StreamRelay::new(client, upstream, idle)),
            },
        }
    }
}

impl Future for Relaying {
    type Output = Transfer;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Transfer> {
        match self.project() {
            RelayingProj::Plain { relay } => relay.poll(cx),
            RelayingProj::Tls { relay } => relay.as_mut().poll(cx),
        }
    }
}

pin_project! {
    /// A session whose upstream is connected: exactly what the long copy phase keeps.
    pub(crate) struct Established {
        #[pin]
        pub(super) relay: Relaying,
        pub(super) node: SocketAddr,
        pub(super) route: Arc<Route>,
        pub(super) ctx: Ctx,
        pub(super) replayed: u64,
        pub(super) close: Option<Arc<CloseFlag>>,
        pub(super) started: Instant,
        // The connection's span, kept only when enabled: a disabled one (the default `warn`
        // level) would still take 40 bytes of every idle session.
        pub(super) span: Option<Box<tracing::Span>>,
        // Held for the session's life (least_conn counts it).
        pub(super) pick: Pick,
    }
}

impl Future for Established {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let _in_span = this.span.as_deref().map(tracing::Span::enter);
        if this.close.as_ref().is_some_and(|flag| flag.poll_closed(cx)) {
            this.route.metrics.active.dec();
            if let Some(node) = this.route.node_metrics(this.pick.index) {
                node.active.dec();
            }
            info!(route = %this.route.id, node = %this.node, "session closed: its node is draining");
            return Poll::Ready(());
        }
        let Transfer {
            to_upstream,
            to_client,
            end,
        } = ready!(this.relay.poll(cx));
        // Pre-read bytes were replayed to the upstream before the relay started.
        let summary = Summary {
            protocol: "TCP",
            node: *this.node,
            node_metrics: this.route.node_metrics(this.pick.index),
            to_upstream: to_upstream + *this.replayed,
            to_client,
            started: *this.started,
            end: &end,
        };
        ended(this.route, this.ctx, &summary);
        Poll::Ready(())
    }
}
