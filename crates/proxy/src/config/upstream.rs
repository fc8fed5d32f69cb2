//! Compiled upstreams: nodes, balancer, hash key, timeouts and retry policy, built from a typed
//! upstream when it changes.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::ClientConfig;
use sg_balancer::{Algorithm, Balancer, NodeSpec};
use sg_model::resource::{self, Balancing, HashOn, Seconds, MAX_DURATION};
use sg_model::Keyring;
use tokio::sync::Semaphore;

use crate::config::error::CompileError;
use crate::config::tls::{client, server, TlsTable};
use crate::health::UpstreamHealth;
use crate::metrics::{node_figures, NodeFigures, NodeMetrics};
use crate::session::vars::Var;

/// nginx's default `proxy_connect_timeout`.
const DEFAULT_CONNECT: Duration = Duration::from_secs(60);
/// nginx's default `proxy_timeout`.
const DEFAULT_IDLE: Duration = Duration::from_secs(600);

/// Sessions whose server answers first (mqtt-proxy routes) that may be connected to one node
/// and waiting for its first answer at once; more wait in streamgate, in arrival order. A node
/// that has not answered has perhaps not accepted yet: bounding them keeps a fleet that
/// reconnects at once inside the node's listen backlog (mosquitto's is 100), which otherwise
/// overflows and drops connects for a second. Leaves room for a few gateways per broker.
/// Per node rather than one queue per upstream: a broker that hangs then holds back only its
/// own clients, and a shared queue, though fairer when one broker lags, cost 4–9% of a
/// 256-client storm's rate on two workers (measured with `make bench`).
pub const PENDING_PER_NODE: usize = 32;

/// Everything the data plane needs to reach an upstream.
pub struct Upstream {
    /// Where it came from, for logs: `upstreams/1` or `stream_routes/1` (inline).
    pub key: String,
    pub balancer: Balancer,
    /// The variable a chash upstream hashes on; `None` means `remote_addr`.
    pub hash_var: Option<Var>,
    pub connect_timeout: Duration,
    /// Idle timeout between two successive reads or writes, as nginx's `proxy_timeout`.
    pub idle_timeout: Duration,
    /// Connect attempts after the first one.
    pub retries: usize,
    pub retry_timeout: Option<Duration>,
    /// `scheme: "tls"`: the client configuration for the upstream handshake.
    pub tls: Option<Arc<ClientConfig>>,
    /// Node health when the upstream has `checks`; carried over from `previous` by node.
    pub health: Option<Arc<UpstreamHealth>>,
    /// Per node (by index), the sessions that may wait for the node's first answer at once
    /// ([`PENDING_PER_NODE`]); see `connect`. Not carried over to the next snapshot: right
    /// after a change, sessions of both snapshots may wait on a node, up to twice as many.
    pub pending: Box<[Semaphore]>,
    /// Per node (by index), its metric series' handles, made on first use (see
    /// [`Upstream::node_metrics`]).
    node_series: Box<[OnceLock<NodeMetrics>]>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The upstream's TLS client configuration when its scheme is `tls`.
fn tls_config(
    conf: &resource::Upstream,
    ssls: &TlsTable,
    keyring: &Keyring,
) -> Result<Option<Arc<ClientConfig>>, CompileError> {
    if !conf.is_tls() {
        return Ok(None);
    }
    let tls = conf.tls.clone().unwrap_or_default();
    let cert = match (&tls.client_cert_id, &tls.client_cert, &tls.client_key) {
        (Some(id), _, _) => Some(
            ssls.client_cert(&id.0)
                .ok_or_else(|| CompileError::MissingClientCert(id.0.clone()))?,
        ),
        (None, Some(cert), Some(key)) => {
            server::chains([(Some(cert.as_str()), Some(key.as_str()))], keyring)?
                .into_iter()
                .next()
        }
        _ => None,
    };
    client::config(tls.verify, cert).map(Some)
}

/// A configured duration, with a warning when the stored value was longer than the cap.
fn capped(key: &str, field: &str, seconds: Seconds) -> Duration {
    if seconds.capped() {
        tracing::warn!(upstream = %key, field, cap = ?MAX_DURATION, "value capped");
    }
    seconds.get()
}

impl Upstream {
    /// The series of node `index`, made (or found again) at the first call: a node costs no
    /// series until it sees a session or a failure.
    pub fn node_metrics(&self, index: usize) -> Option<&NodeMetrics> {
        let node = self.balancer.nodes().get(index)?;
        let series = self.node_series.get(index)?;
        Some(series.get_or_init(|| NodeMetrics::for_node(&self.key, &node.address())))
    }

    /// What node `index`'s series read now, without making them.
    pub fn node_figures(&self, index: usize) -> NodeFigures {
        self.balancer
            .nodes()
            .get(index)
            .map_or_else(NodeFigures::default, |node| {
                node_figures(&self.key, &node.address())
            })
    }

