//! Per upstream node series: sessions open and opened, bytes each way, failed connects and
//! retries. They are made when a node first sees a session or a failure, so a configuration of
//! 10,000 routes costs no series until traffic reaches its nodes; a compiled upstream then keeps
//! the node's handles, so later sessions update them without a label lookup.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::{NodeLabels, METRICS};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeBytesLabels {
    pub upstream: String,
    pub node: String,
    /// `upstream` (client to node) or `downstream`.
    pub direction: &'static str,
}

/// The handles of one node's series.
#[derive(Clone, Debug)]
pub struct NodeMetrics {
    /// Proxied sessions open on the node.
    pub active: Gauge,
    /// Proxied sessions the node accepted, counted when they start.
    pub sessions: Counter,
    /// Bytes from clients to the node, counted when a session ends (as the route's bytes).
    pub to_upstream: Counter,
    /// Bytes from the node to clients, counted when a session ends.
    pub to_client: Counter,
    pub connect_failures: Counter,
    pub retries: Counter,
}

/// What a node's handles read now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeFigures {
    pub active: i64,
    pub sessions: u64,
    pub to_upstream: u64,
    pub to_client: u64,
    pub connect_failures: u64,
    pub retries: u64,
}

impl NodeMetrics {
    /// The handles of node `node` (`host:port`) of upstream `upstream` (`upstreams/1`): a
    /// recompiled upstream finds its nodes' series again.
    pub fn for_node(upstream: &str, node: &str) -> NodeMetrics {
        let labels = NodeLabels {
            upstream: upstream.to_owned(),
            node: node.to_owned(),
        };
        let bytes = |direction| NodeBytesLabels {
            upstream: upstream.to_owned(),
            node: node.to_owned(),
            direction,
        };
        NodeMetrics {
            active: METRICS.node_active.get_or_create_owned(&labels),
            sessions: METRICS.node_sessions.get_or_create_owned(&labels),
            to_upstream: METRICS.node_bytes.get_or_create_owned(&bytes("upstream")),
            to_client: METRICS.node_bytes.get_or_create_owned(&bytes("downstream")),
            connect_failures: METRICS.connect_failures.get_or_create_owned(&labels),
            retries: METRICS.retries.get_or_create_owned(&labels),
        }
    }

    /// A session to the node started.
    pub fn opened(&self) {
        self.active.inc();
        self.sessions.inc();
    }

    /// A session to the node ended, having moved these bytes.
    pub fn closed(&self, to_upstream: u64, to_client: u64) {
        self.active.dec();
        self.to_upstream.inc_by(to_upstream);
        self.to_client.inc_by(to_client);
    }
}

/// What node `node` (`host:port`) of upstream `upstream` reads now, without making its
/// series: zero for a node that has seen no session or failure.
pub fn figures(upstream: &str, node: &str) -> NodeFigures {
    let labels = NodeLabels {
        upstream: upstream.to_owned(),
        node: node.to_owned(),
    };
    let bytes = |direction| {
        let labels = NodeBytesLabels {
            upstream: upstream.to_owned(),
            node: node.to_owned(),
            direction,
        };
        METRICS.node_bytes.get(&labels).map_or(0, |c| c.get())
    };
    let count = |family: &Family<NodeLabels, Counter>| family.get(&labels).map_or(0, |c| c.get());
    NodeFigures {
        active: METRICS.node_active.get(&labels).map_or(0, |g| g.get()),
        sessions: count(&METRICS.node_sessions),
        to_upstream: bytes("upstream"),
        to_client: bytes("downstream"),
        connect_failures: count(&METRICS.connect_failures),
        retries: count(&METRICS.retries),
    }
}
