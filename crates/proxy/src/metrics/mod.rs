//! Prometheus metrics of the data plane. Labels are bounded by the configuration (route ids,
//! upstream nodes) or by fixed reasons: never a client id or a client address.

pub(crate) mod logs;
mod node;

pub use node::{figures as node_figures, NodeBytesLabels, NodeFigures, NodeMetrics};

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BytesLabels {
    pub route: String,
    /// `upstream` (client to upstream) or `downstream`.
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub upstream: String,
    pub node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    /// The collection: `stream_routes`, `upstreams` or `ssls`.
    pub resource: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub route: String,
    /// `buffer_full` (the server is down or slow and the queue reached `drop_limit`) or
    /// `send_failed` (a batch failed its sends and retries).
    pub reason: &'static str,
}

/// The [`DropLabels`] reasons.
pub const DROP_REASONS: [&str; 2] = ["buffer_full", "send_failed"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// [`ErrorKind::label`](crate::session::error::ErrorKind::label).
    pub kind: &'static str,
    /// `client`, `upstream` or `internal`.
    pub origin: &'static str,
}

/// Every data-plane metric.
pub struct Metrics {
    /// APISIX's `prometheus` stream plugin: sessions per route that enables it.
    pub connection_total: Family<RouteLabels, Counter>,
    pub active_connections: Family<RouteLabels, Gauge>,
    pub bytes: Family<BytesLabels, Counter>,
    pub connect_failures: Family<NodeLabels, Counter>,
    pub retries: Family<NodeLabels, Counter>,
    /// Per node: proxied sessions open, sessions started, and bytes (see [`NodeMetrics`]).
    pub node_active: Family<NodeLabels, Gauge>,
    pub node_sessions: Family<NodeLabels, Counter>,
    pub node_bytes: Family<NodeBytesLabels, Counter>,
    pub mqtt_rejected: Family<ReasonLabels, Counter>,
    pub tls_handshake_failures: Family<ReasonLabels, Counter>,
    pub refused: Family<ReasonLabels, Counter>,
    /// Sessions that ended before their relay started.
    pub session_failures: Family<FailureLabels, Counter>,
    /// 1 while a checked node is healthy, 0 while it is not.
    pub node_healthy: Family<NodeLabels, Gauge>,
    /// Stored objects the compiler left out (or could not connect to an upstream), each time
    /// one is compiled.
    pub config_rejected: Family<ResourceLabels, Counter>,
    /// syslog entries that never reached their server.
    pub syslog_dropped: Family<DropLabels, Counter>,
    registry: Registry,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let metrics = Metrics {
            connection_total: Family::default(),
            active_connections: Family::default(),
            bytes: Family::default(),
            connect_failures: Family::default(),
            retries: Family::default(),
            node_active: Family::default(),
            node_sessions: Family::default(),
            node_bytes: Family::default(),
            mqtt_rejected: Family::default(),
            tls_handshake_failures: Family::default(),
            refused: Family::default(),
            session_failures: Family::default(),
            node_healthy: Family::default(),
            config_rejected: Family::default(),
            syslog_dropped: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "apisix_stream_connection",
            "Stream sessions of routes with the prometheus plugin",
            metrics.connection_total.clone(),
        );
        let streamgate = registry.sub_registry_with_prefix("streamgate");
        streamgate.register(
            "stream_active_connections",
            "Open proxied sessions per route",
            metrics.active_connections.clone(),
        );
        streamgate.register(
            "stream_bytes",
            "Bytes proxied per route and direction",
            metrics.bytes.clone(),
        );
        streamgate.register(
            "upstream_connect_failures",
            "Failed connects per upstream node",
            metrics.connect_failures.clone(),
        );
        streamgate.register(
            "upstream_retries",
            "Connect attempts after a failure, per node tried",
            metrics.retries.clone(),
        );
        streamgate.register(
            "upstream_node_active_sessions",
            "Open proxied sessions per upstream node",
            metrics.node_active.clone(),
        );
        streamgate.register(
            "upstream_node_sessions",
            "Proxied sessions started per upstream node",
            metrics.node_sessions.clone(),
        );
        streamgate.register(
            "upstream_node_bytes",
            "Bytes proxied per upstream node and direction, counted when sessions end",
            metrics.node_bytes.clone(),
        );
        streamgate.register(
            "mqtt_connect_rejected",
            "CONNECTs refused by mqtt-proxy, per reason",
            metrics.mqtt_rejected.clone(),
        );
        streamgate.register(
            "tls_handshake_failures",
            "Failed TLS handshakes, per reason",
            metrics.tls_handshake_failures.clone(),
        );
        streamgate.register(
            "connections_refused",
            "Connections refused before any work, per reason",
            metrics.refused.clone(),
        );
        streamgate.register(
            "session_failures",
            "Sessions that ended before their relay started, per kind and origin",
            metrics.session_failures.clone(),
        );
        streamgate.register(
            "upstream_node_healthy",
            "Health of the nodes of upstreams with checks (1 healthy, 0 unhealthy)",
            metrics.node_healthy.clone(),
        );
        streamgate.register(
            "config_rejected",
            "Stored objects the compiler could not use, per resource",
            metrics.config_rejected.clone(),
        );
        streamgate.register(
            "syslog_dropped",
            "syslog plugin entries dropped before reaching the server, per route and reason",
            metrics.syslog_dropped.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Counts a refused connection.
    pub fn refuse(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Drops the series of a route that was deleted, so that the exposition does not grow with
    /// every route ever configured. A session still open on it keeps updating a detached
    /// handle. (A `prefer_name` series is kept: another route may share the name.)
    pub fn forget_route(&self, route: &str) {
        let labels = RouteLabels {
            route: route.to_owned(),
        };
        self.connection_total.remove(&labels);
        self.active_connections.remove(&labels);
        for direction in ["upstream", "downstream"] {
            self.bytes.remove(&BytesLabels {
                route: route.to_owned(),
                direction,
            });
        }
        for reason in DROP_REASONS {
            self.syslog_dropped.remove(&DropLabels {
                route: route.to_owned(),
                reason,
            });
        }
    }

    /// Drops the series of a node that left its upstream, or whose upstream was deleted.
    pub fn forget_node(&self, upstream: &str, node: &str) {
        let labels = NodeLabels {
            upstream: upstream.to_owned(),
            node: node.to_owned(),
        };
        self.connect_failures.remove(&labels);
        self.retries.remove(&labels);
        self.node_healthy.remove(&labels);
        self.node_active.remove(&labels);
        self.node_sessions.remove(&labels);
        for direction in ["upstream", "downstream"] {
            self.node_bytes.remove(&NodeBytesLabels {
                upstream: upstream.to_owned(),
                node: node.to_owned(),
                direction,
            });
        }
    }
}

/// The process-wide metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The per-route handles a session updates without looking labels up.
#[derive(Clone, Debug)]
pub struct RouteMetrics {
    pub active: Gauge,
    pub to_upstream: Counter,
    pub to_client: Counter,
}

impl RouteMetrics {
    pub fn for_route(route: &str) -> RouteMetrics {
        let labels = |direction| BytesLabels {
            route: route.to_owned(),
            direction,
        };
        RouteMetrics {
            active: METRICS
                .active_connections
                .get_or_create_owned(&RouteLabels {
                    route: route.to_owned(),
                }),
            to_upstream: METRICS.bytes.get_or_create_owned(&labels("upstream")),
            to_client: METRICS.bytes.get_or_create_owned(&labels("downstream")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_apisix_and_streamgate_names() {
        let route = RouteMetrics::for_route("metrics-test");
        route.active.inc();
        route.to_upstream.inc_by(7);
        METRICS
            .connection_total
            .get_or_create(&RouteLabels {
                route: "metrics-test".into(),
            })
            .inc();
        METRICS.refuse("rate_limited");
        let text = METRICS.encode();
        assert!(
            text.contains("apisix_stream_connection_total{route=\"metrics-test\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("streamgate_stream_active_connections{route=\"metrics-test\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "streamgate_stream_bytes_total{route=\"metrics-test\",direction=\"upstream\"} 7"
            ),
            "{text}"
        );
        assert!(
            text.contains("streamgate_connections_refused_total{reason=\"rate_limited\"}"),
            "{text}"
        );
    }
}