    /// Compiles an upstream object; `previous` is the same upstream in the last snapshot, and
    /// `ssls` holds the client certificates `tls.client_cert_id` may name.
    pub fn compile(
        key: String,
        conf: &resource::Upstream,
        previous: Option<&Upstream>,
        ssls: &TlsTable,
        keyring: &Keyring,
    ) -> Result<Upstream, CompileError> {
        let nodes: Vec<NodeSpec> = conf
            .nodes
            .as_ref()
            .ok_or(CompileError::NoNodes)?
            .iter()
            // A draining node takes no new sessions and loses its established ones (paced).
            .filter(|node| !node.draining)
            .map(|node| {
                Ok(NodeSpec {
                    host: node.host.clone(),
                    port: node
                        .port
                        .ok_or_else(|| CompileError::NoPort(node.host.clone()))?,
                    weight: node.weight,
                    priority: node.priority,
                })
            })
            .collect::<Result<_, CompileError>>()?;
        let algorithm = match &conf.balancing {
            Balancing::RoundRobin => Algorithm::RoundRobin,
            Balancing::Chash => Algorithm::Chash,
            Balancing::LeastConn => Algorithm::LeastConn,
            Balancing::Other(other) => {
                return Err(CompileError::UnsupportedBalancer(other.clone()))
            }
        };
        let hash_var = match conf.hash_on {
            HashOn::Vars => conf.key.as_deref().and_then(Var::from_name),
            // header, cookie and consumer values do not exist in stream: remote_addr is used.
            _ => None,
        };
        let timeout = conf.timeout.unwrap_or_default();
        let positive = |field: &str, value: Option<Seconds>| {
            value
                .and_then(Seconds::positive)
                .map(|s| capped(&key, field, s))
        };
        let connect_timeout =
            positive("timeout.connect", timeout.connect).unwrap_or(DEFAULT_CONNECT);
        let send = positive("timeout.send", timeout.send);
        let read = positive("timeout.read", timeout.read);
        let idle_timeout = send.max(read).unwrap_or(DEFAULT_IDLE);
        let retries = conf.retries.map_or(nodes.len().saturating_sub(1), |r| {
            usize::try_from(r.0).unwrap_or(usize::MAX)
        });
        let retry_timeout = positive("retry_timeout", conf.retry_timeout);
        let before = previous.and_then(|p| p.health.as_deref());
        let health = UpstreamHealth::new(&key, conf.checks.as_ref(), &nodes, before).map(Arc::new);
        let balancer = Balancer::new(algorithm, nodes, previous.map(|p| &p.balancer));
        let tls = tls_config(conf, ssls, keyring)?;
        let pending = balancer
            .nodes()
            .iter()
            .map(|_| Semaphore::new(PENDING_PER_NODE))
            .collect();
        let node_series = balancer.nodes().iter().map(|_| OnceLock::new()).collect();
        Ok(Upstream {
            key,
            balancer,
            hash_var,
            connect_timeout,
            idle_timeout,
            retries,
            retry_timeout,
            tls,
            health,
            pending,
            node_series,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn compile(key: String, conf: &Value) -> Result<Upstream, CompileError> {
        let conf = sg_model::decode(conf)?;
        Upstream::compile(key, &conf, None, &TlsTable::default(), &Keyring::default())
    }

    #[test]
    fn compiles_both_node_forms_and_defaults() {
        let up = compile(
            "upstreams/1".into(),
            &json!({"type": "chash", "key": "mqtt_client_id",
                    "nodes": {"127.0.0.1:1883": 1, "[::1]:1884": 2}}),
        )
        .unwrap();
        let nodes = up.balancer.nodes();
        assert_eq!((nodes[0].host.as_str(), nodes[0].port), ("127.0.0.1", 1883));
        assert_eq!(
            (nodes[1].host.as_str(), nodes[1].port, nodes[1].weight),
            ("[::1]", 1884, 2)
        );
        assert_eq!(up.hash_var, Some(Var::MqttClientId));
        assert_eq!(up.retries, 1);
        assert_eq!(up.connect_timeout, DEFAULT_CONNECT);
        assert_eq!(up.idle_timeout, DEFAULT_IDLE);

        let listed = compile(
            "stream_routes/1".into(),
            &json!({"nodes": [{"host": "::1", "port": 1, "weight": 1, "priority": -1}],
                    "retries": 0, "timeout": {"connect": 0.5, "send": 3, "read": 7}, "retry_timeout": 2}),
        )
        .unwrap();
        assert_eq!(listed.balancer.nodes()[0].host, "[::1]");
        assert_eq!(listed.balancer.nodes()[0].priority, -1);
        assert_eq!(listed.connect_timeout, Duration::from_millis(500));
        assert_eq!(listed.idle_timeout, Duration::from_secs(7));
        assert_eq!(listed.retries, 0);
        assert_eq!(listed.retry_timeout, Some(Duration::from_secs(2)));
    }

    #[test]
    fn refuses_what_cannot_be_proxied() {
        assert!(compile("u".into(), &json!({"nodes": {"a.example": 1}})).is_err());
        assert!(compile(
            "u".into(),
            &json!({"service_name": "x", "discovery_type": "dns"})
        )
        .is_err());
        assert!(compile("u".into(), &json!({"type": "ewma", "nodes": {"a:1": 1}})).is_err());
        let dangling =
            json!({"nodes": {"a:1": 1}, "scheme": "tls", "tls": {"client_cert_id": "9"}});
        assert!(compile("u".into(), &dangling).is_err());
    }

    #[test]
    fn tls_scheme_builds_a_client_config() {
        let plain = compile("u".into(), &json!({"nodes": {"a:1": 1}})).unwrap();
        assert!(plain.tls.is_none());
        let tls = compile("u".into(), &json!({"nodes": {"a:1": 1}, "scheme": "tls"})).unwrap();
        assert!(tls.tls.is_some());
    }
}
