//! The end of a proxied session, TCP or UDP: its metrics, its access line and the plugins'
//! `log` hooks, in one place.

use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::time::Instant;
use tracing::info;

use crate::config::route::Route;
use crate::metrics::NodeMetrics;
use crate::plugins::{Ctx, SessionEnd, StreamPlugin};

/// What a session that was proxied did, for its access line.
pub(crate) struct Summary<'a> {
    /// `TCP` or `UDP`, as nginx's `$protocol`.
    pub protocol: &'static str,
    pub node: SocketAddr,
    pub node_metrics: Option<&'a NodeMetrics>,
    pub to_upstream: u64,
    pub to_client: u64,
    pub started: Instant,
    pub end: &'a dyn Display,
}

/// Counts and logs a proxied session that ended, then runs the plugins' `log` hooks.
pub(crate) fn ended(route: &Route, ctx: &Ctx, summary: &Summary<'_>) {
    let duration = summary.started.elapsed();
    let metrics = &route.metrics;
    metrics.active.dec();
    metrics.to_upstream.inc_by(summary.to_upstream);
    metrics.to_client.inc_by(summary.to_client);
    if let Some(node) = summary.node_metrics {
        node.closed(summary.to_upstream, summary.to_client);
    }
    info!(
        target: "streamgate::access",
        route = %route.id,
        node = %summary.node,
        sent = summary.to_upstream,
        received = summary.to_client,
        duration_ms = duration.as_millis() as u64,
        end = %summary.end,
        protocol = %summary.protocol,
        "session closed"
    );
    let end = SessionEnd {
        status: 200,
        upstream: Some(summary.node),
        from_client: summary.to_upstream,
        to_client: summary.to_client,
        duration,
        protocol: summary.protocol,
    };
    run_log_hooks(&route.plugins, ctx, &end);
}

/// nginx's `$status` when no upstream could be reached.
pub(crate) const BAD_GATEWAY: u16 = 502;

/// Runs the plugins' `log` hooks for a session that ended before its relay, with `status`
/// (the refusing plugin's code, or 502), as nginx runs its log phase for every session.
pub(crate) fn unproxied(
    route: &Route,
    ctx: &Ctx,
    status: u16,
    started: Instant,
    protocol: &'static str,
) {
    let end = SessionEnd {
        status,
        upstream: None,
        from_client: 0,
        to_client: 0,
        duration: started.elapsed(),
        protocol,
    };
    run_log_hooks(&route.plugins, ctx, &end);
}

/// Runs the plugins' `log` hooks of a session that ended, proxied or refused: the one place
/// they are called.
pub(crate) fn run_log_hooks(plugins: &[Arc<dyn StreamPlugin>], ctx: &Ctx, end: &SessionEnd) {
    for plugin in plugins {
        plugin.log(ctx, end);
    }
}
